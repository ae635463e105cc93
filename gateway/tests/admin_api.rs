//! The admin API and function routing in memory: the whole axum app (`server::app`) over a real
//! worker with a real WASI 0.1 module, called with `oneshot` and no socket. What this covers
//! without the binary: tokens, statuses and `x-wafer-error` kinds, multipart uploads, versions,
//! `x-wafer-path`, logs and deletes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use wafer_gateway::{Gateway, GatewayConfig, server};
use wafer_worker::{EngineConfig, Worker, WorkerConfig};

const TOKEN: &str = "in-memory-token";
const ANSWER: &str = "Content-Type: text/plain\n\nhello from cgi\n";

/// A WASI 0.1 command that answers CGI-style with [`ANSWER`].
fn module() -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const {}))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        ANSWER.escape_default(),
        ANSWER.len()
    ))
    .unwrap()
}

struct App {
    router: axum::Router,
    _data: tempfile::TempDir,
}

async fn app() -> App {
    let data = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let worker = Worker::new(WorkerConfig {
        engine: EngineConfig {
            max_instances: 32,
            max_memory: 256 << 20,
            pooling: false,
            ..EngineConfig::default()
        },
        ..WorkerConfig::new(data.path().to_path_buf(), registry.clone())
    })
    .unwrap();
    let config = GatewayConfig {
        data_dir: data.path().to_path_buf(),
        admin_token: TOKEN.into(),
        ..GatewayConfig::default()
    };
    let gateway: Arc<Gateway> = Gateway::open(config, Arc::new(worker), registry)
        .await
        .unwrap();
    App {
        router: server::app(gateway),
        _data: data,
    }
}

/// Status, `x-wafer-error` kind, and body text.
async fn send(app: &App, request: Request<Body>) -> (StatusCode, Option<String>, String) {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("x-wafer-error")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8_lossy(&body).into_owned())
}

fn admin(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
}

/// A multipart field: name, file name, bytes.
type Field<'a> = (&'a str, &'a str, &'a [u8]);

/// A multipart upload of `fields`.
fn upload(name: &str, fields: &[Field]) -> Request<Body> {
    let mut body = Vec::new();
    for (field, file, bytes) in fields {
        body.extend_from_slice(
            format!(
                "--XX\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XX--\r\n");
    admin("PUT", &format!("/_wafer/v1/functions/{name}"))
        .header("content-type", "multipart/form-data; boundary=XX")
        .body(Body::from(body))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_admin_api_needs_the_token() {
    let app = app().await;
    // No header, a wrong token, and the right one without the `Bearer` scheme.
    for authorization in [None, Some("Bearer wrong"), Some(TOKEN)] {
        let mut request = Request::get("/_wafer/v1/functions");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let (status, kind, _) = send(&app, request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(kind.as_deref(), Some("unauthorized"));
    }
    // Health and metrics are open.
    assert_eq!(send(&app, get("/_wafer/healthz")).await.0, StatusCode::OK);
    assert_eq!(send(&app, get("/_wafer/metrics")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn deploy_route_invoke_log_and_delete() {
    let app = app().await;
    let manifest = b"route = \"/cgi\"\n[env]\nGREETING = \"hi\"\n";
    let wasm = module();
    let deploy = || {
        upload(
            "cgi",
            &[
                ("manifest", "wafer.toml", manifest),
                ("component", "c.wasm", &wasm),
            ],
        )
    };
    let (status, _, body) = send(&app, deploy()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["version"], 1);
    assert_eq!(info["status"]["interface"], "wasi 0.1 command");
    let (status, _, body) = send(&app, deploy()).await;
    assert_eq!(status, StatusCode::OK, "a redeploy replaces: {body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["version"], 2);

    // Traffic under the route, and through the admin API with another path.
    let (status, _, body) = send(&app, get("/cgi/anything?x=1")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "hello from cgi\n")
    );
    let invoke = admin("POST", "/_wafer/v1/functions/cgi/invoke")
        .header("x-wafer-path", "/cgi/other")
        .body(Body::from("data"))
        .unwrap();
    assert_eq!(send(&app, invoke).await.0, StatusCode::OK);
    let invoke = admin("GET", "/_wafer/v1/functions/cgi/invoke")
        .header("x-wafer-path", "no-slash")
        .body(Body::empty())
        .unwrap();
    let (status, kind, body) = send(&app, invoke).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(kind.as_deref(), Some("bad_request"));

    let list = admin("GET", "/_wafer/v1/functions")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&app, list).await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["name"], "cgi");
    assert_eq!(list[0]["status"]["invocations_ok"], 2);

    // Logs come as JSON lines; an unknown route and the reserved prefix are the platform's 404s.
    let logs = admin("GET", "/_wafer/v1/functions/cgi/logs?tail=10")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&app, logs).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/nothing-here", "/_wafer/nothing", "/_wafer/v1/nothing"] {
        let request = admin("GET", path).body(Body::empty()).unwrap();
        let (status, kind, _) = send(&app, request).await;
        assert_eq!(
            (status, kind.as_deref()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}"
        );
    }

    let delete = || {
        admin("DELETE", "/_wafer/v1/functions/cgi")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, delete()).await.0, StatusCode::NO_CONTENT);
    assert_eq!(send(&app, delete()).await.0, StatusCode::NOT_FOUND);
    let (status, kind, _) = send(&app, get("/cgi")).await;
    assert_eq!(
        (status, kind.as_deref()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_naming_what_is_wrong() {
    let app = app().await;
    let wasm = module();
    let cases: [(&[Field], &str, &str); 4] = [
        (
            &[("manifest", "wafer.toml", b"")],
            "bad_request",
            "missing multipart field `component`",
        ),
        (
            &[("extra", "x", b""), ("component", "c.wasm", &wasm)],
            "bad_request",
            "unexpected multipart field `extra`",
        ),
        (
            &[
                ("manifest", "wafer.toml", b"[limits]\nmemroy = 1"),
                ("component", "c.wasm", &wasm),
            ],
            "invalid_manifest",
            "memroy",
        ),
        (
            &[("component", "c.wasm", b"not wasm at all")],
            "invalid_component",
            "not a WebAssembly binary",
        ),
    ];
    for (fields, want_kind, want_text) in cases {
        let (status, kind, body) = send(&app, upload("bad", fields)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(kind.as_deref(), Some(want_kind), "{body}");
        assert!(body.contains(want_text), "{body}");
    }
    let list = admin("GET", "/_wafer/v1/functions")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, list).await.2, "[]", "nothing was deployed");
    let bad_name = upload("Bad_Name", &[("component", "c.wasm", &wasm)]);
    let (status, kind, _) = send(&app, bad_name).await;
    assert_eq!(
        (status, kind.as_deref()),
        (StatusCode::BAD_REQUEST, Some("invalid_manifest"))
    );
}

/// The `method | path` rows of the admin module's route table.
fn documented_rows() -> Vec<(Vec<String>, String)> {
    include_str!("../src/admin.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("//! | "))
        .filter(|row| !row.starts_with("method") && !row.starts_with("---"))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let methods = cells[0].split(", ").map(str::to_lowercase).collect();
            let path = cells[1].trim_matches('`');
            let path = path.split('?').next().unwrap().to_string();
            (methods, path)
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_every_route_in_it_answers() {
    let app = app().await;
    // Open, like health: tools fetch it before they have a token.
    let (status, _, body) = send(&app, get("/_wafer/v1/openapi.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    let rows = documented_rows();
    assert!(rows.len() >= 12, "{rows:?}");
    for (methods, path) in &rows {
        for method in methods {
            let method = if method == "any" { "post" } else { method };
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is served but not in the document"
            );
        }
    }

    // Each operation in the document is a route: without the token a protected one answers
    // 401, and with it none answers 405 or the API's "no such route".
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{name}", "nobody").replace("{tag}", "canary");
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let open = operation["security"] == serde_json::json!([{}]);
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let (status, kind, body) = send(&app, request).await;
            if open {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
                assert_eq!(kind.as_deref(), Some("unauthorized"));
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} does not document its 401"
                );
            }
            let request = admin(&method.to_uppercase(), &concrete)
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = send(&app, request).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body.contains("no wafer API at"),
                "{method} {path} is in the document but not served: {body}"
            );
        }
    }
    assert!(operations >= 16, "{operations} operations");

    // The error shape and its kinds are described once and used everywhere.
    let kinds =
        &doc["components"]["responses"]["Error"]["headers"]["x-wafer-error"]["schema"]["enum"];
    for kind in ["unauthorized", "not_found", "no_version", "timeout", "trap"] {
        assert!(
            kinds.as_array().unwrap().iter().any(|k| k == kind),
            "{kind} not in {kinds}"
        );
    }
    let deploy = &paths["/_wafer/v1/functions/{name}"]["put"];
    assert!(deploy["requestBody"]["content"]["multipart/form-data"].is_object());
    assert!(deploy["responses"]["413"]["headers"]["x-wafer-error"].is_object());
}

#[tokio::test]
async fn stats_count_each_call_in_its_bucket() {
    let app = app().await;
    let wasm = module();
    let deployed = upload(
        "cgi",
        &[
            ("manifest", "wafer.toml", b"route = \"/cgi\"\n"),
            ("component", "c.wasm", &wasm),
        ],
    );
    assert_eq!(send(&app, deployed).await.0, StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(send(&app, get("/cgi")).await.0, StatusCode::OK);
    }
    let request = admin("GET", "/_wafer/v1/functions/cgi/stats")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["bucket_seconds"], 10);
    let points = stats["points"].as_array().unwrap();
    assert_eq!(points.len(), 360);
    // A WASI 0.1 command starts an instance for every call.
    assert_eq!(stats["totals"]["calls"], 3, "{}", stats["totals"]);
    assert_eq!(stats["totals"]["cold"], 3);
    assert_eq!(stats["totals"]["errors"], 0);
    let calls: u64 = points.iter().map(|p| p["calls"].as_u64().unwrap()).sum();
    assert_eq!(calls, 3);
    assert!(
        points
            .iter()
            .any(|p| p["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0))
    );
    assert!(points.iter().any(|p| p["instantiate_ms"].is_number()));
    let request = admin("GET", "/_wafer/v1/functions/nobody/stats")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_console_is_embedded_and_needs_no_token_to_load() {
    let app = app().await;
    let (status, _, page) = send(&app, get("/_wafer/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("/_wafer/console.js"), "{page}");
    let response = app.router.clone().oneshot(get("/_wafer")).await.unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/_wafer/");
}
