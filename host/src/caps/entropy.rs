//! `entropy` (always bound): `entropy_fill(ptr, len) -> code` from the OS CSPRNG.

use pulp_abi::names::IMPORT_MODULE;
use pulp_ext::{guest, host_fn, Capability, HostError, ImportSpec, PluginState, ValKind};
use wasmtime::{Caller, Linker};

/// Fills guest memory with random bytes, written in place (no allocation).
pub struct EntropyCapability;

const IMPORTS: &[ImportSpec] = &[ImportSpec::new(
    "entropy_fill",
    &[ValKind::I32, ValKind::I32],
    &[ValKind::I32],
)];

impl Capability for EntropyCapability {
    fn name(&self) -> &str {
        "entropy"
    }

    fn summary(&self) -> &str {
        "fill a guest buffer with bytes from the operating system's CSPRNG"
    }

    fn imports(&self) -> &[ImportSpec] {
        IMPORTS
    }

    fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        linker.func_wrap(
            IMPORT_MODULE,
            "entropy_fill",
            |mut caller: Caller<'_, PluginState>, ptr: u32, len: u32| {
                let result = guest::fill(&mut caller, ptr, len, |buf| {
                    getrandom::fill(buf)
                        .map_err(|e| HostError::failed(format!("OS random source: {e}")))
                });
                host_fn::finish(&caller, "entropy_fill", result)
            },
        )?;
        Ok(())
    }
}
