//! `pulp run` as a user runs it: outputs on stdout, a summary with probes,
//! `pulp_shutdown` on SIGTERM, and a failing plugin that does not stop another.

use pulp_integration::{manifest, plugin_wasm, pulp, run_pulp, text, wat_plugin, ScratchPlugin};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn run_prints_outputs_and_a_summary_with_probes() {
    plugin_wasm("heartbeat");
    let out = run_pulp(&[
        "run",
        "--steps",
        "10",
        manifest("heartbeat").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.contains("heartbeat step 5 output 1: beat 5 (call 5)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("heartbeat step 10 output 2: beat 10 (call 10)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("heartbeat: stopped; steps=10 outputs=2 step_errors=0 probe_config_marker=4242 probe_last_call=10"),
        "{stdout}"
    );
    assert!(text(&out).contains("heartbeat shutting down after 10 steps"));
}

#[test]
fn sigterm_runs_pulp_shutdown_then_exits_zero() {
    plugin_wasm("heartbeat");
    let mut child = pulp()
        .args(["run", manifest("heartbeat").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first output line: the plugin is initialised and stepping.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("beat 5"), "{line}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("heartbeat shutting down after"), "{stderr}");
    assert!(rest.contains("heartbeat: stopped;"), "{rest}");
}

#[test]
fn a_trap_fails_one_plugin_while_another_keeps_stepping() {
    plugin_wasm("heartbeat");
    // Traps on its third step (call_number is the first u64 of the envelope).
    let wat = wat_plugin(
        "",
        "(if (i64.eq (i64.load (local.get $ptr)) (i64.const 3)) (then unreachable)) (i32.const 0)",
        "",
    );
    let trapper = ScratchPlugin::wat("trapper", &wat, "tick_ms = 20");
    let started = Instant::now();
    let out = run_pulp(&[
        "run",
        "--duration",
        "2",
        trapper.arg(),
        manifest("heartbeat").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "a step failure is not a load failure: {}",
        text(&out)
    );
    assert!(
        stdout.contains("trapper: failed (pulp_step call 3: wasm trap: wasm `unreachable` instruction executed)"),
        "{stdout}"
    );
    // The trap happened after ~60 ms; heartbeat (100 ms tick) went on for the whole 2 s.
    let steps: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("heartbeat: stopped; steps="))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no heartbeat summary in {stdout}"));
    assert!(
        steps >= 15,
        "heartbeat made only {steps} steps in {:?}",
        started.elapsed()
    );
}

#[test]
fn a_plugin_failing_init_makes_the_exit_code_non_zero() {
    let wat = wat_plugin("", "(i32.const 0)", "").replace(
        r#"(func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))"#,
        r#"(func (export "pulp_init") (param i32 i32) (result i32) (i32.const 7))"#,
    );
    let bad = ScratchPlugin::wat("badinit", &wat, "");
    let out = run_pulp(&["run", "--duration", "1", bad.arg()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("pulp_init (call 0): returned error code 7"),
        "{}",
        text(&out)
    );
}

#[test]
fn duration_stops_a_run() {
    plugin_wasm("heartbeat");
    let started = Instant::now();
    let out = run_pulp(&[
        "run",
        "--duration",
        "0.5",
        manifest("heartbeat").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&out.stdout).contains("heartbeat: stopped;"));
}

#[test]
fn guest_stdout_goes_to_the_log_tagged_with_the_plugin() {
    let wat = wat_plugin(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))"#,
        "(i32.store (i32.const 4096) (i32.const 2048)) (i32.store (i32.const 4100) (i32.const 23))
         (drop (call $fd_write (i32.const 1) (i32.const 4096) (i32.const 1) (i32.const 4104))) (i32.const 0)",
        r#"(data (i32.const 2048) "hello from wasi stdout\n")"#,
    );
    let p = ScratchPlugin::wat("printer", &wat, "tick_ms = 10");
    let out = run_pulp(&["run", "--steps", "1", "--log-format", "json", p.arg()]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("hello from wasi stdout"))
        .unwrap_or_else(|| panic!("no guest line in {stderr}"));
    assert!(
        line.starts_with('{')
            && line.contains(r#""plugin":"printer""#)
            && line.contains(r#""stream":"stdout""#),
        "{line}"
    );
}
