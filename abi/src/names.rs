//! Export and import names of the ABI.

/// The import module every host function lives in.
pub const IMPORT_MODULE: &str = "pulp";
/// The WASI preview 1 import module, bound for every plugin (no files, env or args).
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Linear memory export.
pub const MEMORY: &str = "memory";
/// `(size u32) -> u32`: allocate guest memory; 0 = failure.
pub const ALLOC: &str = "pulp_alloc";
/// `(ptr u32, size u32)`: optional; frees what `pulp_alloc` gave.
pub const FREE: &str = "pulp_free";
/// `(cfg_ptr u32, cfg_len u32) -> i32`: 0 = ok.
pub const INIT: &str = "pulp_init";
/// `(in_ptr u32, in_len u32) -> i32`: 0 = no output, > 0 = output handle, < 0 = error.
pub const STEP: &str = "pulp_step";
/// `() -> i32`: 0 = ok.
pub const SHUTDOWN: &str = "pulp_shutdown";
/// `(handle i32) -> i64`: optional; `(ptr << 32) | len` of the output bytes.
pub const OUTPUT: &str = "pulp_output";
/// `()`: optional WASI reactor initialiser, called before `pulp_init`.
pub const INITIALIZE: &str = "_initialize";
/// Prefix of optional diagnostic exports `() -> i64`.
pub const PROBE_PREFIX: &str = "probe_";
