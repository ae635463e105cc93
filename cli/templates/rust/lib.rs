//! A wafer function in Rust, written with wafer-sdk.
//!
//! Build, deploy and call (in this folder, with `wafer up` running; NAME is the manifest's name):
//!
//! ```sh
//! wafer deploy                                  # builds first (cargo build --release ...)
//! curl http://127.0.0.1:8080/NAME                # {"message":"Hello from wafer!", ...}
//! curl -d '{"name": "Ada"}' http://127.0.0.1:8080/NAME
//! ```

use serde::{Deserialize, Serialize};
use wafer_sdk::{Json, Method, Request, RequestExt, Result};

#[derive(Deserialize)]
struct Greet {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    message: String,
    path: String,
}

async fn handle(mut request: Request) -> Result<Json<Greeting>> {
    let path = request.uri().path().to_string();
    let who = if request.method() == Method::POST {
        let greet: Greet = request.json().await?;
        greet.name
    } else {
        "wafer".to_string()
    };
    let greeting = wafer_sdk::config("GREETING").unwrap_or_else(|| "Hello".into());
    Ok(Json(Greeting {
        message: format!("{greeting} from {who}!"),
        path,
    }))
}

wafer_sdk::export!(handle);
