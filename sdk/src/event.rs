//! Queue messages as CloudEvents, and the answers the queue trigger understands.
//!
//! wafer delivers each queue message as an HTTP `POST` in CloudEvents binary mode: the body is
//! the message, `content-type` its type, and `ce-id`, `ce-source`, `ce-type`, `ce-time`,
//! `ce-specversion` plus one `ce-<name>` header per extension (the message's AMQP headers, and
//! `ce-attempt`, counting deliveries from 1). With a batch size above 1 the body is a JSON array
//! of events instead (`application/cloudevents-batch+json`). Parsing uses the official
//! `cloudevents-sdk`, so structured mode (`application/cloudevents+json`) works too.
//!
//! The function answers with an [`Outcome`] (or, for a batch, a [`BatchOutcome`] naming the
//! events that failed; the others are acked):
//!
//! | outcome | status | what the trigger does |
//! |---|---|---|
//! | `Outcome::Ok` | 200 | acks the message |
//! | `Outcome::Retry(why)` | 503 | redelivers it after a backoff, up to the trigger's `max_attempts`, then dead-letters it |
//! | `Outcome::Failed(why)` | 422 | dead-letters it at once: it will never succeed |
//!
//! Any 2xx acks, any 429 or 5xx (and a trap or timeout) retries, any other 4xx dead-letters.

use cloudevents::event::ExtensionValue;
pub use cloudevents::{AttributesReader, Data, Event};
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::{Error, IntoResponse, Json, Request, RequestExt, Response};

/// The content type of a batch of events.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// Reads events from a request.
#[allow(async_fn_in_trait)] // guests are single-threaded: no `Send` bound is wanted
pub trait EventRequestExt {
    /// The one event this request carries (binary or structured mode). 400 if there is none.
    async fn event(&mut self) -> Result<Event, Error>;
    /// The events of a batch request; a single event comes back as a batch of one.
    async fn events(&mut self) -> Result<Vec<Event>, Error>;
}

impl EventRequestExt for Request {
    async fn event(&mut self) -> Result<Event, Error> {
        let body = self.bytes().await?;
        parse_event(self.headers(), body)
    }

    async fn events(&mut self) -> Result<Vec<Event>, Error> {
        let body = self.bytes().await?;
        parse_events(self.headers(), body)
    }
}

/// Parses one event from HTTP headers and body.
pub fn parse_event(headers: &HeaderMap, body: Vec<u8>) -> Result<Event, Error> {
    cloudevents::binding::http::to_event(&decode_attributes(headers), body)
        .map_err(|e| Error::bad_request(format!("not a CloudEvent: {e}")))
}

/// The HTTP binding percent-encodes `ce-*` header values (a `%` travels as `%25`); the
/// cloudevents crate does not decode them, so this does.
fn decode_attributes(headers: &HeaderMap) -> HeaderMap {
    let mut decoded = headers.clone();
    for (name, value) in decoded.iter_mut() {
        if name.as_str().starts_with("ce-")
            && value.as_bytes().contains(&b'%')
            && let Ok(text) = value.to_str()
            && let Ok(plain) =
                http::HeaderValue::from_str(&crate::request::percent_decode_strict(text))
        {
            *value = plain;
        }
    }
    decoded
}

/// Parses a batch (or a single event, as a batch of one).
pub fn parse_events(headers: &HeaderMap, body: Vec<u8>) -> Result<Vec<Event>, Error> {
    let is_batch = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(BATCH_CONTENT_TYPE));
    if is_batch {
        serde_json::from_slice(&body)
            .map_err(|e| Error::bad_request(format!("not a CloudEvents batch: {e}")))
    } else {
        Ok(vec![parse_event(headers, body)?])
    }
}

/// Reading an event's data and wafer's extensions.
pub trait EventExt {
    /// The data as bytes (JSON data is serialized back).
    fn data_bytes(&self) -> Vec<u8>;
    /// The data parsed as JSON. The error is a 422: a message that does not parse never will.
    fn json<T: DeserializeOwned>(&self) -> Result<T, Error>;
    /// Which delivery of this message this is, from 1.
    fn attempt(&self) -> u32;
    /// An extension attribute as text.
    fn extension_str(&self, name: &str) -> Option<String>;
}

impl EventExt for Event {
    fn data_bytes(&self) -> Vec<u8> {
        match self.data() {
            Some(Data::Binary(bytes)) => bytes.clone(),
            Some(Data::String(text)) => text.clone().into_bytes(),
            Some(Data::Json(value)) => serde_json::to_vec(value).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let parsed = match self.data() {
            Some(Data::Json(value)) => serde_json::from_value(value.clone()),
            _ => serde_json::from_slice(&self.data_bytes()),
        };
        parsed.map_err(|e| {
            Error::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("event {} has invalid JSON data: {e}", self.id()),
            )
        })
    }

    fn attempt(&self) -> u32 {
        self.extension_str("attempt")
            .and_then(|a| a.parse().ok())
            .unwrap_or(1)
    }

    fn extension_str(&self, name: &str) -> Option<String> {
        self.extension(name).map(|v| match v {
            ExtensionValue::String(s) => s.clone(),
            ExtensionValue::Boolean(b) => b.to_string(),
            ExtensionValue::Integer(i) => i.to_string(),
        })
    }
}

/// How processing one queue message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: ack it.
    Ok,
    /// Failed for now (a dependency is down): redeliver after a backoff.
    Retry(String),
    /// Failed for good (the message is malformed): send it to the dead-letter queue.
    Failed(String),
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        match self {
            Outcome::Ok => StatusCode::OK.into_response(),
            Outcome::Retry(why) => Error::new(StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
            Outcome::Failed(why) => {
                Error::new(StatusCode::UNPROCESSABLE_ENTITY, why).into_response()
            }
        }
    }
}

/// The answer to a batch: which events failed; the rest are acked. The same idea as Lambda's
/// `batchItemFailures`, plus a wafer extension: an item marked `"retryable": false` goes to the
/// dead-letter queue at once instead of being retried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    failures: Vec<(String, bool)>,
}

impl BatchOutcome {
    pub fn new() -> BatchOutcome {
        BatchOutcome::default()
    }

    /// The event with this id failed for now: retry it.
    pub fn retry(&mut self, id: impl Into<String>) {
        self.failures.push((id.into(), true));
    }

    /// The event with this id failed for good: dead-letter it.
    pub fn reject(&mut self, id: impl Into<String>) {
        self.failures.push((id.into(), false));
    }

    /// Records what [`Outcome`] one event of the batch had.
    pub fn record(&mut self, id: impl Into<String>, outcome: &Outcome) {
        match outcome {
            Outcome::Ok => {}
            Outcome::Retry(_) => self.retry(id),
            Outcome::Failed(_) => self.reject(id),
        }
    }
}

impl IntoResponse for BatchOutcome {
    fn into_response(self) -> Response {
        let failures: Vec<_> = self
            .failures
            .into_iter()
            .map(|(id, retryable)| {
                if retryable {
                    serde_json::json!({ "itemIdentifier": id })
                } else {
                    serde_json::json!({ "itemIdentifier": id, "retryable": false })
                }
            })
            .collect();
        Json(serde_json::json!({ "batchItemFailures": failures })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn binary_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "msg-1"),
            ("ce-source", "amqp://127.0.0.1/%252F/orders"),
            ("ce-type", "order.created"),
            ("ce-time", "2026-11-28T10:00:00Z"),
            ("ce-attempt", "3"),
            ("ce-tenant", "acme"),
            ("content-type", "application/json"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u32,
    }

    #[test]
    fn binary_mode_event_with_extensions() {
        let event = parse_event(&binary_headers(), br#"{"id": 7}"#.to_vec()).unwrap();
        assert_eq!(event.id(), "msg-1");
        assert_eq!(event.ty(), "order.created");
        assert_eq!(event.source().to_string(), "amqp://127.0.0.1/%2F/orders");
        assert_eq!(event.attempt(), 3);
        assert_eq!(event.extension_str("tenant").as_deref(), Some("acme"));
        assert_eq!(event.json::<Order>().unwrap(), Order { id: 7 });
    }

    #[test]
    fn percent_encoded_attributes_are_decoded() {
        let mut h = binary_headers();
        h.insert(
            "ce-source",
            HeaderValue::from_static("amqp://127.0.0.1:5672/%252F/orders"),
        );
        h.insert("ce-tenant", HeaderValue::from_static("a%20b"));
        let event = parse_event(&h, b"{}".to_vec()).unwrap();
        assert_eq!(
            event.source().to_string(),
            "amqp://127.0.0.1:5672/%2F/orders"
        );
        assert_eq!(event.extension_str("tenant").as_deref(), Some("a b"));
    }

    #[test]
    fn invalid_data_is_a_422_and_no_event_is_a_400() {
        let event = parse_event(&binary_headers(), b"not json".to_vec()).unwrap();
        assert_eq!(
            event.json::<Order>().unwrap_err().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let err = parse_event(&HeaderMap::new(), b"{}".to_vec()).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn batches_parse_and_single_events_are_batches_of_one() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static(BATCH_CONTENT_TYPE));
        let body = br#"[
          {"specversion":"1.0","id":"a","source":"/q","type":"t","datacontenttype":"application/json","data":{"id":1}},
          {"specversion":"1.0","id":"b","source":"/q","type":"t","data_base64":"aGk="}
        ]"#;
        let events = parse_events(&h, body.to_vec()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].json::<Order>().unwrap(), Order { id: 1 });
        assert_eq!(events[1].data_bytes(), b"hi");
        assert_eq!(events[1].attempt(), 1);
        let one = parse_events(&binary_headers(), b"{}".to_vec()).unwrap();
        assert_eq!(one.len(), 1);
    }

    fn body_of(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let mut body = response.into_body();
        let bytes = futures_lite::future::block_on(body.contents())
            .unwrap()
            .to_vec();
        (status, String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn outcomes_map_to_the_statuses_the_trigger_expects() {
        assert_eq!(body_of(Outcome::Ok.into_response()).0, StatusCode::OK);
        let (status, body) = body_of(Outcome::Retry("db down".into()).into_response());
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"db down"}"#)
        );
        assert_eq!(
            body_of(Outcome::Failed("bad".into()).into_response()).0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let mut batch = BatchOutcome::new();
        batch.record("a", &Outcome::Ok);
        batch.record("b", &Outcome::Retry("later".into()));
        batch.record("c", &Outcome::Failed("never".into()));
        let (status, body) = body_of(batch.into_response());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            r#"{"batchItemFailures":[{"itemIdentifier":"b"},{"itemIdentifier":"c","retryable":false}]}"#
        );
    }
}
