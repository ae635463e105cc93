//! Panics on every call (the caller must get a 500 and the panic message must reach the logs),
//! unless asked `?behave`: then it answers 200, so that a test can watch it recover.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Trap;
wasi::http::proxy::export!(Trap);

impl wasi::exports::http::incoming_handler::Guest for Trap {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if request
            .path_with_query()
            .is_some_and(|p| p.ends_with("?behave"))
        {
            util::respond(out, 200, "behaving\n");
            return;
        }
        panic!("boom: this fixture always panics");
    }
}
