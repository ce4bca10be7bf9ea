//! The compiled-module cache: hits, and entries that are corrupt, truncated or
//! from a differently configured engine are never loaded.

use pulp_ext::{EventRejected, EventSink};
use pulp_host::{Host, Plugin, PreparedPlugin};
use pulp_integration::{manifest, plugin_wasm};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

fn prepare(cache: &Path, fuel: bool) -> (Host, PreparedPlugin) {
    plugin_wasm("heartbeat");
    let host = Host::builder()
        .module_cache(cache)
        .fuel_metering(fuel)
        .build()
        .unwrap();
    let prepared = host.prepare(&manifest("heartbeat")).unwrap();
    (host, prepared)
}

fn module_note(p: &PreparedPlugin) -> String {
    p.report
        .notes
        .iter()
        .find(|n| n.starts_with("module: "))
        .cloned()
        .unwrap_or_default()
}

fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all
}

/// The module works: five steps give heartbeat's first output.
fn runs(host: &Host, prepared: PreparedPlugin) {
    let config = prepared.manifest.config.clone();
    let mut plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents)).unwrap();
    plugin.init(&config).unwrap();
    let outputs: Vec<_> = (0..5)
        .filter_map(|_| plugin.step(&[]).unwrap().output)
        .collect();
    assert_eq!(outputs, [b"beat 5 (call 5)".to_vec()]);
}

#[test]
fn the_second_load_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = prepare(dir.path(), false);
    assert!(
        module_note(&first).starts_with("module: compiled, cached as "),
        "{}",
        module_note(&first)
    );
    assert_eq!(entries(dir.path()).len(), 1);
    let (host, second) = prepare(dir.path(), false);
    assert!(
        module_note(&second).starts_with("module: loaded from cache "),
        "{}",
        module_note(&second)
    );
    runs(&host, second);
}

#[test]
fn a_corrupt_or_truncated_entry_is_rebuilt_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), false);
    let entry = entries(dir.path()).remove(0);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let (host, rebuilt) = prepare(dir.path(), false);
    assert!(
        module_note(&rebuilt).contains("rebuilt (its checksum does not match)"),
        "{}",
        module_note(&rebuilt)
    );
    runs(&host, rebuilt);
    // The rewritten entry is good again.
    let (_, again) = prepare(dir.path(), false);
    assert!(module_note(&again).starts_with("module: loaded from cache"));

    std::fs::write(&entry, b"short").unwrap();
    let (host, rebuilt) = prepare(dir.path(), false);
    assert!(
        module_note(&rebuilt).contains("rebuilt"),
        "{}",
        module_note(&rebuilt)
    );
    runs(&host, rebuilt);
}

#[test]
fn an_engine_configured_differently_gets_its_own_entry() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), false);
    let (host, metered) = prepare(dir.path(), true);
    assert!(
        module_note(&metered).starts_with("module: compiled, cached as "),
        "{}",
        module_note(&metered)
    );
    assert_eq!(
        entries(dir.path()).len(),
        2,
        "fuel metering changes the machine code, so the key"
    );
    runs(&host, metered);
}
