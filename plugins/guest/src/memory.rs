//! The allocator behind `pulp_alloc` / `pulp_free`, and reading host-written buffers.

use std::alloc::{alloc, dealloc, Layout};

const ALIGN: usize = 8;

/// Allocates `size` bytes; 0 on failure. A zero-size request gets a dangling,
/// aligned, non-null pointer that `free` ignores.
pub fn allocate(size: u32) -> u32 {
    if size == 0 {
        return ALIGN as u32;
    }
    match Layout::from_size_align(size as usize, ALIGN) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { alloc(layout) as usize as u32 },
        Err(_) => 0,
    }
}

/// Frees what `allocate(size)` returned.
///
/// # Safety
/// `ptr` must come from `allocate(size)` and not have been freed.
pub unsafe fn free(ptr: u32, size: u32) {
    if size == 0 || ptr == 0 {
        return;
    }
    if let Ok(layout) = Layout::from_size_align(size as usize, ALIGN) {
        // SAFETY: guaranteed by the caller.
        unsafe { dealloc(ptr as usize as *mut u8, layout) }
    }
}

/// Copies bytes into a fresh `allocate`d buffer, for the host to read and free.
pub fn into_host_buffer(bytes: &[u8]) -> Option<(u32, u32)> {
    let len = u32::try_from(bytes.len()).ok()?;
    let ptr = allocate(len);
    if ptr == 0 {
        return None;
    }
    // SAFETY: `ptr` points to `len` writable bytes just allocated.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr as usize as *mut u8, bytes.len()) };
    Some((ptr, len))
}

/// Borrows `len` bytes the host wrote at `ptr` for the duration of a call.
///
/// # Safety
/// The host guarantees `ptr..ptr+len` is an allocation it wrote and does not
/// free until the export returns.
pub unsafe fn host_bytes<'a>(ptr: u32, len: u32) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
}

/// Takes ownership of a buffer the host allocated through `pulp_alloc` to return
/// a result, copying it out and freeing it.
///
/// # Safety
/// `ptr`/`len` must be what a host import stored at the out-addresses.
pub unsafe fn take_host_result(ptr: u32, len: u32) -> Vec<u8> {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { host_bytes(ptr, len) }.to_vec();
    // SAFETY: the host allocated it with pulp_alloc(len).
    unsafe { free(ptr, len) };
    bytes
}
