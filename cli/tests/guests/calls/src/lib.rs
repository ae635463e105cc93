//! Counts the calls its instance has served: shows whether instances are reused.
use std::sync::atomic::{AtomicU32, Ordering};

use wasi::http::types::{IncomingRequest, ResponseOutparam};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Calls;
wasi::http::proxy::export!(Calls);

impl wasi::exports::http::incoming_handler::Guest for Calls {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        util::respond(out, 200, &n.to_string());
    }
}
