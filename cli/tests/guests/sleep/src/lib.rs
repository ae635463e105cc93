//! Sleeps `?ms=N` milliseconds in a host call (the guest is blocked, not spinning), then answers.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Sleep;
wasi::http::proxy::export!(Sleep);

impl wasi::exports::http::incoming_handler::Guest for Sleep {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let ms: u64 = util::query(&request, "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
        util::respond(out, 200, &format!("slept {ms} ms\n"));
    }
}
