//! Fuzzing the deploy-validation path (detection, validation, compilation, linking) with
//! proptest: random bytes, and valid modules and components with random bytes overwritten.
//! Every input must come back as deployed or as a `DeployError`, never a panic or a hang.
//! `PROPTEST_CASES` sets the run's length (CI runs a short one).

use bytes::Bytes;
use proptest::prelude::*;
use wafer_worker::{Backend, EngineConfig, Worker, WorkerConfig};

const MODULE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hi\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
"#;

const COMPONENT: &str = r#"
(component
  (core module $m (func (export "f") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func $f (result u32) (canon lift (core func $i "f")))
  (export "f" (func $f)))
"#;

fn worker(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) -> Worker {
    let _guard = runtime.enter();
    Worker::new(WorkerConfig {
        engine: EngineConfig {
            max_instances: 4,
            max_memory: 64 << 20,
            pooling: false,
            ..EngineConfig::default()
        },
        ..WorkerConfig::new(dir.to_path_buf(), prometheus::Registry::new())
    })
    .unwrap()
}

fn mutate(base: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for (at, byte) in edits {
        let at = at % bytes.len();
        bytes[at] = *byte;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_upload_is_deployed_or_refused(
        random in proptest::collection::vec(any::<u8>(), 0..256),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        which in 0..3u8,
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(&runtime, dir.path());
        let upload = match which {
            0 => random,
            1 => mutate(&wat::parse_str(MODULE).unwrap(), &edits),
            _ => mutate(&wat::parse_str(COMPONENT).unwrap(), &edits),
        };
        let result = runtime.block_on(worker.prepare(Bytes::from(upload)));
        // A deployed upload left its bytes stored; a refused one left nothing.
        let stored = std::fs::read_dir(dir.path().join("components")).unwrap().count();
        prop_assert_eq!(stored, usize::from(result.is_ok()));
        if let Err(e) = result {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn the_unmutated_inputs_are_judged_as_expected() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&runtime, dir.path());
    let module = wat::parse_str(MODULE).unwrap();
    assert!(
        runtime
            .block_on(worker.prepare(Bytes::from(module)))
            .is_ok()
    );
    let component = wat::parse_str(COMPONENT).unwrap();
    let error = runtime
        .block_on(worker.prepare(Bytes::from(component)))
        .unwrap_err();
    assert!(
        error.to_string().contains("wasi:http/incoming-handler"),
        "{error}"
    );
}

/// The proposals behind wasmtime 48.0.9's abort advisories (GC types and `ref.test`, shared
/// memories and atomic waits) are off: modules that use them are refused at deploy, so their
/// code never runs (SECURITY.md).
#[test]
fn modules_using_the_gc_or_threads_proposals_are_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&runtime, dir.path());
    for (what, wat) in [
        (
            "a non-final function type",
            r#"(module (type $t (sub (func))) (table 1 funcref)
                 (func (export "_start") (call_indirect (type $t) (i32.const 0))))"#,
        ),
        (
            "a GC struct and ref.test",
            r#"(module (type $s (struct (field i32)))
                 (func (export "_start") (drop (ref.test (ref $s) (ref.null none)))))"#,
        ),
        (
            "a shared memory and atomic wait",
            r#"(module (memory 1 1 shared)
                 (func (export "_start")
                   (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const 0)))))"#,
        ),
    ] {
        let module = wat::parse_str(wat).unwrap();
        let result = runtime.block_on(worker.prepare(Bytes::from(module)));
        assert!(result.is_err(), "{what} was accepted");
    }
}
