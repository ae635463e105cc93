//! Tries to read host files (/etc/passwd, the root directory, its own working directory) and
//! answers with what happened to each attempt.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Files;
wasi::http::proxy::export!(Files);

impl wasi::exports::http::incoming_handler::Guest for Files {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        let mut report = String::new();
        for path in ["/etc/passwd", "/", ".", "../../etc/passwd"] {
            let outcome = match std::fs::read_to_string(path) {
                Ok(text) => format!("read {} bytes", text.len()),
                Err(e) => format!("error: {e}"),
            };
            report.push_str(&format!("read {path}: {outcome}\n"));
            let listing = match std::fs::read_dir(path) {
                Ok(entries) => format!("{} entries", entries.count()),
                Err(e) => format!("error: {e}"),
            };
            report.push_str(&format!("list {path}: {listing}\n"));
        }
        let write = std::fs::write("/tmp/wafer-escape", b"x").map_err(|e| e.to_string());
        report.push_str(&format!("write /tmp/wafer-escape: {write:?}\n"));
        util::respond(out, 200, &report);
    }
}
