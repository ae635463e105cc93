//! The error a handler returns: an HTTP status and a message, answered as `{"error": "..."}`.

use http::StatusCode;

use crate::{IntoResponse, Json, Response};

/// A failed call. Any error converts into one with `?` (as a 500); pick another status with the
/// constructors.
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    message: String,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: nothing here.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, message)
    }

    /// 405: the method is not supported here.
    pub fn method_not_allowed(message: impl Into<String>) -> Error {
        Error::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    /// 500: something went wrong inside the function.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

/// Any error becomes a 500 carrying its message chain, so `?` works on everything.
impl<E> From<E> for Error
where
    E: Into<anyhow::Error>,
{
    fn from(error: E) -> Error {
        Error::internal(format!("{:#}", error.into()))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}
