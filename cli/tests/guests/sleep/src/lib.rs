//! Sleeps `?ms=N` milliseconds in a host call (the guest is blocked, not spinning), then answers.
//! With `?hold=1` it first reads its whole request body, so a test that holds the body open
//! holds the call open for exactly as long as it needs.
use wasi::http::types::{IncomingBody, IncomingRequest, ResponseOutparam};

struct Sleep;
wasi::http::proxy::export!(Sleep);

impl wasi::exports::http::incoming_handler::Guest for Sleep {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let ms: u64 = util::query(&request, "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        if util::query(&request, "hold").is_some() {
            let body = request.consume().expect("body is taken once");
            let stream = body.stream().expect("stream is taken once");
            while stream.blocking_read(64 * 1024).is_ok() {}
            drop(stream);
            IncomingBody::finish(body);
        }
        wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
        util::respond(out, 200, &format!("slept {ms} ms\n"));
    }
}
