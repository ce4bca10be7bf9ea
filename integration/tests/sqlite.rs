//! `storage.sqlite` end to end: real SQLite files, driven by a WAT plugin that
//! runs whatever statement its step payload carries and hands the
//! capability's MessagePack result back as its output.

use pulp_abi::sqlite::{ExecResult, QueryResult, Value};
use pulp_ext::{EventRejected, EventSink};
use pulp_host::caps::SqliteCapability;
use pulp_host::{FaultKind, Host, Plugin, PluginFault};
use pulp_integration::sql_runner::{payload, runner_wat, EXEC, QUERY};
use pulp_integration::ScratchPlugin;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

/// One runner plugin instance over a real database under `data_dir`.
struct Db {
    plugin: Plugin,
    _scratch: ScratchPlugin,
    _host: Host,
}

impl Db {
    fn open(data_dir: &Path, name: &str, extra: &str) -> Db {
        let scratch = ScratchPlugin::wat(
            name,
            &runner_wat(),
            &format!("capabilities = [\"storage.sqlite\"]\n{extra}"),
        );
        let host = Host::builder()
            .data_dir(data_dir)
            .gated(SqliteCapability)
            .build()
            .unwrap();
        let prepared = host.prepare(&scratch.manifest).unwrap();
        let mut plugin =
            Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents))
                .unwrap();
        plugin.init(&[]).unwrap();
        Db {
            plugin,
            _scratch: scratch,
            _host: host,
        }
    }

    fn call(
        &mut self,
        op: u32,
        sql: &str,
        params: &[Value],
    ) -> Result<Result<Vec<u8>, i32>, PluginFault> {
        let outcome = self.plugin.step(&payload(op, sql, params))?;
        Ok(match outcome.handle {
            1 => Ok(outcome.output.expect("runner exports pulp_output")),
            code => Err(-code),
        })
    }

    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, i32> {
        self.call(EXEC, sql, params)
            .unwrap()
            .map(|b| rmp_serde::from_slice(&b).unwrap())
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<QueryResult, i32> {
        self.call(QUERY, sql, params)
            .unwrap()
            .map(|b| rmp_serde::from_slice(&b).unwrap())
    }
}

#[test]
fn values_keep_their_types_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), "types", "");
    db.exec("CREATE TABLE t(n, b, i, f, s, x)", &[]).unwrap();
    let row = vec![
        Value::Nil,
        Value::Bool(true),
        Value::Int(i64::MIN),
        Value::Float(1.5),
        Value::Str("héllo ☃".into()),
        Value::Bin(vec![0, 255, 7]),
    ];
    let done = db
        .exec("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", &row)
        .unwrap();
    assert_eq!((done.rows_affected, done.last_insert_id), (1, 1));
    let got = db
        .query("SELECT n, b, i, f, s, x, 3, 2.0 FROM t", &[])
        .unwrap();
    assert_eq!(got.columns, ["n", "b", "i", "f", "s", "x", "3", "2.0"]);
    assert_eq!(
        got.rows,
        vec![vec![
            Value::Nil,
            Value::Int(1), // a bool is stored as INTEGER 1
            Value::Int(i64::MIN),
            Value::Float(1.5),
            Value::Str("héllo ☃".into()),
            Value::Bin(vec![0, 255, 7]),
            Value::Int(3),
            Value::Float(2.0),
        ]]
    );
}

#[test]
fn transactions_span_calls_and_an_open_one_is_rolled_back_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), "tx", "");
    db.exec("CREATE TABLE t(v)", &[]).unwrap();
    db.exec("BEGIN", &[]).unwrap();
    db.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
    db.exec("COMMIT", &[]).unwrap();
    db.exec("BEGIN", &[]).unwrap();
    db.exec("INSERT INTO t VALUES (2)", &[]).unwrap();
    db.exec("ROLLBACK", &[]).unwrap();
    db.exec("BEGIN", &[]).unwrap();
    db.exec("INSERT INTO t VALUES (3)", &[]).unwrap();
    db.plugin.shutdown().unwrap(); // never committed
    drop(db);
    let mut again = Db::open(dir.path(), "tx", "");
    assert_eq!(
        again.query("SELECT v FROM t", &[]).unwrap().rows,
        vec![vec![Value::Int(1)]]
    );
}

#[test]
fn every_way_out_of_the_sandbox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.db");
    let mut db = Db::open(dir.path(), "jail", "");
    db.exec("CREATE TABLE t(v)", &[]).unwrap();
    let attempts = [
        format!("ATTACH DATABASE '{}' AS other", outside.display()),
        "DETACH DATABASE main".to_string(),
        format!("VACUUM INTO '{}'", outside.display()),
        "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libm.so.6')".to_string(),
        format!("PRAGMA temp_store_directory = '{}'", dir.path().display()),
    ];
    for sql in &attempts {
        let code = db.exec(sql, &[]).map(|_| 0).unwrap_or_else(|c| c);
        assert_eq!(code, 4, "{sql}: a sandbox refusal is code 4");
    }
    assert!(
        !outside.exists(),
        "a file outside the plugin's database was created"
    );
    // The plugin's own database still works.
    db.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
}

#[test]
fn one_plugin_cannot_read_another_plugins_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Db::open(dir.path(), "alice", "");
    let mut b = Db::open(dir.path(), "bob", "");
    a.exec("CREATE TABLE secret(v)", &[]).unwrap();
    a.exec("INSERT INTO secret VALUES ('alice only')", &[])
        .unwrap();
    assert_eq!(
        b.query("SELECT v FROM secret", &[]),
        Err(5),
        "bob sees no such table"
    );
    assert!(dir.path().join("alice/data.db").exists() && dir.path().join("bob/data.db").exists());
    assert_ne!(
        std::fs::canonicalize(dir.path().join("alice/data.db")).unwrap(),
        std::fs::canonicalize(dir.path().join("bob/data.db")).unwrap()
    );
}

#[test]
fn a_runaway_query_is_stopped_within_the_call_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), "loop", "[limits]\ncall_timeout_ms = 300");
    let started = Instant::now();
    let result = db.call(
        1,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        &[],
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "the query ran {took:?} on a 300 ms budget"
    );
    // The query is interrupted at the budget (code 5); the step has then used its
    // whole budget, so the epoch deadline fails the plugin as a timeout.
    match result {
        Err(fault) => assert_eq!(
            fault.kind,
            FaultKind::Timeout(Duration::from_millis(300)),
            "{fault}"
        ),
        Ok(code) => assert_eq!(code, Err(5)),
    }
}

#[test]
fn results_over_the_limit_are_code_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(
        dir.path(),
        "big",
        "[grants.\"storage.sqlite\"]\nmax_result_kb = 1\nmax_rows = 50",
    );
    db.exec("CREATE TABLE t(v)", &[]).unwrap();
    // A value longer than a result may be is refused when it is built.
    assert_eq!(
        db.exec("INSERT INTO t VALUES (?)", &[Value::Str("x".repeat(2000))])
            .map(|_| ()),
        Err(9)
    );
    for _ in 0..2 {
        db.exec("INSERT INTO t VALUES (?)", &[Value::Str("x".repeat(600))])
            .unwrap();
    }
    assert_eq!(db.query("SELECT v FROM t", &[]).map(|_| ()), Err(9));
    db.exec("DELETE FROM t", &[]).unwrap();
    for i in 0..60 {
        db.exec("INSERT INTO t VALUES (?)", &[Value::Int(i)])
            .unwrap();
    }
    assert_eq!(
        db.query("SELECT v FROM t", &[]).map(|_| ()),
        Err(9),
        "60 rows over max_rows = 50"
    );
    assert_eq!(
        db.query("SELECT v FROM t LIMIT 50", &[])
            .unwrap()
            .rows
            .len(),
        50
    );
}

#[test]
fn bad_sql_and_bad_params_get_codes_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), "bad", "");
    assert_eq!(db.exec("NOT SQL AT ALL", &[]).map(|_| ()), Err(5));
    assert_eq!(
        db.exec("SELECT ?", &[Value::Int(1), Value::Int(2)])
            .map(|_| ()),
        Err(4),
        "too many params"
    );
    // Params that are not a MessagePack array of values.
    let mut payload = Vec::new();
    for word in [0u32, 8, 2] {
        payload.extend_from_slice(&word.to_le_bytes());
    }
    payload.extend_from_slice(b"SELECT 1");
    payload.extend_from_slice(&[0xc1, 0xc1]);
    assert_eq!(db.plugin.step(&payload).unwrap().handle, -3);
    // SQL that is not UTF-8.
    let mut payload = Vec::new();
    for word in [0u32, 2, 0] {
        payload.extend_from_slice(&word.to_le_bytes());
    }
    payload.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(db.plugin.step(&payload).unwrap().handle, -3);
}

#[test]
fn the_imports_are_stubs_without_the_capability() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = ScratchPlugin::wat("nocap", &runner_wat(), "");
    let host = Host::builder()
        .data_dir(dir.path())
        .gated(SqliteCapability)
        .build()
        .unwrap();
    let prepared = host.prepare(&scratch.manifest).unwrap();
    assert!(prepared
        .report
        .notes
        .iter()
        .any(|n| n.contains("sqlite_exec") && n.contains("stub")));
    let mut plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents)).unwrap();
    plugin.init(&[]).unwrap();
    let payload = payload(EXEC, "SELECT 1", &[]);
    assert_eq!(plugin.step(&payload).unwrap().handle, -99);
    assert!(
        !dir.path().join("nocap").exists(),
        "no database for a plugin without the capability"
    );
}

#[test]
fn a_bad_out_address_refuses_the_statement_before_it_runs() {
    // init creates the table; each step INSERTs with out-addresses past the end
    // of memory. The guest is told 8, and the row must not exist: a retry after
    // a reported failure must not write twice.
    let create = "CREATE TABLE t(v)";
    let insert = "INSERT INTO t VALUES (1)";
    let wat = format!(
        r#"(module
  (import "pulp" "sqlite_exec" (func $exec (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 2048) "{create}")
  (data (i32.const 3072) "{insert}")
  (global $bump (mut i32) (i32.const 8192))
  (func (export "pulp_alloc") (param $n i32) (result i32)
    (global.get $bump) (global.set $bump (i32.add (global.get $bump) (local.get $n))))
  (func (export "pulp_init") (param i32 i32) (result i32)
    (call $exec (i32.const 2048) (i32.const {create_len}) (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 12)))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (call $exec (i32.const 3072) (i32.const {insert_len}) (i32.const 0) (i32.const 0) (i32.const 0xFFFE) (i32.const 12)))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#,
        create_len = create.len(),
        insert_len = insert.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let scratch = ScratchPlugin::wat("careful", &wat, "capabilities = [\"storage.sqlite\"]");
    let host = Host::builder()
        .data_dir(dir.path())
        .gated(SqliteCapability)
        .build()
        .unwrap();
    let prepared = host.prepare(&scratch.manifest).unwrap();
    let mut plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents)).unwrap();
    plugin.init(&[]).unwrap();
    for _ in 0..3 {
        assert_eq!(plugin.step(&[]).unwrap().handle, 8);
    }
    plugin.shutdown().unwrap();
    drop(plugin);
    let db = rusqlite::Connection::open(dir.path().join("careful/data.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows, 0,
        "the INSERT ran although its result could not be reported"
    );
}
