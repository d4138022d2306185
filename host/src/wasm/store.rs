//! What a store carries during one call: the memory limiter and the log
//! budget, and the `weir.log` import.

use std::sync::Arc;

use wasmtime::{Caller, Extern, ResourceLimiter};

/// Per-call store data.
pub(crate) struct CallState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log_left: usize,
    pub(crate) log_truncated: bool,
    pub(crate) plugin: Arc<str>,
}

/// Caps linear memory and remembers whether the cap was hit, so a failed
/// grow is reported as a memory-limit error rather than as the trap the
/// guest raises afterwards (Rust's allocation-failure abort, say).
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) hit: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = Some(desired);
            // Trap right away: the guest cannot carry on into undefined
            // territory, and the error says why.
            return Err(wasmtime::Error::msg("memory limit"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// `weir.log(level, ptr, len)`: bounds-checked, budgeted, never fails the
/// call for running out of budget (logging must not change results).
pub(crate) fn guest_log(
    caller: &mut Caller<'_, CallState>,
    level: i32,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<()> {
    let Some(Extern::Memory(memory)) = caller.get_export(weir_abi::EXPORT_MEMORY) else {
        return Err(wasmtime::Error::msg(
            "weir.log called by a module without exported memory",
        ));
    };
    let data = memory.data(&caller);
    let end = ptr as usize + len as usize;
    if end > data.len() {
        return Err(wasmtime::Error::msg(format!(
            "weir.log: pointer {ptr} + length {len} is outside memory of {} bytes",
            data.len()
        )));
    }
    let state = caller.data();
    if state.log_left == 0 {
        return Ok(());
    }
    let take = (len as usize).min(state.log_left);
    let msg = String::from_utf8_lossy(&data[ptr as usize..ptr as usize + take]).into_owned();
    let plugin = state.plugin.clone();
    let state = caller.data_mut();
    state.log_left -= take;
    if take < len as usize && !state.log_truncated {
        state.log_truncated = true;
        tracing::warn!(plugin = %plugin, "log budget of this call exhausted; further plugin log output dropped");
    }
    match level {
        i32::MIN..=1 => tracing::debug!(plugin = %plugin, "{msg}"),
        2 => tracing::info!(plugin = %plugin, "{msg}"),
        3 => tracing::warn!(plugin = %plugin, "{msg}"),
        _ => tracing::error!(plugin = %plugin, "{msg}"),
    }
    Ok(())
}
