//! `pulp inspect FILE.wasm`: what a module exports and imports, which
//! capabilities its imports need, and whether it satisfies the ABI.

use crate::check::{exports_of, inspect_module, ImportBinding};
use crate::Host;
use std::path::Path;
use std::process::ExitCode;

pub fn inspect(host: &Host, file: &Path) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
    let module = wasmtime::Module::new(host.engine(), &bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid wasm module: {e:#}", file.display()))?;
    let report = inspect_module(host.registry(), &file.display().to_string(), &module);
    let verdict = if report.ok() {
        "satisfies the Pulp ABI"
    } else {
        "does NOT satisfy the Pulp ABI"
    };
    println!("module {}: {verdict}", report.plugin);
    for (name, ty) in exports_of(&module) {
        println!("  export {name}: {ty}");
    }
    for line in &report.imports {
        let how = match &line.binding {
            ImportBinding::Capability(c) | ImportBinding::Stub(c) => format!("capability {c}"),
            ImportBinding::Wasi => "WASI preview 1".to_string(),
            ImportBinding::Unresolved => "UNRESOLVED".to_string(),
        };
        println!("  import {}::{}: {how}", line.module, line.name);
    }
    let needs: Vec<String> = report
        .capabilities
        .iter()
        .map(|(c, g)| format!("{c} ({g})"))
        .collect();
    println!(
        "  needs capabilities: {}",
        if needs.is_empty() {
            "none".into()
        } else {
            needs.join(", ")
        }
    );
    if !report.probes.is_empty() {
        println!("  probes: {}", report.probes.join(", "));
    }
    for problem in &report.problems {
        println!("  problem: {problem}");
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
