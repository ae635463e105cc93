//! Bad uploads, bad manifests and bad tokens: a clear 4xx naming the problem, and nothing stored.

use reqwest::Method;
use reqwest::multipart::{Form, Part};

use crate::support::{TOKEN, Wafer, error_of, guest, http};

async fn refused(wafer: &Wafer, name: &str, bytes: Vec<u8>, manifest: &str) -> (u16, String) {
    let response = wafer.deploy_bytes(name, bytes, manifest).await;
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("x-wafer-error")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.unwrap();
    assert!(
        kind.is_some(),
        "platform errors carry x-wafer-error: {body}"
    );
    (status, error_of(&body))
}

fn stored_components(wafer: &Wafer) -> usize {
    std::fs::read_dir(wafer.data.join("components"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn bad_components_are_refused_with_the_reason_and_nothing_is_stored() {
    let wafer = Wafer::start();
    let hello = std::fs::read(guest("hello")).unwrap();

    let (status, error) = refused(&wafer, "garbage", b"definitely not wasm".to_vec(), "").await;
    assert_eq!(status, 400);
    assert!(error.contains("not a WebAssembly binary"), "{error}");

    let (status, error) = refused(&wafer, "truncated", hello[..hello.len() / 2].to_vec(), "").await;
    assert_eq!(status, 400);
    assert!(error.contains("failed to validate or compile"), "{error}");

    // A core module is run CGI-style only if it is a WASI command (has `_start`).
    let core = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let (status, error) = refused(&wafer, "core", core, "").await;
    assert_eq!(status, 400);
    assert!(error.contains("not a WASI 0.1 command"), "{error}");
    assert!(error.contains("no `_start` export"), "{error}");
    let odd_module = wat::parse_str(
        r#"(module (import "env" "secret" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let (status, error) = refused(&wafer, "odd-module", odd_module, "").await;
    assert_eq!(status, 400);
    assert!(error.contains("env") && error.contains("secret"), "{error}");

    let empty = wat::parse_str("(component)").unwrap();
    let (status, error) = refused(&wafer, "empty", empty, "").await;
    assert_eq!(status, 400);
    assert!(
        error.contains(
            "exports neither `wasi:http/incoming-handler` (0.2.x) nor `wasi:http/handler` (0.3.x)"
        ),
        "{error}"
    );
    assert!(error.contains("exports nothing"), "{error}");

    // A wasi:cli command: a real component, the wrong world.
    let command = std::fs::read(guest("command")).unwrap();
    let (status, error) = refused(&wafer, "command", command, "").await;
    assert_eq!(status, 400);
    assert!(error.contains("`wasi:cli/run@0.2"), "{error}");

    // An import wafer cannot satisfy.
    let odd = wat::parse_str(
        r#"(component
             (import "acme:secret/vault@1.0.0" (instance (export "open" (func))))
           )"#,
    )
    .unwrap();
    let (status, error) = refused(&wafer, "odd", odd, "").await;
    assert_eq!(status, 400);
    assert!(error.contains("acme:secret/vault"), "{error}");

    assert_eq!(stored_components(&wafer), 0);
    let list: Vec<serde_json::Value> = wafer
        .admin(Method::GET, "/_wafer/v1/functions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test]
async fn bad_manifests_and_names_are_refused_naming_the_field() {
    let wafer = Wafer::start();
    let hello = std::fs::read(guest("hello")).unwrap();
    for (manifest, expected) in [
        ("memroy = \"1MiB\"", "memroy"),
        ("[limits]\nmemory = \"lots\"", "lots"),
        ("[limits]\nmemory = -1", "negative"),
        ("[limits]\nconcurrency = 0", "limits.concurrency"),
        ("[limits]\ntimeout = \"3days\"", "limits.timeout"),
        ("[limits]\nmemory = \"100GiB\"", "limits.memory"),
        ("route = \"/a/../b\"", "route"),
        ("name = \"other\"", "name"),
        (
            "allowed_outbound_hosts = [\"ftp://x\"]",
            "allowed_outbound_hosts",
        ),
        ("[env]\n\"BAD NAME\" = \"x\"", "BAD NAME"),
    ] {
        let (status, error) = refused(&wafer, "f", hello.clone(), manifest).await;
        assert_eq!(status, 400, "{manifest}");
        assert!(error.contains(expected), "{manifest}: {error}");
    }
    for name in ["...", "a%2Fb", "Hello", "h%C3%A9llo", "-x"] {
        let (status, error) = refused(&wafer, name, hello.clone(), "").await;
        assert_eq!(status, 400, "{name}");
        assert!(
            error.contains("not a valid function name"),
            "{name}: {error}"
        );
    }
    assert_eq!(stored_components(&wafer), 0);
}

#[tokio::test]
async fn oversized_uploads_are_refused_before_they_are_read() {
    let wafer = Wafer::start_with(&["--max-upload", "64KiB"]);
    let big = vec![0u8; 200 << 10];
    let response = wafer.deploy_bytes("big", big, "").await;
    assert_eq!(response.status(), 413);
    assert!(error_of(&response.text().await.unwrap()).contains("over"));

    // A chunked upload (no Content-Length) is cut off at the limit too.
    let stream = futures::stream::iter((0..50).map(|_| Ok::<_, std::io::Error>(vec![0u8; 8192])));
    let form = Form::new().part(
        "component",
        Part::stream(reqwest::Body::wrap_stream(stream)),
    );
    let sent = wafer
        .admin(Method::PUT, "/_wafer/v1/functions/big")
        .multipart(form)
        .send()
        .await;
    match sent {
        Ok(response) => assert_eq!(response.status(), 413),
        // The server answered 413 and closed the connection while the client was still
        // writing; some clients (reqwest) report the broken write instead of the answer.
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    assert_eq!(stored_components(&wafer), 0);
    assert_eq!(
        crate::support::get(&wafer.url("/_wafer/healthz")).await.0,
        200
    );
}

#[tokio::test]
async fn admin_api_needs_the_token_in_the_authorization_header() {
    let wafer = Wafer::start();
    let hello = std::fs::read(guest("hello")).unwrap();
    let form = || Form::new().part("component", Part::bytes(hello.clone()));
    let url = wafer.url("/_wafer/v1/functions/hello");
    let attempts = [
        http().put(&url).multipart(form()),
        http()
            .put(&url)
            .bearer_auth("wrong-token")
            .multipart(form()),
        http()
            .put(&url)
            .bearer_auth(&TOKEN[..TOKEN.len() - 1])
            .multipart(form()),
        http().put(format!("{url}?token={TOKEN}")).multipart(form()),
        http()
            .put(&url)
            .header("x-wafer-token", TOKEN)
            .multipart(form()),
        http()
            .put(&url)
            .basic_auth("admin", Some(TOKEN))
            .multipart(form()),
    ];
    for attempt in attempts {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    for path in [
        "/_wafer/v1/functions",
        "/_wafer/v1/functions/x/logs",
        "/_wafer/v1/anything",
    ] {
        assert_eq!(
            http().get(wafer.url(path)).send().await.unwrap().status(),
            401,
            "{path}"
        );
    }
    // Nothing changed, and health and metrics stay open.
    assert_eq!(
        http()
            .get(wafer.url("/hello"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http()
            .get(wafer.url("/_wafer/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = http()
        .get(wafer.url("/_wafer/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(!metrics.text().await.unwrap().contains(TOKEN));
    assert!(!wafer.stderr().contains(TOKEN));
}
