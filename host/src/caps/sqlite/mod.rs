//! `storage.sqlite` (gated): one SQLite database per plugin, through two imports.
//!
//! ```text
//! sqlite_exec (q_ptr, q_len, p_ptr, p_len, res_ptr_out, res_len_out) -> code   {rows_affected, last_insert_id}
//! sqlite_query(q_ptr, q_len, p_ptr, p_len, rows_ptr_out, rows_len_out) -> code  {columns, rows}
//! ```
//!
//! The query is UTF-8 SQL text, one statement; the params are empty (no
//! parameters) or a MessagePack array of [`Value`]s bound by position. Values
//! keep their SQLite storage class both ways (see [`pulp_abi::sqlite`]).
//!
//! The database lives at `{data dir}/{plugin name}/data.db`, opened once per
//! instance in [`Capability::instantiate`]: the connection outlives single
//! calls, so `BEGIN` in one step and `COMMIT` in a later one form one
//! transaction. A transaction still open when the instance stops or fails is
//! rolled back in [`Capability::release`]. Durability: WAL journal with
//! `synchronous=FULL`, so a write reported as done is on disk.
//!
//! Budgets, each checked before it is spent: the file may grow to
//! `max_db_mb` (SQLite's `max_page_count`; temp tables get the same quota of
//! their own); no value may be longer than a result may be, nor a row wider
//! than [`db::MAX_COLUMNS`]; a result's size is counted value by value before
//! each is copied; all plugins' SQLite heap together stops at a process-wide
//! hard limit ([`set_heap_limit`]); pragmas that would raise any of these may
//! be read but not set; and every statement stops at the deadline of the
//! running `pulp_init`/`pulp_step`/`pulp_shutdown`, one instant for all the
//! statements of that call.
//!
//! Codes beyond the common ones: 3 for SQL that is not UTF-8 or params that
//! do not decode, 4 for statements the sandbox refuses (see [`sandbox`]) or a
//! wrong parameter count, 5 for SQL errors and for a statement interrupted
//! at (or started after) the call's deadline, 9 for a result over
//! `max_result_kb` / `max_rows`, a value or row over the length limits, a
//! write over `max_db_mb`, and SQLite's heap limit.

mod db;
mod sandbox;

pub use db::{heap_limit, set_heap_limit, DEFAULT_HEAP_LIMIT, MAX_COLUMNS};
use db::{Database, DbError, ResultLimits};
use pulp_abi::names::IMPORT_MODULE;
use pulp_abi::sqlite::Value;
use pulp_ext::{
    guest, host_fn, Capability, CapabilityError, Code, HostError, ImportSpec, PluginInfo,
    PluginState, ValKind,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::ErrorCode;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;
use wasmtime::{Caller, Linker};

/// The capability's name in manifests.
pub const NAME: &str = "storage.sqlite";

/// The database file inside the plugin's data directory.
const DB_FILE: &str = "data.db";

/// `[grants."storage.sqlite"]`: limits on what one query may return and on
/// the database's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteSettings {
    /// Largest encoded `sqlite_query` result, KiB (default 1024).
    pub max_result_kb: u32,
    /// Most rows one `sqlite_query` may return (default 10 000).
    pub max_rows: u32,
    /// Largest database file, MiB (default 1024); temp tables get a quota of
    /// the same size. A write past it fails with code 9.
    pub max_db_mb: u32,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        SqliteSettings {
            max_result_kb: 1024,
            max_rows: 10_000,
            max_db_mb: 1024,
        }
    }
}

impl SqliteSettings {
    /// Decodes and validates the plugin's settings, naming the bad key.
    pub fn load(info: &PluginInfo) -> Result<Self, CapabilityError> {
        let settings: SqliteSettings = info.settings(NAME)?;
        for (key, value) in [
            ("max_result_kb", settings.max_result_kb),
            ("max_rows", settings.max_rows),
            ("max_db_mb", settings.max_db_mb),
        ] {
            if value == 0 {
                return Err(info.error(
                    NAME,
                    format!("in [grants.\"{NAME}\"]: {key} must be at least 1"),
                ));
            }
        }
        Ok(settings)
    }

    /// The result limits: `max_result_kb`, capped at the guest's
    /// `max_buffer` (a larger result could not be handed over anyway).
    fn limits(&self, info: &PluginInfo) -> ResultLimits {
        ResultLimits {
            max_bytes: (self.max_result_kb as usize)
                .saturating_mul(1024)
                .min(info.limits.max_buffer as usize),
            max_rows: self.max_rows as usize,
        }
    }
}

/// Where a plugin's database lives.
pub fn database_path(info: &PluginInfo) -> PathBuf {
    info.data_dir.join(DB_FILE)
}

/// The `storage.sqlite` capability. Stateless itself: each instance's
/// connection lives in its `PluginState`.
pub struct SqliteCapability;

const SQL_CALL: &[ValKind] = &[
    ValKind::I32,
    ValKind::I32,
    ValKind::I32,
    ValKind::I32,
    ValKind::I32,
    ValKind::I32,
];

const IMPORTS: &[ImportSpec] = &[
    ImportSpec::new("sqlite_exec", SQL_CALL, &[ValKind::I32]),
    ImportSpec::new("sqlite_query", SQL_CALL, &[ValKind::I32]),
];

impl Capability for SqliteCapability {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "a private SQLite database per plugin (WAL, synchronous=FULL, sandboxed): sqlite_exec, sqlite_query"
    }

    fn imports(&self) -> &[ImportSpec] {
        IMPORTS
    }

    fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        link_statement(linker, "sqlite_exec", |db, until, sql, params| {
            let done = db.exec(until, sql, params)?;
            rmp_serde::to_vec_named(&done).map_err(|e| DbError::Encode(e.to_string()))
        })?;
        link_statement(linker, "sqlite_query", |db, until, sql, params| {
            let rows = db.query(until, sql, params)?;
            db.encode_result(&rows)
        })
    }

    fn prepare(&self, plugin: &PluginInfo) -> Result<Vec<String>, CapabilityError> {
        let settings = SqliteSettings::load(plugin)?;
        let mut lines = vec![format!(
            "sqlite database: {}, up to {} MiB, max result {} KiB, max {} rows",
            database_path(plugin).display(),
            settings.max_db_mb,
            settings.max_result_kb,
            settings.max_rows
        )];
        let max_buffer_kb = plugin.limits.max_buffer / 1024;
        if settings.max_result_kb > max_buffer_kb {
            lines.push(format!(
                "sqlite: max_result_kb ({}) is above limits.max_buffer_kb ({max_buffer_kb}): results are capped at the smaller",
                settings.max_result_kb
            ));
        }
        Ok(lines)
    }

    fn instantiate(&self, state: &mut PluginState) -> Result<(), CapabilityError> {
        let info = state.info().clone();
        let settings = SqliteSettings::load(&info)?;
        std::fs::create_dir_all(&info.data_dir).map_err(|e| {
            info.error(
                NAME,
                format!("cannot create {}: {e}", info.data_dir.display()),
            )
        })?;
        let path = database_path(&info);
        let db = Database::open(&path, settings.limits(&info), settings.max_db_mb)
            .map_err(|e| info.error(NAME, format!("cannot open {}: {e}", path.display())))?;
        state.insert_slot(db);
        Ok(())
    }

    /// Rolls back a transaction the plugin left open, then closes the
    /// connection (which checkpoints the WAL). Runs on shutdown and on failure.
    fn release(&self, state: &mut PluginState) {
        let Some(db) = state.take_slot::<Database>() else {
            return;
        };
        let plugin = state.info().name.clone();
        match db.rollback_open_transaction() {
            Ok(true) => {
                tracing::info!(plugin = %plugin, "sqlite: rolled back the transaction left open")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(plugin = %plugin, "sqlite: rolling back the open transaction failed: {e}")
            }
        }
        if let Err((_, e)) = db.conn.close() {
            tracing::warn!(plugin = %plugin, "sqlite: closing the database failed: {e}");
        }
    }
}

/// Reads the SQL text and the parameters of a call from guest memory.
fn read_call(
    caller: &mut Caller<'_, PluginState>,
    q_ptr: u32,
    q_len: u32,
    p_ptr: u32,
    p_len: u32,
) -> Result<(String, Vec<SqlValue>), HostError> {
    if q_len == 0 {
        return Err(HostError::code(Code::EmptyInput, "empty SQL"));
    }
    let sql = String::from_utf8(guest::read(caller, q_ptr, q_len)?)
        .map_err(|e| HostError::code(Code::DecodeFailed, format!("SQL is not UTF-8: {e}")))?;
    let params = if p_len == 0 {
        Vec::new()
    } else {
        let bytes = guest::read(caller, p_ptr, p_len)?;
        let values: Vec<Value> = rmp_serde::from_slice(&bytes).map_err(|e| {
            HostError::code(
                Code::DecodeFailed,
                format!("params are not a MessagePack array of values: {e}"),
            )
        })?;
        values.into_iter().map(db::to_sql).collect()
    };
    Ok((sql, params))
}

/// Runs one statement on a plugin's database, stopping at the instant given,
/// and encodes its result.
type Statement = fn(&Database, Instant, &str, Vec<SqlValue>) -> Result<Vec<u8>, DbError>;

/// Defines `pulp.<name>(q_ptr, q_len, p_ptr, p_len, out_ptr, out_len)`: read the
/// SQL and params, run `statement` on the plugin's database, write its encoded
/// result through `pulp_alloc`.
fn link_statement(
    linker: &mut Linker<PluginState>,
    name: &'static str,
    statement: Statement,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        name,
        move |mut caller: Caller<'_, PluginState>,
              q_ptr: u32,
              q_len: u32,
              p_ptr: u32,
              p_len: u32,
              out_ptr: u32,
              out_len: u32| {
            // Out-addresses first: a statement that ran must be able to report so.
            let result = guest::check_out_addresses(&caller, out_ptr, out_len)
                .and_then(|()| read_call(&mut caller, q_ptr, q_len, p_ptr, p_len))
                .and_then(|(sql, params)| {
                    run(&caller, |db, until| statement(db, until, &sql, params))
                })
                .and_then(|bytes| guest::write_out(&mut caller, &bytes, out_ptr, out_len));
            host_fn::finish(&caller, name, result)
        },
    )?;
    Ok(())
}

/// Runs `op` on the instance's database with the running export call's
/// deadline and turns its failure into a code.
fn run<T>(
    caller: &Caller<'_, PluginState>,
    op: impl FnOnce(&Database, Instant) -> Result<T, DbError>,
) -> Result<T, HostError> {
    let state = caller.data();
    let db = state.slot::<Database>().ok_or_else(|| {
        HostError::failed("no database: the instance is not set up or was released")
    })?;
    // Imports are only called inside an export call, which has a deadline;
    // the fallback keeps an embedder that sets none bounded all the same.
    let until = state
        .call_deadline()
        .unwrap_or_else(|| Instant::now() + state.info().limits.call_budget);
    op(db, until).map_err(|e| host_error(state.info(), db, e))
}

/// Why a statement stopped at the call's deadline, naming the budget.
fn past_deadline(info: &PluginInfo, what: &str) -> HostError {
    let msg = format!(
        "{what}: the running export call is past its deadline (call_timeout_ms = {}, for the whole call and every statement in it)",
        info.limits.call_budget.as_millis()
    );
    tracing::warn!(plugin = %info.name, "sqlite: {msg}");
    HostError::failed(msg)
}

/// The code for a failed call. Sandbox refusals and interruptions are logged
/// at warn with the plugin's name: they mean the plugin tried something it
/// may not, or ran away; plain SQL errors are the plugin's own business and
/// only reach the debug log (through `host_fn::finish`).
fn host_error(info: &PluginInfo, db: &Database, err: DbError) -> HostError {
    let e = match err {
        DbError::Limit(msg) => return HostError::code(Code::LimitExceeded, msg),
        DbError::Encode(msg) => return HostError::failed(msg),
        DbError::Deadline => return past_deadline(info, "statement not started"),
        DbError::Sql(e) => e,
    };
    let code = e.sqlite_error_code();
    let refusal = db.refusals.take();
    if refusal.is_some() || code == Some(ErrorCode::AuthorizationForStatementDenied) {
        let reason = refusal.unwrap_or_else(|| "statement refused by the sandbox".to_string());
        tracing::warn!(plugin = %info.name, sqlite = %e, "sqlite: {reason}");
        return HostError::invalid(format!("{reason} ({e})"));
    }
    match code {
        Some(ErrorCode::OperationInterrupted) => past_deadline(info, "statement interrupted"),
        Some(ErrorCode::TooBig) => HostError::code(
            Code::LimitExceeded,
            format!(
                "{e}: no value or row may be longer than max_result_kb = {} KiB (capped at limits.max_buffer_kb), nor wider than {MAX_COLUMNS} columns",
                db.limits.max_bytes / 1024
            ),
        ),
        // SQLite has no code of its own for the column limit, only the message.
        _ if e.to_string().starts_with("too many columns") => HostError::code(
            Code::LimitExceeded,
            format!("{e}: at most {MAX_COLUMNS} columns"),
        ),
        Some(ErrorCode::DiskFull) => {
            let msg = format!(
                "{e}: the database (or its temp tables) would grow over max_db_mb = {} MiB, or the disk is full",
                db.max_db_mb
            );
            tracing::warn!(plugin = %info.name, "sqlite: {msg}");
            HostError::code(Code::LimitExceeded, msg)
        }
        Some(ErrorCode::OutOfMemory) => {
            let msg = format!(
                "{e}: SQLite's heap is at its process-wide limit of {} MiB (all plugins together)",
                heap_limit() >> 20
            );
            tracing::warn!(plugin = %info.name, "sqlite: {msg}");
            HostError::code(Code::LimitExceeded, msg)
        }
        _ if matches!(
            e,
            rusqlite::Error::InvalidParameterCount(..)
                | rusqlite::Error::InvalidParameterName(_)
                | rusqlite::Error::MultipleStatement
        ) =>
        {
            HostError::invalid(e.to_string())
        }
        _ => HostError::failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulp_ext::GuestLimits;
    use std::time::Duration;

    fn plugin() -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            capabilities: vec![NAME.into()],
            data_dir: "data/p".into(),
            grants: Default::default(),
            limits: GuestLimits {
                max_buffer: 4 << 20,
                call_budget: Duration::from_millis(700),
            },
            usage: Default::default(),
        }
    }

    /// The code and log detail `sql` ends with on a database of 1 MiB.
    fn refusal(db: &Database, sql: &str) -> (Code, String) {
        let until = Instant::now() + Duration::from_secs(5);
        let err = db.exec(until, sql, Vec::new()).unwrap_err();
        match host_error(&plugin(), db, err) {
            HostError::Code { code, detail } => (code, detail),
            HostError::Trap(e) => panic!("{sql}: a trap: {e}"),
        }
    }

    #[test]
    fn each_refusal_names_the_limit_it_hit() {
        // Alone: the small heap limit below is process-wide.
        let _heap = db::tests::HEAP.write().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let limits = ResultLimits {
            max_bytes: 2 << 20,
            max_rows: 10,
        };
        let db = Database::open(&dir.path().join("data.db"), limits, 1).unwrap();
        let rows = |n: u32, f: &str| {
            format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {n}) SELECT {f} FROM c")
        };
        let until = Instant::now() + Duration::from_secs(5);
        db.exec(until, "CREATE TABLE t(v)", Vec::new()).unwrap();
        let heap = set_heap_limit(64 << 20);
        let wide = format!("SELECT {}", vec!["randomblob(1000000)"; 200].join(", "));
        let cases = [
            (
                format!("INSERT INTO t {}", rows(40, "randomblob(60000)")),
                Code::LimitExceeded,
                "max_db_mb = 1 MiB",
            ),
            (
                "SELECT zeroblob(3000000)".to_string(),
                Code::LimitExceeded,
                "max_result_kb = 2048 KiB",
            ),
            (
                format!("SELECT {}", vec!["1"; 300].join(", ")),
                Code::LimitExceeded,
                "at most 256 columns",
            ),
            (wide, Code::LimitExceeded, "process-wide limit of 64 MiB"),
            (
                "PRAGMA cache_size = -1000000".to_string(),
                Code::InvalidArgument,
                "PRAGMA cache_size = -1000000 refused",
            ),
        ];
        let found: Vec<(Code, String)> = cases.iter().map(|(sql, ..)| refusal(&db, sql)).collect();
        set_heap_limit(heap);
        for ((sql, code, named), (got, detail)) in cases.iter().zip(found) {
            assert_eq!(got, *code, "{sql}: {detail}");
            assert!(detail.contains(named), "{sql}: {detail}");
        }
        let past = db.exec(Instant::now(), "SELECT 1", Vec::new()).unwrap_err();
        match host_error(&plugin(), &db, past) {
            HostError::Code { code, detail } => {
                assert_eq!(code, Code::OperationFailed);
                assert!(detail.contains("call_timeout_ms = 700"), "{detail}");
            }
            HostError::Trap(e) => panic!("a trap: {e}"),
        }
    }
}
