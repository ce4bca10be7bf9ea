//! Containment of time, queues and accounting (issue 12): hostile modules
//! that would have held the host, each bounded in time and memory.
//!
//! - a WASI sleep past the call budget ends the call as a timeout, at the
//!   deadline, and a SIGTERM ends a sleep at once;
//! - ticks never starve mailbox events;
//! - a plugin returning 1 MiB outputs every millisecond to a slow reader
//!   keeps the host's memory flat, drops (and counts) what the reader cannot
//!   take, and SIGINT still stops it, while the echo plugin beside it
//!   answers every request;
//! - the run summary charges each plugin its CPU, memory, disk and fuel.

use pulp_ext::{EventRejected, EventSink};
use pulp_host::{FaultKind, Host, Plugin, PluginStatus, RunOptions};
use pulp_integration::http_client::{free_addr, request, wait_until_serving};
use pulp_integration::{manifest, plugin_wasm, pulp, summary_count, ScratchPlugin};
use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _event: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

const POLL_IMPORT: &str = r#"(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))"#;

/// A plugin whose every tick sleeps `sleep_ns` through WASI `poll_oneoff`
/// (one relative monotonic clock subscription, as Rust's `thread::sleep`
/// makes) and returns 10 × the events it got back plus poll's errno; events
/// (non-empty payloads) are counted and answered 0 without sleeping.
fn sleeper(sleep_ns: u64) -> String {
    format!(
        r#"(module
  {POLL_IMPORT}
  (memory (export "memory") 2)
  (global $events (mut i64) (i64.const 0))
  (global $ticks (mut i64) (i64.const 0))
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param $ptr i32) (param $len i32) (result i32)
    (local $errno i32)
    (if (i32.ne (i32.load (i32.add (local.get $ptr) (i32.const 16))) (i32.const 0))
      (then (global.set $events (i64.add (global.get $events) (i64.const 1))) (return (i32.const 0))))
    (global.set $ticks (i64.add (global.get $ticks) (i64.const 1)))
    (i64.store (i32.const 100000) (i64.const 7))
    (i32.store8 (i32.const 100008) (i32.const 0))
    (i32.store (i32.const 100016) (i32.const 1))
    (i64.store (i32.const 100024) (i64.const {sleep_ns}))
    (i64.store (i32.const 100032) (i64.const 0))
    (i32.store16 (i32.const 100040) (i32.const 0))
    (local.set $errno (call $poll (i32.const 100000) (i32.const 100100) (i32.const 1) (i32.const 100200)))
    (i32.add (local.get $errno) (i32.mul (i32.load (i32.const 100200)) (i32.const 10))))
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
  (func (export "probe_events") (result i64) (global.get $events))
  (func (export "probe_ticks") (result i64) (global.get $ticks))
)"#
    )
}

fn instance(scratch: &ScratchPlugin) -> (Host, Plugin) {
    let host = Host::builder().build().unwrap();
    let prepared = host.prepare(&scratch.manifest).unwrap();
    let plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents)).unwrap();
    (host, plugin)
}

#[test]
fn a_wasi_sleep_past_the_budget_ends_the_call_at_its_deadline() {
    let hour = 3_600_000_000_000;
    let scratch = ScratchPlugin::wat("sleeper", &sleeper(hour), "[limits]\ncall_timeout_ms = 300");
    let (_host, mut plugin) = instance(&scratch);
    plugin.init(&[]).unwrap();
    let started = Instant::now();
    let fault = plugin.step(&[]).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(fault.kind, FaultKind::Timeout(_)), "{fault}");
    assert!(took >= Duration::from_millis(250), "ended early: {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "ran past the deadline: {took:?}"
    );
}

#[test]
fn a_short_wasi_sleep_sleeps_and_reports_its_clock() {
    let scratch = ScratchPlugin::wat("napper", &sleeper(20_000_000), "");
    let (_host, mut plugin) = instance(&scratch);
    plugin.init(&[]).unwrap();
    let started = Instant::now();
    let outcome = plugin.step(&[]).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(20));
    assert_eq!(outcome.handle, 10, "errno 0 and one clock event");
    plugin.shutdown().unwrap();
}

#[test]
fn ticks_never_starve_mailbox_events() {
    // Each tick sleeps 30 ms against a 5 ms tick: a tick is due after every step.
    let scratch = ScratchPlugin::wat("slow", &sleeper(30_000_000), "tick_ms = 5");
    let host = Host::builder().build().unwrap();
    let prepared = host.prepare(&scratch.manifest).unwrap();
    let (events, _received) = pulp_host::run_events(64, 1 << 20);
    let running = host.spawn(prepared, RunOptions::default(), events).unwrap();
    for _ in 0..20 {
        running.mailbox().push(b"event".to_vec()).unwrap();
    }
    // Queued events are charged to the plugin (one is taken every other 30 ms step).
    let queued = running.metrics().plugin_usage().host_bytes();
    assert!(
        queued >= 10 * 5,
        "{queued} bytes charged for 20 queued events"
    );
    // 20 events alternate with ticks: about 20 × 30 ms.
    std::thread::sleep(Duration::from_millis(1500));
    running.stop();
    let summary = running.join();
    assert_eq!(summary.status, PluginStatus::Stopped);
    let probe = |name: &str| summary.probes.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(probe("probe_events"), 20, "{:?}", summary.probes);
    assert!(probe("probe_ticks") >= 10, "{:?}", summary.probes);
    assert_eq!(
        summary.usage.host_bytes, 0,
        "every queued event was given back"
    );
}

/// Starts `pulp run` with stdout read by `reader` and stderr drained.
fn spawn_pulp(args: &[&str]) -> Child {
    let mut child = pulp()
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pulp starts");
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn signal(child: &Child, name: &str) {
    let _ = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status();
}

/// Waits up to `limit` for `child` to exit.
fn exits_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn sigterm_ends_a_plugin_asleep_in_a_step_at_once() {
    let hour = 3_600_000_000_000;
    let scratch = ScratchPlugin::wat(
        "sleeper",
        &sleeper(hour),
        "tick_ms = 10\n[limits]\ncall_timeout_ms = 30000",
    );
    let mut child = spawn_pulp(&[scratch.arg()]);
    let mut stdout = child.stdout.take().unwrap();
    let printed = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    std::thread::sleep(Duration::from_millis(800));
    let asked = Instant::now();
    signal(&child, "-TERM");
    let status = exits_within(&mut child, Duration::from_secs(5)).expect("pulp run exits");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(status.success());
    let text = printed.join().unwrap();
    assert!(text.contains("sleeper: stopped"), "{text}");
}

/// Returns a 1 MiB output on every step (`tick_ms = 1`).
const FLOOD: &str = r#"(module
  (memory (export "memory") 32)
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32) (i32.const 1))
  (func (export "pulp_output") (param i32) (result i64)
    (i64.or (i64.shl (i64.const 65536) (i64.const 32)) (i64.const 1048576)))
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
)"#;

#[test]
fn an_output_flood_to_a_slow_reader_keeps_memory_flat_and_sigint_stops_it() {
    let scratch = ScratchPlugin::wat("flood", FLOOD, "tick_ms = 1");
    plugin_wasm("echo");
    let echo = manifest("echo");
    let addr = free_addr().to_string();
    let mut child = spawn_pulp(&["--http-addr", &addr, scratch.arg(), echo.to_str().unwrap()]);
    let mut stdout = child.stdout.take().unwrap();
    let fast = Arc::new(AtomicBool::new(false));
    let reader_fast = fast.clone();
    // A slow reader: 16 KiB every 20 ms, until told to read at full speed.
    let printed = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = vec![0; 16 << 10];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&all).into_owned(),
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            if !reader_fast.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let addr = addr.parse().unwrap();
    wait_until_serving(addr, "/echo/ready");
    let (mut peak, mut served) = (0, 0);
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        peak = peak.max(rss_kib(child.id()));
        let r = request(addr, "GET", "/echo/alive", &[], b"");
        assert_eq!((r.status, r.text()), (200, "alive".to_string()));
        served += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served >= 20, "echo answered only {served} requests");
    let asked = Instant::now();
    signal(&child, "-INT");
    fast.store(true, Ordering::Release);
    let status = exits_within(&mut child, Duration::from_secs(10)).expect("SIGINT stops pulp run");
    assert!(status.success());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // Unbounded, 1 MiB a millisecond would be gigabytes by now.
    assert!(peak < 300 * 1024, "resident memory reached {peak} KiB");
    let text = printed.join().unwrap();
    assert!(
        text.contains("(1048576 bytes in all)"),
        "outputs are printed shortened"
    );
    // The flood's usage line follows its summary line.
    let usage = text
        .lines()
        .skip_while(|l| !l.trim().starts_with("flood: "))
        .nth(1)
        .unwrap_or_else(|| {
            panic!(
                "no summary for flood: {}",
                &text[text.len().saturating_sub(600)..]
            )
        });
    let dropped = summary_count(usage, "events_dropped");
    assert!(
        dropped > 0,
        "the slow reader could not have taken every output"
    );
}

/// Grows memory by 10 pages and writes a 200 kB row at init; each step keeps
/// the CPU busy for 100 ms of wall time (spinning on the WASI monotonic clock).
const WORKER: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (import "pulp" "sqlite_exec" (func $exec (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 2048) "CREATE TABLE IF NOT EXISTS t (b)")
  (data (i32.const 3072) "INSERT INTO t VALUES (zeroblob(200000))")
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "pulp_init") (param i32 i32) (result i32)
    (drop (memory.grow (i32.const 10)))
    (drop (call $exec (i32.const 2048) (i32.const 32) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 104)))
    (call $exec (i32.const 3072) (i32.const 39) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 104)))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (local $start i64)
    (drop (call $now (i32.const 1) (i64.const 0) (i32.const 200)))
    (local.set $start (i64.load (i32.const 200)))
    (block $done
      (loop $spin
        (drop (call $now (i32.const 1) (i64.const 0) (i32.const 200)))
        (br_if $done (i64.ge_u (i64.sub (i64.load (i32.const 200)) (local.get $start)) (i64.const 100000000)))
        (br $spin)))
    (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
)"#;

#[test]
fn the_summary_charges_cpu_memory_disk_and_fuel_to_the_plugin() {
    let scratch = ScratchPlugin::wat(
        "worker",
        WORKER,
        "tick_ms = 1\ncapabilities = [\"storage.sqlite\"]\n[limits]\nfuel = 10000000000",
    );
    let data = tempfile::tempdir().unwrap();
    let out = pulp()
        .args(["run", "--steps", "4", "--data-dir"])
        .arg(data.path())
        .arg(scratch.arg())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("usage: "))
        .unwrap_or_else(|| panic!("no usage line: {text}"));
    let field = |name: &str| -> f64 {
        usage
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_end_matches('s').parse().unwrap())
            .unwrap_or_else(|| panic!("no {name} in {usage}"))
    };
    // 4 steps spinning 100 ms of wall time each: the thread's CPU time, which
    // a loaded machine may give only part of (the test runs beside builds).
    assert!(field("cpu") >= 0.1, "{usage}");
    assert!(field("cpu") < 5.0, "{usage}");
    assert_eq!(
        field("memory") as u64,
        12 * 65536,
        "2 pages + 10 grown: {usage}"
    );
    assert!(
        field("disk") >= 200_000.0,
        "the 200 kB row is on disk: {usage}"
    );
    assert!(field("fuel") > 0.0, "{usage}");
    assert_eq!(field("host_bytes"), 0.0, "{usage}");
}

#[test]
fn a_probe_that_traps_after_the_last_step_fails_the_plugin_without_restarts() {
    let wat = pulp_integration::wat_plugin(
        "",
        "(i32.const 0)",
        r#"(func (export "probe_bad") (result i64) unreachable)"#,
    );
    let scratch = ScratchPlugin::wat(
        "prober",
        &wat,
        "tick_ms = 1\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 50\nbackoff_ms = 1",
    );
    let out = pulp()
        .args(["run", "--steps", "2", scratch.arg()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = pulp_integration::summary_line(&stdout, "prober");
    // The probe's trap fails the instance (it is never entered again, so no
    // pulp_shutdown), and a new instance would have no steps left to run.
    assert!(line.contains("failed (probe_* call 2: "), "{line}");
    assert!(!line.contains("restarts="), "{line}");
}
