//! Schedules: a schedule every second runs once per slot, with no duplicate ids, across a
//! restart in the middle, with `missed` honoured; `wafer list` shows the next run.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::support::queues::Collector;
use crate::support::*;

fn manifest(collector: &str, missed: &str) -> String {
    format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector}\"\nREPORT = \"id\"\n\
         [[schedule]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nmissed = \"{missed}\"\n"
    )
}

/// The slots `function`'s runs reported, after checking each was reported once, as a schedule.
fn slots(collector: &Collector, function: &str) -> BTreeSet<DateTime<Utc>> {
    let mut slots = BTreeSet::new();
    for (report, times) in collector.reports() {
        let report = String::from_utf8(report).unwrap();
        let (id, kind) = report.split_once(' ').unwrap();
        let Some(time) = id.strip_prefix(&format!("{function}:every-second:")) else {
            continue;
        };
        assert_eq!(kind, "wafer.schedule");
        assert_eq!(times, 1, "slot {id} ran {times} times");
        slots.insert(time.parse().unwrap());
    }
    slots
}

/// Every whole second from `from` to `to`, both included.
fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
    let mut all = BTreeSet::new();
    let mut t = from;
    while t <= to {
        all.insert(t);
        t += chrono::Duration::seconds(1);
    }
    all
}

fn second_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

#[tokio::test]
async fn a_schedule_runs_once_per_slot_across_a_restart() {
    let (collector, collector_url) = Collector::start(Duration::ZERO).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let collect = guest("collect");
    let mut wafer = Wafer::start_in(&data, &[]);
    wafer
        .deploy_ok("once", &collect, &manifest(&collector_url, "run-once"))
        .await;
    wafer
        .deploy_ok("skip", &collect, &manifest(&collector_url, "skip"))
        .await;
    let list = String::from_utf8_lossy(&wafer.cli(&["list"]).stdout).into_owned();
    let once_line = list.lines().find(|l| l.starts_with("once")).unwrap();
    assert!(
        once_line.contains(&Utc::now().format("%Y-%m-%dT").to_string()),
        "{list}"
    );

    // Up for a while, then stopped for long enough to miss slots.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let stopping = Utc::now();
    wafer.terminate();
    let stopped = Utc::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted = Utc::now();
    let wafer = Wafer::start_in(&data, &[]);
    let started = Utc::now();
    tokio::time::sleep(Duration::from_secs(14)).await;
    let checked = Utc::now();

    for (function, run_once) in [("once", true), ("skip", false)] {
        let ran = slots(&collector, function);
        let first = *ran.first().expect("runs");
        // Before the stop: every slot ran (a slot being run as the process stopped may be lost,
        // never doubled).
        let before: BTreeSet<_> = ran.iter().copied().filter(|t| *t <= stopped).collect();
        let expected = seconds(first, second_floor(stopping) - chrono::Duration::seconds(3));
        assert!(
            expected.is_subset(&before),
            "{function}: missing {:?}",
            expected.difference(&before).collect::<Vec<_>>()
        );
        assert!(before.len() >= 8, "{function}: {before:?}");
        // While down: nothing ran, except (run-once) the latest missed slot, once, at start.
        let down: Vec<_> = ran
            .iter()
            .copied()
            .filter(|t| *t > stopped && *t <= started)
            .collect();
        if run_once {
            assert_eq!(down.len(), 1, "{function}: {down:?}");
            assert!(down[0] >= second_floor(restarted), "{down:?} {restarted}");
        } else {
            assert!(down.is_empty(), "{function}: {down:?}");
        }
        // After the restart: every slot again.
        let after: BTreeSet<_> = ran.iter().copied().filter(|t| *t > started).collect();
        let expected = seconds(
            second_floor(started) + chrono::Duration::seconds(1),
            second_floor(checked) - chrono::Duration::seconds(3),
        );
        assert!(
            expected.is_subset(&after),
            "{function}: missing {:?}",
            expected.difference(&after).collect::<Vec<_>>()
        );
    }
    let missed = |f: &str| {
        format!(
            "wafer_schedule_runs_total{{function=\"{f}\",outcome=\"missed\",schedule=\"every-second\"}}"
        )
    };
    assert!(wafer.metric(&missed("skip")).await >= 3.0);
    assert!(wafer.metric(&missed("once")).await >= 2.0);
}

#[tokio::test]
async fn deploy_schedule_and_timezone_show_the_next_run() {
    let wafer = Wafer::start();
    let hello = guest("hello");
    let out = wafer.cli(&[
        "deploy",
        "--wasm",
        hello.to_str().unwrap(),
        "--name",
        "new-year",
        "--schedule",
        "0 0 1 1 *",
        "--timezone",
        "Europe/Berlin",
    ]);
    assert_ok(&out, "deploy --schedule");
    let info = info_of(&wafer, "new-year").await;
    let next: DateTime<Utc> = info["schedules"][0]["next_run"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Midnight of January 1st in Berlin (CET, UTC+1) is 23:00 UTC on December 31st.
    assert_eq!(next.format("%m-%dT%H:%M:%S").to_string(), "12-31T23:00:00");
    let list = String::from_utf8_lossy(&wafer.cli(&["list"]).stdout).into_owned();
    assert!(
        list.contains(&next.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "{list}"
    );

    let out = wafer.cli(&[
        "deploy",
        "--wasm",
        hello.to_str().unwrap(),
        "--name",
        "bad",
        "--schedule",
        "* * *",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schedule[0].cron"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
