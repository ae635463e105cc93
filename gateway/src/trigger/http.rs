//! The HTTP trigger: a request whose path falls under a function's route is passed to it as is
//! (method, full path and query, headers, streamed body) and its response comes back as is.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::router::RESERVED_PREFIX;
use crate::state::Gateway;

/// Routes a request to its function.
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let path = request.uri().path();
    if path == RESERVED_PREFIX || path.starts_with("/_wafer/") {
        return ApiError::NotFound(format!("no wafer API at {path}")).into_response();
    }
    let Some(function) = gateway.functions.route(path) else {
        return ApiError::NotFound(format!("no function is routed at {path}")).into_response();
    };
    call(&gateway, &function, request).await
}

/// Calls `function` with `request` and turns the outcome into a response.
pub async fn call(gateway: &Gateway, function: &str, request: Request) -> Response {
    let request = match into_worker_request(request, gateway.config.max_request_body) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    match gateway.backend().invoke(function, request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Bounds the body and makes sure wasi:http gets an authority.
fn into_worker_request(request: Request, max_body: u64) -> Result<wafer_worker::Request, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body of {} bytes is over the limit of {max_body} bytes",
            declared.unwrap_or_default()
        )));
    }
    let (mut parts, body) = request.into_parts();
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/1.0 clients may omit it; wasi:http requires an authority.
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let body = http_body_util::Limited::new(body, limit).boxed_unsync();
    Ok(wafer_worker::Request::from_parts(parts, body))
}
