//! The CLI's own conveniences: progress on a terminal (and one plain line a step elsewhere),
//! `--output json`, shell completions, `--log-format json`.

use std::process::Command;

use crate::support::*;

#[tokio::test]
async fn a_deploy_on_a_terminal_shows_its_steps() {
    let wafer = Wafer::start();
    let hello = guest("hello");
    // `script` gives the command a pseudo-terminal, as a user's shell would.
    let line = format!(
        "{} deploy --wasm {} --name tty",
        env!("CARGO_BIN_EXE_wafer"),
        hello.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(root())
        .env("WAFER_SERVER", &wafer.url)
        .env("WAFER_TOKEN", TOKEN)
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("uploading tty"), "{text}");
    assert!(text.contains("deployed tty v1"), "{text}");

    // Not a terminal: one plain line per step, no drawing.
    let out = wafer.cli(&["deploy", "--wasm", hello.to_str().unwrap(), "--name", "tty"]);
    assert_ok(&out, "deploy without a terminal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("compiling and installing tty on the server..."),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn listings_print_json_and_completions_know_every_command() {
    let wafer = Wafer::start_with(&["--log-format", "json"]);
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    let out = wafer.cli(&["list", "--output", "json"]);
    assert_ok(&out, "list --output json");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "hello");
    let out = wafer.cli(&["versions", "hello", "-o", "json"]);
    let versions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(versions["versions"][0]["version"], 1);

    for shell in ["bash", "zsh", "fish"] {
        let out = wafer.cli(&["completions", shell]);
        assert_ok(&out, shell);
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["deploy", "rollback", "traffic", "versions"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }

    // Server logs as JSON lines: each tracing event one object.
    let stderr = wafer.stderr();
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "INFO" && e["message"].is_string()),
        "{stderr}"
    );
}
