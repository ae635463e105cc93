//! Reports every queue message it gets to a collector (`COLLECTOR` in its environment, a URL
//! the test serves) before answering 200, so a test can count what was processed at least once
//! even across a crash. Answers 503 (retry) when the collector does not say 2xx. With
//! `REPORT=id` it reports each event's `ce-id` and `ce-type` instead of its data (for events
//! without data, such as scheduled runs); with `REPORT=version`, its data and ` v<VERSION>`.

use wafer_sdk::event::{AttributesReader, EventExt, EventRequestExt, Outcome};
use wafer_sdk::wstd::http::{Client, Method, Request as OutRequest};
use wafer_sdk::{IntoResponse, Request, Response};

async fn handle(mut request: Request) -> Response {
    let events = match request.events().await {
        Ok(events) => events,
        Err(e) => return e.into_response(),
    };
    let collector = wafer_sdk::config("COLLECTOR").unwrap_or_default();
    let mode = wafer_sdk::config("REPORT").unwrap_or_default();
    for event in &events {
        let report = match mode.as_str() {
            "id" => format!("{} {}", event.id(), event.ty()).into_bytes(),
            "version" => {
                let mut data = event.data_bytes();
                let version = wafer_sdk::config("VERSION").unwrap_or_default();
                data.extend_from_slice(format!(" v{version}").as_bytes());
                data
            }
            _ => event.data_bytes(),
        };
        let report = OutRequest::builder()
            .method(Method::POST)
            .uri(format!("{collector}/record"))
            .body(wafer_sdk::Body::from(report));
        let Ok(report) = report else {
            return Outcome::Failed("bad collector URL".into()).into_response();
        };
        match Client::new().send(report).await {
            Ok(answer) if answer.status().is_success() => {}
            Ok(answer) => {
                return Outcome::Retry(format!("collector said {}", answer.status()))
                    .into_response();
            }
            Err(e) => return Outcome::Retry(format!("collector unreachable: {e}")).into_response(),
        }
    }
    Outcome::Ok.into_response()
}

wafer_sdk::export!(handle);
