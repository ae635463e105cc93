;; A WASI 0.1 command for the CGI tests: answers 201 with a custom header, then prints its
;; environment (one VAR=value per line) and "stdin: " followed by what it read on stdin.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (memory (export "memory") 3)
  ;; 0: iovec; 8: bytes moved; 16: variable count; 20: environment size;
  ;; 1024: variable pointers; 4096: environment strings; 65536: stdin.
  (data (i32.const 32) "Status: 201 Created\nX-From-Cgi: 1\n\n")
  (data (i32.const 100) "stdin: ")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (local $size i32) (local $i i32)
    (call $write (i32.const 32) (i32.const 35))
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 1024) (i32.const 4096)))
    (local.set $size (i32.load (i32.const 20)))
    ;; NUL terminators become newlines.
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
        (if (i32.eqz (i32.load8_u (i32.add (i32.const 4096) (local.get $i))))
          (then (i32.store8 (i32.add (i32.const 4096) (local.get $i)) (i32.const 10))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $write (i32.const 4096) (local.get $size))
    (call $write (i32.const 100) (i32.const 7))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 65536))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $write (i32.const 65536) (i32.load (i32.const 8)))))
