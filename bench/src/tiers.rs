//! Tiered compilation: for a Rust hello and the JavaScript and Python examples, how long from
//! the start of a deploy to the first 200, with wafer's tiers (the default), with Cranelift
//! alone, and with `wasmtime serve` compiling the same file before it answers; the latency of
//! calls on each tier; and how long until the optimized code takes over.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::serve::{deploy_to_200, wasmtime_serve};
use crate::wafer::{Wafer, root, sequential_latencies, wait_for};

#[derive(clap::Args)]
pub struct Tiers {
    /// Calls per latency measurement.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// The wafer binary.
    #[arg(long, default_value = "target/release/wafer")]
    wafer: PathBuf,
    /// The peer: `wasmtime` (bench/run passes the official release binary).
    #[arg(long, default_value = "target/peer-official/bin/wasmtime")]
    wasmtime: PathBuf,
}

struct Example {
    name: &'static str,
    component: &'static str,
    /// A fresh instance per call (componentize-js `fetch` handlers serve one request each).
    manifest: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "Rust hello",
        component: "target/guests/wasm32-wasip2/release/hello.wasm",
        manifest: "",
    },
    Example {
        name: "JavaScript",
        component: "examples/hello-js/hello-js.wasm",
        manifest: "[scaling]\nreuse = 1",
    },
    Example {
        name: "Python",
        component: "examples/hello-py/hello-py.wasm",
        manifest: "",
    },
];

impl Tiers {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = root();
        let wafer_bin = root.join(&self.wafer);
        let wasmtime = root.join(&self.wasmtime);
        let peer_version = Command::new(&wasmtime)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "missing".into());
        println!("peer: {peer_version}\n");
        println!(
            "| component | size | wafer tiered: deploy -> first 200 | wafer Cranelift only | wasmtime serve: start -> first 200 | ratio (serve / tiered) | optimized takes over after | p50 / p99 on Winch | p50 / p99 on Cranelift |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (i, example) in EXAMPLES.iter().enumerate() {
            let component = root.join(example.component);
            let size = std::fs::metadata(&component)
                .with_context(|| format!("{} is not built", component.display()))?
                .len();

            // A wafer of its own per row: nothing compiled before, and no background compile
            // of another row on the CPU.
            let tiered = Wafer::start(&wafer_bin, &[])?;
            let name = format!("t{i}");
            let deployed = Instant::now();
            let first = deploy_to_200(&tiered, &name, &component, example.manifest).await?;
            let on_baseline = compiler(&tiered, &name).await? == "winch";
            let baseline_latency = if on_baseline {
                let l =
                    sequential_latencies(&format!("{}/{name}", tiered.url), 5, self.calls).await?;
                // Only a measurement that ended on the baseline tier is one of it.
                (compiler(&tiered, &name).await? == "winch").then_some(l)
            } else {
                None
            };
            let takeover = if on_baseline {
                wait_for(Duration::from_secs(900), || async {
                    Ok(compiler(&tiered, &name).await? == "cranelift")
                })
                .await
                .context("the optimized code never took over")?;
                Some(deployed.elapsed())
            } else {
                None
            };
            let optimized_latency =
                sequential_latencies(&format!("{}/{name}", tiered.url), 5, self.calls).await?;
            drop(tiered);

            let cranelift = Wafer::start(&wafer_bin, &["--compiler", "cranelift"])?;
            let cranelift_first =
                deploy_to_200(&cranelift, &name, &component, example.manifest).await?;
            drop(cranelift);

            let serve_first = serve_to_first_200(&wasmtime, &component).await?;

            println!(
                "| {} | {:.1} MB | {} | {} | {} | {:.1}x | {} | {} | {} / {} |",
                example.name,
                size as f64 / 1e6,
                secs(first),
                secs(cranelift_first),
                secs(serve_first),
                serve_first.as_secs_f64() / first.as_secs_f64(),
                takeover.map_or("(Cranelift from the start)".into(), secs),
                baseline_latency.map_or("-".into(), |(p50, p99)| format!(
                    "{} / {}",
                    ms(p50),
                    ms(p99)
                )),
                ms(optimized_latency.0),
                ms(optimized_latency.1),
            );
        }
        Ok(())
    }
}

/// Starts `wasmtime serve` on `component` (unpinned, like wafer here) until its first 200: it
/// compiles the whole component before it listens.
async fn serve_to_first_200(wasmtime: &Path, component: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let _server = wasmtime_serve(wasmtime, component, &[], false).await?;
    Ok(started.elapsed())
}

/// Which compiler made the function's code in memory.
async fn compiler(wafer: &Wafer, name: &str) -> anyhow::Result<String> {
    let status = wafer.status(name).await?;
    match status["compiler"].as_str() {
        Some(compiler) => Ok(compiler.to_string()),
        None => bail!("no compiler in {status}"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
