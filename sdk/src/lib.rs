//! Write weir plugins in Rust.
//!
//! A weir plugin is a core WebAssembly module that follows the ABI in
//! `docs/abi.md`. This crate writes all of that ABI for you: you write a plain
//! Rust function per record (or per pair of values, or per key), put an
//! attribute on it, and build the crate for `wasm32-unknown-unknown`.
//!
//! **Function kinds.**
//! [`map`] functions take one record and return zero or more — map,
//! flat_map, filter and transform are all maps. [`reduce`] functions combine
//! two values of the same key into one; they must be associative, the host
//! calls them over whole groups. [`update`] functions see a key, its new
//! values in this batch and its [`State`], may change or remove the state
//! and may emit records (`update_state_by_key` and `map_with_state`).
//! [`migrate`] converts state when a module with a new [`state_version!`]
//! takes over a running job.
//!
//! **Types.** Keys and values are byte strings on the wire. This crate maps
//! them to Rust types with [`Encode`] and [`Decode`]: strings and byte
//! vectors are their raw bytes (the framing already carries the length),
//! integers and floats are fixed-width little-endian (so `i64` is weir's
//! canonical count), `()` is empty, and any serde type goes through
//! [`Bincode`] (or `#[derive(weir_sdk::Data)]`), encoded with bincode 2's
//! `config::legacy()`: little-endian, fixed-width integers, `u64` length
//! prefixes — the layout bincode 1 used, easy to match from other languages.
//!
//! **Borrowed inputs.** A parameter may be `&str` or `&[u8]` instead of
//! `String` or `Vec<u8>`: it then points into the call's input, nothing is
//! copied (a `&str` is still checked to be UTF-8, with the same error as a
//! `String`). Parameters are [`BorrowDecode`], which every owned [`Decode`]
//! type is. An update function may take its values as [`Values`] instead of
//! a `Vec`, decoded as it iterates.
//!
//! **Outputs.** A map or update function returns what [`Emit`] covers: a
//! `(key, value)` pair, `()`, an `Option`, `Vec` or array of records, any
//! iterator of records, or a `Result` of those. Records are framed straight
//! into the output buffer as they come; keys and values may borrow
//! (`(&str, i64)`), so returning `impl Iterator<Item = (&str, i64)>` over a
//! borrowed line allocates nothing per record. That is the fast form: as
//! fast as a plugin written by hand against the ABI.
//!
//! **Errors.** A function that returns `Err(e)` fails the call; the host
//! reports `e.to_string()` together with the job, operator, batch time and
//! partition. A panic in a plugin is a trap, which the host reports too.
//!
//! **Memory.** On wasm32 the SDK installs a global allocator made for
//! instances that live for one call (size-class free lists for small blocks,
//! in-place growth for the output buffer, memory grown in steps of at least
//! 1 MiB); it is faster than the standard `dlmalloc` and touches fewer
//! pages. To use your own `#[global_allocator]` instead, depend on
//! `weir-sdk` with `default-features = false` (the `allocator` feature).
//!
//! **Native tests.** Without `target_arch = "wasm32"` the attributes only
//! leave your function as it is, so plugin logic is tested with `cargo test`;
//! [`invoke`] runs the exact byte-level glue natively as well.
//!
//! ```
//! use weir_sdk::{map, reduce, update, State, Values};
//!
//! /// line → (word, 1) for every word: borrows the line, allocates nothing.
//! #[map]
//! fn split(line: &str) -> impl Iterator<Item = (&str, i64)> {
//!     line.split_whitespace().map(|w| (w, 1))
//! }
//!
//! /// The same with owned types: simpler to reason about, slower (a
//! /// `String` per word and a `Vec` per line).
//! #[map]
//! fn split_owned(line: String) -> Vec<(String, i64)> {
//!     line.split_whitespace().map(|w| (w.to_string(), 1)).collect()
//! }
//!
//! #[reduce]
//! fn sum(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! /// Each word's running total, emitted when it changes.
//! #[update]
//! fn running_count<'a>(
//!     word: &'a str,
//!     counts: Values<'a, i64>,
//!     total: &mut State<i64>,
//! ) -> Option<(&'a str, i64)> {
//!     if counts.is_empty() {
//!         return None;
//!     }
//!     let new = total.get().copied().unwrap_or(0) + counts.sum::<i64>();
//!     total.set(new);
//!     Some((word, new))
//! }
//!
//! assert_eq!(split("a b a").count(), 3);
//! assert_eq!(split_owned("a b a".into()).len(), 3);
//! assert_eq!(sum(2, 3), 5);
//! ```

use std::cell::Cell;
use std::fmt;

pub use weir_abi as abi;
pub use weir_abi::{CallHeader, RecordBatch};
pub use weir_sdk_macros::{map, migrate, reduce, update, Data};

/// Declares the version of the state encoding this module's update
/// functions use (default 0). Upgrading a running job to a module with
/// another version migrates every key's state through its `#[migrate]`
/// function; without one the upgrade is refused.
///
/// ```ignore
/// weir_sdk::state_version!(2);
/// ```
#[macro_export]
macro_rules! state_version {
    ($v:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[no_mangle]
        pub extern "C" fn weir_state_version() -> i32 {
            $v
        }
    };
}

pub mod codec;
mod emit;
mod values;
// The allocator itself is wasm-only; natively only its tests use it.
#[cfg_attr(
    not(all(target_arch = "wasm32", feature = "allocator")),
    allow(dead_code)
)]
mod heap;
pub mod invoke;

pub use codec::{Bincode, BorrowDecode, Decode, DecodeError, Encode};
pub use emit::{form, Emit, RecordWriter};
pub use values::{UpdateValues, Values};

/// Things the glue generated by the attributes refers to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::invoke::{run_map, run_map_values, run_migrate, run_reduce, run_update};
    pub use bincode;
    pub use serde;
}

thread_local! {
    static HEADER: Cell<CallHeader> = const { Cell::new(CallHeader { batch_time_ms: 0, partition: 0, num_partitions: 0 }) };
}

/// The batch time of the current call, in milliseconds since the Unix epoch.
/// This is the only clock a plugin has: replaying a batch sees the same time.
pub fn batch_time_ms() -> i64 {
    HEADER.with(|h| h.get().batch_time_ms)
}

/// The partition the current call processes.
pub fn partition() -> u32 {
    HEADER.with(|h| h.get().partition)
}

/// The number of partitions of the current operator.
pub fn num_partitions() -> u32 {
    HEADER.with(|h| h.get().num_partitions)
}

pub(crate) fn set_header(h: CallHeader) {
    HEADER.with(|c| c.set(h));
}

/// Log levels understood by the host's `weir.log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    /// Fine-grained detail.
    Debug = 1,
    /// Normal information.
    Info = 2,
    /// Something unexpected.
    Warn = 3,
    /// A failure.
    Error = 4,
}

/// Writes a message to the host's log, attributed to this plugin. Logging
/// never affects results; the host caps how much a call may log.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        #[link(wasm_import_module = "weir")]
        extern "C" {
            #[link_name = "log"]
            fn weir_log(level: i32, ptr: *const u8, len: usize);
        }
        // SAFETY: the host reads `len` bytes at `ptr`, which is a live str.
        unsafe { weir_log(level as i32, message.as_ptr(), message.len()) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        eprintln!("[plugin {level:?}] {message}");
    }
}

/// The state of one key, given to [`update`] functions.
///
/// The state after the call is what the host keeps: call [`State::set`] to
/// store a value, [`State::remove`] to drop the key; leaving it untouched
/// keeps the previous state.
#[derive(Debug, Clone, PartialEq)]
pub struct State<S> {
    value: Option<S>,
    timed_out: bool,
}

impl<S> State<S> {
    /// A state as the host hands it in.
    pub fn new(value: Option<S>, timed_out: bool) -> Self {
        State { value, timed_out }
    }

    /// The current value, if the key has state.
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// True when the key has state.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// Stores a new value.
    pub fn set(&mut self, value: S) {
        self.value = Some(value);
    }

    /// Removes the key's state.
    pub fn remove(&mut self) {
        self.value = None;
    }

    /// True when this call happens because the key was idle past its
    /// timeout (`map_with_state`); the key has no new values then.
    pub fn is_timing_out(&self) -> bool {
        self.timed_out
    }

    /// The value the host will keep.
    pub fn into_inner(self) -> Option<S> {
        self.value
    }
}

/// What a [`reduce`] function may return: the combined value, or a
/// `Result` of it.
pub trait Reduced<V> {
    /// The value, or the error message.
    fn into_value(self) -> Result<V, String>;
}

impl<V> Reduced<V> for V {
    fn into_value(self) -> Result<V, String> {
        Ok(self)
    }
}

impl<V, E: fmt::Display> Reduced<V> for Result<V, E> {
    fn into_value(self) -> Result<V, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Ends the call as failed with `message` (the host's `weir.fail`): the
/// host reports it as the function's error. Outside wasm, panics with it.
pub fn fail(message: &str) -> ! {
    #[cfg(target_arch = "wasm32")]
    {
        #[link(wasm_import_module = "weir")]
        extern "C" {
            #[link_name = "fail"]
            fn weir_fail(ptr: *const u8, len: usize);
        }
        // SAFETY: the host reads `len` bytes at `ptr`, a live str, and
        // never returns (it ends the call).
        unsafe { weir_fail(message.as_ptr(), message.len()) }
        std::process::abort()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        panic!("{message}")
    }
}

/// Routes panics to the host through [`fail`], so a panic is reported with
/// its message and location instead of as a bare `unreachable` trap.
#[cfg(target_arch = "wasm32")]
fn install_panic_hook() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.to_string().replace(":\n", ": ");
            fail(&message)
        }))
    });
}

/// Module-level exports every weir plugin needs, defined once here so a
/// plugin crate only writes its functions.
#[cfg(target_arch = "wasm32")]
mod exports {
    /// The ABI version this module implements.
    #[no_mangle]
    pub extern "C" fn weir_abi_version() -> i32 {
        crate::abi::ABI_VERSION
    }

    /// Hands the host `size` bytes of guest memory for the input. Memory is
    /// never freed: the instance is discarded after one call.
    #[no_mangle]
    pub extern "C" fn weir_alloc(size: u32) -> *mut u8 {
        // The host calls this first in every call, on a fresh instance.
        crate::install_panic_hook();
        // u64 elements make the block 8-byte aligned, as the ABI requires.
        let words = (size as usize).div_ceil(8).max(1);
        let mut buf = std::mem::ManuallyDrop::new(Vec::<u64>::with_capacity(words));
        buf.as_mut_ptr().cast()
    }
}
