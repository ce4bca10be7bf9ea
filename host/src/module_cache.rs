//! Compiled modules on disk, so a plugin starts without recompiling.
//!
//! An entry is named by the wasm's sha256 and the engine's compatibility hash
//! (wasmtime version, target, and every setting that changes machine code), so
//! a host built or configured differently never picks up another's code. Its
//! content is `tag | artifact`, where `tag` is HMAC-SHA256, under a key only
//! this host's user can read, of the entry's name and the artifact. The tag is
//! checked before wasmtime sees a byte of the artifact; an entry that fails it
//! (truncated, corrupted, written by anyone without the key, or moved from
//! another entry's name) is compiled again and rewritten, never loaded.
//!
//! # Threat model
//!
//! An entry is native code the host maps and runs, so loading one is trusting
//! whoever wrote it. The key (see [`key`]) lives outside the data directory,
//! in the host user's state directory, mode 0600. So:
//!
//! - Someone who can write `<data-dir>/.modules` but cannot read the key (a
//!   shared or group-writable data directory, a data directory restored from
//!   a backup or copied from another machine) cannot make the host run code:
//!   their entries are refused and recompiled from the wasm.
//! - Someone who can read the key, or act as the host's user, is not stopped:
//!   they can already run code as the host (replace its binary, ptrace it).
//! - The host trusts what it compiled itself: a wasmtime compiler bug is out of
//!   scope, and the wasm is checked separately (the manifest's `sha256`).
//!
//! When the key cannot be had or is not private, the cache is not used (every
//! start compiles) and the report says why.

mod key;

pub use key::{CacheKey, KEY_ENV};

use crate::manifest::hex;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use wasmtime::{Engine, Module};

/// Domain separation: the tag of nothing else made with this key can match.
const TAG_CONTEXT: &[u8] = b"pulp module cache v1\0";

/// How a module was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid entry.
    Hit(PathBuf),
    /// Compiled and written to the cache.
    Stored(PathBuf),
    /// The entry was unusable (named in the reason); compiled and rewritten.
    Rebuilt(PathBuf, String),
    /// Compiled; the cache was not used, for the reason given (no usable key).
    Unused(String),
}

/// A directory of compiled modules.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    key_file: Option<PathBuf>,
    key: Arc<OnceLock<Result<CacheKey, String>>>,
}

impl ModuleCache {
    /// A cache in `dir` (created when first written), keyed by the key file in
    /// its default place (`$PULP_MODULE_CACHE_KEY`, else under
    /// `$XDG_STATE_HOME/pulp/` or `~/.local/state/pulp/`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModuleCache {
            dir: dir.into(),
            key_file: key::default_path(),
            key: Arc::default(),
        }
    }

    /// The same cache keyed by `key_file` instead (created when missing). Keep
    /// it outside `dir`, where whoever can write entries cannot read it.
    pub fn key_file(self, key_file: impl Into<PathBuf>) -> Self {
        ModuleCache {
            key_file: Some(key_file.into()),
            key: Arc::default(),
            ..self
        }
    }

    /// The key, read or created on first use.
    fn key(&self) -> Result<&CacheKey, &str> {
        let key = self.key.get_or_init(|| {
            let path = self.key_file.as_deref().ok_or_else(|| {
                format!("no place for its key: set {KEY_ENV}, XDG_STATE_HOME or HOME")
            })?;
            key::load_or_create(path)
        });
        key.as_ref().map_err(String::as_str)
    }

    /// The module for `wasm`, whose sha256 is `digest`: from the cache when a
    /// valid entry exists, else compiled (and stored; a cache that cannot be
    /// written only costs the next start its time).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &[u8; 32],
    ) -> wasmtime::Result<(Module, CacheOutcome)> {
        let key = match self.key() {
            Ok(key) => key,
            Err(why) => {
                let why = format!("module cache not used: {why}");
                tracing::warn!("{why}");
                return Ok((Module::new(engine, wasm)?, CacheOutcome::Unused(why)));
            }
        };
        let (path, name) = self.entry(engine, digest);
        let stale = match std::fs::read(&path) {
            Ok(bytes) => match verified(key, &name, &bytes) {
                // SAFETY: `artifact` is exactly what `Module::serialize` wrote for an
                // engine with this compatibility hash and this wasm (the entry's name):
                // its tag over the name and the artifact was made with this host's
                // key, which only the host's user can read (module doc, threat model).
                Some(artifact) => match unsafe { Module::deserialize(engine, artifact) } {
                    Ok(module) => return Ok((module, CacheOutcome::Hit(path))),
                    Err(e) => Some(format!("wasmtime refused it: {e}")),
                },
                None => Some("its tag does not match this host's key".to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!("unreadable: {e}")),
        };
        let module = Module::new(engine, wasm)?;
        if let Err(e) = self.store(key, &path, &name, &module) {
            tracing::warn!(path = %path.display(), "module cache not written: {e}");
        }
        Ok(match stale {
            Some(reason) => {
                tracing::warn!(path = %path.display(), "module cache entry rebuilt: {reason}");
                (module, CacheOutcome::Rebuilt(path, reason))
            }
            None => (module, CacheOutcome::Stored(path)),
        })
    }

    /// The entry's path and its file name (which the tag covers).
    fn entry(&self, engine: &Engine, digest: &[u8; 32]) -> (PathBuf, String) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let name = format!("{}-{:016x}.cwasm", hex(digest), hasher.finish());
        (self.dir.join(&name), name)
    }

    fn store(
        &self,
        key: &CacheKey,
        path: &Path,
        name: &str,
        module: &Module,
    ) -> wasmtime::Result<()> {
        let artifact = module.serialize()?;
        let mut bytes = key.tag(&[TAG_CONTEXT, name.as_bytes(), &artifact]).to_vec();
        bytes.extend_from_slice(&artifact);
        std::fs::create_dir_all(&self.dir)?;
        // Write aside and rename, so a reader never sees half an entry.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// The artifact of an entry named `name` whose tag this host's key made.
fn verified<'a>(key: &CacheKey, name: &str, entry: &'a [u8]) -> Option<&'a [u8]> {
    let (tag, artifact) = entry.split_at_checked(32)?;
    let expected = key.tag(&[TAG_CONTEXT, name.as_bytes(), artifact]);
    key::same_tag(tag, &expected).then_some(artifact)
}
