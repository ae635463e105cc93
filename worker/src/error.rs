//! The worker's typed errors: what a caller of [`Backend`](crate::Backend) can decide on.
//!
//! Invocation errors say which function failed and why in words a user can act on; the gateway
//! maps each variant to one HTTP status (and the queue trigger to ack, retry or dead-letter).

use std::time::Duration;

/// Why a call to a function produced no (complete) response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No function of that name is deployed on this worker.
    #[error("no function named `{0}` is deployed")]
    NotFound(String),

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
}

impl InvokeError {
    /// A short machine-readable name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::NotFound(_) => "not_found",
            InvokeError::Overloaded { .. } => "overloaded",
            InvokeError::NoCapacity { .. } => "no_capacity",
            InvokeError::Timeout { .. } => "timeout",
            InvokeError::MemoryLimit { .. } => "memory_limit",
            InvokeError::Trap { .. } => "trap",
            InvokeError::NoResponse { .. } => "no_response",
            InvokeError::Guest { .. } => "guest_error",
            InvokeError::Instantiate { .. } => "instantiate",
            InvokeError::ShuttingDown => "shutting_down",
        }
    }
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
