//! The `[[queue]]` section of a manifest: its shape, its defaults and its rules, and the
//! validated [`QueueTrigger`] the consumers run with. The manifest composes these sections; it
//! does not know what is in them.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wafer_worker::Limits;

use crate::units::HumanDuration;

/// The broker wafer uses when neither the trigger nor the server names one.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Whether wafer declares the queue it consumes.
pub const DEFAULT_DECLARE: bool = true;
/// Whether a queue wafer declares is a quorum queue.
pub const DEFAULT_QUORUM: bool = false;
/// Messages per call.
pub const DEFAULT_BATCH_SIZE: u32 = 1;
/// How long to wait to fill a batch.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::ZERO;
/// Deliveries before a failing message is dead-lettered (AWS suggests at least 5).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Delay before the first retry.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Growth of the delay from one retry to the next.
pub const DEFAULT_RETRY_MULTIPLIER: f64 = 2.0;
/// The longest retry delay.
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(300);

/// One `[[queue]]` trigger as written. See [`crate::trigger::amqp`] for what each field does;
/// the defaults are the consts above.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// The queue to consume.
    pub queue: String,
    /// `amqp://user:password@host:port/vhost`; default: the server's `WAFER_AMQP_URL`, else
    /// [`DEFAULT_AMQP_URL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether wafer declares the queue (durable) [default: [`DEFAULT_DECLARE`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declare: Option<bool>,
    /// Declare it as a quorum queue [default: [`DEFAULT_QUORUM`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<bool>,
    /// Unacknowledged messages in flight [default: the function's concurrency x batch_size].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<u32>,
    /// Calls this trigger makes at once [default: the function's concurrency, its maximum].
    /// Deliveries beyond it wait in wafer (up to `prefetch`) rather than being refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Messages per call [default: [`DEFAULT_BATCH_SIZE`]]; above 1 they arrive as a CloudEvents
    /// batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// How long to wait to fill a batch [default: [`DEFAULT_BATCH_WINDOW`], 0: take what is
    /// there].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_window: Option<HumanDuration>,
    /// Deliveries before a failing message is dead-lettered [default: [`DEFAULT_MAX_ATTEMPTS`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry [default: [`DEFAULT_RETRY_DELAY`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<HumanDuration>,
    /// Each further retry waits this many times longer [default: [`DEFAULT_RETRY_MULTIPLIER`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_multiplier: Option<f64>,
    /// The longest retry delay [default: [`DEFAULT_RETRY_MAX_DELAY`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max_delay: Option<HumanDuration>,
    /// Where messages go when they will not succeed (default: `<queue>.dlq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
}

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
        let batch_size = section.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
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
        let batch_window = section.batch_window.map_or(DEFAULT_BATCH_WINDOW, |d| d.0);
        if batch_window > Duration::from_secs(300) {
            return Err("batch_window: at most 5m".into());
        }
        let max_attempts = section.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=1000).contains(&max_attempts) {
            return Err(format!(
                "max_attempts: {max_attempts} is out of range (1 to 1000)"
            ));
        }
        let initial = section.retry_delay.map_or(DEFAULT_RETRY_DELAY, |d| d.0);
        let max = section
            .retry_max_delay
            .map_or(DEFAULT_RETRY_MAX_DELAY, |d| d.0);
        let multiplier = section.retry_multiplier.unwrap_or(DEFAULT_RETRY_MULTIPLIER);
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
            declare: section.declare.unwrap_or(DEFAULT_DECLARE),
            quorum: section.quorum.unwrap_or(DEFAULT_QUORUM),
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
}
