//! Compiled modules on disk, so a plugin starts without recompiling.
//!
//! An entry is named by the wasm's sha256 and the engine's compatibility hash
//! (wasmtime version, target, and every setting that changes machine code), so
//! a host built or configured differently never picks up another's code. Its
//! content is `sha256(artifact) | artifact`, checked before wasmtime sees it:
//! a truncated, corrupted or replaced entry is compiled again and rewritten,
//! never loaded.

use crate::manifest::hex;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// How a module was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid entry.
    Hit(PathBuf),
    /// Compiled and written to the cache.
    Stored(PathBuf),
    /// The entry was unusable (named in the reason); compiled and rewritten.
    Rebuilt(PathBuf, String),
}

/// A directory of compiled modules.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModuleCache { dir: dir.into() }
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
        let path = self.entry(engine, digest);
        let stale = match std::fs::read(&path) {
            Ok(bytes) => match verified(&bytes) {
                // SAFETY: `artifact` is exactly what `Module::serialize` wrote for an
                // engine with this compatibility hash (the entry's name), and its
                // sha256 matches the one stored with it, so it has not been altered.
                Some(artifact) => match unsafe { Module::deserialize(engine, artifact) } {
                    Ok(module) => return Ok((module, CacheOutcome::Hit(path))),
                    Err(e) => Some(format!("wasmtime refused it: {e}")),
                },
                None => Some("its checksum does not match".to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!("unreadable: {e}")),
        };
        let module = Module::new(engine, wasm)?;
        if let Err(e) = self.store(&path, &module) {
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

    fn entry(&self, engine: &Engine, digest: &[u8; 32]) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{}-{:016x}.cwasm", hex(digest), hasher.finish()))
    }

    fn store(&self, path: &Path, module: &Module) -> wasmtime::Result<()> {
        let artifact = module.serialize()?;
        let mut bytes = Sha256::digest(&artifact).to_vec();
        bytes.extend_from_slice(&artifact);
        std::fs::create_dir_all(&self.dir)?;
        // Write aside and rename, so a reader never sees half an entry.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// The artifact of an entry whose stored checksum matches.
fn verified(entry: &[u8]) -> Option<&[u8]> {
    let (sum, artifact) = entry.split_at_checked(32)?;
    (Sha256::digest(artifact).as_slice() == sum).then_some(artifact)
}
