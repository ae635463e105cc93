//! Fuzzing deploy uploads with proptest: multipart bodies with any boundary, fields, file names,
//! content types and contents (manifests in TOML and JSON, modules, random bytes), cut short
//! anywhere, sent through the whole admin app over a real worker. Every upload is deployed or
//! refused with a 4xx naming why (never a panic, a 5xx or a hang). `PROPTEST_CASES` sets the run's length (CI runs a short one).

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;
use wafer_gateway::{Gateway, GatewayConfig, server};
use wafer_worker::{EngineConfig, Worker, WorkerConfig};

const TOKEN: &str = "fuzz-token";

/// A WASI 0.1 command that answers CGI-style.
const MODULE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Content-Type: text/plain\n\nok\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 29))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    module: Vec<u8>,
    _data: tempfile::TempDir,
}

/// One app for the whole run: deploys accumulate, as on a real server.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let data = tempfile::tempdir().unwrap();
        let router = runtime.block_on(async {
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
                max_upload: 1 << 20,
                ..GatewayConfig::default()
            };
            let gateway = Gateway::open(config, Arc::new(worker), registry)
                .await
                .unwrap();
            server::app(gateway)
        });
        Harness {
            runtime,
            router,
            module: wat::parse_str(MODULE).unwrap(),
            _data: data,
        }
    })
}

/// The bytes of one field.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        Just(b"route = \"/fz\"\n".to_vec()),
        Just(br#"{"route": "/fz", "limits": {"memory": "16MiB"}}"#.to_vec()),
        "\\PC{0,120}".prop_map(String::into_bytes),
        Just(Vec::new()),
        // The module, whole or with a byte changed.
        (any::<usize>(), any::<u8>(), any::<bool>()).prop_map(|(at, byte, change)| {
            let mut bytes = wat::parse_str(MODULE).unwrap();
            if change {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            bytes
        }),
    ]
}

#[derive(Debug, Clone)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    content: Vec<u8>,
}

fn part() -> impl Strategy<Value = Part> {
    let name = prop_oneof![
        Just("manifest".to_string()),
        Just("component".to_string()),
        "[a-z]{0,10}",
        "\\PC{0,12}",
    ];
    let filename = proptest::option::of(prop_oneof![
        Just("wafer.toml".to_string()),
        Just("wafer.json".to_string()),
        Just("c.wasm".to_string()),
        "\\PC{0,16}",
    ]);
    let content_type = proptest::option::of(prop_oneof![
        Just("application/toml".to_string()),
        Just("application/json".to_string()),
        Just("application/wasm".to_string()),
        "[ -~]{0,24}",
    ]);
    (name, filename, content_type, content()).prop_map(|(name, filename, content_type, content)| {
        Part {
            name,
            filename,
            content_type,
            content,
        }
    })
}

fn body(boundary: &str, parts: &[Part], ending: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = &part.filename {
            disposition.push_str(&format!("; filename=\"{filename}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(t) = &part.content_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.content);
        body.extend_from_slice(b"\r\n");
    }
    if ending {
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    body
}

proptest! {
    #[test]
    fn any_upload_is_deployed_or_refused_with_a_4xx(
        boundary in prop_oneof![Just("XX".to_string()), "[A-Za-z0-9'()+_,./:=?-]{1,70}", "\\PC{0,20}"],
        header_boundary in proptest::option::of("[ -~]{0,30}"),
        content_type in prop_oneof![
            Just("multipart/form-data".to_string()),
            Just("application/octet-stream".to_string()),
            "[ -~]{0,20}",
        ],
        parts in proptest::collection::vec(part(), 0..4),
        ending in any::<bool>(),
        cut in proptest::option::of(any::<usize>()),
        name in prop_oneof![Just("fz".to_string()), "[a-z0-9-]{1,12}", "\\PC{1,12}"],
    ) {
        let harness = harness();
        let mut bytes = body(&boundary, &parts, ending);
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let announced = header_boundary.unwrap_or_else(|| boundary.clone());
        let request = Request::builder()
            .method("PUT")
            .uri(format!("/_wafer/v1/functions/{}", urlencoding(&name)))
            .header("authorization", format!("Bearer {TOKEN}"));
        let request = match http::HeaderValue::from_str(&format!("{content_type}; boundary={announced}")) {
            Ok(value) => request.header("content-type", value),
            Err(_) => request,
        };
        let request = request.body(Body::from(bytes)).unwrap();
        let (status, text) = harness.runtime.block_on(async {
            let response = harness.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let text = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&text).into_owned())
        });
        prop_assert!(
            status.is_success() || status.is_client_error(),
            "{} {}", status, text
        );
        if status.is_client_error() && status != http::StatusCode::NOT_FOUND {
            prop_assert!(text.contains("\"error\""), "{} {}", status, text);
        }
    }
}

/// Percent-encodes a name for the path (the router decodes it).
fn urlencoding(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The harness deploys a good upload, so the refusals above are the uploads' doing.
#[test]
fn a_valid_upload_deploys() {
    let harness = harness();
    let upload = body(
        "XX",
        &[
            Part {
                name: "manifest".into(),
                filename: Some("wafer.toml".into()),
                content_type: None,
                content: b"route = \"/after\"\n".to_vec(),
            },
            Part {
                name: "component".into(),
                filename: Some("c.wasm".into()),
                content_type: None,
                content: harness.module.clone(),
            },
        ],
        true,
    );
    let (status, text) = harness.runtime.block_on(async {
        let request = Request::put("/_wafer/v1/functions/after")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "multipart/form-data; boundary=XX")
            .body(Body::from(upload))
            .unwrap();
        let response = harness.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned())
    });
    assert!(status.is_success(), "{status} {text}");
}
