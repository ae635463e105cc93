//! Tries to allocate 1 GiB, a MiB at a time: the memory limit must stop it.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Grow;
wasi::http::proxy::export!(Grow);

impl wasi::exports::http::incoming_handler::Guest for Grow {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        for _ in 0..1024 {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
        util::respond(out, 200, &format!("allocated {} MiB\n", hoard.len()));
    }
}
