//! The worker API, as both sides speak it: paths, headers, and how a worker's typed errors
//! travel to the gateway unchanged.
//!
//! | method | path | |
//! |---|---|---|
//! | any | `/_wafer/worker/v1/invoke` | a call: `x-wafer-function` names the function and `x-wafer-function-version` its version, `x-wafer-uri` is the path and query it sees; method, other headers and body are the caller's |
//! | `POST` | `/_wafer/worker/v1/prepare` | validate and compile a component (the body); answers its digest |
//! | `GET` | `/_wafer/worker/v1/functions/{name}` | the function's status on this worker |
//! | `GET` | `/_wafer/worker/v1/functions/{name}/logs?tail=N&follow=true` | its log lines, as JSON lines of `LogEvent` |
//!
//! Every one needs `x-wafer-token: <the cluster's token>` (a header of its own, so that the
//! caller's `Authorization` reaches the function untouched). `/_wafer/healthz` and
//! `/_wafer/metrics` are open, as on a gateway.

use wafer_worker::{CallStart, DeployError, InvokeError};

pub const INVOKE: &str = "/_wafer/worker/v1/invoke";
pub const PREPARE: &str = "/_wafer/worker/v1/prepare";
/// The function's status; its log lines are under `/logs`.
pub fn function_path(name: &str) -> String {
    format!("/_wafer/worker/v1/functions/{name}")
}

/// Which function a call is for.
pub const FUNCTION: &str = "x-wafer-function";
/// Which of its versions.
pub const VERSION: &str = "x-wafer-function-version";
/// The path and query the function sees.
pub const URI: &str = "x-wafer-uri";
/// The cluster's token, on every request to a worker.
pub const TOKEN: &str = "x-wafer-token";
/// On a worker's answer: the body is the platform's error (JSON), not the function's response.
/// A function cannot set it: workers drop it from guest responses.
pub const PLATFORM_ERROR: &str = "x-wafer-platform-error";
/// On a response through a gateway: the worker that served it.
pub const SERVED_BY: &str = "x-wafer-worker";
/// On a worker's answer: how the call started ([`CallStart`]), `cold` or `warm`, with
/// `;instantiate_us=N` where known. The gateway takes it off again.
pub const START: &str = "x-wafer-start";

/// [`START`]'s value for `start`.
pub fn start_header(start: &CallStart) -> String {
    let kind = if start.cold { "cold" } else { "warm" };
    match start.instantiate {
        Some(took) => format!("{kind};instantiate_us={}", took.as_micros()),
        None => kind.to_string(),
    }
}

/// The [`CallStart`] a [`START`] value says, if it is one.
pub fn parse_start(value: &str) -> Option<CallStart> {
    let mut parts = value.split(';');
    let cold = match parts.next()? {
        "cold" => true,
        "warm" => false,
        _ => return None,
    };
    let instantiate = parts
        .find_map(|p| p.strip_prefix("instantiate_us="))
        .and_then(|us| us.parse().ok())
        .map(std::time::Duration::from_micros);
    Some(CallStart { cold, instantiate })
}

/// A deploy error as it crosses the wire: its kind and its message.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WireDeployError {
    pub kind: String,
    pub message: String,
}

impl From<&DeployError> for WireDeployError {
    fn from(error: &DeployError) -> Self {
        let kind = match error {
            DeployError::Invalid(_) => "invalid",
            DeployError::Limits(_) => "limits",
            DeployError::Unavailable(_) => "unavailable",
            DeployError::UnknownComponent(_)
            | DeployError::Io { .. }
            | DeployError::Internal(_) => "internal",
        };
        WireDeployError {
            kind: kind.to_string(),
            message: error.to_string(),
        }
    }
}

impl From<WireDeployError> for DeployError {
    fn from(error: WireDeployError) -> Self {
        match error.kind.as_str() {
            "invalid" => DeployError::Invalid(error.message),
            "limits" => DeployError::Limits(error.message),
            "unavailable" => DeployError::Unavailable(error.message),
            _ => DeployError::Internal(error.message),
        }
    }
}

/// The body of a platform error answer: the error, as the worker's own typed value.
pub fn encode_invoke_error(error: &InvokeError) -> Vec<u8> {
    serde_json::to_vec(error).unwrap_or_default()
}

pub fn decode_invoke_error(body: &[u8]) -> Option<InvokeError> {
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_errors_keep_their_kind() {
        let error = DeployError::Limits("too big".into());
        let wire: WireDeployError = (&error).into();
        let json = serde_json::to_string(&wire).unwrap();
        let back: DeployError = serde_json::from_str::<WireDeployError>(&json)
            .unwrap()
            .into();
        assert!(matches!(back, DeployError::Limits(m) if m == "too big"));
    }

    #[test]
    fn how_a_call_started_crosses_the_wire() {
        for start in [
            CallStart {
                cold: true,
                instantiate: Some(std::time::Duration::from_micros(1234)),
            },
            CallStart {
                cold: false,
                instantiate: None,
            },
        ] {
            assert_eq!(parse_start(&start_header(&start)), Some(start));
        }
        assert_eq!(parse_start("lukewarm"), None);
    }
}
