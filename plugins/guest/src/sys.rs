//! Raw imports from module `pulp`. Wrapped safely in the capability modules.

#[link(wasm_import_module = "pulp")]
extern "C" {
    pub fn log(level: u32, ptr: *const u8, len: u32) -> u32;
    pub fn entropy_fill(ptr: *mut u8, len: u32) -> u32;
}

#[link(wasm_import_module = "pulp")]
extern "C" {
    pub fn http_register(ptr: *const u8, len: u32) -> u32;
    pub fn http_respond(ptr: *const u8, len: u32) -> u32;
}
