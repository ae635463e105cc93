//! Answers 200, then writes a body that never ends: only the timeout stops it.
use std::io::Write;

use wasi::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

struct Endless;
wasi::http::proxy::export!(Endless);

impl wasi::exports::http::incoming_handler::Guest for Endless {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let mut stream = body.write().expect("stream is taken once");
        let chunk = [b'z'; 1024];
        loop {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    }
}
