//! What a guest can reach: only its own environment, and only the outbound hosts it is allowed.

use crate::support::{Wafer, get, guest};

#[tokio::test]
async fn the_environment_holds_only_the_functions_own_variables() {
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "env",
            &guest("env"),
            "[env]\nGREETING = \"hi\"\nMODE = \"test\"",
        )
        .await;
    let (status, body) = get(&wafer.url("/env")).await;
    assert_eq!(status, 200);
    assert_eq!(body, "GREETING=hi\nMODE=test\n");

    wafer.deploy_ok("bare", &guest("env"), "").await;
    assert_eq!(get(&wafer.url("/bare")).await.1, "");
}

#[tokio::test]
async fn outbound_http_reaches_only_allowed_hosts() {
    let wafer = Wafer::start();
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    let port = wafer.url.rsplit(':').next().unwrap().to_string();
    wafer
        .deploy_ok(
            "allowed",
            &guest("fetch"),
            &format!("allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]"),
        )
        .await;
    wafer.deploy_ok("denied", &guest("fetch"), "").await;
    wafer
        .deploy_ok(
            "elsewhere",
            &guest("fetch"),
            "allowed_outbound_hosts = [\"https://example.com\"]",
        )
        .await;

    let target = format!("http://127.0.0.1:{port}/hello");
    let (status, body) = get(&wafer.url(&format!("/allowed?url={target}"))).await;
    assert_eq!(status, 200);
    assert_eq!(body, "status 200: Hello from wafer! (GET /hello)\n");

    for function in ["denied", "elsewhere"] {
        let (_, body) = get(&wafer.url(&format!("/{function}?url={target}"))).await;
        assert_eq!(body, "error: ErrorCode::HttpRequestDenied", "{function}");
    }
}

#[tokio::test]
async fn secret_values_reach_the_guest_but_never_come_back_out() {
    use std::os::unix::fs::PermissionsExt;
    let wafer = Wafer::start();
    wafer
        .deploy_ok(
            "env",
            &guest("env"),
            "[env]\nPLAIN = \"visible\"\n[secrets]\nAPI_KEY = \"s3cr3t-value\"",
        )
        .await;
    let (_, body) = get(&wafer.url("/env")).await;
    assert_eq!(body, "API_KEY=s3cr3t-value\nPLAIN=visible\n");
    for path in ["/_wafer/v1/functions/env", "/_wafer/v1/functions"] {
        let text = wafer
            .admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("\"API_KEY\":\"***\""), "{text}");
        assert!(
            text.contains("visible") && !text.contains("s3cr3t"),
            "{text}"
        );
    }
    let listed = wafer.cli(&["list", "--json"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("s3cr3t"));
    assert!(!wafer.stderr().contains("s3cr3t"));
    let metrics = get(&wafer.url("/_wafer/metrics")).await.1;
    assert!(!metrics.contains("s3cr3t"));
    // The records that hold it are the owner's alone.
    let mode = std::fs::metadata(&wafer.data).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // A name set in both places is refused, naming it.
    let response = wafer
        .deploy(
            "both",
            &guest("env"),
            "[env]\nX = \"1\"\n[secrets]\nX = \"2\"",
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("secrets.X"));
}
