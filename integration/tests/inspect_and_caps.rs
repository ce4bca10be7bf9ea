//! `pulp inspect` on real and broken modules, and the README's capability
//! reference kept in sync with `pulp caps --markdown`.

use pulp_integration::{plugin_wasm, repo, run_pulp, text, wat_plugin};

#[test]
fn the_readme_capability_table_is_what_pulp_caps_markdown_prints() {
    let out = run_pulp(&["caps", "--markdown"]);
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let begin = "<!-- pulp caps --markdown: begin -->\n";
    let start = readme.find(begin).expect("README has the begin marker") + begin.len();
    let end = readme
        .find("<!-- pulp caps --markdown: end -->")
        .expect("README has the end marker");
    assert_eq!(
        &readme[start..end],
        generated,
        "README.md is out of date: paste the output of `pulp caps --markdown` between its markers"
    );
    for cap in [
        "logging",
        "entropy",
        "transport.http.inbound",
        "storage.sqlite",
    ] {
        assert!(generated.contains(&format!("| `{cap}` |")), "{generated}");
    }
}

#[test]
fn inspect_lists_exports_imports_and_the_capabilities_they_need() {
    let wasm = plugin_wasm("echo");
    let out = run_pulp(&["inspect", wasm.to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("echo.wasm: satisfies the Pulp ABI"), "{all}");
    assert!(
        all.contains("export pulp_step: func (i32, i32) -> (i32)"),
        "{all}"
    );
    assert!(
        all.contains("import pulp::http_register: capability transport.http.inbound"),
        "{all}"
    );
    assert!(
        all.contains("needs capabilities: logging (always), transport.http.inbound (gated)"),
        "{all}"
    );
}

#[test]
fn inspect_says_what_breaks_the_abi() {
    let dir = tempfile::tempdir().unwrap();
    let wat = wat_plugin(
        r#"(import "env" "now" (func (result i64)))"#,
        "(i32.const 0)",
        "",
    )
    .replace(r#"(export "pulp_step")"#, "");
    let file = dir.path().join("broken.wasm");
    std::fs::write(&file, wat::parse_str(wat).unwrap()).unwrap();
    let out = run_pulp(&["inspect", file.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("does NOT satisfy the Pulp ABI"), "{all}");
    assert!(all.contains("import env::now: UNRESOLVED"), "{all}");
    assert!(
        all.contains("missing required exports: `pulp_step` (i32, i32) -> i32"),
        "{all}"
    );
    std::fs::write(&file, b"not wasm").unwrap();
    let out = run_pulp(&["inspect", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("not a valid wasm module"),
        "{}",
        text(&out)
    );
}
