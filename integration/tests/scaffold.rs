//! `pulp new` makes a plugin crate that builds to wasm and runs without edits.

use pulp_integration::http_client::{request, wait_until_serving};
use pulp_integration::{run_pulp, text, RunningPulp};
use std::path::Path;
use std::process::Command;

fn build(crate_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--target",
            "wasm32-wasip1",
            "--release",
            "--manifest-path",
        ])
        .arg(crate_dir.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_scaffolded_http_and_sqlite_plugin_builds_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_pulp(&[
        "new",
        "visits",
        "--http",
        "--sqlite",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let crate_dir = dir.path().join("visits");
    build(&crate_dir);
    let data = dir.path().join("data");
    let pulp = RunningPulp::start(
        &["--data-dir", data.to_str().unwrap()],
        &[&crate_dir.join("visits.toml")],
    );
    wait_until_serving(pulp.addr, "/visits");
    let r = request(pulp.addr, "GET", "/visits", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // The readiness probe was visit 1; ticks do not count.
    assert_eq!(r.text(), "hello #2");
    let out = pulp.stop();
    assert!(out.status.success(), "{}", text(&out));
    assert!(data.join("visits/data.db").exists());
}

#[test]
fn a_scaffolded_plain_plugin_builds_and_steps() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        run_pulp(&["new", "ticker", "--dir", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    let crate_dir = dir.path().join("ticker");
    build(&crate_dir);
    let manifest = crate_dir.join("ticker.toml");
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("tick_ms = 1000", "tick_ms = 10"),
    )
    .unwrap();
    let out = run_pulp(&["run", "--steps", "2", manifest.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.contains("ticker step 2 output 2: hello #2"),
        "{stdout}"
    );
    // A second `pulp new` with the same name refuses to overwrite.
    let again = run_pulp(&["new", "ticker", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already exists"));
}

#[test]
fn a_scaffolded_http_plugin_counts_requests_not_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let new = run_pulp(&[
        "new",
        "greeter",
        "--http",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(new.status.success(), "{}", text(&new));
    let crate_dir = dir.path().join("greeter");
    build(&crate_dir);
    let manifest = crate_dir.join("greeter.toml");
    // Ticking fast: were ticks counted, the answers would skip numbers.
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("tick_ms = 1000", "tick_ms = 5"),
    )
    .unwrap();
    let pulp = RunningPulp::start(&[], &[&manifest]);
    wait_until_serving(pulp.addr, "/greeter");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = request(pulp.addr, "GET", "/greeter", &[], b"");
    // The readiness probe was request 1.
    assert_eq!((r.status, r.text()), (200, "hello #2".to_string()));
    let out = pulp.stop();
    assert!(out.status.success(), "{}", text(&out));
}
