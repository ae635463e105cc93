//! Counts the calls its instance has served, in a global: shows warm instance reuse (the count
//! grows from call to call) and what a fresh instance looks like (a new id, count 1).
//!
//! ```sh
//! wafer deploy examples/counter
//! curl http://127.0.0.1:8080/counter     # {"instance":"3f9c...","count":1}
//! curl http://127.0.0.1:8080/counter     # {"instance":"3f9c...","count":2}: the same instance
//! ```
//!
//! Its manifest keeps an instance for 20 calls (`reuse = 20`) and 30 s idle: after either, the
//! next call starts a fresh instance with a new id. Globals live only as long as an instance, as
//! in Lambda: keep what must survive elsewhere.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use wafer_sdk::{Json, Request};

static CALLS: AtomicU64 = AtomicU64::new(0);
static INSTANCE: OnceLock<String> = OnceLock::new();

#[derive(Serialize)]
struct Count {
    instance: String,
    count: u64,
}

async fn handle(_request: Request) -> Json<Count> {
    let instance = INSTANCE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        wafer_sdk::wstd::rand::get_random_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    Json(Count {
        instance: instance.clone(),
        count: CALLS.fetch_add(1, Ordering::Relaxed) + 1,
    })
}

wafer_sdk::export!(handle);
