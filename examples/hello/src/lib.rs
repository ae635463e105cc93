//! The smallest wafer function: a plain `wasi:http/incoming-handler`, no SDK.
//!
//! Build, deploy and call (from the repository root, with `wafer up` running):
//!
//! ```sh
//! wafer deploy examples/hello            # builds first if needed
//! curl http://127.0.0.1:8080/hello       # Hello from wafer! (GET /hello)
//! curl -d 'echo me' http://127.0.0.1:8080/hello/echo
//! wafer logs hello
//! ```
//!
//! `GET` answers a greeting (`GREETING` from the manifest's `[env]`); any other method echoes the
//! request body back, streaming. Each call logs one line to stdout, unless `QUIET` is set.

use std::io::Write as _;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasi::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let method = request.method();
        let method_name = match &method {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other(other) => other.as_str(),
        };
        // `QUIET` (any value) skips the log line: benchmarks set it on every server they compare.
        if std::env::var_os("QUIET").is_none() {
            println!("{method_name} {path}");
        }

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("stream is taken once");

        if matches!(method, Method::Get | Method::Head) {
            let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
            let _ = writeln!(out, "{greeting} from wafer! ({method_name} {path})");
        } else {
            // Echo the request body in chunks, never holding all of it.
            let incoming = request.consume().expect("body is consumed once");
            let input = incoming.stream().expect("stream is taken once");
            // Ends with Err(Closed) at the end of the body.
            while let Ok(chunk) = input.blocking_read(16 * 1024) {
                if out.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}
