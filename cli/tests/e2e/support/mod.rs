//! Test support: guest components built once per run, and a real `wafer up` process on port 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};

pub const TOKEN: &str = "test-admin-token";

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// Where guest builds go: one target directory shared by the examples and the fixtures.
fn guest_target() -> PathBuf {
    root().join("target").join("guests")
}

/// Builds `examples/` and the fixtures in `tests/guests/` once per test process.
fn build_guests() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        for dir in [root().join("examples"), root().join("cli/tests/guests")] {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--release", "--quiet"])
                .current_dir(&dir)
                .env("CARGO_TARGET_DIR", guest_target())
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .status()
                .expect("run cargo for the guests");
            assert!(
                status.success(),
                "building guests in {} failed",
                dir.display()
            );
        }
    });
}

/// The component built from guest crate `name` (an example or a fixture).
pub fn guest(name: &str) -> PathBuf {
    build_guests();
    let path = guest_target()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "no guest component at {}", path.display());
    path
}

/// A running `wafer up`.
pub struct Wafer {
    child: Child,
    pub url: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stderr: Arc<Mutex<String>>,
}

impl Wafer {
    /// Starts wafer on a free port with a fresh data directory.
    pub fn start() -> Wafer {
        Wafer::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Wafer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let mut wafer = Wafer::start_in(&data, args);
        wafer._tmp = Some(tmp);
        wafer
    }

    /// Starts wafer on a free port with `data` as its data directory.
    pub fn start_in(data: &Path, args: &[&str]) -> Wafer {
        Wafer::spawn(Command::new(env!("CARGO_BIN_EXE_wafer")), data, args)
    }

    /// Starts wafer with a fresh data directory and `env` set for it.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Wafer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_wafer"));
        command.envs(env.iter().copied());
        let mut wafer = Wafer::spawn(command, &tmp.path().join("data"), args);
        wafer._tmp = Some(tmp);
        wafer
    }

    /// Starts wafer with its virtual address space capped at `kib` KiB (`ulimit -v`).
    pub fn start_with_address_space_limit(kib: u64) -> Wafer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_wafer"));
        let mut wafer = Wafer::spawn(command, &tmp.path().join("data"), &[]);
        wafer._tmp = Some(tmp);
        wafer
    }

    fn spawn(mut command: Command, data: &Path, args: &[&str]) -> Wafer {
        build_guests();
        let mut child = command
            .arg("up")
            .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
            .arg("--data")
            .arg(data)
            .args(args)
            .current_dir(root())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wafer up");
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
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "wafer did not print `listening on`; its stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Wafer {
            child,
            url,
            data: data.to_path_buf(),
            _tmp: None,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A request to the admin API with the right token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        http().request(method, self.url(path)).bearer_auth(TOKEN)
    }

    /// Deploys `wasm` as `name` with a TOML manifest through the admin API.
    pub async fn deploy(&self, name: &str, wasm: &Path, manifest: &str) -> reqwest::Response {
        let bytes = std::fs::read(wasm).expect("read component");
        self.deploy_bytes(name, bytes, manifest).await
    }

    pub async fn deploy_bytes(
        &self,
        name: &str,
        bytes: Vec<u8>,
        manifest: &str,
    ) -> reqwest::Response {
        let form = Form::new()
            .part(
                "manifest",
                Part::text(manifest.to_string())
                    .file_name("wafer.toml")
                    .mime_str("application/toml")
                    .unwrap(),
            )
            .part("component", Part::bytes(bytes).file_name("c.wasm"));
        self.admin(
            reqwest::Method::PUT,
            &format!("/_wafer/v1/functions/{name}"),
        )
        .multipart(form)
        .send()
        .await
        .expect("deploy request")
    }

    /// Deploys and asserts success.
    pub async fn deploy_ok(&self, name: &str, wasm: &Path, manifest: &str) {
        let response = self.deploy(name, wasm, manifest).await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "deploying {name}: {status} {body}");
    }

    /// Runs the `wafer` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args(args)
            .current_dir(root())
            .env("WAFER_SERVER", &self.url)
            .env("WAFER_TOKEN", TOKEN)
            .output()
            .expect("run wafer")
    }

    /// `wafer deploy examples/NAME`, which builds the example first when it is stale. One at a
    /// time in this process: two tests building one example at once would write one file.
    pub fn deploy_example(&self, example: &str) -> Output {
        static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = BUILDING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.cli(&["deploy", &format!("examples/{example}")])
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait()
    }

    /// Sends SIGTERM, without waiting.
    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the wafer process, in bytes.
    pub fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A function's recent log lines, as the admin API returns them.
    pub async fn logs(&self, function: &str) -> String {
        self.admin(
            reqwest::Method::GET,
            &format!("/_wafer/v1/functions/{function}/logs?tail=1000"),
        )
        .send()
        .await
        .expect("logs request")
        .text()
        .await
        .unwrap_or_default()
    }

    /// How many of a function's recent log lines contain `needle`.
    pub async fn log_lines(&self, function: &str, needle: &str) -> usize {
        self.logs(function)
            .await
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// The value of one Prometheus sample, 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = http()
            .get(self.url("/_wafer/metrics"))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for wafer")
    }
}

impl Drop for Wafer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for one test (clients are bound to the runtime they first ran on). Its timeout
/// only catches a hang: compiling a JavaScript component on a loaded machine takes a minute.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

pub async fn get(url: &str) -> (u16, String) {
    let response = http().get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The `error` field of a JSON error body.
pub fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("not a JSON error body: {body}"))
}

pub mod queues;

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Request bodies held open until the test opens the gate. A guest that reads its body before
/// it answers (the `p3` fixture, `sleep?hold=1`) then runs for exactly as long as the test
/// needs, however loaded the machine, instead of for a guessed number of milliseconds.
pub struct Gate(tokio::sync::watch::Sender<bool>);

impl Gate {
    pub fn new() -> Gate {
        Gate(tokio::sync::watch::channel(false).0)
    }

    /// A body that sends one chunk once the gate is open, then ends.
    pub fn body(&self) -> reqwest::Body {
        let mut open = self.0.subscribe();
        reqwest::Body::wrap_stream(futures::stream::once(async move {
            let _ = open.wait_for(|open| *open).await;
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"held"))
        }))
    }

    /// POSTs a held body to `url` in a task of its own; resolves with the status and the body.
    pub fn post(&self, url: String) -> tokio::task::JoinHandle<(u16, String)> {
        let body = self.body();
        tokio::spawn(async move {
            let response = http().post(url).body(body).send().await.expect("POST");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }
}

/// The function as the admin API shows it.
pub async fn info_of(wafer: &Wafer, function: &str) -> serde_json::Value {
    wafer
        .admin(
            reqwest::Method::GET,
            &format!("/_wafer/v1/functions/{function}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The function's `status` from the admin API.
pub async fn status_of(wafer: &Wafer, function: &str) -> serde_json::Value {
    info_of(wafer, function).await["status"].clone()
}

/// Waits until the function has `n` idle instances.
pub async fn wait_for_idle(wafer: &Wafer, function: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_of(wafer, function).await;
        if status["instances_idle"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{function}` never had {n} idle instances: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that a CLI run succeeded, showing its output if not.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
