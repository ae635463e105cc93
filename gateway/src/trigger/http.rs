//! The HTTP trigger: a request routed to a function is passed to one of its versions as is
//! (method, full path and query, headers, streamed body) and its response comes back as is,
//! with `x-wafer-version` naming the version that served it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use wafer_worker::Backend;

use crate::error::ApiError;
use crate::router::{RESERVED_PREFIX, RouteTable, Target, VERSION_HEADER};
use crate::trace::{CallSpan, Trigger};

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
    let Some(route) = routes.lookup(path).cloned() else {
        return ApiError::NotFound(format!("no function is routed at {path}")).into_response();
    };
    let call = Call {
        function: &route.function,
        route: &route.route,
        target: &route.target,
    };
    call.run(backend, max_body, request).await
}

/// A call to make: of which function, routed where, on which of its versions.
pub struct Call<'a> {
    pub function: &'a str,
    /// Its route (for traces).
    pub route: &'a str,
    pub target: &'a Target,
}

impl Call<'_> {
    /// Calls the version that the target picks for `request` (its body bounded by `max_body`)
    /// and turns the outcome into a response.
    pub async fn run(&self, backend: &dyn Backend, max_body: u64, request: Request) -> Response {
        let function = self.function;
        let version = match self.target.pick(request.headers()) {
            Ok(version) => version,
            Err(e) => {
                return ApiError::NoVersion(format!("function `{function}`: {e}")).into_response();
            }
        };
        let span = CallSpan::start(
            Trigger::Http,
            function,
            version,
            self.route,
            request.method().as_str(),
            request.headers(),
        );
        let mut request = match into_worker_request(request, max_body) {
            Ok(request) => request,
            Err(e) => return e.into_response(),
        };
        span.inject(request.headers_mut());
        let mut response = match backend.invoke(function, version, request).await {
            Ok(response) => response.map(Body::new),
            Err(e) => {
                span.failed(&e);
                ApiError::from(e).into_response()
            }
        };
        span.answered(&response);
        response
            .headers_mut()
            .insert(VERSION_HEADER, HeaderValue::from(version));
        response
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
