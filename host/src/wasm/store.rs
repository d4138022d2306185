//! What a store carries during one call: the memory limiter and the log
//! budget, and the `weir.log` import.

use std::sync::Arc;

use wasmtime::{Caller, Extern, ResourceLimiter};

use super::wasi::GuestEnv;

/// Per-call store data.
pub(crate) struct CallState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log_left: usize,
    pub(crate) log_truncated: bool,
    pub(crate) plugin: Arc<str>,
    /// The virtual clock, randomness and stderr of WASI and runtime imports.
    pub(crate) env: GuestEnv,
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

/// Takes `units` of fuel for work a host function does for the guest; out
/// of fuel traps as the guest's own instructions would.
pub(crate) fn charge(caller: &mut Caller<'_, CallState>, units: u64) -> wasmtime::Result<()> {
    let left = caller.get_fuel()?;
    if left < units {
        caller.set_fuel(0)?;
        return Err(wasmtime::Trap::OutOfFuel.into());
    }
    caller.set_fuel(left - units)
}

/// Copies `len` bytes at `ptr` out of guest memory; an error (a trap)
/// naming `what` when the range is outside memory.
pub(crate) fn guest_bytes(
    caller: &mut Caller<'_, CallState>,
    what: &str,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<Vec<u8>> {
    let Some(Extern::Memory(memory)) = caller.get_export(weir_abi::EXPORT_MEMORY) else {
        return Err(wasmtime::Error::msg(format!(
            "{what} called by a module without exported memory"
        )));
    };
    let data = memory.data(&caller);
    let end = ptr as usize + len as usize;
    match data.get(ptr as usize..end) {
        Some(bytes) => Ok(bytes.to_vec()),
        None => Err(wasmtime::Error::msg(format!(
            "{what}: pointer {ptr} + length {len} is outside memory of {} bytes",
            data.len()
        ))),
    }
}

/// Logs guest output at `level` (1 debug, 2 info, 3 warn, 4 error) within
/// the call's budget; what does not fit is dropped, once with a warning.
pub(crate) fn log_bytes(state: &mut CallState, level: i32, bytes: &[u8]) {
    if state.log_left == 0 {
        return;
    }
    let take = bytes.len().min(state.log_left);
    let msg = String::from_utf8_lossy(&bytes[..take]);
    state.log_left -= take;
    let plugin = &state.plugin;
    if take < bytes.len() && !state.log_truncated {
        state.log_truncated = true;
        tracing::warn!(plugin = %plugin, "log budget of this call exhausted; further plugin log output dropped");
    }
    match level {
        i32::MIN..=1 => tracing::debug!(plugin = %plugin, "{msg}"),
        2 => tracing::info!(plugin = %plugin, "{msg}"),
        3 => tracing::warn!(plugin = %plugin, "{msg}"),
        _ => tracing::error!(plugin = %plugin, "{msg}"),
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
    let (data, state) = memory.data_and_store_mut(caller);
    let end = ptr as usize + len as usize;
    let Some(bytes) = data.get(ptr as usize..end) else {
        return Err(wasmtime::Error::msg(format!(
            "weir.log: pointer {ptr} + length {len} is outside memory of {} bytes",
            data.len()
        )));
    };
    log_bytes(state, level, bytes);
    Ok(())
}
