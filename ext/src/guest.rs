//! Guest memory access for host functions: the only code that turns a guest
//! `(ptr, len)` into bytes.
//!
//! Every pointer and length is checked against the memory's current size with
//! overflow-checked arithmetic and against [`GuestLimits::max_buffer`]
//! before anything is read or written; results are written through the
//! guest's own `pulp_alloc` and the allocation is checked too.
//!
//! [`GuestLimits::max_buffer`]: crate::GuestLimits::max_buffer

use crate::{HostError, PluginState};
use pulp_abi::Code;
use serde::{de::DeserializeOwned, Serialize};
use std::ops::Range;
use wasmtime::Caller;

/// `ptr..ptr+len` if it lies inside a memory of `size` bytes.
pub fn checked_range(ptr: u32, len: u32, size: usize) -> Option<Range<usize>> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    (end <= size).then_some(start..end)
}

fn exports(
    caller: &Caller<'_, PluginState>,
    missing: Code,
) -> Result<crate::GuestExports, HostError> {
    caller
        .data()
        .guest()
        .cloned()
        .ok_or_else(|| HostError::code(missing, "instance not initialised yet"))
}

fn check_size(caller: &Caller<'_, PluginState>, len: usize) -> Result<(), HostError> {
    let max = caller.data().info().limits.max_buffer as usize;
    if len > max {
        return Err(HostError::code(
            Code::LimitExceeded,
            format!("{len} bytes is over the {max}-byte buffer limit"),
        ));
    }
    Ok(())
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub fn read(
    caller: &mut Caller<'_, PluginState>,
    ptr: u32,
    len: u32,
) -> Result<Vec<u8>, HostError> {
    read_prefix(caller, ptr, len, len as usize)
}

/// Copies at most `max` bytes from the start of the `len` bytes at `ptr`.
///
/// The whole range is checked as [`read`] checks it (inside memory, `len` not
/// over `max_buffer`), but only the prefix is copied: a host that keeps only
/// the first `max` bytes (a log line) never copies a 16 MiB buffer to do so.
pub fn read_prefix(
    caller: &mut Caller<'_, PluginState>,
    ptr: u32,
    len: u32,
    max: usize,
) -> Result<Vec<u8>, HostError> {
    check_size(caller, len as usize)?;
    let guest = exports(caller, Code::MemoryReadOutOfRange)?;
    let data = guest.memory.data(&caller);
    let range = checked_range(ptr, len, data.len()).ok_or_else(|| {
        HostError::code(
            Code::MemoryReadOutOfRange,
            format!(
                "read of {len} bytes at {ptr:#x} outside {} bytes of memory",
                data.len()
            ),
        )
    })?;
    let end = range.start + range.len().min(max);
    Ok(data[range.start..end].to_vec())
}

/// Reads a UTF-8 string (lossily: invalid sequences become U+FFFD).
pub fn read_str(
    caller: &mut Caller<'_, PluginState>,
    ptr: u32,
    len: u32,
) -> Result<String, HostError> {
    read(caller, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads and decodes a MessagePack value; empty input is [`Code::EmptyInput`].
pub fn read_msgpack<T: DeserializeOwned>(
    caller: &mut Caller<'_, PluginState>,
    ptr: u32,
    len: u32,
) -> Result<T, HostError> {
    if len == 0 {
        return Err(HostError::code(Code::EmptyInput, "empty request"));
    }
    let bytes = read(caller, ptr, len)?;
    rmp_serde::from_slice(&bytes).map_err(|e| HostError::code(Code::DecodeFailed, e.to_string()))
}

/// Writes `bytes` into a fresh guest allocation and stores its `(ptr, len)` as
/// two little-endian u32 at `ptr_out` and `len_out`.
///
/// The out-addresses are checked before `pulp_alloc` is called, so a bad
/// address costs the guest no allocation.
pub fn write_out(
    caller: &mut Caller<'_, PluginState>,
    bytes: &[u8],
    ptr_out: u32,
    len_out: u32,
) -> Result<(), HostError> {
    check_size(caller, bytes.len())?;
    let guest = exports(caller, Code::MemoryWriteFailed)?;
    check_out_addresses(caller, ptr_out, len_out)?;
    let len = bytes.len() as u32; // fits: check_size bounds it by a u32 limit
    let ptr = if len == 0 {
        0
    } else {
        let ptr = guest
            .alloc
            .call(&mut *caller, len)
            .map_err(HostError::Trap)?;
        if ptr == 0 {
            return Err(HostError::code(
                Code::AllocFailed,
                format!("pulp_alloc({len}) returned 0"),
            ));
        }
        // `pulp_alloc` may have grown memory: look again.
        let data = guest.memory.data_mut(&mut *caller);
        let size = data.len();
        let range = checked_range(ptr, len, size).ok_or_else(|| {
            HostError::code(
                Code::AllocFailed,
                format!("pulp_alloc({len}) returned {ptr:#x}, outside {size} bytes of memory"),
            )
        })?;
        data[range].copy_from_slice(bytes);
        ptr
    };
    let data = guest.memory.data_mut(&mut *caller);
    // Both in range: checked above and memory never shrinks.
    data[ptr_out as usize..ptr_out as usize + 4].copy_from_slice(&ptr.to_le_bytes());
    data[len_out as usize..len_out as usize + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Checks that `ptr_out` and `len_out` can each take a u32. Call it before work
/// with side effects (a write to a database), so a bad out-address is refused
/// before anything happens rather than after.
pub fn check_out_addresses(
    caller: &Caller<'_, PluginState>,
    ptr_out: u32,
    len_out: u32,
) -> Result<(), HostError> {
    let guest = exports(caller, Code::MemoryWriteFailed)?;
    let size = guest.memory.data_size(caller);
    if checked_range(ptr_out, 4, size).is_none() || checked_range(len_out, 4, size).is_none() {
        return Err(HostError::code(
            Code::MemoryWriteFailed,
            format!("out-addresses {ptr_out:#x}/{len_out:#x} outside {size} bytes of memory"),
        ));
    }
    Ok(())
}

/// Encodes `value` as a MessagePack map and writes it out like [`write_out`].
pub fn write_msgpack<T: Serialize>(
    caller: &mut Caller<'_, PluginState>,
    value: &T,
    ptr_out: u32,
    len_out: u32,
) -> Result<(), HostError> {
    let bytes = rmp_serde::to_vec_named(value).map_err(|e| HostError::failed(e.to_string()))?;
    write_out(caller, &bytes, ptr_out, len_out)
}

/// Fills `len` bytes of guest memory at `ptr` in place with `fill`.
pub fn fill(
    caller: &mut Caller<'_, PluginState>,
    ptr: u32,
    len: u32,
    fill: impl FnOnce(&mut [u8]) -> Result<(), HostError>,
) -> Result<(), HostError> {
    check_size(caller, len as usize)?;
    let guest = exports(caller, Code::MemoryWriteFailed)?;
    let data = guest.memory.data_mut(&mut *caller);
    let size = data.len();
    let range = checked_range(ptr, len, size).ok_or_else(|| {
        HostError::code(
            Code::MemoryWriteFailed,
            format!("write of {len} bytes at {ptr:#x} outside {size} bytes of memory"),
        )
    })?;
    fill(&mut data[range])
}

#[cfg(test)]
mod tests {
    use super::checked_range;

    #[test]
    fn ranges_are_checked_without_overflow() {
        assert_eq!(checked_range(0, 0, 0), Some(0..0));
        assert_eq!(checked_range(10, 6, 16), Some(10..16));
        assert_eq!(checked_range(10, 7, 16), None);
        assert_eq!(checked_range(u32::MAX, u32::MAX, 1 << 32), None);
        assert_eq!(checked_range(1, u32::MAX, 1 << 32), Some(1..(1 << 32)));
        assert_eq!(checked_range(2, u32::MAX, 1 << 32), None);
    }
}
