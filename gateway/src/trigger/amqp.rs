//! The queue trigger: RabbitMQ messages call a function, with SQS-like semantics.
//!
//! For each `[[queue]]` of a function, a consumer (see `consumer`) holds a connection with two
//! channels: one consuming with manual acks and `prefetch` unacknowledged messages at most, one
//! publishing with confirms. Each message (or batch) becomes one call through the same
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

mod consumer;
mod delivery;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wafer_worker::{Backend, Limits};

use crate::manifest::QueueSection;

/// The broker wafer uses when neither the trigger nor the server names one.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A validated `[[queue]]` trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueTrigger {
    /// None: the server's default broker.
    pub url: Option<String>,
    pub queue: String,
    pub declare: bool,
    pub quorum: bool,
    pub prefetch: u16,
    /// Calls in flight at once from this trigger.
    pub max_concurrency: u32,
    pub batch_size: u32,
    pub batch_window: Duration,
    pub max_attempts: u32,
    pub retry: Backoff,
    pub dead_letter: String,
}

/// Exponential backoff between deliveries of a failing message.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `attempt`-th delivery failed (attempts count from 1), rounded to whole
    /// milliseconds so that a handful of retry queues serve every message.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let ms = (self.initial.as_millis() as f64 * factor).min(self.max.as_millis() as f64);
        Duration::from_millis(ms.max(1.0) as u64)
    }
}

impl QueueTrigger {
    /// Checks one section; errors start with the field name.
    pub fn validate(section: &QueueSection, limits: &Limits) -> Result<QueueTrigger, String> {
        validate_queue_name("queue", &section.queue)?;
        if let Some(url) = &section.url {
            check_url(url).map_err(|e| format!("url: {e}"))?;
        }
        let batch_size = section.batch_size.unwrap_or(1);
        if !(1..=1000).contains(&batch_size) {
            return Err(format!(
                "batch_size: {batch_size} is out of range (1 to 1000)"
            ));
        }
        let default_prefetch = limits.concurrency.saturating_mul(batch_size);
        let prefetch = section
            .prefetch
            .unwrap_or(default_prefetch.min(u16::MAX as u32));
        if prefetch < batch_size || prefetch > u16::MAX as u32 {
            return Err(format!(
                "prefetch: {prefetch} is out of range ({batch_size}, the batch size, to {})",
                u16::MAX
            ));
        }
        let max_concurrency = section.max_concurrency.unwrap_or(limits.concurrency);
        if max_concurrency < 1 || max_concurrency > limits.concurrency {
            return Err(format!(
                "max_concurrency: {max_concurrency} is out of range (1 to the function's concurrency, {})",
                limits.concurrency
            ));
        }
        let batch_window = section.batch_window.map_or(Duration::ZERO, |d| d.0);
        if batch_window > Duration::from_secs(300) {
            return Err("batch_window: at most 5m".into());
        }
        let max_attempts = section.max_attempts.unwrap_or(5);
        if !(1..=1000).contains(&max_attempts) {
            return Err(format!(
                "max_attempts: {max_attempts} is out of range (1 to 1000)"
            ));
        }
        let initial = section.retry_delay.map_or(Duration::from_secs(1), |d| d.0);
        let max = section
            .retry_max_delay
            .map_or(Duration::from_secs(300), |d| d.0);
        let multiplier = section.retry_multiplier.unwrap_or(2.0);
        if initial < Duration::from_millis(1) || initial > Duration::from_secs(24 * 3600) {
            return Err("retry_delay: out of range (1ms to 24h)".into());
        }
        if max < initial || max > Duration::from_secs(7 * 24 * 3600) {
            return Err("retry_max_delay: out of range (retry_delay to 7 days)".into());
        }
        if !(1.0..=10.0).contains(&multiplier) {
            return Err(format!(
                "retry_multiplier: {multiplier} is out of range (1 to 10)"
            ));
        }
        let dead_letter = section
            .dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", section.queue));
        validate_queue_name("dead_letter", &dead_letter)?;
        if dead_letter == section.queue {
            return Err("dead_letter: must differ from the queue".into());
        }
        Ok(QueueTrigger {
            url: section.url.clone(),
            queue: section.queue.clone(),
            declare: section.declare.unwrap_or(true),
            quorum: section.quorum.unwrap_or(false),
            prefetch: prefetch as u16,
            max_concurrency,
            batch_size,
            batch_window,
            max_attempts,
            retry: Backoff {
                initial,
                multiplier,
                max,
            },
            dead_letter,
        })
    }

    /// The distinct delays the retry schedule uses: one retry queue each.
    pub fn retry_delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.max_attempts)
            .map(|a| self.retry.delay(a))
            .collect();
        delays.dedup();
        delays
    }
}

fn validate_queue_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err(format!("{field}: a queue name needs 1 to 200 bytes"));
    }
    if name.starts_with("amq.") {
        return Err(format!(
            "{field}: `{name}`: names starting with `amq.` are RabbitMQ's"
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{field}: `{}` contains control characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Checks an AMQP URL without revealing its password in the error.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err(format!(
            "`{}` must start with amqp:// or amqps://",
            redact_url(url)
        ));
    }
    lapin::uri::AMQPUri::from_str(url)
        .map(|_| ())
        .map_err(|e| format!("`{}` is not a valid AMQP URL: {e}", redact_url(url)))
}

/// The URL with its password replaced by `***`, for logs, errors and the API.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

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
#[derive(Debug, Serialize)]
pub struct TriggerStatus {
    pub function: String,
    pub queue: String,
    /// The broker, without its password.
    pub broker: String,
    pub connected: bool,
    pub last_error: Option<String>,
}

/// Everything one consumer needs.
pub(crate) struct Context {
    pub(crate) function: String,
    /// The function's current version, for dead-letter headers; updated on redeploy.
    pub(crate) version: Arc<AtomicU64>,
    /// The path the function sees (its route).
    pub(crate) path: String,
    pub(crate) trigger: QueueTrigger,
    pub(crate) url: String,
    /// `ce-source`: the broker, vhost and queue, without credentials.
    pub(crate) source: String,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) metrics: QueueSeries,
    pub(crate) state: ConsumerState,
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
    version: Arc<AtomicU64>,
    consumers: Vec<Running>,
}

/// All queue consumers of this gateway.
pub struct QueueTriggers {
    backend: Arc<dyn Backend>,
    default_url: String,
    metrics: QueueMetrics,
    running: Mutex<HashMap<String, FunctionConsumers>>,
}

impl QueueTriggers {
    pub fn new(
        backend: Arc<dyn Backend>,
        default_url: String,
        registry: &Registry,
    ) -> Result<QueueTriggers, prometheus::Error> {
        Ok(QueueTriggers {
            backend,
            default_url,
            metrics: QueueMetrics::new(registry)?,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Makes `function`'s consumers match `triggers`: unchanged ones keep running (calls go to
    /// the new version by name), changed or removed ones stop gracefully, new ones start.
    pub async fn sync(&self, function: &str, version: u64, path: &str, triggers: &[QueueTrigger]) {
        let (keep, stop, version_cell) = {
            let mut running = self.running.lock().unwrap();
            let entry = running.remove(function);
            let version_cell = entry
                .as_ref()
                .map(|e| e.version.clone())
                .unwrap_or_else(|| Arc::new(AtomicU64::new(version)));
            version_cell.store(version, Ordering::Relaxed);
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
                    version: version_cell,
                    consumers,
                },
            );
        }
    }

    fn start(
        &self,
        function: &str,
        version: &Arc<AtomicU64>,
        path: &str,
        trigger: &QueueTrigger,
    ) -> Running {
        let url = trigger
            .url
            .clone()
            .unwrap_or_else(|| self.default_url.clone());
        let context = Arc::new(Context {
            function: function.to_string(),
            version: version.clone(),
            path: path.to_string(),
            source: event_source(&url, &trigger.queue),
            metrics: self.metrics.series(function, &trigger.queue),
            trigger: trigger.clone(),
            url,
            backend: self.backend.clone(),
            state: ConsumerState::default(),
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
    }

    /// Stops every consumer, each finishing its deliveries in flight (on shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.running.lock().unwrap().drain().collect();
        let stops = all
            .into_iter()
            .flat_map(|(_, e)| e.consumers)
            .map(Running::stop);
        futures::future::join_all(stops).await;
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

/// The queue trigger's Prometheus series.
struct QueueMetrics {
    received: IntCounterVec,
    succeeded: IntCounterVec,
    retried: IntCounterVec,
    dead_lettered: IntCounterVec,
    redelivered: IntCounterVec,
    duration: HistogramVec,
    connected: IntGaugeVec,
}

/// One (function, queue)'s series, resolved once.
pub(crate) struct QueueSeries {
    pub(crate) received: IntCounter,
    pub(crate) succeeded: IntCounter,
    pub(crate) retried: IntCounter,
    pub(crate) dead_lettered: IntCounter,
    pub(crate) redelivered: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) connected: IntGauge,
}

impl QueueMetrics {
    fn new(registry: &Registry) -> Result<QueueMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["function", "queue"])?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "wafer_queue_processing_seconds",
                "Time from taking a delivery (or batch) to settling it",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["function", "queue"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let connected = IntGaugeVec::new(
            Opts::new(
                "wafer_queue_consumer_connected",
                "1 while the trigger's consumer is connected and consuming",
            ),
            &["function", "queue"],
        )?;
        registry.register(Box::new(connected.clone()))?;
        Ok(QueueMetrics {
            received: counter(
                "wafer_queue_messages_received_total",
                "Messages delivered to wafer",
            )?,
            succeeded: counter(
                "wafer_queue_messages_succeeded_total",
                "Messages acked after the function succeeded",
            )?,
            retried: counter(
                "wafer_queue_messages_retried_total",
                "Messages sent to a retry queue",
            )?,
            dead_lettered: counter(
                "wafer_queue_messages_dead_lettered_total",
                "Messages sent to the dead-letter queue",
            )?,
            redelivered: counter(
                "wafer_queue_messages_redelivered_total",
                "Deliveries the broker flagged as redelivered",
            )?,
            duration,
            connected,
        })
    }

    fn series(&self, function: &str, queue: &str) -> QueueSeries {
        let labels = [function, queue];
        QueueSeries {
            received: self.received.with_label_values(&labels),
            succeeded: self.succeeded.with_label_values(&labels),
            retried: self.retried.with_label_values(&labels),
            dead_lettered: self.dead_lettered.with_label_values(&labels),
            redelivered: self.redelivered.with_label_values(&labels),
            duration: self.duration.with_label_values(&labels),
            connected: self.connected.with_label_values(&labels),
        }
    }

    /// Forgets a deleted function's series.
    fn remove(&self, function: &str, queues: &[String]) {
        for queue in queues {
            let labels = [function, queue.as_str()];
            let _ = self.received.remove_label_values(&labels);
            let _ = self.succeeded.remove_label_values(&labels);
            let _ = self.retried.remove_label_values(&labels);
            let _ = self.dead_lettered.remove_label_values(&labels);
            let _ = self.redelivered.remove_label_values(&labels);
            let _ = self.duration.remove_label_values(&labels);
            let _ = self.connected.remove_label_values(&labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(queue: &str) -> QueueSection {
        QueueSection {
            queue: queue.into(),
            ..QueueSection::default()
        }
    }

    #[test]
    fn defaults_follow_the_function() {
        let limits = Limits {
            concurrency: 4,
            ..Limits::default()
        };
        let t = QueueTrigger::validate(&section("orders"), &limits).unwrap();
        assert_eq!(t.prefetch, 4);
        assert_eq!(t.max_concurrency, 4);
        assert_eq!(t.dead_letter, "orders.dlq");
        assert_eq!(t.max_attempts, 5);
        assert!(t.declare && !t.quorum);
        let batched = QueueTrigger::validate(
            &QueueSection {
                batch_size: Some(10),
                ..section("orders")
            },
            &limits,
        )
        .unwrap();
        assert_eq!(batched.prefetch, 40);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=5).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        let t = QueueTrigger {
            retry: b,
            max_attempts: 6,
            ..QueueTrigger::validate(&section("q"), &Limits::default()).unwrap()
        };
        assert_eq!(t.retry_delays().len(), 4);
    }

    #[test]
    fn bad_fields_are_named_and_passwords_hidden() {
        let limits = Limits::default();
        let bad = |s: QueueSection| QueueTrigger::validate(&s, &limits).unwrap_err();
        assert!(bad(section("")).starts_with("queue:"));
        assert!(bad(section("amq.x")).starts_with("queue:"));
        let e = bad(QueueSection {
            url: Some("http://user:hunter2@host/".into()),
            ..section("q")
        });
        assert!(e.starts_with("url:") && !e.contains("hunter2"), "{e}");
        assert!(
            bad(QueueSection {
                batch_size: Some(0),
                ..section("q")
            })
            .starts_with("batch_size")
        );
        assert!(
            bad(QueueSection {
                prefetch: Some(70_000),
                ..section("q")
            })
            .starts_with("prefetch")
        );
        assert!(
            bad(QueueSection {
                max_attempts: Some(0),
                ..section("q")
            })
            .starts_with("max_attempts")
        );
        assert!(
            bad(QueueSection {
                max_concurrency: Some(17),
                ..section("q")
            })
            .starts_with("max_concurrency")
        );
        assert!(
            bad(QueueSection {
                retry_multiplier: Some(0.5),
                ..section("q")
            })
            .starts_with("retry_multiplier")
        );
        assert!(
            bad(QueueSection {
                dead_letter: Some("q".into()),
                ..section("q")
            })
            .starts_with("dead_letter")
        );
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host/"), "amqp://host/");
    }

    #[test]
    fn event_source_names_broker_vhost_and_queue() {
        assert_eq!(
            event_source("amqp://guest:guest@127.0.0.1:5672/%2f", "orders"),
            "amqp://127.0.0.1:5672/%2F/orders"
        );
    }
}
