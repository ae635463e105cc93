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
