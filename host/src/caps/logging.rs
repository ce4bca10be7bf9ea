//! `logging` (always bound): `log(level, msg_ptr, msg_len) -> code` into tracing.
//!
//! Each call is one line through the plugin's [`LogGate`]: at most
//! `limits.log_line_bytes` of the message are copied from the guest, control
//! characters are escaped, and a line over `limits.log_lines_per_sec` is
//! dropped (the call returns 9, limit exceeded).

use crate::log_gate::{GuestLevel, LogGate};
use pulp_abi::names::IMPORT_MODULE;
use pulp_ext::{guest, host_fn, Capability, HostError, ImportSpec, PluginState, ValKind};
use std::sync::Arc;
use wasmtime::{Caller, Linker};

/// Guest log lines, with the plugin's name as a field. Levels: 0 trace,
/// 1 debug, 2 info, 3 warn, 4 and above error.
pub struct LoggingCapability;

const IMPORTS: &[ImportSpec] = &[ImportSpec::new(
    "log",
    &[ValKind::I32, ValKind::I32, ValKind::I32],
    &[ValKind::I32],
)];

impl Capability for LoggingCapability {
    fn name(&self) -> &str {
        "logging"
    }

    fn summary(&self) -> &str {
        "write log lines (level 0 trace .. 4 error) into the host log, tagged with the plugin name"
    }

    fn imports(&self) -> &[ImportSpec] {
        IMPORTS
    }

    fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        linker.func_wrap(
            IMPORT_MODULE,
            "log",
            |mut caller: Caller<'_, PluginState>, level: u32, ptr: u32, len: u32| {
                match log(&mut caller, level, ptr, len) {
                    // Dropped by the rate limit: no host log line per call either.
                    Ok(Written::Dropped) => Ok(pulp_ext::Code::LimitExceeded.as_u32()),
                    Ok(Written::Line) => host_fn::finish(&caller, "log", Ok(())),
                    Err(e) => host_fn::finish(&caller, "log", Err(e)),
                }
            },
        )?;
        Ok(())
    }

    fn release(&self, state: &mut PluginState) {
        if let Some(gate) = state.slot::<Arc<LogGate>>() {
            gate.flush();
        }
    }
}

/// What became of one `log` call that was not an error.
enum Written {
    Line,
    /// Over the rate: counted by the gate, returned as 9.
    Dropped,
}

fn log(
    caller: &mut Caller<'_, PluginState>,
    level: u32,
    ptr: u32,
    len: u32,
) -> Result<Written, HostError> {
    let gate = caller
        .data()
        .slot::<Arc<LogGate>>()
        .cloned()
        .ok_or_else(|| HostError::failed("no log gate for this instance"))?;
    // Check the range first (nothing copied), so a bad pointer is reported
    // whatever the rate, and a dropped line costs no copy.
    guest::read_prefix(caller, ptr, len, 0)?;
    if !gate.admit() {
        return Ok(Written::Dropped);
    }
    let kept = guest::read_prefix(caller, ptr, len, gate.line_bytes())?;
    gate.write(GuestLevel::from_code(level), None, &kept, len as usize);
    Ok(Written::Line)
}
