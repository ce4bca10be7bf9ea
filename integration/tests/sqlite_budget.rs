//! `storage.sqlite` within its budgets: each test is a plugin that tries to
//! make the host spend more than its limits allow (memory for one row, disk,
//! page cache and temp storage, time across many statements) and gets the
//! named code, while the host stays small. Real SQLite files, real wasm.

use pulp_abi::sqlite::Value;
use pulp_ext::{EventRejected, EventSink};
use pulp_host::caps::sqlite::{set_heap_limit, MAX_COLUMNS};
use pulp_host::caps::SqliteCapability;
use pulp_host::{FaultKind, Host, Plugin, PluginFault};
use pulp_integration::sql_runner::{payload, runner_wat, EXEC, QUERY};
use pulp_integration::{wat_data, wat_plugin, ScratchPlugin};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// SQLite's process-wide heap limit in this test process: small, so a
/// statement that would build gigabytes is stopped after a few megabytes.
const HEAP_LIMIT: i64 = 64 << 20;

/// The tests here take turns: one filling the shared heap limit must not make
/// a statement of another fail beside it.
fn alone() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn limit_heap() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        set_heap_limit(HEAP_LIMIT);
    });
}

struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

/// A started plugin of `wat` with `storage.sqlite` and `extra` manifest lines.
fn start(data_dir: &Path, name: &str, wat: &str, extra: &str) -> (Plugin, ScratchPlugin, Host) {
    limit_heap();
    let scratch = ScratchPlugin::wat(
        name,
        wat,
        &format!("capabilities = [\"storage.sqlite\"]\n{extra}"),
    );
    let host = Host::builder()
        .data_dir(data_dir)
        .gated(SqliteCapability)
        .build()
        .unwrap();
    let prepared = host.prepare(&scratch.manifest).unwrap();
    let mut plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents)).unwrap();
    plugin.init(&[]).unwrap();
    (plugin, scratch, host)
}

/// A runner plugin (see `sql_runner`): each step runs one statement.
struct Db {
    plugin: Plugin,
    _scratch: ScratchPlugin,
    _host: Host,
}

impl Db {
    fn open(data_dir: &Path, extra: &str) -> Db {
        let (plugin, _scratch, _host) = start(data_dir, "budget", &runner_wat(), extra);
        Db {
            plugin,
            _scratch,
            _host,
        }
    }

    /// The statement's code: 0 when it succeeded.
    fn code(&mut self, op: u32, sql: &str, params: &[Value]) -> i32 {
        let outcome = self.plugin.step(&payload(op, sql, params)).unwrap();
        match outcome.handle {
            1 => 0,
            code => -code,
        }
    }

    fn exec(&mut self, sql: &str) -> i32 {
        self.code(EXEC, sql, &[])
    }

    fn query(&mut self, sql: &str) -> i32 {
        self.code(QUERY, sql, &[])
    }
}

/// A field of /proc/self/status, KiB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// `SELECT f, f, …` with `n` columns.
fn wide_row(f: &str, n: usize) -> String {
    format!("SELECT {}", vec![f; n].join(", "))
}

#[test]
fn a_wide_row_of_large_values_is_refused_before_the_host_holds_it() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), "");
    let rss_before = status_kb("VmRSS:");
    // Each value is just under max_result_kb (1024 KiB): alone it would be allowed.
    let value = 1_000_000;
    // Too wide for SQLite at all: refused while it is prepared.
    let too_wide = wide_row(&format!("zeroblob({value})"), 2000);
    assert_eq!(db.query(&too_wide), 9, "2000 columns");
    assert_eq!(db.exec(&too_wide), 9, "2000 columns");
    // As wide as allowed. Through sqlite_query each value's size is checked
    // before it is copied: the second one is over the result limit.
    let widest = MAX_COLUMNS as usize;
    assert_eq!(
        db.query(&wide_row(&format!("zeroblob({value})"), widest)),
        9
    );
    assert_eq!(
        db.query(&wide_row(&format!("randomblob({value})"), widest)),
        9
    );
    // Through sqlite_exec SQLite builds the whole row in one step (the
    // deadline never fires): 256 MB, stopped by the heap limit.
    assert_eq!(
        db.exec(&wide_row(&format!("randomblob({value})"), widest)),
        9
    );
    // One value over the length limit is never built.
    assert_eq!(db.exec("SELECT randomblob(2000000)"), 9);
    assert_eq!(db.exec("SELECT zeroblob(2000000)"), 9);
    let peak = status_kb("VmHWM:");
    assert!(
        peak.saturating_sub(rss_before) < 160 * 1024,
        "the host's peak RSS grew by {} MiB",
        peak.saturating_sub(rss_before) / 1024
    );
    // The database still works.
    assert_eq!(db.query("SELECT 1"), 0);
}

#[test]
fn writes_past_max_db_mb_are_code_9_and_the_file_stays_within_it() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), "[grants.\"storage.sqlite\"]\nmax_db_mb = 2");
    assert_eq!(db.exec("CREATE TABLE t(v)"), 0);
    assert_eq!(db.exec("CREATE TEMP TABLE u(v)"), 0);
    for table in ["t", "u"] {
        let insert = format!("INSERT INTO {table} VALUES (randomblob(100000))");
        let mut inserted = 0;
        let code = loop {
            match db.exec(&insert) {
                0 if inserted < 100 => inserted += 1,
                code => break code,
            }
        };
        assert_eq!(code, 9, "{table}: after {inserted} rows of 100 kB");
        assert!((15..=21).contains(&inserted), "{table}: {inserted} rows");
    }
    // Space freed is space to write again.
    assert_eq!(db.exec("DELETE FROM t"), 0);
    assert_eq!(db.exec("INSERT INTO t VALUES (randomblob(100000))"), 0);
    let size = std::fs::metadata(dir.path().join("budget/data.db"))
        .unwrap()
        .len();
    assert!(size <= 2 << 20, "data.db is {size} bytes");
}

#[test]
fn pragmas_that_raise_a_budget_are_code_4_and_reading_them_is_not() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), "");
    for (pragma, value) in [
        ("cache_size", "-10000000"),
        ("temp.cache_size", "-10000000"),
        ("mmap_size", "1000000000000"),
        ("temp_store", "2"),
        ("max_page_count", "4294967294"),
        ("temp.max_page_count", "4294967294"),
        ("page_size", "65536"),
        ("soft_heap_limit", "0"),
        ("hard_heap_limit", "0"),
        ("threads", "8"),
        ("journal_mode", "OFF"),
        ("synchronous", "OFF"),
        ("locking_mode", "EXCLUSIVE"),
        ("wal_autocheckpoint", "0"),
        ("journal_size_limit", "-1"),
        ("busy_timeout", "100000000"),
    ] {
        assert_eq!(
            db.exec(&format!("PRAGMA {pragma} = {value}")),
            4,
            "{pragma}"
        );
        assert_eq!(db.query(&format!("PRAGMA {pragma}")), 0, "{pragma}");
    }
    assert_eq!(db.query("SELECT * FROM pragma_cache_size"), 0);
    assert_eq!(db.exec("PRAGMA user_version = 3"), 0);
}

/// A step that runs `calls` runaway statements one after the other, with no
/// loop or call in wasm between them (where the epoch deadline is checked),
/// and returns the last one's code.
fn straight_line_statements(calls: usize) -> String {
    let sql =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let call = format!(
        "(local.set $c (call $exec (i32.const 4096) (i32.const {}) (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 12)))\n",
        sql.len()
    );
    wat_plugin(
        r#"(import "pulp" "sqlite_exec" (func $exec (param i32 i32 i32 i32 i32 i32) (result i32)))"#,
        &format!("(local $c i32)\n{}(local.get $c)", call.repeat(calls)),
        &format!("(data (i32.const 4096) {})", wat_data(sql.as_bytes())),
    )
}

#[test]
fn many_statements_in_one_step_end_at_the_steps_deadline() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let (mut plugin, _scratch, _host) = start(
        dir.path(),
        "straight",
        &straight_line_statements(20),
        "[limits]\ncall_timeout_ms = 300",
    );
    let started = Instant::now();
    let result = plugin.step(b"");
    let took = started.elapsed();
    // With a budget per statement this step took 20 × 300 ms.
    assert!(
        took < Duration::from_millis(900),
        "20 statements ran {took:?} on a 300 ms step budget"
    );
    match result {
        Ok(outcome) => assert_eq!(outcome.handle, 5, "the last statement's code"),
        Err(PluginFault { kind, .. }) => {
            assert_eq!(kind, FaultKind::Timeout(Duration::from_millis(300)))
        }
    }
}
