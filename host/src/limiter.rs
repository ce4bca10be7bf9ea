//! Per-plugin resource limits enforced by wasmtime as the guest grows.

use pulp_ext::PluginUsage;
use std::sync::Arc;
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

/// Tables one instance may have.
pub const MAX_TABLES: usize = 4;

/// Limits memory and tables of one plugin instance, and records the memory
/// it was granted in the plugin's [`PluginUsage`] (wasmtime asks here for the
/// initial size and every growth, so the figure is exact and costs nothing).
#[derive(Debug, Clone)]
pub struct PluginLimiter {
    memory_bytes: usize,
    table_elements: usize,
    usage: Arc<PluginUsage>,
}

impl PluginLimiter {
    /// A limiter allowing `memory_bytes` of linear memory and `table_elements`
    /// elements in any table.
    pub fn new(memory_bytes: usize, table_elements: usize, usage: Arc<PluginUsage>) -> Self {
        PluginLimiter {
            memory_bytes,
            table_elements,
            usage,
        }
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
        self.usage.set_memory(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        1
    }
}
