//! wasi:http 0.3 components (`wasi:http/handler`, the service world): detected at deploy, served
//! with several calls at once on one instance, failures and timeouts contained.

use std::time::{Duration, Instant};

use crate::support::{
    Gate, Wafer, assert_ok, error_of, eventually, get, guest, http, status_of, wait_for_idle,
};

/// `peak=N calls=M` from the fixture's first body line.
fn counters(body: &str) -> (u32, u32) {
    let line = body.lines().next().unwrap_or_default();
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` in {body:?}"))
    };
    (field("peak="), field("calls="))
}

#[tokio::test]
async fn a_0_3_instance_takes_concurrent_calls_up_to_its_limit() {
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "svc",
            &guest("p3"),
            "[limits]\nconcurrency = 16\n[scaling]\ninstance_concurrency = 2",
        )
        .await;
    let status = status_of(&wafer, "svc").await;
    assert_eq!(status["interface"], "wasi:http 0.3", "{status}");

    let (code, body) = get(&wafer.url("/svc")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(counters(&body), (1, 1));

    // Eight calls held open (by their bodies) until all have started: two per instance, so the
    // warm instance takes two and three more start.
    let gate = Gate::new();
    let calls: Vec<_> = (0..8).map(|_| gate.post(wafer.url("/svc"))).collect();
    eventually(Duration::from_secs(60), "8 calls running", || async {
        wafer.log_lines("svc", "started").await == 9
    })
    .await;
    gate.open();
    let mut peaks = Vec::new();
    for call in calls {
        let (code, body) = call.await.unwrap();
        assert_eq!(code, 200, "{body}");
        peaks.push(counters(&body).0);
    }
    assert_eq!(peaks, [2; 8], "calls at once on each instance");
    let status = status_of(&wafer, "svc").await;
    assert_eq!(status["cold_starts"], 4, "{status}");
    assert_eq!(status["warm_starts"], 5, "{status}");
    assert_eq!(status["invocations_ok"], 9, "{status}");
    wait_for_idle(&wafer, "svc", 4).await;

    // The guest's stdout reaches the function's log.
    let logs = wafer.logs("svc").await;
    assert!(logs.contains("p3 call 2 waited 0 ms"), "{logs}");

    // `wafer list` says what the function exports.
    let list = wafer.cli(&["list"]);
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(out.contains("wasi:http 0.3"), "{out}");
}

#[tokio::test]
async fn sixteen_concurrent_calls_share_one_0_3_instance_by_default() {
    let wafer = Wafer::start();
    wafer.deploy_ok("svc", &guest("p3"), "").await;
    let gate = Gate::new();
    let calls: Vec<_> = (0..16).map(|_| gate.post(wafer.url("/svc"))).collect();
    eventually(Duration::from_secs(60), "16 calls running", || async {
        wafer.log_lines("svc", "started").await == 16
    })
    .await;
    gate.open();
    let mut peaks = Vec::new();
    for call in calls {
        let (code, body) = call.await.unwrap();
        assert_eq!(code, 200, "{body}");
        peaks.push(counters(&body).0);
    }
    // The first call starts the instance; the others arrive while it starts or runs, and join
    // it instead of starting instances of their own.
    let status = status_of(&wafer, "svc").await;
    assert_eq!(status["cold_starts"], 1, "{status}");
    assert_eq!(peaks, [16; 16], "all ran at once on one instance; {status}");
}

#[tokio::test]
async fn a_0_3_request_body_streams_in_and_the_response_streams_out() {
    let wafer = Wafer::start();
    wafer.deploy_ok("svc", &guest("p3"), "").await;
    let payload: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let response = http()
        .post(wafer.url("/svc"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let (_, echoed) = body.split_once('\n').unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the echoed body differs");
}

#[tokio::test]
async fn a_trapping_or_spinning_0_3_call_fails_alone_and_the_function_recovers() {
    let wafer = Wafer::start();
    wafer
        .deploy_ok("svc", &guest("p3"), "[limits]\ntimeout = \"3s\"")
        .await;
    assert_eq!(get(&wafer.url("/svc")).await.0, 200);

    let (code, body) = get(&wafer.url("/svc?trap=1")).await;
    assert_eq!(code, 500, "{body}");
    assert!(error_of(&body).contains("trapped"), "{body}");
    let (code, body) = get(&wafer.url("/svc")).await;
    assert_eq!(code, 200, "{body}");

    // A call spinning forever is cut off at the timeout; the instance is dropped, the next call
    // gets a fresh one.
    let started = Instant::now();
    let (code, body) = get(&wafer.url("/svc?spin=1")).await;
    assert_eq!(code, 504, "{body}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let (code, body) = get(&wafer.url("/svc")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(counters(&body).1, 1, "a fresh instance serves it: {body}");
    let logs = wafer.logs("svc").await;
    assert!(logs.contains("timed out"), "{logs}");
    // The spinning instance is gone: one live instance left.
    let status = status_of(&wafer, "svc").await;
    assert_eq!(status["instances_busy"], 0, "{status}");
}

#[tokio::test]
async fn max_instances_caps_live_instances_and_extra_calls_wait() {
    let wafer = Wafer::start();
    let manifest =
        "[limits]\nconcurrency = 16\n[scaling]\nmax_instances = 2\ninstance_concurrency = 2";
    wafer.deploy_ok("svc", &guest("p3"), manifest).await;
    // Two instances of two calls each run at once; the other two calls wait for a permit, and
    // then run on those two instances.
    let gate = Gate::new();
    let calls: Vec<_> = (0..6).map(|_| gate.post(wafer.url("/svc"))).collect();
    eventually(Duration::from_secs(60), "4 calls running", || async {
        wafer.log_lines("svc", "started").await == 4
    })
    .await;
    let status = status_of(&wafer, "svc").await;
    assert_eq!(status["instances_busy"], 2, "{status}");
    gate.open();
    for call in calls {
        let (code, body) = call.await.unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let status = status_of(&wafer, "svc").await;
    assert_eq!(status["cold_starts"], 2, "{status}");
    assert_eq!(status["invocations_ok"], 6, "{status}");
}

#[tokio::test]
async fn the_hello_p3_example_deploys_with_the_cli_and_answers_like_hello() {
    let wafer = Wafer::start();
    guest("hello-p3");
    assert_ok(
        &wafer.cli(&["deploy", "examples/hello-p3"]),
        "deploying examples/hello-p3",
    );
    let (code, body) = get(&wafer.url("/hello-p3")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "Hello from wafer! (GET /hello-p3)\n");

    // A large body is echoed back, streaming both ways.
    let payload: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let response = http()
        .post(wafer.url("/hello-p3/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the echoed body differs");

    let logs = wafer.logs("hello-p3").await;
    assert!(logs.contains("GET /hello-p3"), "{logs}");
    assert!(logs.contains("POST /hello-p3/echo"), "{logs}");
}
