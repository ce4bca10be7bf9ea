//! One plugin instance's database: the connection, its settings and the two
//! operations the imports expose.

use super::sandbox::{self, Deadline, Refusals};
use pulp_abi::sqlite::{ExecResult, QueryResult, Value};
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{ffi, params_from_iter, Connection, OpenFlags};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a statement waits at most for a lock held by another connection
/// to the same file (a second host on the same data directory, an operator's
/// `sqlite3` shell) before failing with `SQLITE_BUSY`; never past the call's
/// deadline.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection: plugins tend to run the same few
/// statements on every step, and re-preparing them dominates small queries.
const STATEMENT_CACHE: usize = 64;

/// Most columns in a table, an index, a result row or a GROUP BY / ORDER BY
/// (SQLite's default is 2000). With [`Limit::SQLITE_LIMIT_LENGTH`] it bounds
/// what one row may hold while SQLite builds it.
pub const MAX_COLUMNS: i32 = 256;

/// The process-wide ceiling on SQLite's heap ([`set_heap_limit`]) when none
/// was set: all plugins' page caches, statements and rows in flight together.
pub const DEFAULT_HEAP_LIMIT: i64 = 1 << 30;

/// Sets SQLite's hard heap limit for the whole process, in bytes: an
/// allocation past it fails, and the statement that asked for it fails with
/// code 9 instead of the host running out of memory. This is the backstop for
/// what no per-connection limit bounds (a statement holding many values of up
/// to the length limit at once). Returns the previous limit. A limit set here
/// before the first database opens replaces [`DEFAULT_HEAP_LIMIT`]; 0 (none)
/// is replaced by the default when the next database opens.
pub fn set_heap_limit(bytes: i64) -> i64 {
    // SAFETY: sqlite3_hard_heap_limit64 takes no pointers and is thread-safe
    // (SQLITE_THREADSAFE=1 in the bundled build).
    unsafe { ffi::sqlite3_hard_heap_limit64(bytes.max(0)) }
}

/// SQLite's hard heap limit now, bytes (0: none).
pub fn heap_limit() -> i64 {
    // SAFETY: as above; a negative argument only reads the limit.
    unsafe { ffi::sqlite3_hard_heap_limit64(-1) }
}

/// Size and count limits on one query result.
#[derive(Debug, Clone, Copy)]
pub struct ResultLimits {
    /// Largest encoded result, bytes. Also the longest value SQLite may build
    /// (a longer one could never be returned).
    pub max_bytes: usize,
    /// Most rows.
    pub max_rows: usize,
}

/// Why a call failed, before it becomes a code.
#[derive(Debug)]
pub enum DbError {
    /// SQLite (or rusqlite) refused or failed the statement.
    Sql(rusqlite::Error),
    /// The result is over a [`ResultLimits`] bound.
    Limit(String),
    /// The result could not be encoded as MessagePack.
    Encode(String),
    /// The call's deadline had passed before the statement started.
    Deadline,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sql(e)
    }
}

/// The per-instance state kept in the plugin's `PluginState` slot.
///
/// One connection per instance, used only from the instance's thread, so a
/// `BEGIN` in one call and `COMMIT` in a later one are the same transaction.
pub struct Database {
    /// The open connection.
    pub conn: Connection,
    /// Armed with the running export call's deadline; checked by the progress handler.
    pub deadline: Arc<Deadline>,
    /// The authorizer's last refusal.
    pub refusals: Arc<Refusals>,
    /// Result limits from `[grants."storage.sqlite"]`.
    pub limits: ResultLimits,
    /// The disk quota of the database (and, separately, of its temp tables), MiB.
    pub max_db_mb: u32,
}

impl Database {
    /// Opens (creating if needed) the database at `path` with the durability,
    /// quota and sandbox settings every plugin gets.
    pub fn open(
        path: &Path,
        limits: ResultLimits,
        max_db_mb: u32,
    ) -> Result<Database, rusqlite::Error> {
        if heap_limit() == 0 {
            set_heap_limit(DEFAULT_HEAP_LIMIT);
        }
        // No SQLITE_OPEN_URI: the path is a plain file name, never a URI with options.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer and a commit is one append.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), "sqlite: WAL journal not available, using {mode}");
        }
        // FULL: the WAL is synced at every commit, so a write `sqlite_exec`
        // reported as done survives kill -9 and power loss alike.
        conn.execute_batch("PRAGMA synchronous=FULL")?;
        // The disk quota, enforced by SQLite itself: a write that would grow
        // the file past it fails with SQLITE_FULL. Temp tables get their own
        // quota of the same size. (The page count cannot go below what the
        // file already holds: an over-quota file stays readable, and shrinks
        // only by deletes.)
        for schema in ["main", "temp"] {
            let page_size: i64 =
                conn.query_row(&format!("PRAGMA {schema}.page_size"), [], |row| row.get(0))?;
            let pages = (i64::from(max_db_mb) << 20) / page_size.max(512);
            conn.query_row(
                &format!("PRAGMA {schema}.max_page_count = {}", pages.max(1)),
                [],
                |_| Ok(()),
            )?;
        }
        // Defensive: no writable_schema, no journal_mode=OFF, no direct
        // writes to shadow tables: a plugin cannot corrupt its own file.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        // A value longer than a result may be could never be returned; SQLite
        // refuses to build one (SQLITE_TOOBIG), so `randomblob(1e9)` costs
        // nothing. The same limit bounds one stored row.
        let max_len = i32::try_from(limits.max_bytes).unwrap_or(i32::MAX).max(1);
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, max_len)?;
        conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);

        let refusals = Arc::new(Refusals::default());
        conn.authorizer(Some(sandbox::authorizer(refusals.clone())));
        let deadline = Deadline::new();
        let watch = deadline.clone();
        conn.progress_handler(sandbox::PROGRESS_OPS, Some(move || watch.passed()));
        Ok(Database {
            conn,
            deadline,
            refusals,
            limits,
            max_db_mb,
        })
    }

    /// Runs `f` with no stale refusal recorded and the deadline armed at
    /// `until`, the running export call's own deadline: every statement of
    /// one `pulp_step` stops at the same instant. A call made after it has
    /// passed does not start.
    fn guarded<T>(
        &self,
        until: Instant,
        f: impl FnOnce() -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let _ = self.refusals.take();
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DbError::Deadline);
        }
        // A lock held elsewhere is waited for, but not past the deadline.
        self.conn.busy_timeout(BUSY_TIMEOUT.min(left))?;
        self.deadline.arm(until);
        let result = f();
        self.deadline.disarm();
        result
    }

    /// Runs one statement, stepping through (and discarding) any rows it
    /// returns, so `PRAGMA x = y` and `INSERT ... RETURNING` work here too.
    pub fn exec(
        &self,
        until: Instant,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<ExecResult, DbError> {
        self.guarded(until, || {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let before = self.conn.total_changes();
            let mut rows = stmt.query(params_from_iter(params))?;
            while rows.next()?.is_some() {}
            drop(rows);
            // `changes()` keeps the count of the last INSERT/UPDATE/DELETE, so a
            // statement that changed nothing (DDL, BEGIN) would report a stale one.
            let rows_affected = if self.conn.total_changes() == before {
                0
            } else {
                self.conn.changes()
            };
            Ok(ExecResult {
                rows_affected,
                last_insert_id: self.conn.last_insert_rowid(),
            })
        })
    }

    /// Runs one statement and collects its rows, stopping with
    /// [`DbError::Limit`] as soon as the result is over a limit: each value's
    /// size is added and checked before the value is copied, so the host
    /// never holds more than the limit of a result it then refuses.
    pub fn query(
        &self,
        until: Instant,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<QueryResult, DbError> {
        let limits = self.limits;
        let over = || {
            DbError::Limit(format!(
                "query result is over max_result_kb = {} KiB",
                limits.max_bytes / 1024
            ))
        };
        self.guarded(until, || {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let width = columns.len();
            let mut size: usize = columns.iter().map(|c| c.len() + 1).sum();
            let mut out: Vec<Vec<Value>> = Vec::new();
            let mut rows = stmt.query(params_from_iter(params))?;
            while let Some(row) = rows.next()? {
                if out.len() >= limits.max_rows {
                    return Err(DbError::Limit(format!(
                        "query returned more than max_rows = {} rows",
                        limits.max_rows
                    )));
                }
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    let value = row.get_ref(i)?;
                    size = size.saturating_add(min_encoded_len(value));
                    if size > limits.max_bytes {
                        return Err(over());
                    }
                    values.push(from_sql(value));
                }
                out.push(values);
            }
            Ok(QueryResult { columns, rows: out })
        })
    }

    /// Encodes a query result for the guest, refusing it when the exact
    /// encoded size is over the limit (the running count in [`Database::query`]
    /// is only a lower bound).
    pub fn encode_result(&self, result: &QueryResult) -> Result<Vec<u8>, DbError> {
        let bytes = rmp_serde::to_vec_named(result).map_err(|e| DbError::Encode(e.to_string()))?;
        if bytes.len() > self.limits.max_bytes {
            return Err(DbError::Limit(format!(
                "query result of {} bytes is over max_result_kb = {} KiB",
                bytes.len(),
                self.limits.max_bytes / 1024
            )));
        }
        Ok(bytes)
    }

    /// Rolls back a transaction the plugin left open, so the next instance
    /// starts from the last commit and no write lock outlives the instance.
    pub fn rollback_open_transaction(&self) -> Result<bool, rusqlite::Error> {
        self.deadline.disarm();
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        if self.conn.is_autocommit() {
            return Ok(false);
        }
        self.conn.execute_batch("ROLLBACK")?;
        Ok(true)
    }
}

/// A wire value as SQLite binds it. SQLite has no boolean: 0 / 1.
pub fn to_sql(value: Value) -> SqlValue {
    match value {
        Value::Nil => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(b)),
        Value::Int(n) => SqlValue::Integer(n),
        Value::Float(f) => SqlValue::Real(f),
        Value::Str(s) => SqlValue::Text(s),
        Value::Bin(b) => SqlValue::Blob(b),
    }
}

/// A SQLite value on the wire, keeping its storage class.
///
/// SQLite does not check that TEXT is valid UTF-8 (a plugin can store any
/// bytes with `CAST(x AS TEXT)`); such text is repaired with U+FFFD rather
/// than failing the whole query.
pub fn from_sql(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Nil,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Str(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Bin(b.to_vec()),
    }
}

/// The fewest bytes `value` takes in MessagePack, read from SQLite's value
/// before anything is copied: a cheap running lower bound, so an oversized
/// result is abandoned early; the exact size is checked once the result is
/// encoded. (Text repaired by [`from_sql`] only grows.)
fn min_encoded_len(value: ValueRef<'_>) -> usize {
    match value {
        ValueRef::Null | ValueRef::Integer(_) => 1,
        ValueRef::Real(_) => 9,
        ValueRef::Text(t) => t.len() + 1,
        ValueRef::Blob(b) => b.len() + 2,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{RwLock, RwLockReadGuard};

    fn open(dir: &Path) -> Database {
        Database::open(
            &dir.join("data.db"),
            ResultLimits {
                max_bytes: 64 * 1024,
                max_rows: 100,
            },
            1,
        )
        .unwrap()
    }

    /// Tests that set SQLite's process-wide heap limit take this for writing,
    /// every other SQLite test for reading: a statement filling a small limit
    /// must not make a test running beside it fail with SQLITE_NOMEM.
    pub(crate) static HEAP: RwLock<()> = RwLock::new(());

    pub(crate) fn shared_heap() -> RwLockReadGuard<'static, ()> {
        HEAP.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The deadline of a call starting now.
    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    fn sqlite_code(err: DbError) -> Option<rusqlite::ErrorCode> {
        match err {
            DbError::Sql(e) => e.sqlite_error_code(),
            other => panic!("not an SQLite error: {other:?}"),
        }
    }

    #[test]
    fn values_keep_their_types_through_sqlite() {
        let _heap = shared_heap();
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.exec(soon(), "CREATE TABLE t (v)", vec![]).unwrap();
        let values = vec![
            Value::Nil,
            Value::Int(-5),
            Value::Float(2.5),
            Value::Str("s".into()),
            Value::Bin(vec![0, 255]),
        ];
        for v in &values {
            let r = db
                .exec(
                    soon(),
                    "INSERT INTO t (v) VALUES (?1)",
                    vec![to_sql(v.clone())],
                )
                .unwrap();
            assert_eq!(r.rows_affected, 1);
        }
        let q = db
            .query(soon(), "SELECT v FROM t ORDER BY rowid", vec![])
            .unwrap();
        assert_eq!(q.columns, vec!["v".to_string()]);
        let got: Vec<Value> = q.rows.into_iter().flatten().collect();
        assert_eq!(got, values);
        let ddl = db.exec(soon(), "CREATE TABLE u (x)", vec![]).unwrap();
        assert_eq!(ddl.rows_affected, 0);
    }

    #[test]
    fn sandbox_refuses_escapes() {
        let _heap = shared_heap();
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let other = dir.path().join("other.db");
        for sql in [
            format!("ATTACH '{}' AS o", other.display()),
            format!("VACUUM INTO '{}'", other.display()),
            "SELECT load_extension('x')".to_string(),
        ] {
            let err = db.exec(soon(), &sql, vec![]).unwrap_err();
            assert!(matches!(err, DbError::Sql(_)), "{sql}: {err:?}");
        }
        assert!(!other.exists());
    }

    #[test]
    fn runaway_query_is_interrupted() {
        let _heap = shared_heap();
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        match db.query(soon(), sql, vec![]) {
            Err(DbError::Sql(e)) => assert_eq!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::OperationInterrupted)
            ),
            other => panic!("not interrupted: {other:?}"),
        }
    }

    #[test]
    fn results_over_the_limits_are_refused() {
        let _heap = shared_heap();
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 101) SELECT x FROM c";
        assert!(matches!(
            db.query(soon(), many, vec![]),
            Err(DbError::Limit(_))
        ));
        // Each value fits, the row does not: refused while it is collected.
        let row = "SELECT randomblob(40000), randomblob(40000)";
        assert!(matches!(
            db.query(soon(), row, vec![]),
            Err(DbError::Limit(_))
        ));
        // One value longer than a result may be: SQLite refuses to build it.
        for big in ["SELECT randomblob(70000)", "SELECT zeroblob(70000)"] {
            let err = db.query(soon(), big, vec![]).unwrap_err();
            assert_eq!(sqlite_code(err), Some(rusqlite::ErrorCode::TooBig), "{big}");
        }
    }

    #[test]
    fn the_database_stops_growing_at_its_quota() {
        let _heap = shared_heap();
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        for table in ["t", "temp.u"] {
            db.exec(soon(), &format!("CREATE TABLE {table} (v)"), vec![])
                .unwrap();
            // 40 rows of 60 KB: 2.4 MB against a quota of 1 MiB.
            let fill = format!(
                "INSERT INTO {table} WITH RECURSIVE c(x) AS \
                 (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 40) SELECT randomblob(60000) FROM c"
            );
            let err = db.exec(soon(), &fill, vec![]).unwrap_err();
            assert_eq!(
                sqlite_code(err),
                Some(rusqlite::ErrorCode::DiskFull),
                "{table}"
            );
        }
        let size = std::fs::metadata(dir.path().join("data.db")).unwrap().len();
        assert!(size <= 1 << 20, "{size} bytes");
    }

    #[test]
    fn a_call_after_its_deadline_does_not_start() {
        let _heap = shared_heap();
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let past = Instant::now();
        assert!(matches!(
            db.exec(past, "SELECT 1", vec![]),
            Err(DbError::Deadline)
        ));
    }

    #[test]
    fn transactions_span_calls_and_are_rolled_back() {
        let _heap = shared_heap();
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.exec(soon(), "CREATE TABLE t (v)", vec![]).unwrap();
        db.exec(soon(), "BEGIN", vec![]).unwrap();
        db.exec(soon(), "INSERT INTO t VALUES (1)", vec![]).unwrap();
        assert!(db.rollback_open_transaction().unwrap());
        assert!(!db.rollback_open_transaction().unwrap());
        let q = db.query(soon(), "SELECT count(*) FROM t", vec![]).unwrap();
        assert_eq!(q.rows, vec![vec![Value::Int(0)]]);
    }
}
