//! Hostile guests, one behaviour each, called while a healthy function is hammered: each gets a
//! clear error (or is cut off), its instance is dropped, logs and host memory stay bounded, and
//! the healthy function never fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Wafer, error_of, eventually, get, guest, http, status_of};

#[tokio::test]
async fn hostile_guests_fail_alone_and_everyone_else_is_served() {
    hostile_guests_fail_alone(&[], "cranelift").await;
}

/// The same guests on Winch's code (what big components run on until Cranelift's is ready):
/// its code keeps every limit too, the timeout and CPU slices (epochs), the stack and memory.
#[tokio::test]
async fn hostile_guests_fail_alone_on_the_baseline_tier_too() {
    hostile_guests_fail_alone(&["--compiler", "winch"], "winch").await;
}

async fn hostile_guests_fail_alone(args: &[&str], compiler: &str) {
    let wafer = Wafer::start_with(args);
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
        let status = status_of(&wafer, name).await;
        assert_eq!(status["instances_idle"], 0, "{name}");
        assert_eq!(status["compiler"], compiler, "{name}");
    }
    let rss = wafer.rss();
    assert!(rss < 512 << 20, "wafer's RSS is {} MiB", rss >> 20);
}

async fn get_owned(url: String) -> (u16, String) {
    get(&url).await
}

/// The most RSS wafer (`pid`) reaches while `work` runs, sampled every few milliseconds.
async fn peak_rss_during<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_of(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(rss_of(pid))
        })
    };
    let out = work.await;
    stop.store(true, Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Host memory a guest could drive: empty writes by the hundred thousand, a body written faster than
/// the client reads, a request body never read, resources never dropped. Each call either
/// finishes or fails cleanly, wafer's RSS stays within a bound while it runs, and repeating it
/// does not grow it further.
#[tokio::test]
async fn a_guest_cannot_make_the_host_hold_memory_for_it() {
    const BOUND: u64 = 192 << 20;
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "hoard",
            &guest("hoard"),
            "[limits]\ntimeout = \"5m\"\n[scaling]\nreuse = 1",
        )
        .await;
    let url = |case: &str| wafer.url(&format!("/hoard?case={case}"));
    assert_eq!(get(&url("unread")).await.0, 200);
    let pid = wafer.pid();
    let baseline = rss_of(pid);
    let mut peaks = Vec::new();
    for round in 0..2 {
        for case in ["empty-stdout", "empty-body", "resources"] {
            let ((status, body), peak) = peak_rss_during(pid, get(&url(case))).await;
            match case {
                // The table of resources fills, and the call traps instead of the host growing.
                "resources" => assert_eq!(status, 500, "{body}"),
                _ => assert_eq!(status, 200, "{case}: {body}"),
            }
            assert!(
                peak < baseline + BOUND,
                "{case} (round {round}): RSS peaked at {} MiB from {} MiB",
                peak >> 20,
                baseline >> 20
            );
            peaks.push((round, case, peak));
        }

        // Empty body writes to an HTTP/2 client that waits before it reads: each would be a
        // DATA frame queued without flow control.
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let (body, peak) = peak_rss_during(pid, async {
            let response = h2.get(url("empty-body")).send().await.unwrap();
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            tokio::time::sleep(Duration::from_secs(2)).await;
            response.text().await.unwrap()
        })
        .await;
        assert_eq!(body, "done\n");
        assert!(
            peak < baseline + BOUND,
            "empty-body over HTTP/2: {} MiB",
            peak >> 20
        );

        // A 512 MiB body, and a client that reads a little and then stops for a while.
        let (_, peak) = peak_rss_during(pid, async {
            let mut response = http().get(url("fast-body")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.chunk().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
        .await;
        assert!(peak < baseline + BOUND, "fast-body: {} MiB", peak >> 20);

        // A 256 MiB request body the guest never reads.
        let (status, peak) = peak_rss_during(pid, async {
            let chunks = (0..4096).map(|_| Ok::<_, std::io::Error>(vec![b'u'; 64 << 10]));
            let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
            match http().post(url("unread")).body(body).send().await {
                Ok(response) => response.status().as_u16(),
                // wafer may close the connection rather than read what nobody wants.
                Err(_) => 200,
            }
        })
        .await;
        assert_eq!(status, 200);
        assert!(peak < baseline + BOUND, "unread: {} MiB", peak >> 20);
    }
    // A second round costs no more than the first: nothing was kept from it.
    for (case, first) in peaks.iter().filter(|p| p.0 == 0).map(|p| (p.1, p.2)) {
        let second = peaks.iter().find(|p| p.0 == 1 && p.1 == case).unwrap().2;
        assert!(
            second < first + (32 << 20),
            "{case}: {} MiB, then {} MiB",
            first >> 20,
            second >> 20
        );
    }
    // Healthy calls still work, and the host's memory is back near where it started.
    assert_eq!(get(&url("unread")).await.0, 200);
    let after = rss_of(pid);
    eprintln!(
        "RSS from {} MiB: peaks {:?}, after {} MiB",
        baseline >> 20,
        peaks
            .iter()
            .map(|(r, c, p)| (r, c, p >> 20))
            .collect::<Vec<_>>(),
        after >> 20
    );
    assert!(
        after < baseline + BOUND,
        "RSS {} MiB after, from {} MiB; peaks {peaks:?}",
        after >> 20,
        baseline >> 20
    );
}

/// A function whose calls keep trapping, or spin on the CPU, has its calls moved to low-priority
/// threads (its log says so); they still run and answer there, under the same limits, and good
/// calls bring it back. Its neighbours are served all along.
#[tokio::test]
async fn a_function_that_keeps_trapping_or_spinning_runs_at_low_priority_until_it_behaves() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    wafer.deploy_ok("trap", &guest("trap"), "").await;
    wafer
        .deploy_ok("spin", &guest("spin"), "[limits]\ntimeout = \"1s\"")
        .await;

    for _ in 0..10 {
        let (status, body) = get(&wafer.url("/trap")).await;
        assert_eq!(status, 500, "{body}");
        assert!(error_of(&body).contains("trapped"), "{body}");
    }
    let logs = wafer.logs("trap").await;
    assert!(logs.contains("they run at low priority"), "{logs}");
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
    // At low priority its calls still run and answer; enough good ones bring it back.
    for _ in 0..30 {
        let (status, body) = get(&wafer.url("/trap?behave")).await;
        assert_eq!((status, body.as_str()), (200, "behaving\n"));
    }
    let logs = wafer.logs("trap").await;
    assert!(logs.contains("behave again"), "{logs}");

    // One spinning call is enough: the CPU it holds marks it while it runs. Its timeout still
    // stops it, and the next one, on the low-priority threads, the same way.
    for _ in 0..2 {
        let (status, body) = get(&wafer.url("/spin")).await;
        assert_eq!(status, 504, "{body}");
        assert!(error_of(&body).contains("timed out"), "{body}");
    }
    let logs = wafer.logs("spin").await;
    assert!(logs.contains("they run at low priority"), "{logs}");
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
}
