//! The schedule trigger: each `[[schedule]]` of a function calls it at every slot of its cron
//! pattern, as a CloudEvent POST (binary mode) like a queue message: `ce-type: wafer.schedule`,
//! `ce-source` naming the function and the schedule, `ce-time` the slot, `ce-id` unique per slot.
//!
//! At most one run per slot: before it runs a slot, a gateway claims it in a [`Ledger`]
//! ([`DiskLedger`] for `wafer up`, PostgreSQL for a cluster, where every gateway runs every
//! schedule and the ledger lets one of them through). A slot is claimed before it runs, so a
//! crash between the two loses that run rather than doubling it. A failed run (an error or a
//! status other than 2xx) is retried with backoff up to `max_attempts`. Slots that passed while
//! no gateway was running are skipped, or (`missed = "run-once"`) run once for the latest.

pub mod config;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use http::{HeaderValue, Method, header};
use http_body_util::BodyExt;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tokio::sync::watch;
use wafer_worker::{Backend, disk};

use self::config::{Missed, ScheduleTrigger, from_ms};
use crate::router::Target;
use crate::trace::{CallSpan, Trigger};

/// Where claimed slots are kept, shared by every gateway that runs the schedules.
pub trait Ledger: Send + Sync + 'static {
    /// The latest slot claimed for this schedule (ms since the epoch), if any.
    fn last<'a>(
        &'a self,
        function: &'a str,
        schedule: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, String>>;

    /// Claims `slot` unless it or a later one was claimed: true for exactly one caller per slot
    /// among every process sharing the ledger.
    fn claim<'a>(
        &'a self,
        function: &'a str,
        schedule: &'a str,
        slot: u64,
    ) -> BoxFuture<'a, Result<bool, String>>;

    /// Forgets a deleted function's slots, so that a new function of that name starts afresh.
    fn forget<'a>(&'a self, function: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// Claimed slots as files in the data directory, `<data>/schedules/<function>/<schedule>`, each
/// the latest slot claimed (written atomically). Only this process writes them.
pub struct DiskLedger {
    dir: PathBuf,
    /// Claims are check-then-write: one at a time.
    lock: Mutex<()>,
}

impl DiskLedger {
    pub fn open(data_dir: &Path) -> std::io::Result<DiskLedger> {
        let dir = data_dir.join("schedules");
        std::fs::create_dir_all(&dir)?;
        Ok(DiskLedger {
            dir,
            lock: Mutex::new(()),
        })
    }

    fn path(&self, function: &str, schedule: &str) -> PathBuf {
        self.dir.join(function).join(schedule)
    }

    fn read(&self, function: &str, schedule: &str) -> Result<Option<u64>, String> {
        let path = self.path(function, schedule);
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

impl Ledger for DiskLedger {
    fn last<'a>(
        &'a self,
        function: &'a str,
        schedule: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, String>> {
        Box::pin(std::future::ready(self.read(function, schedule)))
    }

    fn claim<'a>(
        &'a self,
        function: &'a str,
        schedule: &'a str,
        slot: u64,
    ) -> BoxFuture<'a, Result<bool, String>> {
        let claimed = (|| {
            let _one_at_a_time = self.lock.lock().unwrap();
            if self
                .read(function, schedule)?
                .is_some_and(|last| last >= slot)
            {
                return Ok(false);
            }
            let path = self.path(function, schedule);
            let failed = |e: std::io::Error| format!("{}: {e}", path.display());
            std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(failed)?;
            disk::atomic_write(&path, slot.to_string().as_bytes()).map_err(failed)?;
            Ok(true)
        })();
        Box::pin(std::future::ready(claimed))
    }

    fn forget<'a>(&'a self, function: &'a str) -> BoxFuture<'a, Result<(), String>> {
        let _one_at_a_time = self.lock.lock().unwrap();
        let dir = self.dir.join(function);
        let removed = match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", dir.display()))
            }
            _ => Ok(()),
        };
        Box::pin(std::future::ready(removed))
    }
}

/// The schedule trigger's series.
#[derive(Clone)]
struct ScheduleMetrics {
    /// Runs by outcome: `ok`, `failed` (every attempt failed), `missed` (no gateway was up).
    runs: IntCounterVec,
    /// From the slot to the first attempt's start.
    lag: HistogramVec,
}

impl ScheduleMetrics {
    fn new(registry: &Registry) -> Result<ScheduleMetrics, prometheus::Error> {
        let runs = IntCounterVec::new(
            Opts::new(
                "wafer_schedule_runs_total",
                "Scheduled runs by outcome: ok, failed (after every attempt), missed (while no gateway ran)",
            ),
            &["function", "schedule", "outcome"],
        )?;
        let lag = HistogramVec::new(
            HistogramOpts::new(
                "wafer_schedule_lag_seconds",
                "Time from a schedule's slot to the start of its run",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
            ]),
            &["function", "schedule"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(ScheduleMetrics { runs, lag })
    }
}

/// What one schedule's task needs.
struct Context {
    function: String,
    trigger: ScheduleTrigger,
    /// The function's route, the default path.
    route: String,
    target: Arc<ArcSwap<Target>>,
    backend: Arc<dyn Backend>,
    ledger: Arc<dyn Ledger>,
    metrics: ScheduleMetrics,
}

struct Running {
    trigger: ScheduleTrigger,
    route: String,
    stop: watch::Sender<bool>,
}

struct FunctionSchedules {
    target: Arc<ArcSwap<Target>>,
    running: Vec<Running>,
}

/// Every schedule this gateway runs.
pub struct Schedules {
    backend: Arc<dyn Backend>,
    ledger: Arc<dyn Ledger>,
    metrics: ScheduleMetrics,
    functions: Mutex<HashMap<String, FunctionSchedules>>,
}

impl Schedules {
    pub fn new(
        backend: Arc<dyn Backend>,
        ledger: Arc<dyn Ledger>,
        registry: &Registry,
    ) -> Result<Schedules, prometheus::Error> {
        Ok(Schedules {
            backend,
            ledger,
            metrics: ScheduleMetrics::new(registry)?,
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// Makes `function`'s running schedules match `schedules`: unchanged ones go on (their runs
    /// go to the versions `target` picks from now on), others stop (a run in progress
    /// finishes), new ones start.
    pub fn sync(&self, function: &str, target: Target, route: &str, schedules: &[ScheduleTrigger]) {
        let mut functions = self.functions.lock().unwrap();
        let entry = functions.remove(function);
        let target_cell = entry
            .as_ref()
            .map(|e| e.target.clone())
            .unwrap_or_else(|| Arc::new(ArcSwap::from_pointee(target.clone())));
        target_cell.store(Arc::new(target));
        let (mut keep, stop): (Vec<_>, Vec<_>) = entry
            .map(|e| e.running)
            .unwrap_or_default()
            .into_iter()
            .partition(|r| r.route == route && schedules.contains(&r.trigger));
        for old in stop {
            tracing::info!(function, schedule = %old.trigger.name, "stopping schedule");
            let _ = old.stop.send(true);
        }
        for trigger in schedules {
            if keep.iter().any(|r| &r.trigger == trigger) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let ctx = Arc::new(Context {
                function: function.to_string(),
                trigger: trigger.clone(),
                route: route.to_string(),
                target: target_cell.clone(),
                backend: self.backend.clone(),
                ledger: self.ledger.clone(),
                metrics: self.metrics.clone(),
            });
            tracing::info!(function, schedule = %trigger.name, cron = %trigger.pattern, timezone = %trigger.timezone, "starting schedule");
            tokio::spawn(run_schedule(ctx, stopped));
            keep.push(Running {
                trigger: trigger.clone(),
                route: route.to_string(),
                stop,
            });
        }
        if !keep.is_empty() {
            functions.insert(
                function.to_string(),
                FunctionSchedules {
                    target: target_cell,
                    running: keep,
                },
            );
        }
    }

    /// Stops every schedule of `function`.
    pub fn stop(&self, function: &str) {
        if let Some(entry) = self.functions.lock().unwrap().remove(function) {
            for running in entry.running {
                let _ = running.stop.send(true);
            }
        }
    }

    /// Stops `function`'s schedules and forgets their slots (on delete).
    pub async fn remove(&self, function: &str) {
        self.stop(function);
        if let Err(e) = self.ledger.forget(function).await {
            tracing::warn!(function, error = %e, "could not forget the schedules' slots");
        }
    }

    /// The functions with running schedules.
    pub fn functions(&self) -> Vec<String> {
        self.functions.lock().unwrap().keys().cloned().collect()
    }
}

/// One schedule, until it is stopped: the missed slot first (if any and asked for), then each
/// slot as it comes.
async fn run_schedule(ctx: Arc<Context>, mut stopped: watch::Receiver<bool>) {
    let started = Utc::now();
    catch_up(&ctx, started).await;
    let mut after = started;
    loop {
        let Some(slot) = ctx.trigger.next_after(after) else {
            tracing::info!(function = %ctx.function, schedule = %ctx.trigger.name, "no more slots");
            return;
        };
        let wait = (slot - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        after = slot;
        let ms = slot.timestamp_millis() as u64;
        match ctx.ledger.claim(&ctx.function, &ctx.trigger.name, ms).await {
            // A long run does not hold back the next slot.
            Ok(true) => {
                tokio::spawn(run_slot(ctx.clone(), slot));
            }
            Ok(false) => {
                tracing::debug!(function = %ctx.function, schedule = %ctx.trigger.name, %slot, "slot run elsewhere")
            }
            Err(e) => {
                tracing::warn!(function = %ctx.function, schedule = %ctx.trigger.name, %slot, error = %e, "could not claim a slot; skipping it")
            }
        }
    }
}

/// Slots between the last one claimed and `now`: counted as missed, and with `run-once` the
/// latest of them runs now.
async fn catch_up(ctx: &Arc<Context>, now: DateTime<Utc>) {
    let last = match ctx.ledger.last(&ctx.function, &ctx.trigger.name).await {
        Ok(Some(last)) => from_ms(last),
        // A new schedule has missed nothing.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(function = %ctx.function, schedule = %ctx.trigger.name, error = %e, "could not read the schedule's last run");
            return;
        }
    };
    let Some(latest) = ctx.trigger.latest_between(last, now) else {
        return;
    };
    let mut missed = 0u64;
    let mut t = last;
    while let Some(next) = ctx.trigger.next_after(t) {
        if next > latest || missed >= 10_000 {
            break;
        }
        missed += 1;
        t = next;
    }
    let run_once = ctx.trigger.missed == Missed::RunOnce;
    let skipped = if run_once { missed - 1 } else { missed };
    if skipped > 0 {
        ctx.metrics
            .runs
            .with_label_values(&[&ctx.function, &ctx.trigger.name, "missed"])
            .inc_by(skipped);
    }
    tracing::info!(function = %ctx.function, schedule = %ctx.trigger.name, missed, run_once, "slots passed while wafer was down");
    if run_once {
        let ms = latest.timestamp_millis() as u64;
        match ctx.ledger.claim(&ctx.function, &ctx.trigger.name, ms).await {
            Ok(true) => {
                tokio::spawn(run_slot(ctx.clone(), latest));
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(function = %ctx.function, schedule = %ctx.trigger.name, error = %e, "could not claim a missed slot")
            }
        }
    }
}

/// Runs one claimed slot, retrying a failure with backoff up to `max_attempts`.
async fn run_slot(ctx: Arc<Context>, slot: DateTime<Utc>) {
    let (function, schedule) = (ctx.function.as_str(), ctx.trigger.name.as_str());
    let lag = (Utc::now() - slot).to_std().unwrap_or(Duration::ZERO);
    ctx.metrics
        .lag
        .with_label_values(&[function, schedule])
        .observe(lag.as_secs_f64());
    for attempt in 1..=ctx.trigger.max_attempts {
        let version = ctx.target.load().split(None);
        let mut request = request(&ctx, slot, attempt);
        let span = CallSpan::start(
            Trigger::Schedule,
            function,
            version,
            request.uri().path(),
            "POST",
            &http::HeaderMap::new(),
        );
        span.inject(request.headers_mut());
        let outcome = match ctx.backend.invoke(function, version, request).await {
            Ok(response) => {
                span.answered(&response);
                let status = response.status();
                // The answer is read to the end so that the call completes.
                let _ = response.into_body().collect().await;
                if status.is_success() {
                    Ok(status)
                } else {
                    Err(format!("status {status}"))
                }
            }
            Err(e) => {
                span.failed(&e);
                Err(e.to_string())
            }
        };
        drop(span);
        match outcome {
            Ok(status) => {
                tracing::info!(function, schedule, %slot, attempt, version, status = status.as_u16(), ?lag, "scheduled run succeeded");
                ctx.metrics
                    .runs
                    .with_label_values(&[function, schedule, "ok"])
                    .inc();
                return;
            }
            Err(why) if attempt < ctx.trigger.max_attempts => {
                let delay = ctx.trigger.retry_delay(attempt);
                tracing::warn!(function, schedule, %slot, attempt, version, error = %why, ?delay, "scheduled run failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(why) => {
                tracing::error!(function, schedule, %slot, attempt, version, error = %why, "scheduled run failed; giving up");
                ctx.metrics
                    .runs
                    .with_label_values(&[function, schedule, "failed"])
                    .inc();
            }
        }
    }
}

/// The CloudEvent (binary mode) for one slot's attempt.
fn request(ctx: &Context, slot: DateTime<Utc>, attempt: u32) -> wafer_worker::Request {
    let time = slot.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let path = ctx.trigger.path.as_deref().unwrap_or(&ctx.route);
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, "localhost")
        .header("ce-specversion", "1.0")
        .header("ce-type", "wafer.schedule")
        .header("ce-source", event_source(&ctx.function, &ctx.trigger.name))
        .header(
            "ce-id",
            format!("{}:{}:{time}", ctx.function, ctx.trigger.name),
        )
        .header("ce-time", &time)
        .header("ce-attempt", attempt);
    if let Some(content_type) = &ctx.trigger.content_type
        && let Ok(value) = HeaderValue::from_str(content_type)
    {
        builder = builder.header(header::CONTENT_TYPE, value);
    }
    let body = Bytes::from(ctx.trigger.body.clone());
    builder
        .header(header::CONTENT_LENGTH, body.len())
        .body(wafer_worker::full_body(body))
        .expect("a valid request")
}

/// `ce-source` of a schedule's runs.
pub fn event_source(function: &str, schedule: &str) -> String {
    format!("/functions/{function}/schedules/{schedule}")
}
