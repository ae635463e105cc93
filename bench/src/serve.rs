//! wafer against `wasmtime serve` on the same hello component, with a plain axum hello server as
//! the ceiling: throughput, latency and server CPU per request (server pinned to one core, wrk
//! to the other), cold starts, deploy and restart times, and memory with many functions; then
//! the same for the wasi:http 0.3 hello, whose instances take many calls at once.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::wafer::{Wafer, cpu_of, root, sequential_latencies, until_200};

#[derive(clap::Args)]
pub struct Serve {
    /// How long wrk runs for each server and connection count.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Connection counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<u32>,
    /// Sequential calls for the cold-start measurement.
    #[arg(long, default_value_t = 1000)]
    cold_trials: usize,
    /// Functions deployed for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    functions: usize,
    /// The wafer binary.
    #[arg(long, default_value = "target/release/wafer")]
    wafer: PathBuf,
    /// The peer: `wasmtime` (bench/run passes the official release binary, or a build of its own
    /// when that cannot be fetched).
    #[arg(long, default_value = "target/peer/bin/wasmtime")]
    wasmtime: PathBuf,
    /// Only these parts (default: all of throughput, cold, deploy, memory, p3, and compare
    /// when --compare is given).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Another wafer binary (an earlier build) to measure beside this one, alternating
    /// between the two over several rounds: part `compare`, for checking what a change costs.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Rounds of the comparison.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where to write the throughput chart.
    #[arg(long, default_value = "bench/throughput.svg")]
    chart: PathBuf,
}

const HELLO: &str = "target/guests/wasm32-wasip2/release/hello.wasm";
/// The same hello as a wasi:http 0.3 service (`examples/hello-p3`).
const HELLO_P3: &str = "target/guests/wasm32-wasip2/release/hello_p3.wasm";
/// The manifest that makes `hello` log nothing (the peer gets `--env QUIET=1`).
const QUIET: &str = "[env]\nQUIET = \"1\"\n";
/// The server's core and the load generator's.
const SERVER_CPU: &str = "0";
const CLIENT_CPU: &str = "1";

/// One wrk run.
struct Run {
    server: String,
    connections: u32,
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// Server CPU time per request.
    cpu: Duration,
}

impl Serve {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = root();
        let hello = root.join(HELLO);
        let wasmtime = root.join(&self.wasmtime);
        let wafer_bin = root.join(&self.wafer);
        let part = |name: &str| self.only.is_empty() || self.only.iter().any(|o| o == name);
        if let Some(baseline) = &self.compare
            && part("compare")
        {
            self.compare(&wafer_bin, &root.join(baseline)).await?;
        }
        if !self.only.is_empty() && self.only.iter().all(|o| o == "compare") {
            return Ok(());
        }
        if !wasmtime.exists() {
            bail!(
                "{} is missing: bench/run serve installs it",
                wasmtime.display()
            );
        }
        if part("throughput") {
            self.throughput(&wafer_bin, &wasmtime, &hello).await?;
        }
        if part("cold") {
            self.cold(
                "hello",
                &wafer_bin,
                &wasmtime,
                &hello,
                &[],
                "wasmtime serve (default)",
            )
            .await?;
        }
        if part("deploy") {
            deploy_and_restart(&wafer_bin, &hello).await?;
        }
        if part("memory") {
            self.memory(&wafer_bin, &hello, "hello (wasi:http 0.2)")
                .await?;
        }
        if part("p3") {
            let hello_p3 = root.join(HELLO_P3);
            self.p3_throughput(&wafer_bin, &wasmtime, &hello_p3).await?;
            self.cold(
                "hello-p3",
                &wafer_bin,
                &wasmtime,
                &hello_p3,
                &["--max-instance-reuse-count", "1"],
                "wasmtime serve --max-instance-reuse-count 1",
            )
            .await?;
            let deploy =
                deploy_to_200(&Wafer::start(&wafer_bin, &[])?, "hello-p3", &hello_p3, "").await?;
            println!(
                "\n| hello-p3: deploy -> first 200, new component (compiles) | {} |",
                ms(deploy)
            );
            self.memory(&wafer_bin, &hello_p3, "hello-p3 (wasi:http 0.3)")
                .await?;
        }
        Ok(())
    }

    /// Part `compare`: this build against `baseline` on the same rows (hello warm, hello with a
    /// fresh instance per call, hello-p3), the two alternating for `rounds` rounds so that the
    /// machine's drift hits both; medians and their ratio.
    async fn compare(&self, this: &Path, baseline: &Path) -> anyhow::Result<()> {
        let root = root();
        let (hello, hello_p3) = (root.join(HELLO), root.join(HELLO_P3));
        let rows = [
            ("hello warm", "/hello"),
            ("hello fresh", "/fresh"),
            ("hello-p3", "/hello-p3"),
        ];
        let mut runs = Vec::new();
        for round in 0..self.rounds {
            for (build, binary) in [("this build", this), ("baseline", baseline)] {
                let data = tempfile::tempdir()?;
                let wafer = Wafer::start_in(binary, data.path(), &[], Some(SERVER_CPU))?;
                wafer.deploy("hello", &hello, "").await?;
                wafer
                    .deploy("fresh", &hello, "[scaling]\nreuse = 1")
                    .await?;
                wafer.deploy("hello-p3", &hello_p3, "").await?;
                for (row, path) in rows {
                    let label = format!("{build}: {row}");
                    let url = format!("{}{path}", wafer.url);
                    eprintln!("round {}/{}", round + 1, self.rounds);
                    runs.extend(self.measure(&label, &url, wafer.pid()).await?);
                }
            }
        }
        let median = |label: &str, c: u32, of: fn(&Run) -> f64| {
            let mut v: Vec<f64> = runs
                .iter()
                .filter(|r| r.server == label && r.connections == c)
                .map(of)
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        println!(
            "\n### this build vs {} ({} rounds, alternating; medians)\n",
            baseline.display(),
            self.rounds
        );
        println!(
            "| row | connections | req/s this | req/s baseline | ratio | CPU/request this | baseline |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (row, _) in rows {
            for &c in &self.connections {
                let (a, b) = (format!("this build: {row}"), format!("baseline: {row}"));
                let rps = |l: &str| median(l, c, |r| r.rps);
                let cpu = |l: &str| median(l, c, |r| r.cpu.as_secs_f64() * 1e6);
                println!(
                    "| {row} | {c} | {:.0} | {:.0} | {:.2}x | {:.0} µs | {:.0} µs |",
                    rps(&a),
                    rps(&b),
                    rps(&a) / rps(&b),
                    cpu(&a),
                    cpu(&b)
                );
            }
        }
        Ok(())
    }

    /// Part 5, throughput of the wasi:http 0.3 hello: wafer (16 calls at once per instance)
    /// against `wasmtime serve` with its 0.3 defaults (128 calls per instance, 16 at once).
    async fn p3_throughput(
        &self,
        wafer_bin: &Path,
        wasmtime: &Path,
        hello_p3: &Path,
    ) -> anyhow::Result<()> {
        let mut runs = Vec::new();
        {
            let data = tempfile::tempdir()?;
            let wafer = Wafer::start_in(wafer_bin, data.path(), &[], Some(SERVER_CPU))?;
            wafer.deploy("hello-p3", hello_p3, "").await?;
            let url = format!("{}/hello-p3", wafer.url);
            runs.extend(
                self.measure("wafer hello-p3 (16 calls per instance)", &url, wafer.pid())
                    .await?,
            );
        }
        {
            let server = wasmtime_serve(wasmtime, hello_p3, &[], true).await?;
            runs.extend(
                self.measure(
                    "wasmtime serve hello-p3 (default: 128 calls per instance, 16 at once)",
                    &server.url,
                    server.pid(),
                )
                .await?,
            );
        }
        println!("\n### hello-p3 (wasi:http 0.3): server pinned to one core, wrk on the other\n");
        print_runs(&runs);
        let rps = |server: &str, c: u32| {
            runs.iter()
                .find(|r| r.server.starts_with(server) && r.connections == c)
                .map_or(f64::NAN, |r| r.rps)
        };
        let cells: Vec<String> = self
            .connections
            .iter()
            .map(|&c| format!("c={c}: {:.2}x", rps("wafer", c) / rps("wasmtime", c)))
            .collect();
        println!("\nwafer / wasmtime serve (req/s): {}", cells.join(", "));
        Ok(())
    }

    /// 1. Throughput, latency and CPU per request.
    async fn throughput(
        &self,
        wafer_bin: &Path,
        wasmtime: &Path,
        hello: &Path,
    ) -> anyhow::Result<()> {
        let root = root();
        let mut runs = Vec::new();
        {
            let data = tempfile::tempdir()?;
            let wafer = Wafer::start_in(wafer_bin, data.path(), &[], Some(SERVER_CPU))?;
            // A hello that logs nothing, here and on the peer: neither side pays for logging.
            wafer.deploy("hello", hello, QUIET).await?;
            let fresh = format!("{QUIET}[scaling]\nreuse = 1\n");
            wafer.deploy("fresh", hello, &fresh).await?;
            for (label, path) in [
                ("wafer (warm reuse)", "/hello"),
                ("wafer (fresh instance per call)", "/fresh"),
            ] {
                let url = format!("{}{path}", wafer.url);
                runs.extend(self.measure(label, &url, wafer.pid()).await?);
            }
        }
        for (label, extra) in [
            ("wasmtime serve (default)", &["--env", "QUIET=1"][..]),
            (
                "wasmtime serve --max-instance-reuse-count 128",
                &["--env", "QUIET=1", "--max-instance-reuse-count", "128"][..],
            ),
        ] {
            let server = wasmtime_serve(wasmtime, hello, extra, true).await?;
            runs.extend(self.measure(label, &server.url, server.pid()).await?);
        }
        {
            let port = free_port()?;
            let mut command = Command::new("taskset");
            command
                .args(["-c", SERVER_CPU])
                .arg(std::env::current_exe()?)
                .args(["axum-hello", "--addr"])
                .arg(format!("127.0.0.1:{port}"));
            let server = Server::spawn(command, port).await?;
            runs.extend(
                self.measure("axum hello (ceiling)", &server.url, server.pid())
                    .await?,
            );
        }
        print_throughput(&runs);
        std::fs::write(root.join(&self.chart), chart(&runs))
            .with_context(|| format!("writing {}", self.chart.display()))?;
        Ok(())
    }

    /// Part 2, cold starts: every call on a fresh instance, sequentially, on wafer (`reuse = 1`)
    /// and on `wasmtime serve` with `serve_args`, described by `serve_label`.
    async fn cold(
        &self,
        title: &str,
        wafer_bin: &Path,
        wasmtime: &Path,
        component: &Path,
        serve_args: &[&str],
        serve_label: &str,
    ) -> anyhow::Result<()> {
        let wafer = Wafer::start(wafer_bin, &[])?;
        wafer
            .deploy("fresh", component, "[scaling]\nreuse = 1")
            .await?;
        let wafer_cold =
            sequential_latencies(&format!("{}/fresh", wafer.url), 1, self.cold_trials).await?;
        let server = wasmtime_serve(wasmtime, component, serve_args, false).await?;
        let serve_cold = sequential_latencies(&server.url, 1, self.cold_trials).await?;
        println!("\n### {title} cold start: a call on a fresh instance, end to end, sequential\n");
        println!("| server | p50 | p99 |");
        println!("|---|---:|---:|");
        for (label, (p50, p99)) in [
            ("wafer (`reuse = 1`)", wafer_cold),
            (serve_label, serve_cold),
        ] {
            println!("| {label} | {} | {} |", ms(p50), ms(p99));
        }
        Ok(())
    }

    /// wrk against `url` at each connection count, with the server's CPU time per request.
    async fn measure(&self, label: &str, url: &str, pid: u32) -> anyhow::Result<Vec<Run>> {
        // Warm up: instances, connections, caches.
        wrk(url, 16, "2s")?;
        let mut runs = Vec::new();
        for &connections in &self.connections {
            let cpu_before = cpu_of(pid);
            let out = wrk(url, connections, &self.duration)?;
            let cpu = cpu_of(pid).saturating_sub(cpu_before);
            let (requests, rps, p50, p99) = parse_wrk(&out)
                .with_context(|| format!("unexpected wrk output for {label}:\n{out}"))?;
            runs.push(Run {
                server: label.to_string(),
                connections,
                rps,
                p50,
                p99,
                cpu: cpu / u32::try_from(requests.max(1)).unwrap_or(u32::MAX),
            });
            eprintln!("{label} c={connections}: {rps:.0} req/s");
        }
        Ok(runs)
    }

    /// Part 4, memory with many functions: deployed and idle, warm, scaled to zero, and with
    /// their compiled code evicted; then the first call to a function whose code was evicted.
    async fn memory(&self, wafer_bin: &Path, component: &Path, label: &str) -> anyhow::Result<()> {
        // Code is evicted only once a function has been idle this long with no instances.
        let code_idle = Duration::from_secs(20);
        let wafer = Wafer::start(
            wafer_bin,
            &[
                "--max-instances",
                "2000",
                "--code-memory",
                "0",
                "--code-idle",
                "20s",
            ],
        )?;
        let before = wafer.rss();
        let manifest = "[scaling]\nidle_timeout = \"3s\"";
        let deploying = Instant::now();
        for i in 0..self.functions {
            wafer.deploy(&format!("m{i}"), component, manifest).await?;
        }
        if deploying.elapsed() + Duration::from_secs(1) >= code_idle {
            bail!(
                "deploying took longer than the code idle time; the idle RSS would include evictions"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = wafer.rss();
        let client = reqwest::Client::new();
        let calls = (0..self.functions).map(|i| {
            let request = client.get(format!("{}/m{i}", wafer.url)).send();
            async move { request.await.map(|r| r.status().is_success()) }
        });
        let answered = futures::future::join_all(calls).await;
        let called = Instant::now();
        let failed = answered.iter().filter(|r| !matches!(r, Ok(true))).count();
        let warm = wafer.rss();
        let live = wafer
            .metric("wafer_instances{function=\"m0\",state=\"idle\"}")
            .await?;
        // Close the thousand client connections, so that what follows measures the functions,
        // not open keep-alive connections (the server would close them after 10 s idle).
        drop(client);
        // The reaper drops them after the idle timeout.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let after = wafer.rss();
        let left = wafer
            .metric("wafer_instances{function=\"m0\",state=\"idle\"}")
            .await?;
        // Then, once idle for `code_idle`, their compiled code.
        tokio::time::sleep((code_idle + Duration::from_secs(3)).saturating_sub(called.elapsed()))
            .await;
        // RSS first: a metrics scrape of a thousand functions allocates megabytes of text.
        let evicted = wafer.rss();
        let code_left = wafer.metric("wafer_code_bytes").await?;
        let client = reqwest::Client::new();
        let mut reloads = Vec::new();
        for i in 0..100.min(self.functions) {
            let started = Instant::now();
            let response = client.get(format!("{}/m{i}", wafer.url)).send().await?;
            if !response.status().is_success() {
                bail!(
                    "m{i} answered {} after its code was evicted",
                    response.status()
                );
            }
            response.bytes().await?;
            reloads.push(started.elapsed());
        }
        reloads.sort();
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        println!("\n### Memory (RSS of the wafer process), {label}\n");
        println!("| state | RSS |");
        println!("|---|---:|");
        println!("| started, nothing deployed | {} |", mib(before));
        println!(
            "| {} functions deployed, idle | {} |",
            self.functions,
            mib(idle)
        );
        println!(
            "| {} warm instances (one call each; {failed} failed; m0 idle instances: {live}) | {} |",
            self.functions,
            mib(warm)
        );
        println!(
            "| after every function scaled to zero (m0 idle instances: {left}) | {} ({:+.1}% vs deployed and idle) |",
            mib(after),
            (after as f64 / idle as f64 - 1.0) * 100.0
        );
        println!(
            "| after their compiled code was evicted too ({code_left} bytes of code left) | {} ({:+.1}% vs deployed and idle) |",
            mib(evicted),
            (evicted as f64 / idle as f64 - 1.0) * 100.0
        );
        println!(
            "| first call with the code evicted (loaded back from disk, cold start): p50 / p99 of {} | {} / {} |",
            reloads.len(),
            ms(reloads[reloads.len() / 2]),
            ms(reloads[reloads.len() * 99 / 100])
        );
        Ok(())
    }
}

/// 3. Deploy -> first 200, and a restart with 100 functions.
async fn deploy_and_restart(wafer_bin: &Path, hello: &Path) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let (first, again, hundred) = {
        let wafer = Wafer::start_in(wafer_bin, data.path(), &[], None)?;
        let first = deploy_to_200(&wafer, "first", hello, "").await?;
        let mut again = Vec::new();
        for i in 0..100 {
            again.push(deploy_to_200(&wafer, &format!("f{i}"), hello, "").await?);
        }
        again.sort();
        (first, again[again.len() / 2], again[again.len() * 99 / 100])
    };
    let started = Instant::now();
    let wafer = Wafer::start_in(wafer_bin, data.path(), &[], None)?;
    for i in 0..100 {
        until_200(&format!("{}/f{i}", wafer.url), Duration::from_secs(60)).await?;
    }
    let restart = started.elapsed();
    drop(wafer);
    println!("\n### Deploy and restart\n");
    println!("| what | time |");
    println!("|---|---:|");
    println!(
        "| deploy -> first 200, new component (compiles) | {} |",
        ms(first)
    );
    println!(
        "| deploy -> first 200, compiled artifact cached: p50 / p99 of 100 | {} / {} |",
        ms(again),
        ms(hundred)
    );
    println!(
        "| restart with 101 functions -> all answering | {} |",
        ms(restart)
    );

    Ok(())
}

/// A peer server under test.
pub(crate) struct Server {
    child: Child,
    url: String,
}

impl Server {
    async fn spawn(mut command: Command, port: u16) -> anyhow::Result<Server> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start a peer server")?;
        let url = format!("http://127.0.0.1:{port}/");
        // `wasmtime serve` compiles the whole component before it listens: seconds for a big one.
        until_200(&url, Duration::from_secs(600))
            .await
            .context("the peer server never answered")?;
        Ok(Server { child, url })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wasmtime serve` (pooling allocator on, `wasi:cli` linked) on `component` with `extra` flags,
/// pinned to the server's core if `pinned`.
pub(crate) async fn wasmtime_serve(
    wasmtime: &Path,
    component: &Path,
    extra: &[&str],
    pinned: bool,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut command = if pinned {
        let mut command = Command::new("taskset");
        command.args(["-c", SERVER_CPU]).arg(wasmtime);
        command
    } else {
        Command::new(wasmtime)
    };
    command
        .args(["serve", "-O", "pooling-allocator=y", "-S", "cli", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .arg(component);
    Server::spawn(command, port).await
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wrk(url: &str, connections: u32, duration: &str) -> anyhow::Result<String> {
    let out = Command::new("taskset")
        .args(["-c", CLIENT_CPU, "wrk", "-t1", "--latency", "-d", duration])
        .arg(format!("-c{connections}"))
        .arg(url)
        .output()
        .context("failed to run wrk (bench/run serve installs it)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Requests, requests/s, p50 and p99 from wrk's `--latency` output.
pub(crate) fn parse_wrk(out: &str) -> Option<(u64, f64, Duration, Duration)> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let percentile = |p: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .and_then(|v| parse_wrk_duration(v.trim()))
    };
    if out.contains("Non-2xx or 3xx responses") {
        return None;
    }
    Some((requests, rps, percentile("50%")?, percentile("99%")?))
}

fn parse_wrk_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Time from starting a deploy to the function's first 200: what a user waits from `wafer
/// deploy` to their first answer.
pub(crate) async fn deploy_to_200(
    wafer: &Wafer,
    name: &str,
    wasm: &Path,
    manifest: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wafer.deploy(name, wasm, manifest).await?;
    // A big component compiled with Cranelift alone takes seconds.
    until_200(&format!("{}/{name}", wafer.url), Duration::from_secs(600)).await?;
    Ok(started.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn print_throughput(runs: &[Run]) {
    println!("### hello: server pinned to one core, wrk (1 thread) on the other\n");
    print_runs(runs);
    ratios(runs);
}

fn print_runs(runs: &[Run]) {
    println!("| server | connections | req/s | p50 | p99 | server CPU / request |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} |",
            r.server,
            r.connections,
            r.rps,
            ms(r.p50),
            ms(r.p99),
            us(r.cpu)
        );
    }
}

fn ratios(runs: &[Run]) {
    let rps = |server: &str, c: u32| {
        runs.iter()
            .find(|r| r.server.starts_with(server) && r.connections == c)
            .map_or(f64::NAN, |r| r.rps)
    };
    println!("\n| ratio (req/s) | {} |", {
        let mut s = String::new();
        for r in runs.iter().filter(|r| r.server == runs[0].server) {
            let _ = write!(s, "c={} | ", r.connections);
        }
        s.trim_end_matches(" | ").to_string()
    });
    let cs: Vec<u32> = runs
        .iter()
        .filter(|r| r.server == runs[0].server)
        .map(|r| r.connections)
        .collect();
    println!("|---|{}", "---:|".repeat(cs.len()));
    for (label, num, den) in [
        (
            "wafer warm / wasmtime serve default",
            "wafer (warm",
            "wasmtime serve (default",
        ),
        (
            "wafer warm / wasmtime serve reuse 128",
            "wafer (warm",
            "wasmtime serve --max",
        ),
        ("wafer warm / axum", "wafer (warm", "axum"),
        (
            "wafer fresh / wasmtime serve default",
            "wafer (fresh",
            "wasmtime serve (default",
        ),
    ] {
        let cells: Vec<String> = cs
            .iter()
            .map(|&c| format!("{:.2}x", rps(num, c) / rps(den, c)))
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}

/// A horizontal bar chart of req/s at each connection count, as SVG.
fn chart(runs: &[Run]) -> String {
    let max = runs.iter().map(|r| r.rps).fold(1.0, f64::max);
    let (label_w, bar_w, row_h) = (330.0, 420.0, 18.0);
    let height = 40.0 + row_h * runs.len() as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">
<text x="4" y="16" font-weight="bold">hello req/s (server on one core, wrk on the other)</text>
"#,
        w = label_w + bar_w + 80.0
    );
    let colors = ["#3b82f6", "#60a5fa", "#f97316", "#fb923c", "#6b7280"];
    let mut servers: Vec<&str> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
        let color = colors[(servers.len() - 1) % colors.len()];
        let y = 28.0 + row_h * i as f64;
        let w = bar_w * r.rps / max;
        let _ = writeln!(
            svg,
            r#"<text x="{tx}" y="{ty}" text-anchor="end">{name}, c={c}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{h}" fill="{color}"/><text x="{vx:.1}" y="{ty}">{rps:.0}</text>"#,
            tx = label_w - 6.0,
            ty = y + 12.0,
            name = r.server.replace('<', "&lt;"),
            c = r.connections,
            h = row_h - 4.0,
            vx = label_w + w + 4.0,
            rps = r.rps,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The ceiling: a plain axum server answering what the hello component answers.
#[derive(clap::Args)]
pub struct AxumHello {
    #[arg(long)]
    addr: std::net::SocketAddr,
}

impl AxumHello {
    pub async fn run(self) -> anyhow::Result<()> {
        let app = axum::Router::new().fallback(|| async { "Hello, world!\n" });
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        axum::serve(listener, app).await?;
        Ok(())
    }
}
