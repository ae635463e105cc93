//! Soak: minutes (an hour, for the record) of mixed load at about 80% of the measured maximum
//! rate: HTTP to functions of three kinds, one of them split 50/50 between two versions, a
//! queue-triggered function, and a schedule firing every second. Samples wafer's RSS, open file
//! descriptors and the error count every few seconds. Reports errors (target 0), RSS growth from
//! the first sample after warm-up to the last (target < 5%) and file descriptors (flat). With
//! `--cluster N` the same mix runs through a gateway and N workers on PostgreSQL, and memory and
//! descriptors are the sums over those processes (each process's growth is reported too).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::Semaphore;

use crate::cluster::Running;
use crate::wafer::{Wafer, admin_at, deploy_at, fds_of, metric_at, root, rss_of};

#[derive(clap::Args)]
pub struct Soak {
    /// How long to run at the steady rate.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    every: u64,
    /// The wafer binary.
    #[arg(long, default_value = "target/release/wafer")]
    wafer: std::path::PathBuf,
    /// Soak a cluster instead of `wafer up`: one gateway and this many workers.
    #[arg(long, default_value_t = 0)]
    cluster: usize,
    /// The PostgreSQL server the cluster's database is created on.
    #[arg(
        long,
        env = "WAFER_BENCH_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432"
    )]
    database: String,
}

/// What the soak runs against.
enum Under {
    Up(Wafer),
    Cluster(Running),
}

impl Under {
    /// Where calls and admin requests go.
    fn url(&self) -> &str {
        match self {
            Under::Up(wafer) => &wafer.url,
            Under::Cluster(cluster) => &cluster.gateway.1,
        }
    }

    /// Every process, named, with the URL its metrics are at.
    fn processes(&self) -> Vec<(String, u32, &str)> {
        match self {
            Under::Up(wafer) => vec![("wafer up".into(), wafer.pid(), wafer.url.as_str())],
            Under::Cluster(cluster) => std::iter::once(("gateway".into(), &cluster.gateway))
                .chain(
                    (cluster.workers.iter().enumerate())
                        .map(|(i, w)| (format!("worker {}", i + 1), w)),
                )
                .map(|(name, p)| (name, p.pid(), p.1.as_str()))
                .collect(),
        }
    }

    /// Resident memory of each process, in bytes.
    fn rss(&self) -> Vec<u64> {
        self.processes().iter().map(|p| rss_of(p.1)).collect()
    }

    fn fds(&self) -> usize {
        self.processes().iter().map(|p| fds_of(p.1)).sum()
    }

    /// One Prometheus sample summed over the processes.
    async fn metric(&self, sample: &str) -> f64 {
        let mut sum = 0.0;
        for (_, _, url) in self.processes() {
            sum += metric_at(url, sample).await.unwrap_or(0.0);
        }
        sum
    }

    async fn deploy(
        &self,
        name: &str,
        wasm: &std::path::Path,
        manifest: &str,
    ) -> anyhow::Result<()> {
        deploy_at(self.url(), name, wasm, manifest).await
    }
}

const GUESTS: &str = "target/guests/wasm32-wasip2/release";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Keep-alive connections the HTTP load goes through.
const CONNECTIONS: usize = 32;
/// One request in this many is a queue message instead.
const QUEUE_SHARE: u64 = 10;

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    /// Of `skipped`, queue messages (too many publishes awaiting their confirms).
    skipped_publishes: AtomicU64,
    /// Failures by kind (status and `x-wafer-error`, or the client's error).
    kinds: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Counters {
    fn failed(&self, kind: String) -> u64 {
        *self.kinds.lock().unwrap().entry(kind).or_default() += 1;
        self.errors.fetch_add(1, Ordering::Relaxed)
    }
}

impl Soak {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = root();
        let binary = root.join(&self.wafer);
        let wafer = if self.cluster == 0 {
            Under::Up(Wafer::start(&binary, &[])?)
        } else {
            Under::Cluster(
                Running::start_on(&binary, &self.database, "wafer_bench_soak", self.cluster)
                    .await?,
            )
        };
        let queue = format!(
            "soak-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        );
        // Two versions of hello taking half the calls each.
        for greeting in ["one", "two"] {
            wafer
                .deploy(
                    "hello",
                    &root.join(GUESTS).join("hello.wasm"),
                    &format!("[env]\nGREETING = \"{greeting}\""),
                )
                .await?;
        }
        admin_at(
            wafer.url(),
            reqwest::Method::PUT,
            "/_wafer/v1/functions/hello/traffic",
            serde_json::json!({"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}),
        )
        .await?;
        // A schedule every second (its function is hello too: any request is a call).
        wafer
            .deploy(
                "tick",
                &root.join(GUESTS).join("hello.wasm"),
                "route = \"/tick\"\n[[schedule]]\ncron = \"* * * * * *\"",
            )
            .await?;
        wafer
            .deploy("api", &root.join(GUESTS).join("json_api.wasm"), "")
            .await?;
        wafer
            .deploy("calls", &root.join(GUESTS).join("calls.wasm"), "")
            .await?;
        let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .context("RabbitMQ on 127.0.0.1:5672")?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        // Deployed after the queue exists, so that wafer uses the queue as the bench made it.
        wafer
            .deploy(
                "orders",
                &root.join(GUESTS).join("order_processor.wasm"),
                &format!("[[queue]]\nqueue = \"{queue}\""),
            )
            .await?;
        let url = wafer.url();
        let urls = Arc::new(vec![
            format!("{url}/hello"),
            format!("{url}/api/items/2"),
            format!("{url}/calls"),
        ]);

        // The maximum: the same connections in a closed loop for 10 s, with the same mix.
        let max_rate = closed_loop(
            &urls,
            &channel,
            &queue,
            CONNECTIONS,
            Duration::from_secs(10),
        )
        .await;
        let rate = (max_rate * 0.8).max(10.0);
        let processes: Vec<String> = wafer.processes().into_iter().map(|p| p.0).collect();
        println!(
            "max rate {max_rate:.0} req/s; soaking {} at {rate:.0} req/s for {:?}",
            processes.join(", "),
            self.duration
        );
        println!(
            "| t (s) | rss (MiB) | fds | requests | errors | skipped | queue acked | scheduled runs |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");

        let counters = Arc::new(Counters::default());
        // Paced arrivals served by a fixed set of keep-alive connections (as wrk2 does): the
        // load generator's own cost stays flat, and a server falling behind shows as a backlog
        // (requests skipped) rather than as a pile of new connections.
        let (tickets, queue_of_tickets) = async_channel::bounded::<u64>(4096);
        let mut senders = Vec::new();
        for _ in 0..CONNECTIONS {
            let (tickets, urls, counters) =
                (queue_of_tickets.clone(), urls.clone(), counters.clone());
            senders.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                while let Ok(n) = tickets.recv().await {
                    let url = &urls[(n % urls.len() as u64) as usize];
                    let failure = match client.get(url).send().await {
                        Ok(r) if r.status().is_success() => {
                            r.bytes().await.err().map(|e| format!("body: {e}"))
                        }
                        Ok(r) => Some(format!(
                            "{} {}",
                            r.status(),
                            r.headers()
                                .get("x-wafer-error")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                        )),
                        Err(e) => Some(format!("{e:#}")),
                    };
                    match failure {
                        None => counters.ok.fetch_add(1, Ordering::Relaxed),
                        Some(kind) => counters.failed(kind),
                    };
                }
            }));
        }
        let publishing = Arc::new(Semaphore::new(512));
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_sample = started + Duration::from_secs(self.every);
        let mut carry = 0.0;
        let mut n: u64 = 0;
        let mut samples = Vec::new();
        let published = Arc::new(AtomicU64::new(0));
        while started.elapsed() < self.duration {
            tick.tick().await;
            carry += rate / 1000.0;
            while carry >= 1.0 {
                carry -= 1.0;
                n += 1;
                if !n.is_multiple_of(QUEUE_SHARE) {
                    if tickets.try_send(n).is_ok() {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counters.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let Ok(permit) = publishing.clone().try_acquire_owned() else {
                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                    counters.skipped_publishes.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                counters.sent.fetch_add(1, Ordering::Relaxed);
                let (channel, counters, published) =
                    (channel.clone(), counters.clone(), published.clone());
                let queue = queue.clone();
                tokio::spawn(async move {
                    if publish_order(&channel, &queue, &format!("s-{n}")).await {
                        published.fetch_add(1, Ordering::Relaxed);
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counters.failed("publish not confirmed".into());
                    }
                    drop(permit);
                });
            }
            if Instant::now() >= next_sample {
                next_sample += Duration::from_secs(self.every);
                let rss = wafer.rss();
                let acked = wafer
                    .metric(&format!("wafer_queue_messages_succeeded_total{{function=\"orders\",queue=\"{queue}\"}}"))
                    .await;
                let row = Sample {
                    t: started.elapsed().as_secs(),
                    rss,
                    fds: wafer.fds(),
                };
                println!(
                    "| {} | {:.1} | {} | {} | {} | {} | {} | {} |",
                    row.t,
                    mib(row.rss.iter().sum()),
                    row.fds,
                    counters.sent.load(Ordering::Relaxed),
                    counters.errors.load(Ordering::Relaxed),
                    counters.skipped.load(Ordering::Relaxed),
                    acked as u64,
                    scheduled_runs(&wafer, "ok").await,
                );
                samples.push(row);
            }
        }
        // Let what is in flight land.
        tickets.close();
        for sender in senders {
            let _ = sender.await;
        }
        let _ = publishing.acquire_many(512).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let warm = samples.iter().find(|s| s.t >= 30).or(samples.first());
        let (warm_each, warm_fds) = warm.map_or((vec![], 0), |s| (s.rss.clone(), s.fds));
        let last_each = wafer.rss();
        let (warm, last): (u64, u64) = (warm_each.iter().sum(), last_each.iter().sum());
        let fds = samples.iter().map(|s| s.fds);
        let (least_fds, most_fds) = (fds.clone().min().unwrap_or(0), fds.max().unwrap_or(0));
        let acked = wafer
            .metric(&format!(
                "wafer_queue_messages_succeeded_total{{function=\"orders\",queue=\"{queue}\"}}"
            ))
            .await;
        println!(
            "\n{} requests ({} queue messages, {} acked), {} errors, {} skipped by the load generator; RSS {:.1} MiB after warm-up, {:.1} MiB at the end: {:+.1}%",
            counters.sent.load(Ordering::Relaxed),
            published.load(Ordering::Relaxed),
            acked,
            counters.errors.load(Ordering::Relaxed),
            counters.skipped.load(Ordering::Relaxed),
            mib(warm),
            mib(last),
            growth(warm, last)
        );
        if processes.len() > 1 {
            for ((name, warm), last) in processes.iter().zip(&warm_each).zip(&last_each) {
                println!(
                    "  {name}: RSS {:.1} MiB after warm-up, {:.1} MiB at the end: {:+.1}%",
                    mib(*warm),
                    mib(*last),
                    growth(*warm, *last)
                );
            }
        }
        println!(
            "skipped queue messages: {}",
            counters.skipped_publishes.load(Ordering::Relaxed)
        );
        println!(
            "open file descriptors: {warm_fds} after warm-up, {} at the end (least {least_fds}, most {most_fds} over {} samples)",
            wafer.fds(),
            samples.len()
        );
        println!(
            "scheduled runs: {} ok, {} failed, {} missed over {:?}",
            scheduled_runs(&wafer, "ok").await,
            scheduled_runs(&wafer, "failed").await,
            scheduled_runs(&wafer, "missed").await,
            started.elapsed()
        );
        for (kind, n) in counters.kinds.lock().unwrap().iter() {
            println!("  {n} x {kind}");
        }
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        Ok(())
    }
}

/// One sample of the server's processes.
struct Sample {
    t: u64,
    /// Resident memory of each process.
    rss: Vec<u64>,
    /// Open file descriptors of all of them.
    fds: usize,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Growth from `from` to `to`, in percent.
fn growth(from: u64, to: u64) -> f64 {
    (to as f64 / from.max(1) as f64 - 1.0) * 100.0
}

/// Runs of the every-second schedule with this outcome so far.
async fn scheduled_runs(wafer: &Under, outcome: &str) -> u64 {
    wafer
        .metric(&format!(
            "wafer_schedule_runs_total{{function=\"tick\",outcome=\"{outcome}\",schedule=\"schedule-1\"}}"
        ))
        .await as u64
}

/// Publishes one order for order-processor; true once the broker confirmed it.
async fn publish_order(channel: &lapin::Channel, queue: &str, id: &str) -> bool {
    let body = format!(r#"{{"id":"{id}","item":"tea","quantity":1}}"#);
    let sent = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await;
    match sent {
        Ok(confirm) => confirm.await.is_ok(),
        Err(_) => false,
    }
}

/// Events per second `clients` sequential clients achieve with the soak's mix: the URLs in turn,
/// and one event in [`QUEUE_SHARE`] a confirmed publish to `queue` instead.
async fn closed_loop(
    urls: &Arc<Vec<String>>,
    channel: &lapin::Channel,
    queue: &str,
    clients: usize,
    time: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (urls, done, channel, queue) = (
                urls.clone(),
                done.clone(),
                channel.clone(),
                queue.to_string(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = i as u64;
                while started.elapsed() < time {
                    n += clients as u64;
                    let ok = if n.is_multiple_of(QUEUE_SHARE) {
                        publish_order(&channel, &queue, &format!("m-{n}")).await
                    } else {
                        let url = &urls[(n % urls.len() as u64) as usize];
                        match client.get(url).send().await {
                            Ok(r) => r.bytes().await.is_ok(),
                            Err(_) => false,
                        }
                    };
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
