//! `pulp caps`: the registry, capability by capability.

use pulp_host::Host;
use std::process::ExitCode;

pub fn caps(host: &Host) -> anyhow::Result<ExitCode> {
    for entry in host.registry().entries() {
        let cap = &entry.capability;
        println!("{} ({}): {}", cap.name(), entry.gate, cap.summary());
        for spec in cap.imports() {
            println!("  pulp::{} {}", spec.name, spec.signature());
        }
    }
    Ok(ExitCode::SUCCESS)
}
