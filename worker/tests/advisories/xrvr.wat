;; GHSA-xrvr-8678-5wp8 trigger: `stream.cancel-write` called on the *readable*
;; end of a stream while that end has a read in progress ("busy").
;;
;; Needs only Config::wasm_component_model_async(true) (no stackful, no
;; more-async-builtins). No imports. One export: `run: async func()`.
;;
;; wasmtime 48.0.8: step 3 is accepted and returns CANCELLED (2) and flips the
;;   readable end's local state to "writable"; step 4 drops it as a writer;
;;   step 5 reaches `bail_bug!("write state is already dropped")`
;;   (futures_and_streams.rs:2575) -> WasmtimeBug::new -> with
;;   debug_assertions: panic!("BUG: write state is already dropped")
;;   (bug.rs:63); without debug_assertions: a trap whose message starts
;;   "BUG: write state is already dropped".
;; wasmtime 48.0.9: step 3 traps:
;;   "passed read end to `{stream|future}.cancel-write`".
(component
  (core module $libc (memory (export "mem") 1))
  (core instance $libc (instantiate $libc))

  (type $s (stream u8))
  (core func $stream.new (canon stream.new $s))
  (core func $stream.read
    (canon stream.read $s async (memory (core memory $libc "mem"))))
  ;; sync (no `async`): the async form would need
  ;; wasm_component_model_more_async_builtins.
  (core func $stream.cancel-write (canon stream.cancel-write $s))
  (core func $stream.drop-writable (canon stream.drop-writable $s))
  (core func $task.return (canon task.return))

  (core module $m
    (import "" "stream.new" (func $stream.new (result i64)))
    (import "" "stream.read" (func $stream.read (param i32 i32 i32) (result i32)))
    (import "" "stream.cancel-write" (func $stream.cancel-write (param i32) (result i32)))
    (import "" "stream.drop-writable" (func $stream.drop-writable (param i32)))
    (import "" "task.return" (func $task.return))

    (func (export "run") (result i32)
      (local $pair i64)
      (local $r i32)
      (local $w i32)

      ;; 1. new stream: low 32 bits = readable end, high 32 bits = writable end
      (local.set $pair (call $stream.new))
      (local.set $r (i32.wrap_i64 (local.get $pair)))
      (local.set $w (i32.wrap_i64 (i64.shr_u (local.get $pair) (i64.const 32))))

      ;; 2. async read of 1 byte into address 0: no writer yet -> BLOCKED,
      ;;    the readable end is now "busy"
      (if (i32.ne (call $stream.read (local.get $r) (i32.const 0) (i32.const 1))
                  (i32.const -1))
        (then unreachable))

      ;; 3. THE BUG: cancel-WRITE on the READABLE end.
      ;;    48.0.9 traps here; 48.0.8 returns CANCELLED (2).
      (drop (call $stream.cancel-write (local.get $r)))

      ;; 4. 48.0.8 now treats $r as a writable end: dropping it as one works
      ;;    and marks the shared stream's write side Dropped.
      (call $stream.drop-writable (local.get $r))

      ;; 5. drop the real writable end -> write side already Dropped ->
      ;;    bail_bug! -> panic in debug builds of wasmtime.
      (call $stream.drop-writable (local.get $w))

      ;; not reached on 48.0.8 or 48.0.9
      (call $task.return)
      (i32.const 0) ;; CALLBACK_CODE_EXIT
    )

    (func (export "cb") (param i32 i32 i32) (result i32)
      unreachable)
  )

  (core instance $i (instantiate $m
    (with "" (instance
      (export "stream.new" (func $stream.new))
      (export "stream.read" (func $stream.read))
      (export "stream.cancel-write" (func $stream.cancel-write))
      (export "stream.drop-writable" (func $stream.drop-writable))
      (export "task.return" (func $task.return))
    ))
  ))

  (func (export "run") async
    (canon lift (core func $i "run") async (callback (core func $i "cb"))))
)
