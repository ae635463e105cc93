//! A cluster while its PostgreSQL or its RabbitMQ restarts under load. These stop and start the
//! local servers (`pg_ctlcluster`, `rabbitmqctl`), so they live in a test binary of their own
//! (`cargo test` runs binaries one after another) and take turns with each other.

#[allow(dead_code, unused_imports)]
#[path = "e2e/support/mod.rs"]
mod e2e;
#[allow(dead_code)]
#[path = "cluster/support.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use e2e::queues::{Broker, Collector, unique_queue};
use e2e::{eventually, guest, http};
use support::Cluster;

/// One restart at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// The local PostgreSQL cluster's version (Debian's layout, as the test command sets it up).
fn pg_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL (the test command installs one)")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .expect("a PostgreSQL cluster")
}

#[tokio::test]
async fn calls_go_on_while_postgres_restarts_and_deploys_work_after() {
    let _turn = TURN.lock().await;
    let cluster = Cluster::start(1, 2).await;
    let hello = guest("hello");
    cluster.deploy(0, &["--name", "hello", "--wasm", hello.to_str().unwrap()]);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let url = cluster.url(0, "/hello");
        tokio::spawn(async move {
            let client = http();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    eventually(Duration::from_secs(60), "load under way", || async {
        ok.load(Ordering::Relaxed) > 50
    })
    .await;
    // Down for longer than a lease lasts.
    let version = pg_version();
    tokio::task::spawn_blocking(move || {
        run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &version, "main", "stop"],
        );
        std::thread::sleep(Duration::from_secs(7));
        run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &version, "main", "start"],
        );
    })
    .await
    .unwrap();
    let before = ok.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(60),
        "calls after the restart",
        || async { ok.load(Ordering::Relaxed) > before + 50 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "calls need no database: none failed while it was down"
    );
    // Deploys need it, and work again once it is back.
    let calls = guest("calls");
    eventually(
        Duration::from_secs(60),
        "a deploy after the restart",
        || async {
            let out = cluster.cli(
                0,
                &[
                    "deploy",
                    "--name",
                    "after",
                    "--wasm",
                    calls.to_str().unwrap(),
                ],
            );
            out.status.success()
        },
    )
    .await;
    assert_eq!(support::get(&cluster.url(0, "/after")).await.0, 200);
}

#[tokio::test]
async fn queue_processing_resumes_on_every_worker_after_rabbitmq_restarts() {
    let _turn = TURN.lock().await;
    let broker = Broker::connect().await;
    let queue = unique_queue("cluster-restart");
    broker.declare(&queue).await;
    let (collector, collector_url) = Collector::start_holding(Duration::ZERO, 40).await;
    let cluster = Cluster::start(1, 2).await;
    let manifest = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\n[limits]\nconcurrency = 4\n[[queue]]\nqueue = \"{queue}\""
    );
    cluster
        .deploy_manifest(0, "consumer", &guest("collect"), &manifest)
        .await;
    const TOTAL: usize = 300;
    broker
        .publish_all(&queue, (0..TOTAL).map(|i| format!("r-{i}").into_bytes()))
        .await;
    eventually(Duration::from_secs(60), "processing under way", || async {
        collector.distinct() == 40
    })
    .await;
    tokio::task::spawn_blocking(|| {
        run("rabbitmqctl", &["stop_app"]);
        std::thread::sleep(Duration::from_secs(2));
        run("rabbitmqctl", &["start_app"]);
        run("rabbitmqctl", &["await_startup"]);
    })
    .await
    .unwrap();
    assert_eq!(collector.distinct(), 40, "the restart lands mid-stream");
    collector.resume();
    eventually(
        Duration::from_secs(180),
        "every message processed after the restart",
        || async { collector.distinct() == TOTAL },
    )
    .await;
    // Every worker's consumer is connected again.
    for worker in &cluster.workers {
        let url = format!("{}/_wafer/healthz", worker.url);
        eventually(Duration::from_secs(60), "consumers reconnected", || async {
            let health: serde_json::Value =
                http().get(&url).send().await.unwrap().json().await.unwrap();
            health["queue_triggers"][0]["connected"] == true
        })
        .await;
    }
    let cleanup = Broker::connect().await;
    cleanup.declare(&queue).await;
    cleanup.cleanup().await;
}
