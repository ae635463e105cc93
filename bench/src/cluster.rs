//! wafer as a cluster against `wafer up`, same component, same run: what the gateway -> worker
//! hop adds (p50 at c=1, req/s at c=16, with gateway, worker and wrk sharing the 2 cores), how
//! an I/O-bound function scales over 1, 2 and 4 workers, and what membership and routing cost
//! PostgreSQL, measured per statement, for a paper estimate of 100 workers and 10 gateways.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::serve::parse_wrk;
use crate::wafer::{TOKEN, Wafer, cpu_of, deploy_at, root};

#[derive(clap::Args)]
pub struct Cluster {
    /// How long wrk runs for each measurement.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// The wafer binary.
    #[arg(long, default_value = "target/release/wafer")]
    wafer: PathBuf,
    /// The PostgreSQL server the clusters' databases are created on.
    #[arg(
        long,
        env = "WAFER_BENCH_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432"
    )]
    database: String,
    /// Worker counts for the scaling measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
}

const HELLO: &str = "target/guests/wasm32-wasip2/release/hello.wasm";
const SLEEP: &str = "target/guests/wasm32-wasip2/release/sleep.wasm";

/// One process of a cluster: the child and the URL it listens on.
pub struct Process(Child, pub String);

impl Process {
    fn spawn(binary: &Path, args: &[&str]) -> anyhow::Result<Process> {
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => bail!("wafer {args:?} exited before listening"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Process(child, url))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A database of its own, on the benchmark's server.
pub struct Db {
    server: String,
    name: String,
}

impl Db {
    async fn new(server: &str, name: &str) -> anyhow::Result<Db> {
        let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
            .await
            .with_context(|| format!("PostgreSQL at {server}"))?;
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&admin)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        Ok(Db {
            server: server.to_string(),
            name: name.to_string(),
        })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

/// A gateway and `workers` workers on a fresh database.
pub struct Running {
    pub db: Db,
    pub gateway: Process,
    pub workers: Vec<Process>,
}

impl Running {
    pub async fn start(binary: &Path, server: &str, workers: usize) -> anyhow::Result<Running> {
        Running::start_on(binary, server, "wafer_bench_cluster", workers).await
    }

    /// As [`Running::start`], on a database called `database`.
    pub async fn start_on(
        binary: &Path,
        server: &str,
        database: &str,
        workers: usize,
    ) -> anyhow::Result<Running> {
        let db = Db::new(server, database).await?;
        let url = db.url();
        let mut started = Vec::new();
        let data = tempfile::tempdir()?;
        for i in 0..workers {
            let dir = data.path().join(format!("w{i}"));
            let listen = format!("127.0.0.{}:0", 10 + i);
            started.push(Process::spawn(
                binary,
                &[
                    "worker",
                    "--listen",
                    &listen,
                    "--database-url",
                    &url,
                    "--token",
                    TOKEN,
                    "--data",
                    dir.to_str().unwrap(),
                ],
            )?);
        }
        // The data directories may go: workers keep their caches open, and this run is short.
        std::mem::forget(data);
        let gateway = Process::spawn(
            binary,
            &[
                "gateway",
                "--listen",
                "127.0.0.2:0",
                "--database-url",
                &url,
                "--token",
                TOKEN,
            ],
        )?;
        Ok(Running {
            db,
            gateway,
            workers: started,
        })
    }

    pub async fn deploy(&self, name: &str, wasm: &Path, manifest: &str) -> anyhow::Result<()> {
        deploy_at(&self.gateway.1, name, wasm, manifest).await
    }

    /// CPU time of the gateway and all workers.
    fn cpu(&self) -> Duration {
        cpu_of(self.gateway.pid())
            + self
                .workers
                .iter()
                .map(|w| cpu_of(w.pid()))
                .sum::<Duration>()
    }
}

/// One wrk run (unpinned: here gateway, worker and wrk share both cores).
fn wrk(url: &str, connections: u32, duration: &str) -> anyhow::Result<(f64, Duration)> {
    let out = Command::new("wrk")
        .args(["-t1", "--latency", "-d", duration])
        .arg(format!("-c{connections}"))
        .arg(url)
        .output()
        .context("failed to run wrk (bench/run cluster installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, rps, p50, _) =
        parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))?;
    Ok((rps, p50))
}

impl Cluster {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = root();
        let binary = root.join(&self.wafer);
        let (hello, sleep) = (root.join(HELLO), root.join(SLEEP));

        // 1. The hop: wafer up against one gateway and one worker, same hello.
        let up = Wafer::start(&binary, &[])?;
        up.deploy("hello", &hello, "").await?;
        let url = format!("{}/hello", up.url);
        wrk(&url, 16, "2s")?;
        let (_, up_p50) = wrk(&url, 1, &self.duration)?;
        let (up_rps, _) = wrk(&url, 16, &self.duration)?;
        drop(up);
        let cluster = Running::start(&binary, &self.database, 1).await?;
        cluster.deploy("hello", &hello, "").await?;
        let url = format!("{}/hello", cluster.gateway.1);
        wrk(&url, 16, "2s")?;
        let (_, cluster_p50) = wrk(&url, 1, &self.duration)?;
        let cpu_before = cluster.cpu();
        let started = Instant::now();
        let pg_before = transactions(&cluster.db).await?;
        let (cluster_rps, _) = wrk(&url, 16, &self.duration)?;
        let pg_during = transactions(&cluster.db).await? - pg_before;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cluster.cpu() - cpu_before;
        println!(
            "### One gateway and one worker against `wafer up` (hello, wrk on the same 2 cores)\n"
        );
        println!("| | wafer up | gateway + worker | |");
        println!("|---|---:|---:|---:|");
        println!(
            "| p50 at c=1 | {:.3} ms | {:.3} ms | +{:.3} ms |",
            ms(up_p50),
            ms(cluster_p50),
            ms(cluster_p50) - ms(up_p50)
        );
        println!(
            "| req/s at c=16 | {up_rps:.0} | {cluster_rps:.0} | {:.2}x |",
            cluster_rps / up_rps
        );
        println!(
            "\nDuring the c=16 run: {:.0} µs of gateway + worker CPU per call, and {:.1} PostgreSQL transactions per second in all ({:.4} per call): calls never touch the database.",
            cpu.as_secs_f64() * 1e6 / (cluster_rps * elapsed).max(1.0),
            pg_during as f64 / elapsed,
            pg_during as f64 / (cluster_rps * elapsed).max(1.0)
        );
        drop(cluster);

        // 2. An I/O-bound function (100 ms per call, 16 at once per worker) over more workers.
        println!(
            "\n### An I/O-bound function (100 ms per call, concurrency 16) over more workers\n"
        );
        println!("| workers | connections | req/s | of linear |");
        println!("|---:|---:|---:|---:|");
        let mut base = None;
        for &n in &self.workers {
            let cluster = Running::start(&binary, &self.database, n).await?;
            cluster
                .deploy("io", &sleep, "[limits]\nconcurrency = 16")
                .await?;
            let url = format!("{}/io?ms=100", cluster.gateway.1);
            let connections = 16 * n as u32;
            wrk(&url, connections, "2s")?;
            let (rps, _) = wrk(&url, connections, &self.duration)?;
            let one = *base.get_or_insert(rps / n as f64);
            println!(
                "| {n} | {connections} | {rps:.0} | {:.2}x |",
                rps / (one * n as f64)
            );
        }

        // 3. What membership costs PostgreSQL, per statement, measured on this server.
        let cluster = Running::start(&binary, &self.database, 1).await?;
        let pool = sqlx::PgPool::connect(&cluster.db.url()).await?;
        let n = 2000;
        let started = Instant::now();
        for _ in 0..n {
            sqlx::query(
                "UPDATE workers SET lease_until = now() + make_interval(secs => 5) WHERE id = (SELECT id FROM workers LIMIT 1)",
            )
            .execute(&pool)
            .await?;
        }
        let renew = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            sqlx::query("SELECT id, url FROM workers WHERE lease_until > now() ORDER BY id")
                .fetch_all(&pool)
                .await?;
        }
        let read = started.elapsed() / n;
        println!("\n### What a cluster costs PostgreSQL (measured per statement, then scaled)\n");
        println!(
            "- a lease renewal: {:.0} µs; a read of the live workers: {:.0} µs (round trip from this machine, server time included)",
            renew.as_secs_f64() * 1e6,
            read.as_secs_f64() * 1e6
        );
        // Per second: each worker renews once and clears stale leases once; each gateway
        // reads the live workers twice; every process reloads the records every 5 s.
        let (workers, gateways) = (100.0, 10.0);
        let writes = workers * 2.0;
        let reads = gateways * 2.0 + (workers + gateways) / 5.0 + gateways / 5.0;
        println!(
            "- 100 workers and 10 gateways: about {writes:.0} small writes and {reads:.0} reads a second, {:.0} ms of database time a second (a fraction of one core); calls add nothing",
            (writes * renew.as_secs_f64() + reads * read.as_secs_f64()) * 1e3
        );
        println!(
            "- RabbitMQ: one connection per worker (110 processes: 100 connections), two channels per trigger per worker; a deploy adds one NOTIFY and one readiness row per worker"
        );
        Ok(())
    }
}

/// Transactions committed in `db` so far (PostgreSQL's own counter).
async fn transactions(db: &Db) -> anyhow::Result<i64> {
    let pool = sqlx::PgPool::connect(&format!("{}/postgres", db.server)).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
    )
    .bind(&db.name)
    .fetch_one(&pool)
    .await?;
    Ok(n)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
