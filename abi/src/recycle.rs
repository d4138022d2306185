//! A process-wide, bounded store of large freed buffers (feature
//! `recycle`, for hosts).
//!
//! A stream processor frees and allocates buffers of about the same sizes
//! every batch: the partitions a source cuts, the output copied out of a
//! guest. Allocated fresh, each page of such a buffer costs a page fault
//! (a large allocation comes from the system and goes back to it when
//! freed); kept and handed out again, the pages are already resident. With
//! this feature a dropped [`RecordBatch`](crate::RecordBatch) of at least
//! [`MIN_BYTES`] gives its buffer here, and new batches take from here.
//!
//! What is kept is bounded, as kept pages are resident:
//! - at most [`limit`] bytes (the oldest buffer is freed first);
//! - only until the end of the next batch, and a second: a host calls
//!   [`trim`] after each batch, which frees what was kept before the
//!   previous `trim`, at least [`MIN_KEEP`] ago, and not taken since (the
//!   second keeps reuse working when many jobs in one process trim), so
//!   memory a burst needed goes back once it is over; [`clear`] frees all
//!   (a host calls it when a job ends);
//! - a buffer is handed out only for a request of at least two thirds of
//!   its size, so a small batch never pins a large buffer.
//!
//! A new buffer gets an eighth more room than asked for (address space,
//! not memory, until written), so that the next batch's slightly larger
//! request still fits it. Only memory is reused, never contents: a buffer
//! is handed out empty.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buffers smaller than this are left to the allocator, which keeps small
/// blocks in its own free lists.
pub const MIN_BYTES: usize = 1 << 20;

/// The default bound on kept bytes.
pub const DEFAULT_LIMIT: usize = 256 << 20;

/// A buffer is kept at least this long, whatever the [`trim`]s.
pub const MIN_KEEP: Duration = Duration::from_secs(1);

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);

/// Kept buffers, oldest first, and their capacities' sum.
static KEPT: Mutex<Kept> = Mutex::new(Kept {
    buffers: VecDeque::new(),
    bytes: 0,
    generation: 0,
});

struct Kept {
    /// Each with the generation ([`trim`]s so far) and time it was given
    /// back in.
    buffers: VecDeque<(Vec<u8>, u64, Instant)>,
    bytes: usize,
    generation: u64,
}

impl Kept {
    /// Takes out the oldest buffers while `over` says so.
    fn shed(&mut self, over: impl Fn(usize, u64, Instant) -> bool) -> Vec<Vec<u8>> {
        let mut freed = Vec::new();
        while let Some((b, given, at)) = self.buffers.front() {
            if !over(self.bytes, *given, *at) {
                break;
            }
            self.bytes -= b.capacity();
            freed.push(self.buffers.pop_front().expect("front exists").0);
        }
        freed
    }
}

fn lock() -> std::sync::MutexGuard<'static, Kept> {
    // The lists stay consistent at every step, so a poisoned lock (a panic
    // elsewhere while it was held) leaves nothing half-done.
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bound on kept bytes.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Sets the bound on kept bytes (0 keeps nothing) and frees what is over it.
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    let freed = lock().shed(|kept, _, _| kept > bytes);
    // Freed outside the lock: returning memory to the system takes a while.
    drop(freed);
}

/// Bytes kept now.
pub fn kept_bytes() -> usize {
    lock().bytes
}

/// Ends a generation (a host calls it after each batch): frees the buffers
/// kept before the previous call, at least [`MIN_KEEP`] ago, and not taken
/// since.
pub fn trim() {
    let now = Instant::now();
    let freed = {
        let mut kept = lock();
        let current = kept.generation;
        kept.generation += 1;
        kept.shed(|_, given, at| given < current && now.duration_since(at) >= MIN_KEEP)
    };
    drop(freed);
}

/// Frees every kept buffer (a host calls it when a job ends: nothing may
/// trim for a while).
pub fn clear() {
    let freed = {
        let mut kept = lock();
        kept.bytes = 0;
        std::mem::take(&mut kept.buffers)
    };
    drop(freed);
}

/// An empty buffer with room for at least `bytes` bytes: the smallest kept
/// one that fits and is at most half as large again; else the largest kept
/// one that is smaller, grown (a large buffer grows in place by remapping,
/// so its resident pages serve the request); else a new one. A grown or new
/// buffer gets an eighth more room than asked for.
pub fn take(bytes: usize) -> Vec<u8> {
    let room = bytes.saturating_add(bytes / 8);
    if bytes < MIN_BYTES / 2 {
        return Vec::with_capacity(bytes);
    }
    let found = {
        let mut kept = lock();
        let fits = |b: &Vec<u8>| b.capacity() >= bytes && b.capacity() / 3 * 2 <= bytes;
        let best = kept
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, (b, ..))| fits(b))
            .min_by_key(|(_, (b, ..))| b.capacity())
            .or_else(|| {
                kept.buffers
                    .iter()
                    .enumerate()
                    .filter(|(_, (b, ..))| b.capacity() < bytes)
                    .max_by_key(|(_, (b, ..))| b.capacity())
            })
            .map(|(i, _)| i);
        best.map(|i| {
            let (b, ..) = kept.buffers.remove(i).expect("index from the search");
            kept.bytes -= b.capacity();
            b
        })
    };
    // Allocating or growing outside the lock.
    match found {
        Some(mut b) => {
            if b.capacity() < bytes {
                b.reserve_exact(room);
            }
            b
        }
        None => Vec::with_capacity(room),
    }
}

/// Keeps `buf` for a later [`take`] if it is large and fits under the
/// limit (freeing the oldest kept buffers to make room); otherwise frees it.
pub fn give(mut buf: Vec<u8>) {
    let cap = buf.capacity();
    let limit = limit();
    if cap < MIN_BYTES || cap > limit {
        return;
    }
    buf.clear();
    let now = Instant::now();
    let freed = {
        let mut kept = lock();
        let freed = kept.shed(|kept, _, _| kept + cap > limit);
        kept.bytes += cap;
        let generation = kept.generation;
        kept.buffers.push_back((buf, generation, now));
        freed
    };
    drop(freed);
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, as the store is process-wide.
    #[test]
    fn kept_buffers_are_reused_within_the_limit_and_handed_out_empty() {
        set_limit(8 << 20);
        let mut a = Vec::with_capacity(4 << 20);
        a.extend_from_slice(&[7; 100]);
        let ptr = a.as_ptr();
        give(a);
        assert_eq!(kept_bytes(), 4 << 20);
        // Too small a request does not pin the buffer.
        assert!(take(2 << 20).capacity() < 4 << 20);
        // A fitting one gets it, empty.
        let b = take(3 << 20);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        assert_eq!(kept_bytes(), 0);
        give(b);
        // Past the limit the oldest goes.
        give(Vec::with_capacity(6 << 20));
        assert_eq!(kept_bytes(), 6 << 20);
        // Small buffers are not kept; a larger request than any kept one
        // gets the largest kept one grown, with room to spare.
        give(Vec::with_capacity(1000));
        assert_eq!(kept_bytes(), 6 << 20);
        let grown = take(7 << 20);
        assert!(grown.capacity() >= (7 << 20) + (7 << 17));
        assert_eq!(kept_bytes(), 0);
        // With nothing kept, a new one.
        assert!(take(16 << 20).capacity() >= (16 << 20) + (1 << 21));
        give(grown);
        let kept = kept_bytes();
        assert!(kept >= 7 << 20);
        // Kept through the end of the next batch and a second, then freed.
        set_limit(64 << 20);
        trim();
        trim();
        assert_eq!(kept_bytes(), kept, "not a second yet");
        std::thread::sleep(MIN_KEEP);
        give(Vec::with_capacity(2 << 20));
        trim();
        assert_eq!(
            kept_bytes(),
            2 << 20,
            "the older one went, not this batch's"
        );
        clear();
        assert_eq!(kept_bytes(), 0);
        give(Vec::with_capacity(2 << 20));
        set_limit(0);
        assert_eq!(kept_bytes(), 0);
        set_limit(DEFAULT_LIMIT);
    }
}
