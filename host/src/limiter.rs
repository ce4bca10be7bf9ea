//! Per-plugin resource limits enforced by wasmtime as the guest grows.

use wasmtime::ResourceLimiter;

/// The guest tried to grow linear memory past its manifest limit.
///
/// Returned from the limiter, so the growing instruction traps with this error
/// instead of returning -1: a memory bomb fails at once with a reason rather
/// than spinning until its time budget runs out.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: guest asked for {desired} bytes, limit is {limit} bytes")]
pub struct MemoryLimitExceeded {
    /// Bytes the guest asked for.
    pub desired: usize,
    /// The manifest's limit in bytes.
    pub limit: usize,
}

/// Table elements a plugin may have (function references for indirect calls).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Limits memory and tables of one plugin instance.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimiter {
    memory_bytes: usize,
}

impl PluginLimiter {
    /// A limiter allowing `memory_bytes` of linear memory.
    pub fn new(memory_bytes: usize) -> Self {
        PluginLimiter { memory_bytes }
    }
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.memory_bytes,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}
