//! Hostile guests, one behaviour each, called while a healthy function is hammered: each gets a
//! clear error (or is cut off), its instance is dropped, logs and host memory stay bounded, and
//! the healthy function never fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Wafer, error_of, eventually, get, guest, http, status_of};

#[tokio::test]
async fn hostile_guests_fail_alone_and_everyone_else_is_served() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    let fast = "[limits]\ntimeout = \"2s\"";
    for (name, fixture, manifest) in [
        ("recurse", "recurse", ""),
        // 100 MB of output takes a while on a loaded machine: what is asserted is that the call
        // completes and the logs stay bounded, not how fast.
        ("flood", "flood", "[limits]\ntimeout = \"10m\""),
        ("endless", "endless", fast),
        ("files", "files", ""),
        ("spin", "spin", fast),
        ("grow", "grow", ""),
        ("trap", "trap", ""),
    ] {
        wafer.deploy_ok(name, &guest(fixture), manifest).await;
    }

    // The healthy function is called without pause the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hammer = {
        let (stop, calls, failures) = (stop.clone(), calls.clone(), failures.clone());
        let url = wafer.url("/hello");
        tokio::spawn(async move {
            let client = http();
            while !stop.load(Ordering::Relaxed) {
                let ok = match client.get(&url).send().await {
                    Ok(r) => r.status() == 200 && r.text().await.is_ok(),
                    Err(_) => false,
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // Deep recursion: the stack overflows, the call fails cleanly.
    let (status, body) = get(&wafer.url("/recurse")).await;
    assert_eq!(status, 500);
    assert!(error_of(&body).contains("stack overflow"), "{body}");

    // 200 MB to stdout and stderr: the call completes, the logs keep a bounded share.
    let (status, body) = get(&wafer.url("/flood")).await;
    assert_eq!((status, body.as_str()), (200, "flooded\n"));
    let logs = wafer.logs("flood").await;
    assert!(logs.contains("output truncated"), "the budget is announced");
    assert!(logs.len() < 3 << 20, "{} bytes of logs kept", logs.len());

    // A body that never ends is cut off at the timeout.
    let started = Instant::now();
    let response = http().get(wafer.url("/endless")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await;
    assert!(
        body.is_err(),
        "the body ends with an error, not as if complete"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // Host files are out of reach.
    let (status, report) = get(&wafer.url("/files")).await;
    assert_eq!(status, 200);
    assert!(
        !report.contains("bytes") && !report.contains("entries"),
        "{report}"
    );
    assert!(report.contains("write /tmp/wafer-escape: Err"), "{report}");
    assert!(!std::path::Path::new("/tmp/wafer-escape").exists());

    // Two spinning calls at once, a gigabyte of memory attempted, a panic.
    let spins: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_owned(wafer.url("/spin"))))
        .collect();
    let (status, body) = get(&wafer.url("/grow")).await;
    assert_eq!(status, 500);
    assert!(error_of(&body).contains("memory limit"), "{body}");
    assert_eq!(get(&wafer.url("/trap")).await.0, 500);
    for spin in spins {
        assert_eq!(spin.await.unwrap().0, 504);
    }

    // How many calls fit depends on the machine; that every one succeeded does not.
    eventually(Duration::from_secs(60), "a healthy call", || async {
        calls.load(Ordering::Relaxed) > 0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    hammer.await.unwrap();
    let calls = calls.load(Ordering::Relaxed);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "out of {calls} healthy calls"
    );

    // Every hostile instance was dropped, and the host's memory stayed bounded.
    for name in ["recurse", "endless", "spin", "grow", "trap"] {
        assert_eq!(status_of(&wafer, name).await["instances_idle"], 0, "{name}");
    }
    let rss = wafer.rss();
    assert!(rss < 512 << 20, "wafer's RSS is {} MiB", rss >> 20);
}

async fn get_owned(url: String) -> (u16, String) {
    get(&url).await
}
