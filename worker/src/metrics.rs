//! The worker's Prometheus metrics, with per-function handles resolved once at deploy so that the
//! request path never hashes label values.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::InvokeError;
use crate::stats::{CallStats, Recorder};

#[derive(Clone)]
pub(crate) struct Metrics {
    invocations: IntCounterVec,
    /// The same calls by version, so that a canary's error rate can be set beside the stable one.
    version_invocations: IntCounterVec,
    duration: HistogramVec,
    cold_starts: IntCounterVec,
    warm_starts: IntCounterVec,
    instantiate: HistogramVec,
    queue_wait: HistogramVec,
    instance_calls: HistogramVec,
    instances: IntGaugeVec,
    throttled: IntCounterVec,
    evictions: IntCounterVec,
    code: IntCounterVec,
    /// Compiled code held in memory, worker-wide.
    pub(crate) code_bytes: IntGauge,
    /// Each function's last hour of calls, for the console (shared by its versions).
    recorders: Arc<Mutex<HashMap<String, Arc<Recorder>>>>,
}

/// Calls one instance served before it was dropped: 1 is a fresh instance per call, the top
/// bucket is the default reuse limit.
const CALL_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 10_000.0,
];

/// Buckets from 50 µs to 30 s: warm calls are microseconds, timeouts are seconds.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub(crate) fn new(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let metrics = Metrics {
            invocations: IntCounterVec::new(
                Opts::new(
                    "wafer_invocations_total",
                    "Function calls by outcome: ok, or the kind of error",
                ),
                &["function", "outcome"],
            )?,
            version_invocations: IntCounterVec::new(
                Opts::new(
                    "wafer_version_invocations_total",
                    "Function calls by version and outcome: ok, or the kind of error",
                ),
                &["function", "version", "outcome"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "wafer_invocation_duration_seconds",
                    "Time from admission to the end of the guest's handler",
                )
                .buckets(BUCKETS.to_vec()),
                &["function"],
            )?,
            cold_starts: IntCounterVec::new(
                Opts::new(
                    "wafer_cold_starts_total",
                    "Calls that had to instantiate a fresh instance",
                ),
                &["function"],
            )?,
            warm_starts: IntCounterVec::new(
                Opts::new(
                    "wafer_warm_starts_total",
                    "Calls served by an instance that was already live (warm or pre-warmed)",
                ),
                &["function"],
            )?,
            instantiate: HistogramVec::new(
                HistogramOpts::new(
                    "wafer_instantiate_seconds",
                    "Time to instantiate a fresh instance",
                )
                .buckets(BUCKETS.to_vec()),
                &["function"],
            )?,
            queue_wait: HistogramVec::new(
                HistogramOpts::new(
                    "wafer_queue_wait_seconds",
                    "Time a call waited for one of its function's concurrency permits",
                )
                .buckets(BUCKETS.to_vec()),
                &["function"],
            )?,
            instance_calls: HistogramVec::new(
                HistogramOpts::new(
                    "wafer_instance_calls",
                    "Calls an instance served before it was dropped (reuse distribution)",
                )
                .buckets(CALL_BUCKETS.to_vec()),
                &["function"],
            )?,
            instances: IntGaugeVec::new(
                Opts::new("wafer_instances", "Live instances by state (idle or busy)"),
                &["function", "state"],
            )?,
            throttled: IntCounterVec::new(
                Opts::new(
                    "wafer_throttled_total",
                    "Calls refused because the function's concurrency and queue were full",
                ),
                &["function"],
            )?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "wafer_evictions_total",
                    "Warm instances dropped early to make room for another function",
                ),
                &["function"],
            )?,
            code: IntCounterVec::new(
                Opts::new(
                    "wafer_code_total",
                    "Compiled code dropped from memory after a long idle (evicted) and loaded back from its on-disk artifact (reloaded)",
                ),
                &["function", "event"],
            )?,
            code_bytes: IntGauge::new(
                "wafer_code_bytes",
                "Bytes of compiled code held in memory (the functions' code images)",
            )?,
            recorders: Arc::default(),
        };
        registry.register(Box::new(metrics.invocations.clone()))?;
        registry.register(Box::new(metrics.version_invocations.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.cold_starts.clone()))?;
        registry.register(Box::new(metrics.warm_starts.clone()))?;
        registry.register(Box::new(metrics.instantiate.clone()))?;
        registry.register(Box::new(metrics.queue_wait.clone()))?;
        registry.register(Box::new(metrics.instance_calls.clone()))?;
        registry.register(Box::new(metrics.instances.clone()))?;
        registry.register(Box::new(metrics.throttled.clone()))?;
        registry.register(Box::new(metrics.evictions.clone()))?;
        registry.register(Box::new(metrics.code.clone()))?;
        registry.register(Box::new(metrics.code_bytes.clone()))?;
        Ok(metrics)
    }

    /// The series of one version of `name` (most are the function's, shared by its versions).
    pub(crate) fn function(&self, name: &str, version: u64) -> FunctionMetrics {
        let version = version.to_string();
        let recorder = self
            .recorders
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone();
        FunctionMetrics {
            recorder,
            name: name.to_string(),
            invocations: self.invocations.clone(),
            ok: self.invocations.with_label_values(&[name, "ok"]),
            version_ok: self
                .version_invocations
                .with_label_values(&[name, &version, "ok"]),
            version_invocations: self.version_invocations.clone(),
            version,
            duration: self.duration.with_label_values(&[name]),
            cold_starts: self.cold_starts.with_label_values(&[name]),
            warm_starts: self.warm_starts.with_label_values(&[name]),
            instantiate: self.instantiate.with_label_values(&[name]),
            queue_wait: self.queue_wait.with_label_values(&[name]),
            instance_calls: self.instance_calls.with_label_values(&[name]),
            idle: self.instances.with_label_values(&[name, "idle"]),
            busy: self.instances.with_label_values(&[name, "busy"]),
            throttled: self.throttled.with_label_values(&[name]),
            evictions: self.evictions.with_label_values(&[name]),
            code_evicted: self.code.with_label_values(&[name, "evicted"]),
            code_reloaded: self.code.with_label_values(&[name, "reloaded"]),
        }
    }

    /// Drops a retired version's series.
    pub(crate) fn remove_version(&self, name: &str, version: u64) {
        let version = version.to_string();
        for outcome in std::iter::once("ok").chain(InvokeError::KINDS.iter().copied()) {
            let _ = self
                .version_invocations
                .remove_label_values(&[name, &version, outcome]);
        }
    }

    /// The function's last hour of calls, if it has been deployed here.
    pub(crate) fn stats(&self, name: &str) -> Option<CallStats> {
        let recorder = self.recorders.lock().unwrap().get(name).cloned()?;
        Some(recorder.snapshot())
    }

    /// Drops a deleted function's series so that churn does not grow the registry forever.
    pub(crate) fn remove(&self, name: &str) {
        self.recorders.lock().unwrap().remove(name);
        for outcome in std::iter::once("ok").chain(InvokeError::KINDS.iter().copied()) {
            let _ = self.invocations.remove_label_values(&[name, outcome]);
        }
        let _ = self.duration.remove_label_values(&[name]);
        let _ = self.cold_starts.remove_label_values(&[name]);
        let _ = self.warm_starts.remove_label_values(&[name]);
        let _ = self.instantiate.remove_label_values(&[name]);
        let _ = self.queue_wait.remove_label_values(&[name]);
        let _ = self.instance_calls.remove_label_values(&[name]);
        let _ = self.instances.remove_label_values(&[name, "idle"]);
        let _ = self.instances.remove_label_values(&[name, "busy"]);
        let _ = self.throttled.remove_label_values(&[name]);
        let _ = self.evictions.remove_label_values(&[name]);
        let _ = self.code.remove_label_values(&[name, "evicted"]);
        let _ = self.code.remove_label_values(&[name, "reloaded"]);
    }
}

/// One function's series.
#[derive(Clone)]
pub(crate) struct FunctionMetrics {
    name: String,
    version: String,
    invocations: IntCounterVec,
    version_invocations: IntCounterVec,
    pub(crate) ok: IntCounter,
    version_ok: IntCounter,
    duration: Histogram,
    pub(crate) cold_starts: IntCounter,
    pub(crate) warm_starts: IntCounter,
    pub(crate) instantiate: Histogram,
    recorder: Arc<Recorder>,
    pub(crate) queue_wait: Histogram,
    pub(crate) instance_calls: Histogram,
    pub(crate) idle: IntGauge,
    pub(crate) busy: IntGauge,
    pub(crate) throttled: IntCounter,
    pub(crate) evictions: IntCounter,
    pub(crate) code_evicted: IntCounter,
    pub(crate) code_reloaded: IntCounter,
}

impl FunctionMetrics {
    /// A call that ran and succeeded after `elapsed`.
    pub(crate) fn succeeded(&self, elapsed: Duration) {
        self.ok.inc();
        self.version_ok.inc();
        self.duration.observe(elapsed.as_secs_f64());
        self.recorder.call(elapsed, true);
    }

    /// A call that ran and failed after `elapsed`.
    pub(crate) fn ran_and_failed(&self, error: &InvokeError, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        self.recorder.call(elapsed, false);
        self.failed(error);
    }

    /// A call that had to start an instance.
    pub(crate) fn cold_start(&self) {
        self.cold_starts.inc();
        self.recorder.start(true);
    }

    /// A call that an instance already live took.
    pub(crate) fn warm_start(&self) {
        self.warm_starts.inc();
        self.recorder.start(false);
    }

    /// An instance that took `elapsed` to start (for a call or to pre-warm).
    pub(crate) fn instantiated(&self, elapsed: Duration) {
        self.instantiate.observe(elapsed.as_secs_f64());
        self.recorder.instantiated(elapsed);
    }

    /// Calls that failed, of every kind.
    pub(crate) fn failures(&self) -> u64 {
        InvokeError::KINDS
            .iter()
            .map(|kind| {
                self.invocations
                    .with_label_values(&[self.name.as_str(), kind])
                    .get()
            })
            .sum()
    }

    /// A call that failed, whether or not it ran (in the counters only).
    pub(crate) fn failed(&self, error: &InvokeError) {
        self.invocations
            .with_label_values(&[self.name.as_str(), error.kind()])
            .inc();
        self.version_invocations
            .with_label_values(&[self.name.as_str(), &self.version, error.kind()])
            .inc();
    }
}
