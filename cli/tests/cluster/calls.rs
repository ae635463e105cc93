//! Deploys and calls across gateways and workers: propagation, every kind of component, where
//! calls go.

use std::collections::HashSet;
use std::time::Duration;

use crate::e2e::queues::{Broker, unique_queue};
use crate::e2e::{Gate, TOKEN, eventually, guest, http};
use crate::support::{Cluster, get};

#[tokio::test]
async fn a_deploy_through_one_gateway_is_served_through_every_gateway() {
    let cluster = Cluster::start(2, 3).await;
    let hello = guest("hello");
    let wasm = hello.to_str().unwrap();
    let out = cluster.deploy(
        0,
        &["--name", "greet", "--wasm", wasm, "--env", "GREETING=Hi"],
    );
    assert!(out.contains("deployed greet v1"), "{out}");
    // Right after the deploy returns, every gateway serves it, from any worker.
    let (status, worker, body) = get(&cluster.url(1, "/greet")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hi from wafer! (GET /greet)\n")
    );
    assert!(worker.is_some(), "the serving worker is named");

    // A redeploy: the call right after it returns gets the new version through the gateway
    // that deployed it, and through the other one as soon as it hears of the change.
    cluster.deploy(
        0,
        &["--name", "greet", "--wasm", wasm, "--env", "GREETING=Howdy"],
    );
    let (_, _, body) = get(&cluster.url(0, "/greet")).await;
    assert_eq!(body, "Howdy from wafer! (GET /greet)\n");
    eventually(Duration::from_secs(10), "gateway 1 serving v2", || async {
        get(&cluster.url(1, "/greet")).await.2 == "Howdy from wafer! (GET /greet)\n"
    })
    .await;

    // The CLI sees the same through either gateway; logs name the worker of each line.
    let list = cluster.cli(1, &["list"]);
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(out.contains("greet") && out.contains("/greet"), "{out}");
    let logs = cluster.cli(1, &["logs", "greet", "--tail", "10"]);
    let out = String::from_utf8_lossy(&logs.stdout);
    assert!(out.contains("GET /greet"), "{out}");
    assert!(out.contains("w-"), "each line names its worker: {out}");

    // A delete through one gateway reaches the other.
    let out = cluster.cli(0, &["delete", "greet"]);
    assert!(out.status.success());
    eventually(
        Duration::from_secs(30),
        "the delete reaching gateway 1",
        || async { get(&cluster.url(1, "/greet")).await.0 == 404 },
    )
    .await;
}

#[tokio::test]
async fn a_busy_function_spreads_over_the_workers_and_a_quiet_one_stays_on_one() {
    let cluster = Cluster::start(1, 3).await;
    let sleep = guest("sleep");
    cluster.deploy(
        0,
        &[
            "--name",
            "busy",
            "--wasm",
            sleep.to_str().unwrap(),
            "--concurrency",
            "2",
        ],
    );
    // Six calls held open: two fit on each worker before the gateway spills to the next.
    let gate = Gate::new();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let body = gate.body();
            let url = cluster.url(0, "/busy?hold=1&ms=0");
            tokio::spawn(async move {
                let response = http().post(url).body(body).send().await.unwrap();
                let worker = response.headers().get("x-wafer-worker").cloned();
                (response.status().as_u16(), worker)
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "six calls running", || async {
        let info: serde_json::Value = crate::e2e::http()
            .get(cluster.url(0, "/_wafer/v1/functions/busy"))
            .bearer_auth(crate::e2e::TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        info["status"]["instances_busy"] == 6
    })
    .await;
    gate.open();
    let mut workers = HashSet::new();
    for call in calls {
        let (status, worker) = call.await.unwrap();
        assert_eq!(status, 200);
        workers.insert(worker.expect("served by a worker"));
    }
    assert_eq!(workers.len(), 3, "the busy function ran on every worker");

    // A quiet function's calls, one after another, stay warm on one instance of one worker.
    let calls = guest("calls");
    cluster.deploy(0, &["--name", "quiet", "--wasm", calls.to_str().unwrap()]);
    let mut seen = Vec::new();
    let mut workers = HashSet::new();
    for _ in 0..5 {
        let (status, worker, body) = get(&cluster.url(0, "/quiet")).await;
        assert_eq!(status, 200);
        seen.push(body);
        workers.insert(worker);
    }
    assert_eq!(seen, ["1", "2", "3", "4", "5"], "one warm instance");
    assert_eq!(workers.len(), 1);
}

#[tokio::test]
async fn components_of_every_kind_run_through_a_gateway() {
    let cluster = Cluster::start(1, 2).await;
    // Rust (wasi:http 0.2 and 0.3), JavaScript, Python, and C as a WASI 0.1 command; the CLI
    // builds the examples that are not built yet.
    guest("hello");
    for (example, path, answer) in [
        ("hello", "/hello", "Hello from wafer! (GET /hello)\n"),
        (
            "hello-p3",
            "/hello-p3",
            "Hello from wafer! (GET /hello-p3)\n",
        ),
        (
            "hello-js",
            "/hello-js",
            "Hello from wafer! (GET /hello-js) [javascript]\n",
        ),
        (
            "hello-py",
            "/hello-py",
            "Hello from wafer! (GET /hello-py) [python]\n",
        ),
        (
            "hello-c",
            "/hello-c",
            "Hello from wafer! (GET /hello-c) [c]\n",
        ),
    ] {
        cluster.deploy(0, &[&format!("examples/{example}")]);
        let (status, _, body) = get(&cluster.url(0, path)).await;
        assert_eq!((status, body.as_str()), (200, answer), "{example}");
    }
}

#[tokio::test]
async fn a_worker_with_an_empty_data_directory_serves_everything_from_the_database() {
    let mut cluster = Cluster::start(1, 1).await;
    let hello = guest("hello");
    let calls = guest("calls");
    cluster.deploy(0, &["--name", "a", "--wasm", hello.to_str().unwrap()]);
    cluster.deploy(0, &["--name", "b", "--wasm", calls.to_str().unwrap()]);
    // A new worker joins with nothing on disk; then the first one goes away.
    cluster.add_worker();
    let newcomer = cluster.workers[1].worker_id().await;
    cluster.workers[0].kill9();
    for path in ["/a", "/b"] {
        eventually(
            Duration::from_secs(60),
            "served by the newcomer",
            || async {
                let (status, worker, _) = get(&cluster.url(0, path)).await;
                status == 200 && worker.as_deref() == Some(newcomer.as_str())
            },
        )
        .await;
    }
}

#[test]
fn gateway_and_worker_name_what_they_are_missing() {
    for command in ["gateway", "worker"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args([command, "--listen", "127.0.0.1:0", "--token", "t"])
            .env_remove("WAFER_DATABASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("--database-url"),
            "{stderr}"
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args([command, "--database-url", "postgres://127.0.0.1/x"])
            .env_remove("WAFER_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("--token"),
            "{stderr}"
        );
    }
}

/// A GET through a gateway with headers: status, the version that served it, the body.
async fn get_version(url: &str, headers: &[(&str, &str)]) -> (u16, Option<u64>, String) {
    let mut request = http().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-wafer-version")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, version, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn versions_split_and_roll_back_across_gateways_and_workers() {
    let cluster = Cluster::start(2, 2).await;
    let hello = guest("hello");
    let wasm = hello.to_str().unwrap();
    cluster.deploy(0, &["--name", "f", "--wasm", wasm, "--env", "GREETING=one"]);
    let out = cluster.deploy(
        0,
        &[
            "--name",
            "f",
            "--wasm",
            wasm,
            "--env",
            "GREETING=two",
            "--no-traffic",
            "--tag",
            "canary",
        ],
    );
    assert!(out.contains("deployed f v2 taking no traffic"), "{out}");
    let url = |gateway| cluster.url(gateway, "/f");

    // The canary is reachable by its tag through either gateway; nothing else reaches it.
    let (status, version, body) = get_version(&url(0), &[("x-wafer-version", "canary")]).await;
    assert_eq!((status, version), (200, Some(2)), "{body}");
    assert!(body.starts_with("two from wafer!"), "{body}");
    eventually(
        Duration::from_secs(10),
        "gateway 1 knowing the tag",
        || async {
            get_version(&url(1), &[("x-wafer-version", "canary")])
                .await
                .1
                == Some(2)
        },
    )
    .await;
    for _ in 0..50 {
        assert_eq!(get_version(&url(1), &[]).await.1, Some(1));
    }

    // A 50/50 split through one gateway; both versions answer, from both workers.
    let out = cluster.cli(0, &["traffic", "f", "1=50", "2=50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let (status, version, body) = get_version(&url(0), &[]).await;
        assert_eq!(status, 200, "{body}");
        seen.insert(version.unwrap());
    }
    assert_eq!(seen, HashSet::from([1, 2]));

    // Roll back through the other gateway: the first gateway follows within moments, and no
    // call fails meanwhile.
    let out = cluster.cli(1, &["rollback", "f", "--to", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, version, _) = get_version(&url(1), &[]).await;
    assert_eq!(version, Some(1));
    eventually(Duration::from_secs(10), "gateway 0 rolled back", || async {
        let mut all_one = true;
        for _ in 0..20 {
            let (status, version, body) = get_version(&url(0), &[]).await;
            assert_eq!(status, 200, "{body}");
            all_one &= version == Some(1);
        }
        all_one
    })
    .await;

    // Untagged and without traffic, v2 is no longer reachable.
    let out = cluster.cli(0, &["tag", "f", "--remove", "canary"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _, body) = get_version(&url(0), &[("x-wafer-version", "2")]).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn two_gateways_run_each_slot_of_a_schedule_once() {
    use crate::e2e::queues::Collector;
    let cluster = Cluster::start(2, 1).await;
    let (collector, collector_url) = Collector::start(Duration::ZERO).await;
    let manifest = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{collector_url}\"\nREPORT = \"id\"\n\
         [[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\n"
    );
    cluster
        .deploy_manifest(0, "tick", &guest("collect"), &manifest)
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let reports = collector.reports();
    let mut slots = Vec::new();
    for (report, times) in &reports {
        let report = String::from_utf8_lossy(report);
        assert_eq!(*times, 1, "{report} ran {times} times");
        assert!(report.ends_with(" wafer.schedule"), "{report}");
        slots.push(report.to_string());
    }
    // Both gateways run the schedule; the database lets one of them through per slot.
    assert!(slots.len() >= 5, "{slots:?}");
}

/// The console's queue panel on a cluster: each worker's consumer, its state and the queue's
/// depths, asked of the workers through the gateway.
#[tokio::test]
async fn a_gateway_reports_each_workers_queue_consumers() {
    let broker = Broker::connect().await;
    let queue = unique_queue("cluster-queues");
    broker.declare(&queue).await;
    let cluster = Cluster::start(1, 2).await;
    let manifest = format!("[[queue]]\nqueue = \"{queue}\"\n");
    cluster
        .deploy_manifest(0, "consumer", &guest("hello"), &manifest)
        .await;
    // Nobody consumes the dead-letter queue, so what is put there stays to be counted.
    let dead_letters = format!("{queue}.dlq");
    let report = || async {
        let response = http()
            .get(cluster.url(0, "/_wafer/v1/functions/consumer/queues"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Vec<serde_json::Value>>().await.unwrap()
    };
    eventually(
        Duration::from_secs(60),
        "both workers consuming",
        || async {
            let infos = report().await;
            infos.len() == 2 && infos.iter().all(|i| i["connected"] == true)
        },
    )
    .await;
    broker
        .publish_all(
            &dead_letters,
            (0..3).map(|i| format!("dead-{i}").into_bytes()),
        )
        .await;
    let infos = report().await;
    let workers: HashSet<&str> = infos.iter().filter_map(|i| i["worker"].as_str()).collect();
    let expected: HashSet<&str> = cluster.workers.iter().map(|w| w.url.as_str()).collect();
    assert_eq!(
        workers, expected,
        "one entry per worker, naming it: {infos:?}"
    );
    for info in &infos {
        assert_eq!(info["queue"], queue.as_str(), "{info}");
        assert_eq!(info["dead_letter_queue"], dead_letters.as_str(), "{info}");
        assert_eq!(info["dead_letters"], 3, "{info}");
        let broker = info["broker"].as_str().unwrap();
        assert!(!broker.contains(":guest@"), "no password shown: {broker}");
    }
    // An unknown function is refused as on a single node; a function without triggers has
    // none to show.
    let unknown = http()
        .get(cluster.url(0, "/_wafer/v1/functions/nobody/queues"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    broker.cleanup().await;
}
