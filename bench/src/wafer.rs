//! Running a `wafer up` under test: start it on a free port, deploy, read metrics, stop it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

pub const TOKEN: &str = "bench-token";

pub struct Wafer {
    child: Child,
    pub url: String,
    _data: Option<tempfile::TempDir>,
}

impl Wafer {
    /// Starts `binary up` on 127.0.0.1:0 with a fresh data directory.
    pub fn start(binary: &Path, extra: &[&str]) -> anyhow::Result<Wafer> {
        let data = tempfile::tempdir()?;
        let mut wafer = Wafer::start_in(binary, data.path(), extra, None)?;
        wafer._data = Some(data);
        Ok(wafer)
    }

    /// Starts `binary up` with `data` as its data directory, on the CPUs `cpus` (a `taskset -c`
    /// list) if given.
    pub fn start_in(
        binary: &Path,
        data: &Path,
        extra: &[&str],
        cpus: Option<&str>,
    ) -> anyhow::Result<Wafer> {
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(["up", "--listen", "127.0.0.1:0", "--token", TOKEN, "--data"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => bail!("wafer exited before listening"),
            }
        };
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Wafer {
            child,
            url,
            _data: None,
        })
    }

    /// Sends an admin request with a JSON body; fails unless it succeeds.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<()> {
        admin_at(&self.url, method, path, body).await
    }

    /// The function's `status` from the admin API.
    pub async fn status(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        let response = reqwest::Client::new()
            .get(format!("{}/_wafer/v1/functions/{name}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("{name}: {}", response.text().await?);
        }
        let info: serde_json::Value = response.json().await?;
        Ok(info["status"].clone())
    }

    /// Deploys `wasm` as `name` with a TOML manifest.
    pub async fn deploy(&self, name: &str, wasm: &Path, manifest: &str) -> anyhow::Result<()> {
        deploy_at(&self.url, name, wasm, manifest).await
    }

    /// Resident memory of the wafer process, in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One Prometheus sample's value (0 if absent).
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        metric_at(&self.url, sample).await
    }
}

impl Drop for Wafer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends an admin request with a JSON body to the server at `url`; fails unless it succeeds.
pub async fn admin_at(
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("{path}: {}", response.text().await?);
    }
    Ok(())
}

/// Deploys `wasm` as `name` with a TOML manifest through the admin API at `url`.
pub async fn deploy_at(url: &str, name: &str, wasm: &Path, manifest: &str) -> anyhow::Result<()> {
    let form = reqwest::multipart::Form::new()
        .part(
            "manifest",
            reqwest::multipart::Part::text(manifest.to_string())
                .file_name("wafer.toml")
                .mime_str("application/toml")?,
        )
        .part(
            "component",
            reqwest::multipart::Part::bytes(std::fs::read(wasm)?).file_name("c.wasm"),
        );
    let response = reqwest::Client::new()
        .put(format!("{url}/_wafer/v1/functions/{name}"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("deploy failed: {}", response.text().await?);
    }
    Ok(())
}

/// One Prometheus sample's value from the server at `url` (0 if absent).
pub async fn metric_at(url: &str, sample: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{url}/_wafer/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Open file descriptors of a process (0 if it is gone).
pub fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of a process, in bytes (0 if it is gone).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time a process has used so far (user plus system).
pub fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / 100.0)
}

/// The repository root (this crate lives in `bench/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// p50 and p99 of `n` sequential keep-alive GETs of `url`, after `warmup` unmeasured ones; any
/// answer but a 2xx is an error.
pub async fn sequential_latencies(
    url: &str,
    warmup: usize,
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let client = reqwest::Client::new();
    for _ in 0..warmup {
        client.get(url).send().await?.bytes().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = std::time::Instant::now();
        let response = client.get(url).send().await?;
        if !response.status().is_success() {
            bail!("{url} answered {}", response.status());
        }
        response.bytes().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok((samples[n / 2], samples[(n * 99 / 100).min(n - 1)]))
}

/// GETs `url` until it answers 2xx, for up to `timeout` (a server that compiles before it listens
/// may take many seconds).
pub async fn until_200(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    wait_for(timeout, || {
        let request = client.get(url).send();
        async move { Ok(request.await.is_ok_and(|r| r.status().is_success())) }
    })
    .await
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await? {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
