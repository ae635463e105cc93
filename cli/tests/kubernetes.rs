//! The Kubernetes manifests in `deploy/kubernetes`, checked offline: every resource parses and
//! is what the README says, ports and probes line up, and every flag and variable the
//! containers pass is one `wafer gateway` / `wafer worker` really takes. Where `kubectl` is
//! installed, both kustomizations are also rendered with it.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy/kubernetes")
}

/// The documents of every resource a kustomization lists (recursively, for bases).
fn resources(kustomization: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(kustomization.join("kustomization.yaml")).unwrap();
    let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
    let mut out = Vec::new();
    for resource in doc["resources"].as_vec().expect("a resources list") {
        let path = kustomization.join(resource.as_str().unwrap());
        if path.is_dir() {
            out.extend(resources(&path));
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is listed but unreadable: {e}", path.display()));
        let docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        for doc in docs {
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{}: no apiVersion",
                path.display()
            );
            out.push(doc);
        }
    }
    out
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(docs: &[Yaml]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    kinds
}

/// What `wafer <command> --help` prints.
fn help(command: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args([command, "--help"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Checks one Deployment's container against the `wafer` subcommand it runs: flags, variables,
/// the listen port, and probes on `/_wafer/healthz` at a named container port.
fn check_container(deployment: &Yaml, command: &str, port: i64) {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], command);
    let help = help(command);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")),
            "`wafer {command}` has no {flag}"
        );
    }
    let listen = args
        .iter()
        .position(|a| *a == "--listen")
        .map(|i| args[i + 1])
        .expect("--listen");
    assert!(listen.ends_with(&format!(":{port}")), "{listen}");
    for env in container["env"].as_vec().unwrap() {
        let name = env["name"].as_str().unwrap();
        if name.starts_with("WAFER_") {
            assert!(
                help.contains(&format!("env: {name}")),
                "`wafer {command}` reads no {name}"
            );
        }
    }
    let ports = container["ports"].as_vec().unwrap();
    assert_eq!(ports[0]["containerPort"].as_i64(), Some(port));
    let port_name = ports[0]["name"].as_str().unwrap();
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/_wafer/healthz"), "{probe}");
        assert_eq!(get["port"].as_str(), Some(port_name), "{probe}");
    }
    assert!(!container["resources"]["requests"]["cpu"].is_badvalue());
}

#[test]
fn the_base_runs_gateways_and_workers_with_probes_budgets_and_autoscaling() {
    let docs = resources(&dir().join("base"));
    assert_eq!(
        kinds(&docs),
        [
            "Deployment wafer-gateway",
            "Deployment wafer-worker",
            "HorizontalPodAutoscaler wafer-gateway",
            "HorizontalPodAutoscaler wafer-worker",
            "PodDisruptionBudget wafer-gateway",
            "PodDisruptionBudget wafer-worker",
            "Service wafer-gateway",
        ]
    );
    check_container(find(&docs, "Deployment", "wafer-gateway"), "gateway", 8080);
    check_container(find(&docs, "Deployment", "wafer-worker"), "worker", 8081);
    let service = find(&docs, "Service", "wafer-gateway");
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_str(),
        Some("http")
    );
    // The worker drains within its grace period.
    let worker = &find(&docs, "Deployment", "wafer-worker")["spec"]["template"]["spec"];
    assert!(worker["terminationGracePeriodSeconds"].as_i64().unwrap() > 30);
    for (kind, name) in [
        ("PodDisruptionBudget", "wafer-worker"),
        ("HorizontalPodAutoscaler", "wafer-worker"),
    ] {
        let doc = find(&docs, kind, name);
        let target = &doc["spec"]["scaleTargetRef"]["name"];
        let selector = &doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"];
        assert!(
            target.as_str() == Some("wafer-worker") || selector.as_str() == Some("wafer-worker"),
            "{kind} {name} points at the workers"
        );
    }
}

#[test]
fn the_keda_overlay_scales_workers_on_queue_depth() {
    let overlay = dir().join("overlays/keda");
    let docs = resources(&overlay);
    let scaled = find(&docs, "ScaledObject", "wafer-worker");
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("wafer-worker")
    );
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("rabbitmq"));
    assert_eq!(trigger["metadata"]["mode"].as_str(), Some("QueueLength"));
    let auth = trigger["authenticationRef"]["name"].as_str().unwrap();
    find(&docs, "TriggerAuthentication", auth);
    // The overlay deletes the CPU autoscaler of the workers (KEDA owns theirs).
    let text = std::fs::read_to_string(overlay.join("kustomization.yaml")).unwrap();
    assert!(text.contains("$patch: delete") && text.contains("name: wafer-worker"));
}

#[test]
fn kubectl_renders_both() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl is not installed: rendering skipped (the YAML checks above ran)");
        return;
    }
    for (dir, must, must_not) in [
        (
            "base",
            "kind: HorizontalPodAutoscaler",
            "kind: ScaledObject",
        ),
        (
            "overlays/keda",
            "kind: ScaledObject",
            "name: wafer-worker\nspec:\n  maxReplicas",
        ),
    ] {
        let out = Command::new("kubectl")
            .args(["kustomize"])
            .arg(self::dir().join(dir))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(must), "{dir} renders without {must}");
        assert!(!text.contains(must_not), "{dir} renders {must_not}");
        assert!(text.contains("app.kubernetes.io/part-of: wafer"));
    }
}
