//! `limits.fuel`: deterministic per-call budgets, metered only when asked for.

use pulp_host::Host;
use pulp_integration::{run_pulp, text, wat_plugin, ScratchPlugin};

/// A step that loops `$n` times, `$n` read from the step's call number × 1000.
fn counting_plugin() -> String {
    wat_plugin(
        "",
        "(local $i i64) (local $n i64)
         (local.set $n (i64.mul (i64.load (local.get $ptr)) (i64.const 1000)))
         (loop $more
           (local.set $i (i64.add (local.get $i) (i64.const 1)))
           (br_if $more (i64.lt_u (local.get $i) (local.get $n))))
         (i32.const 0)",
        "",
    )
}

#[test]
fn fuel_stops_a_call_deterministically_and_is_refilled_for_every_call() {
    // Step n loops n × 1000 times; 100 000 fuel lasts well past step 10 and dies
    // before step 100 on any machine, however fast.
    let p = ScratchPlugin::wat(
        "metered",
        &counting_plugin(),
        "tick_ms = 1\n[limits]\nfuel = 100000\ncall_timeout_ms = 10000",
    );
    let out = run_pulp(&["run", "--duration", "5", p.arg()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("metered: "))
        .unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(line.contains("metered: failed (pulp_step call"), "{line}");
    assert!(line.contains("fuel budget of 100000 exhausted"), "{line}");
    let call: u64 = line
        .split("pulp_step call ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((10..100).contains(&call), "ran out at call {call}");
    // The same plugin and manifest fail at the same call every time.
    let again = run_pulp(&["run", "--duration", "5", p.arg()]);
    assert!(String::from_utf8_lossy(&again.stdout)
        .contains(&format!("pulp_step call {call}: fuel budget")));
}

#[test]
fn a_host_without_metering_refuses_a_fuel_budget() {
    let p = ScratchPlugin::wat("metered", &counting_plugin(), "[limits]\nfuel = 1000");
    let host = Host::builder().build().unwrap();
    let err = host
        .prepare(&p.manifest)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("limits.fuel needs a host that meters fuel"),
        "{err}"
    );
    let metered = Host::builder().fuel_metering(true).build().unwrap();
    assert!(metered.prepare(&p.manifest).is_ok());
}

#[test]
fn tables_are_held_to_limits_table_elements() {
    // A table of 5 000 elements against a limit of 1 000: refused when instantiated.
    let wat = wat_plugin("", "(i32.const 0)", "(table 5000 funcref)");
    let p = ScratchPlugin::wat("tables", &wat, "[limits]\ntable_elements = 1000");
    let out = run_pulp(&["run", "--duration", "1", p.arg()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("tables: failed (instantiate call 0:"), "{all}");
    let check = run_pulp(&["check", p.arg()]);
    assert!(
        text(&check).contains("table elements 1000, fuel unmetered"),
        "{}",
        text(&check)
    );
}
