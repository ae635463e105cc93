//! A healthy function's latency alone, and while hostile functions (spinning, flooding stdout,
//! growing memory, overflowing the stack, never ending their body, panicking) are called without
//! pause, in the same run: the ratio says how well one tenant is shielded from the others.

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
        let wafer = Wafer::start(&root.join(&self.wafer), &[])?;
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
        let alone = measure_apart(&healthy, self.calls).await?;

        let stop = Arc::new(AtomicBool::new(false));
        let attacks = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (route, _, _, count) in ATTACKERS {
            if !self.only.is_empty() && !self.only.iter().any(|o| o == route) {
                continue;
            }
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
        tokio::time::sleep(Duration::from_millis(500)).await;
        let attacked = measure_apart(&healthy, self.calls).await?;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.abort();
        }
        println!("| healthy function | p50 | p99 | hostile calls meanwhile |");
        println!("|---|---:|---:|---:|");
        println!("| alone | {} | {} | 0 |", ms(alone.0), ms(alone.1));
        println!(
            "| while hostile functions are hammered | {} | {} | {} |",
            ms(attacked.0),
            ms(attacked.1),
            attacks.load(Ordering::Relaxed)
        );
        println!(
            "\np99 ratio: {:.2}x (p50 ratio {:.2}x)",
            attacked.1.as_secs_f64() / alone.1.as_secs_f64(),
            attacked.0.as_secs_f64() / alone.0.as_secs_f64()
        );
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
