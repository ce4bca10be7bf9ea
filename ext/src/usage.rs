//! What the host holds and has spent for one plugin, charged as it happens.
//!
//! One [`PluginUsage`] per loaded plugin (it survives restarts), shared by the
//! host and every capability through [`PluginInfo::usage`](crate::PluginInfo).
//! Capabilities add what they hold on the plugin's behalf (buffered requests,
//! queued events, running containers) and take it off when it is given back;
//! the host reads it for `/metrics` and the run summary. Plain relaxed atomics:
//! charging costs an uncontended add, never a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one plugin's use of host resources.
#[derive(Debug, Default)]
pub struct PluginUsage {
    memory_bytes: AtomicU64,
    fuel_consumed: AtomicU64,
    host_bytes: AtomicU64,
    log_lines_dropped: AtomicU64,
    containers: AtomicU64,
}

impl PluginUsage {
    /// Records the linear memory of the running instance, in bytes.
    pub fn set_memory(&self, bytes: usize) {
        self.memory_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// Linear memory of the running instance (of the last one, once stopped).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Counts fuel a call consumed (only when the host meters fuel).
    pub fn fuel(&self, consumed: u64) {
        self.fuel_consumed.fetch_add(consumed, Ordering::Relaxed);
    }

    /// Fuel consumed so far by every call of every instance.
    pub fn fuel_consumed(&self) -> u64 {
        self.fuel_consumed.load(Ordering::Relaxed)
    }

    /// Charges `bytes` the host now holds for the plugin (an event queued in
    /// its mailbox, or anything else a capability keeps for it).
    pub fn hold(&self, bytes: usize) {
        self.host_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Gives back `bytes` charged with [`PluginUsage::hold`].
    pub fn release(&self, bytes: usize) {
        let _ = self
            .host_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes as u64))
            });
    }

    /// Bytes the host holds for the plugin right now.
    pub fn host_bytes(&self) -> u64 {
        self.host_bytes.load(Ordering::Relaxed)
    }

    /// Counts log lines dropped by the plugin's rate limit.
    pub fn log_dropped(&self, lines: u64) {
        self.log_lines_dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// Log lines dropped so far.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log_lines_dropped.load(Ordering::Relaxed)
    }

    /// Sets how many containers exist for the plugin (started and not yet removed).
    pub fn set_containers(&self, count: u64) {
        self.containers.store(count, Ordering::Relaxed);
    }

    /// Containers that exist for the plugin.
    pub fn containers(&self) -> u64 {
        self.containers.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_held_and_released_without_underflow() {
        let usage = PluginUsage::default();
        usage.hold(100);
        usage.hold(20);
        usage.release(50);
        assert_eq!(usage.host_bytes(), 70);
        usage.release(1000);
        assert_eq!(usage.host_bytes(), 0);
    }
}
