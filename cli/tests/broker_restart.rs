//! The broker restarts mid-stream and processing resumes. This stops and starts the local
//! RabbitMQ (`rabbitmqctl stop_app` / `start_app`), so it lives in a test binary of its own:
//! `cargo test` runs binaries one after another, and nothing else talks to the broker meanwhile.

#[allow(dead_code)]
#[path = "e2e/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::queues::{Broker, Collector, eventually, unique_queue};
use support::{Wafer, guest, http};

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

#[tokio::test]
async fn processing_resumes_after_the_broker_restarts() {
    let broker = Broker::connect().await;
    let queue = unique_queue("restart");
    broker.declare(&queue).await;
    // Processing stops after 40 reports and stays stopped until the broker is back.
    let (collector, collector_url) = Collector::start_holding(Duration::ZERO, 40).await;
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "resilient",
            &guest("collect"),
            &format!(
                "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\n[limits]\nconcurrency = 4\n[[queue]]\nqueue = \"{queue}\""
            ),
        )
        .await;
    const TOTAL: usize = 400;
    broker
        .publish_all(&queue, (0..TOTAL).map(|i| format!("b-{i}").into_bytes()))
        .await;
    eventually(Duration::from_secs(60), "processing under way", || async {
        collector.distinct() == 40
    })
    .await;

    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["stop_app"]);
        std::thread::sleep(Duration::from_secs(2));
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
    })
    .await
    .unwrap();
    assert_eq!(collector.distinct(), 40, "the restart lands mid-stream");
    collector.resume();

    eventually(
        Duration::from_secs(120),
        "every message processed after the restart",
        || async { collector.distinct() == TOTAL },
    )
    .await;
    let health: serde_json::Value = http()
        .get(wafer.url("/_wafer/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["queue_triggers"][0]["connected"], true, "{health}");
    let reconnected = wafer
        .stderr()
        .contains("queue consumer disconnected; reconnecting");
    assert!(reconnected, "the consumer noticed the restart");
    // The first connection died with the broker; clean up on a fresh one.
    let cleanup = Broker::connect().await;
    cleanup.declare(&queue).await;
    cleanup.cleanup().await;
}
