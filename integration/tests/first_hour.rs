//! What a new user sees first (issue 17): logs without escape codes when
//! stderr is not a terminal, and error lines that say each cause once.

use pulp_integration::{manifest, plugin_wasm, pulp_bin, ScratchPlugin};
use std::process::{Command, Output};

/// `pulp <args>` as a user runs it: no `NO_COLOR`, stderr to a pipe.
fn run(args: &[&str]) -> Output {
    Command::new(pulp_bin())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("pulp runs")
}

#[test]
fn logs_to_a_pipe_hold_no_escape_codes() {
    plugin_wasm("heartbeat");
    let heartbeat = manifest("heartbeat");
    let out = run(&["run", "--steps", "6", heartbeat.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "logs were written: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a piped log: {stderr:?}"
    );
}

/// Each `: `-separated part of `line` appears once.
fn says_each_cause_once(line: &str) {
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "`{part}` is repeated in: {line}"
        );
    }
}

#[test]
fn error_lines_say_each_cause_once() {
    let bad_toml = ScratchPlugin::new("bad", b"", "limits = [");
    let no_wasm = ScratchPlugin::new("nowasm", b"", "wasm = \"missing.wasm\"");
    let cases: [&[&str]; 4] = [
        &["run", "/nonexistent/pulp.toml"],
        &["check", "/nonexistent/pulp.toml"],
        &["run", bad_toml.arg()],
        &["run", no_wasm.arg()],
    ];
    for args in cases {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let printed = pulp_integration::text(&out);
        let errors: Vec<&str> = printed
            .lines()
            .filter(|l| l.starts_with("pulp: ") || l.contains("ERROR") || l.contains("problem: "))
            .collect();
        assert!(!errors.is_empty(), "{args:?}: no error line in {printed}");
        errors.iter().for_each(|l| says_each_cause_once(l));
    }
    let out = run(&["run", "/nonexistent/pulp.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}
