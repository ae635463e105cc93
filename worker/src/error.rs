//! The worker's typed errors: what a caller of [`Backend`](crate::Backend) can decide on, and the
//! one place a guest's failure (a wasmtime error) becomes one of them.
//!
//! Invocation errors say which function failed and why in words a user can act on; the gateway
//! maps each variant to one HTTP status (and the queue trigger to ack, retry or dead-letter).

use std::time::Duration;

use wasmtime::Trap;

/// Why a call to a function produced no (complete) response. Serializable, so that a worker in
/// another process can say exactly why.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum InvokeError {
    /// No function of that name is deployed on this worker.
    #[error("no function named `{0}` is deployed")]
    NotFound(String),

    /// The function is deployed here but not at that version (it was retired, or is still being
    /// installed).
    #[error("function `{function}` has no version {version} here")]
    NoVersion { function: String, version: u64 },

    /// Every instance the function may run is busy and its wait queue is full (or the wait
    /// outlasted the function's timeout). The caller should back off and retry.
    #[error(
        "function `{function}` is overloaded: {limit} concurrent calls running and {queued} waiting"
    )]
    Overloaded {
        function: String,
        limit: u32,
        queued: u32,
        retry_after: Duration,
    },

    /// The worker as a whole has no room for another instance (every pool slot is busy).
    #[error(
        "no capacity for another instance of `{function}`: all {slots} instance slots are busy"
    )]
    NoCapacity { function: String, slots: u32 },

    /// The call ran past the function's wall-clock timeout and was stopped.
    #[error("function `{function}` timed out after {timeout:?}")]
    Timeout { function: String, timeout: Duration },

    /// The guest tried to grow its memory past the function's limit.
    #[error("function `{function}` exceeded its memory limit of {limit} bytes")]
    MemoryLimit { function: String, limit: u64 },

    /// The guest trapped: a panic, `unreachable`, a stack overflow, an out-of-bounds access.
    #[error("function `{function}` trapped: {reason}")]
    Trap { function: String, reason: String },

    /// The guest returned from its handler without ever setting a response.
    #[error("function `{function}` returned without sending a response")]
    NoResponse { function: String },

    /// The guest answered with a wasi:http error code instead of a response.
    #[error("function `{function}` failed: {reason}")]
    Guest { function: String, reason: String },

    /// Instantiating the component failed (its start code trapped or a pool limit refused it).
    #[error("function `{function}` failed to start: {reason}")]
    Instantiate { function: String, reason: String },

    /// The worker is stopping and takes no new calls.
    #[error("the worker is shutting down")]
    ShuttingDown,

    /// The worker running the call went away (its process died, its connection broke) after
    /// the request reached it.
    #[error("the worker running `{function}` went away during the call ({worker})")]
    WorkerLost { function: String, worker: String },

    /// No worker is live to take the call.
    #[error("no worker is available to run `{function}`")]
    NoWorkers { function: String },
}

impl InvokeError {
    /// Every [`InvokeError::kind`], for those that keep a series per kind.
    pub const KINDS: &[&str] = &[
        "not_found",
        "no_version",
        "overloaded",
        "no_capacity",
        "timeout",
        "memory_limit",
        "trap",
        "no_response",
        "guest_error",
        "instantiate",
        "shutting_down",
        "worker_lost",
        "no_workers",
    ];

    /// Why a guest stopped, from the error its store returned: its memory limit if that is what
    /// refused a growth, else the trap.
    pub(crate) fn from_trap(
        function: &str,
        memory_limit: u64,
        hit_memory_limit: bool,
        error: &wasmtime::Error,
    ) -> InvokeError {
        let function = function.to_string();
        if hit_memory_limit {
            return InvokeError::MemoryLimit {
                function,
                limit: memory_limit,
            };
        }
        tracing::debug!(function = %function, error = ?error, "guest trapped");
        InvokeError::Trap {
            function,
            reason: trap_reason(error),
        }
    }

    /// Instantiation failed: the component's start code trapped, or a pool limit refused it.
    pub(crate) fn instantiate(function: &str, error: &wasmtime::Error) -> InvokeError {
        InvokeError::Instantiate {
            function: function.to_string(),
            reason: trap_reason(error),
        }
    }

    /// A call that panicked inside wafer itself (caught, so only that call fails).
    pub(crate) fn inside_wafer(function: &str) -> InvokeError {
        InvokeError::Trap {
            function: function.to_string(),
            reason: "the call failed inside wafer (a bug: see the server log)".to_string(),
        }
    }

    /// Whether a call that failed so cost its neighbours CPU for nothing: it trapped, timed out,
    /// ran out of memory, failed to start or gave no answer (an instance started and thrown away).
    pub(crate) fn is_hostile(&self) -> bool {
        matches!(
            self,
            InvokeError::Timeout { .. }
                | InvokeError::MemoryLimit { .. }
                | InvokeError::Trap { .. }
                | InvokeError::NoResponse { .. }
                | InvokeError::Instantiate { .. }
        )
    }

    /// A short machine-readable name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::NotFound(_) => "not_found",
            InvokeError::NoVersion { .. } => "no_version",
            InvokeError::Overloaded { .. } => "overloaded",
            InvokeError::NoCapacity { .. } => "no_capacity",
            InvokeError::Timeout { .. } => "timeout",
            InvokeError::MemoryLimit { .. } => "memory_limit",
            InvokeError::Trap { .. } => "trap",
            InvokeError::NoResponse { .. } => "no_response",
            InvokeError::Guest { .. } => "guest_error",
            InvokeError::Instantiate { .. } => "instantiate",
            InvokeError::ShuttingDown => "shutting_down",
            InvokeError::WorkerLost { .. } => "worker_lost",
            InvokeError::NoWorkers { .. } => "no_workers",
        }
    }
}

/// One line saying why a guest stopped: the trap itself if there is one (its backtrace stays out
/// of error responses), else the first line of the error's chain.
pub(crate) fn trap_reason(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::StackOverflow => "stack overflow (call stack exhausted)".to_string(),
            Trap::UnreachableCodeReached => {
                "wasm `unreachable` executed (a Rust guest panicked or aborted; see `wafer logs`)"
                    .to_string()
            }
            other => other.to_string(),
        };
    }
    let text = format!("{error:#}");
    text.lines().next().unwrap_or("").to_string()
}

/// Why a component could not be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The bytes are not something wafer can run; the message names what is wrong.
    #[error("{0}")]
    Invalid(String),

    /// The function's limits do not fit this worker (for example a memory limit above the
    /// pool's slot size).
    #[error("{0}")]
    Limits(String),

    /// A component referenced by digest is not stored on this worker.
    #[error("no component with digest {0} is stored")]
    UnknownComponent(String),

    /// Reading or writing the worker's data directory failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// Nothing can take the deploy right now (no worker is live to compile it); try again.
    #[error("{0}")]
    Unavailable(String),

    /// Anything else wasmtime reported while compiling or linking.
    #[error("{0}")]
    Internal(String),
}

impl DeployError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DeployError {
        let context = context.into();
        move |source| DeployError::Io { context, source }
    }
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("failed to create the wasmtime engine: {0}")]
    Engine(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_lists_every_kind() {
        let function = || "f".to_string();
        let every = [
            InvokeError::NotFound(function()),
            InvokeError::NoVersion {
                function: function(),
                version: 1,
            },
            InvokeError::Overloaded {
                function: function(),
                limit: 1,
                queued: 0,
                retry_after: Duration::from_secs(1),
            },
            InvokeError::NoCapacity {
                function: function(),
                slots: 1,
            },
            InvokeError::Timeout {
                function: function(),
                timeout: Duration::from_secs(1),
            },
            InvokeError::MemoryLimit {
                function: function(),
                limit: 1,
            },
            InvokeError::Trap {
                function: function(),
                reason: String::new(),
            },
            InvokeError::NoResponse {
                function: function(),
            },
            InvokeError::Guest {
                function: function(),
                reason: String::new(),
            },
            InvokeError::Instantiate {
                function: function(),
                reason: String::new(),
            },
            InvokeError::ShuttingDown,
            InvokeError::WorkerLost {
                function: function(),
                worker: String::new(),
            },
            InvokeError::NoWorkers {
                function: function(),
            },
        ];
        let kinds: Vec<&str> = every.iter().map(InvokeError::kind).collect();
        assert_eq!(kinds, InvokeError::KINDS);
    }

    #[test]
    fn traps_read_as_one_line() {
        let overflow = wasmtime::Error::from(Trap::StackOverflow);
        assert!(trap_reason(&overflow).starts_with("stack overflow"));
        let chained = wasmtime::Error::msg("inner\nbacktrace").context("outer");
        assert_eq!(trap_reason(&chained), "outer: inner");
        let limited = InvokeError::from_trap("f", 64, true, &overflow);
        assert!(matches!(
            limited,
            InvokeError::MemoryLimit { limit: 64, .. }
        ));
    }
}
