//! Calling the imports of any capability, including ones added by host
//! extensions: declare the raw import, then call it with a serde value.
//!
//! ```ignore
//! #[link(wasm_import_module = "pulp")]
//! extern "C" {
//!     fn queue_len(ptr: *const u8, len: u32, out_ptr: *mut u32, out_len: *mut u32) -> u32;
//! }
//! #[derive(serde::Serialize)] struct LenRequest<'a> { queue: &'a str }
//! #[derive(serde::Deserialize)] struct LenResponse { len: u64 }
//! let r: LenResponse = pulp_guest::ext::call_in_out(queue_len, &LenRequest { queue: "jobs" })?;
//! ```

use crate::HostCallError;
use pulp_abi::Code;
use serde::{de::DeserializeOwned, Serialize};

/// `(ptr, len) -> code`.
pub type RawIn = unsafe extern "C" fn(*const u8, u32) -> u32;
/// `(ptr, len, out_ptr_addr, out_len_addr) -> code`.
pub type RawInOut = unsafe extern "C" fn(*const u8, u32, *mut u32, *mut u32) -> u32;

fn encode(value: &impl Serialize) -> Result<Vec<u8>, HostCallError> {
    rmp_serde::to_vec_named(value).map_err(|_| HostCallError(Code::InvalidArgument.as_u32()))
}

/// Sends `request` as MessagePack to an import that returns only a code.
pub fn call_in(import: RawIn, request: &impl Serialize) -> Result<(), HostCallError> {
    let bytes = encode(request)?;
    // SAFETY: pointer and length describe the live buffer `bytes`.
    match unsafe { import(bytes.as_ptr(), bytes.len() as u32) } {
        0 => Ok(()),
        code => Err(HostCallError(code)),
    }
}

/// Sends `request` as MessagePack and decodes the MessagePack response the
/// host wrote through `pulp_alloc` (the buffer is freed here).
pub fn call_in_out<R: DeserializeOwned>(
    import: RawInOut,
    request: &impl Serialize,
) -> Result<R, HostCallError> {
    let bytes = encode(request)?;
    let (mut ptr, mut len) = (0u32, 0u32);
    // SAFETY: pointer and length describe `bytes`; the out-addresses are live locals.
    let code = unsafe { import(bytes.as_ptr(), bytes.len() as u32, &mut ptr, &mut len) };
    if code != 0 {
        return Err(HostCallError(code));
    }
    // SAFETY: the host stored a buffer it allocated with pulp_alloc(len) at the out-addresses.
    let result = unsafe { crate::memory::take_host_result(ptr, len) };
    rmp_serde::from_slice(&result).map_err(|_| HostCallError(Code::DecodeFailed.as_u32()))
}
