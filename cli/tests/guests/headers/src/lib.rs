//! Logs its request's method, path and every header (one `name: value` line each), then the
//! body, and answers 200: shows exactly what a trigger delivered.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Headers;
wasi::http::proxy::export!(Headers);

impl wasi::exports::http::incoming_handler::Guest for Headers {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        println!(
            "{:?} {}",
            request.method(),
            request.path_with_query().unwrap_or_default()
        );
        for (name, value) in request.headers().entries() {
            println!("{name}: {}", String::from_utf8_lossy(&value));
        }
        let body = request.consume().expect("body is consumed once");
        let stream = body.stream().expect("stream is taken once");
        let mut bytes = Vec::new();
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            bytes.extend_from_slice(&chunk);
        }
        drop(stream);
        println!("body: {}", String::from_utf8_lossy(&bytes));
        util::respond(out, 200, "ok");
    }
}
