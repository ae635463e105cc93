//! Queue test support: a RabbitMQ client for publishing and inspecting, unique queue names,
//! and a collector that functions report processed messages to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

pub use super::eventually;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A queue name no other test (or test run) uses.
pub fn unique_queue(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "test-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's own connection to the broker.
pub struct Broker {
    _connection: Connection,
    channel: Channel,
    /// Queues to delete when the test ends.
    created: Mutex<Vec<String>>,
}

impl Broker {
    pub async fn connect() -> Broker {
        let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ on 127.0.0.1:5672 (the test command starts one)");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Broker {
            _connection: connection,
            channel,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Declares a durable queue, as wafer will, and remembers to delete it (and the queues wafer
    /// derives from it) afterwards.
    pub async fn declare(&self, queue: &str) {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.created.lock().unwrap().push(queue.to_string());
    }

    /// Deletes `queue` (declared by wafer) and the queues wafer derives from it afterwards.
    pub fn delete_later(&self, queue: &str) {
        self.created.lock().unwrap().push(queue.to_string());
    }

    /// Publishes persistent messages and waits for the broker's confirms.
    pub async fn publish_all(&self, queue: &str, bodies: impl IntoIterator<Item = Vec<u8>>) {
        let mut confirms = Vec::new();
        for body in bodies {
            confirms.push(
                self.channel
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default()
                            .with_content_type("application/json".into())
                            .with_delivery_mode(2),
                    )
                    .await
                    .unwrap(),
            );
        }
        for confirm in confirms {
            confirm.await.unwrap();
        }
    }

    /// Publishes one persistent message with `headers` and waits for the broker's confirm.
    pub async fn publish_with_headers(&self, queue: &str, body: &[u8], headers: &[(&str, &str)]) {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), AMQPValue::LongString((*value).into()));
        }
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(table),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    pub async fn publish_json(&self, queue: &str, value: serde_json::Value) {
        self.publish_all(queue, [serde_json::to_vec(&value).unwrap()])
            .await;
    }

    /// Takes one message off a queue (acked), if there is one.
    pub async fn get(&self, queue: &str) -> Option<BasicGetMessage> {
        self.channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
    }

    /// How many ready messages a queue holds.
    pub async fn depth(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|q| q.message_count())
            .unwrap_or(0)
    }

    /// Deletes the test's queues and wafer's retry and dead-letter queues for them.
    pub async fn cleanup(&self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap());
        for queue in created {
            let mut doomed = vec![queue.clone(), format!("{queue}.dlq")];
            for ms in [
                1, 2, 5, 10, 20, 50, 100, 200, 400, 500, 800, 1000, 1600, 2000,
            ] {
                doomed.push(format!("{queue}.retry.{ms}"));
            }
            for name in doomed {
                let _ = self
                    .channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
    }
}

/// A header of a message as text or number.
pub fn header(message: &BasicGetMessage, name: &str) -> Option<String> {
    let headers = message.delivery.properties.headers().as_ref()?;
    Some(match headers.inner().get(name)? {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

/// An HTTP server that functions report processed messages to, counting each body.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<CollectorState>,
}

#[derive(Default)]
struct CollectorState {
    seen: Mutex<HashMap<Vec<u8>, u32>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Milliseconds each report is held before the answer (to make calls overlap).
    delay_ms: AtomicU64,
    /// Reports that have arrived, and how many are answered before the rest wait for
    /// [`Collector::resume`] (`u64::MAX`: no hold).
    arrived: AtomicU64,
    hold_after: AtomicU64,
    resumed: Option<tokio::sync::watch::Sender<bool>>,
}

impl Collector {
    /// Starts serving on a free port; returns the collector and its base URL.
    pub async fn start(delay: Duration) -> (Collector, String) {
        Collector::start_holding(delay, u64::MAX).await
    }

    /// Like [`Collector::start`], but the reports after the first `n` wait (and so do the calls
    /// making them) until [`Collector::resume`]: processing stops at a known point.
    pub async fn start_holding(delay: Duration, n: u64) -> (Collector, String) {
        let collector = Collector {
            inner: Arc::new(CollectorState {
                delay_ms: AtomicU64::new(delay.as_millis() as u64),
                hold_after: AtomicU64::new(n),
                resumed: Some(tokio::sync::watch::channel(false).0),
                ..CollectorState::default()
            }),
        };
        let app = axum::Router::new()
            .route("/record", post(record))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, url)
    }

    /// Every report seen, with how many times.
    pub fn reports(&self) -> HashMap<Vec<u8>, u32> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// Distinct messages seen.
    pub fn distinct(&self) -> usize {
        self.inner.seen.lock().unwrap().len()
    }

    pub fn seen(&self, body: &[u8]) -> u32 {
        self.inner
            .seen
            .lock()
            .unwrap()
            .get(body)
            .copied()
            .unwrap_or(0)
    }

    pub fn max_in_flight(&self) -> u64 {
        self.inner.max_in_flight.load(Ordering::Relaxed)
    }

    /// Reports that have arrived, answered or not.
    pub fn arrived(&self) -> u64 {
        self.inner.arrived.load(Ordering::Relaxed)
    }

    /// Reports being answered right now.
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Lets the held reports (and all later ones) through.
    pub fn resume(&self) {
        if let Some(resumed) = &self.inner.resumed {
            resumed.send_replace(true);
        }
    }
}

async fn record(State(collector): State<Collector>, body: axum::body::Bytes) -> &'static str {
    let state = &collector.inner;
    let now = state.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    state.max_in_flight.fetch_max(now, Ordering::AcqRel);
    let arrived = state.arrived.fetch_add(1, Ordering::AcqRel);
    if arrived >= state.hold_after.load(Ordering::Relaxed)
        && let Some(resumed) = &state.resumed
    {
        let _ = resumed.subscribe().wait_for(|resumed| *resumed).await;
    }
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    *state.seen.lock().unwrap().entry(body.to_vec()).or_default() += 1;
    state.in_flight.fetch_sub(1, Ordering::AcqRel);
    "ok"
}
