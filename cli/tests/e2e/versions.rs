//! Versions, traffic and rollback through the CLI and HTTP: ten versions, a 90/10 split over
//! 1,000 calls, sticky callers, tags and pinned calls, `--no-traffic`, a rollback under load
//! with no errors, and all of it surviving a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;

/// A GET of `/f`: status, the version header, and which greeting answered.
async fn call(wafer: &Wafer, headers: &[(&str, &str)]) -> (u16, Option<u64>, String) {
    let mut request = http().get(wafer.url("/f"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("GET /f");
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-wafer-version")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = response.text().await.unwrap_or_default();
    (status, version, body)
}

/// The greeting version `n` answers with.
fn greeting(n: u64) -> String {
    format!("v{n} from wafer!")
}

/// The version rows of `wafer versions`.
fn rows(listing: &str) -> usize {
    listing
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u64>().is_ok())
        })
        .count()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn deploy(wafer: &Wafer, n: u64, extra: &[&str]) -> std::process::Output {
    let wasm = guest("hello");
    let env = format!("GREETING=v{n}");
    let message = format!("release {n}");
    let mut args = vec![
        "deploy",
        "--wasm",
        wasm.to_str().unwrap(),
        "--name",
        "f",
        "--env",
        &env,
        "--message",
        &message,
    ];
    args.extend_from_slice(extra);
    let out = wafer.cli(&args);
    assert_ok(&out, &format!("deploy v{n}"));
    out
}

#[tokio::test]
async fn versions_split_pin_roll_back_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut wafer = Wafer::start_in(&data, &[]);
    for n in 1..=10 {
        deploy(&wafer, n, &[]);
    }
    let listing = stdout(&wafer.cli(&["versions", "f"]));
    assert_eq!(rows(&listing), 10, "{listing}");
    assert!(listing.contains("release 7"), "{listing}");
    let (_, version, body) = call(&wafer, &[]).await;
    assert_eq!((version, body.starts_with(&greeting(10))), (Some(10), true));

    // 90/10 over 1,000 calls, and each answer says which version served it.
    let out = wafer.cli(&["traffic", "f", "9=90", "10=10"]);
    assert_ok(&out, "traffic 9=90 10=10");
    assert!(
        stdout(&out).contains("traffic v9 90%, v10 10% (was v10 100%)"),
        "{}",
        stdout(&out)
    );
    let mut served: BTreeMap<u64, u32> = BTreeMap::new();
    for _ in 0..1000 {
        let (status, version, body) = call(&wafer, &[]).await;
        assert_eq!(status, 200, "{body}");
        let version = version.expect("x-wafer-version on every answer");
        assert!(body.starts_with(&greeting(version)), "{version}: {body}");
        *served.entry(version).or_default() += 1;
    }
    assert_eq!(served.keys().copied().collect::<Vec<_>>(), vec![9, 10]);
    // 10% of 1,000 is 100 with a standard deviation of 9.5: within 4 points is 4 deviations.
    assert!((60..=140).contains(&served[&10]), "{served:?}");
    let by_version = |v: u64| {
        format!("wafer_version_invocations_total{{function=\"f\",outcome=\"ok\",version=\"{v}\"}}")
    };
    assert!(wafer.metric(&by_version(10)).await >= f64::from(served[&10]));
    assert!(wafer.metric(&by_version(9)).await >= f64::from(served[&9]));

    // Sticky: a user stays on one version; users land on both.
    assert_ok(
        &wafer.cli(&["traffic", "f", "9=50", "10=50", "--sticky-header", "x-user"]),
        "sticky split",
    );
    let mut sides = HashMap::new();
    for user in 0..40 {
        let user = format!("user-{user}");
        let (_, first, _) = call(&wafer, &[("x-user", &user)]).await;
        for _ in 0..5 {
            let (_, again, _) = call(&wafer, &[("x-user", &user)]).await;
            assert_eq!(again, first, "{user} moved");
        }
        *sides.entry(first.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(sides.len(), 2, "40 users on one side: {sides:?}");

    // Tags and pins: a tagged version is reachable, an untagged one without traffic is not.
    assert_ok(&wafer.cli(&["tag", "f", "3", "old"]), "tag 3 old");
    let (status, version, body) = call(&wafer, &[("x-wafer-version", "old")]).await;
    assert_eq!((status, version), (200, Some(3)), "{body}");
    assert!(body.starts_with(&greeting(3)));
    let (_, version, _) = call(&wafer, &[("x-wafer-version", "10")]).await;
    assert_eq!(version, Some(10));
    let response = http()
        .get(wafer.url("/f"))
        .header("x-wafer-version", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-wafer-error"], "no_version");
    assert!(error_of(&response.text().await.unwrap()).contains("x-wafer-version: 5"));

    // --no-traffic: the new version is tried by its tag and takes no other call.
    let out = deploy(&wafer, 11, &["--no-traffic", "--tag", "canary"]);
    assert!(
        stdout(&out).contains("taking no traffic"),
        "{}",
        stdout(&out)
    );
    for _ in 0..100 {
        let (_, version, _) = call(&wafer, &[]).await;
        assert!(matches!(version, Some(9 | 10)), "{version:?}");
    }
    let (_, version, body) = call(&wafer, &[("x-wafer-version", "canary")]).await;
    assert_eq!(version, Some(11));
    assert!(body.starts_with(&greeting(11)));

    // A rollback under load: no call fails, and every call made after the command returned
    // is served by the version rolled back to.
    assert_ok(&wafer.cli(&["traffic", "f", "10"]), "all to v10");
    let stop = Arc::new(AtomicBool::new(false));
    let rolled_back = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, rolled_back, url) = (stop.clone(), rolled_back.clone(), wafer.url("/f"));
        load.push(tokio::spawn(async move {
            let client = http();
            let (mut calls, mut late_on_old) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let after = rolled_back.load(Ordering::SeqCst);
                let response = client.get(&url).send().await.expect("GET under load");
                assert_eq!(response.status(), 200, "a call failed during the rollback");
                let version = response.headers()["x-wafer-version"]
                    .to_str()
                    .unwrap()
                    .to_string();
                if after && version != "9" {
                    late_on_old.push(version);
                }
                calls += 1;
            }
            (calls, late_on_old)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let out = wafer.cli(&["rollback", "f"]);
    assert_ok(&out, "rollback");
    rolled_back.store(true, Ordering::SeqCst);
    assert!(
        stdout(&out).contains("rolled back to v9; traffic v9 100% (was v10 100%)"),
        "{}",
        stdout(&out)
    );
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (calls, late) = task.await.unwrap();
        assert!(
            late.is_empty(),
            "calls after the rollback served by {late:?}"
        );
        total += calls;
    }
    assert!(total > 4, "the load ran ({total} calls)");

    // Everything survives a restart.
    wafer.terminate();
    let wafer = Wafer::start_in(&data, &[]);
    let listing = stdout(&wafer.cli(&["versions", "f"]));
    assert_eq!(rows(&listing), 11, "{listing}");
    assert!(listing.contains("sticky by header `x-user`"), "{listing}");
    let (_, version, _) = call(&wafer, &[]).await;
    assert_eq!(version, Some(9));
    let (_, version, _) = call(&wafer, &[("x-wafer-version", "canary")]).await;
    assert_eq!(version, Some(11));
    let (_, version, _) = call(&wafer, &[("x-wafer-version", "old")]).await;
    assert_eq!(version, Some(3));
    let info = info_of(&wafer, "f").await;
    assert_eq!(
        (info["version"].as_u64(), info["latest"].as_u64()),
        (Some(9), Some(11))
    );
    assert_eq!(info["sticky_header"], "x-user", "{info}");
}

#[tokio::test]
async fn old_versions_are_collected_and_one_component_serves_many() {
    let wafer = Wafer::start_with(&["--keep-versions", "3"]);
    for n in 1..=6 {
        deploy(&wafer, n, &[]);
    }
    assert_ok(&wafer.cli(&["tag", "f", "4", "keep"]), "tag 4");
    deploy(&wafer, 7, &[]);
    deploy(&wafer, 8, &[]);
    let listing: serde_json::Value =
        serde_json::from_str(&stdout(&wafer.cli(&["versions", "f", "--json"]))).unwrap();
    let kept: Vec<u64> = listing["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        kept,
        vec![8, 7, 6, 4],
        "the newest three, and the tagged one"
    );
    // Eight deploys of the same code, one stored copy.
    let stored = std::fs::read_dir(wafer.data.join("components"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        })
        .count();
    assert_eq!(stored, 1);
    let out = wafer.cli(&["rollback", "f", "--to", "2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no version 2 (it was collected)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ok(
        &wafer.cli(&["rollback", "f", "--to", "keep"]),
        "rollback to a tag",
    );
    let (_, version, body) = call(&wafer, &[]).await;
    assert_eq!(version, Some(4));
    assert!(body.starts_with(&greeting(4)), "{body}");
}
