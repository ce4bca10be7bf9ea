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

#[link(wasm_import_module = "pulp")]
extern "C" {
    pub fn sqlite_exec(
        q_ptr: *const u8,
        q_len: u32,
        p_ptr: *const u8,
        p_len: u32,
        res_ptr_out: *mut u32,
        res_len_out: *mut u32,
    ) -> u32;
    pub fn sqlite_query(
        q_ptr: *const u8,
        q_len: u32,
        p_ptr: *const u8,
        p_len: u32,
        rows_ptr_out: *mut u32,
        rows_len_out: *mut u32,
    ) -> u32;
}

#[link(wasm_import_module = "pulp")]
extern "C" {
    pub fn docker_spawn(
        req_ptr: *const u8,
        req_len: u32,
        res_ptr_out: *mut u32,
        res_len_out: *mut u32,
    ) -> u32;
    pub fn docker_kill(ptr: *const u8, len: u32) -> u32;
}
