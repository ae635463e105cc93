//! Panics on every call: the caller must get a 500 and the panic message must reach the logs.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Trap;
wasi::http::proxy::export!(Trap);

impl wasi::exports::http::incoming_handler::Guest for Trap {
    fn handle(_: IncomingRequest, _: ResponseOutparam) {
        panic!("boom: this fixture always panics");
    }
}
