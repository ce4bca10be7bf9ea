//! Build a complete `pulp` import from a closure over decoded values.
//!
//! The wrappers read and decode the request, call the closure, encode and
//! write the response, turn every [`HostError::Code`] into the import's
//! return value (with a debug log line naming plugin, import and detail) and
//! let a [`HostError::Trap`] unwind the guest.

use crate::{guest, HostError, PluginState};
use pulp_abi::{names::IMPORT_MODULE, Code};
use serde::{de::DeserializeOwned, Serialize};
use wasmtime::{Caller, Linker};

/// Turns a host call's result into the `u32` the guest sees.
pub fn finish(
    caller: &Caller<'_, PluginState>,
    import: &str,
    result: Result<(), HostError>,
) -> wasmtime::Result<u32> {
    match result {
        Ok(()) => Ok(Code::Ok.as_u32()),
        Err(HostError::Code { code, detail }) => {
            tracing::debug!(plugin = %caller.data().info().name, import, code = code.as_u32(), %detail, "host call refused");
            Ok(code.as_u32())
        }
        Err(HostError::Trap(e)) => Err(e),
    }
}

/// Defines `pulp.<name>: (ptr, len) -> code` taking a MessagePack `Req`.
pub fn msgpack_in<Req, F>(
    linker: &mut Linker<PluginState>,
    name: &'static str,
    f: F,
) -> wasmtime::Result<()>
where
    Req: DeserializeOwned,
    F: Fn(&mut Caller<'_, PluginState>, Req) -> Result<(), HostError> + Send + Sync + 'static,
{
    linker.func_wrap(
        IMPORT_MODULE,
        name,
        move |mut caller: Caller<'_, PluginState>, ptr: u32, len: u32| {
            let result =
                guest::read_msgpack(&mut caller, ptr, len).and_then(|req| f(&mut caller, req));
            finish(&caller, name, result)
        },
    )?;
    Ok(())
}

/// Defines `pulp.<name>: (ptr, len, out_ptr_addr, out_len_addr) -> code` taking a
/// MessagePack `Req` and writing a MessagePack `Resp` through `pulp_alloc`.
/// Out-addresses outside memory are refused (8) before `f` runs.
pub fn msgpack_in_out<Req, Resp, F>(
    linker: &mut Linker<PluginState>,
    name: &'static str,
    f: F,
) -> wasmtime::Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: Fn(&mut Caller<'_, PluginState>, Req) -> Result<Resp, HostError> + Send + Sync + 'static,
{
    linker.func_wrap(
        IMPORT_MODULE,
        name,
        move |mut caller: Caller<'_, PluginState>,
              ptr: u32,
              len: u32,
              ptr_out: u32,
              len_out: u32| {
            // Out-addresses first: a request with side effects (a row written,
            // a container started) must never succeed without its answer.
            let result = guest::check_out_addresses(&caller, ptr_out, len_out)
                .and_then(|()| guest::read_msgpack(&mut caller, ptr, len))
                .and_then(|req| f(&mut caller, req))
                .and_then(|resp| guest::write_msgpack(&mut caller, &resp, ptr_out, len_out));
            finish(&caller, name, result)
        },
    )?;
    Ok(())
}
