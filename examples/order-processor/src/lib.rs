//! A queue consumer: orders arrive as CloudEvents from RabbitMQ, one per call or in batches.
//!
//! Build, deploy and feed it (from the repository root, with `wafer up` running; see
//! `examples/order-processor/README.md`):
//!
//! ```sh
//! wafer deploy examples/order-processor
//! wafer queue send orders '{"id": "o-1", "item": "tea", "quantity": 2}'
//! wafer logs order-processor                 # processed order o-1: 2 x tea (attempt 1)
//! ```
//!
//! What it does with an order, so that every queue path can be tried:
//! - a valid order is processed (one log line) and acked;
//! - `"flaky": N` fails with "retry" on the first N attempts, then succeeds;
//! - `"poison": true` always asks for a retry, so it ends in the dead-letter queue;
//! - data that is not an order, or a quantity of 0, is "failed": dead-lettered at once.

use serde::Deserialize;
use wafer_sdk::event::{BatchOutcome, Event, EventExt, EventRequestExt, Outcome};
use wafer_sdk::{AttributesReader, IntoResponse, Request, Response, event};

#[derive(Deserialize)]
struct Order {
    id: String,
    item: String,
    quantity: u32,
    #[serde(default)]
    flaky: u32,
    #[serde(default)]
    poison: bool,
}

fn process(event: &Event) -> Outcome {
    let order: Order = match event.json() {
        Ok(order) => order,
        Err(e) => return Outcome::Failed(e.message().to_string()),
    };
    let attempt = event.attempt();
    if order.quantity == 0 {
        return Outcome::Failed(format!("order {}: quantity must be at least 1", order.id));
    }
    if order.poison {
        return Outcome::Retry(format!("order {} is poison: it never succeeds", order.id));
    }
    if attempt <= order.flaky {
        return Outcome::Retry(format!(
            "order {}: flaky failure on attempt {attempt} of {}",
            order.id,
            order.flaky + 1
        ));
    }
    println!(
        "processed order {}: {} x {} (event {}, attempt {attempt})",
        order.id,
        order.quantity,
        order.item,
        event.id()
    );
    Outcome::Ok
}

async fn handle(mut request: Request) -> Response {
    let batch = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(event::BATCH_CONTENT_TYPE));
    let events = match request.events().await {
        Ok(events) => events,
        Err(e) => return e.into_response(),
    };
    if !batch {
        return process(&events[0]).into_response();
    }
    // In a batch, the answer names the events that failed; the others are acked.
    let mut outcome = BatchOutcome::new();
    for event in &events {
        let result = process(event);
        if let Outcome::Retry(why) | Outcome::Failed(why) = &result {
            eprintln!("event {}: {why}", event.id());
        }
        outcome.record(event.id(), &result);
    }
    outcome.into_response()
}

wafer_sdk::export!(handle);
