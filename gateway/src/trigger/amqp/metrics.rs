//! The queue trigger's Prometheus series, resolved once per (function, queue).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The queue trigger's Prometheus series.
pub(super) struct QueueMetrics {
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
    pub(super) fn new(registry: &Registry) -> Result<QueueMetrics, prometheus::Error> {
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

    pub(super) fn series(&self, function: &str, queue: &str) -> QueueSeries {
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
    pub(super) fn remove(&self, function: &str, queues: &[String]) {
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
