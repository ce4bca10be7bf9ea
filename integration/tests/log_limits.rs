//! Guest log lines cannot flood or forge the host log (issue 12): a plugin
//! calling `log` with 16 MiB messages full of CR LF and escape codes, or
//! writing thousands of lines to stdout, gets lines cut at
//! `limits.log_line_bytes`, control characters escaped, a rate limit of
//! `limits.log_lines_per_sec` (burst `limits.log_burst`) with every dropped
//! line counted and reported, while heartbeat beside it keeps stepping; and an
//! ungranted import called 10,000 times warns once.

use pulp_integration::{
    manifest, plugin_wasm, run_pulp, summary_count, summary_line, text, wat_data, ScratchPlugin,
};
use std::process::Output;
use std::time::{Duration, Instant};

const MIB16: u32 = 16 * 1024 * 1024;
/// Calls of `log` per step.
const CALLS: u64 = 1000;
/// What the flood's messages start with: an attempt to end the line and write one of its own.
const FORGERY: &[u8] = b"hello\r\nINFO pulp::host: forged line\x1b[31m\x00";

/// `log(2, 0, 16 MiB)` CALLS times a step; memory holds FORGERY then 'A' up to 16 MiB.
fn flood() -> String {
    format!(
        r#"(module
  (import "pulp" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 300)
  (data (i32.const 0) {data})
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 17000000))
  (func (export "pulp_init") (param i32 i32) (result i32)
    (memory.fill (i32.const {len}) (i32.const 65) (i32.sub (i32.const {MIB16}) (i32.const {len})))
    (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (local $n i32)
    (loop $again
      (drop (call $log (i32.const 2) (i32.const 0) (i32.const {MIB16})))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $n) (i32.const {CALLS}))))
    (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#,
        data = wat_data(FORGERY),
        len = FORGERY.len(),
    )
}

/// `pulp run --duration 2` with `hostile` beside heartbeat; asserts heartbeat
/// kept stepping. Returns the output, stderr and the run's wall time.
fn beside_heartbeat(hostile: &ScratchPlugin) -> (Output, String, Duration) {
    plugin_wasm("heartbeat");
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run_pulp(&[
        "run",
        "--duration",
        "2",
        "--data-dir",
        data.path().to_str().unwrap(),
        hostile.arg(),
        manifest("heartbeat").to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = summary_line(&stdout, "heartbeat");
    assert!(line.starts_with("heartbeat: stopped; "), "{line}");
    // 100 ms ticks for 2 s.
    assert!(summary_count(line, "steps") >= 15, "{line}");
    (
        out.clone(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// Lines dropped, summed over the plugin's "N log lines dropped (...)" warnings.
fn reported_drops(stderr: &str, plugin: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| {
            l.contains(&format!("plugin=\"{plugin}\"")) || l.contains(&format!("plugin={plugin}"))
        })
        .filter_map(|l| {
            l.split(" log lines dropped (")
                .next()?
                .rsplit(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn a_log_flood_is_cut_escaped_rate_limited_and_counted() {
    let hostile = ScratchPlugin::wat(
        "flood",
        &flood(),
        "tick_ms = 20\n[limits]\ncall_timeout_ms = 5000",
    );
    let (out, stderr, took) = beside_heartbeat(&hostile);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let steps = summary_count(summary_line(&stdout, "flood"), "steps");
    assert!(steps >= 2, "{stdout}");

    // Escaped, so the forged text stays inside the flood's own line.
    let escaped = "hello\\r\\nINFO pulp::host: forged line\\u{1b}[31m\\0AAAA";
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("forged line"))
        .collect();
    for line in &lines {
        assert!(line.contains(escaped), "not escaped: {line:.300}");
        assert!(
            !line.contains('\u{1b}') && !line.contains('\0'),
            "{line:.300}"
        );
        // Cut at 4096 bytes of message (plus the log prefix and the mark).
        assert!(line.len() < 4096 + 400, "{} bytes", line.len());
        assert!(
            line.contains("AAAA [truncated: 16777216 bytes, over limits.log_line_bytes = 4096]"),
            "{:.200}",
            &line[line.len().saturating_sub(200)..]
        );
    }
    // The burst of 500 in the first step, then 100 a second at most.
    let admitted = lines.len() as u64;
    let most = 500 + 100 * (took.as_secs() + 1);
    assert!(
        (500..=most).contains(&admitted),
        "{admitted} lines admitted in {took:?} (expected 500..={most})"
    );
    // Every call not admitted is counted, and reported by the time the instance ends.
    assert_eq!(
        reported_drops(&stderr, "flood"),
        steps * CALLS - admitted,
        "{steps} steps of {CALLS} calls, {admitted} admitted"
    );
    assert!(stderr.contains("(instance released): over limits.log_lines_per_sec = 100 (burst 500)"));
    // What reached the log is bounded: not 16 MiB a call.
    assert!(stderr.len() < 8 << 20, "{} bytes of log", stderr.len());
}

#[test]
fn stdout_lines_share_the_limit_and_are_escaped() {
    // 3000 lines in one write (WASI fd_write), each with an OSC escape and a
    // CR. 18 bytes each: WASI hands the write over in 4 KiB pieces, so lines
    // span pieces, and each must still be logged (and counted) as one.
    let one: &[u8] = b"ou\x1b]0;title\x07 x.y\r\n";
    assert_eq!(one.len(), 18);
    let written = one.repeat(3000);
    // The iovec at 0: {ptr: 256, len}.
    let iovec = [256u32.to_le_bytes(), (written.len() as u32).to_le_bytes()].concat();
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) {iovec})
  (data (i32.const 256) {data})
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 120000))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#,
        iovec = wat_data(&iovec),
        data = wat_data(&written),
    );
    let hostile = ScratchPlugin::wat(
        "printer",
        &wat,
        "tick_ms = 50\n[limits]\nlog_lines_per_sec = 10\nlog_burst = 100",
    );
    let (out, stderr, took) = beside_heartbeat(&hostile);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let steps = summary_count(summary_line(&stdout, "printer"), "steps");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("stream="))
        .filter(|l| l.contains("printer"))
        .collect();
    for line in &lines {
        assert!(line.contains(": ou\\u{1b}]0;title\\u{7} x.y "), "{line}");
        assert!(
            line.contains("stream=\"stdout\"") || line.contains("stream=stdout"),
            "{line}"
        );
    }
    let admitted = lines.len() as u64;
    let most = 100 + 10 * (took.as_secs() + 1);
    assert!(
        (100..=most).contains(&admitted),
        "{admitted} lines in {took:?}"
    );
    assert_eq!(
        reported_drops(&stderr, "printer"),
        steps * 3000 - admitted,
        "{steps} steps"
    );
}

#[test]
fn an_ungranted_import_called_10000_times_warns_once() {
    // `http_register` without `transport.http.inbound` declared: the stub returns 99.
    let wat = r#"(module
  (import "pulp" "http_register" (func $reg (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (local $n i32)
    (loop $again
      (if (i32.ne (call $reg (i32.const 0) (i32.const 4)) (i32.const 99)) (then unreachable))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $n) (i32.const 10000))))
    (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
    let hostile = ScratchPlugin::wat("prober", wat, "tick_ms = 50");
    let (out, stderr, _) = beside_heartbeat(&hostile);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = summary_line(&stdout, "prober");
    assert!(line.starts_with("prober: stopped; "), "{line}");
    assert!(summary_count(line, "steps") >= 5, "{line}");
    let warnings = stderr
        .matches("import called without the capability declared in the manifest")
        .count();
    assert_eq!(
        warnings,
        1,
        "{} calls:\n{stderr:.3000}",
        summary_count(line, "steps") * 10000
    );
}

#[test]
fn a_restart_does_not_refill_the_bucket() {
    // Each instance logs 1000 lines in its first step, then traps and is restarted.
    let wat = format!(
        r#"(module
  (import "pulp" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "again")
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (local $n i32)
    (loop $more
      (drop (call $log (i32.const 2) (i32.const 0) (i32.const 5)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $n) (i32.const {CALLS}))))
    unreachable)
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#
    );
    let hostile = ScratchPlugin::wat(
        "phoenix",
        &wat,
        "tick_ms = 10\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 1000\nbackoff_ms = 1\nmax_backoff_ms = 1",
    );
    let (out, stderr, took) = beside_heartbeat(&hostile);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = summary_line(&stdout, "phoenix");
    let restarts: u64 = line
        .split("restarts=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(restarts >= 5, "{line}");
    let admitted = stderr
        .lines()
        .filter(|l| l.contains("pulp::guest: again "))
        .count() as u64;
    // One bucket for every instance: a burst of 500, then 100 a second, however many restarts.
    let most = 500 + 100 * (took.as_secs() + 1);
    assert!(
        (500..=most).contains(&admitted),
        "{admitted} lines over {restarts} restarts in {took:?} (expected 500..={most})"
    );
    assert!(reported_drops(&stderr, "phoenix") >= restarts * CALLS - admitted);
}
