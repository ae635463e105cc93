//! Serves one call per instance and traps on the second, like componentize-js `fetch` handlers.
use std::sync::atomic::{AtomicU32, Ordering};

use wasi::http::types::{IncomingRequest, ResponseOutparam};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct ReuseOnce;
wasi::http::proxy::export!(ReuseOnce);

impl wasi::exports::http::incoming_handler::Guest for ReuseOnce {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        if CALLS.fetch_add(1, Ordering::Relaxed) > 0 {
            panic!("this instance cannot serve a second request");
        }
        util::respond(out, 200, "fresh instance\n");
    }
}
