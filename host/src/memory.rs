//! Process-wide memory settings.

/// Makes buffers of 1 MiB and more (blocks, partitions, a guest's output)
/// come from the system and go straight back to it when freed.
///
/// glibc raises its mmap threshold after the first large buffer is freed
/// (up to 32 MiB), and from then on keeps freed batches in its heaps, one
/// per thread that allocated them: a process that cuts and frees a large
/// batch every interval then stays resident at about twice its largest
/// batch. With the threshold fixed, resident memory follows live memory
/// (word count, 1 M-line batches: 199 MB → 103 MB peak), for a page fault
/// per fresh page. The `weir` binary calls this first thing; a program
/// embedding weir may. Elsewhere than glibc it does nothing.
///
/// The page faults are then saved where they repeat: a batch's large
/// buffers (partitions, a guest's output) are kept for the next batch by
/// [`weir_abi::recycle`] (nexmark q0: 397 K → 69 K page faults over 11
/// batches, 115 → 67 ms a batch). It keeps at most 256 MiB, or
/// `WEIR_RECYCLE_MIB` (0 turns it off).
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's policy for later calls.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    match std::env::var("WEIR_RECYCLE_MIB").map(|v| v.trim().parse::<usize>()) {
        Ok(Ok(mib)) => weir_abi::recycle::set_limit(mib.saturating_mul(1 << 20)),
        // Logging is not set up yet this early.
        Ok(Err(_)) => eprintln!("weir: WEIR_RECYCLE_MIB is not a whole number of MiB; ignored"),
        Err(_) => {}
    }
}
