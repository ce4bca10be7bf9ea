//! Restart policy `on-failure`: count, backoff, give-up, routes kept, and host
//! memory that stays bounded while a plugin memory-bombs and restarts.

use pulp_integration::http_client::{request, wait_until_serving};
use pulp_integration::{
    example_manifest, plugin_wasm, run_pulp, text, wat_plugin, RunningPulp, ScratchPlugin,
};
use std::time::Duration;

/// The summary line of `plugin` in `pulp run` output.
fn summary_line(stdout: &str, plugin: &str) -> String {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{plugin}: ")))
        .unwrap_or_else(|| panic!("no summary for {plugin} in {stdout}"))
        .trim()
        .to_string()
}

#[test]
fn restarts_with_doubling_backoff_then_gives_up() {
    // Traps on the third step of every instance.
    let wat = wat_plugin(
        "",
        "(if (i64.eq (i64.load (local.get $ptr)) (i64.const 3)) (then unreachable)) (i32.const 0)",
        "",
    );
    let p = ScratchPlugin::wat(
        "flaky",
        &wat,
        "tick_ms = 10\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 2\nbackoff_ms = 50",
    );
    let out = run_pulp(&["run", "--duration", "2", p.arg()]);
    let all = text(&out);
    let line = summary_line(&String::from_utf8_lossy(&out.stdout), "flaky");
    assert!(
        line.starts_with("flaky: failed (pulp_step call 3: wasm trap"),
        "{line}"
    );
    // Three instances, two good steps each, two restarts.
    assert!(
        line.ends_with("steps=6 outputs=0 step_errors=0 restarts=2"),
        "{line}"
    );
    assert!(
        all.contains("restart 1 in 50 ms") && all.contains("restart 2 in 100 ms"),
        "{all}"
    );
}

#[test]
fn without_a_policy_a_failure_is_final() {
    let wat = wat_plugin("", "unreachable", "");
    let p = ScratchPlugin::wat("once", &wat, "tick_ms = 10");
    let out = run_pulp(&["run", "--duration", "1", p.arg()]);
    let line = summary_line(&String::from_utf8_lossy(&out.stdout), "once");
    assert!(
        line.starts_with("once: failed (pulp_step call 1:") && line.contains("steps=0 "),
        "{line}"
    );
    assert!(!line.contains("restarts="), "{line}");
}

#[test]
fn a_restarted_plugin_keeps_its_http_routes() {
    plugin_wasm("echo");
    let dir = tempfile::tempdir().unwrap();
    let m = example_manifest(
        dir.path(),
        "echo",
        "echo",
        "capabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000\n[restart]\npolicy = \"on-failure\"\nbackoff_ms = 50",
    );
    let pulp = RunningPulp::start(&[], &[&m]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let crashed = request(pulp.addr, "GET", "/echo/x?crash=1", &[], b"");
    assert_eq!(crashed.status, 503, "{}", crashed.text());
    std::thread::sleep(Duration::from_millis(300));
    let r = request(pulp.addr, "GET", "/echo/back", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "back"));
    let out = pulp.stop();
    let line = summary_line(&String::from_utf8_lossy(&out.stdout), "echo");
    assert!(
        line.starts_with("echo: stopped;") && line.contains("restarts=1"),
        "{line}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn host_memory_stays_bounded_while_a_plugin_memory_bombs_and_restarts() {
    // Each step grows memory 1 MiB at a time and touches every new page, until
    // the 32 MiB limit traps it; the policy restarts it again and again.
    let bomb = wat_plugin(
        "",
        "(local $at i32)
         (loop $more
           (local.set $at (i32.mul (memory.grow (i32.const 16)) (i32.const 65536)))
           (i32.store (local.get $at) (i32.const 1))
           (i32.store (i32.add (local.get $at) (i32.const 524288)) (i32.const 1))
           (br $more))
         (i32.const 0)",
        "",
    );
    let p = ScratchPlugin::wat(
        "bomb",
        &bomb,
        "tick_ms = 5\n[limits]\nmemory_mb = 32\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 1000\nbackoff_ms = 1\nmax_backoff_ms = 1",
    );
    let pulp = RunningPulp::start(&["--log-level", "warn"], &[&p.manifest]);
    std::thread::sleep(Duration::from_millis(1000));
    let early = rss_kib(pulp.pid());
    std::thread::sleep(Duration::from_millis(3000));
    let late = rss_kib(pulp.pid());
    let out = pulp.stop();
    let line = summary_line(&String::from_utf8_lossy(&out.stdout), "bomb");
    let restarts: u64 = line
        .split("restarts=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    println!("{{\"case\":\"memory_bomb_restarts\",\"restarts\":{restarts},\"rss_kib_at_1s\":{early},\"rss_kib_at_4s\":{late}}}");
    // Every instance died of its memory limit (the log line of each restart says why).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pulp_step (call 1): memory limit exceeded: guest asked for")
            && stderr.contains("limit is 33554432 bytes; restart"),
        "{stderr:.2000}"
    );
    assert!(restarts >= 50, "only {restarts} restarts in 4 s");
    assert!(
        late < early + 16 * 1024,
        "host RSS grew from {early} KiB to {late} KiB over {restarts} restarts"
    );
}
