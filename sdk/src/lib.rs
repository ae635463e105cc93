//! Write wafer functions in Rust: an async function from request to response, exported as a
//! standard `wasi:http/incoming-handler` component with one macro.
//!
//! A function built with this crate is an ordinary wasi:http component: it runs on wafer, on
//! `wasmtime serve`, on anything that serves the proxy world. Build it with
//! `cargo build --release --target wasm32-wasip2`.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use wafer_sdk::{Error, Json, Method, Request, RequestExt, Result};
//!
//! #[derive(Deserialize)]
//! struct Greet {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     message: String,
//! }
//!
//! async fn handle(mut request: Request) -> Result<Json<Greeting>> {
//!     if request.method() != Method::POST {
//!         return Err(Error::method_not_allowed("POST a JSON {\"name\": ...}"));
//!     }
//!     let greet: Greet = request.json().await?; // a 400 if the body does not fit
//!     let greeting = wafer_sdk::config("GREETING").unwrap_or_else(|| "Hello".into());
//!     Ok(Json(Greeting {
//!         message: format!("{greeting}, {}!", greet.name),
//!     }))
//! }
//!
//! wafer_sdk::export!(handle);
//! ```
//!
//! A handler is any `async fn(Request) -> impl IntoResponse`: strings, bytes, [`Json`],
//! [`StatusCode`], `(StatusCode, T)`, a full [`Response`], or a `Result` of those with [`Error`]
//! (whose statuses you choose; any other error becomes a 500 through `?`). Queue messages
//! arrive as CloudEvents: see [`event`] for reading them and answering ok, retry or failed.
//!
//! Inside the handler, `wstd` (re-exported) provides async sleep and an HTTP client for
//! outbound calls, which wafer allows to the hosts the manifest lists.

mod error;
pub mod event;
mod request;
mod response;

pub use cloudevents::AttributesReader;
pub use error::{Error, Result};
pub use http::{self, HeaderMap, Method, StatusCode};
pub use request::{RequestExt, query_param};
pub use response::{IntoResponse, Json};
pub use wstd;
pub use wstd::http::Body;

/// The request a handler receives.
pub type Request = http::Request<Body>;
/// The response a handler may build by hand.
pub type Response = http::Response<Body>;

/// A configuration value: the function's environment variable `key` (from the manifest's
/// `[env]`; a wafer function never sees the host's environment).
pub fn config(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Exports `handler` (an `async fn(Request) -> impl IntoResponse`) as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! export {
    ($handler:path) => {
        struct __WaferHandler;

        impl $crate::__private::wasip2::exports::http::incoming_handler::Guest for __WaferHandler {
            fn handle(
                request: $crate::__private::wasip2::http::types::IncomingRequest,
                response_out: $crate::__private::wasip2::http::types::ResponseOutparam,
            ) {
                $crate::__private::serve(request, response_out, $handler)
            }
        }

        $crate::__private::wasip2::http::proxy::export!(
            __WaferHandler with_types_in $crate::__private::wasip2
        );
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wstd::__internal::wasip2;
    use wstd::__internal::wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::{Error, IntoResponse, Request};

    /// Runs one call: converts the request, awaits the handler, sends its response.
    pub fn serve<H, F, R>(request: IncomingRequest, response_out: ResponseOutparam, handler: H)
    where
        H: FnOnce(Request) -> F,
        F: Future<Output = R>,
        R: IntoResponse,
    {
        let responder = wstd::http::server::Responder::new(response_out);
        wstd::runtime::block_on(async move {
            let response = match wstd::http::request::try_from_incoming(request) {
                Ok(request) => handler(request).await.into_response(),
                Err(e) => Error::bad_request(format!("unreadable request: {e:#}")).into_response(),
            };
            if let Err(e) = responder.respond(response).await {
                // The client went away or the body failed mid-way; nothing more to tell it.
                eprintln!("wafer-sdk: failed to send the response: {e:#}");
            }
        })
    }
}
