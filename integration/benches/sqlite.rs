//! SQLite benchmark: the same statements through `storage.sqlite` from a
//! plugin and directly with rusqlite from native code, same pragmas, same
//! run. Prints JSON lines; run with `cargo bench -p pulp-integration --bench sqlite`.
//!
//! The plugin side is the WAT SQL runner: one `pulp_step` per statement, each
//! reading its MessagePack params, running the statement and writing the
//! MessagePack result back into guest memory. Step payloads are encoded before
//! the clock starts, as a guest would build them in its own memory.

use pulp_abi::sqlite::Value;
use pulp_ext::{EventRejected, EventSink};
use pulp_host::caps::SqliteCapability;
use pulp_host::{Host, Plugin};
use pulp_integration::sql_runner::{payload, runner_wat, EXEC, QUERY};
use pulp_integration::ScratchPlugin;
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Instant;

const ROWS: i64 = 20_000;
const INSERT: &str = "INSERT INTO t(v) VALUES (?)";
const SELECT: &str = "SELECT v FROM t WHERE id = ?";
const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)";

struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

/// A point-query id that visits rows in a scattered order.
fn id(i: i64) -> i64 {
    (i * 7919) % ROWS + 1
}

fn line(case: &str, imp: &str, ops: i64, secs: f64) -> f64 {
    let per_sec = ops as f64 / secs;
    println!(
        "{{\"case\":\"{case}\",\"impl\":\"{imp}\",\"ops\":{ops},\"ops_per_sec\":{per_sec:.0},\"ns_per_op\":{:.0}}}",
        secs * 1e9 / ops as f64
    );
    per_sec
}

fn native(dir: &std::path::Path) -> (f64, f64) {
    let conn = Connection::open(dir.join("native.db")).expect("open");
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    conn.execute_batch("PRAGMA synchronous=FULL")
        .expect("pragma");
    conn.execute_batch(SCHEMA).expect("schema");
    let started = Instant::now();
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..ROWS {
        conn.prepare_cached(INSERT)
            .expect("prepare")
            .execute([format!("value {i}")])
            .expect("insert");
    }
    conn.execute_batch("COMMIT").expect("commit");
    let inserts = line(
        "sqlite_insert_in_tx",
        "native",
        ROWS,
        started.elapsed().as_secs_f64(),
    );
    let started = Instant::now();
    for i in 0..ROWS {
        let v: String = conn
            .prepare_cached(SELECT)
            .expect("prepare")
            .query_row([id(i)], |r| r.get(0))
            .expect("row");
        std::hint::black_box(v);
    }
    let queries = line(
        "sqlite_point_query",
        "native",
        ROWS,
        started.elapsed().as_secs_f64(),
    );
    (inserts, queries)
}

fn plugin(dir: &std::path::Path) -> (f64, f64) {
    let scratch = ScratchPlugin::wat(
        "bench",
        &runner_wat(),
        "capabilities = [\"storage.sqlite\"]",
    );
    let host = Host::builder()
        .data_dir(dir)
        .gated(SqliteCapability)
        .build()
        .expect("host");
    let prepared = host.prepare(&scratch.manifest).expect("prepare");
    let mut plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents))
            .expect("instance");
    plugin.init(&[]).expect("init");
    let mut run = |bytes: &[u8]| {
        let outcome = plugin.step(bytes).expect("step");
        assert_eq!(
            outcome.handle, 1,
            "statement failed with code {}",
            -outcome.handle
        );
    };
    run(&payload(EXEC, SCHEMA, &[]));
    let inserts: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| payload(EXEC, INSERT, &[Value::Str(format!("value {i}"))]))
        .collect();
    let queries: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| payload(QUERY, SELECT, &[Value::Int(id(i))]))
        .collect();
    let started = Instant::now();
    run(&payload(EXEC, "BEGIN", &[]));
    for p in &inserts {
        run(p);
    }
    run(&payload(EXEC, "COMMIT", &[]));
    let insert_rate = line(
        "sqlite_insert_in_tx",
        "plugin",
        ROWS,
        started.elapsed().as_secs_f64(),
    );
    let started = Instant::now();
    for p in &queries {
        run(p);
    }
    let query_rate = line(
        "sqlite_point_query",
        "plugin",
        ROWS,
        started.elapsed().as_secs_f64(),
    );
    (insert_rate, query_rate)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (native_inserts, native_queries) = native(dir.path());
    let (plugin_inserts, plugin_queries) = plugin(dir.path());
    for (case, p, n) in [
        ("sqlite_insert_in_tx", plugin_inserts, native_inserts),
        ("sqlite_point_query", plugin_queries, native_queries),
    ] {
        println!(
            "{{\"case\":\"{case}\",\"plugin_over_native\":{:.3},\"target\":0.5}}",
            p / n
        );
    }
}
