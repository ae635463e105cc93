//! Writing functions: `wafer new` in each language, built and deployed as a user would, and every
//! example deployed from its manifest (built first when stale) and called.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Wafer, assert_ok, get, guest, http, root, status_of};

/// Runs `wafer` in `dir` against `wafer`'s server.
fn wafer_in(wafer: &Wafer, dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .current_dir(dir)
        .env("WAFER_SERVER", &wafer.url)
        .env("WAFER_TOKEN", crate::support::TOKEN)
        .output()
        .expect("run wafer")
}

#[tokio::test]
async fn wafer_new_scaffolds_build_deploy_and_answer_in_rust_js_and_python() {
    let wafer = Wafer::start();
    let tmp = tempfile::tempdir().unwrap();
    for (lang, name) in [("rust", "rs-fn"), ("js", "js-fn"), ("python", "py-fn")] {
        assert_ok(
            &wafer_in(&wafer, tmp.path(), &["new", name, "--lang", lang]),
            "wafer new",
        );
        // `wafer deploy` in the new folder builds it (no component yet), then deploys.
        let dir = tmp.path().join(name);
        let out = wafer_in(&wafer, &dir, &["deploy"]);
        assert_ok(&out, &format!("wafer deploy ({lang})"));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("deployed {name} v1")));
    }

    let (status, body) = get(&wafer.url("/rs-fn/hi")).await;
    assert_eq!(status, 200, "{body}");
    let greeting: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        greeting,
        json!({"message": "Hello from wafer!", "path": "/rs-fn/hi"})
    );
    let posted = http()
        .post(wafer.url("/rs-fn"))
        .json(&json!({"name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        posted.json::<Value>().await.unwrap()["message"],
        "Hello from Ada!"
    );
    let bad = http()
        .post(wafer.url("/rs-fn"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    for _ in 0..2 {
        let (status, body) = get(&wafer.url("/js-fn?x=1")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "Hello from wafer! (GET /js-fn?x=1) [javascript]\n")
        );
    }
    let (status, body) = get(&wafer.url("/py-fn/a")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from wafer! (GET /py-fn/a) [python]\n")
    );
    let echoed = http()
        .post(wafer.url("/py-fn"))
        .body("echo")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "echo");

    // `wafer build` runs the build command again, and says what it built.
    let out = wafer_in(&wafer, &tmp.path().join("py-fn"), &["build"]);
    assert_ok(&out, "wafer build");
    assert!(String::from_utf8_lossy(&out.stderr).contains("built ./py-fn.wasm"));
}

#[tokio::test]
async fn the_javascript_python_and_c_examples_answer() {
    let wafer = Wafer::start();
    for example in ["hello-js", "hello-py", "hello-c"] {
        let out = wafer.deploy_example(example);
        assert_ok(&out, &format!("deploying examples/{example}"));
    }
    let (status, body) = get(&wafer.url("/hello-js/a?b=c")).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "Hello from wafer! (GET /hello-js/a?b=c) [javascript]\n"
        )
    );
    let (status, body) = get(&wafer.url("/hello-py/a?b=c")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from wafer! (GET /hello-py/a?b=c) [python]\n")
    );
    // The C example is a WASI 0.1 command run CGI-style.
    let response = http()
        .get(wafer.url("/hello-c/a?b=c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        response.text().await.unwrap(),
        "Hello from wafer! (GET /hello-c/a?b=c) [c]\n"
    );
    for example in ["hello-js", "hello-py", "hello-c"] {
        let echoed = http()
            .post(wafer.url(&format!("/{example}")))
            .body(format!("echo from {example}"))
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.text().await.unwrap(), format!("echo from {example}"));
    }
    let logs = wafer.logs("hello-c").await;
    assert!(
        logs.contains("GET /hello-c/a?b=c"),
        "the module's stderr is its log: {logs}"
    );

    // The JavaScript example as a user deploys their own, without its `reuse = 1`: its
    // `fetch` handler cannot serve a second request on one instance, and no caller may see
    // that. GET, POST, GET, POST from one client, then from two at once (a new function).
    let js = root().join("examples/hello-js/hello-js.wasm");
    wafer.deploy_ok("js-reused", &js, "").await;
    calls_in_a_row(&wafer, "js-reused", "one").await;
    assert_eq!(
        status_of(&wafer, "js-reused").await["fresh_instance_per_call"],
        true
    );
    wafer.deploy_ok("js-pair", &js, "").await;
    tokio::join!(
        calls_in_a_row(&wafer, "js-pair", "left"),
        calls_in_a_row(&wafer, "js-pair", "right")
    );
}

/// GET, POST, GET, POST on `function`, each answering 200 with the right body.
async fn calls_in_a_row(wafer: &Wafer, function: &str, client: &str) {
    let url = wafer.url(&format!("/{function}"));
    for round in 0..2 {
        let response = http().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{client} GET {round}");
        assert_eq!(
            response.text().await.unwrap(),
            format!("Hello from wafer! (GET /{function}) [javascript]\n"),
            "{client} GET {round}"
        );
        let body = format!("{client} echo {round} ").repeat(1000);
        let response = http().post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200, "{client} POST {round}");
        assert_eq!(
            response.text().await.unwrap(),
            body,
            "{client} POST {round}"
        );
    }
}

#[tokio::test]
async fn a_cgi_module_sees_the_request_in_its_environment() {
    let wafer = Wafer::start();
    // A WASI command whose CGI output is its environment and stdin, so the test can read what
    // wafer passed: written in WAT to depend on nothing.
    let module = std::fs::read(root().join("cli/tests/guests/cgi-env.wat")).unwrap();
    let module = wat::parse_bytes(&module).unwrap().into_owned();
    let response = wafer
        .deploy_bytes("cgi", module, "route = \"/cgi\"\n[env]\nOWN = \"mine\"")
        .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let response = http()
        .post(wafer.url("/cgi/deeper/path?q=1&r=2"))
        .header("x-custom", "yes")
        .header("authorization", "Bearer secret")
        .body("the body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-from-cgi"], "1");
    let text = response.text().await.unwrap();
    for expected in [
        "REQUEST_METHOD=POST",
        "SCRIPT_NAME=/cgi",
        "PATH_INFO=/deeper/path",
        "QUERY_STRING=q=1&r=2",
        "CONTENT_LENGTH=8",
        "HTTP_X_CUSTOM=yes",
        "OWN=mine",
        "GATEWAY_INTERFACE=CGI/1.1",
        "stdin: the body",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(
        !text.contains("secret"),
        "credentials stay out of the environment: {text}"
    );
}

#[tokio::test]
async fn the_rust_sdk_examples_answer() {
    let wafer = Wafer::start();
    for example in ["json-api", "counter", "image-resize"] {
        guest(example);
        let out = wafer.deploy_example(example);
        assert_ok(&out, &format!("deploying examples/{example}"));
    }

    // json-api: routes, JSON, 404 and 405.
    let items: Value = serde_json::from_str(&get(&wafer.url("/json-api/items")).await.1).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 3);
    let (status, body) = get(&wafer.url("/json-api/items/2")).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["name"],
        "oolong"
    );
    assert_eq!(get(&wafer.url("/json-api/items/99")).await.0, 404);
    assert_eq!(get(&wafer.url("/json-api/nowhere")).await.0, 404);
    let deleted = http()
        .delete(wafer.url("/json-api/items/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 405);
    let stats: Value = http()
        .post(wafer.url("/json-api/stats"))
        .json(&json!({"numbers": [1.0, 2.0, 4.5]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"count": 3, "sum": 7.5, "mean": 2.5, "min": 1.0, "max": 4.5})
    );
    let greeted = http()
        .post(wafer.url("/json-api/greet"))
        .json(&json!({"name": "Grace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(greeted.status(), 201);
    assert_eq!(
        greeted.json::<Value>().await.unwrap()["message"],
        "Hello, Grace!"
    );
    let bad = http()
        .post(wafer.url("/json-api/stats"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("invalid JSON body"));

    // counter: one warm instance serves consecutive calls, then (reuse = 20) a fresh one.
    let mut seen = Vec::new();
    for _ in 0..21 {
        let count: Value = serde_json::from_str(&get(&wafer.url("/counter")).await.1).unwrap();
        seen.push((
            count["instance"].as_str().unwrap().to_string(),
            count["count"].as_u64().unwrap(),
        ));
    }
    assert!(
        seen[..20].iter().all(|(id, _)| *id == seen[0].0),
        "{seen:?}"
    );
    assert_eq!(seen[19].1, 20);
    assert_ne!(seen[20].0, seen[0].0, "the 21st call gets a fresh instance");
    assert_eq!(seen[20].1, 1);

    // image-resize: a real PNG in, a real PNG out, resized.
    let png = encode_png(64, 48);
    let resized = http()
        .post(wafer.url("/image-resize?width=16"))
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resized.status(), 200);
    assert_eq!(resized.headers()["content-type"], "image/png");
    let (width, height) = decode_png_size(&resized.bytes().await.unwrap());
    assert_eq!((width, height), (16, 12));
    let no_width = http()
        .post(wafer.url("/image-resize"))
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(no_width.status(), 400);
    let not_image = http()
        .post(wafer.url("/image-resize?width=10"))
        .body("GIF89a...")
        .send()
        .await
        .unwrap();
    assert_eq!(not_image.status(), 415);
    let info: Value = wafer
        .admin(Method::GET, "/_wafer/v1/functions/image-resize")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["manifest"]["limits"]["memory"], "512MiB");
}

fn encode_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

/// Decodes the whole image (so it must be valid) and returns its size.
fn decode_png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    (frame.width, frame.height)
}
