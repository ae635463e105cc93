//! Recurses without end: the call stack overflows and the call must fail cleanly.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Recurse;
wasi::http::proxy::export!(Recurse);

// No locals in linear memory, so every level costs a wasm frame: it is the engine's stack
// limit that stops it, not the guest's own shadow stack running off the end of its memory.
#[inline(never)]
#[allow(unconditional_recursion)] // the point of this fixture
fn deeper(n: u64) -> u64 {
    std::hint::black_box(deeper(std::hint::black_box(n + 1))) + 1
}

impl wasi::exports::http::incoming_handler::Guest for Recurse {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        let depth = deeper(0);
        util::respond(out, 200, &depth.to_string());
    }
}
