//! `storage.sqlite`: the plugin's own SQLite database.
//!
//! One statement per call, parameters bound by position (`?1`, `?2`, ... or
//! `?`), values typed both ways: an `INTEGER` comes back as [`Value::Int`],
//! a `BLOB` as [`Value::Bin`], `NULL` as [`Value::Nil`].
//!
//! ```ignore
//! use pulp_guest::sqlite::{self, Value};
//!
//! sqlite::exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB)", &[])?;
//! sqlite::exec("INSERT OR REPLACE INTO kv VALUES (?1, ?2)", &["a".into(), vec![1u8, 2].into()])?;
//! let found = sqlite::query("SELECT v FROM kv WHERE k = ?1", &["a".into()])?;
//! assert_eq!(found.rows[0][0], Value::Bin(vec![1, 2]));
//! ```
//!
//! The connection lives as long as the instance, so `BEGIN` in one call and
//! `COMMIT` in a later one (even a later step) are one transaction; the host
//! rolls back a transaction still open when the plugin stops.

use crate::HostCallError;
pub use pulp_abi::sqlite::{ExecResult, QueryResult, Value};
use pulp_abi::Code;
use serde::de::DeserializeOwned;

/// Signature shared by both imports.
type RawSqlCall = unsafe extern "C" fn(*const u8, u32, *const u8, u32, *mut u32, *mut u32) -> u32;

/// Runs a statement that returns no rows you need (DDL, INSERT, UPDATE,
/// DELETE, BEGIN/COMMIT, `PRAGMA x = y`). Rows it does return are discarded.
pub fn exec(sql: &str, params: &[Value]) -> Result<ExecResult, HostCallError> {
    call(crate::sys::sqlite_exec, sql, params)
}

/// Runs a statement and returns its column names and rows.
///
/// A result over the manifest's `max_rows` or `max_result_kb` fails with
/// [`Code::LimitExceeded`] (9) rather than being truncated: page with
/// `LIMIT` / `WHERE id > ?`.
pub fn query(sql: &str, params: &[Value]) -> Result<QueryResult, HostCallError> {
    call(crate::sys::sqlite_query, sql, params)
}

/// Brings the schema up to date: `migrations[i]` takes it from version `i` to
/// `i + 1`, the version being SQLite's `PRAGMA user_version`. Each migration
/// runs in its own `BEGIN IMMEDIATE` transaction with its version number, so
/// it applies whole or not at all. Append only: a released migration never
/// changes. A database newer than `migrations` knows is an error.
///
/// ```ignore
/// const MIGRATIONS: &[&str] = &["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"];
/// sqlite::migrate(MIGRATIONS)?;
/// ```
pub fn migrate(migrations: &[&str]) -> Result<(), crate::Error> {
    let found = query("PRAGMA user_version", &[])?;
    let version = found
        .rows
        .first()
        .and_then(|row| row.first())
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let version = usize::try_from(version)
        .map_err(|_| crate::Error::new(format!("schema version {version} is negative")))?;
    if version > migrations.len() {
        return Err(crate::Error::new(format!(
            "database schema version {version} is newer than this plugin knows ({})",
            migrations.len()
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(version) {
        let to = i + 1;
        exec("BEGIN IMMEDIATE", &[])?;
        let applied = exec(sql, &[])
            .and_then(|_| exec(&format!("PRAGMA user_version = {to}"), &[]))
            .and_then(|_| exec("COMMIT", &[]));
        if let Err(e) = applied {
            let _ = exec("ROLLBACK", &[]);
            return Err(crate::Error::new(format!(
                "migration to schema version {to} failed: {e}"
            )));
        }
        crate::log::info(&format!("database schema migrated to version {to}"));
    }
    Ok(())
}

fn call<T: DeserializeOwned>(
    f: RawSqlCall,
    sql: &str,
    params: &[Value],
) -> Result<T, HostCallError> {
    let decode_failed = HostCallError(Code::DecodeFailed.as_u32());
    // No parameters travel as length 0 rather than an empty array: one less
    // encode and decode on every parameterless call.
    let encoded = if params.is_empty() {
        Vec::new()
    } else {
        rmp_serde::to_vec_named(params).map_err(|_| decode_failed)?
    };
    let mut ptr: u32 = 0;
    let mut len: u32 = 0;
    // SAFETY: both (ptr, len) pairs describe live buffers for the duration of
    // the call, and the out-addresses point to two live u32 locals.
    let code = unsafe {
        f(
            sql.as_ptr(),
            sql.len() as u32,
            encoded.as_ptr(),
            encoded.len() as u32,
            &mut ptr,
            &mut len,
        )
    };
    if code != Code::Ok.as_u32() {
        return Err(HostCallError(code));
    }
    // SAFETY: on success the host stored at the out-addresses the (ptr, len)
    // of a buffer it allocated through pulp_alloc for us.
    let bytes = unsafe { crate::memory::take_host_result(ptr, len) };
    rmp_serde::from_slice(&bytes).map_err(|_| decode_failed)
}
