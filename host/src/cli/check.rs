//! `pulp check`: validate manifests and wasm without running them.

use crate::Host;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn check(host: &Host, manifests: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for path in manifests {
        let (report, _) = host.inspect(path);
        print!("{report}");
        ok &= report.ok();
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
