//! The queue trigger against the real RabbitMQ: success, retries, dead letters, batches,
//! prefetch, a SIGKILL with a thousand messages in flight, and a redeploy mid-stream.

use std::time::Duration;

use serde_json::json;

use crate::support::queues::{Broker, Collector, eventually, header, unique_queue};
use crate::support::{Wafer, guest};

fn order(id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut order = json!({"id": id, "item": "tea", "quantity": 1});
    order
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    order
}

#[tokio::test]
async fn orders_are_acked_retried_and_dead_lettered() {
    let broker = Broker::connect().await;
    let queue = unique_queue("orders");
    let dlq = format!("{queue}.dlq");
    broker.declare(&queue).await;
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "orders",
            &guest("order-processor"),
            &format!(
                "[[queue]]\nqueue = \"{queue}\"\nmax_attempts = 3\nretry_delay = \"100ms\"\nretry_max_delay = \"200ms\""
            ),
        )
        .await;

    broker.publish_json(&queue, order("ok-1", json!({}))).await;
    broker
        .publish_json(&queue, order("flaky-2", json!({"flaky": 2})))
        .await;
    broker
        .publish_json(&queue, order("poison-3", json!({"poison": true})))
        .await;
    broker
        .publish_json(&queue, order("bad-4", json!({"quantity": 0})))
        .await;

    eventually(Duration::from_secs(30), "two orders processed", || async {
        let logs = wafer.logs("orders").await;
        logs.contains("processed order ok-1") && logs.contains("processed order flaky-2")
    })
    .await;
    let logs = wafer.logs("orders").await;
    assert!(
        logs.contains("attempt 3)"),
        "flaky-2 succeeded on its third delivery: {logs}"
    );
    eventually(Duration::from_secs(30), "two dead letters", || async {
        broker.depth(&dlq).await == 2
    })
    .await;

    let mut dead = Vec::new();
    while let Some(message) = broker.get(&dlq).await {
        dead.push(message);
    }
    let by_id = |id: &str| {
        dead.iter()
            .find(|m| String::from_utf8_lossy(&m.delivery.data).contains(id))
            .unwrap_or_else(|| panic!("{id} is in the dead-letter queue"))
    };
    // Poison: retried until max_attempts, then dead-lettered with the last error.
    let poison = by_id("poison-3");
    assert_eq!(header(poison, "x-wafer-attempts").as_deref(), Some("3"));
    assert_eq!(
        header(poison, "x-wafer-error-status").as_deref(),
        Some("503")
    );
    assert!(
        header(poison, "x-wafer-error-message")
            .unwrap()
            .contains("poison")
    );
    assert_eq!(
        header(poison, "x-wafer-function").as_deref(),
        Some("orders")
    );
    assert_eq!(
        header(poison, "x-wafer-function-version").as_deref(),
        Some("1")
    );
    assert_eq!(
        header(poison, "x-wafer-source-queue").as_deref(),
        Some(queue.as_str())
    );
    // A 4xx other than 429: straight to the dead-letter queue, first attempt.
    let bad = by_id("bad-4");
    assert_eq!(header(bad, "x-wafer-attempts").as_deref(), Some("1"));
    assert_eq!(header(bad, "x-wafer-error-status").as_deref(), Some("422"));
    assert!(
        header(bad, "x-wafer-error-message")
            .unwrap()
            .contains("quantity")
    );

    assert_eq!(broker.depth(&queue).await, 0);
    let labels = format!("{{function=\"orders\",queue=\"{queue}\"}}");
    // The broker shows a message a moment before wafer counts it.
    for (series, n) in [("succeeded", 2.0), ("dead_lettered", 2.0), ("retried", 4.0)] {
        let sample = format!("wafer_queue_messages_{series}_total{labels}");
        eventually(Duration::from_secs(30), &sample, || async {
            wafer.metric(&sample).await == n
        })
        .await;
    }
    assert_eq!(
        wafer
            .metric(&format!("wafer_queue_consumer_connected{labels}"))
            .await,
        1.0
    );
    broker.cleanup().await;
}

#[tokio::test]
async fn batches_retry_only_the_items_that_failed() {
    let broker = Broker::connect().await;
    let queue = unique_queue("batch");
    broker.declare(&queue).await;
    // Publish before deploying so that the first batch is full.
    let mut bodies = Vec::new();
    for i in 0..8 {
        let extra = match i {
            3 => json!({"flaky": 1}),
            5 => json!({"quantity": 0}),
            _ => json!({}),
        };
        bodies.push(serde_json::to_vec(&order(&format!("b-{i}"), extra)).unwrap());
    }
    broker.publish_all(&queue, bodies).await;
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "batch",
            &guest("order-processor"),
            &format!(
                "[[queue]]\nqueue = \"{queue}\"\nbatch_size = 8\nbatch_window = \"1s\"\nretry_delay = \"100ms\""
            ),
        )
        .await;
    eventually(
        Duration::from_secs(30),
        "seven orders processed",
        || async {
            wafer
                .logs("batch")
                .await
                .matches("processed order b-")
                .count()
                == 7
        },
    )
    .await;
    let logs = wafer.logs("batch").await;
    // Each processed exactly once: only the flaky one came back, on its second attempt.
    for i in [0, 1, 2, 3, 4, 6, 7] {
        assert_eq!(
            logs.matches(&format!("processed order b-{i}:")).count(),
            1,
            "b-{i}: {logs}"
        );
    }
    assert!(logs.contains("processed order b-3: 1 x tea") && logs.contains("attempt 2)"));
    eventually(
        Duration::from_secs(60),
        "the rejected item dead-lettered",
        || async { broker.depth(&format!("{queue}.dlq")).await == 1 },
    )
    .await;
    let labels = format!("{{function=\"batch\",queue=\"{queue}\"}}");
    let calls = wafer
        .metric(&format!("wafer_queue_processing_seconds_count{labels}"))
        .await;
    let received = wafer
        .metric(&format!("wafer_queue_messages_received_total{labels}"))
        .await;
    assert_eq!(received, 9.0);
    assert!(
        calls <= 3.0,
        "8 messages and one retry took {calls} calls: they were batched"
    );
    broker.cleanup().await;
}

#[tokio::test]
async fn prefetch_bounds_the_calls_in_flight() {
    let broker = Broker::connect().await;
    let queue = unique_queue("prefetch");
    broker.declare(&queue).await;
    // Every report waits until the test has seen two calls at once; there can never be more.
    let (collector, collector_url) = Collector::start_holding(Duration::ZERO, 0).await;
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "slow",
            &guest("collect"),
            &format!(
                "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\n[limits]\nconcurrency = 2\n[[queue]]\nqueue = \"{queue}\"\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\""
            ),
        )
        .await;
    broker
        .publish_all(&queue, (0..12).map(|i| format!("m{i}").into_bytes()))
        .await;
    eventually(Duration::from_secs(60), "two calls at once", || async {
        collector.in_flight() == 2
    })
    .await;
    collector.resume();
    eventually(Duration::from_secs(60), "all 12 processed", || async {
        collector.distinct() == 12
    })
    .await;
    assert_eq!(
        collector.max_in_flight(),
        2,
        "prefetch follows the function's concurrency of 2"
    );
    // The broker password never leaves the server.
    let info = wafer
        .admin(reqwest::Method::GET, "/_wafer/v1/functions/slow")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        info.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
        "{info}"
    );
    let health = crate::support::get(&wafer.url("/_wafer/healthz")).await.1;
    assert!(
        health.contains("guest:***@") && !health.contains("guest:guest"),
        "{health}"
    );
    assert!(!wafer.stderr().contains("guest:guest"));
    broker.cleanup().await;
}

#[tokio::test]
async fn a_sigkill_with_messages_in_flight_loses_none() {
    let broker = Broker::connect().await;
    let queue = unique_queue("crash");
    broker.declare(&queue).await;
    let (collector, collector_url) = Collector::start(Duration::from_millis(10)).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let manifest = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\n[limits]\nconcurrency = 32\n[[queue]]\nqueue = \"{queue}\"\nprefetch = 1000"
    );
    const TOTAL: usize = 3000;
    broker
        .publish_all(
            &queue,
            (0..TOTAL).map(|i| format!("crash-{i}").into_bytes()),
        )
        .await;
    let mut wafer = Wafer::start_in(&data, &[]);
    wafer.deploy_ok("crash", &guest("collect"), &manifest).await;
    eventually(Duration::from_secs(60), "processing under way", || async {
        collector.distinct() >= 100
    })
    .await;
    // With a prefetch of 1000, a thousand deliveries sit unacked in wafer when it dies.
    let before = collector.distinct();
    wafer.kill();
    assert!(
        before + 1000 <= TOTAL,
        "the kill must land with 1000 in flight ({before} done)"
    );

    // The restarted wafer consumes again from the same data directory; nothing is lost.
    let _wafer = Wafer::start_in(&data, &[]);
    eventually(
        Duration::from_secs(120),
        "every message processed",
        || async { collector.distinct() == TOTAL },
    )
    .await;
    for i in 0..TOTAL {
        assert!(collector.seen(format!("crash-{i}").as_bytes()) >= 1);
    }
    eventually(Duration::from_secs(60), "the queue drained", || async {
        broker.depth(&queue).await == 0
    })
    .await;
    broker.cleanup().await;
}

#[tokio::test]
async fn a_redeploy_mid_stream_loses_nothing() {
    let broker = Broker::connect().await;
    let queue = unique_queue("redeploy");
    broker.declare(&queue).await;
    let (collector, collector_url) = Collector::start(Duration::from_millis(5)).await;
    let wafer = Wafer::start();
    let manifest = |version: u32| {
        format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\nVERSION = \"{version}\"\n[limits]\nconcurrency = 4\n[[queue]]\nqueue = \"{queue}\""
        )
    };
    wafer
        .deploy_ok("stream", &guest("collect"), &manifest(1))
        .await;
    const TOTAL: usize = 400;
    broker
        .publish_all(&queue, (0..TOTAL).map(|i| format!("r-{i}").into_bytes()))
        .await;
    eventually(Duration::from_secs(30), "processing under way", || async {
        collector.distinct() >= 50
    })
    .await;
    wafer
        .deploy_ok("stream", &guest("collect"), &manifest(2))
        .await;
    // A changed trigger restarts its consumer gracefully.
    wafer
        .deploy_ok(
            "stream",
            &guest("collect"),
            &manifest(3).replace("concurrency = 4", "concurrency = 8"),
        )
        .await;
    eventually(
        Duration::from_secs(60),
        "every message processed",
        || async { collector.distinct() == TOTAL },
    )
    .await;
    broker.cleanup().await;
}

#[tokio::test]
async fn sigterm_settles_deliveries_in_flight_and_loses_none() {
    let broker = Broker::connect().await;
    let queue = unique_queue("sigterm");
    broker.declare(&queue).await;
    // Processing stops after four reports, until the stop is under way.
    let (collector, collector_url) = Collector::start_holding(Duration::ZERO, 4).await;
    let mut wafer = Wafer::start();
    wafer
        .deploy_ok(
            "graceful",
            &guest("collect"),
            &format!(
                "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\n[limits]\nconcurrency = 4\n[[queue]]\nqueue = \"{queue}\"\nprefetch = 20"
            ),
        )
        .await;
    const TOTAL: usize = 60;
    broker
        .publish_all(&queue, (0..TOTAL).map(|i| format!("t-{i}").into_bytes()))
        .await;
    eventually(Duration::from_secs(60), "processing under way", || async {
        collector.distinct() == 4 && collector.in_flight() == 4
    })
    .await;
    wafer.sigterm();
    eventually(Duration::from_secs(60), "wafer shutting down", || async {
        wafer.stderr().contains("shutting down")
    })
    .await;
    // The calls in flight finish; the prefetched deliveries are settled; nothing new is taken.
    collector.resume();
    let (status, stderr) = tokio::task::spawn_blocking(move || (wafer.wait(), wafer.stderr()))
        .await
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    // Whatever was not processed is back in the queue: together they are every message.
    // (At most the 20 prefetched deliveries are processed after the stop.)
    assert!(
        collector.distinct() < TOTAL,
        "the stop must land mid-stream: {}",
        collector.distinct()
    );
    eventually(
        Duration::from_secs(30),
        "the rest back in the queue",
        || async { broker.depth(&queue).await as usize + collector.distinct() >= TOTAL },
    )
    .await;
    let mut left = std::collections::HashSet::new();
    while let Some(message) = broker.get(&queue).await {
        left.insert(message.delivery.data.clone());
    }
    for i in 0..TOTAL {
        let body = format!("t-{i}").into_bytes();
        assert!(
            collector.seen(&body) > 0 || left.contains(&body),
            "t-{i} was neither processed nor returned to the queue"
        );
    }
    broker.cleanup().await;
}

#[tokio::test]
async fn a_message_arrives_as_a_binary_mode_cloudevent() {
    let broker = Broker::connect().await;
    let queue = unique_queue("event");
    broker.declare(&queue).await;
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "show",
            &guest("headers"),
            &format!("route = \"/show\"\n[[queue]]\nqueue = \"{queue}\""),
        )
        .await;
    // Through the CLI, as a user would try it.
    let out = wafer.cli(&[
        "queue",
        "send",
        &queue,
        r#"{"n": 1}"#,
        "--type",
        "order.created",
        "--id",
        "m-1",
        "-H",
        "tenant=acme",
        "-H",
        "x-not-legal=skipped",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(20), "the event logged", || async {
        wafer.logs("show").await.contains("body: {")
    })
    .await;
    let logs = wafer.logs("show").await;
    for expected in [
        "Method::Post /show",
        "ce-specversion: 1.0",
        "ce-id: m-1",
        "ce-type: order.created",
        // The source is amqp://127.0.0.1:5672/%2F/<queue>; on the wire its '%' is
        // percent-encoded, as the CloudEvents HTTP binding requires.
        &format!("ce-source: amqp://127.0.0.1:5672/%252F/{queue}"),
        "ce-attempt: 1",
        "ce-tenant: acme",
        "ce-time: 20",
        "content-type: application/json",
        r#"body: {\"n\": 1}"#,
    ] {
        assert!(logs.contains(expected), "missing `{expected}` in {logs}");
    }
    assert!(
        !logs.contains("skipped"),
        "illegal extension names are not passed: {logs}"
    );

    // Deleting the function stops its consumer: new messages stay in the queue.
    assert!(wafer.cli(&["delete", "show"]).status.success());
    broker.publish_json(&queue, json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broker.depth(&queue).await, 1);
    broker.cleanup().await;
}

#[tokio::test]
async fn bad_queue_triggers_are_refused_naming_the_field() {
    let wafer = Wafer::start();
    for (manifest, expected) in [
        ("[[queue]]\nqueue = \"amq.direct\"", "queue[0].queue"),
        (
            "[[queue]]\nqueue = \"q\"\nbatch_size = 0",
            "queue[0].batch_size",
        ),
        (
            "[[queue]]\nqueue = \"q\"\nurl = \"http://u:secret@host\"",
            "queue[0].url",
        ),
        ("[[queue]]\nqueue = \"q\"\nretries = 3", "retries"),
        (
            "[[queue]]\nqueue = \"q\"\n[[queue]]\nqueue = \"q\"",
            "queue[1].queue",
        ),
    ] {
        let response = wafer.deploy("bad", &guest("calls"), manifest).await;
        assert_eq!(response.status(), 400, "{manifest}");
        let body = response.text().await.unwrap();
        assert!(body.contains(expected), "{manifest}: {body}");
        assert!(!body.contains("secret"), "{body}");
    }
}

/// Whether every queue trigger of `function` is consuming (so its queues exist).
async fn consuming(wafer: &Wafer, function: &str) -> bool {
    let path = format!("/_wafer/v1/functions/{function}/queues");
    let Ok(answer) = wafer.admin(reqwest::Method::GET, &path).send().await else {
        return false;
    };
    let triggers: Vec<serde_json::Value> = answer.json().await.unwrap_or_default();
    !triggers.is_empty() && triggers.iter().all(|t| t["connected"] == true)
}

/// Runs `rabbitmqctl -q <args>`, returning its table's lines.
fn rabbitmqctl(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("run rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_trigger_of_a_process_shares_one_broker_connection() {
    let broker = Broker::connect().await;
    let wafer = Wafer::start();
    const TRIGGERS: usize = 200;
    let queues: Vec<String> = (0..TRIGGERS).map(|_| unique_queue("shared")).collect();
    for (i, queue) in queues.iter().enumerate() {
        broker.delete_later(queue);
        wafer
            .deploy_ok(
                &format!("f{i}"),
                &guest("order-processor"),
                &format!("[[queue]]\nqueue = \"{queue}\""),
            )
            .await;
    }
    // Each trigger consumes: one message through the last queue is processed.
    let last = TRIGGERS - 1;
    let last_name = format!("f{last}");
    eventually(
        Duration::from_secs(60),
        "the last trigger consuming",
        || consuming(&wafer, &last_name),
    )
    .await;
    broker
        .publish_json(&queues[last], order("shared-1", json!({})))
        .await;
    eventually(Duration::from_secs(60), "a message processed", || async {
        wafer
            .logs(&format!("f{last}"))
            .await
            .contains("processed order shared-1")
    })
    .await;
    let name = format!("wafer:{}", wafer.pid());
    let connections: Vec<String> = rabbitmqctl(&["list_connections", "name", "client_properties"])
        .into_iter()
        .filter(|l| l.contains(&name))
        .collect();
    assert!(
        (1..=2).contains(&connections.len()),
        "{TRIGGERS} triggers, connections named {name}: {connections:?}"
    );
    // RabbitMQ 4.3 refuses a global prefetch: every channel of ours sets its own. (A channel's
    // name starts with its connection's.)
    let ours: Vec<&str> = connections
        .iter()
        .filter_map(|l| l.split('\t').next())
        .collect();
    let channels: Vec<String> = rabbitmqctl(&[
        "list_channels",
        "name",
        "prefetch_count",
        "global_prefetch_count",
    ])
    .into_iter()
    .filter(|l| ours.iter().any(|c| l.starts_with(c)))
    .collect();
    assert!(
        channels.len() > TRIGGERS,
        "a channel per trigger: {channels:?}"
    );
    for channel in &channels {
        let global = channel.rsplit('\t').next().unwrap();
        assert_eq!(global, "0", "no global prefetch: {channel}");
    }
    // The queues wafer declared dead-letter to their dead-letter queues, so a broker-side
    // limit moves a message there rather than dropping it.
    let declared = rabbitmqctl(&["list_queues", "name", "arguments"]);
    let source = declared
        .iter()
        .find(|l| l.split('\t').next() == Some(queues[0].as_str()))
        .expect("the source queue is declared");
    assert!(
        source.contains("x-dead-letter-routing-key")
            && source.contains(&format!("{}.dlq", queues[0])),
        "{source}"
    );
    broker.cleanup().await;
}

/// A message whose every delivery kills wafer is dead-lettered after `max_attempts`
/// deliveries, with headers saying why, and never runs again: on a classic queue (counted in
/// the data directory) and on a quorum queue (counted by the broker too).
#[tokio::test]
async fn a_message_that_kills_wafer_every_time_is_dead_lettered_after_max_attempts() {
    for quorum in [false, true] {
        crash_loop(quorum).await;
    }
}

async fn crash_loop(quorum: bool) {
    let broker = Broker::connect().await;
    let queue = unique_queue(if quorum {
        "crashloop-quorum"
    } else {
        "crashloop"
    });
    broker.delete_later(&queue);
    // Every report is held, so each delivery is mid-call when wafer is killed.
    let (collector, collector_url) = Collector::start_holding(Duration::ZERO, 0).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let manifest = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\n[[queue]]\nqueue = \"{queue}\"\nquorum = {quorum}\nmax_attempts = 3"
    );
    let mut wafer = Wafer::start_in(&data, &[]);
    wafer
        .deploy_ok("crashloop", &guest("collect"), &manifest)
        .await;
    eventually(Duration::from_secs(60), "consuming", || {
        consuming(&wafer, "crashloop")
    })
    .await;
    broker.publish_all(&queue, [b"poison".to_vec()]).await;
    for delivery in 1..=3 {
        eventually(
            Duration::from_secs(60),
            &format!("delivery {delivery} running (quorum: {quorum})"),
            || async { collector.arrived() == delivery },
        )
        .await;
        wafer.kill();
        wafer = Wafer::start_in(&data, &[]);
    }
    // The fourth delivery does not run: the message goes to the dead-letter queue.
    let dead_letters = format!("{queue}.dlq");
    eventually(
        Duration::from_secs(60),
        &format!("the message dead-lettered (quorum: {quorum})"),
        || async { broker.depth(&dead_letters).await == 1 },
    )
    .await;
    let message = broker.get(&dead_letters).await.unwrap();
    assert_eq!(message.delivery.data, b"poison");
    assert_eq!(
        header(&message, "x-wafer-error-status").as_deref(),
        Some("redelivered")
    );
    assert_eq!(header(&message, "x-wafer-attempts").as_deref(), Some("3"));
    let why = header(&message, "x-wafer-error-message").unwrap();
    assert!(why.contains("3 times without an answer"), "{why}");
    assert_eq!(
        header(&message, "x-delivery-count"),
        None,
        "the broker's count is the original's"
    );
    assert_eq!(collector.arrived(), 3, "no fourth run");
    // The function still serves the queue.
    collector.resume();
    broker.publish_all(&queue, [b"healthy".to_vec()]).await;
    eventually(
        Duration::from_secs(60),
        "the next message processed",
        || async { collector.seen(b"healthy") == 1 },
    )
    .await;
    assert_eq!(broker.depth(&dead_letters).await, 0);
    drop(wafer);
    broker.cleanup().await;
}

#[tokio::test]
async fn a_traffic_split_spreads_queue_messages_over_versions() {
    let broker = Broker::connect().await;
    let queue = unique_queue("split");
    broker.declare(&queue).await;
    let (collector, collector_url) = Collector::start(Duration::ZERO).await;
    let wafer = Wafer::start();
    let manifest = |version: u32| {
        format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\nREPORT = \"version\"\nVERSION = \"{version}\"\n[[queue]]\nqueue = \"{queue}\""
        )
    };
    wafer
        .deploy_ok("split", &guest("collect"), &manifest(1))
        .await;
    let response = wafer
        .deploy_bytes(
            "split?traffic=false",
            std::fs::read(guest("collect")).unwrap(),
            &manifest(2),
        )
        .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let response = wafer
        .admin(reqwest::Method::PUT, "/_wafer/v1/functions/split/traffic")
        .json(&serde_json::json!({"split": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    const TOTAL: usize = 200;
    broker
        .publish_all(&queue, (0..TOTAL).map(|i| format!("s-{i}").into_bytes()))
        .await;
    eventually(
        Duration::from_secs(60),
        "every message processed",
        || async { collector.distinct() >= TOTAL },
    )
    .await;
    let reports = collector.reports();
    let on = |v: &str| {
        reports
            .keys()
            .filter(|r| String::from_utf8_lossy(r).ends_with(v))
            .count()
    };
    // Half each: 100 with a standard deviation of 7.
    assert!(
        on(" v1") >= 50 && on(" v2") >= 50,
        "v1 {} v2 {}",
        on(" v1"),
        on(" v2")
    );
    broker.cleanup().await;
}
