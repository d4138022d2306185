//! Target `guest_call`: a real plugin call whose guest does what the
//! input says, so everything a guest hands the host is fuzzed end to end —
//! pointers and lengths given to `weir.log`, `weir.fail`, AssemblyScript's
//! `abort` and the virtual WASI (`fd_write` iovecs, `poll_oneoff`
//! subscriptions, `random_get` ...), memory growth, the status, the result
//! area and the output framing.
//!
//! The input is the body of a `map` call. The guest ([`GUEST_WAT`]) reads
//! it as operations of 17 bytes, `[op: u8][a: i32][b: i32][c: i32][d:
//! i32]`, in memory: the body starts at byte 1040 (`weir_alloc` hands out
//! 1024, the header takes 16). Input left over or not a whole operation
//! ends the call with status 0 and the whole body as its output.

use std::sync::OnceLock;
use std::time::Duration;

use weir::wasm::{Invocation, Limits, Plugin};
use weir_abi::{CallHeader, FunctionKind, RecordBatch};

/// The interpreter guest.
pub const GUEST_WAT: &str = r#"(module
  (import "weir" "log" (func $log (param i32 i32 i32)))
  (import "weir" "fail" (func $fail (param i32 i32)))
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "weir_abi_version") (result i32) (i32.const 1))
  (func (export "weir_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (global.get $next) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  (func (export "map:f") (param $in i32) (param $len i32) (param $res i32) (result i32)
    (local $p i32) (local $end i32) (local $op i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32)
    (local.set $p (i32.add (local.get $in) (i32.const 16)))
    (local.set $end (i32.add (local.get $in) (local.get $len)))
    (block $done
      (loop $step
        (br_if $done (i32.gt_u (i32.add (local.get $p) (i32.const 17)) (local.get $end)))
        (local.set $op (i32.rem_u (i32.load8_u (local.get $p)) (i32.const 16)))
        (local.set $a (i32.load offset=1 (local.get $p)))
        (local.set $b (i32.load offset=5 (local.get $p)))
        (local.set $c (i32.load offset=9 (local.get $p)))
        (local.set $d (i32.load offset=13 (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 17)))
        (if (i32.eq (local.get $op) (i32.const 0)) (then (call $log (local.get $a) (local.get $b) (local.get $c))))
        (if (i32.eq (local.get $op) (i32.const 1)) (then (call $fail (local.get $a) (local.get $b))))
        (if (i32.eq (local.get $op) (i32.const 2)) (then (call $abort (local.get $a) (local.get $b) (local.get $c) (local.get $d))))
        (if (i32.eq (local.get $op) (i32.const 3)) (then (drop (call $fd_write (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))
        (if (i32.eq (local.get $op) (i32.const 4)) (then (drop (call $fd_read (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))
        (if (i32.eq (local.get $op) (i32.const 5)) (then (drop (call $random_get (local.get $a) (local.get $b)))))
        (if (i32.eq (local.get $op) (i32.const 6)) (then (drop (call $clock_time_get (local.get $a) (i64.extend_i32_u (local.get $b)) (local.get $c)))))
        (if (i32.eq (local.get $op) (i32.const 7)) (then (drop (call $poll_oneoff (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))
        (if (i32.eq (local.get $op) (i32.const 8)) (then (drop (call $fd_fdstat_get (local.get $a) (local.get $b)))))
        (if (i32.eq (local.get $op) (i32.const 9)) (then (drop (call $args_sizes_get (local.get $a) (local.get $b)))))
        (if (i32.eq (local.get $op) (i32.const 10)) (then (drop (call $environ_get (local.get $a) (local.get $b)))))
        (if (i32.eq (local.get $op) (i32.const 11)) (then (drop (call $fd_prestat_get (local.get $a) (local.get $b)))))
        (if (i32.eq (local.get $op) (i32.const 12)) (then (call $proc_exit (local.get $a))))
        (if (i32.eq (local.get $op) (i32.const 13)) (then (drop (memory.grow (i32.and (local.get $a) (i32.const 255))))))
        (if (i32.eq (local.get $op) (i32.const 14)) (then (i32.store (local.get $a) (local.get $b))))
        (if (i32.eq (local.get $op) (i32.const 15))
          (then
            (i32.store (local.get $res) (local.get $b))
            (i32.store offset=4 (local.get $res) (local.get $c))
            (return (local.get $a))))
        (br $step)))
    (i32.store (local.get $res) (i32.add (local.get $in) (i32.const 16)))
    (i32.store offset=4 (local.get $res) (i32.sub (local.get $len) (i32.const 16)))
    (i32.const 0)))
"#;

fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let host = weir::host::Host::shared().expect("the shared host starts");
        host.wasm()
            .load_bytes("guest", GUEST_WAT.as_bytes())
            .expect("the guest module loads")
    })
}

pub(crate) fn setup() {
    plugin();
}

/// The fuzz target; `data` is the call's body (see the module docs).
pub fn guest_call(data: &[u8]) {
    let inv = Invocation {
        header: CallHeader {
            batch_time_ms: 1_000,
            partition: 0,
            num_partitions: 1,
        },
        job: Some("fuzz".into()),
        operator: Some("guest".into()),
        limits: Limits {
            fuel: 1_000_000,
            memory_bytes: 16 << 20,
            output_bytes: 1 << 20,
            deadline: Duration::from_secs(10),
            log_bytes: 4 << 10,
        },
        meter: None,
        sequence: 0,
    };
    let out = plugin().call(FunctionKind::Map, "f", &inv, data);
    if let Ok(out) = out {
        assert!(out.len() <= inv.limits.output_bytes);
        let _ = RecordBatch::from_slice(&out);
    }
}
