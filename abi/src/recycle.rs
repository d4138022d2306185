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
//! What is kept is bounded: at most [`limit`] bytes (the oldest buffer is
//! freed first), nothing for longer than [`MAX_AGE`] (checked on every use
//! and by [`trim`], which a host calls after each batch), and a buffer is
//! handed out only for a request of at least a quarter of its size, so a
//! small batch never pins a large buffer. Only memory is reused, never
//! contents: a buffer is handed out empty.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buffers smaller than this are left to the allocator, which keeps small
/// blocks in its own free lists.
pub const MIN_BYTES: usize = 1 << 20;

/// The default bound on kept bytes.
pub const DEFAULT_LIMIT: usize = 256 << 20;

/// A buffer not handed out again within this time is freed: memory a burst
/// needed goes back to the system once the burst is over.
pub const MAX_AGE: Duration = Duration::from_secs(5);

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);

/// Kept buffers, oldest first, and their capacities' sum.
static KEPT: Mutex<Kept> = Mutex::new(Kept {
    buffers: VecDeque::new(),
    bytes: 0,
});

struct Kept {
    /// Each with the time it was given back.
    buffers: VecDeque<(Vec<u8>, Instant)>,
    bytes: usize,
}

impl Kept {
    /// Takes out the oldest buffers while `over` says so.
    fn shed(&mut self, over: impl Fn(usize, Instant) -> bool) -> Vec<Vec<u8>> {
        let mut freed = Vec::new();
        while let Some((b, at)) = self.buffers.front() {
            if !over(self.bytes, *at) {
                break;
            }
            self.bytes -= b.capacity();
            freed.push(self.buffers.pop_front().expect("front exists").0);
        }
        freed
    }
}

/// The bound on kept bytes.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Sets the bound on kept bytes (0 keeps nothing) and frees what is over it.
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    let freed = lock().shed(|kept, _| kept > bytes);
    drop(freed);
}

/// Frees the buffers kept for longer than [`MAX_AGE`].
pub fn trim() {
    let now = Instant::now();
    let freed = lock().shed(|_, at| now.duration_since(at) > MAX_AGE);
    // Freed outside the lock: returning memory to the system takes a while.
    drop(freed);
}

/// Bytes kept now.
pub fn kept_bytes() -> usize {
    lock().bytes
}

fn lock() -> std::sync::MutexGuard<'static, Kept> {
    // The lists stay consistent at every step, so a poisoned lock (a panic
    // elsewhere while it was held) leaves nothing half-done.
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// An empty buffer with room for at least `bytes` bytes: the smallest kept
/// one that fits and is at most four times `bytes`, else a new one.
pub fn take(bytes: usize) -> Vec<u8> {
    if bytes >= MIN_BYTES / 4 {
        let mut kept = lock();
        let best = kept
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, (b, _))| b.capacity() >= bytes && b.capacity() / 4 <= bytes)
            .min_by_key(|(_, (b, _))| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let (b, _) = kept.buffers.remove(i).expect("index from the search");
            kept.bytes -= b.capacity();
            return b;
        }
    }
    Vec::with_capacity(bytes)
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
        let freed = kept.shed(|kept, at| kept + cap > limit || now.duration_since(at) > MAX_AGE);
        kept.bytes += cap;
        kept.buffers.push_back((buf, now));
        freed
    };
    // Freed outside the lock: returning memory to the system takes a while.
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
        assert!(take(100).capacity() < 4 << 20);
        // A fitting one gets it, empty.
        let b = take(3 << 20);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        assert_eq!(kept_bytes(), 0);
        give(b);
        // Past the limit the oldest goes.
        give(Vec::with_capacity(6 << 20));
        assert_eq!(kept_bytes(), 6 << 20);
        // Small buffers are not kept; a larger request than any kept one
        // gets a new buffer.
        give(Vec::with_capacity(1000));
        assert_eq!(kept_bytes(), 6 << 20);
        assert!(take(7 << 20).capacity() >= 7 << 20);
        assert_eq!(kept_bytes(), 6 << 20);
        // Nothing is old yet.
        trim();
        assert_eq!(kept_bytes(), 6 << 20);
        set_limit(0);
        assert_eq!(kept_bytes(), 0);
        set_limit(DEFAULT_LIMIT);
    }
}
