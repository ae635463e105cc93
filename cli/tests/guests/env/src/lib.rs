//! Answers with its whole environment, one `KEY=value` per line, sorted.
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Env;
wasi::http::proxy::export!(Env);

impl wasi::exports::http::incoming_handler::Guest for Env {
    fn handle(_: IncomingRequest, out: ResponseOutparam) {
        let mut vars: Vec<String> = std::env::vars()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        vars.sort();
        util::respond(out, 200, &vars.concat());
    }
}
