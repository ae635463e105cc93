//! Deploy, call, redeploy, delete, restart, route, and shut down, the way a user would.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::support::{
    Gate, Wafer, assert_ok, error_of, eventually, get, guest, http, root, status_of,
};

#[tokio::test]
async fn deploy_call_redeploy_delete_with_the_cli() {
    let wafer = Wafer::start();
    guest("hello");

    // The README's path: a manifest folder.
    let out = wafer.cli(&["deploy", "examples/hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("deployed hello v1"), "{printed}");

    let (status, body) = get(&wafer.url("/hello")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from wafer! (GET /hello)\n")
    );
    // Everything below the route, with its query, reaches the function unchanged.
    let (_, body) = get(&wafer.url("/hello/a/b?x=1&y=2")).await;
    assert_eq!(body, "Hello from wafer! (GET /hello/a/b?x=1&y=2)\n");
    let echoed = http()
        .post(wafer.url("/hello/echo"))
        .body(vec![b'z'; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.bytes().await.unwrap().len(), 300_000);

    // Redeploy from flags: new version, new environment.
    let wasm = guest("hello");
    let out = wafer.cli(&[
        "deploy",
        "--name",
        "hello",
        "--wasm",
        wasm.to_str().unwrap(),
        "--env",
        "GREETING=Howdy",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployed hello v2"));
    let (_, body) = get(&wafer.url("/hello")).await;
    assert_eq!(body, "Howdy from wafer! (GET /hello)\n");

    let out = wafer.cli(&["list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("hello ") && l.contains(" 2 /hello ")),
        "{listing}"
    );

    let out = wafer.cli(&["invoke", "hello", "--path", "/hello/via-cli"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Howdy from wafer! (GET /hello/via-cli)\n"
    );
    let out = wafer.cli(&["invoke", "hello", "-d", "posted"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "posted");

    let out = wafer.cli(&["logs", "hello"]);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("stdout GET /hello/a/b?x=1&y=2"), "{logs}");
    assert!(logs.contains("stdout POST /hello"), "{logs}");

    let out = wafer.cli(&["delete", "hello"]);
    assert!(out.status.success());
    let (status, body) = get(&wafer.url("/hello")).await;
    assert_eq!(status, 404);
    assert!(error_of(&body).contains("no function is routed at /hello"));
    let out = wafer.cli(&["delete", "hello"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no function named `hello`"));
}

#[tokio::test]
async fn restart_serves_every_function_from_the_compiled_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut wafer = Wafer::start_in(&data, &[]);
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    wafer
        .deploy_ok("counter", &guest("calls"), "route = \"/count\"")
        .await;
    assert_eq!(get(&wafer.url("/count")).await, (200, "1".into()));
    // A function deleted before the restart leaves nothing behind after it.
    wafer.deploy_ok("gone", &guest("sleep"), "").await;
    assert!(wafer.cli(&["delete", "gone"]).status.success());
    assert!(wafer.terminate().success(), "{}", wafer.stderr());

    let artifacts: Vec<_> = std::fs::read_dir(data.join("compiled"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().unwrap().modified().unwrap())
        })
        .collect();
    assert_eq!(artifacts.len(), 3);

    let wafer = Wafer::start_in(&data, &[]);
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
    assert_eq!(
        std::fs::read_dir(data.join("components")).unwrap().count(),
        2
    );
    assert_eq!(std::fs::read_dir(data.join("compiled")).unwrap().count(), 2);
    // A fresh process: a fresh instance, so the counter starts again.
    assert_eq!(get(&wafer.url("/count")).await, (200, "1".into()));
    // Nothing was compiled again: the artifacts are the same files, untouched.
    // (The deleted function's artifact is gone; the others are untouched.)
    for (path, modified) in artifacts {
        if let Ok(meta) = std::fs::metadata(&path) {
            assert_eq!(meta.modified().unwrap(), modified);
        }
    }
    let info: serde_json::Value = wafer
        .admin(Method::GET, "/_wafer/v1/functions/counter")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["route"], "/count");
    assert_eq!(info["version"], 1);
}

/// Tiered compilation as a user meets it: an 18 MB Python component answers on Winch's code as
/// soon as its deploy returns; a restart before Cranelift is done serves the baseline artifact
/// and optimizes again; Cranelift's code then takes over in the background (the function's log
/// says so, the baseline instance is let go, the next call starts on the new code), and a
/// restart after that serves the optimized artifact without compiling anything.
#[tokio::test]
async fn a_big_component_serves_on_baseline_code_until_its_optimized_code_takes_over() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let artifacts = || -> Vec<_> {
        std::fs::read_dir(data.join("compiled"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path(), e.metadata().unwrap().modified().unwrap())
            })
            .collect()
    };
    let hello = |path: &str| format!("Hello from wafer! (GET {path}) [python]\n");
    let mut wafer = Wafer::start_in(&data, &[]);
    // Built (when stale) by deploying the example as it is; the test's function is another.
    assert_ok(
        &wafer.deploy_example("hello-py"),
        "deploying examples/hello-py",
    );
    let python = root().join("examples/hello-py/hello-py.wasm");
    wafer
        .deploy_ok("py", &python, "[scaling]\nidle_timeout = \"30m\"")
        .await;
    assert_eq!(get(&wafer.url("/py/a")).await, (200, hello("/py/a")));
    // Cranelift takes seconds over this much code, so the call above ran on Winch's code.
    let status = status_of(&wafer, "py").await;
    assert_eq!(status["compiler"], "winch", "{status}");
    assert!(
        wafer
            .logs("py")
            .await
            .contains("serving on baseline code (Winch)")
    );
    let (listed, list) = wafer_list(&wafer);
    assert!(listed && list.contains("wasi:http 0.2 (winch)"), "{list}");
    // The baseline artifact, which the background thread writes before it starts compiling.
    eventually(Duration::from_secs(60), "the baseline artifact", || async {
        artifacts().len() == 1
    })
    .await;
    assert!(wafer.terminate().success(), "{}", wafer.stderr());

    let mut wafer = Wafer::start_in(&data, &[]);
    assert_eq!(status_of(&wafer, "py").await["compiler"], "winch");
    assert_eq!(get(&wafer.url("/py/b")).await, (200, hello("/py/b")));
    assert_eq!(status_of(&wafer, "py").await["instances_idle"], 1);
    eventually(Duration::from_secs(600), "optimized code", || async {
        status_of(&wafer, "py").await["compiler"] == "cranelift"
    })
    .await;
    assert!(
        wafer
            .logs("py")
            .await
            .contains("optimized code (Cranelift) is ready")
    );
    // The warm baseline instance is gone; the next call starts one of the optimized code.
    let status = status_of(&wafer, "py").await;
    assert_eq!(status["instances_idle"], 0, "{status}");
    let cold = status["cold_starts"].as_u64().unwrap();
    assert_eq!(get(&wafer.url("/py/c")).await, (200, hello("/py/c")));
    assert_eq!(status_of(&wafer, "py").await["cold_starts"], cold + 1);
    // One artifact is left, the optimized one.
    let optimized = artifacts();
    assert_eq!(optimized.len(), 1, "{optimized:?}");
    assert!(wafer.terminate().success(), "{}", wafer.stderr());

    let wafer = Wafer::start_in(&data, &[]);
    assert_eq!(status_of(&wafer, "py").await["compiler"], "cranelift");
    assert_eq!(get(&wafer.url("/py/d")).await, (200, hello("/py/d")));
    assert_eq!(artifacts(), optimized, "nothing was compiled again");
}

/// `wafer list` against `wafer`: whether it succeeded, and what it printed.
fn wafer_list(wafer: &Wafer) -> (bool, String) {
    let out = wafer.cli(&["list"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn routes_longest_prefix_wins_and_conflicts_are_refused() {
    let wafer = Wafer::start();
    let hello = guest("hello");
    wafer
        .deploy_ok(
            "outer",
            &hello,
            "route = \"/api\"\n[env]\nGREETING = \"outer\"",
        )
        .await;
    wafer
        .deploy_ok(
            "inner",
            &hello,
            "route = \"/api/v2\"\n[env]\nGREETING = \"inner\"",
        )
        .await;
    wafer
        .deploy_ok("root", &hello, "route = \"/\"\n[env]\nGREETING = \"root\"")
        .await;

    let greeting = |body: String| body.split(' ').next().unwrap().to_string();
    assert_eq!(greeting(get(&wafer.url("/api/v2/x")).await.1), "inner");
    assert_eq!(greeting(get(&wafer.url("/api/v20")).await.1), "outer");
    assert_eq!(greeting(get(&wafer.url("/api")).await.1), "outer");
    assert_eq!(greeting(get(&wafer.url("/elsewhere")).await.1), "root");
    // The reserved prefix never reaches a function, not even one routed at /.
    let (status, body) = get(&wafer.url("/_wafer/nothing-here")).await;
    assert_eq!(status, 404);
    assert!(error_of(&body).contains("no wafer API"));

    let response = wafer.deploy("other", &hello, "route = \"/api\"").await;
    assert_eq!(response.status(), 409);
    assert!(
        error_of(&response.text().await.unwrap()).contains("already belongs to function `outer`")
    );
    let response = wafer
        .deploy("sneaky", &hello, "route = \"/_wafer/v1\"")
        .await;
    assert_eq!(response.status(), 400);
    assert!(error_of(&response.text().await.unwrap()).contains("reserves"));
}

#[tokio::test]
async fn sigterm_lets_calls_in_flight_finish() {
    let mut wafer = Wafer::start();
    wafer.deploy_ok("sleep", &guest("sleep"), "").await;
    // A call held open by its body is running when SIGTERM arrives; it is let go after.
    let gate = Gate::new();
    let call = gate.post(wafer.url("/sleep?hold=1&ms=10"));
    eventually(Duration::from_secs(60), "the call running", || async {
        status_of(&wafer, "sleep").await["instances_busy"] == 1
    })
    .await;
    wafer.sigterm();
    eventually(Duration::from_secs(60), "wafer shutting down", || async {
        wafer.stderr().contains("shutting down")
    })
    .await;
    gate.open();
    assert_eq!(call.await.unwrap(), (200, "slept 10 ms\n".into()));
    let status = tokio::task::spawn_blocking(move || {
        let status = wafer.wait();
        (status, wafer.stderr())
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "exit {:?}; stderr:\n{}",
        status.0,
        status.1
    );
}

#[tokio::test]
async fn generated_admin_token_is_private_and_works() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // No --token: wafer generates one into the data directory.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env_remove("WAFER_TOKEN")
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let url = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        loop {
            let line = lines.next().expect("wafer printed listening").unwrap();
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.to_string();
            }
        }
    };
    let token_path = data.join("admin-token");
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(token.len() >= 32);
    let ok = http()
        .get(format!("{url}/_wafer/v1/functions"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn without_address_space_for_the_pool_it_falls_back_to_on_demand_allocation() {
    // 16 GiB of address space: far less than the pool's reservation, plenty to run.
    let wafer = Wafer::start_with_address_space_limit(16 << 20);
    assert!(
        wafer
            .stderr()
            .contains("falling back to on-demand instance allocation"),
        "{}",
        wafer.stderr()
    );
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
    let health: serde_json::Value = http()
        .get(wafer.url("/_wafer/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["worker"]["pooling"], false);
}

#[tokio::test]
async fn logs_tail_reads_back_past_what_memory_holds() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    // Memory keeps the last 1,000 lines; the file keeps more.
    let client = http();
    for i in 0..1200 {
        let response = client.get(wafer.url(&format!("/hello/{i}"))).send().await;
        assert_eq!(response.unwrap().status(), 200);
    }
    let out = wafer.cli(&["logs", "hello", "--tail", "1100"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1100,
        "{}",
        lines[..3.min(lines.len())].join("\n")
    );
    assert!(lines[0].ends_with("GET /hello/100"), "{}", lines[0]);
    assert!(lines[1099].ends_with("GET /hello/1199"), "{}", lines[1099]);
}

#[tokio::test]
async fn logs_follow_streams_new_lines() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(["logs", "hello", "--follow"])
        .env("WAFER_SERVER", &wafer.url)
        .env("WAFER_TOKEN", crate::support::TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Calls made after the follower connected show up as they happen.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    'outer: while Instant::now() < deadline {
        assert_eq!(get(&wafer.url("/hello/followed")).await.0, 200);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line.clone());
            if line.contains("stdout GET /hello/followed") {
                break 'outer;
            }
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(
        seen.iter()
            .any(|l| l.contains("stdout GET /hello/followed")),
        "{seen:?}"
    );
}
