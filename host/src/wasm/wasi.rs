//! A virtual, deterministic WASI preview 1 (`wasi_snapshot_preview1`) for
//! plugins whose toolchains need it: Go's `wasip1`, wasi-libc (C, C++),
//! Zig's standard library, QuickJS builds.
//!
//! Nothing reaches the machine, so a batch stays a pure function of its
//! input (see DESIGN.md) and a replay gets the same bytes:
//! - clocks (realtime, monotonic, CPU time) read the batch time, plus a
//!   virtual microsecond per reading so time never stands still, plus
//!   whatever the guest "sleeps" in `poll_oneoff`;
//! - `random_get` is a stream seeded by job, operator, batch time,
//!   partition and run (SHA-256 in counter mode);
//! - stdout and stderr go to the host log, under the same per-call budget as
//!   `weir.log`; stdin is empty;
//! - arguments and environment are empty; there are no preopened
//!   directories, so there is no file system; there are no sockets;
//! - `proc_exit` ends the call with its code; `sched_yield` is a no-op.
//!
//! A call the host does not offer (opening a file, a socket) returns the
//! errno a real runtime gives when the resource is absent (`EBADF` for file
//! descriptors, `ENOSYS` for sockets and signals), so standard libraries fail
//! cleanly instead of trapping.
//!
//! wasmtime's own `wasmtime-wasi` gives a guest the real machine (real
//! clocks, real sleeps in `poll_oneoff`, OS randomness); weir needs the
//! opposite, a closed world the host controls per call, so the few
//! functions are implemented here on the store's [`CallState`].

use sha2::{Digest, Sha256};
use wasmtime::{Caller, Extern, FuncType, Linker, Memory, Val, ValType};

use super::store::{charge, CallState};

/// The WASI preview 1 import module.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

/// WASI errno values the host returns.
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
    pub const SPIPE: i32 = 70;
}

/// Virtual nanoseconds each clock reading advances time by.
const TICK_NS: u64 = 1_000;

/// The most stderr kept to quote in a `proc_exit` error.
const STDERR_TAIL: usize = 2048;

/// Fuel a host function charges per iovec or subscription it reads; bytes
/// it copies or generates cost one unit each. Host work is metered like
/// guest work, so fuel (not the wall-clock deadline) bounds every call.
const FUEL_PER_ITEM: u64 = 16;

/// Every preview-1 function with its parameter types (`i` i32, `I` i64).
/// All return an errno (`i32`) except `proc_exit`, which returns nothing.
pub(crate) const FUNCTIONS: &[(&str, &str)] = &[
    ("args_get", "ii"),
    ("args_sizes_get", "ii"),
    ("environ_get", "ii"),
    ("environ_sizes_get", "ii"),
    ("clock_res_get", "ii"),
    ("clock_time_get", "iIi"),
    ("fd_advise", "iIIi"),
    ("fd_allocate", "iII"),
    ("fd_close", "i"),
    ("fd_datasync", "i"),
    ("fd_fdstat_get", "ii"),
    ("fd_fdstat_set_flags", "ii"),
    ("fd_fdstat_set_rights", "iII"),
    ("fd_filestat_get", "ii"),
    ("fd_filestat_set_size", "iI"),
    ("fd_filestat_set_times", "iIIi"),
    ("fd_pread", "iiiIi"),
    ("fd_prestat_get", "ii"),
    ("fd_prestat_dir_name", "iii"),
    ("fd_pwrite", "iiiIi"),
    ("fd_read", "iiii"),
    ("fd_readdir", "iiiIi"),
    ("fd_renumber", "ii"),
    ("fd_seek", "iIii"),
    ("fd_sync", "i"),
    ("fd_tell", "ii"),
    ("fd_write", "iiii"),
    ("path_create_directory", "iii"),
    ("path_filestat_get", "iiiii"),
    ("path_filestat_set_times", "iiiiIIi"),
    ("path_link", "iiiiiii"),
    ("path_open", "iiiiiIIii"),
    ("path_readlink", "iiiiii"),
    ("path_remove_directory", "iii"),
    ("path_rename", "iiiiii"),
    ("path_symlink", "iiiii"),
    ("path_unlink_file", "iii"),
    ("poll_oneoff", "iiii"),
    ("proc_exit", "i"),
    ("proc_raise", "i"),
    ("sched_yield", ""),
    ("random_get", "ii"),
    ("sock_accept", "iii"),
    ("sock_recv", "iiiiii"),
    ("sock_send", "iiiii"),
    ("sock_shutdown", "ii"),
];

/// The functions with a real (virtual) implementation below; every other
/// one answers with a fixed errno.
const IMPLEMENTED: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_close",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_filestat_get",
    "fd_prestat_get",
    "fd_read",
    "fd_seek",
    "fd_tell",
    "fd_write",
    "poll_oneoff",
    "proc_exit",
    "random_get",
    "sched_yield",
];

/// The expected signature of a preview-1 import, as `(params, results)` in
/// the letters of [`FUNCTIONS`], or `None` if there is no such function.
pub(crate) fn signature(name: &str) -> Option<(&'static str, &'static str)> {
    let (_, params) = FUNCTIONS.iter().find(|(n, _)| *n == name)?;
    Some((params, if name == "proc_exit" { "" } else { "i" }))
}

/// `proc_exit` was called: the call ends with this code.
#[derive(Debug)]
pub(crate) struct GuestExit {
    pub(crate) code: i32,
    /// The end of what the guest wrote to stderr (a Go panic, say).
    pub(crate) stderr: String,
}

impl std::fmt::Display for GuestExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({})", self.code)
    }
}

impl std::error::Error for GuestExit {}

/// The virtual machine one call sees: its clock, its random stream and the
/// end of its stderr.
pub(crate) struct GuestEnv {
    /// Batch time in ns since the Unix epoch (0 for earlier times).
    base_ns: u64,
    /// Virtual time passed during this call.
    elapsed_ns: u64,
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
    stderr_tail: Vec<u8>,
}

impl GuestEnv {
    /// The environment of a call by `operator` of `job` on `partition` of
    /// the batch at `batch_time_ms`: equal arguments give equal clocks and
    /// random streams.
    pub(crate) fn new(
        job: &str,
        operator: &str,
        batch_time_ms: i64,
        partition: u32,
        sequence: u32,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"weir-wasi-random-v1\0");
        for part in [job, operator] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(batch_time_ms.to_le_bytes());
        h.update(partition.to_le_bytes());
        if sequence != 0 {
            // The first call's stream is the one a partition had before
            // calls came in runs.
            h.update(b"run");
            h.update(sequence.to_le_bytes());
        }
        GuestEnv {
            base_ns: u64::try_from(batch_time_ms)
                .unwrap_or(0)
                .saturating_mul(1_000_000),
            elapsed_ns: 0,
            seed: h.finalize().into(),
            counter: 0,
            block: [0; 32],
            used: 32,
            stderr_tail: Vec::new(),
        }
    }

    /// The current virtual time; every reading advances it by a tick.
    fn now(&mut self) -> u64 {
        let t = self.base_ns.saturating_add(self.elapsed_ns);
        self.elapsed_ns = self.elapsed_ns.saturating_add(TICK_NS);
        t
    }

    /// Moves virtual time forward to at least `until` (ns since epoch).
    fn sleep_until(&mut self, until: u64) {
        let now = self.base_ns.saturating_add(self.elapsed_ns);
        self.elapsed_ns = self.elapsed_ns.saturating_add(until.saturating_sub(now));
    }

    /// Fills `out` from the call's deterministic random stream.
    pub(crate) fn fill_random(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            if self.used == self.block.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            let n = out.len().min(self.block.len() - self.used);
            out[..n].copy_from_slice(&self.block[self.used..self.used + n]);
            self.used += n;
            out = &mut out[n..];
        }
    }

    fn remember_stderr(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(STDERR_TAIL)..];
        self.stderr_tail.extend_from_slice(bytes);
        if self.stderr_tail.len() > STDERR_TAIL {
            let cut = self.stderr_tail.len() - STDERR_TAIL;
            self.stderr_tail.drain(..cut);
        }
    }

    fn exit(&self, code: i32) -> GuestExit {
        GuestExit {
            code,
            stderr: String::from_utf8_lossy(&self.stderr_tail).trim().to_owned(),
        }
    }
}

fn val_type(c: char) -> ValType {
    match c {
        'I' => ValType::I64,
        'F' => ValType::F64,
        _ => ValType::I32,
    }
}

/// A function type from the letters of [`FUNCTIONS`].
pub(crate) fn func_type(engine: &wasmtime::Engine, params: &str, results: &str) -> FuncType {
    FuncType::new(
        engine,
        params.chars().map(val_type),
        results.chars().map(val_type),
    )
}

/// Defines every preview-1 function in `linker`.
pub(crate) fn define(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let engine = linker.engine().clone();
    for (name, params) in FUNCTIONS {
        if IMPLEMENTED.contains(name) {
            continue;
        }
        // Sockets and signals do not exist; every other call names a file
        // descriptor or directory that was never opened.
        let code = if name.starts_with("sock_") || *name == "proc_raise" {
            errno::NOSYS
        } else {
            errno::BADF
        };
        linker.func_new(
            MODULE,
            name,
            func_type(&engine, params, "i"),
            move |_, _, results: &mut [Val]| {
                results[0] = Val::I32(code);
                Ok(())
            },
        )?;
    }
    define_process(linker)?;
    define_clocks(linker)?;
    define_stdio(linker)?;
    define_fd_queries(linker)?;
    linker.func_wrap(MODULE, "poll_oneoff", poll_oneoff)?;
    Ok(())
}

fn memory(caller: &mut Caller<'_, CallState>) -> Option<Memory> {
    match caller.get_export(weir_abi::EXPORT_MEMORY) {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Writes `bytes` at `ptr` in guest memory; `EFAULT` when out of range.
fn put(caller: &mut Caller<'_, CallState>, ptr: i32, bytes: &[u8]) -> i32 {
    let Some(mem) = memory(caller) else {
        return errno::FAULT;
    };
    match mem.write(caller, ptr as u32 as usize, bytes) {
        Ok(()) => errno::SUCCESS,
        Err(_) => errno::FAULT,
    }
}

/// Writes two `u32` (a count and a size) at `a` and `b`.
fn put_pair(caller: &mut Caller<'_, CallState>, a: i32, b: i32) -> i32 {
    match put(caller, a, &0u32.to_le_bytes()) {
        errno::SUCCESS => put(caller, b, &0u32.to_le_bytes()),
        e => e,
    }
}

fn define_process(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    // No arguments and no environment: counts and sizes are zero and there
    // is nothing to copy.
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut c: Caller<'_, CallState>, n: i32, size: i32| put_pair(&mut c, n, size),
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut c: Caller<'_, CallState>, n: i32, size: i32| put_pair(&mut c, n, size),
    )?;
    linker.func_wrap(MODULE, "args_get", |_: i32, _: i32| errno::SUCCESS)?;
    linker.func_wrap(MODULE, "environ_get", |_: i32, _: i32| errno::SUCCESS)?;
    linker.func_wrap(MODULE, "sched_yield", || errno::SUCCESS)?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |c: Caller<'_, CallState>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(c.data().env.exit(code)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let Some(mem) = memory(&mut c) else {
                return Ok(errno::FAULT);
            };
            charge(&mut c, u64::from(len as u32))?;
            let (data, state) = mem.data_and_store_mut(&mut c);
            let start = ptr as u32 as usize;
            Ok(
                match data.get_mut(start..start.saturating_add(len as u32 as usize)) {
                    Some(out) => {
                        state.env.fill_random(out);
                        errno::SUCCESS
                    }
                    None => errno::FAULT,
                },
            )
        },
    )?;
    Ok(())
}

fn define_clocks(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    // Clock ids 0-3: realtime, monotonic, process and thread CPU time.
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Caller<'_, CallState>, id: i32, out: i32| {
            if !(0..=3).contains(&id) {
                return errno::INVAL;
            }
            put(&mut c, out, &TICK_NS.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller<'_, CallState>, id: i32, _precision: i64, out: i32| {
            if !(0..=3).contains(&id) {
                return errno::INVAL;
            }
            let now = c.data_mut().env.now();
            put(&mut c, out, &now.to_le_bytes())
        },
    )?;
    Ok(())
}

/// The `(ptr, len)` iovecs at `iovs`, each checked against memory; calls
/// `f` with each one's bytes. Returns the total length, or the errno of a
/// bad iovec (`EFAULT`) or a total past `u32` (`EINVAL`).
fn iovecs(data: &[u8], iovs: i32, count: u32, mut f: impl FnMut(&[u8])) -> Result<u32, i32> {
    let mut total: u32 = 0;
    for i in 0..count as usize {
        let at = (iovs as u32 as usize)
            .checked_add(i * 8)
            .ok_or(errno::FAULT)?;
        let iov = data.get(at..at.saturating_add(8)).ok_or(errno::FAULT)?;
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]) as usize;
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let bytes = data
            .get(ptr..ptr.saturating_add(len as usize))
            .ok_or(errno::FAULT)?;
        total = total.checked_add(len).ok_or(errno::INVAL)?;
        f(bytes);
    }
    Ok(total)
}

/// What a write to stdout or stderr keeps: the start of it, as much as the
/// log budget (or the stderr tail) can use; the rest is only counted.
fn kept(data: &[u8], iovs: i32, count: u32, cap: usize) -> Result<(Vec<u8>, u32), i32> {
    let mut kept = Vec::new();
    let total = iovecs(data, iovs, count, |bytes| {
        let room = cap - kept.len();
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    })?;
    Ok((kept, total))
}

fn define_stdio(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, CallState>,
         fd: i32,
         iovs: i32,
         count: i32,
         written: i32|
         -> wasmtime::Result<i32> {
            let level = match fd {
                1 => 2,
                2 => 3,
                _ => return Ok(errno::BADF),
            };
            let Some(mem) = memory(&mut c) else {
                return Ok(errno::FAULT);
            };
            let count = count as u32;
            charge(&mut c, u64::from(count) * FUEL_PER_ITEM)?;
            let cap = c.data().log_left.max(if fd == 2 { STDERR_TAIL } else { 0 });
            let (bytes, total) = match kept(mem.data(&c), iovs, count, cap) {
                Ok(k) => k,
                Err(e) => return Ok(e),
            };
            charge(&mut c, u64::from(total))?;
            let state = c.data_mut();
            if fd == 2 {
                state.env.remember_stderr(&bytes);
            }
            let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            if !text.is_empty() {
                super::store::log_bytes(state, level, text);
            }
            Ok(put(&mut c, written, &total.to_le_bytes()))
        },
    )?;
    // stdin is empty: reading it is the end of the file.
    linker.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Caller<'_, CallState>, fd: i32, _iovs: i32, _count: i32, read: i32| {
            if fd != 0 {
                return errno::BADF;
            }
            put(&mut c, read, &0u32.to_le_bytes())
        },
    )?;
    linker.func_wrap(MODULE, "fd_close", |fd: i32| {
        stdio_or_badf(fd, errno::SUCCESS)
    })?;
    linker.func_wrap(MODULE, "fd_seek", |fd: i32, _: i64, _: i32, _: i32| {
        stdio_or_badf(fd, errno::SPIPE)
    })?;
    linker.func_wrap(MODULE, "fd_tell", |fd: i32, _: i32| {
        stdio_or_badf(fd, errno::SPIPE)
    })?;
    Ok(())
}

fn stdio_or_badf(fd: i32, stdio: i32) -> i32 {
    if (0..=2).contains(&fd) {
        stdio
    } else {
        errno::BADF
    }
}

/// WASI filetype of the standard streams: a character device.
const CHARACTER_DEVICE: u8 = 2;

fn define_fd_queries(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Caller<'_, CallState>, fd: i32, out: i32| {
            // Rights: fd_read (bit 1) for stdin, fd_write (bit 6) for the
            // others, and poll_fd_readwrite (bit 27).
            let rights: u64 = match fd {
                0 => 1 << 1 | 1 << 27,
                1 | 2 => 1 << 6 | 1 << 27,
                _ => return errno::BADF,
            };
            let mut stat = [0u8; 24];
            stat[0] = CHARACTER_DEVICE;
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            put(&mut c, out, &stat)
        },
    )?;
    linker.func_wrap(MODULE, "fd_fdstat_set_flags", |fd: i32, _: i32| {
        stdio_or_badf(fd, errno::SUCCESS)
    })?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_get",
        |mut c: Caller<'_, CallState>, fd: i32, out: i32| {
            if !(0..=2).contains(&fd) {
                return errno::BADF;
            }
            let mut stat = [0u8; 64];
            stat[16] = CHARACTER_DEVICE;
            put(&mut c, out, &stat)
        },
    )?;
    // No preopened directories: EBADF ends a libc's preopen scan at fd 3.
    linker.func_wrap(MODULE, "fd_prestat_get", |_: i32, _: i32| errno::BADF)?;
    Ok(())
}

/// Subscription and event layouts of `poll_oneoff` (48 and 32 bytes).
const SUBSCRIPTION: usize = 48;
const EVENT: usize = 32;

/// The most subscriptions one `poll_oneoff` takes (more is `EINVAL`): the
/// runtimes weir has met poll a handful at a time.
const MAX_SUBSCRIPTIONS: u32 = 4096;

/// `poll_oneoff`: file descriptor subscriptions are answered at once (the
/// standard streams are always ready, others do not exist); if there are
/// none, virtual time jumps to the earliest clock deadline, as if the guest
/// had slept that long.
fn poll_oneoff(
    mut c: Caller<'_, CallState>,
    subs: i32,
    events: i32,
    count: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let count = count as u32;
    if count == 0 || count > MAX_SUBSCRIPTIONS {
        return Ok(errno::INVAL);
    }
    charge(&mut c, u64::from(count) * FUEL_PER_ITEM)?;
    let Some(mem) = memory(&mut c) else {
        return Ok(errno::FAULT);
    };
    let start = subs as u32 as usize;
    let (data, state) = mem.data_and_store_mut(&mut c);
    let Some(raw) = data.get(start..start + count as usize * SUBSCRIPTION) else {
        return Ok(errno::FAULT);
    };
    let out = answer(raw, &mut state.env);
    Ok(match put(&mut c, events, &out) {
        errno::SUCCESS => put(&mut c, nevents, &((out.len() / EVENT) as u32).to_le_bytes()),
        e => e,
    })
}

/// The events answering the subscriptions in `raw`.
fn answer(raw: &[u8], env: &mut GuestEnv) -> Vec<u8> {
    let now = env.base_ns.saturating_add(env.elapsed_ns);
    let mut out = Vec::with_capacity(raw.len() / SUBSCRIPTION * EVENT);
    let mut clocks: Vec<(u64, [u8; 8])> = Vec::new();
    for sub in raw.chunks_exact(SUBSCRIPTION) {
        let userdata: [u8; 8] = sub[0..8].try_into().expect("8 bytes");
        let u32_at = |at: usize| u32::from_le_bytes(sub[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(sub[at..at + 8].try_into().expect("8 bytes"));
        match sub[8] {
            // A clock: ids 0-3 exist; flag bit 0 is an absolute deadline.
            0 if u32_at(16) <= 3 => {
                let timeout = u64_at(24);
                let deadline = if sub[40] & 1 == 1 {
                    timeout
                } else {
                    now.saturating_add(timeout)
                };
                clocks.push((deadline, userdata));
            }
            kind @ (1 | 2) => {
                let error = if u32_at(16) <= 2 {
                    errno::SUCCESS
                } else {
                    errno::BADF
                };
                out.extend_from_slice(&event(userdata, error as u16, kind));
            }
            kind => out.extend_from_slice(&event(userdata, errno::INVAL as u16, kind)),
        }
    }
    if out.is_empty() {
        if let Some(first) = clocks.iter().map(|(d, _)| *d).min() {
            env.sleep_until(first);
            for (deadline, userdata) in &clocks {
                if *deadline <= first {
                    out.extend_from_slice(&event(*userdata, 0, 0));
                }
            }
        }
    }
    out
}

fn event(userdata: [u8; 8], error: u16, kind: u8) -> [u8; EVENT] {
    let mut e = [0u8; EVENT];
    e[0..8].copy_from_slice(&userdata);
    e[8..10].copy_from_slice(&error.to_le_bytes());
    e[10] = kind;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_streams_depend_on_every_coordinate_and_repeat() {
        let draw_run = |job, op, t, p, run| {
            let mut env = GuestEnv::new(job, op, t, p, run);
            let mut out = [0u8; 80];
            env.fill_random(&mut out[..5]);
            env.fill_random(&mut out[5..]);
            out
        };
        let draw = |job, op, t, p| draw_run(job, op, t, p, 0);
        let a = draw("job", "op", 1000, 0);
        assert_eq!(a, draw("job", "op", 1000, 0));
        assert_ne!(a, draw("job", "op", 1000, 1));
        assert_ne!(a, draw("job", "op", 2000, 0));
        assert_ne!(a, draw("job", "op2", 1000, 0));
        assert_ne!(a, draw("jo", "bop", 1000, 0));
        assert_ne!(a, draw_run("job", "op", 1000, 0, 1));
        assert_ne!(
            draw_run("job", "op", 1000, 0, 1),
            draw_run("job", "op", 1000, 0, 2)
        );
    }

    #[test]
    fn clocks_start_at_the_batch_time_and_advance() {
        let mut env = GuestEnv::new("j", "o", 1_500, 0, 0);
        assert_eq!(env.now(), 1_500_000_000);
        assert_eq!(env.now(), 1_500_000_000 + TICK_NS);
        env.sleep_until(2_000_000_000);
        assert_eq!(env.now(), 2_000_000_000);
        assert_eq!(GuestEnv::new("j", "o", -5, 0, 0).now(), 0);
    }

    #[test]
    fn every_function_has_a_signature() {
        for name in IMPLEMENTED {
            assert!(signature(name).is_some(), "{name}");
        }
        assert_eq!(signature("proc_exit"), Some(("i", "")));
        assert_eq!(signature("fd_write"), Some(("iiii", "i")));
        assert_eq!(signature("path_open"), Some(("iiiiiIIii", "i")));
        assert_eq!(signature("sock_open"), None);
    }
}
