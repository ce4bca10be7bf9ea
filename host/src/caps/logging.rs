//! `logging` (always bound): `log(level, msg_ptr, msg_len) -> code` into tracing.

use pulp_abi::names::IMPORT_MODULE;
use pulp_ext::{guest, host_fn, Capability, ImportSpec, PluginState, ValKind};
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
                let result = guest::read_str(&mut caller, ptr, len).map(|msg| {
                    let plugin = caller.data().info().name.as_str();
                    match level {
                        0 => tracing::trace!(target: "pulp::guest", plugin, "{msg}"),
                        1 => tracing::debug!(target: "pulp::guest", plugin, "{msg}"),
                        2 => tracing::info!(target: "pulp::guest", plugin, "{msg}"),
                        3 => tracing::warn!(target: "pulp::guest", plugin, "{msg}"),
                        _ => tracing::error!(target: "pulp::guest", plugin, "{msg}"),
                    }
                });
                host_fn::finish(&caller, "log", result)
            },
        )?;
        Ok(())
    }
}
