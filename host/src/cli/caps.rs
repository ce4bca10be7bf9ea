//! `pulp caps`: the registry, capability by capability, as text or as the
//! Markdown table the README includes.

use crate::Host;
use std::process::ExitCode;

pub fn caps(host: &Host, markdown: bool) -> anyhow::Result<ExitCode> {
    if markdown {
        print!("{}", markdown_table(host));
        return Ok(ExitCode::SUCCESS);
    }
    for entry in host.registry().entries() {
        let cap = &entry.capability;
        println!("{} ({}): {}", cap.name(), entry.gate, cap.summary());
        for spec in cap.imports() {
            println!("  pulp::{} {}", spec.name, spec.signature());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The capability reference: one row per capability, its imports with signatures.
fn markdown_table(host: &Host) -> String {
    let mut out = String::from(
        "| capability | bound | imports (module `pulp`) | what it gives |\n|---|---|---|---|\n",
    );
    for entry in host.registry().entries() {
        let cap = &entry.capability;
        let imports: Vec<String> = cap
            .imports()
            .iter()
            .map(|s| format!("`{}{}`", s.name, s.signature()))
            .collect();
        let bound = match entry.gate {
            crate::Gate::Always => "always",
            crate::Gate::Manifest => "when declared",
        };
        out.push_str(&format!(
            "| `{}` | {bound} | {} | {} |\n",
            cap.name(),
            imports.join("<br>"),
            cap.summary()
        ));
    }
    out
}
