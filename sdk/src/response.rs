//! Turning what a handler returns into an HTTP response.

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use wstd::http::Body;

use crate::Response;

/// What a handler may return: strings, bytes, [`Json`], status codes, `(StatusCode, T)`,
/// `Result<T, E>` of those, or a full [`Response`].
pub trait IntoResponse {
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

fn with_type(body: Body, content_type: &'static str) -> Response {
    let mut response = http::Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        with_type(self.into(), "text/plain; charset=utf-8")
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        with_type(self.into(), "text/plain; charset=utf-8")
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        with_type(self.into(), "application/octet-stream")
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        let mut response = http::Response::new(Body::empty());
        *response.status_mut() = self;
        response
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        *response.status_mut() = self.0;
        response
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

/// A JSON body: serializes `T` and sets `content-type: application/json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => with_type(bytes.into(), "application/json"),
            Err(e) => crate::Error::internal(format!("failed to serialize the response: {e}"))
                .into_response(),
        }
    }
}
