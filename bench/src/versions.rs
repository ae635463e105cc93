//! Versions and schedules: what a traffic split costs on the hot path (req/s of a function
//! split 50/50 between two versions against one with a single version, in the same process,
//! rounds alternating), the RSS and deploy time of 1,000 kept versions of one function, and how
//! late scheduled runs start after their slots on an idle machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::serve::parse_wrk;
use crate::wafer::{TOKEN, Wafer, root};

#[derive(clap::Args)]
pub struct Versions {
    /// How long wrk runs for each round.
    #[arg(long, default_value = "5s")]
    duration: String,
    /// Rounds of each (alternating).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Versions deployed for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    versions: u64,
    /// The wafer binary.
    #[arg(long, default_value = "target/release/wafer")]
    wafer: PathBuf,
}

const HELLO: &str = "target/guests/wasm32-wasip2/release/hello.wasm";

/// wrk pinned to CPU 1 (wafer runs on CPU 0).
fn wrk(url: &str, duration: &str) -> anyhow::Result<f64> {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c16", "-d", duration, "--latency"])
        .arg(url)
        .output()
        .context("failed to run wrk (bench/run versions installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, rps, _, _) =
        parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))?;
    Ok(rps)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Versions {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = root();
        let binary = root.join(&self.wafer);
        let hello = root.join(HELLO);

        // 1. The split's cost: the same hello, one function with one version, one split 50/50.
        let data = tempfile::tempdir()?;
        let wafer = Wafer::start_in(&binary, data.path(), &[], Some("0"))?;
        wafer.deploy("plain", &hello, "route = \"/plain\"").await?;
        wafer
            .deploy("split", &hello, "[env]\nGREETING = \"one\"")
            .await?;
        wafer
            .deploy("split", &hello, "[env]\nGREETING = \"two\"")
            .await?;
        wafer
            .admin(
            reqwest::Method::PUT,
            "/_wafer/v1/functions/split/traffic",
            serde_json::json!({"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}),
        )
        .await?;
        let (plain_url, split_url) = (
            format!("{}/plain", wafer.url),
            format!("{}/split", wafer.url),
        );
        wrk(&plain_url, "2s")?;
        wrk(&split_url, "2s")?;
        let (mut plain, mut split) = (Vec::new(), Vec::new());
        for _ in 0..self.rounds {
            plain.push(wrk(&plain_url, &self.duration)?);
            split.push(wrk(&split_url, &self.duration)?);
        }
        let (plain, split) = (median(plain), median(split));
        println!(
            "### A 2-way traffic split against one version (hello, c=16, wafer on CPU 0, wrk on CPU 1)\n"
        );
        println!("| | req/s (median of {}) |", self.rounds);
        println!("|---|---|");
        println!("| one version | {plain:.0} |");
        println!("| 50/50 split | {split:.0} |");
        println!("| split / one | {:.3}x |\n", split / plain);
        drop(wafer);

        // 2. 1,000 kept versions of one function (the same code, a different environment each).
        let data = tempfile::tempdir()?;
        let wafer = Wafer::start_in(&binary, data.path(), &[], None)?;
        wafer.deploy("many", &hello, "[env]\nN = \"1\"").await?;
        reqwest::get(format!("{}/many", wafer.url)).await?;
        let rss_one = wafer.rss();
        let started = Instant::now();
        let mut last = Duration::ZERO;
        for n in 2..=self.versions {
            let t = Instant::now();
            wafer
                .deploy("many", &hello, &format!("[env]\nN = \"{n}\""))
                .await?;
            last = t.elapsed();
        }
        let total = started.elapsed();
        reqwest::get(format!("{}/many", wafer.url)).await?;
        let rss_many = wafer.rss();
        let record = std::fs::metadata(data.path().join("functions/many.json"))?.len();
        let t = Instant::now();
        let listing = reqwest::Client::new()
            .get(format!("{}/_wafer/v1/functions/many/versions", wafer.url))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .bytes()
            .await?;
        let list_time = t.elapsed();
        let components = std::fs::read_dir(data.path().join("components"))?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wasm"))
            })
            .count();
        println!("### {} kept versions of one function\n", self.versions);
        println!("| | |");
        println!("|---|---|");
        println!("| RSS with 1 version | {:.1} MiB |", mib(rss_one));
        println!(
            "| RSS with {} versions | {:.1} MiB (+{:.1} KiB per version) |",
            self.versions,
            mib(rss_many),
            (rss_many.saturating_sub(rss_one)) as f64 / 1024.0 / (self.versions - 1) as f64
        );
        println!(
            "| deploys 2..{} | {:.1} s ({:.1} ms each; the last took {:.1} ms) |",
            self.versions,
            total.as_secs_f64(),
            total.as_secs_f64() * 1000.0 / (self.versions - 1) as f64,
            last.as_secs_f64() * 1000.0
        );
        println!("| record file | {:.0} KiB |", record as f64 / 1024.0);
        println!(
            "| `GET .../versions` | {:.1} ms, {:.0} KiB |",
            list_time.as_secs_f64() * 1000.0,
            listing.len() as f64 / 1024.0
        );
        println!("| stored components | {components} |\n");
        drop(wafer);

        // 3. How late a run starts after its slot: a schedule every second for 20 s, idle
        // otherwise.
        let wafer = Wafer::start(&binary, &[])?;
        let manifest = "[[schedule]]\ncron = \"* * * * * *\"";
        wafer.deploy("tick", &hello, manifest).await?;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let sample = |s: &str| {
            format!("wafer_schedule_lag_seconds_{s}{{function=\"tick\",schedule=\"schedule-1\"}}")
        };
        let count = wafer.metric(&sample("count")).await?;
        let sum = wafer.metric(&sample("sum")).await?;
        let within = |le: &str| {
            format!(
                "wafer_schedule_lag_seconds_bucket{{function=\"tick\",schedule=\"schedule-1\",le=\"{le}\"}}"
            )
        };
        let in_10ms = wafer.metric(&within("0.01")).await?;
        let in_100ms = wafer.metric(&within("0.1")).await?;
        println!("### Scheduled runs, every second for 20 s on an idle machine\n");
        println!("| runs | mean lag | within 10 ms | within 100 ms |");
        println!("|---|---|---|---|");
        println!(
            "| {count:.0} | {:.2} ms | {in_10ms:.0} | {in_100ms:.0} |",
            if count > 0.0 {
                sum / count * 1000.0
            } else {
                0.0
            }
        );
        Ok(())
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
