//! The web console in a real browser (Debian's headless Chromium, driven over WebDriver by
//! `chromedriver`), and the OpenAPI document checked by a real validator
//! (`openapi-spec-validator` from PyPI). Screenshots go to `target/test-artifacts/console/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{TOKEN, Wafer, assert_ok, get, guest, root};

/// A `chromedriver` on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let binary = which("chromedriver").unwrap_or_else(|| {
            panic!("chromedriver is needed (apt-get install chromium chromium-driver; ./scripts/test installs them)")
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        Driver { child, port }
    }

    /// A headless Chromium session; retried while chromedriver starts listening.
    async fn session(&self) -> Client {
        let chromium = which("chromium").expect("chromium is needed (apt-get install chromium)");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_string(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{}", self.port))
                .await
            {
                Ok(client) => return client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session with chromium: {e}"),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(tool))
        .find(|p| p.is_file())
}

fn artifacts() -> PathBuf {
    let dir = root().join("target/test-artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

/// Waits until `check` holds in the page, or fails with `what` and a screenshot.
async fn until<F, Fut>(browser: &Client, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        if Instant::now() > deadline {
            screenshot(browser, "failed").await;
            let source = browser.source().await.unwrap_or_default();
            panic!("the console never showed {what}; page:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether an element matching `css` exists.
async fn exists(browser: &Client, css: &str) -> bool {
    !browser
        .find_all(Locator::Css(css))
        .await
        .unwrap_or_default()
        .is_empty()
}

async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn sign_in(browser: &Client, token: &str) {
    let field = browser.find(Locator::Id("token")).await.expect("#token");
    field.clear().await.unwrap();
    field.send_keys(token).await.unwrap();
    browser
        .find(Locator::Css("#signin button[type=submit]"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_console_signs_in_lists_charts_and_tails_logs_in_chromium() {
    let wafer = Wafer::start();
    wafer
        .deploy_ok("hello", &guest("hello"), "route = \"/hello\"\n")
        .await;
    let driver = Driver::start();
    let browser = driver.session().await;
    browser.goto(&wafer.url("/_wafer/")).await.unwrap();
    until(&browser, "the sign-in form", || {
        exists(&browser, "#signin #token")
    })
    .await;
    assert!(
        !exists(&browser, "#functions-table tr[data-function]").await,
        "no data before signing in"
    );

    // A wrong token: an error, and still no data.
    sign_in(&browser, "not-the-token").await;
    until(&browser, "a sign-in error", || async {
        !text_of(&browser, "#signin-error").await.trim().is_empty()
    })
    .await;
    assert!(!exists(&browser, "#functions-table tr[data-function]").await);
    screenshot(&browser, "1-wrong-token").await;

    // The right one: the function list.
    sign_in(&browser, TOKEN).await;
    until(&browser, "hello in the function list", || {
        exists(&browser, "#functions-table tr[data-function=hello] a")
    })
    .await;
    screenshot(&browser, "2-functions").await;

    // One function: calls made now reach its chart, and its log line reaches the tail.
    browser
        .find(Locator::Css("#functions-table tr[data-function=hello] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&browser, "the function view", || {
        exists(
            &browser,
            "#function[data-function=hello] svg.chart[data-series=calls]",
        )
    })
    .await;
    for i in 0..20 {
        let (status, _) = get(&wafer.url(&format!("/hello?from=browser-test-{i}"))).await;
        assert_eq!(status, 200);
    }
    until(&browser, "calls on the chart", || async {
        let Ok(chart) = browser
            .find(Locator::Css("svg.chart[data-series=calls]"))
            .await
        else {
            return false;
        };
        let points: u32 = chart
            .attr("data-points")
            .await
            .ok()
            .flatten()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        points >= 1 && exists(&browser, "svg.chart[data-series=calls] circle.point").await
    })
    .await;
    until(&browser, "latency on the chart", || {
        exists(&browser, "svg.chart[data-series=latency] circle.point")
    })
    .await;
    until(&browser, "the cold start's instantiation time", || {
        exists(&browser, "svg.chart[data-series=instantiate] circle.point")
    })
    .await;
    until(&browser, "the call's log line", || async {
        let lines = browser
            .find_all(Locator::Css("#logs .log-line"))
            .await
            .unwrap_or_default();
        for line in lines {
            if line
                .text()
                .await
                .unwrap_or_default()
                .contains("browser-test-19")
            {
                return true;
            }
        }
        false
    })
    .await;
    // A call after the page is open arrives on the live tail too.
    let (status, _) = get(&wafer.url("/hello?from=after-the-tail-opened")).await;
    assert_eq!(status, 200);
    until(&browser, "a live log line", || async {
        browser
            .source()
            .await
            .unwrap_or_default()
            .contains("after-the-tail-opened")
    })
    .await;
    screenshot(&browser, "3-function").await;

    // Signing out leaves no data on the page.
    browser
        .find(Locator::Id("signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&browser, "the sign-in form again", || {
        exists(&browser, "#signin #token")
    })
    .await;
    assert!(!exists(&browser, "#functions-table tr[data-function]").await);
    browser.close().await.unwrap();
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let wafer = Wafer::start();
    let response = reqwest::get(wafer.url("/_wafer/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let page = response.text().await.unwrap();
    // `wafer up` says where the console is, and where its token is (never the token).
    let console = format!("console at {}/_wafer/", wafer.url);
    crate::support::eventually(Duration::from_secs(10), "the console's address", || async {
        wafer.stderr().contains(&console)
    })
    .await;
    assert!(!wafer.stderr().contains(TOKEN));
    assert!(page.contains("console.js"), "{page}");
    assert!(!page.contains(TOKEN));
    for asset in ["/_wafer/console.js", "/_wafer/console.css"] {
        let (status, body) = get(&wafer.url(asset)).await;
        assert_eq!(status, 200, "{asset}");
        assert!(!body.is_empty());
    }
}

/// A Python virtual environment with `openapi-spec-validator` (is the document valid OpenAPI
/// 3.1?) and `openapi-core` (do real answers match it?), made once per machine under `target/`.
fn validator() -> PathBuf {
    let venv = root().join("target/venvs/openapi");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import openapi_spec_validator, openapi_core"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        assert_ok(
            &Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .output()
                .unwrap(),
            "python3 -m venv",
        );
        assert_ok(
            &Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "openapi-spec-validator==0.7.2",
                    "openapi-core==0.19.5",
                ])
                .output()
                .unwrap(),
            "pip install openapi-spec-validator openapi-core",
        );
    }
    python
}

/// Checks each answer in `answers` (method, path, status, body) against `document` with
/// `openapi-core`, printing `ok` or what does not match.
const CHECK_ANSWERS: &str = "import json, sys
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
api = OpenAPI.from_dict(json.load(open(sys.argv[1])))
bad = 0
for method, path, status, kind, body in json.load(open(sys.argv[2])):
    headers = {'x-wafer-error': kind} if kind else {}
    response = MockResponse(body.encode(), status_code=status, content_type='application/json', headers=headers)
    try:
        api.validate_response(MockRequest('http://127.0.0.1', method, path), response)
        print('ok', method, path, status)
    except Exception as e:
        bad += 1
        print('MISMATCH', method, path, status, repr(e), repr(e.__cause__))
sys.exit(1 if bad else 0)
";

/// One answer of the admin API as `CHECK_ANSWERS` reads it.
async fn answer(request: reqwest::RequestBuilder, method: &str, path: &str) -> serde_json::Value {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("x-wafer-error")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.text().await.unwrap();
    serde_json::json!([method, path, status, kind, body])
}

#[tokio::test]
async fn the_openapi_document_passes_a_validator() {
    let wafer = Wafer::start();
    let (status, document) = get(&wafer.url("/_wafer/v1/openapi.json")).await;
    assert_eq!(status, 200, "{document}");
    let parsed: serde_json::Value = serde_json::from_str(&document).unwrap();
    assert_eq!(parsed["openapi"], "3.1.0");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &document).unwrap();
    let python = validator();
    let check = Command::new(python)
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
             print('valid')",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert_ok(&check, "openapi-spec-validator");
    assert!(String::from_utf8_lossy(&check.stdout).contains("valid"));

    // Real answers, good and bad, match what the document says of them.
    use reqwest::Method;
    let hello = guest("hello");
    let deployed = wafer.deploy("hello", &hello, "route = \"/hello\"\n").await;
    let mut answers = vec![serde_json::json!([
        "put",
        "/_wafer/v1/functions/hello",
        deployed.status().as_u16(),
        "",
        deployed.text().await.unwrap()
    ])];
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
    for path in [
        "/_wafer/v1/functions",
        "/_wafer/v1/functions/hello",
        "/_wafer/v1/functions/hello/versions",
        "/_wafer/v1/functions/hello/stats",
        "/_wafer/v1/functions/hello/queues",
        "/_wafer/v1/functions/nobody",
        "/_wafer/v1/functions/nobody/stats",
    ] {
        answers.push(answer(wafer.admin(Method::GET, path), "get", path).await);
    }
    answers.push(
        answer(
            crate::support::http().get(wafer.url("/_wafer/healthz")),
            "get",
            "/_wafer/healthz",
        )
        .await,
    );
    let traffic = "/_wafer/v1/functions/hello/traffic";
    let split = wafer
        .admin(Method::PUT, traffic)
        .json(&serde_json::json!({"split": [{"version": 1, "weight": 100}]}));
    answers.push(answer(split, "put", traffic).await);
    let wrong = wafer
        .admin(Method::PUT, traffic)
        .json(&serde_json::json!({"split": [{"version": 9, "weight": 100}]}));
    answers.push(answer(wrong, "put", traffic).await);
    let rollback = "/_wafer/v1/functions/hello/rollback";
    answers.push(answer(wafer.admin(Method::POST, rollback), "post", rollback).await);
    let unauthorized = crate::support::http().get(wafer.url("/_wafer/v1/functions"));
    answers.push(answer(unauthorized, "get", "/_wafer/v1/functions").await);
    let answers_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(answers_file.path(), serde_json::to_vec(&answers).unwrap()).unwrap();
    let check = Command::new(validator())
        .args(["-c", CHECK_ANSWERS])
        .arg(file.path())
        .arg(answers_file.path())
        .output()
        .unwrap();
    assert_ok(&check, "openapi-core: answers against the document");
    let checked = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        checked.lines().filter(|l| l.starts_with("ok")).count(),
        answers.len(),
        "{checked}"
    );
}
