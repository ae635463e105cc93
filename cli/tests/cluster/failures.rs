//! Workers that die or leave under load: what callers and queues see.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::e2e::queues::{Broker, Collector, unique_queue};
use crate::e2e::{eventually, guest, http};
use crate::support::Cluster;

/// One answer a load client saw.
#[derive(Debug, Clone)]
struct Answer {
    started: Instant,
    took: Duration,
    status: u16,
    kind: Option<String>,
    worker: Option<String>,
}

/// Clients calling a URL in a loop until stopped; every answer is kept.
struct Load {
    stop: watch::Sender<bool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let (stop, stopped) = watch::channel(false);
        let answers = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|_| {
                let (url, stopped, answers) = (url.clone(), stopped.clone(), answers.clone());
                tokio::spawn(async move {
                    let client = http();
                    while !*stopped.borrow() {
                        let started = Instant::now();
                        let response = client
                            .get(&url)
                            .timeout(Duration::from_secs(60))
                            .send()
                            .await
                            .expect("the gateway answers every call");
                        let header = |name: &str| {
                            response
                                .headers()
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_string())
                        };
                        let (kind, worker) = (header("x-wafer-error"), header("x-wafer-worker"));
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        answers.lock().unwrap().push(Answer {
                            started,
                            took: started.elapsed(),
                            status,
                            kind,
                            worker,
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            clients,
            answers,
        }
    }

    fn count(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    async fn finish(self) -> Vec<Answer> {
        let _ = self.stop.send(true);
        for client in self.clients {
            client.await.expect("a load client panicked");
        }
        self.answers.lock().unwrap().clone()
    }
}

/// The worker that served the most of `answers`.
fn busiest(answers: &[Answer]) -> String {
    let mut counts = std::collections::HashMap::new();
    for worker in answers.iter().filter_map(|a| a.worker.clone()) {
        *counts.entry(worker).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(w, _)| w)
        .expect("some answers named their worker")
}

#[tokio::test]
async fn a_worker_killed_under_load_costs_only_the_calls_it_was_running() {
    let mut cluster = Cluster::start(1, 3).await;
    let sleep = guest("sleep");
    cluster.deploy(0, &["--name", "work", "--wasm", sleep.to_str().unwrap()]);
    let load = Load::start(cluster.url(0, "/work?ms=20"), 8);
    eventually(Duration::from_secs(60), "load under way", || async {
        load.count() >= 100
    })
    .await;
    // Kill the worker serving the calls.
    let victim = busiest(&load.answers());
    let mut index = None;
    for (i, worker) in cluster.workers.iter().enumerate() {
        if worker.worker_id().await == victim {
            index = Some(i);
        }
    }
    let index = index.expect("the busiest worker is one of ours");
    cluster.workers[index].kill9();
    let killed = Instant::now();
    eventually(
        Duration::from_secs(60),
        "calls served after the kill",
        || async {
            load.answers()
                .iter()
                .filter(|a| a.started > killed + Duration::from_secs(3) && a.status == 200)
                .count()
                >= 100
        },
    )
    .await;
    let answers = load.finish().await;

    for answer in &answers {
        let lost = answer.status == 502 && answer.kind.as_deref() == Some("worker_lost");
        assert!(answer.status == 200 || lost, "unexpected answer {answer:?}");
        assert!(
            answer.took < Duration::from_secs(30),
            "a call hung: {answer:?}"
        );
    }
    // Only calls that were running on the worker when it died failed; from 3 s on it is out
    // of routing and everything is served by the others.
    let later: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.started > killed + Duration::from_secs(3))
        .collect();
    assert!(
        later
            .iter()
            .all(|a| a.status == 200 && a.worker.as_deref() != Some(victim.as_str())),
        "{later:?}"
    );
    let lost = answers.iter().filter(|a| a.status != 200).count();
    assert!(lost <= 8, "{lost} calls failed; 8 were in flight at most");

    // With every worker gone, calls fail at once with 503 no_workers.
    for worker in &mut cluster.workers {
        worker.kill9();
    }
    eventually(Duration::from_secs(60), "no workers", || async {
        let response = http().get(cluster.url(0, "/work")).send().await.unwrap();
        response.status() == 503
            && response
                .headers()
                .get("x-wafer-error")
                .map(|v| v.as_bytes())
                == Some(b"no_workers".as_slice())
    })
    .await;
}

#[tokio::test]
async fn a_rolling_restart_of_every_worker_under_load_gives_no_errors() {
    let mut cluster = Cluster::start(1, 2).await;
    let sleep = guest("sleep");
    cluster.deploy(0, &["--name", "work", "--wasm", sleep.to_str().unwrap()]);
    let load = Load::start(cluster.url(0, "/work?ms=20"), 6);
    eventually(Duration::from_secs(60), "load under way", || async {
        load.count() >= 50
    })
    .await;
    for old in 0..2 {
        // A replacement joins (and installs everything) before the old one drains.
        let joined = cluster.add_worker().worker_id().await;
        eventually(
            Duration::from_secs(60),
            "the replacement routed to",
            || async {
                let health: serde_json::Value = http()
                    .get(cluster.url(0, "/_wafer/healthz"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                health["worker"]["workers"]
                    .as_array()
                    .is_some_and(|ws| ws.iter().any(|w| w["id"] == joined.as_str()))
            },
        )
        .await;
        cluster.workers[old].sigterm();
        let status = cluster.workers[old].exited().await;
        assert!(status.success(), "{}", cluster.workers[old].stderr());
        let before = load.count();
        eventually(
            Duration::from_secs(60),
            "calls after the restart",
            || async { load.count() >= before + 50 },
        )
        .await;
    }
    let answers = load.finish().await;
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        answers.len()
    );
}

#[tokio::test]
async fn a_worker_killed_under_queue_load_loses_no_message() {
    let broker = Broker::connect().await;
    let queue = unique_queue("cluster-kill");
    broker.declare(&queue).await;
    // Processing stops after 60 reports until one worker is dead.
    let (collector, collector_url) = Collector::start_holding(Duration::ZERO, 60).await;
    let mut cluster = Cluster::start(1, 3).await;
    let collect = guest("collect");
    let manifest = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\n[limits]\nconcurrency = 4\n[[queue]]\nqueue = \"{queue}\"\nmax_attempts = 3"
    );
    cluster
        .deploy_manifest(0, "consumer", &collect, &manifest)
        .await;
    const TOTAL: usize = 300;
    broker
        .publish_all(&queue, (0..TOTAL).map(|i| format!("k-{i}").into_bytes()))
        .await;
    eventually(Duration::from_secs(60), "processing under way", || async {
        collector.distinct() == 60 && collector.in_flight() > 0
    })
    .await;
    cluster.workers[0].kill9();
    collector.resume();
    eventually(
        Duration::from_secs(180),
        "every message processed",
        || async { collector.distinct() == TOTAL },
    )
    .await;
    for i in 0..TOTAL {
        assert!(collector.seen(format!("k-{i}").as_bytes()) >= 1);
    }
    assert_eq!(
        broker.depth(&format!("{queue}.dlq")).await,
        0,
        "no healthy message was dead-lettered"
    );
    broker.cleanup().await;
}
