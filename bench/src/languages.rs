//! Per language: how long the example's build command takes (with its dependencies already
//! installed, as in the edit-build-deploy loop), the component's size, how long wafer takes to
//! compile it at deploy, and call latency from a fresh instance (cold: `reuse = 1`) and from a
//! warm one, measured with sequential keep-alive requests.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::wafer::{Wafer, root, sequential_latencies};

#[derive(clap::Args)]
pub struct Languages {
    /// Calls per latency measurement.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// The wafer binary.
    #[arg(long, default_value = "target/release/wafer")]
    wafer: std::path::PathBuf,
}

struct Example {
    language: &'static str,
    dir: &'static str,
    /// A source file touched before the timed build, so that the build does real work.
    source: &'static str,
    component: &'static str,
    build: &'static str,
    /// Whether instances may be reused (componentize-js `fetch` handlers serve one request).
    reusable: bool,
    /// What to GET below the function's route.
    path: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        language: "Rust (wasi crate)",
        dir: "examples/hello",
        source: "src/lib.rs",
        component: "target/guests/wasm32-wasip2/release/hello.wasm",
        build: "cargo build --release -p hello",
        reusable: true,
        path: "",
    },
    Example {
        language: "Rust (wafer-sdk)",
        dir: "examples/json-api",
        source: "src/lib.rs",
        component: "target/guests/wasm32-wasip2/release/json_api.wasm",
        build: "cargo build --release -p json-api",
        reusable: true,
        path: "/items/2",
    },
    Example {
        language: "JavaScript (componentize-js)",
        dir: "examples/hello-js",
        source: "app.js",
        component: "examples/hello-js/hello-js.wasm",
        build: "npm run --silent build",
        reusable: false,
        path: "",
    },
    Example {
        language: "Python (componentize-py)",
        dir: "examples/hello-py",
        source: "app.py",
        component: "examples/hello-py/hello-py.wasm",
        build: "WIT_DIR=../../wit ./build.sh hello-py.wasm",
        reusable: true,
        path: "",
    },
    Example {
        language: "C (WASI 0.1, CGI)",
        dir: "examples/hello-c",
        source: "hello.c",
        component: "examples/hello-c/hello-c.wasm",
        build: "clang --target=wasm32-wasi -O2 -o hello-c.wasm hello.c",
        reusable: false,
        path: "",
    },
];

impl Languages {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = root();
        let wafer = Wafer::start(&root.join(&self.wafer), &[])?;
        println!(
            "| language | build | size | deploy (compile) | cold p50 / p99 | warm p50 / p99 |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (i, example) in EXAMPLES.iter().enumerate() {
            let dir = root.join(example.dir);
            touch(&dir.join(example.source))?;
            let started = Instant::now();
            let status = Command::new("sh")
                .arg("-c")
                .arg(example.build)
                .current_dir(&dir)
                .stdout(std::process::Stdio::null())
                .status()
                .with_context(|| format!("building {}", example.dir))?;
            if !status.success() {
                bail!("building {} failed", example.dir);
            }
            let build = started.elapsed();
            let component = root.join(example.component);
            let size = std::fs::metadata(&component)?.len();

            let cold_name = format!("cold{i}");
            let started = Instant::now();
            wafer
                .deploy(&cold_name, &component, "[scaling]\nreuse = 1")
                .await?;
            let deploy = started.elapsed();
            let cold = latencies(
                &wafer.url,
                &format!("{cold_name}{}", example.path),
                self.calls,
            )
            .await?;
            let warm = if example.reusable {
                let warm_name = format!("warm{i}");
                wafer.deploy(&warm_name, &component, "").await?;
                let w = latencies(
                    &wafer.url,
                    &format!("{warm_name}{}", example.path),
                    self.calls,
                )
                .await?;
                format!("{} / {}", ms(w.0), ms(w.1))
            } else {
                "one call per instance".to_string()
            };
            println!(
                "| {} | {:.1} s | {:.1} MB | {:.2} s | {} / {} | {warm} |",
                example.language,
                build.as_secs_f64(),
                size as f64 / 1e6,
                deploy.as_secs_f64(),
                ms(cold.0),
                ms(cold.1),
            );
        }
        Ok(())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn touch(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(path)?;
    std::fs::write(path, text)?;
    Ok(())
}

/// p50 and p99 of `n` sequential GETs of `base/path` after a few warm-up calls.
async fn latencies(base: &str, path: &str, n: usize) -> anyhow::Result<(Duration, Duration)> {
    sequential_latencies(&format!("{base}/{path}"), 5, n).await
}
