//! The compiled-module cache: hits, and entries that are corrupt, truncated,
//! from a differently configured engine, or not written with this host's key
//! (a forged entry with a correct sha256, another host's entry, an entry moved
//! to another module's name) are never loaded.

use pulp_ext::{EventRejected, EventSink};
use pulp_host::module_cache::ModuleCache;
use pulp_host::{Host, Plugin, PreparedPlugin};
use pulp_integration::{manifest, plugin_wasm, wat_plugin, ScratchPlugin};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

/// The key file of the cache in `cache`: beside it, outside it, in a 0700 directory.
fn key_of(cache: &Path) -> PathBuf {
    cache.with_extension("key").join("module-cache.key")
}

fn host(cache: &Path, fuel: bool) -> Host {
    Host::builder()
        .module_cache_with(ModuleCache::new(cache).key_file(key_of(cache)))
        .fuel_metering(fuel)
        .build()
        .unwrap()
}

fn prepare(cache: &Path, fuel: bool) -> (Host, PreparedPlugin) {
    plugin_wasm("heartbeat");
    let host = host(cache, fuel);
    let prepared = host.prepare(&manifest("heartbeat")).unwrap();
    (host, prepared)
}

/// A cache directory (not yet created) in a scratch directory.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("modules");
    (dir, cache)
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
    let (_dir, cache) = scratch();
    let (_, first) = prepare(&cache, false);
    assert!(
        module_note(&first).starts_with("module: compiled, cached as "),
        "{}",
        module_note(&first)
    );
    assert_eq!(entries(&cache).len(), 1);
    let (host, second) = prepare(&cache, false);
    assert!(
        module_note(&second).starts_with("module: loaded from cache "),
        "{}",
        module_note(&second)
    );
    runs(&host, second);
}

#[test]
fn a_corrupt_or_truncated_entry_is_rebuilt_not_loaded() {
    let (_dir, cache) = scratch();
    prepare(&cache, false);
    let entry = entries(&cache).remove(0);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let (host, rebuilt) = prepare(&cache, false);
    assert!(
        module_note(&rebuilt).contains("rebuilt (its tag does not match this host's key)"),
        "{}",
        module_note(&rebuilt)
    );
    runs(&host, rebuilt);
    // The rewritten entry is good again.
    let (_, again) = prepare(&cache, false);
    assert!(module_note(&again).starts_with("module: loaded from cache"));

    std::fs::write(&entry, b"short").unwrap();
    let (host, rebuilt) = prepare(&cache, false);
    assert!(
        module_note(&rebuilt).contains("rebuilt"),
        "{}",
        module_note(&rebuilt)
    );
    runs(&host, rebuilt);
}

#[test]
fn an_engine_configured_differently_gets_its_own_entry() {
    let (_dir, cache) = scratch();
    prepare(&cache, false);
    let (host, metered) = prepare(&cache, true);
    assert!(
        module_note(&metered).starts_with("module: compiled, cached as "),
        "{}",
        module_note(&metered)
    );
    assert_eq!(
        entries(&cache).len(),
        2,
        "fuel metering changes the machine code, so the key"
    );
    runs(&host, metered);
}

/// A module with heartbeat's exports whose every step traps: if its code ran
/// in heartbeat's place, [`runs`] would fail.
fn impostor() -> Vec<u8> {
    wat::parse_str(wat_plugin("", "unreachable", "")).unwrap()
}

#[test]
fn a_forged_entry_with_a_correct_sha256_is_not_loaded() {
    let (_dir, cache) = scratch();
    let (host, _) = prepare(&cache, false);
    let entry = entries(&cache).remove(0);
    // The old format, `sha256(artifact) | artifact`, of another module's code
    // compiled by an identical engine: everything but the key is right.
    let artifact = wasmtime::Module::new(host.engine(), impostor())
        .unwrap()
        .serialize()
        .unwrap();
    let mut forged = Sha256::digest(&artifact).to_vec();
    forged.extend_from_slice(&artifact);
    std::fs::write(&entry, &forged).unwrap();
    let (host, rebuilt) = prepare(&cache, false);
    assert_eq!(
        module_note(&rebuilt),
        format!(
            "module: cache entry {} rebuilt (its tag does not match this host's key)",
            entry.display()
        )
    );
    runs(&host, rebuilt);
    assert_ne!(std::fs::read(&entry).unwrap(), forged, "rewritten");
}

#[test]
fn another_hosts_entry_or_an_entry_under_another_name_is_not_loaded() {
    // Another host (its own key) fills its cache; its entry is copied into ours.
    let (_theirs, their_cache) = scratch();
    prepare(&their_cache, false);
    let (_dir, cache) = scratch();
    prepare(&cache, false);
    let ours = entries(&cache).remove(0);
    std::fs::copy(entries(&their_cache).remove(0), &ours).unwrap();
    let (host, rebuilt) = prepare(&cache, false);
    assert!(
        module_note(&rebuilt).contains("rebuilt (its tag does not match this host's key)"),
        "{}",
        module_note(&rebuilt)
    );
    runs(&host, rebuilt);

    // Our own valid entry for another module, renamed to heartbeat's: the tag
    // covers the name, so it is refused too.
    let other = ScratchPlugin::new("other", &impostor(), "");
    host.prepare(&other.manifest).unwrap();
    let other_entry = entries(&cache).into_iter().find(|e| *e != ours).unwrap();
    std::fs::copy(&other_entry, &ours).unwrap();
    let (host, rebuilt) = prepare(&cache, false);
    assert!(
        module_note(&rebuilt).contains("rebuilt (its tag does not match this host's key)"),
        "{}",
        module_note(&rebuilt)
    );
    runs(&host, rebuilt);
}

#[test]
fn a_key_others_can_read_leaves_the_cache_unused() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, cache) = scratch();
    prepare(&cache, false);
    let key = key_of(&cache);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (host, prepared) = prepare(&cache, false);
    let note = module_note(&prepared);
    assert!(
        note.starts_with("module: compiled; module cache not used: key file ")
            && note.ends_with("has mode 644: others could read it"),
        "{note}"
    );
    runs(&host, prepared);
}
