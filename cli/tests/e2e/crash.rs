//! Crashes and bad data directories: a SIGKILL at any point of a deploy leaves the old version or
//! the new one, whole, with its component stored and no temporaries behind; a data directory
//! wafer cannot write is a clear error at start.

use std::path::Path;
use std::time::Duration;

use crate::support::{TOKEN, Wafer, get, guest, http};

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["functions", "components", "compiled"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            found.extend(entries.map(|e| e.unwrap().path().display().to_string()));
        }
    }
    found
}

#[tokio::test]
async fn a_sigkill_during_a_deploy_leaves_a_whole_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hello = std::fs::read(guest("hello")).unwrap();
    let counter = std::fs::read(guest("counter")).unwrap();
    let hello_digest = wafer_worker::compile::digest(&hello);
    let counter_digest = wafer_worker::compile::digest(&counter);

    let wafer = Wafer::start_in(&data, &[]);
    wafer.deploy_ok("f", &guest("hello"), "").await;
    drop(wafer);

    for (round, delay_ms) in [0u64, 2, 10, 30, 60, 120, 250, 500].into_iter().enumerate() {
        let mut wafer = Wafer::start_in(&data, &[]);
        // Alternate the code so that every deploy changes what runs.
        let bytes = if round % 2 == 0 {
            counter.clone()
        } else {
            hello.clone()
        };
        let url = wafer.url("/_wafer/v1/functions/f");
        let deploy = tokio::spawn(async move {
            let form = reqwest::multipart::Form::new()
                .part("component", reqwest::multipart::Part::bytes(bytes));
            http()
                .put(url)
                .bearer_auth(TOKEN)
                .multipart(form)
                .send()
                .await
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        wafer.kill();
        let _ = deploy.await;

        // After a restart the function serves whichever version its record names.
        let wafer = Wafer::start_in(&data, &[]);
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("functions/f.json")).unwrap()).unwrap();
        // Every deploy takes all traffic: the version taking it is the one served.
        let serving = &record["traffic"]["split"][0][0];
        let version = record["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["number"] == *serving)
            .expect("the version taking traffic is kept");
        let digest = version["digest"].as_str().unwrap();
        let (status, body) = get(&wafer.url("/f")).await;
        assert_eq!(status, 200, "round {round}: {body}");
        if digest == hello_digest {
            assert!(
                body.starts_with("Hello from wafer!"),
                "round {round}: {body}"
            );
        } else {
            assert_eq!(digest, counter_digest, "round {round}");
            assert!(body.contains("\"count\":1"), "round {round}: {body}");
        }
        // Records and blobs agree; nothing half-written is left.
        assert!(data.join(format!("components/{digest}.wasm")).exists());
        let leftovers: Vec<_> = files_under(&data)
            .into_iter()
            .filter(|f| f.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
    }
}

#[test]
fn an_unusable_data_directory_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    for data in [file.join("data"), "/proc/wafer-cannot-live-here".into()] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args(["up", "--listen", "127.0.0.1:0", "--token", TOKEN, "--data"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error: failed to create data directory"),
            "{}: {stderr}",
            data.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A small tmpfs of its own (the tests run as root, as the test command does), unmounted when
/// dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.dir.path())
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount {mode}: {out:?}");
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while file.write_all(&chunk).is_ok() {}
        // Whatever fits in smaller pieces too, so that not even a log line is left room.
        while file.write_all(&chunk[..512]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Deploys `name`, expecting a refusal that names the disk's trouble.
async fn refused_deploy(wafer: &Wafer, name: &str, why: &str) {
    let response = wafer.deploy(name, &guest("counter"), "").await;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 507, "{body}");
    assert!(body.contains(why), "the error says why: {body}");
    assert_eq!(
        get(&wafer.url(&format!("/{name}"))).await.0,
        404,
        "nothing deployed"
    );
}

#[tokio::test]
async fn a_full_or_read_only_data_directory_refuses_deploys_and_keeps_serving() {
    let disk = Tmpfs::new("48m");
    let data = disk.path().join("data");
    let mut wafer = Wafer::start_in(&data, &[]);
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
    let stored = files_under(&data);

    // Full: a deploy is refused with 507, nothing half-written is left, and hello serves on;
    // its log lines stay readable from memory and the ones the disk refused are counted.
    let filler = disk.fill();
    refused_deploy(&wafer, "counter", "No space left on device").await;
    assert_eq!(files_under(&data), stored, "nothing stored");
    // (More than the last page of its log file holds, which may have had room.)
    let pad = "x".repeat(200);
    for i in 0..100 {
        let (status, _) = get(&wafer.url(&format!("/hello?full={i}&{pad}"))).await;
        assert_eq!(status, 200);
    }
    assert!(wafer.logs("hello").await.contains("GET /hello?full=99"));
    crate::support::eventually(
        Duration::from_secs(30),
        "refused log lines counted",
        || async { wafer.metric("wafer_log_lines_unwritten_total").await >= 1.0 },
    )
    .await;

    // Space is back: deploys work, and log lines reach the disk again.
    std::fs::remove_file(filler).unwrap();
    wafer.deploy_ok("counter", &guest("counter"), "").await;
    assert_eq!(get(&wafer.url("/counter")).await.0, 200);
    assert_eq!(get(&wafer.url("/hello?after=1")).await.0, 200);
    let log = data.join("logs/hello.log");
    crate::support::eventually(Duration::from_secs(30), "the log on disk again", || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("GET /hello?after=1"))
    })
    .await;

    // Read-only: the same refusal, the same serving, the same recovery.
    disk.remount("ro");
    refused_deploy(&wafer, "later", "Read-only file system").await;
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
    assert_eq!(get(&wafer.url("/counter")).await.0, 200);
    disk.remount("rw");
    wafer.deploy_ok("later", &guest("hello"), "").await;
    assert_eq!(get(&wafer.url("/later")).await.0, 200);
    wafer.kill();
}
