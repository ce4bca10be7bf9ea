//! `pulp check` refuses every broken plugin before it runs, naming the problem.
//! The hostile modules are WAT, inline, one per case.

use pulp_integration::{manifest, plugin_wasm, run_pulp, text, wat_plugin, ScratchPlugin};

fn healthy() -> String {
    wat_plugin("", "(i32.const 0)", "")
}

/// Runs `pulp check` on `plugin` and asserts exit 1 with `expected` in the output.
fn refused(plugin: &ScratchPlugin, expected: &str) {
    let out = run_pulp(&["check", plugin.arg()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains(expected), "expected {expected:?} in:\n{all}");
}

#[test]
fn a_healthy_plugin_passes_and_its_imports_are_listed() {
    plugin_wasm("heartbeat");
    let out = run_pulp(&["check", manifest("heartbeat").to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("plugin heartbeat: ok"), "{all}");
    assert!(all.contains("import pulp::log: bound by logging"), "{all}");
    assert!(
        all.contains("probes: probe_config_marker, probe_last_call"),
        "{all}"
    );
    assert!(
        all.contains("limits: memory 16 MiB, call timeout 500 ms"),
        "{all}"
    );
    assert!(
        all.contains("log 100 lines/s (burst 500, 4096 bytes a line)"),
        "{all}"
    );
}

#[test]
fn unknown_capability() {
    let p = ScratchPlugin::wat("p", &healthy(), r#"capabilities = ["teleport"]"#);
    refused(
        &p,
        "unknown capability `teleport`; this host knows: logging, entropy",
    );
}

#[test]
fn unknown_manifest_key() {
    let p = ScratchPlugin::wat("p", &healthy(), "colour = 3");
    refused(&p, "p.toml:3: unknown field `colour`");
}

#[test]
fn missing_name() {
    let p = ScratchPlugin::wat("p", &healthy(), "");
    std::fs::write(&p.manifest, "version = \"1\"\n").unwrap();
    refused(&p, "missing field `name`");
}

#[test]
fn missing_wasm_file() {
    let p = ScratchPlugin::wat("p", &healthy(), "wasm = \"nowhere.wasm\"");
    refused(&p, "nowhere.wasm): cannot read");
}

#[test]
fn garbage_instead_of_wasm() {
    let p = ScratchPlugin::new("p", b"this is not wasm", "");
    refused(&p, "not a WebAssembly module");
    let p = ScratchPlugin::new("p", b"\0asm\x01\0\0\0\xff\xff", "");
    refused(&p, "not a valid wasm module");
}

#[test]
fn hash_mismatch() {
    let p = ScratchPlugin::wat(
        "p",
        &healthy(),
        &format!("sha256 = \"{}\"", "ab".repeat(32)),
    );
    refused(&p, "sha256 mismatch: manifest says abab");
}

#[test]
fn each_required_export_missing() {
    for (export, needle) in [
        (
            r#"(export "memory")"#,
            "missing required exports: `memory` (memory)",
        ),
        (
            r#"(export "pulp_alloc")"#,
            "missing required exports: `pulp_alloc` (i32) -> i32",
        ),
        (
            r#"(export "pulp_init")"#,
            "missing required exports: `pulp_init` (i32, i32) -> i32",
        ),
        (
            r#"(export "pulp_step")"#,
            "missing required exports: `pulp_step` (i32, i32) -> i32",
        ),
        (
            r#"(export "pulp_shutdown")"#,
            "missing required exports: `pulp_shutdown` () -> i32",
        ),
    ] {
        let p = ScratchPlugin::wat("p", &healthy().replace(export, ""), "");
        refused(&p, needle);
    }
    // Every missing export is listed, not just the first.
    let bare = "(module (memory (export \"memory\") 1))";
    refused(
        &ScratchPlugin::wat("p", bare, ""),
        "`pulp_alloc` (i32) -> i32, `pulp_init`",
    );
}

#[test]
fn export_with_a_wrong_signature() {
    let wat = healthy().replace(
        r#"(func (export "pulp_shutdown") (result i32) (i32.const 0))"#,
        r#"(func (export "pulp_shutdown") (param i32))"#,
    );
    refused(
        &ScratchPlugin::wat("p", &wat, ""),
        "export `pulp_shutdown` has the wrong signature: expected func () -> i32, module has func (i32) -> ()",
    );
}

#[test]
fn import_from_an_unknown_module() {
    let wat = wat_plugin(
        r#"(import "env" "now" (func (result i64)))"#,
        "(i32.const 0)",
        "",
    );
    refused(
        &ScratchPlugin::wat("p", &wat, ""),
        "import `env::now` is from unknown module `env`",
    );
}

#[test]
fn unknown_pulp_import() {
    let wat = wat_plugin(r#"(import "pulp" "teleport" (func))"#, "(i32.const 0)", "");
    refused(
        &ScratchPlugin::wat("p", &wat, ""),
        "import `pulp::teleport` is not provided by any capability",
    );
}

#[test]
fn import_with_a_wrong_signature() {
    let wat = wat_plugin(
        r#"(import "pulp" "log" (func (param i32)))"#,
        "(i32.const 0)",
        "",
    );
    refused(
        &ScratchPlugin::wat("p", &wat, ""),
        "import `pulp::log` has the wrong signature: expected func (i32, i32, i32) -> i32, module has func (i32) -> ()",
    );
}

#[test]
fn problems_in_several_manifests_are_all_reported() {
    let a = ScratchPlugin::wat("a", &healthy(), r#"capabilities = ["nope"]"#);
    let b = ScratchPlugin::wat("b", &healthy().replace(r#"(export "pulp_step")"#, ""), "");
    let out = run_pulp(&["check", a.arg(), b.arg()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        all.contains("unknown capability `nope`") && all.contains("`pulp_step`"),
        "{all}"
    );
}
