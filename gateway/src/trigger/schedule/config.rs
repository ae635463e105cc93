//! The `[[schedule]]` section of a manifest: its shape, defaults and rules, the validated
//! [`ScheduleTrigger`] the scheduler runs, and when its slots fall. Cron patterns are parsed by
//! `croner` and time zones come from `chrono-tz` (the IANA database), so daylight-saving changes
//! are theirs to get right, not ours.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// Runs of a failing slot, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Delay before the first retry of a failed run; it doubles for each retry after.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Largest `body`, in bytes.
pub const MAX_BODY: usize = 256 << 10;

/// What to do about slots that passed while no wafer was running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Let them go (counted as missed).
    #[default]
    Skip,
    /// Run once, for the latest of them, as soon as wafer is back.
    RunOnce,
}

/// One `[[schedule]]` as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// A name for `ce-source` and the metrics [default: `schedule-N`, N counting from 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
    pub cron: String,
    /// An IANA time zone, e.g. `Europe/Berlin` [default: `UTC`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The path the function sees [default: its route].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The body of each run's POST [default: empty].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<Missed>,
    /// Runs of a failing slot, the first included [default: [`DEFAULT_MAX_ATTEMPTS`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// A validated schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleTrigger {
    pub name: String,
    /// As written, for display.
    pub pattern: String,
    cron: Cron,
    pub timezone: Tz,
    pub path: Option<String>,
    pub body: String,
    pub content_type: Option<String>,
    pub missed: Missed,
    pub max_attempts: u32,
}

impl ScheduleTrigger {
    /// Checks a section; `index` counts from 0. Errors name the field.
    pub fn validate(section: &ScheduleSection, index: usize) -> Result<ScheduleTrigger, String> {
        let name = section
            .name
            .clone()
            .unwrap_or_else(|| format!("schedule-{}", index + 1));
        if name.is_empty()
            || name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "name: `{name}` must be lowercase letters, digits and '-' (at most 63)"
            ));
        }
        let cron = parse_cron(&section.cron).map_err(|e| format!("cron: {e}"))?;
        let timezone = match &section.timezone {
            None => Tz::UTC,
            Some(tz) => tz.parse::<Tz>().map_err(|_| {
                format!("timezone: `{tz}` is not an IANA time zone (e.g. `Europe/Berlin`, `UTC`)")
            })?,
        };
        if let Some(path) = &section.path
            && !path.starts_with('/')
        {
            return Err(format!("path: `{path}` must start with '/'"));
        }
        let body = section.body.clone().unwrap_or_default();
        if body.len() > MAX_BODY {
            return Err(format!("body: over {MAX_BODY} bytes"));
        }
        let max_attempts = section.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=100).contains(&max_attempts) {
            return Err(format!(
                "max_attempts: {max_attempts} is not between 1 and 100"
            ));
        }
        Ok(ScheduleTrigger {
            name,
            pattern: section.cron.trim().to_string(),
            cron,
            timezone,
            path: section.path.clone(),
            body,
            content_type: section.content_type.clone(),
            missed: section.missed.unwrap_or_default(),
            max_attempts,
        })
    }

    /// The first slot strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last slot at or before `at`, if any is after `since`.
    pub fn latest_between(&self, since: DateTime<Utc>, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.timezone);
        let latest = self
            .cron
            .find_previous_occurrence(&local, true)
            .ok()?
            .with_timezone(&Utc);
        (latest > since).then_some(latest)
    }

    /// The delay before retry `attempt` (1: the first retry).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        DEFAULT_RETRY_DELAY
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(MAX_RETRY_DELAY)
    }
}

/// A cron pattern: 5 fields, or 6 with seconds first; no year.
fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let fields = pattern.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`{pattern}` has {fields} fields; a pattern has 5 (minute hour day month weekday) or 6 (seconds first)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| format!("`{pattern}`: {e}"))
}

/// `ms` since the Unix epoch as a UTC time.
pub fn from_ms(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: Option<&str>) -> ScheduleTrigger {
        ScheduleTrigger::validate(
            &ScheduleSection {
                cron: cron.into(),
                timezone: tz.map(String::from),
                ..ScheduleSection::default()
            },
            0,
        )
        .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_daily_run_in_berlin_follows_daylight_saving() {
        // 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST); the
        // clocks went forward on 2026-03-29 and go back on 2026-10-25.
        let s = schedule("0 9 * * *", Some("Europe/Berlin"));
        assert_eq!(
            s.next_after(utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-03-27T12:00:00Z")),
            Some(utc("2026-03-28T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-10-24T12:00:00Z")),
            Some(utc("2026-10-25T08:00:00Z"))
        );
    }

    #[test]
    fn a_slot_inside_the_skipped_hour_runs_once_and_a_repeated_hour_once() {
        // 02:30 does not exist in Berlin on 2026-03-29 (02:00 -> 03:00) and happens twice on
        // 2026-10-25 (03:00 -> 02:00). Either way the job runs once that day.
        let s = schedule("30 2 * * *", Some("Europe/Berlin"));
        let mut t = utc("2026-03-28T12:00:00Z");
        let mut runs = Vec::new();
        for _ in 0..2 {
            t = s.next_after(t).unwrap();
            runs.push(t);
        }
        assert_eq!(runs[0].date_naive().to_string(), "2026-03-29");
        assert_eq!(runs[1].date_naive().to_string(), "2026-03-30");
        let mut t = utc("2026-10-24T12:00:00Z");
        let mut runs = Vec::new();
        for _ in 0..2 {
            t = s.next_after(t).unwrap();
            runs.push(t);
        }
        assert_eq!(runs[0].date_naive().to_string(), "2026-10-25");
        assert_eq!(runs[1], utc("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn six_fields_have_seconds_and_bad_patterns_say_why() {
        let s = schedule("*/10 * * * * *", None);
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:01Z")),
            Some(utc("2026-01-01T00:00:10Z"))
        );
        let every_minute = schedule("* * * * *", None);
        assert_eq!(
            every_minute.next_after(utc("2026-01-01T00:00:01Z")),
            Some(utc("2026-01-01T00:01:00Z"))
        );
        let bad = |cron: &str, tz: Option<&str>| {
            ScheduleTrigger::validate(
                &ScheduleSection {
                    cron: cron.into(),
                    timezone: tz.map(String::from),
                    ..ScheduleSection::default()
                },
                0,
            )
            .unwrap_err()
        };
        assert!(bad("* * *", None).contains("3 fields"));
        assert!(bad("0 0 * * * * 2026", None).contains("7 fields"));
        assert!(bad("61 * * * *", None).starts_with("cron:"));
        assert!(bad("* * * * *", Some("Mars/Olympus")).starts_with("timezone:"));
    }

    #[test]
    fn missed_slots_are_found_between_two_times() {
        let s = schedule("0 * * * *", None);
        assert_eq!(
            s.latest_between(utc("2026-01-01T00:30:00Z"), utc("2026-01-01T03:10:00Z")),
            Some(utc("2026-01-01T03:00:00Z"))
        );
        assert_eq!(
            s.latest_between(utc("2026-01-01T03:00:00Z"), utc("2026-01-01T03:10:00Z")),
            None
        );
    }
}
