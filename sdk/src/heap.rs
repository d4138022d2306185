//! The guest's memory allocator.
//!
//! A plugin instance lives for one call and is then thrown away, and a call
//! typically allocates many small short-lived blocks (one `String` per word,
//! say) next to a few large buffers (the input, the growing output). For
//! that pattern this allocator is faster than the standard library's
//! `dlmalloc` and touches fewer fresh pages (each first touch of a page is a
//! page fault in the host, which costs microseconds):
//!
//! - **Small blocks** (up to [`MAX_SMALL`] bytes, alignment up to 8) come in
//!   power-of-two size classes, each with a LIFO free list; a freed block is
//!   reused by the next allocation of its class. New blocks are carved from
//!   32 KiB slabs; the first slab lies at the very start of the heap, below
//!   every large block.
//! - **Large blocks** come from the top of the heap, or from an
//!   address-ordered, coalescing free list (first fit). A large block at the
//!   top of the heap grows and shrinks in place, so the output buffer, which
//!   is usually the last large allocation of a call, grows without being
//!   copied.
//!
//! The heap starts at the linker's `__heap_base` (using what is left of the
//! module's initial memory before calling `memory.grow`) and grows by at
//! least 1 MiB at a time, so that a call makes few `memory.grow` calls
//! (each a call into the runtime); untouched pages cost nothing. Both paths
//! are cheap: a small allocation or free is a free-list pop or push, and
//! nothing in the SDK's own per-record path allocates at all.
//! [`Heap`] is generic over where pages come from so that it is tested
//! natively.

use std::alloc::Layout;

/// Size of a wasm page.
pub(crate) const PAGE: usize = 64 * 1024;

/// Number of small size classes: 8, 16, 32, ..., 2048 bytes.
const CLASSES: usize = 9;

/// Largest small block.
pub(crate) const MAX_SMALL: usize = 8 << (CLASSES - 1);

/// Size of a slab small blocks are carved from.
const SLAB: usize = 32 * 1024;

/// Fewest pages the heap asks `memory.grow` for at a time (1 MiB).
const MIN_GROW_PAGES: usize = 16;

/// Smallest large block and free-list entry: room for a size and a link.
const MIN_FREE: usize = 2 * std::mem::size_of::<usize>();

/// Where the heap gets memory from.
pub(crate) trait Pages {
    /// The free memory the heap starts with, `[start, end)`, 8-aligned.
    fn initial(&mut self) -> (usize, usize);

    /// Adds `pages` pages of memory and returns the address where they
    /// start, or `None` when memory cannot grow.
    fn grow(&mut self, pages: usize) -> Option<usize>;
}

/// A free large block: lives in the first bytes of the block itself.
#[repr(C)]
struct FreeBlock {
    size: usize,
    next: usize,
}

/// The allocator state. Addresses are plain `usize`; 0 means "none".
pub(crate) struct Heap<P: Pages> {
    pages: P,
    /// The first free byte above every block.
    top: usize,
    /// The end of the memory the heap owns contiguously above `top`.
    end: usize,
    /// Heads of the small free lists, by class.
    small: [usize; CLASSES],
    /// The unused part of the current slab.
    slab: usize,
    slab_end: usize,
    /// Address-ordered list of free large blocks (none touches `top`).
    free: usize,
}

fn align_up(n: usize, align: usize) -> Option<usize> {
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// The class of a small block, or `None` for the large path. Depends only
/// on the layout, so alloc, dealloc and realloc agree.
fn class_of(size: usize, align: usize) -> Option<usize> {
    if size > MAX_SMALL || align > 8 {
        return None;
    }
    let size = size.max(8);
    Some((usize::BITS - (size - 1).leading_zeros()) as usize - 3)
}

/// The size a large block really occupies.
fn large_size(size: usize) -> Option<usize> {
    Some(align_up(size, 8)?.max(MIN_FREE))
}

impl<P: Pages> Heap<P> {
    /// A heap that starts with `pages.initial()` (on first use) and grows
    /// with `pages.grow`.
    pub(crate) const fn new(pages: P) -> Self {
        Heap {
            pages,
            top: 0,
            end: 0,
            small: [0; CLASSES],
            slab: 0,
            slab_end: 0,
            free: 0,
        }
    }

    /// Allocates a block for `layout`; null when memory is exhausted.
    ///
    /// # Safety
    /// The heap must own the memory `pages` gives it.
    #[inline]
    pub(crate) unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        if let Some(class) = class_of(layout.size(), layout.align()) {
            let head = self.small[class];
            if head != 0 {
                // SAFETY: a free small block holds the address of the next.
                self.small[class] = unsafe { (head as *const usize).read() };
                return head as *mut u8;
            }
        }
        // SAFETY: forwarded.
        unsafe { self.alloc_slow(layout) }
    }

    /// Everything but popping a small free list.
    #[inline(never)]
    unsafe fn alloc_slow(&mut self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let addr = unsafe {
            match class_of(layout.size(), layout.align()) {
                Some(class) => self.alloc_small(class),
                None => large_size(layout.size()).and_then(|s| self.alloc_large(s, layout.align())),
            }
        };
        addr.map_or(std::ptr::null_mut(), |a| a as *mut u8)
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` came from this heap with this `layout` and is not used again.
    #[inline]
    pub(crate) unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        let addr = ptr as usize;
        // SAFETY: forwarded.
        unsafe {
            match class_of(layout.size(), layout.align()) {
                Some(class) => self.push_small(class, addr),
                None => self.free_large(addr, large_size(layout.size()).expect("allocated")),
            }
        }
    }

    /// Resizes a block, in place when possible.
    ///
    /// # Safety
    /// As for [`GlobalAlloc::realloc`](std::alloc::GlobalAlloc::realloc).
    #[inline]
    pub(crate) unsafe fn realloc(
        &mut self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        match (
            class_of(layout.size(), layout.align()),
            class_of(new_size, layout.align()),
        ) {
            (Some(a), Some(b)) if a == b => ptr,
            // SAFETY: forwarded.
            _ => unsafe { self.realloc_slow(ptr, layout, new_size) },
        }
    }

    #[inline(never)]
    unsafe fn realloc_slow(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if let (None, None) = (class_of(layout.size(), align), class_of(new_size, align)) {
            let (Some(old), Some(new)) = (large_size(layout.size()), large_size(new_size)) else {
                return std::ptr::null_mut();
            };
            // SAFETY: the block is ours; see resize_large.
            if unsafe { self.resize_large(ptr as usize, old, new) } {
                return ptr;
            }
        }
        // SAFETY: the new layout is valid (GlobalAlloc::realloc's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
        // SAFETY: forwarded; the two blocks do not overlap.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }

    unsafe fn alloc_small(&mut self, class: usize) -> Option<usize> {
        let head = self.small[class];
        if head != 0 {
            // SAFETY: free small blocks hold the address of the next one.
            self.small[class] = unsafe { (head as *const usize).read() };
            return Some(head);
        }
        let size = 8 << class;
        if self.slab_end == 0 {
            // SAFETY: forwarded.
            unsafe { self.first_slab() };
        }
        if self.slab_end - self.slab < size {
            // Hand the rest of the slab to the smaller classes, then start
            // a new one.
            let mut rest = self.slab_end - self.slab;
            while rest >= 8 {
                let c = (usize::BITS - 1 - rest.leading_zeros()) as usize - 3;
                let c = c.min(CLASSES - 1);
                // SAFETY: the piece is unused memory of the slab.
                unsafe { self.push_small(c, self.slab) };
                self.slab += 8 << c;
                rest -= 8 << c;
            }
            // SAFETY: forwarded.
            let slab = unsafe { self.alloc_large(SLAB, 8)? };
            self.slab = slab;
            self.slab_end = slab + SLAB;
        }
        let block = self.slab;
        self.slab += size;
        Some(block)
    }

    #[inline]
    unsafe fn push_small(&mut self, class: usize, addr: usize) {
        // SAFETY: the block is free and at least 8 bytes, 8-aligned.
        unsafe { (addr as *mut usize).write(self.small[class]) };
        self.small[class] = addr;
    }

    /// The first slab goes at the bottom of the heap, below every large
    /// block, so that small blocks do not sit on top of the output buffer
    /// and stop it growing in place.
    unsafe fn first_slab(&mut self) {
        // SAFETY: forwarded.
        if let Some(s) = unsafe { self.bump(SLAB, 8) } {
            (self.slab, self.slab_end) = (s, s + SLAB);
        }
    }

    /// A large block of `size` bytes (already rounded by `large_size`).
    #[inline(never)]
    unsafe fn alloc_large(&mut self, size: usize, align: usize) -> Option<usize> {
        if self.slab_end == 0 {
            // SAFETY: forwarded.
            unsafe { self.first_slab() };
        }
        // First fit in the free list.
        let mut prev = 0usize;
        let mut cur = self.free;
        while cur != 0 {
            // SAFETY: free-list entries are FreeBlocks in memory we own.
            let FreeBlock { size: bsize, next } = unsafe { (cur as *const FreeBlock).read() };
            let start = align_up(cur, align)?;
            if start.checked_add(size).is_some_and(|e| e <= cur + bsize) {
                self.unlink(prev, cur, next);
                // SAFETY: the pieces are unused parts of the free block.
                unsafe {
                    if start - cur >= MIN_FREE {
                        self.free_large(cur, start - cur);
                    }
                    let tail = cur + bsize - (start + size);
                    if tail >= MIN_FREE {
                        self.free_large(start + size, tail);
                    }
                }
                return Some(start);
            }
            prev = cur;
            cur = next;
        }
        // SAFETY: forwarded.
        unsafe { self.bump(size, align) }
    }

    fn unlink(&mut self, prev: usize, cur: usize, next: usize) {
        if prev == 0 {
            self.free = next;
        } else {
            // SAFETY: `prev` is a free block in memory we own.
            unsafe { (*(prev as *mut FreeBlock)).next = next };
        }
        debug_assert_ne!(cur, 0);
    }

    /// Takes `size` bytes at `align` from the top, growing memory as needed.
    unsafe fn bump(&mut self, size: usize, align: usize) -> Option<usize> {
        if self.end == 0 {
            (self.top, self.end) = self.pages.initial();
        }
        loop {
            let start = align_up(self.top, align)?;
            let new_top = start.checked_add(size)?;
            if new_top <= self.end {
                let gap = start - self.top;
                let old_top = self.top;
                self.top = new_top;
                if gap >= MIN_FREE {
                    // SAFETY: the gap is unused memory below the new top.
                    unsafe { self.free_large(old_top, gap) };
                }
                return Some(start);
            }
            // SAFETY: forwarded.
            unsafe { self.grow(new_top - self.end)? };
        }
    }

    /// Adds at least `bytes` bytes above `end`. If the new pages are not
    /// contiguous with the heap (something else grew memory meanwhile), the
    /// rest of the old region is freed and the heap continues in the new
    /// pages. Returns whether the growth was contiguous.
    unsafe fn grow(&mut self, bytes: usize) -> Option<bool> {
        let need = bytes.div_ceil(PAGE);
        // At least MIN_GROW_PAGES at a time: each `memory.grow` is a call
        // into the runtime, and pages never touched cost nothing. Not more:
        // the host's memory limit traps rather than failing the grow, so
        // asking for much more than needed could end a call that fits. (A
        // host that fails the grow instead gets a second, exact request.)
        let (pages, at) = match self.pages.grow(need.max(MIN_GROW_PAGES)) {
            Some(at) => (need.max(MIN_GROW_PAGES), at),
            None if need < MIN_GROW_PAGES => (need, self.pages.grow(need)?),
            None => return None,
        };
        let added = pages.checked_mul(PAGE)?;
        let new_end = at.checked_add(added)?;
        if at == self.end {
            self.end = new_end;
            return Some(true);
        }
        let (old_top, rest) = (self.top, self.end - self.top);
        self.top = at;
        self.end = new_end;
        if rest >= MIN_FREE {
            // SAFETY: unused memory we own, below `top` now.
            unsafe { self.free_large(old_top, rest) };
        }
        Some(false)
    }

    /// Frees a large block (or any unused 8-aligned range of at least
    /// `MIN_FREE` bytes): lowers the top if the block touches it, otherwise
    /// inserts it in address order and merges it with its neighbours.
    #[inline(never)]
    unsafe fn free_large(&mut self, addr: usize, size: usize) {
        let (mut prev_prev, mut prev) = (0usize, 0usize);
        let mut cur = self.free;
        while cur != 0 && cur < addr {
            (prev_prev, prev) = (prev, cur);
            // SAFETY: free-list entries are FreeBlocks in memory we own.
            cur = unsafe { (*(cur as *const FreeBlock)).next };
        }
        let (mut start, mut len) = (addr, size);
        // Merge with the previous block.
        let mut before = prev;
        if prev != 0 {
            // SAFETY: as above.
            let p = unsafe { (prev as *const FreeBlock).read() };
            if prev + p.size == addr {
                start = prev;
                len += p.size;
                before = prev_prev;
            }
        }
        // Merge with the next block.
        let mut next = cur;
        if cur != 0 && addr + size == cur {
            // SAFETY: as above.
            let c = unsafe { (cur as *const FreeBlock).read() };
            len += c.size;
            next = c.next;
        }
        if start + len == self.top {
            // Give it back to the top instead of listing it.
            self.top = start;
            self.link(before, next);
            return;
        }
        // SAFETY: [start, start + len) is free memory we own, 8-aligned and
        // at least MIN_FREE bytes.
        unsafe { (start as *mut FreeBlock).write(FreeBlock { size: len, next }) };
        self.link(before, start);
    }

    fn link(&mut self, prev: usize, to: usize) {
        if prev == 0 {
            self.free = to;
        } else {
            // SAFETY: `prev` is a free block in memory we own.
            unsafe { (*(prev as *mut FreeBlock)).next = to };
        }
    }

    /// Resizes a large block in place if possible: at the top of the heap,
    /// when shrinking, or into a free block right after it.
    unsafe fn resize_large(&mut self, addr: usize, old: usize, new: usize) -> bool {
        if addr + old == self.top {
            let Some(new_top) = addr.checked_add(new) else {
                return false;
            };
            if new_top > self.end {
                // SAFETY: forwarded.
                match unsafe { self.grow(new_top - self.end) } {
                    Some(true) => {}
                    // Out of memory, or the new pages are elsewhere: the
                    // caller copies (into the new pages, if any).
                    _ => return false,
                }
            }
            self.top = new_top;
            return true;
        }
        if new <= old {
            if old - new >= MIN_FREE {
                // SAFETY: the tail is ours and no longer used.
                unsafe { self.free_large(addr + new, old - new) };
            }
            return true;
        }
        // A free block right after this one?
        let want = new - old;
        let mut prev = 0usize;
        let mut cur = self.free;
        while cur != 0 && cur < addr + old {
            prev = cur;
            // SAFETY: free-list entries are FreeBlocks in memory we own.
            cur = unsafe { (*(cur as *const FreeBlock)).next };
        }
        if cur != addr + old {
            return false;
        }
        // SAFETY: as above.
        let FreeBlock { size, next } = unsafe { (cur as *const FreeBlock).read() };
        if size < want {
            return false;
        }
        self.unlink(prev, cur, next);
        if size - want >= MIN_FREE {
            // SAFETY: the rest of the free block stays free.
            unsafe { self.free_large(cur + want, size - want) };
        }
        true
    }
}

/// The global allocator of a plugin built for wasm32 with this SDK (unless
/// the `allocator` feature is off).
#[cfg(all(
    target_arch = "wasm32",
    not(target_feature = "atomics"),
    feature = "allocator"
))]
mod wasm {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::UnsafeCell;

    use super::{Heap, Pages, PAGE};

    struct MemoryGrow;

    extern "C" {
        /// End of the module's static data, set by the linker.
        static __heap_base: u8;
    }

    impl Pages for MemoryGrow {
        fn initial(&mut self) -> (usize, usize) {
            // What the module's initial memory has left above its data.
            let start = ((&raw const __heap_base) as usize + 7) & !7;
            let end = core::arch::wasm32::memory_size(0) * PAGE;
            (start, end.max(start))
        }

        fn grow(&mut self, pages: usize) -> Option<usize> {
            match core::arch::wasm32::memory_grow(0, pages) {
                usize::MAX => None,
                old => Some(old * PAGE),
            }
        }
    }

    struct WeirAlloc(UnsafeCell<Heap<MemoryGrow>>);

    // SAFETY: wasm32 without the atomics feature has a single thread.
    unsafe impl Sync for WeirAlloc {}

    #[global_allocator]
    static ALLOC: WeirAlloc = WeirAlloc(UnsafeCell::new(Heap::new(MemoryGrow)));

    impl WeirAlloc {
        #[allow(clippy::mut_from_ref)]
        #[inline]
        fn heap(&self) -> &mut Heap<MemoryGrow> {
            // SAFETY: single-threaded, and no allocator call re-enters.
            unsafe { &mut *self.0.get() }
        }
    }

    // SAFETY: Heap hands out disjoint, correctly aligned blocks of memory
    // that nothing else uses (see the module documentation).
    unsafe impl GlobalAlloc for WeirAlloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { self.heap().alloc(layout) }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded.
            unsafe { self.heap().dealloc(ptr, layout) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { self.heap().realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_like::Rng;

    /// A tiny deterministic PRNG so the SDK needs no test dependency.
    mod rand_like {
        pub struct Rng(u64);
        impl Rng {
            pub fn new(seed: u64) -> Self {
                Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
            }
            pub fn next(&mut self) -> u64 {
                // xorshift64*
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
            }
            pub fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
        }
    }

    /// Native stand-in for wasm memory: a fixed arena handed out page by
    /// page; `foreign` pages are skipped now and then to simulate another
    /// allocator growing memory behind the heap's back.
    struct Arena {
        base: usize,
        used: usize,
        limit: usize,
        foreign_every: usize,
        grows: usize,
        /// Pages given to the heap.
        given: usize,
        /// Where the heap starts in the first page.
        start: usize,
    }

    impl Pages for Arena {
        fn initial(&mut self) -> (usize, usize) {
            (self.start, self.base + PAGE)
        }

        fn grow(&mut self, pages: usize) -> Option<usize> {
            self.grows += 1;
            if self.foreign_every != 0 && self.grows.is_multiple_of(self.foreign_every) {
                self.used += 1; // someone else took a page
            }
            if self.used + pages > self.limit {
                return None;
            }
            let at = self.base + self.used * PAGE;
            self.used += pages;
            self.given += pages;
            Some(at)
        }
    }

    struct Fixture {
        _mem: Vec<u64>,
        heap: Heap<Arena>,
        lo: usize,
        hi: usize,
        start: usize,
    }

    fn fixture(pages: usize, start_offset: usize, foreign_every: usize) -> Fixture {
        let mem = vec![0u64; (pages + 1) * PAGE / 8];
        let base = (mem.as_ptr() as usize).next_multiple_of(PAGE);
        let arena = Arena {
            base,
            used: 1,
            limit: pages,
            foreign_every,
            grows: 0,
            given: 0,
            start: base + start_offset,
        };
        // Like a module: the first page is the "initial memory", the heap
        // starts part-way into it.
        Fixture {
            heap: Heap::new(arena),
            _mem: mem,
            lo: base,
            hi: base + pages * PAGE,
            start: base + start_offset,
        }
    }

    /// Bytes the heap could hand out again: its free list and the rest
    /// above the top.
    fn free_bytes(h: &Heap<Arena>) -> usize {
        let mut n = h.end - h.top;
        let mut cur = h.free;
        while cur != 0 {
            // SAFETY: free-list entries are FreeBlocks.
            let b = unsafe { (cur as *const FreeBlock).read() };
            n += b.size;
            cur = b.next;
        }
        n
    }

    #[derive(Debug)]
    struct Live {
        addr: usize,
        size: usize,
        align: usize,
        tag: u8,
    }

    /// Bytes checked at each end of a block (checking all of every block
    /// is too slow in a debug build).
    const EDGE: usize = 4096;

    fn fill(l: &Live) {
        // SAFETY: the block is live and `size` bytes long.
        let s = unsafe { std::slice::from_raw_parts_mut(l.addr as *mut u8, l.size) };
        let n = s.len();
        s[..n.min(EDGE)].fill(l.tag);
        s[n.saturating_sub(EDGE)..].fill(l.tag);
    }

    fn check(l: &Live, upto: usize) {
        // SAFETY: as above.
        let s = unsafe { std::slice::from_raw_parts(l.addr as *const u8, upto) };
        let ok = s[..upto.min(EDGE)].iter().all(|&b| b == l.tag)
            && (upto < l.size || s[upto.saturating_sub(EDGE)..].iter().all(|&b| b == l.tag));
        assert!(ok, "block {l:?} was overwritten");
    }

    fn random_size(rng: &mut Rng) -> usize {
        match rng.below(10) {
            0..=6 => 1 + rng.below(64) as usize,
            7..=8 => 1 + rng.below(MAX_SMALL as u64 * 2) as usize,
            _ => 1 + rng.below(200_000) as usize,
        }
    }

    fn run_random(seed: u64, steps: usize, foreign_every: usize) {
        let mut f = fixture(4096, 1000, foreign_every);
        let mut rng = Rng::new(seed);
        let mut live: Vec<Live> = Vec::new();
        for step in 0..steps {
            let op = rng.below(10);
            if op < 5 || live.is_empty() {
                let size = random_size(&mut rng);
                let align = [1, 2, 4, 8, 8, 8, 16, 64, 4096][rng.below(9) as usize];
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the heap owns the arena.
                let p = unsafe { f.heap.alloc(layout) } as usize;
                assert_ne!(p, 0, "step {step}: out of memory");
                assert_eq!(p % align, 0, "step {step}: misaligned");
                assert!(
                    p >= f.lo && p + size <= f.hi,
                    "step {step}: outside the arena"
                );
                for l in &live {
                    assert!(
                        p + size <= l.addr || l.addr + l.size <= p,
                        "step {step}: overlaps {l:?}"
                    );
                }
                let l = Live {
                    addr: p,
                    size,
                    align,
                    tag: (step % 251) as u8,
                };
                fill(&l);
                live.push(l);
            } else if op < 8 {
                let l = live.swap_remove(rng.below(live.len() as u64) as usize);
                check(&l, l.size);
                // SAFETY: allocated above with this layout.
                unsafe {
                    f.heap.dealloc(
                        l.addr as *mut u8,
                        Layout::from_size_align(l.size, l.align).unwrap(),
                    )
                };
            } else {
                let i = rng.below(live.len() as u64) as usize;
                let new_size = if rng.below(2) == 0 {
                    (live[i].size * 2 + 1).min(1 << 20)
                } else {
                    random_size(&mut rng)
                };
                let old = Layout::from_size_align(live[i].size, live[i].align).unwrap();
                // SAFETY: allocated above with `old`.
                let p = unsafe { f.heap.realloc(live[i].addr as *mut u8, old, new_size) } as usize;
                assert_ne!(p, 0, "step {step}: out of memory");
                let mut l = Live {
                    addr: p,
                    ..live.swap_remove(i)
                };
                check(&l, l.size.min(new_size));
                assert_eq!(p % l.align, 0);
                l.size = new_size;
                for o in &live {
                    assert!(
                        p + new_size <= o.addr || o.addr + o.size <= p,
                        "step {step}: realloc overlaps {o:?}"
                    );
                }
                l.tag = (step % 251) as u8;
                fill(&l);
                live.push(l);
            }
        }
        for l in live.drain(..) {
            check(&l, l.size);
            // SAFETY: allocated above with this layout.
            unsafe {
                f.heap.dealloc(
                    l.addr as *mut u8,
                    Layout::from_size_align(l.size, l.align).unwrap(),
                )
            };
        }
        // Nothing leaks but the slabs (small blocks stay in their classes)
        // and a few bytes of split remainders: every large block came back.
        let owned = f.lo + PAGE - f.start + f.heap.pages.given * PAGE;
        let lost = owned - free_bytes(&f.heap);
        assert!(
            lost <= 16 * SLAB,
            "{lost} of {owned} bytes not reusable after freeing everything"
        );
    }

    #[test]
    fn random_operations_keep_blocks_disjoint_and_intact() {
        for seed in 0..20 {
            run_random(seed, 3_000, 0);
        }
    }

    #[test]
    fn survives_memory_grown_by_someone_else() {
        for seed in 0..10 {
            run_random(seed, 3_000, 3);
        }
    }

    #[test]
    fn small_blocks_are_reused() {
        let mut f = fixture(16, 64, 0);
        let l = Layout::from_size_align(10, 1).unwrap();
        // SAFETY: the heap owns the arena.
        unsafe {
            let a = f.heap.alloc(l);
            f.heap.dealloc(a, l);
            assert_eq!(f.heap.alloc(l), a);
        }
    }

    #[test]
    fn the_top_block_grows_in_place() {
        let mut f = fixture(64, 64, 0);
        let l = Layout::from_size_align(100_000, 8).unwrap();
        // SAFETY: the heap owns the arena.
        unsafe {
            let out = f.heap.alloc(l);
            // Small allocations in between do not move it: they come from
            // the slab below.
            let s = Layout::from_size_align(24, 8).unwrap();
            let small: Vec<_> = (0..100).map(|_| f.heap.alloc(s)).collect();
            assert!(small.iter().all(|&p| (p as usize) < out as usize));
            let mut size = l.size();
            for _ in 0..4 {
                let grown =
                    f.heap
                        .realloc(out, Layout::from_size_align(size, 8).unwrap(), size * 2);
                assert_eq!(grown, out);
                size *= 2;
            }
        }
    }

    #[test]
    fn out_of_memory_is_null() {
        let mut f = fixture(4, 64, 0);
        // SAFETY: the heap owns the arena.
        unsafe {
            assert!(f
                .heap
                .alloc(Layout::from_size_align(10 * PAGE, 8).unwrap())
                .is_null());
            // Still usable afterwards.
            assert!(!f
                .heap
                .alloc(Layout::from_size_align(100, 8).unwrap())
                .is_null());
        }
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(8, 8), Some(0));
        assert_eq!(class_of(9, 8), Some(1));
        assert_eq!(class_of(16, 8), Some(1));
        assert_eq!(class_of(17, 8), Some(2));
        assert_eq!(class_of(MAX_SMALL, 8), Some(CLASSES - 1));
        assert_eq!(class_of(MAX_SMALL + 1, 8), None);
        assert_eq!(class_of(8, 16), None);
    }
}
