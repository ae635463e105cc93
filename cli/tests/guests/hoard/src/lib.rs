//! Tries to make the host hold memory on its behalf, one way per `?case=`: endless empty writes
//! to stdout (`empty-stdout`) or to the response body (`empty-body`), a large body written
//! whatever the client reads (`fast-body`), a request body it never reads (`unread`), and
//! resources created and never dropped (`resources`: header fields, each holding 1 KiB, until
//! the host refuses one). Each answers with what it did.
use std::io::Write;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Empty writes as fast as the stream permits them (waiting when it says to, as a correct
/// guest does); how many were made.
fn empty_writes(stream: &wasi::io::streams::OutputStream) -> u32 {
    for n in 0..EMPTY_WRITES {
        match stream.check_write() {
            Ok(0) => stream.subscribe().block(),
            Ok(_) => {}
            Err(_) => return n,
        }
        if stream.write(&[]).is_err() {
            return n;
        }
    }
    EMPTY_WRITES
}

struct Hoard;
wasi::http::proxy::export!(Hoard);

/// Empty writes per call, each free to make for the guest.
const EMPTY_WRITES: u32 = 300_000;

impl wasi::exports::http::incoming_handler::Guest for Hoard {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match util::query(&request, "case").as_deref() {
            Some("empty-stdout") => {
                let stdout = wasi::cli::stdout::get_stdout();
                let written = empty_writes(&stdout);
                util::respond(out, 200, &format!("{written} empty writes to stdout\n"));
            }
            Some("empty-body") => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body is taken once");
                ResponseOutparam::set(out, Ok(response));
                let stream = body.write().expect("stream is taken once");
                empty_writes(&stream);
                let _ = stream.blocking_write_and_flush(b"done\n");
                drop(stream);
                let _ = OutgoingBody::finish(body, None);
            }
            Some("fast-body") => {
                // 512 MiB, as fast as the host takes it.
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body is taken once");
                ResponseOutparam::set(out, Ok(response));
                let mut stream = body.write().expect("stream is taken once");
                let chunk = [b'f'; 64 << 10];
                for _ in 0..(8 * 1024) {
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                }
                drop(stream);
                let _ = OutgoingBody::finish(body, None);
            }
            Some("unread") => util::respond(out, 200, "not read\n"),
            Some("resources") => {
                let value = vec![b'r'; 1024];
                let mut held = 0u32;
                loop {
                    let fields = Fields::new();
                    if fields.append("x-hoard", &value).is_err() {
                        break;
                    }
                    // Never dropped: the handle leaks, and so would the host's entry.
                    std::mem::forget(fields);
                    held += 1;
                    if held == 2_000_000 {
                        break;
                    }
                }
                let _ = std::io::stdout().flush();
                util::respond(out, 200, &format!("held {held}\n"));
            }
            _ => util::respond(
                out,
                400,
                "case=empty-stdout|empty-body|fast-body|unread|resources\n",
            ),
        }
    }
}
