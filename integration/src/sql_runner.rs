//! A WAT plugin that runs whatever SQL statement its step payload carries
//! through `storage.sqlite` and hands the capability's MessagePack result back
//! as its step output: the SQLite tests and benchmark drive the real
//! capability with it, with no guest SDK in between.
//!
//! Step payload: `op u32 | sql_len u32 | params_len u32 | sql | params`, where
//! bit 0 of `op` picks `sqlite_query` over `sqlite_exec` and bit 1 keeps the
//! result in guest memory (as a plugin decoding it itself would) instead of
//! returning it. The step returns 1 (output = the result bytes), 0 (result
//! kept) or minus the import's code.

use pulp_abi::sqlite::Value;

/// `op` for `sqlite_exec`.
pub const EXEC: u32 = 0;
/// `op` for `sqlite_query`.
pub const QUERY: u32 = 1;
/// Added to `op`: leave the result in guest memory; the step returns 0.
pub const KEEP: u32 = 2;

const RUNNER: &str = r#"
  (local $p i32) (local $q i32) (local $ql i32) (local $pl i32) (local $code i32)
  (local.set $p (i32.add (local.get $ptr) (i32.const 20)))
  (local.set $ql (i32.load offset=4 (local.get $p)))
  (local.set $pl (i32.load offset=8 (local.get $p)))
  (local.set $q (i32.add (local.get $p) (i32.const 12)))
  (local.set $code
    (if (result i32) (i32.eqz (i32.and (i32.load (local.get $p)) (i32.const 1)))
      (then (call $exec (local.get $q) (local.get $ql) (i32.add (local.get $q) (local.get $ql)) (local.get $pl) (i32.const 8) (i32.const 12)))
      (else (call $query (local.get $q) (local.get $ql) (i32.add (local.get $q) (local.get $ql)) (local.get $pl) (i32.const 8) (i32.const 12)))))
  (if (result i32) (local.get $code)
    (then (i32.sub (i32.const 0) (local.get $code)))
    (else (i32.eqz (i32.and (i32.load (local.get $p)) (i32.const 2)))))"#;

const IMPORTS: &str = r#"
  (import "pulp" "sqlite_exec" (func $exec (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "pulp" "sqlite_query" (func $query (param i32 i32 i32 i32 i32 i32) (result i32)))"#;

/// `pulp_output` for the runner, and a bump allocator that wraps within 1 MiB.
const EXTRA: &str = r#"
  (global $bump (mut i32) (i32.const 65536))
  (func (export "pulp_output") (param i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (i32.load (i32.const 8))) (i64.const 32)) (i64.extend_i32_u (i32.load (i32.const 12)))))"#;

/// The runner module as WAT text.
pub fn runner_wat() -> String {
    // Replace the fixed-buffer allocator of wat_plugin with a bump allocator: the
    // envelope and the result must not overlap.
    crate::wat_plugin(IMPORTS, RUNNER, EXTRA)
        .replace("(memory (export \"memory\") 2)", "(memory (export \"memory\") 32)")
        .replace(
            "(if (result i32) (i32.gt_u (local.get $n) (i32.const 60000)) (then (i32.const 0)) (else (i32.const 1024))))",
            "(local $at i32)
    (if (i32.gt_u (i32.add (global.get $bump) (local.get $n)) (i32.const 2097152)) (then (global.set $bump (i32.const 65536))))
    (local.set $at (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (i32.add (local.get $n) (i32.const 8))))
    (local.get $at))",
        )
}

/// The step payload running `sql` with `params` (an empty slice sends no params).
pub fn payload(op: u32, sql: &str, params: &[Value]) -> Vec<u8> {
    let params = if params.is_empty() {
        Vec::new()
    } else {
        rmp_serde::to_vec(params).expect("values encode")
    };
    let mut payload = Vec::with_capacity(12 + sql.len() + params.len());
    payload.extend_from_slice(&op.to_le_bytes());
    payload.extend_from_slice(&(sql.len() as u32).to_le_bytes());
    payload.extend_from_slice(&(params.len() as u32).to_le_bytes());
    payload.extend_from_slice(sql.as_bytes());
    payload.extend_from_slice(&params);
    payload
}
