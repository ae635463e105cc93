//! Guests that misbehave get a clear error, are discarded, and never stop others being served;
//! instances are reused while healthy; overload is refused with 429.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::support::{
    Gate, Wafer, error_of, eventually, get, guest, http, status_of, wait_for_idle,
};

/// A healthy function keeps answering next to a misbehaving one.
async fn assert_hello_serves(wafer: &Wafer) {
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
}

#[tokio::test]
async fn a_trapping_guest_gets_500_with_the_reason_and_its_panic_in_the_logs() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    wafer.deploy_ok("trap", &guest("trap"), "").await;
    for _ in 0..3 {
        let response = http().get(wafer.url("/trap")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["x-wafer-error"], "trap");
        let error = error_of(&response.text().await.unwrap());
        assert!(error.contains("function `trap` trapped"), "{error}");
        assert!(error.contains("panicked"), "{error}");
        assert_hello_serves(&wafer).await;
    }
    let out = wafer.cli(&["logs", "trap"]);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("boom: this fixture always panics"), "{logs}");
    assert!(logs.contains("wafer  function `trap` trapped"), "{logs}");
    // Each trap discarded its instance: three calls, three cold starts, nothing kept.
    let info: serde_json::Value = wafer
        .admin(Method::GET, "/_wafer/v1/functions/trap")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["status"]["instances_idle"], 0);
    let metrics = http()
        .get(wafer.url("/_wafer/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wafer_cold_starts_total{function=\"trap\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wafer_invocations_total{function=\"trap\",outcome=\"trap\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_spinning_guest_is_stopped_at_its_timeout_with_504() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    wafer
        .deploy_ok("spin", &guest("spin"), "[limits]\ntimeout = \"5s\"")
        .await;
    wafer
        .deploy_ok("sleep", &guest("sleep"), "[limits]\ntimeout = \"2s\"")
        .await;

    let spinning = tokio::spawn({
        let url = wafer.url("/spin");
        async move {
            let started = Instant::now();
            let response = http().get(url).send().await.unwrap();
            (
                response.status().as_u16(),
                response.text().await.unwrap(),
                started.elapsed(),
            )
        }
    });
    // While it spins, others are served: the answer comes before the spinner's timeout.
    assert_hello_serves(&wafer).await;
    assert!(
        !spinning.is_finished(),
        "hello was served only after the spin"
    );

    let (status, body, took) = spinning.await.unwrap();
    assert_eq!(status, 504);
    assert!(error_of(&body).contains("timed out after 5s"), "{body}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(30),
        "{took:?}"
    );

    // Blocked in a host call (a sleep) rather than spinning: stopped the same way.
    let (status, body) = get(&wafer.url("/sleep?ms=20000")).await;
    assert_eq!(status, 504);
    assert!(error_of(&body).contains("timed out after 2s"), "{body}");
    assert_eq!(get(&wafer.url("/sleep?ms=10")).await.0, 200);
}

#[tokio::test]
async fn a_guest_growing_past_its_memory_limit_gets_500_and_others_are_served() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    wafer
        .deploy_ok("grow", &guest("grow"), "[limits]\nmemory = \"32MiB\"")
        .await;
    for _ in 0..2 {
        let (status, body) = get(&wafer.url("/grow")).await;
        assert_eq!(status, 500);
        let error = error_of(&body);
        assert!(
            error.contains("exceeded its memory limit of 33554432 bytes"),
            "{error}"
        );
        assert_hello_serves(&wafer).await;
    }
}

#[tokio::test]
async fn a_guest_that_never_responds_gets_502() {
    let wafer = Wafer::start();
    wafer.deploy_ok("silent", &guest("no-response"), "").await;
    let response = http().get(wafer.url("/silent")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-wafer-error"], "no_response");
    assert!(error_of(&response.text().await.unwrap()).contains("without sending a response"));
}

#[tokio::test]
async fn overload_beyond_concurrency_and_queue_gets_429_with_retry_after() {
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "sleep",
            &guest("sleep"),
            "[limits]\nconcurrency = 2\nmax_queued = 1",
        )
        .await;
    // Two calls run, held open by their bodies; of four more, one waits for a free slot and the
    // other three are refused at once.
    let gate = Gate::new();
    let url = wafer.url("/sleep?hold=1&ms=0");
    let running: Vec<_> = (0..2).map(|_| gate.post(url.clone())).collect();
    eventually(Duration::from_secs(60), "two calls running", || async {
        status_of(&wafer, "sleep").await["instances_busy"] == 2
    })
    .await;
    let more: Vec<_> = (0..4)
        .map(|_| {
            let body = gate.body();
            let url = url.clone();
            tokio::spawn(async move {
                let response = http().post(url).body(body).send().await.unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                (response.status().as_u16(), retry_after)
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "three calls refused", || async {
        more.iter().filter(|call| call.is_finished()).count() == 3
    })
    .await;
    gate.open();
    let mut ok = 0;
    let mut throttled = 0;
    for call in running {
        assert_eq!(call.await.unwrap().0, 200);
        ok += 1;
    }
    for call in more {
        match call.await.unwrap() {
            (200, _) => ok += 1,
            (429, Some(retry_after)) => {
                assert_eq!(retry_after, "1");
                throttled += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Two run, one waits for a free slot, the other three are refused at once.
    assert_eq!((ok, throttled), (3, 3));
    let metrics = http()
        .get(wafer.url("/_wafer/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wafer_throttled_total{function=\"sleep\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn warm_instances_are_reused_up_to_the_reuse_limit() {
    let wafer = Wafer::start();
    wafer
        .deploy_ok("counter", &guest("calls"), "[scaling]\nreuse = 3")
        .await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(get(&wafer.url("/counter")).await.1);
    }
    // Globals persist across calls on one instance; after 3 calls it is replaced.
    assert_eq!(seen, ["1", "2", "3", "1", "2", "3", "1"]);

    wafer
        .deploy_ok("fresh", &guest("calls"), "[scaling]\nreuse = 1")
        .await;
    for _ in 0..3 {
        assert_eq!(get(&wafer.url("/fresh")).await.1, "1");
    }
}

#[tokio::test]
async fn a_guest_that_breaks_on_reuse_is_switched_to_fresh_instances_without_failing_a_call() {
    let wafer = Wafer::start();
    wafer.deploy_ok("once", &guest("reuse-once"), "").await;
    for _ in 0..5 {
        let (status, body) = get(&wafer.url("/once")).await;
        assert_eq!((status, body.as_str()), (200, "fresh instance\n"));
    }
    let info: serde_json::Value = wafer
        .admin(Method::GET, "/_wafer/v1/functions/once")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["status"]["fresh_instance_per_call"], true);
    let out = wafer.cli(&["logs", "once"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("serving every call from a fresh instance")
    );
}

#[tokio::test]
async fn idle_instances_are_dropped_after_the_idle_timeout() {
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "counter",
            &guest("calls"),
            "[scaling]\nidle_timeout = \"3s\"",
        )
        .await;
    assert_eq!(get(&wafer.url("/counter")).await.1, "1");
    assert_eq!(get(&wafer.url("/counter")).await.1, "2");
    assert_eq!(status_of(&wafer, "counter").await["instances_idle"], 1);
    // The reaper runs each second; `wait_for_idle` gives it a few past the idle timeout.
    wait_for_idle(&wafer, "counter", 0).await;
    // Scaled to zero: the next call is a cold start on a fresh instance.
    assert_eq!(get(&wafer.url("/counter")).await.1, "1");
}

#[tokio::test]
async fn min_instances_are_pre_warmed_kept_when_idle_and_back_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut wafer = Wafer::start_in(&data, &[]);
    wafer
        .deploy_ok(
            "kept",
            &guest("calls"),
            "[scaling]\nmin_instances = 2\nidle_timeout = \"1s\"",
        )
        .await;
    // Pre-warmed at deploy, before any call.
    wait_for_idle(&wafer, "kept", 2).await;
    assert_eq!(status_of(&wafer, "kept").await["cold_starts"], 0);
    // The first call is served warm: by an instance that has not served anyone yet.
    assert_eq!(get(&wafer.url("/kept")).await.1, "1");
    let status = status_of(&wafer, "kept").await;
    assert_eq!(
        (
            status["cold_starts"].as_u64(),
            status["warm_starts"].as_u64()
        ),
        (Some(0), Some(1))
    );
    // Idle well past the idle timeout: the reaper stops at the minimum.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status_of(&wafer, "kept").await["instances_idle"], 2);

    // With a fresh instance per call, each call uses a pre-warmed instance up, and the pool is
    // topped up again behind it.
    let wasm = guest("calls");
    let out = wafer.cli(&[
        "deploy",
        "--name",
        "fresh",
        "--wasm",
        wasm.to_str().unwrap(),
        "--min-instances",
        "1",
        "--reuse",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..3 {
        wait_for_idle(&wafer, "fresh", 1).await;
        assert_eq!(get(&wafer.url("/fresh")).await.1, "1");
    }
    assert_eq!(status_of(&wafer, "fresh").await["cold_starts"], 0);
    assert_eq!(
        wafer
            .metric("wafer_warm_starts_total{function=\"fresh\"}")
            .await,
        3.0
    );
    // Each retired instance served exactly one call.
    assert_eq!(
        wafer
            .metric("wafer_instance_calls_bucket{function=\"fresh\",le=\"1\"}")
            .await,
        3.0
    );

    // After a restart the minimum is back without a call.
    wafer.terminate();
    let wafer = Wafer::start_in(&data, &[]);
    wait_for_idle(&wafer, "kept", 2).await;
    assert_eq!(status_of(&wafer, "kept").await["cold_starts"], 0);

    // More than the function may ever have is a manifest error.
    let response = wafer
        .deploy(
            "toomany",
            &guest("calls"),
            "[limits]\nconcurrency = 4\n[scaling]\nmin_instances = 5",
        )
        .await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(error_of(&body).contains("scaling.min_instances"), "{body}");
}

/// `wafer_code_total` for one function and event (Prometheus sorts the labels by name).
async fn code_events(wafer: &Wafer, function: &str, event: &str) -> f64 {
    wafer
        .metric(&format!(
            "wafer_code_total{{event=\"{event}\",function=\"{function}\"}}"
        ))
        .await
}

#[tokio::test]
async fn idle_code_is_evicted_under_the_memory_budget_and_loaded_back_on_the_next_call() {
    // No room for code at all: whatever is idle for 5 s with no instances is evicted. (Long
    // enough that a reloaded function is not evicted again before the test reads its status.)
    let wafer = Wafer::start_with(&["--code-memory", "0", "--code-idle", "5s"]);
    let quick = "[scaling]\nidle_timeout = \"5s\"";
    wafer.deploy_ok("hello", &guest("hello"), quick).await;
    wafer.deploy_ok("svc", &guest("p3"), quick).await;
    wafer
        .deploy_ok("kept", &guest("hello"), "[scaling]\nmin_instances = 1")
        .await;
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
    assert_eq!(get(&wafer.url("/svc")).await.0, 200);

    for function in ["hello", "svc"] {
        eventually(Duration::from_secs(60), "code evicted", || async {
            let status = status_of(&wafer, function).await;
            status["code_loaded"] == false && status["instances_idle"] == 0
        })
        .await;
        eventually(Duration::from_secs(30), "eviction counted", || async {
            code_events(&wafer, function, "evicted").await == 1.0
        })
        .await;
    }
    // A function kept warm by min_instances keeps its code.
    let kept = status_of(&wafer, "kept").await;
    assert_eq!(kept["code_loaded"], true, "{kept}");

    // The next call loads the code back from its on-disk artifact (and cold-starts).
    for (function, path) in [("hello", "/hello"), ("svc", "/svc")] {
        let (code, body) = get(&wafer.url(path)).await;
        assert_eq!(code, 200, "{body}");
        let status = status_of(&wafer, function).await;
        assert_eq!(status["code_loaded"], true, "{status}");
        assert_eq!(status["cold_starts"], 2, "{status}");
        assert_eq!(code_events(&wafer, function, "reloaded").await, 1.0);
    }
}

#[tokio::test]
async fn a_call_whose_client_hangs_up_still_runs_to_completion() {
    let wafer = Wafer::start();
    wafer.deploy_ok("sleep", &guest("sleep"), "").await;
    // The client sends its request and hangs up once the call is running, long before the
    // guest answers.
    let addr = wafer.url.trim_start_matches("http://").to_string();
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut client,
        b"GET /sleep?ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(60), "the call running", || async {
        status_of(&wafer, "sleep").await["instances_busy"] == 1
    })
    .await;
    drop(client);
    // The call still finishes, and its instance goes back to the pool.
    eventually(Duration::from_secs(60), "the call finished", || async {
        let status = status_of(&wafer, "sleep").await;
        status["invocations_ok"] == 1 && status["instances_idle"] == 1
    })
    .await;
}
