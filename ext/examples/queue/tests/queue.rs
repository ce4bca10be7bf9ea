//! The queue extension end to end: the custom `pulp-queue` host running the
//! real `queue-worker` plugin against real SQLite files.

use pulp_integration::{manifest, plugin_wasm, run_pulp, text, ScratchPlugin};
use std::process::{Command, Output};

fn pulp_queue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pulp-queue"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("pulp-queue runs")
}

fn outputs(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(": ")
                .filter(|(head, _)| head.contains(" output "))
                .map(|(_, o)| o.to_string())
        })
        .collect()
}

#[test]
fn a_message_not_marked_done_is_delivered_again() {
    plugin_wasm("queue_worker");
    let data = tempfile::tempdir().unwrap();
    let m = manifest("queue-worker");
    let out = pulp_queue(&[
        "run",
        "--duration",
        "1.5",
        "--data-dir",
        data.path().to_str().unwrap(),
        m.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        outputs(&out),
        [
            "processed a after 1 deliveries",
            "dropped flaky-b (delivery 1)",
            "processed c after 1 deliveries",
            "processed flaky-b after 2 deliveries",
        ]
    );
}

#[test]
fn messages_survive_a_host_restart() {
    plugin_wasm("queue_worker");
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let m = manifest("queue-worker");
    // Two steps: "a" done, "flaky-b" received and left undone. Then the host exits.
    let first = pulp_queue(&[
        "run",
        "--steps",
        "2",
        "--data-dir",
        dir,
        m.to_str().unwrap(),
    ]);
    assert_eq!(
        outputs(&first),
        [
            "processed a after 1 deliveries",
            "dropped flaky-b (delivery 1)"
        ]
    );
    // A new host: the queue is not empty, so nothing is seeded again; what is left comes out.
    let second = pulp_queue(&[
        "run",
        "--duration",
        "1.5",
        "--data-dir",
        dir,
        m.to_str().unwrap(),
    ]);
    assert_eq!(
        outputs(&second),
        [
            "processed c after 1 deliveries",
            "processed flaky-b after 2 deliveries"
        ]
    );
    assert!(data.path().join("queue-worker/queue.db").exists());
}

#[test]
fn settings_come_from_the_manifest_and_bad_ones_are_named() {
    let wasm = std::fs::read(plugin_wasm("queue_worker")).unwrap();
    let bad = ScratchPlugin::new(
        "w",
        &wasm,
        "capabilities = [\"queue.sqlite\"]\n[grants.\"queue.sqlite\"]\nmax_body_kb = 0",
    );
    let out = pulp_queue(&["check", bad.arg()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .contains("capability `queue.sqlite` for plugin `w`: max_body_kb must be at least 1"),
        "{}",
        text(&out)
    );
    let typo = ScratchPlugin::new(
        "w",
        &wasm,
        "capabilities = [\"queue.sqlite\"]\n[grants.\"queue.sqlite\"]\nmax_bodykb = 1",
    );
    let out = pulp_queue(&["check", typo.arg()]);
    assert!(
        text(&out).contains("unknown field `max_bodykb`"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_stock_host_does_not_know_the_extension() {
    plugin_wasm("queue_worker");
    let m = manifest("queue-worker");
    let out = run_pulp(&["check", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("unknown capability `queue.sqlite`; this host knows: logging, entropy, transport.http.inbound, storage.sqlite"), "{}", text(&out));
    let caps = pulp_queue(&["caps"]);
    assert!(String::from_utf8_lossy(&caps.stdout)
        .contains("queue.sqlite (gated): durable named queues"));
}
