//! The queue trigger: RabbitMQ messages call a function, with SQS-like semantics.
//!
//! For each `[[queue]]` of a function, a consumer (see `consumer`) holds a channel on the
//! process's one connection to its broker (see `connection`), consuming with manual acks and
//! `prefetch` unacknowledged messages at most; retries and dead letters go out on one
//! publishing channel per connection, with confirms. Each message (or batch) becomes one call through the same
//! [`Backend`] as HTTP traffic, so the function's concurrency limit and timeout apply to both; at
//! most `max_concurrency` calls from one trigger run at once, and prefetched deliveries beyond
//! that wait for a turn rather than being refused.
//! What happens next is decided in one place (`delivery::decide`):
//!
//! - a 2xx acks the message (for a batch, `batchItemFailures` in the answer names the failures);
//! - a 429 or 5xx, a trap or a timeout retries it: it is republished to a retry queue
//!   `<queue>.retry.<ms>` whose TTL dead-letters it back to the source queue after the backoff,
//!   with the attempt count in the `x-wafer-attempt` header, and only then acked. Retry state
//!   lives in RabbitMQ, so it survives a wafer restart;
//! - another 4xx, or a retry past `max_attempts`, publishes it to the dead-letter queue with the
//!   last error in `x-wafer-error-*` headers, then acks it.
//!
//! Every republish waits for the broker's confirm before the original is acked, so a crash at any
//! point redelivers rather than loses (at least once). A lost connection is retried with
//! backoff, forever, re-declaring and resuming; the state shows in `/_wafer/healthz` and metrics.

pub mod config;
mod connection;
mod consumer;
mod delivery;
mod ledger;
mod metrics;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus::{IntGauge, Registry};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wafer_worker::Backend;

use self::config::{QueueTrigger, redact_url};
use self::connection::SharedConnection;
pub use self::ledger::DeliveryLedger;
use self::metrics::{QueueMetrics, QueueSeries};
use crate::router::Target;

/// A running consumer's state, for health checks.
#[derive(Debug, Default)]
pub(crate) struct ConsumerState {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl ConsumerState {
    pub(crate) fn connected(&self, gauge: &IntGauge) {
        self.connected.store(true, Ordering::Relaxed);
        *self.last_error.lock().unwrap() = None;
        gauge.set(1);
    }

    pub(crate) fn disconnected(&self, gauge: &IntGauge, error: String) {
        self.connected.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap() = Some(error);
        gauge.set(0);
    }
}

/// What `/_wafer/healthz` says about one trigger.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerStatus {
    pub function: String,
    pub queue: String,
    /// The broker, without its password.
    pub broker: String,
    pub connected: bool,
    pub last_error: Option<String>,
}

/// What the console shows about one trigger: its state and the messages waiting.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct QueueInfo {
    /// The worker whose consumer this is, on a cluster (each worker consumes every queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub queue: String,
    /// The broker, without its password.
    pub broker: String,
    pub connected: bool,
    pub last_error: Option<String>,
    /// Messages ready in the queue (not counting those delivered and not yet acked); absent
    /// if the broker did not say.
    pub messages: Option<u32>,
    pub dead_letter_queue: String,
    /// Messages in the dead-letter queue; absent if the broker did not say.
    pub dead_letters: Option<u32>,
}

/// How long the console waits for the broker to count a queue's messages.
const COUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Messages ready in `queue`, by a passive declare (which changes nothing) on a channel of its
/// own, since a missing queue closes the channel it was asked on.
async fn ready_messages(connection: &SharedConnection, queue: &str) -> Option<u32> {
    let count = async {
        let channel = connection.channel().await.ok()?;
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
            .await;
        let _ = channel.close(200, "counted".into()).await;
        declared.ok().map(|q| q.message_count())
    };
    tokio::time::timeout(COUNT_TIMEOUT, count)
        .await
        .ok()
        .flatten()
}

/// Everything one consumer needs.
pub(crate) struct Context {
    pub(crate) function: String,
    /// How each message picks the version it runs on; updated on every change.
    pub(crate) target: Arc<ArcSwap<Target>>,
    /// The path the function sees (its route).
    pub(crate) path: String,
    pub(crate) trigger: QueueTrigger,
    pub(crate) url: String,
    /// The process's connection to the trigger's broker.
    pub(crate) connection: Arc<SharedConnection>,
    /// `ce-source`: the broker, vhost and queue, without credentials.
    pub(crate) source: String,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) metrics: QueueSeries,
    pub(crate) state: ConsumerState,
    /// Counts deliveries that ended without an answer, across restarts.
    pub(crate) ledger: Arc<DeliveryLedger>,
}

struct Running {
    trigger: QueueTrigger,
    path: String,
    context: Arc<Context>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops consuming, lets the deliveries in flight finish (acked, retried or dead-lettered),
    /// and closes the connection.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct FunctionConsumers {
    target: Arc<ArcSwap<Target>>,
    consumers: Vec<Running>,
}

/// Where a gateway's queue triggers run.
pub enum TriggerSite {
    /// In this process (`wafer up`): the gateway keeps them in step with the records.
    Here(QueueTriggers),
    /// On a cluster's workers, which follow the records themselves; the gateway only asks
    /// them how the triggers stand.
    Workers(Arc<dyn QueueReports>),
}

/// Reports on a function's queue triggers, from wherever they run.
pub trait QueueReports: Send + Sync {
    fn queues(&self, function: &str) -> futures::future::BoxFuture<'static, Vec<QueueInfo>>;
}

/// All queue consumers of this gateway.
pub struct QueueTriggers {
    backend: Arc<dyn Backend>,
    default_url: String,
    metrics: QueueMetrics,
    running: Mutex<HashMap<String, FunctionConsumers>>,
    /// One connection per broker, shared by every trigger on it.
    connections: Mutex<HashMap<String, Arc<SharedConnection>>>,
    ledger: Arc<DeliveryLedger>,
}

impl QueueTriggers {
    /// Consumers calling `backend`, counting unanswered deliveries in `ledger`.
    pub fn new(
        backend: Arc<dyn Backend>,
        default_url: String,
        ledger: DeliveryLedger,
        registry: &Registry,
    ) -> Result<QueueTriggers, prometheus::Error> {
        Ok(QueueTriggers {
            backend,
            default_url,
            ledger: Arc::new(ledger),
            metrics: QueueMetrics::new(registry)?,
            running: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// Makes `function`'s consumers match `triggers`: unchanged ones keep running (messages go
    /// to the versions `target` picks from now on), changed or removed ones stop gracefully, new
    /// ones start.
    pub async fn sync(
        &self,
        function: &str,
        target: Target,
        path: &str,
        triggers: &[QueueTrigger],
    ) {
        let (keep, stop, version_cell) = {
            let mut running = self.running.lock().unwrap();
            let entry = running.remove(function);
            let version_cell = entry
                .as_ref()
                .map(|e| e.target.clone())
                .unwrap_or_else(|| Arc::new(ArcSwap::from_pointee(target.clone())));
            version_cell.store(Arc::new(target));
            let (keep, stop): (Vec<_>, Vec<_>) = entry
                .map(|e| e.consumers)
                .unwrap_or_default()
                .into_iter()
                .partition(|r| r.path == path && triggers.contains(&r.trigger));
            (keep, stop, version_cell)
        };
        for old in stop {
            tracing::info!(function, queue = %old.trigger.queue, "stopping queue consumer");
            old.stop().await;
        }
        self.close_unused().await;
        let mut consumers = keep;
        for trigger in triggers {
            if consumers.iter().any(|r| &r.trigger == trigger) {
                continue;
            }
            consumers.push(self.start(function, &version_cell, path, trigger));
        }
        if !consumers.is_empty() {
            self.running.lock().unwrap().insert(
                function.to_string(),
                FunctionConsumers {
                    target: version_cell,
                    consumers,
                },
            );
        }
    }

    fn start(
        &self,
        function: &str,
        target: &Arc<ArcSwap<Target>>,
        path: &str,
        trigger: &QueueTrigger,
    ) -> Running {
        let url = trigger
            .url
            .clone()
            .unwrap_or_else(|| self.default_url.clone());
        let connection = self
            .connections
            .lock()
            .unwrap()
            .entry(url.clone())
            .or_insert_with(|| Arc::new(SharedConnection::new(url.clone())))
            .clone();
        let context = Arc::new(Context {
            connection,
            function: function.to_string(),
            target: target.clone(),
            path: path.to_string(),
            source: event_source(&url, &trigger.queue),
            metrics: self.metrics.series(function, &trigger.queue),
            trigger: trigger.clone(),
            url,
            backend: self.backend.clone(),
            state: ConsumerState::default(),
            ledger: self.ledger.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        tracing::info!(function, queue = %trigger.queue, broker = %redact_url(&context.url), "starting queue consumer");
        let task = tokio::spawn(consumer::run(context.clone(), stopped));
        Running {
            trigger: trigger.clone(),
            path: path.to_string(),
            context,
            stop,
            task,
        }
    }

    /// Stops every consumer of `function` (on delete).
    pub async fn stop(&self, function: &str) {
        let entry = self.running.lock().unwrap().remove(function);
        if let Some(entry) = entry {
            let queues: Vec<String> = entry
                .consumers
                .iter()
                .map(|r| r.trigger.queue.clone())
                .collect();
            for running in entry.consumers {
                running.stop().await;
            }
            self.metrics.remove(function, &queues);
        }
        self.close_unused().await;
    }

    /// Closes the connections no running trigger uses any more.
    async fn close_unused(&self) {
        let unused: Vec<Arc<SharedConnection>> = {
            let mut connections = self.connections.lock().unwrap();
            let unused: Vec<String> = connections
                .iter()
                .filter(|(_, c)| Arc::strong_count(c) == 1)
                .map(|(url, _)| url.clone())
                .collect();
            unused
                .iter()
                .filter_map(|url| connections.remove(url))
                .collect()
        };
        for connection in unused {
            connection.close().await;
        }
    }

    /// Stops every consumer, each finishing its deliveries in flight (on shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.running.lock().unwrap().drain().collect();
        let stops = all
            .into_iter()
            .flat_map(|(_, e)| e.consumers)
            .map(Running::stop);
        futures::future::join_all(stops).await;
        self.close_unused().await;
    }

    /// `function`'s triggers with their queues' message counts, asked of the broker now.
    pub async fn queues(&self, function: &str) -> Vec<QueueInfo> {
        let contexts: Vec<Arc<Context>> = self
            .running
            .lock()
            .unwrap()
            .get(function)
            .map(|e| e.consumers.iter().map(|r| r.context.clone()).collect())
            .unwrap_or_default();
        let infos = contexts.into_iter().map(|c| async move {
            let (messages, dead_letters) = tokio::join!(
                ready_messages(&c.connection, &c.trigger.queue),
                ready_messages(&c.connection, &c.trigger.dead_letter),
            );
            QueueInfo {
                worker: None,
                queue: c.trigger.queue.clone(),
                broker: redact_url(&c.url),
                connected: c.state.connected.load(Ordering::Relaxed),
                last_error: c.state.last_error.lock().unwrap().clone(),
                messages,
                dead_letter_queue: c.trigger.dead_letter.clone(),
                dead_letters,
            }
        });
        futures::future::join_all(infos).await
    }

    pub fn status(&self) -> Vec<TriggerStatus> {
        let running = self.running.lock().unwrap();
        let mut all: Vec<TriggerStatus> = running
            .values()
            .flat_map(|e| &e.consumers)
            .map(|r| TriggerStatus {
                function: r.context.function.clone(),
                queue: r.trigger.queue.clone(),
                broker: redact_url(&r.context.url),
                connected: r.context.state.connected.load(Ordering::Relaxed),
                last_error: r.context.state.last_error.lock().unwrap().clone(),
            })
            .collect();
        all.sort_by(|a, b| (&a.function, &a.queue).cmp(&(&b.function, &b.queue)));
        all
    }
}

/// `amqp://host:port/vhost/queue`: where an event came from, without credentials.
fn event_source(url: &str, queue: &str) -> String {
    match lapin::uri::AMQPUri::from_str(url) {
        Ok(uri) => format!(
            "{}://{}:{}/{}/{}",
            if url.starts_with("amqps") {
                "amqps"
            } else {
                "amqp"
            },
            uri.authority.host,
            uri.authority.port,
            percent_encode(&uri.vhost),
            percent_encode(queue)
        ),
        Err(_) => format!("amqp:///{}", percent_encode(queue)),
    }
}

/// Percent-encodes everything but unreserved URI characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_source_names_broker_vhost_and_queue() {
        assert_eq!(
            event_source("amqp://guest:guest@127.0.0.1:5672/%2f", "orders"),
            "amqp://127.0.0.1:5672/%2F/orders"
        );
    }
}
