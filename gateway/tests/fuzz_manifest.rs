//! Fuzzing the manifest parser and validator with proptest (cargo-fuzz needs a nightly
//! toolchain these machines do not have). Arbitrary text, arbitrary TOML and JSON documents
//! built from the manifest's own keys and hostile values: parsing and validation must never
//! panic, and whatever validates must be within the documented limits. `PROPTEST_CASES` sets
//! the run's length (CI runs the default, a short run).

use proptest::prelude::*;
use wafer_gateway::Manifest;

const KEYS: &[&str] = &[
    "name",
    "component",
    "build",
    "route",
    "allowed_outbound_hosts",
    "env",
    "secrets",
    "limits",
    "scaling",
    "queue",
    "memory",
    "timeout",
    "concurrency",
    "max_queued",
    "log_bytes_per_call",
    "reuse",
    "idle_timeout",
    "url",
    "declare",
    "quorum",
    "prefetch",
    "max_concurrency",
    "batch_size",
    "batch_window",
    "max_attempts",
    "retry_delay",
    "retry_multiplier",
    "retry_max_delay",
    "dead_letter",
    "GREETING",
    "bogus",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
    ]
}

fn scalar() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        (-5i64..5000).prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        "\\PC{0,24}".prop_map(toml::Value::String),
        proptest::sample::select(vec![
            "128MiB",
            "0B",
            "99999GiB",
            "1.5 KiB",
            "-1",
            "30s",
            "0ms",
            "3days",
            "/",
            "/a/../b",
            "/_wafer",
            "amqp://u:p@h/%2f",
            "http://x",
            "*.example.com:8080",
            "q.dlq",
            "",
        ])
        .prop_map(|s| toml::Value::String(s.to_string())),
    ]
}

fn value() -> impl Strategy<Value = toml::Value> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = toml::Table> {
    proptest::collection::btree_map(key(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn check(manifest: &Manifest) {
    if let Ok(spec) = manifest.validate("fuzzed") {
        let limits = &spec.config.limits;
        assert!((1 << 20..=4 << 30).contains(&limits.memory));
        assert!((1..=1000).contains(&limits.concurrency));
        assert!(limits.reuse >= 1);
        assert!(spec.route.starts_with('/') && !spec.route.starts_with("/_wafer"));
        for queue in &spec.queues {
            assert!(queue.prefetch as u32 >= queue.batch_size && queue.max_attempts >= 1);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        if let Ok(manifest) = Manifest::from_toml(&text) {
            check(&manifest);
        }
        let _ = Manifest::from_json(text.as_bytes());
    }

    #[test]
    fn arbitrary_documents_never_panic_and_valid_ones_are_in_range(doc in document()) {
        let toml_text = toml::to_string(&doc).unwrap_or_default();
        if let Ok(manifest) = Manifest::from_toml(&toml_text) {
            check(&manifest);
        }
        let json = serde_json::to_vec(&doc).unwrap();
        if let Ok(manifest) = Manifest::from_json(&json) {
            check(&manifest);
        }
    }

    #[test]
    fn names_and_routes_never_panic(name in "\\PC{0,80}", route in "\\PC{0,80}") {
        let manifest = Manifest { route: Some(route), ..Manifest::default() };
        let _ = manifest.validate(&name);
    }
}
