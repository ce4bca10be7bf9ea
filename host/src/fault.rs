//! How a call into a plugin fails: the fault kinds and the message that names
//! plugin, export, call number and cause.

use crate::limiter::MemoryLimitExceeded;
use crate::manifest::Limits;
use std::fmt;
use std::time::Duration;
use wasmtime::Trap;

/// What went wrong in a call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The guest trapped (unreachable, bad memory access, stack overflow, ...).
    Trap(String),
    /// The call ran past its wall-clock budget and was interrupted.
    Timeout(Duration),
    /// The guest grew linear memory past its limit.
    MemoryLimit(String),
    /// The call used up its `limits.fuel`.
    FuelExhausted(u64),
    /// `pulp_init` / `pulp_shutdown` returned non-zero.
    ErrorCode(i32),
    /// The guest broke the ABI (bad allocation, output handle out of range, ...).
    Abi(String),
    /// Instantiation or capability set-up failed.
    Setup(String),
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Trap(m) => f.write_str(m),
            FaultKind::Timeout(b) => write!(f, "time budget of {} ms exceeded", b.as_millis()),
            FaultKind::MemoryLimit(m) => f.write_str(m),
            FaultKind::FuelExhausted(n) => write!(f, "fuel budget of {n} exhausted"),
            FaultKind::ErrorCode(c) => write!(f, "returned error code {c}"),
            FaultKind::Abi(m) => write!(f, "ABI violation: {m}"),
            FaultKind::Setup(m) => write!(f, "set-up failed: {m}"),
        }
    }
}

/// A failed call: which plugin, which export, which call, what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin `{plugin}`: {export} (call {call_number}): {kind}")]
pub struct PluginFault {
    /// Plugin name.
    pub plugin: String,
    /// The export that was being called (or `instantiate`).
    pub export: &'static str,
    /// Steps issued so far (0 during init).
    pub call_number: u64,
    /// What went wrong.
    pub kind: FaultKind,
}

/// Turns a wasmtime error from a guest call into a fault kind.
pub(crate) fn classify(err: &wasmtime::Error, limits: &Limits) -> FaultKind {
    if let Some(limit) = err.downcast_ref::<MemoryLimitExceeded>() {
        return FaultKind::MemoryLimit(limit.to_string());
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FaultKind::Timeout(limits.call_timeout),
        Some(Trap::OutOfFuel) => FaultKind::FuelExhausted(limits.fuel.unwrap_or(0)),
        Some(trap) => FaultKind::Trap(trap.to_string()),
        // A host function's error: its own message, without wasmtime's backtrace context.
        None => FaultKind::Trap(err.root_cause().to_string()),
    }
}
