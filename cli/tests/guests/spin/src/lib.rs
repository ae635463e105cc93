//! Spins on the CPU forever: only the epoch-driven timeout can stop it.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Spin;
wasi::http::proxy::export!(Spin);

impl wasi::exports::http::incoming_handler::Guest for Spin {
    fn handle(_: IncomingRequest, _: ResponseOutparam) {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}
