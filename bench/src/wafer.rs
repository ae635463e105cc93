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
    _data: tempfile::TempDir,
}

impl Wafer {
    /// Starts `binary up` on 127.0.0.1:0 with a fresh data directory.
    pub fn start(binary: &Path, extra: &[&str]) -> anyhow::Result<Wafer> {
        let data = tempfile::tempdir()?;
        let mut child = Command::new(binary)
            .args(["up", "--listen", "127.0.0.1:0", "--token", TOKEN, "--data"])
            .arg(data.path())
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
            _data: data,
        })
    }

    /// Deploys `wasm` as `name` with a TOML manifest.
    pub async fn deploy(&self, name: &str, wasm: &Path, manifest: &str) -> anyhow::Result<()> {
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
            .put(format!("{}/_wafer/v1/functions/{name}", self.url))
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("deploy failed: {}", response.text().await?);
        }
        Ok(())
    }

    /// Resident memory of the wafer process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// One Prometheus sample's value (0 if absent).
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        let text = reqwest::get(format!("{}/_wafer/metrics", self.url))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0))
    }
}

impl Drop for Wafer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository root (this crate lives in `bench/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
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
