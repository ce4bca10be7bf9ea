//! The hostile corpus (issue 6): small broken or malicious WebAssembly modules,
//! inline WAT, one per case, and exactly what the host does with each.
//!
//! - **Load time**: exports with wrong signatures, imports from unknown
//!   modules, every `pulp` import of every capability with a wrong signature
//!   (taken from the registry, so a new capability is covered by itself), and
//!   gated imports the manifest does not declare (bound to stubs returning 99).
//!   Each is refused by `Host::prepare` with a message naming the problem.
//! - **Run time**, through the library: traps in every export, endless loops
//!   stopped at the call budget, memory bombs stopped at the memory limit,
//!   unbounded recursion, a `pulp_alloc` that lies, a `pulp_output` pointing
//!   outside memory. Each ends in a [`PluginFault`] naming the export, the call
//!   number and the kind of fault.
//! - **Host imports**: every import called with pointers outside memory,
//!   lengths of 0xFFFFFFFF, bad out-addresses and malformed MessagePack returns
//!   its error code, and never writes outside the range it was given.
//! - **The `pulp` binary**: the run-time cases all at once beside heartbeat,
//!   which keeps stepping, and a summary naming each failure; and the echo
//!   plugin answering HTTP while hostile plugins fail and restart over and over.
//!
//! Throughout, a healthy plugin in the same host keeps working after every fault.

use pulp_abi::http::{HttpResponse, HttpRoute};
use pulp_abi::sqlite::Value;
use pulp_abi::Code;
use pulp_ext::{EventRejected, EventSink, ImportSpec, ValKind};
use pulp_host::caps::{HttpCapability, SqliteCapability};
use pulp_host::check::ImportBinding;
use pulp_host::manifest::defaults;
use pulp_host::{
    FaultKind, Gate, Host, LoadError, Plugin, PluginFault, PluginStatus, PluginSummary,
    PreparedPlugin, RunOptions,
};
use pulp_integration::http_client::{request, wait_until_serving};
use pulp_integration::{
    manifest, plugin_wasm, run_pulp, summary_count, summary_line, text, wat_plugin, RunningPulp,
    ScratchPlugin,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Constants and helpers
// ---------------------------------------------------------------------------

/// Name of every hostile plugin loaded through the library.
const HOSTILE: &str = "hostile";
/// `wat_plugin`'s linear memory: `(memory 2)`.
const MEMORY: u32 = 2 * 65536;
/// Where `wat_plugin`'s `pulp_alloc` puts every envelope.
const ENVELOPE_AT: u32 = 1024;
/// Envelope header: `call_number u64 | wall_time u64 | payload_len u32`.
const HEADER: u32 = 20;
/// The default `limits.max_buffer_kb`, in bytes.
const MAX_BUFFER: u32 = defaults::MAX_BUFFER_KB * 1024;
/// The call budget the endless-loop cases run under.
const BUDGET_MS: u64 = 200;
/// wasmtime's text for `unreachable` (its `Trap::UnreachableCodeReached`).
const UNREACHABLE: &str = "wasm trap: wasm `unreachable` instruction executed";
/// wasmtime's text for a stack overflow (its `Trap::StackOverflow`).
const STACK_EXHAUSTED: &str = "wasm trap: call stack exhausted";

/// Never returns.
const LOOP: &str = "(loop $forever (br $forever))";
/// Grows memory one page at a time, forever.
const BOMB: &str = "(loop $more (drop (memory.grow (i32.const 1))) (br $more)) (i32.const 0)";
/// A step body that traps on call 3 (the call number is the envelope's first u64).
const TRAP_AT_CALL_3: &str =
    "(if (i64.eq (i64.load (local.get $ptr)) (i64.const 3)) (then unreachable)) (i32.const 0)";

/// `wat_plugin`'s exports, as written there, for replacing one of them.
const INIT_OK: &str = r#"(func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))"#;
const SHUTDOWN_OK: &str = r#"(func (export "pulp_shutdown") (result i32) (i32.const 0))"#;
const ALLOC_BODY: &str = "(if (result i32) (i32.gt_u (local.get $n) (i32.const 60000)) (then (i32.const 0)) (else (i32.const 1024))))";
const MEMORY_DECL: &str = r#"(memory (export "memory") 2)"#;

/// Hostile plugins never receive events.
struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _event: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

/// A plugin that does nothing, correctly.
fn healthy() -> String {
    wat_plugin("", "(i32.const 0)", "")
}

/// `wat` with `from` (which must occur exactly once) replaced by `to`.
fn replace_once(wat: &str, from: &str, to: &str) -> String {
    assert_eq!(
        wat.matches(from).count(),
        1,
        "{from:?} should occur once in\n{wat}"
    );
    wat.replacen(from, to, 1)
}

/// A healthy plugin whose `pulp_init` runs `body` (which leaves an i32).
fn init_doing(body: &str) -> String {
    replace_once(
        &healthy(),
        INIT_OK,
        &format!(r#"(func (export "pulp_init") (param i32 i32) (result i32) {body})"#),
    )
}

/// A healthy plugin whose `pulp_shutdown` runs `body` (which leaves an i32).
fn shutdown_doing(body: &str) -> String {
    replace_once(
        &healthy(),
        SHUTDOWN_OK,
        &format!(r#"(func (export "pulp_shutdown") (result i32) {body})"#),
    )
}

/// A plugin whose `pulp_step` runs `body` (locals `$ptr`, `$len`; leaves an i32).
fn step_doing(body: &str) -> String {
    wat_plugin("", body, "")
}

/// A healthy plugin whose `pulp_alloc` (param `$n`) runs `body` instead.
fn alloc_doing(body: &str) -> String {
    replace_once(&healthy(), ALLOC_BODY, &format!("{body})"))
}

/// A healthy plugin with extra module fields.
fn with_funcs(funcs: &str) -> String {
    wat_plugin("", "(i32.const 0)", funcs)
}

/// `wat` with the export `name` removed from its item and `field` added instead.
fn replace_export(wat: &str, name: &str, field: &str) -> String {
    let wat = replace_once(wat, &format!(r#"(export "{name}")"#), "");
    let end = wat.rfind(')').expect("a module");
    format!("{}  {field}\n)", &wat[..end])
}

/// Recurses without end from `pulp_step`.
fn recursion() -> String {
    wat_plugin(
        "",
        "(call $deeper (i32.const 0))",
        "(func $deeper (param $n i32) (result i32)
           (i32.add (i32.const 1) (call $deeper (i32.add (local.get $n) (i32.const 1)))))",
    )
}

/// Steps return handle 1, which `pulp_output` resolves to `len` bytes at `ptr`.
fn output_at(ptr: u32, len: u32) -> String {
    let packed = ((u64::from(ptr) << 32) | u64::from(len)) as i64;
    wat_plugin(
        "",
        "(i32.const 1)",
        &format!(r#"(func (export "pulp_output") (param i32) (result i64) (i64.const {packed}))"#),
    )
}

/// The expected fault of the plugin called `hostile`.
fn fault(export: &'static str, call_number: u64, kind: FaultKind) -> PluginFault {
    PluginFault {
        plugin: HOSTILE.to_string(),
        export,
        call_number,
        kind,
    }
}

fn trap(message: &str) -> FaultKind {
    FaultKind::Trap(message.to_string())
}

/// What the limiter says when a guest asks for `desired` bytes over `memory_mb`.
fn over_memory(desired: usize, memory_mb: usize) -> FaultKind {
    FaultKind::MemoryLimit(format!(
        "memory limit exceeded: guest asked for {desired} bytes, limit is {} bytes",
        memory_mb << 20
    ))
}

/// One host with every built-in capability and a scratch data directory.
struct Lab {
    host: Host,
    data: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let data = tempfile::tempdir().unwrap();
        let host = Host::builder()
            .gated(HttpCapability::new())
            .gated(SqliteCapability)
            .data_dir(data.path())
            .build()
            .unwrap();
        Lab { host, data }
    }

    /// Prepares `wat` under a manifest `name = <name>` plus `extra` TOML.
    fn load_as(&self, name: &str, wat: &str, extra: &str) -> Result<PreparedPlugin, LoadError> {
        let scratch = ScratchPlugin::wat(name, wat, extra);
        self.host.prepare(&scratch.manifest)
    }

    /// Prepares `wat` as the plugin `hostile`.
    fn load(&self, wat: &str, extra: &str) -> Result<PreparedPlugin, LoadError> {
        self.load_as(HOSTILE, wat, extra)
    }

    /// Asserts `wat` is refused at load time and returns the error text.
    fn refused(&self, wat: &str, extra: &str) -> String {
        match self.load(wat, extra) {
            Err(err @ LoadError::Rejected { .. }) => {
                let text = err.to_string();
                assert!(text.starts_with("plugin `hostile` ("), "{text}");
                text
            }
            Err(other) => panic!("refused for another reason: {other}\n{wat}"),
            Ok(_) => panic!("a hostile module was accepted:\n{wat}"),
        }
    }

    fn instantiate(&self, prepared: PreparedPlugin) -> Result<Plugin, PluginFault> {
        Plugin::instantiate(
            Arc::new(prepared),
            self.host.clock().clone(),
            Arc::new(NoEvents),
        )
    }

    /// A running instance of `wat`: instantiated, `pulp_init` done with no config.
    fn start(&self, wat: &str, extra: &str) -> Plugin {
        let prepared = self.load(wat, extra).unwrap_or_else(|e| panic!("{e}"));
        let mut plugin = self.instantiate(prepared).unwrap_or_else(|f| panic!("{f}"));
        plugin.init(&[]).unwrap_or_else(|f| panic!("{f}"));
        plugin
    }

    /// Instantiate, init, `steps` ticks, shutdown; the first fault ends it.
    fn lifecycle(&self, prepared: PreparedPlugin, steps: u64) -> Result<(), PluginFault> {
        let mut plugin = self.instantiate(prepared)?;
        plugin.init(&[])?;
        for _ in 0..steps {
            plugin.step(&[])?;
        }
        plugin.shutdown()
    }

    /// A healthy plugin in the same host still loads, steps and stops.
    fn assert_healthy(&self) {
        let prepared = self
            .load_as("healthy", &healthy(), "")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut plugin = self.instantiate(prepared).unwrap_or_else(|f| panic!("{f}"));
        plugin.init(&[]).unwrap_or_else(|f| panic!("{f}"));
        for call in 1..=3 {
            let outcome = plugin
                .step(&[])
                .unwrap_or_else(|f| panic!("the healthy plugin failed: {f}"));
            assert_eq!((outcome.call_number, outcome.handle), (call, 0));
        }
        plugin.shutdown().unwrap_or_else(|f| panic!("{f}"));
    }

    /// Runs `hostile` on this thread while a healthy plugin of the same host
    /// ticks every 10 ms on its own; returns what `hostile` returned and the
    /// healthy plugin's summary.
    fn alongside<T>(&self, hostile: impl FnOnce() -> T) -> (T, PluginSummary) {
        let prepared = self
            .load_as("healthy", &healthy(), "tick_ms = 10")
            .unwrap_or_else(|e| panic!("{e}"));
        let (events, _received) = pulp_host::run_events(64, 1 << 20);
        let running = self
            .host
            .spawn(prepared, RunOptions::default(), events)
            .unwrap();
        let result = hostile();
        running.stop();
        let summary = running.join();
        assert_eq!(
            summary.status,
            PluginStatus::Stopped,
            "the healthy plugin did not stop cleanly"
        );
        (result, summary)
    }

    /// A running [`import_caller`] for `pulp.<import>`.
    fn caller(&self, import: &str, extra: &str) -> ImportCaller {
        let (_, spec) = self
            .host
            .registry()
            .import_owner(import)
            .unwrap_or_else(|| panic!("no capability provides pulp::{import}"));
        ImportCaller {
            plugin: self.start(&import_caller(&spec), extra),
            arity: spec.params.len() as u32,
        }
    }
}

/// A plugin whose `pulp_step` calls `pulp.<spec.name>` with the i32 arguments
/// found at the start of the step payload (u32 LE each) and returns the
/// import's code as its handle. `probe_tail` reads the last 8 bytes of memory,
/// to show what was (not) written there.
fn import_caller(spec: &ImportSpec) -> String {
    assert!(
        spec.params
            .iter()
            .chain(spec.results)
            .all(|k| *k == ValKind::I32)
            && spec.results.len() == 1,
        "pulp::{} is not (i32...) -> i32",
        spec.name
    );
    let params = vec!["i32"; spec.params.len()].join(" ");
    let args: String = (0..spec.params.len())
        .map(|i| {
            format!(
                " (i32.load offset={} (local.get $ptr))",
                HEADER as usize + 4 * i
            )
        })
        .collect();
    wat_plugin(
        &format!(
            r#"(import "pulp" "{}" (func $import (param {params}) (result i32)))"#,
            spec.name
        ),
        &format!("(call $import{args})"),
        &format!(
            r#"(func (export "probe_tail") (result i64) (i64.load (i32.const {})))"#,
            MEMORY - 8
        ),
    )
}

/// An [`import_caller`] instance.
struct ImportCaller {
    plugin: Plugin,
    arity: u32,
}

impl ImportCaller {
    /// Where the `data` passed to [`ImportCaller::call`] lands in guest memory.
    fn data_at(&self) -> u32 {
        ENVELOPE_AT + HEADER + 4 * self.arity
    }

    /// Calls the import with `args`, `data` placed at [`ImportCaller::data_at`].
    fn call(&mut self, args: &[u32], data: &[u8]) -> Code {
        assert_eq!(args.len() as u32, self.arity, "argument count");
        let mut payload: Vec<u8> = args.iter().flat_map(|a| a.to_le_bytes()).collect();
        payload.extend_from_slice(data);
        let outcome = self
            .plugin
            .step(&payload)
            .unwrap_or_else(|f| panic!("a bad import call failed the plugin: {f}"));
        Code::from_u32(outcome.handle as u32)
            .unwrap_or_else(|| panic!("{} is not an import code", outcome.handle))
    }

    /// Runs `cases` of (what, args, data, expected code).
    fn expect(&mut self, import: &str, cases: Vec<(&str, Vec<u32>, Vec<u8>, Code)>) {
        for (what, args, data, want) in cases {
            assert_eq!(
                self.call(&args, &data),
                want,
                "pulp::{import}: {what} (args {args:#x?})"
            );
        }
    }

    /// The last 8 bytes of guest memory, as an i64 LE.
    fn tail(&mut self) -> i64 {
        self.plugin
            .probes()
            .expect("probes")
            .into_iter()
            .find(|(name, _)| name == "probe_tail")
            .map(|(_, v)| v)
            .expect("probe_tail")
    }
}

/// `{method: 5, path: "/x"}`: a field of the wrong type.
#[derive(Serialize)]
struct NumericMethod {
    method: u32,
    path: &'static str,
}

/// `{method: "GET"}`: a required field missing.
#[derive(Serialize)]
struct MethodOnly {
    method: &'static str,
}

/// `{id: 1}`: a response without its status.
#[derive(Serialize)]
struct IdOnly {
    id: u64,
}

fn msgpack(value: &impl Serialize) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

/// A buffer's length as a guest `len` argument.
fn len32(bytes: &[u8]) -> u32 {
    bytes.len() as u32
}

/// `http_register`'s request for `GET <path>`.
fn route(path: &str) -> Vec<u8> {
    msgpack(&HttpRoute {
        method: "GET".into(),
        path: path.into(),
    })
}

/// `http_respond`'s request answering request 424242.
fn response(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    msgpack(&HttpResponse {
        id: 424_242,
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: b"hi".to_vec(),
    })
}

/// The text of a WAT function type with these params and results.
fn wat_func(params: &[&str], results: &[&str]) -> String {
    let mut ty = String::from("(func");
    if !params.is_empty() {
        ty.push_str(&format!(" (param {})", params.join(" ")));
    }
    if !results.is_empty() {
        ty.push_str(&format!(" (result {})", results.join(" ")));
    }
    ty.push(')');
    ty
}

fn kind_name(kind: ValKind) -> &'static str {
    match kind {
        ValKind::I32 => "i32",
        ValKind::I64 => "i64",
    }
}

// ---------------------------------------------------------------------------
// Load time: exports
// ---------------------------------------------------------------------------

#[test]
fn every_export_with_a_wrong_signature_is_refused_at_load() {
    let lab = Lab::new();
    // Required exports: the right one removed, a wrong one put in its place.
    for (export, wrong, expected) in [
        (
            "pulp_alloc",
            r#"(func (export "pulp_alloc") (param i64) (result i64) (i64.const 1024))"#,
            "export `pulp_alloc` has the wrong signature: expected func (i32) -> i32, module has func (i64) -> (i64)",
        ),
        (
            "pulp_init",
            r#"(func (export "pulp_init") (result i32) (i32.const 0))"#,
            "export `pulp_init` has the wrong signature: expected func (i32, i32) -> i32, module has func () -> (i32)",
        ),
        (
            "pulp_step",
            r#"(func (export "pulp_step") (param i32 i32) (result i64) (i64.const 0))"#,
            "export `pulp_step` has the wrong signature: expected func (i32, i32) -> i32, module has func (i32, i32) -> (i64)",
        ),
        (
            "pulp_step",
            r#"(global (export "pulp_step") i32 (i32.const 0))"#,
            "export `pulp_step` has the wrong signature: expected func (i32, i32) -> i32, module has a global",
        ),
        (
            "pulp_shutdown",
            r#"(func (export "pulp_shutdown"))"#,
            "export `pulp_shutdown` has the wrong signature: expected func () -> i32, module has func () -> ()",
        ),
        (
            "memory",
            r#"(global (export "memory") i32 (i32.const 0))"#,
            "export `memory` must be a memory, module has a global",
        ),
    ] {
        let wat = replace_export(&healthy(), export, wrong);
        let err = lab.refused(&wat, "");
        assert!(err.contains(expected), "expected {expected:?} in\n{err}");
    }
    // Optional exports: absent is fine, present with the wrong signature is not.
    for (wrong, expected) in [
        (
            r#"(func (export "pulp_output") (param i32) (result i32) (i32.const 0))"#,
            "export `pulp_output` has the wrong signature: expected func (i32) -> i64, module has func (i32) -> (i32)",
        ),
        (
            r#"(func (export "pulp_free") (param i32 i32) (result i32) (i32.const 0))"#,
            "export `pulp_free` has the wrong signature: expected func (i32, i32) -> (), module has func (i32, i32) -> (i32)",
        ),
        (
            r#"(func (export "_initialize") (param i32))"#,
            "export `_initialize` has the wrong signature: expected func () -> (), module has func (i32) -> ()",
        ),
    ] {
        let err = lab.refused(&with_funcs(wrong), "");
        assert!(err.contains(expected), "expected {expected:?} in\n{err}");
    }
    // Several at once: every one is reported, not just the first.
    let both = replace_export(
        &replace_export(
            &healthy(),
            "pulp_alloc",
            r#"(func (export "pulp_alloc") (param i64) (result i64) (i64.const 1024))"#,
        ),
        "pulp_shutdown",
        r#"(func (export "pulp_shutdown"))"#,
    );
    let err = lab.refused(&both, "");
    assert!(
        err.contains("export `pulp_alloc` has the wrong signature")
            && err.contains("; export `pulp_shutdown` has the wrong signature"),
        "{err}"
    );
    lab.assert_healthy();
}

// ---------------------------------------------------------------------------
// Load time: imports
// ---------------------------------------------------------------------------

#[test]
fn an_import_from_an_unknown_module_is_refused_at_load() {
    let lab = Lab::new();
    for (module, field, ty) in [
        ("env", "abort", "(func)"),
        // Old WASI, not preview 1.
        (
            "wasi_unstable",
            "fd_write",
            "(func (param i32 i32 i32 i32) (result i32))",
        ),
        // Module names are case-sensitive.
        ("Pulp", "log", "(func (param i32 i32 i32) (result i32))"),
        ("", "log", "(func (param i32 i32 i32) (result i32))"),
        ("env", "table", "(table 1 funcref)"),
    ] {
        let wat = wat_plugin(
            &format!(r#"(import "{module}" "{field}" {ty})"#),
            "(i32.const 0)",
            "",
        );
        let expected = format!(
            "import `{module}::{field}` is from unknown module `{module}`; plugins may import only from `pulp` and `wasi_snapshot_preview1`"
        );
        let err = lab.refused(&wat, "");
        assert!(err.contains(&expected), "expected {expected:?} in\n{err}");
    }
    // WASI imports are bound by the WASI linker, which refuses what preview 1 does not have.
    for (import, named) in [
        (
            r#"(import "wasi_snapshot_preview1" "not_a_call" (func))"#,
            "`wasi_snapshot_preview1::not_a_call`",
        ),
        (
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32)))"#,
            "`wasi_snapshot_preview1::fd_write`",
        ),
    ] {
        let err = lab.refused(&wat_plugin(import, "(i32.const 0)", ""), "");
        assert!(
            err.contains("linking failed") && err.contains(named),
            "{err}"
        );
    }
    lab.assert_healthy();
}

#[test]
fn every_pulp_import_with_a_wrong_signature_is_refused_at_load() {
    let lab = Lab::new();
    let mut covered = Vec::new();
    for entry in lab.host.registry().entries() {
        let cap = entry.capability.name();
        let declare = match entry.gate {
            Gate::Manifest => format!("capabilities = [\"{cap}\"]"),
            Gate::Always => String::new(),
        };
        for spec in entry.capability.imports() {
            covered.push(spec.name);
            let params: Vec<&str> = spec.params.iter().map(|k| kind_name(*k)).collect();
            let results: Vec<&str> = spec.results.iter().map(|k| kind_name(*k)).collect();
            let mut wrong = vec![
                // One parameter too many.
                ([params.clone(), vec!["i32"]].concat(), results.clone()),
                // An i64 code.
                (params.clone(), vec!["i64"]),
                // No code at all.
                (params.clone(), vec![]),
            ];
            if let Some((_, fewer)) = params.split_last() {
                // One parameter short.
                wrong.push((fewer.to_vec(), results.clone()));
            }
            wrong.retain(|(p, r)| (p, r) != (&params, &results));
            for (p, r) in wrong {
                let wat = wat_plugin(
                    &format!(r#"(import "pulp" "{}" {})"#, spec.name, wat_func(&p, &r)),
                    "(i32.const 0)",
                    "",
                );
                let expected = format!(
                    "import `pulp::{}` has the wrong signature: expected func {}, module has func ({}) -> ({})",
                    spec.name,
                    spec.signature(),
                    p.join(", "),
                    r.join(", ")
                );
                let err = lab.refused(&wat, &declare);
                assert!(err.contains(&expected), "expected {expected:?} in\n{err}");
            }
            // Not a function at all.
            let wat = wat_plugin(
                &format!(r#"(import "pulp" "{}" (global i32))"#, spec.name),
                "(i32.const 0)",
                "",
            );
            let expected = format!(
                "import `pulp::{}` has the wrong signature: expected func {}, module has a global",
                spec.name,
                spec.signature()
            );
            let err = lab.refused(&wat, &declare);
            assert!(err.contains(&expected), "expected {expected:?} in\n{err}");
        }
    }
    assert_eq!(
        covered,
        [
            "log",
            "entropy_fill",
            "http_register",
            "http_respond",
            "sqlite_exec",
            "sqlite_query"
        ]
    );
    lab.assert_healthy();
}

#[test]
fn an_undeclared_gated_import_is_a_stub_that_returns_99() {
    let lab = Lab::new();
    let mut covered = Vec::new();
    for entry in lab
        .host
        .registry()
        .entries()
        .iter()
        .filter(|e| e.gate == Gate::Manifest)
    {
        let cap = entry.capability.name().to_string();
        for spec in entry.capability.imports() {
            covered.push(spec.name);
            // No `capabilities = [...]`: loads, with a note and a stub binding.
            let prepared = lab
                .load(&import_caller(spec), "")
                .unwrap_or_else(|e| panic!("{e}"));
            let note = format!(
                "import `pulp::{}` needs capability `{cap}`, which the manifest does not declare: it is bound to a stub that returns 99",
                spec.name
            );
            assert!(
                prepared.report.notes.contains(&note),
                "expected {note:?} in {:?}",
                prepared.report.notes
            );
            let line = prepared
                .report
                .imports
                .iter()
                .find(|l| l.module == "pulp" && l.name == spec.name)
                .expect("the import is listed");
            assert_eq!(line.binding, ImportBinding::Stub(cap.clone()));
            // At run time the stub answers 99 whatever it is given, and reads nothing.
            let mut plugin = lab.instantiate(prepared).unwrap_or_else(|f| panic!("{f}"));
            plugin.init(&[]).unwrap_or_else(|f| panic!("{f}"));
            let mut caller = ImportCaller {
                plugin,
                arity: spec.params.len() as u32,
            };
            let n = spec.params.len();
            assert_eq!(
                caller.call(&vec![0; n], &[]),
                Code::NotGranted,
                "{}",
                spec.name
            );
            assert_eq!(
                caller.call(&vec![u32::MAX; n], &[]),
                Code::NotGranted,
                "{}",
                spec.name
            );
        }
    }
    assert_eq!(
        covered,
        [
            "http_register",
            "http_respond",
            "sqlite_exec",
            "sqlite_query"
        ]
    );
    assert!(
        !lab.data.path().join(HOSTILE).exists(),
        "a plugin without storage.sqlite got a data directory"
    );
    lab.assert_healthy();
}

// ---------------------------------------------------------------------------
// Run time: traps
// ---------------------------------------------------------------------------

#[test]
fn a_trap_anywhere_fails_the_plugin_naming_the_export_and_the_call() {
    let lab = Lab::new();
    // Each runs instantiate, init, three ticks and shutdown; the first fault ends it.
    for (what, wat, expected) in [
        (
            "a start function that traps",
            with_funcs("(func $boom unreachable) (start $boom)"),
            fault("instantiate", 0, trap(UNREACHABLE)),
        ),
        (
            "_initialize traps",
            with_funcs(r#"(func (export "_initialize") unreachable)"#),
            fault("_initialize", 0, trap(UNREACHABLE)),
        ),
        (
            "pulp_init traps",
            init_doing("unreachable"),
            fault("pulp_init", 0, trap(UNREACHABLE)),
        ),
        (
            "pulp_step traps on call 3",
            step_doing(TRAP_AT_CALL_3),
            fault("pulp_step", 3, trap(UNREACHABLE)),
        ),
        (
            "pulp_shutdown traps after three steps",
            shutdown_doing("unreachable"),
            fault("pulp_shutdown", 3, trap(UNREACHABLE)),
        ),
        (
            "a load outside memory",
            step_doing("(i32.load (i32.const -4))"),
            fault(
                "pulp_step",
                1,
                trap("wasm trap: out of bounds memory access"),
            ),
        ),
        (
            "a division by zero",
            step_doing("(i32.div_u (i32.const 1) (i32.sub (local.get $len) (local.get $len)))"),
            fault("pulp_step", 1, trap("wasm trap: integer divide by zero")),
        ),
        (
            "an indirect call through an empty table slot",
            wat_plugin(
                "",
                "(call_indirect (result i32) (i32.const 0))",
                "(table 1 funcref)",
            ),
            fault("pulp_step", 1, trap("wasm trap: uninitialized element")),
        ),
        (
            "unbounded recursion",
            recursion(),
            fault("pulp_step", 1, trap(STACK_EXHAUSTED)),
        ),
    ] {
        let prepared = lab.load(&wat, "").unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(lab.lifecycle(prepared, 3).err(), Some(expected), "{what}");
        lab.assert_healthy();
    }
    // A data segment past the end of memory fails instantiation.
    let wat = with_funcs(&format!(r#"(data (i32.const {}) "abcd")"#, MEMORY - 2));
    let prepared = lab.load(&wat, "").unwrap_or_else(|e| panic!("{e}"));
    let got = lab.lifecycle(prepared, 1).expect_err("a fault");
    assert_eq!((got.export, got.call_number), ("instantiate", 0), "{got}");
    assert!(
        matches!(&got.kind, FaultKind::Trap(m) if m.contains("out of bounds memory access")),
        "{got}"
    );
    assert_eq!(
        got.to_string(),
        format!("plugin `hostile`: instantiate (call 0): {}", got.kind)
    );
    lab.assert_healthy();
}

// ---------------------------------------------------------------------------
// Run time: endless loops
// ---------------------------------------------------------------------------

#[test]
fn an_endless_loop_is_stopped_within_twice_its_budget_while_another_plugin_steps() {
    let lab = Lab::new();
    let limits = format!("[limits]\ncall_timeout_ms = {BUDGET_MS}");
    let budget = Duration::from_millis(BUDGET_MS);
    let looping = format!("{LOOP} (i32.const 0)");
    for (export, wat, call_number) in [
        (
            "_initialize",
            with_funcs(&format!(r#"(func (export "_initialize") {LOOP})"#)),
            0,
        ),
        ("pulp_init", init_doing(&looping), 0),
        ("pulp_step", step_doing(&looping), 1),
        // One good step first, so the fault carries call number 1.
        ("pulp_shutdown", shutdown_doing(&looping), 1),
    ] {
        let prepared = lab.load(&wat, &limits).unwrap_or_else(|e| panic!("{e}"));
        let ((result, took), healthy) = lab.alongside(|| {
            let started = Instant::now();
            let result = lab.lifecycle(prepared, 1);
            (result, started.elapsed())
        });
        assert_eq!(
            result.err(),
            Some(fault(export, call_number, FaultKind::Timeout(budget))),
            "{export}"
        );
        // The epoch ticks every 5 ms: never early, and well within twice the budget.
        assert!(
            took >= budget - Duration::from_millis(5) && took < Duration::from_millis(450),
            "{export}: stopped after {took:?} on a {BUDGET_MS} ms budget"
        );
        assert!(
            healthy.steps >= 5,
            "{export}: the healthy plugin made only {} steps in {took:?}",
            healthy.steps
        );
    }
}

// ---------------------------------------------------------------------------
// Run time: memory
// ---------------------------------------------------------------------------

#[test]
fn memory_past_the_limit_fails_the_plugin_at_once() {
    let lab = Lab::new();
    let limits = "[limits]\nmemory_mb = 8";
    let page = 65536;
    for (what, wat, expected) in [
        (
            "memory.grow 1 page at a time, forever, in pulp_step",
            step_doing(BOMB),
            // 2 pages to start with; the 129th page is the first over 8 MiB.
            fault("pulp_step", 1, over_memory(129 * page, 8)),
        ),
        (
            "the same in pulp_init",
            init_doing(BOMB),
            fault("pulp_init", 0, over_memory(129 * page, 8)),
        ),
        (
            "one memory.grow of 1000 pages",
            step_doing("(drop (memory.grow (i32.const 1000))) (i32.const 0)"),
            fault("pulp_step", 1, over_memory(1002 * page, 8)),
        ),
    ] {
        let prepared = lab.load(&wat, limits).unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let got = lab.lifecycle(prepared, 1).err();
        // A memory fault, at once: not the 1 s call budget running out.
        assert_eq!(got, Some(expected), "{what}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{what}: took {:?}",
            started.elapsed()
        );
        lab.assert_healthy();
    }
    // A module that asks for more memory up front than its limit is refused at load.
    let huge = replace_once(&healthy(), MEMORY_DECL, r#"(memory (export "memory") 200)"#);
    let err = lab
        .load(&huge, limits)
        .err()
        .expect("refused at load")
        .to_string();
    assert!(
        err.contains(
            "memory `memory` starts at 200 pages (13107200 bytes), over limits.memory_mb = 8 MiB"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Run time: pulp_alloc
// ---------------------------------------------------------------------------

#[test]
fn a_lying_pulp_alloc_is_an_abi_fault() {
    let lab = Lab::new();
    let refused = |ptr: u32, len: u32| {
        FaultKind::Abi(format!(
            "pulp_alloc({len}) returned {ptr:#x}, not a usable range in {MEMORY} bytes of memory"
        ))
    };
    // {"name": "x"}: 8 bytes, so it cannot fit in the last 4 bytes either.
    let config = msgpack(&BTreeMap::from([("name", "x")]));
    assert_eq!(config.len(), 8);
    for (what, ptr) in [
        ("0", 0u32),
        // ptr + len wraps around in u32 arithmetic: a host adding in u32 would accept it.
        ("far out of range", 0xFFFF_FFF0),
        ("0xFFFFFFFF", u32::MAX),
        ("the end of memory", MEMORY),
        ("4 bytes before the end: ptr + len runs past it", MEMORY - 4),
    ] {
        let wat = alloc_doing(&format!("(i32.const {})", ptr as i32));
        // The step's envelope cannot be written.
        let mut plugin = lab.start(&wat, "");
        assert_eq!(
            plugin.step(&[]).err(),
            Some(fault("pulp_step", 1, refused(ptr, HEADER))),
            "{what}"
        );
        // Nor can a config for pulp_init.
        let prepared = lab.load(&wat, "").unwrap_or_else(|e| panic!("{e}"));
        let mut plugin = lab.instantiate(prepared).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(
            plugin.init(&config).err(),
            Some(fault("pulp_init", 0, refused(ptr, config.len() as u32))),
            "{what}"
        );
    }
    // An allocator that traps, or never returns, is the allocator's fault.
    let mut plugin = lab.start(&alloc_doing("unreachable"), "");
    assert_eq!(
        plugin.step(&[]).err(),
        Some(fault("pulp_alloc", 1, trap(UNREACHABLE)))
    );
    let limits = format!("[limits]\ncall_timeout_ms = {BUDGET_MS}");
    let mut plugin = lab.start(&alloc_doing(&format!("{LOOP} (i32.const 0)")), &limits);
    assert_eq!(
        plugin.step(&[]).err(),
        Some(fault(
            "pulp_alloc",
            1,
            FaultKind::Timeout(Duration::from_millis(BUDGET_MS))
        ))
    );
    lab.assert_healthy();
}

/// `sqlite_query("SELECT 1")` with results written through a `pulp_alloc`
/// whose behaviour the step payload picks: `mode u32 | ret u32`. Mode 0 is
/// honest (1024), 1 returns `ret`, 2 traps, 3 never returns. `probe_out`
/// reads the out-addresses (8 and 12) as one i64; `probe_tail` the last 8
/// bytes of memory.
const ALLOC_DURING_IMPORT: &str = r#"(module
  (import "pulp" "sqlite_query" (func $query (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $mode (mut i32) (i32.const 0))
  (global $ret (mut i32) (i32.const 0))
  (data (i32.const 4096) "SELECT 1")
  (func (export "pulp_alloc") (param $n i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 2)) (then unreachable))
    (if (i32.eq (global.get $mode) (i32.const 3)) (then (loop $forever (br $forever))))
    (if (result i32) (global.get $mode) (then (global.get $ret)) (else (i32.const 1024))))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param $ptr i32) (param $len i32) (result i32)
    (local $code i32)
    (global.set $mode (i32.load offset=20 (local.get $ptr)))
    (global.set $ret (i32.load offset=24 (local.get $ptr)))
    (local.set $code
      (call $query (i32.const 4096) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 12)))
    (global.set $mode (i32.const 0))
    (local.get $code))
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
  (func (export "probe_out") (result i64) (i64.load (i32.const 8)))
  (func (export "probe_tail") (result i64) (i64.load (i32.const 131064))))"#;

fn alloc_mode(mode: u32, ret: u32) -> Vec<u8> {
    [mode.to_le_bytes(), ret.to_le_bytes()].concat()
}

#[test]
fn a_lying_pulp_alloc_during_an_import_is_code_7() {
    let lab = Lab::new();
    let sqlite = r#"capabilities = ["storage.sqlite"]"#;
    let mut plugin = lab.start(ALLOC_DURING_IMPORT, sqlite);
    for (what, ret) in [
        ("0", 0u32),
        ("far out of range", 0xFFFF_FFF0),
        ("the end of memory", MEMORY),
        ("4 bytes before the end: ptr + len runs past it", MEMORY - 4),
    ] {
        let outcome = plugin
            .step(&alloc_mode(1, ret))
            .unwrap_or_else(|f| panic!("{what}: {f}"));
        assert_eq!(
            Code::from_u32(outcome.handle as u32),
            Some(Code::AllocFailed),
            "{what}"
        );
    }
    // Nothing was written: not the out-addresses, not the bytes before the end.
    let probes = plugin.probes().expect("probes");
    assert_eq!(
        probes,
        [
            ("probe_out".to_string(), 0i64),
            ("probe_tail".to_string(), 0i64)
        ]
    );
    // The same plugin, honest again, gets its result.
    let outcome = plugin.step(&alloc_mode(0, 0)).unwrap();
    assert_eq!(Code::from_u32(outcome.handle as u32), Some(Code::Ok));
    let out = plugin.probes().expect("probes")[0].1 as u64;
    assert_eq!(out & 0xFFFF_FFFF, 1024, "result pointer written at 8");
    assert!(out >> 32 > 0, "result length written at 12");

    // An allocator that traps or hangs inside the import fails the step itself.
    let mut plugin = lab.start(ALLOC_DURING_IMPORT, sqlite);
    assert_eq!(
        plugin.step(&alloc_mode(2, 0)).err(),
        Some(fault("pulp_step", 1, trap(UNREACHABLE)))
    );
    drop(plugin);
    let limits = format!("{sqlite}\n[limits]\ncall_timeout_ms = {BUDGET_MS}");
    let mut plugin = lab.start(ALLOC_DURING_IMPORT, &limits);
    assert_eq!(
        plugin.step(&alloc_mode(3, 0)).err(),
        Some(fault(
            "pulp_step",
            1,
            FaultKind::Timeout(Duration::from_millis(BUDGET_MS))
        ))
    );
    lab.assert_healthy();
}

// ---------------------------------------------------------------------------
// Run time: pulp_output
// ---------------------------------------------------------------------------

#[test]
fn pulp_output_pointing_outside_memory_is_an_abi_fault() {
    let lab = Lab::new();
    let outside = |ptr: u32, len: u32, max: u32| {
        FaultKind::Abi(format!(
            "output handle 1 resolved to {len} bytes at {ptr:#x}, outside {MEMORY} bytes of memory or over the {max}-byte limit"
        ))
    };
    for (what, ptr, len, extra, max) in [
        ("far out of range", 0xFFFF_FFF0u32, 16u32, "", MAX_BUFFER),
        ("running past the end", MEMORY - 8, 16, "", MAX_BUFFER),
        ("starting at the end", MEMORY, 1, "", MAX_BUFFER),
        ("len 0xFFFFFFFF", 0, u32::MAX, "", MAX_BUFFER),
        ("one byte more than memory", 0, MEMORY + 1, "", MAX_BUFFER),
        (
            "inside memory but over max_buffer_kb",
            0,
            2048,
            "[limits]\nmax_buffer_kb = 1",
            1024,
        ),
    ] {
        let mut plugin = lab.start(&output_at(ptr, len), extra);
        assert_eq!(
            plugin.step(&[]).err(),
            Some(fault("pulp_output", 1, outside(ptr, len, max))),
            "{what}"
        );
        lab.assert_healthy();
    }
    // The last 16 bytes of memory are fine; so is an empty output anywhere.
    let mut plugin = lab.start(&output_at(MEMORY - 16, 16), "");
    assert_eq!(plugin.step(&[]).unwrap().output, Some(vec![0; 16]));
    let mut plugin = lab.start(&output_at(0xFFFF_FFF0, 0), "");
    assert_eq!(plugin.step(&[]).unwrap().output, Some(Vec::new()));
    // A pulp_output that traps fails the step, naming pulp_output.
    let wat = wat_plugin(
        "",
        "(i32.const 1)",
        r#"(func (export "pulp_output") (param i32) (result i64) unreachable)"#,
    );
    let mut plugin = lab.start(&wat, "");
    assert_eq!(
        plugin.step(&[]).err(),
        Some(fault("pulp_output", 1, trap(UNREACHABLE)))
    );
}

// ---------------------------------------------------------------------------
// Host imports: ranges, lengths, out-addresses, MessagePack
// ---------------------------------------------------------------------------

#[test]
fn log_checks_the_message_range_and_the_buffer_limit() {
    let lab = Lab::new();
    let mut log = lab.caller("log", "");
    let at = log.data_at();
    let msg = b"hello from a hostile plugin".to_vec();
    let len = msg.len() as u32;
    log.expect(
        "log",
        vec![
            ("a good message", vec![2, at, len], msg.clone(), Code::Ok),
            (
                "an unknown level logs at error",
                vec![u32::MAX, at, len],
                msg.clone(),
                Code::Ok,
            ),
            (
                "ptr far out of range",
                vec![2, 0xFFFF_FFF0, 16],
                msg.clone(),
                Code::MemoryReadOutOfRange,
            ),
            (
                "ptr at the end",
                vec![2, MEMORY, 1],
                msg.clone(),
                Code::MemoryReadOutOfRange,
            ),
            (
                "running past the end",
                vec![2, MEMORY - 1, 2],
                msg.clone(),
                Code::MemoryReadOutOfRange,
            ),
            (
                "one byte more than memory",
                vec![2, 0, MEMORY + 1],
                msg.clone(),
                Code::MemoryReadOutOfRange,
            ),
            (
                "len 0xFFFFFFFF",
                vec![2, 0, u32::MAX],
                msg.clone(),
                Code::LimitExceeded,
            ),
            (
                "ptr and len 0xFFFFFFFF",
                vec![2, u32::MAX, u32::MAX],
                msg.clone(),
                Code::LimitExceeded,
            ),
            (
                "len one over max_buffer",
                vec![2, 0, MAX_BUFFER + 1],
                msg.clone(),
                Code::LimitExceeded,
            ),
            (
                "a good message again",
                vec![2, at, len],
                msg.clone(),
                Code::Ok,
            ),
        ],
    );
    // The manifest's max_buffer_kb is the limit.
    let mut log = lab.caller("log", "[limits]\nmax_buffer_kb = 1");
    log.expect(
        "log",
        vec![
            ("exactly max_buffer", vec![2, 0, 1024], vec![], Code::Ok),
            (
                "one over max_buffer",
                vec![2, 0, 1025],
                vec![],
                Code::LimitExceeded,
            ),
        ],
    );
    lab.assert_healthy();
}

#[test]
fn entropy_fill_writes_only_inside_memory() {
    let lab = Lab::new();
    let mut fill = lab.caller("entropy_fill", "");
    assert_eq!(fill.tail(), 0);
    fill.expect(
        "entropy_fill",
        vec![
            ("a good buffer", vec![8192, 32], vec![], Code::Ok),
            (
                "ptr far out of range",
                vec![0xFFFF_FFF0, 16],
                vec![],
                Code::MemoryWriteFailed,
            ),
            (
                "ptr 0xFFFFFFFF",
                vec![u32::MAX, 1],
                vec![],
                Code::MemoryWriteFailed,
            ),
            (
                "running past the end",
                vec![MEMORY - 4, 8],
                vec![],
                Code::MemoryWriteFailed,
            ),
            (
                "one byte more than memory",
                vec![0, MEMORY + 1],
                vec![],
                Code::MemoryWriteFailed,
            ),
            (
                "nothing, just past the end",
                vec![MEMORY + 1, 0],
                vec![],
                Code::MemoryWriteFailed,
            ),
            ("nothing, at the end", vec![MEMORY, 0], vec![], Code::Ok),
            (
                "len 0xFFFFFFFF",
                vec![0, u32::MAX],
                vec![],
                Code::LimitExceeded,
            ),
            (
                "ptr and len 0xFFFFFFFF",
                vec![u32::MAX, u32::MAX],
                vec![],
                Code::LimitExceeded,
            ),
            (
                "len one over max_buffer",
                vec![0, MAX_BUFFER + 1],
                vec![],
                Code::LimitExceeded,
            ),
        ],
    );
    // The range running past the end was refused whole: its first 4 bytes, in
    // memory, were not written either.
    assert_eq!(fill.tail(), 0);
    assert_eq!(fill.call(&[MEMORY - 8, 8], &[]), Code::Ok);
    assert_ne!(
        fill.tail(),
        0,
        "8 random bytes written at the end of memory"
    );
    lab.assert_healthy();
}

#[test]
fn http_register_and_http_respond_check_ranges_and_messagepack() {
    let lab = Lab::new();
    let http = r#"capabilities = ["transport.http.inbound"]"#;
    let mut register = lab.caller("http_register", http);
    let at = register.data_at();
    let good = route("/hostile");
    let cut = good[..good.len() - 3].to_vec();
    let numeric = msgpack(&NumericMethod {
        method: 5,
        path: "/x",
    });
    let method_only = msgpack(&MethodOnly { method: "GET" });
    let no_slash = route("no-slash");
    register.expect(
        "http_register",
        vec![
            (
                "ptr far out of range",
                vec![0xFFFF_FFF0, len32(&good)],
                good.clone(),
                Code::MemoryReadOutOfRange,
            ),
            (
                "running past the end",
                vec![MEMORY - 1, 2],
                good.clone(),
                Code::MemoryReadOutOfRange,
            ),
            (
                "len 0xFFFFFFFF",
                vec![at, u32::MAX],
                good.clone(),
                Code::LimitExceeded,
            ),
            (
                "len one over max_buffer",
                vec![at, MAX_BUFFER + 1],
                good.clone(),
                Code::LimitExceeded,
            ),
            ("len 0", vec![at, 0], good.clone(), Code::EmptyInput),
            (
                "not MessagePack",
                vec![at, 1],
                vec![0xc1],
                Code::DecodeFailed,
            ),
            (
                "cut short",
                vec![at, len32(&cut)],
                cut.clone(),
                Code::DecodeFailed,
            ),
            (
                "an integer, not a map",
                vec![at, 1],
                vec![0x05],
                Code::DecodeFailed,
            ),
            (
                "a field of the wrong type",
                vec![at, len32(&numeric)],
                numeric.clone(),
                Code::DecodeFailed,
            ),
            (
                "a field missing",
                vec![at, len32(&method_only)],
                method_only.clone(),
                Code::DecodeFailed,
            ),
            (
                "decodes, but not a path",
                vec![at, len32(&no_slash)],
                no_slash.clone(),
                Code::InvalidArgument,
            ),
            (
                "a good route",
                vec![at, len32(&good)],
                good.clone(),
                Code::Ok,
            ),
        ],
    );

    let mut respond = lab.caller("http_respond", http);
    let at = respond.data_at();
    let nobody_waits = response(200, &[("x-a", "b")]);
    let bad_status = response(0, &[]);
    let bad_header = response(200, &[("bad header", "x")]);
    let cut = nobody_waits[..nobody_waits.len() - 1].to_vec();
    let id_only = msgpack(&IdOnly { id: 1 });
    respond.expect(
        "http_respond",
        vec![
            (
                "ptr far out of range",
                vec![0xFFFF_FFF0, 16],
                vec![],
                Code::MemoryReadOutOfRange,
            ),
            (
                "running past the end",
                vec![MEMORY - 1, 2],
                vec![],
                Code::MemoryReadOutOfRange,
            ),
            (
                "len 0xFFFFFFFF",
                vec![at, u32::MAX],
                vec![],
                Code::LimitExceeded,
            ),
            ("len 0", vec![at, 0], vec![], Code::EmptyInput),
            (
                "not MessagePack",
                vec![at, 2],
                vec![0xc1, 0xc1],
                Code::DecodeFailed,
            ),
            (
                "cut short",
                vec![at, len32(&cut)],
                cut.clone(),
                Code::DecodeFailed,
            ),
            (
                "no status",
                vec![at, len32(&id_only)],
                id_only.clone(),
                Code::DecodeFailed,
            ),
            (
                "status 0",
                vec![at, len32(&bad_status)],
                bad_status.clone(),
                Code::InvalidArgument,
            ),
            (
                "a header that is not HTTP",
                vec![at, len32(&bad_header)],
                bad_header.clone(),
                Code::InvalidArgument,
            ),
            // Decodes and is valid; no request 424242 is waiting for this plugin.
            (
                "a well-formed response",
                vec![at, len32(&nobody_waits)],
                nobody_waits.clone(),
                Code::NotFound,
            ),
        ],
    );
    // The first plugin is unharmed: it registers another route.
    let again = route("/hostile/again");
    let at = register.data_at();
    assert_eq!(register.call(&[at, len32(&again)], &again), Code::Ok);
    lab.assert_healthy();
}

#[test]
fn sqlite_exec_and_sqlite_query_check_every_pointer_and_out_address() {
    let lab = Lab::new();
    for import in ["sqlite_exec", "sqlite_query"] {
        let mut sql = lab.caller(import, r#"capabilities = ["storage.sqlite"]"#);
        let at = sql.data_at();
        let query = b"SELECT ?1".to_vec();
        let params = rmp_serde::to_vec(&[Value::Int(7)]).unwrap();
        let (q, ql) = (at, query.len() as u32);
        let (p, pl) = (at + ql, params.len() as u32);
        let good = [query.clone(), params.clone()].concat();
        let with_params = |bad: Vec<u8>| [query.clone(), bad].concat();
        let not_utf8 = [vec![0xff, 0xfe], params.clone()].concat();
        sql.expect(
            import,
            vec![
                (
                    "a good call",
                    vec![q, ql, p, pl, 8, 12],
                    good.clone(),
                    Code::Ok,
                ),
                // The SQL text.
                (
                    "sql far out of range",
                    vec![0xFFFF_FFF0, ql, p, pl, 8, 12],
                    good.clone(),
                    Code::MemoryReadOutOfRange,
                ),
                (
                    "sql running past the end",
                    vec![MEMORY - 4, ql, p, pl, 8, 12],
                    good.clone(),
                    Code::MemoryReadOutOfRange,
                ),
                (
                    "sql len 0xFFFFFFFF",
                    vec![q, u32::MAX, p, pl, 8, 12],
                    good.clone(),
                    Code::LimitExceeded,
                ),
                (
                    "sql and len 0xFFFFFFFF",
                    vec![u32::MAX, u32::MAX, p, pl, 8, 12],
                    good.clone(),
                    Code::LimitExceeded,
                ),
                (
                    "no sql",
                    vec![q, 0, p, pl, 8, 12],
                    good.clone(),
                    Code::EmptyInput,
                ),
                (
                    "sql not UTF-8",
                    vec![q, 2, q + 2, pl, 8, 12],
                    not_utf8.clone(),
                    Code::DecodeFailed,
                ),
                // The parameters.
                (
                    "params far out of range",
                    vec![q, ql, 0xFFFF_FFF0, pl, 8, 12],
                    good.clone(),
                    Code::MemoryReadOutOfRange,
                ),
                (
                    "params running past the end",
                    vec![q, ql, MEMORY - 1, pl, 8, 12],
                    good.clone(),
                    Code::MemoryReadOutOfRange,
                ),
                (
                    "params len 0xFFFFFFFF",
                    vec![q, ql, p, u32::MAX, 8, 12],
                    good.clone(),
                    Code::LimitExceeded,
                ),
                (
                    "params not MessagePack",
                    vec![q, ql, p, 1, 8, 12],
                    with_params(vec![0xc1]),
                    Code::DecodeFailed,
                ),
                (
                    "params a map, not an array",
                    vec![q, ql, p, 1, 8, 12],
                    with_params(vec![0x80]),
                    Code::DecodeFailed,
                ),
                (
                    "params an array holding an array",
                    vec![q, ql, p, 2, 8, 12],
                    with_params(vec![0x91, 0x90]),
                    Code::DecodeFailed,
                ),
                (
                    "params cut short",
                    vec![q, ql, p, 2, 8, 12],
                    with_params(vec![0x92, 0x07]),
                    Code::DecodeFailed,
                ),
                // The out-addresses of the result's (ptr, len).
                (
                    "ptr out-address far out of range",
                    vec![q, ql, p, pl, 0xFFFF_FFF0, 12],
                    good.clone(),
                    Code::MemoryWriteFailed,
                ),
                (
                    "len out-address running past the end",
                    vec![q, ql, p, pl, 8, MEMORY - 2],
                    good.clone(),
                    Code::MemoryWriteFailed,
                ),
                (
                    "both out-addresses 0xFFFFFFFF",
                    vec![q, ql, p, pl, u32::MAX, u32::MAX],
                    good.clone(),
                    Code::MemoryWriteFailed,
                ),
                (
                    "a good call again",
                    vec![q, ql, p, pl, 8, 12],
                    good.clone(),
                    Code::Ok,
                ),
            ],
        );
        // No refused call wrote anything at the end of memory...
        assert_eq!(sql.tail(), 0, "{import}");
        // ...and out-addresses in the last 8 bytes are fine: (ptr, len) land there.
        assert_eq!(
            sql.call(&[q, ql, p, pl, MEMORY - 8, MEMORY - 4], &good),
            Code::Ok,
            "{import}"
        );
        let tail = sql.tail() as u64;
        assert_eq!(
            tail & 0xFFFF_FFFF,
            u64::from(ENVELOPE_AT),
            "{import}: result ptr"
        );
        assert!(tail >> 32 > 0, "{import}: result len");
    }
    lab.assert_healthy();
}

// ---------------------------------------------------------------------------
// The pulp binary: every run-time case at once, beside heartbeat
// ---------------------------------------------------------------------------

/// `pulp run --duration 2` with `hostiles` and heartbeat; asserts heartbeat
/// stepped the whole time and stopped cleanly. Returns the output and stdout.
fn run_beside_heartbeat(hostiles: &[ScratchPlugin]) -> (Output, String) {
    plugin_wasm("heartbeat");
    let data = tempfile::tempdir().unwrap();
    let heartbeat = manifest("heartbeat");
    let started = Instant::now();
    let mut args = vec![
        "run",
        "--duration",
        "2",
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    args.extend(hostiles.iter().map(ScratchPlugin::arg));
    args.push(heartbeat.to_str().unwrap());
    let out = run_pulp(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = summary_line(&stdout, "heartbeat");
    assert!(
        line.starts_with("heartbeat: stopped; "),
        "{line}\n{}",
        text(&out)
    );
    // 100 ms ticks for 2 s, whatever the others did.
    assert!(
        summary_count(line, "steps") >= 15,
        "heartbeat made only {} steps in {:?}\n{}",
        summary_count(line, "steps"),
        started.elapsed(),
        text(&out)
    );
    (out, stdout)
}

/// Asserts `plugin`'s summary line says it failed in `export` on `call` with `kind`.
fn assert_failed(stdout: &str, plugin: &str, export: &str, call: u64, kind: &FaultKind) {
    let line = summary_line(stdout, plugin);
    let expected = format!("{plugin}: failed ({export} call {call}: {kind}); steps=");
    assert!(
        line.starts_with(&expected),
        "expected {expected:?}\n     got {line:?}"
    );
}

#[test]
fn pulp_run_survives_every_step_time_fault_while_heartbeat_keeps_stepping() {
    let ticking = "tick_ms = 20";
    let hostiles = [
        ScratchPlugin::wat("step-trap", &step_doing(TRAP_AT_CALL_3), ticking),
        ScratchPlugin::wat(
            "step-loop",
            &step_doing(&format!("{LOOP} (i32.const 0)")),
            &format!("{ticking}\n[limits]\ncall_timeout_ms = {BUDGET_MS}"),
        ),
        ScratchPlugin::wat(
            "memory-bomb",
            &step_doing(BOMB),
            &format!("{ticking}\n[limits]\nmemory_mb = 8"),
        ),
        ScratchPlugin::wat("recursion", &recursion(), ticking),
        ScratchPlugin::wat("bad-alloc", &alloc_doing("(i32.const 0)"), ticking),
        ScratchPlugin::wat("bad-output", &output_at(0xFFFF_FFF0, 16), ticking),
        ScratchPlugin::wat("shutdown-trap", &shutdown_doing("unreachable"), ticking),
    ];
    let (out, stdout) = run_beside_heartbeat(&hostiles);
    assert!(
        out.status.success(),
        "step failures are not load failures: {}",
        text(&out)
    );
    assert_failed(&stdout, "step-trap", "pulp_step", 3, &trap(UNREACHABLE));
    assert_failed(
        &stdout,
        "step-loop",
        "pulp_step",
        1,
        &FaultKind::Timeout(Duration::from_millis(BUDGET_MS)),
    );
    assert_failed(
        &stdout,
        "memory-bomb",
        "pulp_step",
        1,
        &over_memory(129 * 65536, 8),
    );
    assert_failed(&stdout, "recursion", "pulp_step", 1, &trap(STACK_EXHAUSTED));
    assert_failed(
        &stdout,
        "bad-alloc",
        "pulp_step",
        1,
        &FaultKind::Abi(format!(
            "pulp_alloc({HEADER}) returned 0x0, not a usable range in {MEMORY} bytes of memory"
        )),
    );
    assert_failed(
        &stdout,
        "bad-output",
        "pulp_output",
        1,
        &FaultKind::Abi(format!(
            "output handle 1 resolved to 16 bytes at 0xfffffff0, outside {MEMORY} bytes of memory or over the {MAX_BUFFER}-byte limit"
        )),
    );
    // pulp_shutdown runs when the duration is up: its call number is the steps made.
    let steps = summary_count(summary_line(&stdout, "shutdown-trap"), "steps");
    assert!(steps > 0, "{stdout}");
    assert_failed(
        &stdout,
        "shutdown-trap",
        "pulp_shutdown",
        steps,
        &trap(UNREACHABLE),
    );
}

#[test]
fn pulp_run_survives_every_start_up_fault_while_heartbeat_keeps_stepping() {
    let hostiles = [
        ScratchPlugin::wat("init-trap", &init_doing("unreachable"), ""),
        ScratchPlugin::wat(
            "init-loop",
            &init_doing(&format!("{LOOP} (i32.const 0)")),
            &format!("[limits]\ncall_timeout_ms = {BUDGET_MS}"),
        ),
        ScratchPlugin::wat("init-bomb", &init_doing(BOMB), "[limits]\nmemory_mb = 8"),
        ScratchPlugin::wat(
            "initialize-trap",
            &with_funcs(r#"(func (export "_initialize") unreachable)"#),
            "",
        ),
        ScratchPlugin::wat(
            "start-trap",
            &with_funcs("(func $boom unreachable) (start $boom)"),
            "",
        ),
    ];
    let (out, stdout) = run_beside_heartbeat(&hostiles);
    // A plugin that never started makes the exit code 1; the run itself went on.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_failed(&stdout, "init-trap", "pulp_init", 0, &trap(UNREACHABLE));
    assert_failed(
        &stdout,
        "init-loop",
        "pulp_init",
        0,
        &FaultKind::Timeout(Duration::from_millis(BUDGET_MS)),
    );
    assert_failed(
        &stdout,
        "init-bomb",
        "pulp_init",
        0,
        &over_memory(129 * 65536, 8),
    );
    assert_failed(
        &stdout,
        "initialize-trap",
        "_initialize",
        0,
        &trap(UNREACHABLE),
    );
    assert_failed(&stdout, "start-trap", "instantiate", 0, &trap(UNREACHABLE));
    for name in [
        "init-trap",
        "init-loop",
        "init-bomb",
        "initialize-trap",
        "start-trap",
    ] {
        assert_eq!(
            summary_count(summary_line(&stdout, name), "steps"),
            0,
            "{name}"
        );
    }
}

/// The `restarts=` count of a summary line (0 when absent).
fn restarts_of(line: &str) -> u64 {
    line.split("restarts=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn echo_keeps_answering_http_while_hostile_plugins_fail_over_and_over() {
    plugin_wasm("echo");
    // Restarted after every failure, so they stay hostile for the whole test.
    let again = "tick_ms = 10\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 1000\nbackoff_ms = 1\nmax_backoff_ms = 1";
    let hostiles = [
        ScratchPlugin::wat(
            "step-loop",
            &step_doing(&format!("{LOOP} (i32.const 0)")),
            &format!("{again}\n[limits]\ncall_timeout_ms = {BUDGET_MS}"),
        ),
        ScratchPlugin::wat(
            "memory-bomb",
            &step_doing(BOMB),
            &format!("{again}\n[limits]\nmemory_mb = 8"),
        ),
        ScratchPlugin::wat("recursion", &recursion(), again),
        ScratchPlugin::wat("step-trap", &step_doing("unreachable"), again),
    ];
    let data = tempfile::tempdir().unwrap();
    let echo = manifest("echo");
    let mut manifests: Vec<&Path> = hostiles.iter().map(|p| p.manifest.as_path()).collect();
    manifests.push(&echo);
    let pulp = RunningPulp::start(&["--data-dir", data.path().to_str().unwrap()], &manifests);
    wait_until_serving(pulp.addr, "/echo/ready");
    let until = Instant::now() + Duration::from_millis(1500);
    let mut answered = 0;
    while Instant::now() < until {
        let msg = format!("n{answered}");
        let r = request(pulp.addr, "GET", &format!("/echo/{msg}"), &[], b"");
        assert_eq!((r.status, r.text()), (200, msg));
        answered += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answered >= 10, "only {answered} requests in 1.5 s");
    let out = pulp.stop();
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = summary_line(&stdout, "echo");
    assert!(line.starts_with("echo: stopped; "), "{line}");
    assert!(!line.contains("restarts="), "echo never failed: {line}");
    for (name, kind) in [
        (
            "step-loop",
            FaultKind::Timeout(Duration::from_millis(BUDGET_MS)),
        ),
        ("memory-bomb", over_memory(129 * 65536, 8)),
        ("recursion", trap(STACK_EXHAUSTED)),
        ("step-trap", trap(UNREACHABLE)),
    ] {
        // Each failure is logged with its reason as the plugin is restarted.
        let logged = format!("plugin `{name}`: pulp_step (call 1): {kind}; restart");
        assert!(all.contains(&logged), "expected {logged:?} in\n{all}");
        let line = summary_line(&stdout, name);
        assert!(restarts_of(line) >= 2, "{line}");
        // The stop finds it failed, or running again between two failures.
        let failed = format!("{name}: failed (pulp_step call 1: {kind}); steps=");
        assert!(
            line.starts_with(&failed) || line.starts_with(&format!("{name}: stopped; ")),
            "{line}"
        );
    }
}
