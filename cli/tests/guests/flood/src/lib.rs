//! Writes 100 MB to stdout and to stderr, then answers: logs must stay bounded.
use std::io::Write;

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Flood;
wasi::http::proxy::export!(Flood);

impl wasi::exports::http::incoming_handler::Guest for Flood {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        let line = [b'x'; 1023];
        let mut stdout = std::io::stdout().lock();
        for _ in 0..(50 * 1024) {
            let _ = stdout.write_all(&line);
            let _ = stdout.write_all(b"\n");
        }
        drop(stdout);
        let mut stderr = std::io::stderr().lock();
        for _ in 0..(50 * 1024) {
            let _ = stderr.write_all(&line);
            let _ = stderr.write_all(b"\n");
        }
        drop(stderr);
        util::respond(out, 200, "flooded\n");
    }
}
