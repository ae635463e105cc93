//! A small REST API in one function: a few routes, JSON in and out, 404s and 405s.
//!
//! Build, deploy and call (from the repository root, with `wafer up` running):
//!
//! ```sh
//! wafer deploy examples/json-api
//! curl http://127.0.0.1:8080/json-api/items             # the catalog
//! curl http://127.0.0.1:8080/json-api/items/2           # one item, or a 404
//! curl -d '{"numbers": [1, 2, 3.5]}' http://127.0.0.1:8080/json-api/stats
//! curl -d '{"name": "Ada"}' http://127.0.0.1:8080/json-api/greet
//! ```

use serde::{Deserialize, Serialize};
use wafer_sdk::{Error, IntoResponse, Json, Method, Request, RequestExt, Response, StatusCode};

#[derive(Serialize, Clone, Copy)]
struct Item {
    id: u32,
    name: &'static str,
    price_cents: u32,
}

const CATALOG: &[Item] = &[
    Item {
        id: 1,
        name: "green tea",
        price_cents: 450,
    },
    Item {
        id: 2,
        name: "oolong",
        price_cents: 620,
    },
    Item {
        id: 3,
        name: "matcha",
        price_cents: 980,
    },
];

#[derive(Deserialize)]
struct Numbers {
    numbers: Vec<f64>,
}

#[derive(Serialize)]
struct Stats {
    count: usize,
    sum: f64,
    mean: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Deserialize)]
struct Greet {
    name: String,
}

async fn handle(mut request: Request) -> Result<Response, Error> {
    // The function sees the full path; its route is the first segment.
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    let method = request.method().clone();
    match (segments.as_slice(), method) {
        (["items"], Method::GET) => Ok(Json(CATALOG).into_response()),
        (["items", id], Method::GET) => {
            let id: u32 = id
                .parse()
                .map_err(|_| Error::bad_request(format!("`{id}` is not an item id")))?;
            let item = CATALOG
                .iter()
                .find(|i| i.id == id)
                .ok_or_else(|| Error::not_found(format!("no item {id}")))?;
            Ok(Json(item).into_response())
        }
        (["stats"], Method::POST) => {
            let Numbers { numbers } = request.json().await?;
            let sum: f64 = numbers.iter().sum();
            let stats = Stats {
                count: numbers.len(),
                sum,
                mean: (!numbers.is_empty()).then(|| sum / numbers.len() as f64),
                min: numbers.iter().copied().reduce(f64::min),
                max: numbers.iter().copied().reduce(f64::max),
            };
            Ok(Json(stats).into_response())
        }
        (["greet"], Method::POST) => {
            let Greet { name } = request.json().await?;
            if name.trim().is_empty() {
                return Err(Error::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "name is empty",
                ));
            }
            let body = serde_json::json!({ "message": format!("Hello, {name}!") });
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        (["items"] | ["items", _] | ["stats"] | ["greet"], other) => Err(
            Error::method_not_allowed(format!("{other} is not allowed on {path}")),
        ),
        _ => Err(Error::not_found(format!("no route for {path}"))),
    }
}

wafer_sdk::export!(handle);
