//! SQLite benchmark: the same statements through `storage.sqlite` from a
//! plugin and directly with rusqlite from native code, same pragmas, same
//! run. Prints JSON lines; run with `cargo bench -p pulp-integration --bench sqlite`.
//!
//! The plugin side is the WAT SQL runner: one `pulp_step` per statement, each
//! reading its MessagePack params, running the statement and writing the
//! MessagePack result back into guest memory, where the guest keeps it. Step
//! payloads are encoded before the clock starts, as a guest would build them
//! in its own memory. Native and plugin rounds alternate, each on a fresh
//! table; the median of the rounds is reported.

use pulp_abi::sqlite::Value;
use pulp_ext::{EventRejected, EventSink};
use pulp_host::caps::SqliteCapability;
use pulp_host::{Host, Plugin};
use pulp_integration::sql_runner::{payload, runner_wat, EXEC, KEEP, QUERY};
use pulp_integration::ScratchPlugin;
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Instant;

const ROWS: i64 = 100_000;
const ROUNDS: usize = 3;

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

fn sql(round: usize) -> [String; 3] {
    [
        format!("CREATE TABLE t{round}(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"),
        format!("INSERT INTO t{round}(v) VALUES (?)"),
        format!("SELECT v FROM t{round} WHERE id = ?"),
    ]
}

/// Seconds for `ROWS` inserts in one transaction, then for `ROWS` point queries.
type Timings = (f64, f64);

fn native_round(conn: &Connection, round: usize) -> Timings {
    let [schema, insert, select] = sql(round);
    conn.execute_batch(&schema).expect("schema");
    let started = Instant::now();
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..ROWS {
        conn.prepare_cached(&insert)
            .expect("prepare")
            .execute([format!("value {i}")])
            .expect("insert");
    }
    conn.execute_batch("COMMIT").expect("commit");
    let inserts = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..ROWS {
        let v: String = conn
            .prepare_cached(&select)
            .expect("prepare")
            .query_row([id(i)], |r| r.get(0))
            .expect("row");
        std::hint::black_box(v);
    }
    (inserts, started.elapsed().as_secs_f64())
}

fn plugin_round(plugin: &mut Plugin, round: usize) -> Timings {
    let [schema, insert, select] = sql(round);
    let mut run = |bytes: &[u8]| {
        let outcome = plugin.step(bytes).expect("step");
        assert!(
            outcome.handle >= 0,
            "statement failed with code {}",
            -outcome.handle
        );
    };
    run(&payload(EXEC, &schema, &[]));
    let inserts: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| payload(EXEC + KEEP, &insert, &[Value::Str(format!("value {i}"))]))
        .collect();
    let queries: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| payload(QUERY + KEEP, &select, &[Value::Int(id(i))]))
        .collect();
    let (begin, commit) = (
        payload(EXEC + KEEP, "BEGIN", &[]),
        payload(EXEC + KEEP, "COMMIT", &[]),
    );
    let started = Instant::now();
    run(&begin);
    for p in &inserts {
        run(p);
    }
    run(&commit);
    let insert_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for p in &queries {
        run(p);
    }
    (insert_secs, started.elapsed().as_secs_f64())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn report(case: &str, imp: &str, secs: f64) -> f64 {
    let per_sec = ROWS as f64 / secs;
    println!(
        "{{\"case\":\"{case}\",\"impl\":\"{imp}\",\"ops\":{ROWS},\"rounds\":{ROUNDS},\"ops_per_sec\":{per_sec:.0},\"ns_per_op\":{:.0}}}",
        secs * 1e9 / ROWS as f64
    );
    per_sec
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = Connection::open(dir.path().join("native.db")).expect("open");
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    conn.execute_batch("PRAGMA synchronous=FULL")
        .expect("pragma");

    let scratch = ScratchPlugin::wat(
        "bench",
        &runner_wat(),
        "capabilities = [\"storage.sqlite\"]",
    );
    let host = Host::builder()
        .data_dir(dir.path())
        .gated(SqliteCapability)
        .build()
        .expect("host");
    let prepared = host.prepare(&scratch.manifest).expect("prepare");
    let mut plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents))
            .expect("instance");
    plugin.init(&[]).expect("init");

    let (mut native, mut guest) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        native.push(native_round(&conn, round));
        guest.push(plugin_round(&mut plugin, round));
    }
    for (case, pick) in [("sqlite_insert_in_tx", 0), ("sqlite_point_query", 1)] {
        let get = |t: &Timings| if pick == 0 { t.0 } else { t.1 };
        let n = report(case, "native", median(native.iter().map(get).collect()));
        let p = report(case, "plugin", median(guest.iter().map(get).collect()));
        println!(
            "{{\"case\":\"{case}\",\"plugin_over_native\":{:.3},\"target\":0.5}}",
            p / n
        );
    }
}
