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
