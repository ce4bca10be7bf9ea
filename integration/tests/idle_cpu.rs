//! An idle host burns no CPU: `pulp run` with a 100 ms tick, measured from
//! /proc/<pid>/stat over 5 s. Prints the figure; the bound (2% of a core) is
//! generous on purpose.

use pulp_integration::{manifest, plugin_wasm, pulp};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100)
}

#[test]
fn an_idle_host_with_a_100ms_tick_uses_under_2_percent_of_a_core() {
    plugin_wasm("heartbeat");
    let mut child = pulp()
        .args([
            "run",
            "--log-level",
            "warn",
            manifest("heartbeat").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1)); // past compile and init
    let pid = child.id();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let used = cpu_ticks(pid) - before;
    let wall = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let percent = used as f64 / clock_ticks_per_second() as f64 / wall * 100.0;
    println!(
        "{{\"case\":\"idle_cpu_100ms_tick\",\"cpu_percent\":{percent:.3},\"seconds\":{wall:.1}}}"
    );
    assert!(percent < 2.0, "idle host used {percent:.2}% of a core");
}
