//! A healthy function's latency alone, and while hostile functions (spinning, flooding stdout,
//! growing memory, overflowing the stack, never ending their body, panicking) are called without
//! pause, in the same run, one attacker at a time and then all at once: the ratio says how well
//! one tenant is shielded from the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::wafer::{Wafer, root, sequential_latencies};

#[derive(clap::Args)]
pub struct Hostile {
    /// Sequential calls to the healthy function per phase.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// The wafer binary.
    #[arg(long, default_value = "target/release/wafer")]
    wafer: std::path::PathBuf,
    /// Only these attackers (default: all of spin, flood, grow, recurse, endless, trap).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run the server on these CPUs only (a `taskset -c` list); `bench/run hostile` gives it
    /// core 0 and runs the load generator on the others.
    #[arg(long)]
    server_cpus: Option<String>,
    /// How long the attackers run before the healthy function is measured.
    #[arg(long, default_value = "2500ms", value_parser = humantime::parse_duration)]
    warm_up: Duration,
}

const GUESTS: &str = "target/guests/wasm32-wasip2/release";

/// (route, fixture, manifest, concurrent attackers)
const ATTACKERS: &[(&str, &str, &str, usize)] = &[
    ("spin", "spin", "[limits]\ntimeout = \"1s\"", 2),
    ("flood", "flood", "", 1),
    ("grow", "grow", "", 1),
    ("recurse", "recurse", "", 1),
    ("endless", "endless", "[limits]\ntimeout = \"1s\"", 1),
    ("trap", "trap", "", 1),
];

impl Hostile {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = root();
        let data = tempfile::tempdir()?;
        let wafer = Wafer::start_in(
            &root.join(&self.wafer),
            data.path(),
            &[],
            self.server_cpus.as_deref(),
        )?;
        wafer
            .deploy("healthy", &root.join(GUESTS).join("calls.wasm"), "")
            .await?;
        for (route, fixture, manifest, _) in ATTACKERS {
            wafer
                .deploy(
                    route,
                    &root.join(GUESTS).join(format!("{fixture}.wasm")),
                    manifest,
                )
                .await?;
        }
        let healthy = format!("{}/healthy", wafer.url);
        let chosen: Vec<_> = ATTACKERS
            .iter()
            .filter(|(route, ..)| self.only.is_empty() || self.only.iter().any(|o| o == route))
            .collect();
        // One row per attacker alone, then one with all of them; each row measures the healthy
        // function alone right before, so that a ratio pairs two measurements seconds apart.
        let mut rows: Vec<Vec<&(&str, &str, &str, usize)>> =
            chosen.iter().map(|attacker| vec![*attacker]).collect();
        if chosen.len() > 1 {
            rows.push(chosen.clone());
        }
        println!(
            "| attackers | healthy p50 alone | attacked | ratio | healthy p99 alone | attacked | ratio | hostile calls meanwhile |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in rows {
            let alone = measure_apart(&healthy, self.calls).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let attacks = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for (route, _, _, count) in &row {
                for _ in 0..*count {
                    let url = format!("{}/{route}", wafer.url);
                    let (stop, attacks) = (stop.clone(), attacks.clone());
                    tasks.push(tokio::spawn(async move {
                        let client = reqwest::Client::new();
                        while !stop.load(Ordering::Relaxed) {
                            if let Ok(response) = client.get(&url).send().await {
                                let _ = response.bytes().await;
                            }
                            attacks.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
            }
            // Long enough for a 1 s call of each attacker to have ended: steady state.
            tokio::time::sleep(self.warm_up).await;
            let before = attacks.load(Ordering::Relaxed);
            let attacked = measure_apart(&healthy, self.calls).await?;
            let during = attacks.load(Ordering::Relaxed) - before;
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                task.abort();
            }
            let name = if row.len() == 1 {
                let (route, _, _, count) = row[0];
                if *count > 1 {
                    format!("{route} ({count} clients)")
                } else {
                    route.to_string()
                }
            } else {
                let clients: usize = row.iter().map(|a| a.3).sum();
                format!("all of them at once ({clients} clients)")
            };
            println!(
                "| {name} | {} | {} | {:.2}x | {} | {} | {:.2}x | {during} |",
                ms(alone.0),
                ms(attacked.0),
                attacked.0.as_secs_f64() / alone.0.as_secs_f64(),
                ms(alone.1),
                ms(attacked.1),
                attacked.1.as_secs_f64() / alone.1.as_secs_f64(),
            );
            // Let the attackers' last calls end (they run to their timeout) before the next
            // row's 'alone'.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// [`sequential_latencies`] on a thread and runtime of its own, so that the measuring client never waits
/// behind the attacking clients' tasks in this process's runtime.
async fn measure_apart(url: &str, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(sequential_latencies(&url, 20, n))
    })
    .await?
}
