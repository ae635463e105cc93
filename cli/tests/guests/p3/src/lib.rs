//! A wasi:http 0.3 service (`wasi:http/handler`): waits `?ms=N` without blocking the instance,
//! so concurrent requests overlap on one instance, and reports what it saw: how many requests
//! were in flight on this instance at most, and how many it has served. Each call logs when it
//! starts; the body is read before the answer (so a test can hold a call open by holding its
//! body) and echoed; `?trap=1` panics and `?spin=1` never returns.
use std::cell::Cell;

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

wasip3::http::service::export!(Service);

struct Service;

thread_local! {
    static IN_FLIGHT: Cell<u32> = const { Cell::new(0) };
    static PEAK: Cell<u32> = const { Cell::new(0) };
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let calls = CALLS.get() + 1;
        CALLS.set(calls);
        let now = IN_FLIGHT.get() + 1;
        IN_FLIGHT.set(now);
        PEAK.set(PEAK.get().max(now));
        println!("p3 call {calls} started");
        let path = request.get_path_with_query().unwrap_or_default();
        let query = |key: &str| {
            let (_, query) = path.split_once('?')?;
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == key).then(|| v.to_string())
            })
        };
        if query("trap").is_some() {
            panic!("asked to trap");
        }
        if query("spin").is_some() {
            #[allow(clippy::empty_loop)]
            loop {}
        }
        let ms: u64 = query("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
        if ms > 0 {
            wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
        }
        let (_, request_done) = wit_future::new(|| Ok(()));
        let (mut body, _trailers) = Request::consume_body(request, request_done);
        let mut echoed = Vec::new();
        loop {
            let (result, chunk) = body.read(Vec::with_capacity(16 * 1024)).await;
            echoed.extend_from_slice(&chunk);
            if !matches!(result, wasip3::wit_bindgen::StreamResult::Complete(_)) {
                break;
            }
        }
        IN_FLIGHT.set(IN_FLIGHT.get() - 1);
        println!("p3 call {calls} waited {ms} ms");

        let mut text = format!("p3 peak={} calls={calls}\n", PEAK.get()).into_bytes();
        text.extend_from_slice(&echoed);
        let (mut tx, rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(rx), trailers_rx);
        drop(trailers_tx);
        wasip3::spawn_local(async move {
            tx.write_all(text).await;
        });
        Ok(response)
    }
}
