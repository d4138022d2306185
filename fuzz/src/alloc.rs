//! An allocator that refuses to let a length field decide how much memory
//! a reader takes: while a target runs, one allocation larger than the
//! limit set for the thread aborts the process with a message (libFuzzer
//! then keeps the input as a crash; the short run's test fails).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

thread_local! {
    /// The limit of the running target on this thread; `usize::MAX` when
    /// no target runs.
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The largest single allocation allowed for an input of `len` bytes:
/// 8 MiB (buffers sized by a reader's own policy, such as serde's
/// cautious 1 MiB preallocation or a record batch's 1 MiB reserve, plus
/// the wasm runtime's own tables when a pipeline is built) and 64 bytes
/// per input byte (a decoded structure may be larger than its encoding).
pub fn alloc_limit(len: usize) -> usize {
    (8 << 20) + len.saturating_mul(64)
}

/// Runs `f` with single allocations on this thread limited to `limit`
/// bytes.
pub fn with_alloc_limit<R>(limit: usize, f: impl FnOnce() -> R) -> R {
    struct Reset(usize);
    impl Drop for Reset {
        fn drop(&mut self) {
            LIMIT.with(|l| l.set(self.0));
        }
    }
    let _reset = Reset(LIMIT.with(|l| l.replace(limit)));
    f()
}

/// The system allocator with the per-thread limit of
/// [`with_alloc_limit`]; install it with `#[global_allocator]`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LimitedAlloc;

impl LimitedAlloc {
    fn check(size: usize) {
        // `try_with`: the thread-local may be gone while a thread exits.
        let limit = LIMIT.try_with(Cell::get).unwrap_or(usize::MAX);
        if size > limit {
            let mut msg = [0u8; 160];
            let mut w = &mut msg[..];
            let _ = writeln!(
                w,
                "weir-fuzz: one allocation of {size} bytes, over the limit of {limit} for this input"
            );
            let left = w.len();
            let _ = std::io::stderr().write_all(&msg[..msg.len() - left]);
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the check only
// reads a thread-local `Cell` and may abort the process.
unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}
