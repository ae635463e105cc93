//! The gateway's errors and the one place they become HTTP responses.
//!
//! Every error answers `{"error": "..."}` with the status that fits, plus an `x-wafer-error`
//! header naming the kind so that clients can tell a platform error from a function's own 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wafer_worker::{DeployError, InvokeError};

/// A manifest problem, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// What every error answers, with its kind in the `x-wafer-error` header.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A call pinned (`x-wafer-version`) to a version that is neither tagged nor takes traffic.
    #[error("{0}")]
    NoVersion(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Something the gateway relies on (a cluster's database or workers) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    #[error("missing or invalid admin token: send `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ApiError {
    /// Every `x-wafer-error` kind the gateway's own errors answer with (a call's errors add
    /// [`InvokeError::KINDS`]).
    pub const KINDS: &[&str] = &[
        "bad_request",
        "not_found",
        "no_version",
        "conflict",
        "too_large",
        "unavailable",
        "unauthorized",
        "invalid_manifest",
        "invalid_component",
        "invalid_limits",
        "storage",
        "internal",
    ];

    pub fn storage(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApiError {
        let context = context.into();
        move |source| ApiError::Storage { context, source }
    }

    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NoVersion(_) => (StatusCode::NOT_FOUND, "no_version"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Manifest(_) => (StatusCode::BAD_REQUEST, "invalid_manifest"),
            ApiError::Invoke(e) => {
                let status = match e {
                    InvokeError::NotFound(_) => StatusCode::NOT_FOUND,
                    InvokeError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
                    InvokeError::NoCapacity { .. }
                    | InvokeError::ShuttingDown
                    | InvokeError::NoVersion { .. }
                    | InvokeError::NoWorkers { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    InvokeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                    InvokeError::MemoryLimit { .. }
                    | InvokeError::Trap { .. }
                    | InvokeError::Instantiate { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                    InvokeError::NoResponse { .. }
                    | InvokeError::Guest { .. }
                    | InvokeError::WorkerLost { .. } => StatusCode::BAD_GATEWAY,
                };
                (status, e.kind())
            }
            ApiError::Deploy(e) => match e {
                DeployError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_component"),
                DeployError::Limits(_) => (StatusCode::BAD_REQUEST, "invalid_limits"),
                DeployError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                DeployError::Io { source, .. } if is_out_of_storage(source) => {
                    (StatusCode::INSUFFICIENT_STORAGE, "storage")
                }
                DeployError::UnknownComponent(_)
                | DeployError::Io { .. }
                | DeployError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::Storage { source, .. } if is_out_of_storage(source) => {
                (StatusCode::INSUFFICIENT_STORAGE, "storage")
            }
            ApiError::Storage { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("failed to open the function records: {0}")]
    Store(ApiError),
    #[error("failed to register the queue trigger's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("failed to load the deployed functions: {0}")]
    Functions(#[from] ApiError),
}

/// Whether the data directory cannot take more (full, over quota, or read-only): 507, which
/// says "not stored" rather than "wafer broke".
fn is_out_of_storage(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, ReadOnlyFilesystem, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | ReadOnlyFilesystem)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        if status.is_server_error() {
            tracing::warn!(error = %self, kind, "request failed");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert("x-wafer-error", HeaderValue::from_static(kind));
        match &self {
            ApiError::Invoke(InvokeError::Overloaded { retry_after, .. }) => {
                headers.insert(header::RETRY_AFTER, retry_after.as_secs().max(1).into());
            }
            ApiError::Invoke(
                InvokeError::NoCapacity { .. }
                | InvokeError::ShuttingDown
                | InvokeError::NoVersion { .. }
                | InvokeError::NoWorkers { .. },
            )
            | ApiError::Unavailable(_)
            | ApiError::Deploy(DeployError::Unavailable(_)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds the OpenAPI document lists are the kinds the errors answer with.
    #[test]
    fn every_kind_answered_is_listed() {
        let io = || std::io::Error::other("x");
        let errors = [
            ApiError::BadRequest(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::NoVersion(String::new()),
            ApiError::Conflict(String::new()),
            ApiError::PayloadTooLarge(String::new()),
            ApiError::Unavailable(String::new()),
            ApiError::Unauthorized,
            ApiError::Manifest(ManifestError(String::new())),
            ApiError::Deploy(DeployError::Invalid(String::new())),
            ApiError::Deploy(DeployError::Limits(String::new())),
            ApiError::Deploy(DeployError::Unavailable(String::new())),
            ApiError::Deploy(DeployError::Internal(String::new())),
            ApiError::storage("x")(io()),
            ApiError::Invoke(InvokeError::ShuttingDown),
        ];
        for error in errors {
            let (_, kind) = error.status_and_kind();
            assert!(
                ApiError::KINDS.contains(&kind) || InvokeError::KINDS.contains(&kind),
                "{kind} is not listed"
            );
        }
    }
}
