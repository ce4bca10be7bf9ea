//! Manifest values that would make the host allocate, wait or spin without
//! bound are refused by `pulp check` and `pulp run` at load, naming the key,
//! and quickly: a `wasm` that is a FIFO or `/dev/zero` is refused without
//! being read.

use pulp_integration::{pulp, text, wat_plugin, ScratchPlugin};
use std::process::Output;
use std::time::{Duration, Instant};

/// Runs `pulp <args>` and kills it if it has not exited within 20 s (on a
/// host that reads a FIFO or /dev/zero it never would).
fn bounded(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = pulp()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("pulp {args:?} still running after 20 s:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pulp check` and `pulp run` both refuse `plugin` with `expected` in their output.
fn refused(plugin: &ScratchPlugin, expected: &str) {
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    for args in [
        vec!["check", "--data-dir", data, plugin.arg()],
        vec!["run", "--steps", "1", "--data-dir", data, plugin.arg()],
    ] {
        let (out, took) = bounded(&args);
        let all = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded:\n{all}");
        assert!(
            all.contains(expected),
            "{args:?}: expected {expected:?} in:\n{all}"
        );
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
    }
}

fn healthy() -> String {
    wat_plugin("", "(i32.const 0)", "")
}

#[test]
fn each_unbounded_value_is_refused_naming_its_key() {
    for (extra, expected) in [
        ("[limits]\nmailbox = 4294967295", "key `limits.mailbox`: 4294967295 is over the maximum 65536"),
        ("[limits]\ntable_elements = 4294967295", "key `limits.table_elements`: 4294967295 is over the maximum 1000000"),
        ("[limits]\nmemory_mb = 100000", "key `limits.memory_mb`: 100000 is over the maximum 4096"),
        ("[limits]\nmax_buffer_kb = 4000000", "key `limits.max_buffer_kb`: 4000000 is over the maximum 1048576"),
        ("[limits]\ncall_timeout_ms = 86400000", "key `limits.call_timeout_ms`: 86400000 is over the maximum 60000"),
        ("[limits]\nfuel = 18446744073709551615", "key `limits.fuel`: 18446744073709551615 is over the maximum 1000000000000"),
        ("[limits]\nlog_lines_per_sec = 0", "key `limits.log_lines_per_sec`: 0 is below the minimum 1"),
        ("[limits]\nlog_line_bytes = 16777216", "key `limits.log_line_bytes`: 16777216 is over the maximum 65536"),
        ("tick_ms = 18446744073709551615", "key `tick_ms`: 18446744073709551615 is over the maximum 86400000"),
        ("[restart]\npolicy = \"on-failure\"\nbackoff_ms = 0\nmax_restarts = 1000", "key `restart.backoff_ms`: 0 is not within 1..=60000"),
        ("[restart]\npolicy = \"on-failure\"\nmax_restarts = 4294967295", "key `restart.max_restarts`: 4294967295 is over the maximum 1200 (20 a second of window_secs = 60)"),
    ] {
        let plugin = ScratchPlugin::wat("p", &healthy(), extra);
        refused(&plugin, expected);
    }
}

#[test]
fn a_wasm_that_is_a_fifo_or_a_device_is_refused_without_reading_it() {
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("plugin.wasm");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (wasm, kind) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a character device"),
    ] {
        let plugin = ScratchPlugin::wat("p", &healthy(), &format!("wasm = {wasm:?}"));
        refused(
            &plugin,
            &format!("key `wasm` ({wasm}): cannot read: not a regular file ({kind})"),
        );
    }
}

#[test]
fn a_wasm_over_the_size_cap_is_refused_before_it_is_read() {
    let plugin = ScratchPlugin::wat("p", &healthy(), "");
    // Sparse: 256 MiB and one byte, costing no disk and never read.
    let wasm = plugin.dir.path().join("plugin.wasm");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wasm)
        .unwrap()
        .set_len(256 * 1024 * 1024 + 1)
        .unwrap();
    refused(&plugin, "cannot read: larger than the 268435456-byte limit");
}
