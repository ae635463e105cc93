//! One delivery (or batch) end to end: the CloudEvent request, the call, the verdict, and
//! settling each message (ack, retry queue or dead-letter queue, confirmed before the ack).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use sha2::{Digest, Sha256};
use wafer_worker::InvokeError;

use crate::trace::{CallSpan, Trigger};

use super::Context;
use super::ledger::Entry;

/// The header carrying how many times a message has been delivered to the function.
pub(super) const ATTEMPT_HEADER: &str = "x-wafer-attempt";
/// A quorum queue's count of a message's returned deliveries; dropped from every copy wafer
/// republishes, since it describes the original only.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// How much of a function's answer is read to decide (the rest is ignored).
const MAX_ANSWER: usize = 64 << 10;
/// CloudEvents attributes an AMQP header may not override as an extension.
const RESERVED: &[&str] = &[
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "attempt",
];

/// The retry queue for one backoff delay.
pub(super) fn retry_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", delay.as_millis())
}

/// Why a message is being retried or dead-lettered.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Failure {
    /// The HTTP status, or the kind of platform error (`trap`, `timeout`, ...).
    pub status: String,
    pub message: String,
}

/// What to do with one message.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Verdict {
    Ack,
    Retry(Failure),
    DeadLetter(Failure),
    /// Put it back as it was, without counting an attempt (wafer itself is not ready).
    Requeue,
}

/// Processes one batch (a single delivery unless the trigger batches).
pub(super) async fn process(ctx: Arc<Context>, publish: Arc<Channel>, batch: Vec<Delivery>) {
    let started = Instant::now();
    let metrics = &ctx.metrics;
    metrics.received.inc_by(batch.len() as u64);
    let redelivered = batch.iter().filter(|d| d.redelivered).count();
    if redelivered > 0 {
        metrics.redelivered.inc_by(redelivered as u64);
    }
    // Each message (or batch) runs on one version, by the function's split.
    let version = ctx.target.load().split(None);
    // Messages already delivered `max_attempts` times without an answer go to the dead-letter
    // queue without another run.
    let (batch, exhausted): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|delivery| {
            let count = Count::of(&ctx, &delivery);
            (delivery, count)
        })
        .partition(|(_, count)| count.attempt <= ctx.trigger.max_attempts);
    let dead = exhausted.into_iter().map(|(delivery, count)| {
        let failure = Failure {
            status: "redelivered".into(),
            message: format!(
                "delivered {} times without an answer (the process running it stopped, or lost \
                 the broker, during each of the last {}); max_attempts is {}",
                count.attempt - 1,
                count.unanswered,
                ctx.trigger.max_attempts
            ),
        };
        let verdict = Verdict::DeadLetter(failure);
        settle(
            &ctx,
            &publish,
            delivery,
            count.settled_at(),
            version,
            verdict,
        )
    });
    futures::future::join_all(dead).await;
    if batch.is_empty() {
        return;
    }
    for (_, count) in &batch {
        if let Some((entry, runs)) = &count.entry {
            ctx.ledger.starting(entry, *runs);
        }
    }
    let attempts: Vec<u32> = batch.iter().map(|(_, c)| c.attempt).collect();
    let deliveries: Vec<&Delivery> = batch.iter().map(|(d, _)| d).collect();
    let ids = event_ids(&deliveries);
    let mut request = if ctx.trigger.batch_size > 1 {
        batch_request(&ctx.path, &ctx.source, &deliveries, &ids, &attempts)
    } else {
        binary_request(&ctx.path, &ctx.source, deliveries[0], &ids[0], attempts[0])
    };
    let span = CallSpan::start(
        Trigger::Queue,
        &ctx.function,
        version,
        &ctx.path,
        "POST",
        &trace_context(deliveries[0]),
    );
    for delivery in &deliveries[1..] {
        span.link(&trace_context(delivery));
    }
    span.inject(request.headers_mut());
    let verdicts = match ctx.backend.invoke(&ctx.function, version, request).await {
        Ok(response) => {
            span.answered(&response);
            let status = response.status();
            let body = read_answer(response.into_body()).await;
            decide(status, &body, &ids, ctx.trigger.batch_size > 1)
        }
        Err(error) => {
            span.failed(&error);
            vec![verdict_for_error(&error); batch.len()]
        }
    };
    drop(span);
    let settles = batch
        .into_iter()
        .zip(verdicts)
        .map(|((delivery, count), verdict)| {
            settle(&ctx, &publish, delivery, count, version, verdict)
        });
    futures::future::join_all(settles).await;
    metrics.duration.observe(started.elapsed().as_secs_f64());
}

/// Which attempt a delivery is, counting both retries (the attempt header of the copy) and
/// earlier deliveries of this copy that ended without an answer.
pub(super) struct Count {
    pub attempt: u32,
    /// Earlier deliveries of this copy that ended without an answer.
    unanswered: u32,
    /// The ledger entry of a redelivered message, and the runs it had counted.
    entry: Option<(Entry, u32)>,
}

impl Count {
    fn of(ctx: &Context, delivery: &Delivery) -> Count {
        let header = attempt_of(delivery);
        // Quorum queues count returned deliveries themselves, across every consumer.
        let counted = header_int(delivery, DELIVERY_COUNT_HEADER).unwrap_or(0);
        if !delivery.redelivered && counted == 0 {
            return Count {
                attempt: header,
                unanswered: 0,
                entry: None,
            };
        }
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str())
            .filter(|id| !id.is_empty());
        let entry = Entry::new(&ctx.trigger.queue, id, &delivery.data, header);
        let runs = ctx.ledger.runs(&entry);
        // The first delivery writes nothing, so it counts once from the flag alone.
        let unanswered = counted.max(u32::from(delivery.redelivered) + runs);
        Count {
            attempt: header.saturating_add(unanswered),
            unanswered,
            entry: Some((entry, runs)),
        }
    }

    /// For a message settled without running: the attempts it has had.
    fn settled_at(self) -> Count {
        Count {
            attempt: self.attempt - 1,
            ..self
        }
    }
}

/// The attempt this copy is: 1 for a new message, more for one that came back from a retry.
fn attempt_of(delivery: &Delivery) -> u32 {
    header_int(delivery, ATTEMPT_HEADER).unwrap_or(1).max(1)
}

fn header_int(delivery: &Delivery, name: &str) -> Option<u32> {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name))
        .and_then(amqp_int)
}

fn amqp_int(value: &AMQPValue) -> Option<u32> {
    let n: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// Event ids: the message id when there is one, else a digest of the message (stable across
/// redeliveries); made unique within a batch.
fn event_ids(batch: &[&Delivery]) -> Vec<String> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .map(|d| {
            let base = match d.properties.message_id() {
                Some(id) if !id.as_str().is_empty() => id.to_string(),
                _ => {
                    let mut hash = Sha256::new();
                    hash.update(d.routing_key.as_str().as_bytes());
                    hash.update([0]);
                    hash.update(&d.data);
                    hex::encode(&hash.finalize()[..16])
                }
            };
            let mut id = base.clone();
            let mut n = 1;
            while !seen.insert(id.clone()) {
                n += 1;
                id = format!("{base}#{n}");
            }
            id
        })
        .collect()
}

/// The message's timestamp as RFC 3339, or now when it has none or one RFC 3339 cannot write
/// (past the year 9999: a publisher's timestamp is outside input).
fn event_time(delivery: &Delivery) -> String {
    const LAST_RFC3339_SECOND: u64 = 253_402_300_799;
    let time = match delivery.properties.timestamp() {
        Some(secs) if *secs <= LAST_RFC3339_SECOND => UNIX_EPOCH + Duration::from_secs(*secs),
        _ => SystemTime::now(),
    };
    humantime::format_rfc3339_millis(time).to_string()
}

fn event_type(delivery: &Delivery) -> String {
    delivery
        .properties
        .kind()
        .as_ref()
        .map(|k| k.to_string())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "wafer.amqp.message".to_string())
}

/// AMQP headers whose names are legal CloudEvents extension names, as text.
fn extensions(delivery: &Delivery) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(headers) = delivery.properties.headers() else {
        return out;
    };
    for (name, value) in headers.inner() {
        let name = name.as_str().to_ascii_lowercase();
        let legal = !name.is_empty()
            && name.len() <= 20
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && !RESERVED.contains(&name.as_str());
        if !legal {
            continue;
        }
        let text = match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.to_string(),
            AMQPValue::Boolean(b) => b.to_string(),
            AMQPValue::Timestamp(t) => t.to_string(),
            other => match amqp_int(other) {
                Some(n) => n.to_string(),
                None => continue,
            },
        };
        out.insert(name, text);
    }
    out
}

/// The trace context a message's sender put in its headers (`traceparent`, `tracestate`: the
/// CloudEvents distributed-tracing extension), as HTTP headers.
fn trace_context(delivery: &Delivery) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let extensions = extensions(delivery);
    for name in wafer_worker::TRACE_HEADERS {
        if let Some(value) = extensions
            .get(name)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(name, value);
        }
    }
    headers
}

/// Percent-encodes what the CloudEvents HTTP binding says header values must not carry raw.
fn header_value(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn base_request(path: &str, content_type: &str) -> http::request::Builder {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, header_value(content_type))
}

/// One message as a CloudEvent in binary content mode.
fn binary_request(
    path: &str,
    source: &str,
    delivery: &Delivery,
    id: &str,
    attempt: u32,
) -> wafer_worker::Request {
    let content_type = delivery
        .properties
        .content_type()
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let body = Bytes::copy_from_slice(&delivery.data);
    let mut request = base_request(path, &content_type)
        .header("ce-specversion", "1.0")
        .header("ce-id", header_value(id))
        .header("ce-source", header_value(source))
        .header("ce-type", header_value(&event_type(delivery)))
        .header("ce-time", header_value(&event_time(delivery)))
        .header("ce-attempt", attempt);
    for (name, value) in extensions(delivery) {
        request = request.header(format!("ce-{name}"), header_value(&value));
    }
    request
        .body(wafer_worker::full_body(body))
        .expect("valid request parts")
}

/// A batch as a JSON array of structured CloudEvents.
fn batch_request(
    path: &str,
    source: &str,
    batch: &[&Delivery],
    ids: &[String],
    attempts: &[u32],
) -> wafer_worker::Request {
    let events: Vec<serde_json::Value> = batch
        .iter()
        .zip(ids)
        .zip(attempts)
        .map(|((delivery, id), attempt)| {
            let mut event = serde_json::Map::new();
            for (name, value) in extensions(delivery) {
                event.insert(name, value.into());
            }
            event.insert("specversion".into(), "1.0".into());
            event.insert("id".into(), id.as_str().into());
            event.insert("source".into(), source.into());
            event.insert("type".into(), event_type(delivery).into());
            event.insert("time".into(), event_time(delivery).into());
            event.insert("attempt".into(), attempt.to_string().into());
            let content_type = delivery
                .properties
                .content_type()
                .as_ref()
                .map(|t| t.to_string());
            let json_data = content_type
                .as_deref()
                .filter(|t| t.contains("json"))
                .and_then(|_| serde_json::from_slice::<serde_json::Value>(&delivery.data).ok());
            match (json_data, std::str::from_utf8(&delivery.data)) {
                (Some(value), _) => {
                    event.insert("data".into(), value);
                }
                (None, Ok(text))
                    if content_type
                        .as_deref()
                        .is_some_and(|t| t.starts_with("text/")) =>
                {
                    event.insert("data".into(), text.into());
                }
                _ => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&delivery.data);
                    event.insert("data_base64".into(), encoded.into());
                }
            }
            if let Some(t) = content_type {
                event.insert("datacontenttype".into(), t.into());
            }
            serde_json::Value::Object(event)
        })
        .collect();
    let body = Bytes::from(serde_json::to_vec(&events).expect("JSON values serialize"));
    base_request(path, "application/cloudevents-batch+json")
        .body(wafer_worker::full_body(body))
        .expect("valid request parts")
}

/// Reads up to [`MAX_ANSWER`] bytes of the function's answer.
async fn read_answer(mut body: wafer_worker::Body) -> Vec<u8> {
    let mut answer = Vec::new();
    while answer.len() < MAX_ANSWER {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_ANSWER - answer.len();
                    answer.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    answer
}

/// The one place an HTTP answer becomes per-message verdicts.
///
/// 2xx acks (in batch mode, `batchItemFailures` lists the failures: retried, or dead-lettered
/// when marked `"retryable": false`; an id not in the batch fails the whole batch, as in Lambda);
/// 429 and 5xx retry; any other 4xx dead-letters; anything else retries.
pub(super) fn decide(status: StatusCode, body: &[u8], ids: &[String], batch: bool) -> Vec<Verdict> {
    let all = |v: Verdict| vec![v; ids.len()];
    let failure = || Failure {
        status: status.as_u16().to_string(),
        message: error_message(status, body),
    };
    if status.is_success() {
        if !batch {
            return all(Verdict::Ack);
        }
        return decide_batch(body, ids);
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return all(Verdict::Retry(failure()));
    }
    if status.is_client_error() {
        return all(Verdict::DeadLetter(failure()));
    }
    all(Verdict::Retry(failure()))
}

fn decide_batch(body: &[u8], ids: &[String]) -> Vec<Verdict> {
    let whole = |message: String| {
        vec![
            Verdict::Retry(Failure {
                status: "batch".into(),
                message,
            });
            ids.len()
        ]
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return vec![Verdict::Ack; ids.len()];
    }
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return vec![Verdict::Ack; ids.len()];
    };
    let Some(failures) = answer.get("batchItemFailures") else {
        return vec![Verdict::Ack; ids.len()];
    };
    let Some(failures) = failures.as_array() else {
        return whole("batchItemFailures is not a list".into());
    };
    let mut verdicts = vec![Verdict::Ack; ids.len()];
    for item in failures {
        let Some(id) = item.get("itemIdentifier").and_then(|v| v.as_str()) else {
            return whole(format!(
                "batch item failure without an itemIdentifier: {item}"
            ));
        };
        let Some(index) = ids.iter().position(|known| known == id) else {
            return whole(format!("batch item failure names unknown event `{id}`"));
        };
        let failure = Failure {
            status: "batch-item".into(),
            message: format!("the function reported event {id} as failed"),
        };
        let retryable = item
            .get("retryable")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        verdicts[index] = if retryable {
            Verdict::Retry(failure)
        } else {
            Verdict::DeadLetter(failure)
        };
    }
    verdicts
}

/// The message of a JSON `{"error": ...}` answer, else the start of the body, else the status.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    let text = from_json.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        text.chars()
            .take(500)
            .collect::<String>()
            .trim()
            .to_string()
    });
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        text
    }
}

fn verdict_for_error(error: &InvokeError) -> Verdict {
    match error {
        // Deleted mid-stream, or wafer stopping: not the message's fault.
        InvokeError::NotFound(_) | InvokeError::NoVersion { .. } | InvokeError::ShuttingDown => {
            Verdict::Requeue
        }
        other => Verdict::Retry(Failure {
            status: other.kind().to_string(),
            message: other.to_string(),
        }),
    }
}

/// Carries out a verdict. A republish is confirmed by the broker before the original is acked;
/// if it is not, the original goes back to the queue instead (so nothing is lost).
async fn settle(
    ctx: &Context,
    publish: &Channel,
    delivery: Delivery,
    count: Count,
    version: u64,
    verdict: Verdict,
) {
    let metrics = &ctx.metrics;
    let trigger = &ctx.trigger;
    let attempt = count.attempt;
    let requeued = verdict == Verdict::Requeue;
    let outcome = match verdict {
        Verdict::Ack => {
            metrics.succeeded.inc();
            ack(&delivery).await
        }
        Verdict::Requeue => give_back(ctx, publish, &delivery).await,
        Verdict::Retry(failure) if attempt < trigger.max_attempts => {
            let delay = trigger.retry.delay(attempt);
            let mut headers = headers_of(&delivery);
            headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt + 1));
            let queue = retry_queue(&trigger.queue, delay);
            tracing::debug!(function = %ctx.function, queue = %trigger.queue, attempt, ?delay, error = %failure.message, "retrying message");
            republish_then_ack(publish, &queue, &delivery, headers, Some(&metrics.retried)).await
        }
        Verdict::Retry(failure) | Verdict::DeadLetter(failure) => {
            let headers = dead_letter_headers(ctx, &delivery, (attempt, version), &failure);
            tracing::info!(function = %ctx.function, queue = %trigger.queue, attempt, error = %failure.message, "dead-lettering message");
            let queue = &trigger.dead_letter;
            republish_then_ack(
                publish,
                queue,
                &delivery,
                headers,
                Some(&metrics.dead_lettered),
            )
            .await
        }
    };
    match (outcome, count.entry) {
        // Given back without a run: the run recorded for it did not happen.
        (Ok(()), Some((entry, runs))) if requeued => ctx.ledger.restore(&entry, runs),
        (Ok(()), Some((entry, _))) => ctx.ledger.settled(&entry),
        (Ok(()), None) => {}
        // The channel is gone; the broker redelivers the message to the next consumer.
        (Err(error), _) => {
            tracing::debug!(function = %ctx.function, queue = %trigger.queue, %error, "could not settle a delivery")
        }
    }
}

/// Returns a message that was not run (wafer stopping, the function being replaced) to its
/// queue as it came: a confirmed copy at the queue's tail, then an ack of the original. A
/// plain requeue would mark it redelivered, and it would be charged a delivery it never had.
/// If the copy is not confirmed, the original is requeued after all.
pub(super) async fn give_back(
    ctx: &Context,
    publish: &Channel,
    delivery: &Delivery,
) -> Result<(), String> {
    let headers = headers_of(delivery);
    republish_then_ack(publish, &ctx.trigger.queue, delivery, headers, None).await
}

/// The headers a dead-lettered message carries: its own, plus why and where it failed.
fn dead_letter_headers(
    ctx: &Context,
    delivery: &Delivery,
    (attempt, version): (u32, u64),
    failure: &Failure,
) -> FieldTable {
    let mut headers = headers_of(delivery);
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
    headers.insert("x-wafer-attempts".into(), AMQPValue::LongUInt(attempt));
    headers.insert("x-wafer-error-status".into(), text(&failure.status));
    let message: String = failure.message.chars().take(4000).collect();
    headers.insert("x-wafer-error-message".into(), text(&message));
    headers.insert("x-wafer-function".into(), text(&ctx.function));
    headers.insert(
        "x-wafer-function-version".into(),
        AMQPValue::LongLongInt(version as i64),
    );
    headers.insert("x-wafer-source-queue".into(), text(&ctx.trigger.queue));
    headers.insert(
        "x-wafer-failed-at".into(),
        text(&humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
    );
    headers
}

/// Republishes a copy of `delivery` to `queue` and acks the original once the broker has
/// confirmed the copy (counting it in `republished`, if given); if it has not, the original goes
/// back to its queue (so nothing is lost).
async fn republish_then_ack(
    publish: &Channel,
    queue: &str,
    delivery: &Delivery,
    headers: FieldTable,
    republished: Option<&prometheus::IntCounter>,
) -> Result<(), String> {
    match republish(publish, queue, delivery, headers).await {
        Ok(()) => {
            if let Some(counter) = republished {
                counter.inc();
            }
            ack(delivery).await
        }
        Err(e) => Err(requeue_after(delivery, e).await),
    }
}

async fn ack(delivery: &Delivery) -> Result<(), String> {
    delivery
        .ack(BasicAckOptions::default())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn requeue(delivery: &Delivery) -> Result<(), String> {
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn requeue_after(delivery: &Delivery, error: String) -> String {
    tracing::warn!(%error, "republishing failed; returning the message to its queue");
    let _ = requeue(delivery).await;
    error
}

/// The headers a copy of `delivery` carries: its own, less the broker's delivery count.
fn headers_of(delivery: &Delivery) -> FieldTable {
    let Some(headers) = delivery.properties.headers() else {
        return FieldTable::default();
    };
    let mut kept = headers.inner().clone();
    kept.remove(DELIVERY_COUNT_HEADER);
    FieldTable::from(kept)
}

/// Publishes a copy of `delivery` (same body and properties, persistent, new headers) to
/// `queue` and waits for the broker to confirm it.
async fn republish(
    channel: &Channel,
    queue: &str,
    delivery: &Delivery,
    headers: FieldTable,
) -> Result<(), String> {
    let properties: BasicProperties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirm = channel
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &delivery.data,
            properties,
        )
        .await
        .map_err(|e| format!("publishing to {queue}: {e}"))?
        .await
        .map_err(|e| format!("confirming the publish to {queue}: {e}"))?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => {
            Err(format!("queue {queue} does not exist (message returned)"))
        }
        Confirmation::Nack(_) => Err(format!("the broker refused the publish to {queue}")),
        Confirmation::NotRequested => Err("publisher confirms are off".to_string()),
    }
}

/// Fuzzing what arrives from the broker (headers of any AMQP type and name, content types,
/// message ids, bodies) into CloudEvents, with proptest: building the event never panics and
/// always makes a valid HTTP request. `PROPTEST_CASES` sets the run's length.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn amqp_value() -> impl Strategy<Value = AMQPValue> {
        prop_oneof![
            any::<Vec<u8>>().prop_map(|b| AMQPValue::LongString(LongString::from(b))),
            "\\PC{0,40}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<u32>().prop_map(AMQPValue::LongUInt),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            any::<f64>().prop_map(AMQPValue::Double),
            Just(AMQPValue::Void),
        ]
    }

    fn delivery() -> impl Strategy<Value = Delivery> {
        let name = prop_oneof![
            "[a-z0-9]{0,24}",
            "\\PC{0,30}",
            Just("traceparent".to_string()),
            Just("x-wafer-attempt".to_string()),
            Just("x-delivery-count".to_string()),
            Just("id".to_string()),
        ];
        (
            proptest::collection::vec((name, amqp_value()), 0..12),
            proptest::option::of("\\PC{0,60}"),
            proptest::option::of("\\PC{0,60}"),
            proptest::option::of("\\PC{0,60}"),
            proptest::option::of(any::<u64>()),
            any::<Vec<u8>>(),
            any::<bool>(),
        )
            .prop_map(
                |(headers, content_type, id, kind, time, data, redelivered)| {
                    let mut table = FieldTable::default();
                    for (name, value) in headers {
                        if let Ok(name) = ShortString::try_new(name) {
                            table.insert(name, value);
                        }
                    }
                    let mut properties = BasicProperties::default().with_headers(table);
                    if let Some(t) = content_type {
                        properties = properties.with_content_type(ShortString::from(t));
                    }
                    if let Some(id) = id {
                        properties = properties.with_message_id(ShortString::from(id));
                    }
                    if let Some(kind) = kind {
                        properties = properties.with_type(ShortString::from(kind));
                    }
                    if let Some(time) = time {
                        properties = properties.with_timestamp(time);
                    }
                    let mut delivery = Delivery::mock(
                        1,
                        ShortString::from(""),
                        ShortString::from("q"),
                        redelivered,
                        data,
                    );
                    delivery.properties = properties;
                    delivery
                },
            )
    }

    proptest! {
        #[test]
        fn any_message_becomes_a_valid_cloudevent_request(
            batch in proptest::collection::vec(delivery(), 1..4),
            attempt in any::<u32>(),
            source in "\\PC{0,60}",
        ) {
            let batch: Vec<&Delivery> = batch.iter().collect();
            let ids = event_ids(&batch);
            prop_assert_eq!(ids.len(), batch.len());
            let unique: HashSet<&String> = ids.iter().collect();
            prop_assert_eq!(unique.len(), ids.len(), "event ids are unique within a batch");
            let one = binary_request("/f", &source, batch[0], &ids[0], attempt);
            prop_assert!(one.headers().contains_key("ce-id"));
            let attempts = vec![attempt; batch.len()];
            let many = batch_request("/f", &source, &batch, &ids, &attempts);
            prop_assert!(many.headers().contains_key(header::CONTENT_TYPE));
            for delivery in &batch {
                let _ = attempt_of(delivery);
                let _ = header_int(delivery, DELIVERY_COUNT_HEADER);
                let _ = trace_context(delivery);
                let _ = headers_of(delivery);
            }
        }

        #[test]
        fn any_text_becomes_a_header_value(text in "\\PC{0,200}") {
            let value = header_value(&text);
            prop_assert!(!text.is_empty() || value.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn statuses_map_to_verdicts() {
        let one = ids(1);
        assert_eq!(decide(StatusCode::OK, b"", &one, false), [Verdict::Ack]);
        assert_eq!(
            decide(StatusCode::NO_CONTENT, b"", &one, false),
            [Verdict::Ack]
        );
        let retry = decide(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error":"db down"}"#,
            &one,
            false,
        );
        assert_eq!(
            retry,
            [Verdict::Retry(Failure {
                status: "503".into(),
                message: "db down".into()
            })]
        );
        assert!(matches!(
            decide(StatusCode::TOO_MANY_REQUESTS, b"", &one, false)[0],
            Verdict::Retry(_)
        ));
        let dead = decide(StatusCode::UNPROCESSABLE_ENTITY, b"bad order", &one, false);
        assert_eq!(
            dead,
            [Verdict::DeadLetter(Failure {
                status: "422".into(),
                message: "bad order".into()
            })]
        );
        assert!(matches!(
            decide(StatusCode::FOUND, b"", &one, false)[0],
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn batch_item_failures() {
        let three = ids(3);
        let ok = decide(
            StatusCode::OK,
            br#"{"batchItemFailures": []}"#,
            &three,
            true,
        );
        assert_eq!(ok, vec![Verdict::Ack; 3]);
        let partial = decide(
            StatusCode::OK,
            br#"{"batchItemFailures":[{"itemIdentifier":"m1"},{"itemIdentifier":"m2","retryable":false}]}"#,
            &three,
            true,
        );
        assert_eq!(partial[0], Verdict::Ack);
        assert!(matches!(partial[1], Verdict::Retry(_)));
        assert!(matches!(partial[2], Verdict::DeadLetter(_)));
        let unknown = decide(
            StatusCode::OK,
            br#"{"batchItemFailures":[{"itemIdentifier":"nope"}]}"#,
            &three,
            true,
        );
        assert!(unknown.iter().all(|v| matches!(v, Verdict::Retry(_))));
        let plain = decide(StatusCode::OK, b"done", &three, true);
        assert_eq!(plain, vec![Verdict::Ack; 3]);
        let failed = decide(StatusCode::INTERNAL_SERVER_ERROR, b"", &three, true);
        assert!(failed.iter().all(|v| matches!(v, Verdict::Retry(_))));
    }

    #[test]
    fn platform_errors() {
        assert_eq!(
            verdict_for_error(&InvokeError::ShuttingDown),
            Verdict::Requeue
        );
        let timeout = verdict_for_error(&InvokeError::Timeout {
            function: "f".into(),
            timeout: Duration::from_secs(1),
        });
        assert!(
            matches!(timeout, Verdict::Retry(Failure { ref status, .. }) if status == "timeout")
        );
    }

    #[test]
    fn header_values_are_percent_encoded() {
        assert_eq!(header_value("a b\"c%dé"), "a%20b%22c%25d%C3%A9");
        assert_eq!(
            retry_queue("orders", Duration::from_millis(1500)),
            "orders.retry.1500"
        );
    }
}
