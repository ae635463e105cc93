//! Cluster test support: a database of the test's own, and gateways and workers as real
//! `wafer gateway` / `wafer worker` processes on distinct loopback addresses.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::e2e::{TOKEN, http, root};

/// The server tests create their databases on [default: the local PostgreSQL as the test
/// command sets it up].
fn server_url() -> String {
    std::env::var("WAFER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".to_string())
}

/// A database of one test's own, dropped when the test ends.
pub struct Db {
    pub url: String,
    name: String,
}

impl Db {
    pub async fn new() -> Db {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wafer_test_{}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create the test's database");
        Db {
            url: format!("{}/{name}", server_url()),
            name,
        }
    }
}

async fn admin() -> sqlx::PgPool {
    let url = format!("{}/postgres", server_url());
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} (the test command starts one): {e}"))
}

impl Drop for Db {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: the test's is shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = admin().await;
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await;
            });
        })
        .join();
    }
}

/// One `wafer gateway` or `wafer worker` process.
pub struct Process {
    child: Child,
    pub url: String,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    fn spawn(args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args(args)
            .current_dir(root())
            .env("RUST_LOG", "info")
            .env_remove("WAFER_TOKEN")
            .env_remove("WAFER_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wafer");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "wafer {args:?} did not print `listening on`; its stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Process { child, url, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits (polling, so the test's runtime goes on) until the process has exited.
    pub async fn exited(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for wafer") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// This worker's cluster id (from its health answer).
    pub async fn worker_id(&self) -> String {
        let health: serde_json::Value = http()
            .get(format!("{}/_wafer/healthz", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["id"].as_str().expect("a worker's id").to_string()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loopback addresses for this test process's servers: each gets one of its own.
fn next_address() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(2);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("127.0.{}.{}:0", 1 + n / 250, 2 + n % 250)
}

/// A cluster: gateways and workers on one database.
pub struct Cluster {
    pub db: Db,
    pub gateways: Vec<Process>,
    pub workers: Vec<Process>,
    dirs: tempfile::TempDir,
    next_dir: AtomicU32,
}

impl Cluster {
    pub async fn start(gateways: usize, workers: usize) -> Cluster {
        let mut cluster = Cluster {
            db: Db::new().await,
            gateways: Vec::new(),
            workers: Vec::new(),
            dirs: tempfile::tempdir().unwrap(),
            next_dir: AtomicU32::new(0),
        };
        for _ in 0..workers {
            cluster.add_worker();
        }
        for _ in 0..gateways {
            let process = Process::spawn(&[
                "gateway",
                "--listen",
                &next_address(),
                "--database-url",
                &cluster.db.url,
                "--token",
                TOKEN,
            ]);
            cluster.gateways.push(process);
        }
        cluster
    }

    /// Starts one more worker, with an empty data directory of its own.
    pub fn add_worker(&mut self) -> &Process {
        let n = self.next_dir.fetch_add(1, Ordering::Relaxed);
        let dir = self.dirs.path().join(format!("worker-{n}"));
        let process = self.spawn_worker(&dir);
        self.workers.push(process);
        self.workers.last().unwrap()
    }

    fn spawn_worker(&self, data: &Path) -> Process {
        Process::spawn(&[
            "worker",
            "--listen",
            &next_address(),
            "--database-url",
            &self.db.url,
            "--token",
            TOKEN,
            "--data",
            data.to_str().unwrap(),
        ])
    }

    pub fn url(&self, gateway: usize, path: &str) -> String {
        format!("{}{path}", self.gateways[gateway].url)
    }

    /// Runs the `wafer` CLI against gateway `gateway`.
    pub fn cli(&self, gateway: usize, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args(args)
            .current_dir(root())
            .env("WAFER_SERVER", &self.gateways[gateway].url)
            .env("WAFER_TOKEN", TOKEN)
            .output()
            .expect("run wafer")
    }

    /// Deploys `wasm` as `name` with a TOML manifest through gateway `gateway`'s admin API.
    pub async fn deploy_manifest(&self, gateway: usize, name: &str, wasm: &Path, manifest: &str) {
        use reqwest::multipart::{Form, Part};
        let form = Form::new()
            .part(
                "manifest",
                Part::text(manifest.to_string())
                    .file_name("wafer.toml")
                    .mime_str("application/toml")
                    .unwrap(),
            )
            .part(
                "component",
                Part::bytes(std::fs::read(wasm).unwrap()).file_name("c.wasm"),
            );
        let response = http()
            .put(self.url(gateway, &format!("/_wafer/v1/functions/{name}")))
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "deploying {name}: {status} {body}");
    }

    /// Deploys through gateway `gateway` with the CLI, asserting success.
    pub fn deploy(&self, gateway: usize, args: &[&str]) -> String {
        let mut all = vec!["deploy"];
        all.extend_from_slice(args);
        let out = self.cli(gateway, &all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "deploy {args:?} failed:\n{text}");
        text
    }
}

/// Status, the worker that served it, and the body of a GET.
pub async fn get(url: &str) -> (u16, Option<String>, String) {
    let response = http().get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    let worker = response
        .headers()
        .get("x-wafer-worker")
        .map(|v| v.to_str().unwrap().to_string());
    (status, worker, response.text().await.unwrap_or_default())
}
