//! The HTTP trigger: a request routed to a function is passed to it as is (method, full path and
//! query, headers, streamed body) and its response comes back as is.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use wafer_worker::Backend;

use crate::error::ApiError;
use crate::router::{RESERVED_PREFIX, RouteTable};

/// Routes a request to its function on `backend`, through the live `routes`.
pub async fn handle(
    routes: &RouteTable,
    backend: &dyn Backend,
    max_body: u64,
    request: Request,
) -> Response {
    let path = request.uri().path();
    if path == RESERVED_PREFIX || path.starts_with("/_wafer/") {
        return ApiError::NotFound(format!("no wafer API at {path}")).into_response();
    }
    let Some(function) = routes.lookup(path).cloned() else {
        return ApiError::NotFound(format!("no function is routed at {path}")).into_response();
    };
    call(backend, max_body, &function, request).await
}

/// Calls `function` with `request` (its body bounded by `max_body`) and turns the outcome into a
/// response.
pub async fn call(
    backend: &dyn Backend,
    max_body: u64,
    function: &str,
    request: Request,
) -> Response {
    let request = match into_worker_request(request, max_body) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    match backend.invoke(function, request).await {
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
