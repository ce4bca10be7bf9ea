//! `entropy` (always granted): bytes from the host's CSPRNG.

use crate::HostCallError;

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> Result<(), HostCallError> {
    // SAFETY: pointer and length describe a live, writable slice.
    match unsafe { crate::sys::entropy_fill(buf.as_mut_ptr(), buf.len() as u32) } {
        0 => Ok(()),
        code => Err(HostCallError(code)),
    }
}

/// A random `u64`.
pub fn u64() -> Result<u64, HostCallError> {
    let mut b = [0u8; 8];
    fill(&mut b)?;
    Ok(u64::from_le_bytes(b))
}
