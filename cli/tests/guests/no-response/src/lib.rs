//! Returns without ever setting a response.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct NoResponse;
wasi::http::proxy::export!(NoResponse);

impl wasi::exports::http::incoming_handler::Guest for NoResponse {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        drop(out);
    }
}
