//! Checking a plugin against the registry before it runs.
//!
//! Every problem is collected (not just the first), so `pulp check` shows the
//! whole picture and a plugin that passes here cannot hit an unknown import,
//! a missing export or an unknown capability at run time.

use crate::manifest::{Limits, Manifest};
use crate::registry::{Gate, Registered, Registry};
use pulp_abi::names;
use pulp_ext::{ImportSpec, PluginInfo, ValKind};
use std::fmt;
use std::time::Duration;
use wasmtime::{ExternType, Module};

const I32: ValKind = ValKind::I32;
const I64: ValKind = ValKind::I64;

/// Exports every plugin must have (besides `memory`), with their signatures.
pub const REQUIRED_EXPORTS: &[ImportSpec] = &[
    ImportSpec::new(names::ALLOC, &[I32], &[I32]),
    ImportSpec::new(names::INIT, &[I32, I32], &[I32]),
    ImportSpec::new(names::STEP, &[I32, I32], &[I32]),
    ImportSpec::new(names::SHUTDOWN, &[], &[I32]),
];

/// Exports a plugin may have; when present they must have these signatures.
pub const OPTIONAL_EXPORTS: &[ImportSpec] = &[
    ImportSpec::new(names::FREE, &[I32, I32], &[]),
    ImportSpec::new(names::OUTPUT, &[I32], &[I64]),
    ImportSpec::new(names::INITIALIZE, &[], &[]),
];

/// How one import of the module is satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportBinding {
    /// By the capability named.
    Capability(String),
    /// By the "not granted" stub of the capability named (the manifest does not declare it).
    Stub(String),
    /// By WASI preview 1.
    Wasi,
    /// By nothing: a problem.
    Unresolved,
}

/// One import of the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine {
    /// Import module.
    pub module: String,
    /// Import field.
    pub name: String,
    /// How it is bound.
    pub binding: ImportBinding,
}

/// What `pulp check` prints for one plugin.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Plugin name (or the manifest path when the manifest did not parse).
    pub plugin: String,
    /// Capabilities bound for the plugin and how.
    pub capabilities: Vec<(String, Gate)>,
    /// Every import of the module.
    pub imports: Vec<ImportLine>,
    /// Probe exports found.
    pub probes: Vec<String>,
    /// Limits that will apply, when the manifest parsed.
    pub limits: Option<(Limits, Duration)>,
    /// Informational lines: capability settings, stubbed imports, routes.
    pub notes: Vec<String>,
    /// Everything that stops the plugin from running.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when the plugin can run.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plugin {}: {}",
            self.plugin,
            if self.ok() { "ok" } else { "PROBLEMS" }
        )?;
        if !self.capabilities.is_empty() {
            let caps: Vec<String> = self
                .capabilities
                .iter()
                .map(|(n, g)| format!("{n} ({g})"))
                .collect();
            writeln!(f, "  capabilities: {}", caps.join(", "))?;
        }
        for line in &self.imports {
            let how = match &line.binding {
                ImportBinding::Capability(c) => format!("bound by {c}"),
                ImportBinding::Stub(c) => format!("STUB (returns 99): `{c}` not declared"),
                ImportBinding::Wasi => "WASI preview 1".to_string(),
                ImportBinding::Unresolved => "UNRESOLVED".to_string(),
            };
            writeln!(f, "  import {}::{}: {how}", line.module, line.name)?;
        }
        if !self.probes.is_empty() {
            writeln!(f, "  probes: {}", self.probes.join(", "))?;
        }
        if let Some((l, tick)) = &self.limits {
            writeln!(
                f,
                "  limits: memory {} MiB, call timeout {} ms, max buffer {} KiB, mailbox {}, table elements {}, fuel {}, tick {} ms, log {} lines/s (burst {}, {} bytes a line)",
                l.memory_bytes >> 20,
                l.call_timeout.as_millis(),
                l.max_buffer / 1024,
                l.mailbox,
                l.table_elements,
                l.fuel.map_or("unmetered".to_string(), |f| f.to_string()),
                tick.as_millis(),
                l.log.lines_per_sec,
                l.log.burst,
                l.log.line_bytes
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        for problem in &self.problems {
            writeln!(f, "  problem: {problem}")?;
        }
        Ok(())
    }
}

/// Checks `module` (from `manifest`) against `registry`; returns the report and
/// the capabilities to bind for real.
pub fn check_plugin(
    registry: &Registry,
    manifest: &Manifest,
    info: &PluginInfo,
    module: &Module,
) -> (CheckReport, Vec<Registered>) {
    let mut report = CheckReport {
        plugin: manifest.name.clone(),
        limits: Some((manifest.limits, manifest.tick)),
        ..CheckReport::default()
    };
    let mut granted: Vec<Registered> = Vec::new();

    for entry in registry.entries().iter().filter(|e| e.gate == Gate::Always) {
        granted.push(entry.clone());
    }
    for name in &manifest.capabilities {
        match registry.get(name) {
            None => report.problems.push(format!(
                "unknown capability `{name}`; this host knows: {}",
                registry.names().join(", ")
            )),
            Some(entry) if entry.gate == Gate::Always => {}
            Some(entry) => granted.push(entry.clone()),
        }
    }
    for entry in &granted {
        report
            .capabilities
            .push((entry.capability.name().to_string(), entry.gate));
        if entry.gate == Gate::Manifest {
            match entry.capability.prepare(info) {
                Ok(notes) => report.notes.extend(notes),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }
    for name in info.grants.keys() {
        if !manifest.capabilities.contains(name)
            && registry.get(name).is_none_or(|e| e.gate == Gate::Manifest)
        {
            report.problems.push(format!(
                "[grants.\"{name}\"] is set but `{name}` is not in `capabilities`"
            ));
        }
    }

    check_imports(registry, &granted, module, &mut report);
    check_exports(module, &mut report);
    if let Some(ExternType::Memory(memory)) = module.get_export(names::MEMORY) {
        let initial = memory.minimum().saturating_mul(65536);
        if initial > manifest.limits.memory_bytes as u64 {
            report.problems.push(format!(
                "memory `{}` starts at {} pages ({initial} bytes), over limits.memory_mb = {} MiB",
                names::MEMORY,
                memory.minimum(),
                manifest.limits.memory_bytes >> 20
            ));
        }
    }
    (report, granted)
}

/// Checks a bare module against the ABI and the registry, as `pulp inspect`
/// does: no manifest, so every capability counts as declared and the report
/// lists the capabilities the imports need.
pub fn inspect_module(registry: &Registry, name: &str, module: &Module) -> CheckReport {
    let mut report = CheckReport {
        plugin: name.to_string(),
        ..CheckReport::default()
    };
    check_imports(registry, registry.entries(), module, &mut report);
    check_exports(module, &mut report);
    for line in &report.imports {
        if let ImportBinding::Capability(cap) = &line.binding {
            if !report.capabilities.iter().any(|(c, _)| c == cap) {
                let gate = registry.get(cap).map_or(Gate::Manifest, |e| e.gate);
                report.capabilities.push((cap.clone(), gate));
            }
        }
    }
    report
}

/// Every export of `module` with its type, for `pulp inspect`.
pub fn exports_of(module: &Module) -> Vec<(String, String)> {
    module
        .exports()
        .map(|e| (e.name().to_string(), describe(&e.ty())))
        .collect()
}

fn check_imports(
    registry: &Registry,
    granted: &[Registered],
    module: &Module,
    report: &mut CheckReport,
) {
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        let binding = match m {
            names::IMPORT_MODULE => match (registry.import_owner(name), import.ty()) {
                (None, _) => {
                    report.problems.push(format!(
                        "import `{m}::{name}` is not provided by any capability of this host"
                    ));
                    ImportBinding::Unresolved
                }
                (Some((owner, spec)), ExternType::Func(ty)) if spec.matches(&ty) => {
                    let cap = owner.capability.name().to_string();
                    if granted.iter().any(|g| g.capability.name() == cap) {
                        ImportBinding::Capability(cap)
                    } else {
                        report.notes.push(format!(
                            "import `{m}::{name}` needs capability `{cap}`, which the manifest does not declare: it is bound to a stub that returns 99"
                        ));
                        ImportBinding::Stub(cap)
                    }
                }
                (Some((_, spec)), ty) => {
                    report.problems.push(format!(
                        "import `{m}::{name}` has the wrong signature: expected func {}, module has {}",
                        spec.signature(),
                        describe(&ty)
                    ));
                    ImportBinding::Unresolved
                }
            },
            names::WASI_MODULE => ImportBinding::Wasi,
            _ => {
                report.problems.push(format!(
                    "import `{m}::{name}` is from unknown module `{m}`; plugins may import only from `{}` and `{}`",
                    names::IMPORT_MODULE,
                    names::WASI_MODULE
                ));
                ImportBinding::Unresolved
            }
        };
        report.imports.push(ImportLine {
            module: m.to_string(),
            name: name.to_string(),
            binding,
        });
    }
}

fn check_exports(module: &Module, report: &mut CheckReport) {
    let mut missing = Vec::new();
    match module.get_export(names::MEMORY) {
        Some(ExternType::Memory(_)) => {}
        Some(other) => report.problems.push(format!(
            "export `{}` must be a memory, module has {}",
            names::MEMORY,
            describe(&other)
        )),
        None => missing.push(format!("`{}` (memory)", names::MEMORY)),
    }
    for spec in REQUIRED_EXPORTS.iter().chain(OPTIONAL_EXPORTS) {
        let required = REQUIRED_EXPORTS.contains(spec);
        match module.get_export(spec.name) {
            Some(ExternType::Func(ty)) if spec.matches(&ty) => {}
            Some(other) => report.problems.push(format!(
                "export `{}` has the wrong signature: expected func {}, module has {}",
                spec.name,
                spec.signature(),
                describe(&other)
            )),
            None if required => missing.push(format!("`{}` {}", spec.name, spec.signature())),
            None => {}
        }
    }
    if !missing.is_empty() {
        report
            .problems
            .push(format!("missing required exports: {}", missing.join(", ")));
    }
    for export in module.exports() {
        if let Some(probe) = export
            .name()
            .strip_prefix(names::PROBE_PREFIX)
            .map(|_| export.name())
        {
            let ok = matches!(export.ty(), ExternType::Func(ty)
                if ty.params().len() == 0 && ty.results().len() == 1
                    && ty.results().all(|r| matches!(r, wasmtime::ValType::I32 | wasmtime::ValType::I64)));
            if ok {
                report.probes.push(probe.to_string());
            } else {
                report.notes.push(format!(
                    "export `{probe}` is ignored: a probe must be `() -> i64` or `() -> i32`"
                ));
            }
        }
    }
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => {
            let list = |it: &mut dyn Iterator<Item = wasmtime::ValType>| {
                it.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            };
            format!(
                "func ({}) -> ({})",
                list(&mut f.params()),
                list(&mut f.results())
            )
        }
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Global(_) => "a global".into(),
        ExternType::Tag(_) => "a tag".into(),
    }
}
