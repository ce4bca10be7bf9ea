//! The module cache's secret: 32 random bytes in a file outside the data
//! directory, readable only by the host's user.
//!
//! Default place: `$PULP_MODULE_CACHE_KEY` when set, else
//! `$XDG_STATE_HOME/pulp/module-cache.key`, else
//! `$HOME/.local/state/pulp/module-cache.key`. Created once (directory 0700,
//! file 0600, atomically: written aside and hard-linked into place, so two
//! hosts starting together agree on one key). Refused, and the cache left
//! unused, when the file or its directory is not owned by the host's user or
//! can be written (the directory) or read (the file) by anyone else: whoever
//! could replace or read the key could forge entries.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The environment variable that names the key file.
pub const KEY_ENV: &str = "PULP_MODULE_CACHE_KEY";

/// A 32-byte HMAC-SHA256 key. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    /// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac_sha256(&self.0, parts)
    }
}

/// HMAC-SHA256 with a key of at most one block (64 bytes).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, k) in key.iter().take(64).enumerate() {
        inner_pad[i] ^= k;
        outer_pad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(inner_pad);
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(outer_pad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Equal, in time that does not depend on where two tags differ.
pub fn same_tag(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the key lives when the embedder does not say: see the module doc.
pub fn default_path() -> Option<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = env(KEY_ENV) {
        return Some(PathBuf::from(path));
    }
    let state = env("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".local/state")))?;
    Some(state.join("pulp").join("module-cache.key"))
}

/// The key at `path`, created when there is none; the error says why it cannot be used.
pub fn load_or_create(path: &Path) -> Result<CacheKey, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let say = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| say("cannot create the directory of", e))?;
    }
    private(dir, 0o022, "directory")?;
    match read_key(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create(path).map_err(|e| say("cannot create", e))?;
            read_key(path).map_err(|e| say("cannot read", e))
        }
        Err(e) => Err(say("cannot read", e)),
        Ok(key) => Ok(key),
    }
    .and_then(|key| private(path, 0o077, "file").map(|()| key))
}

/// Refuses `path` unless the host's user owns it and its mode has none of `forbidden`.
fn private(path: &Path, forbidden: u32, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "key {what} {} is owned by uid {}, not this user ({me})",
                path.display(),
                meta.uid()
            ));
        }
        if meta.mode() & forbidden != 0 {
            return Err(format!(
                "key {what} {} has mode {:o}: others could {} it",
                path.display(),
                meta.mode() & 0o777,
                if forbidden == 0o022 {
                    "replace the key in"
                } else {
                    "read"
                }
            ));
        }
    }
    let _ = (path, forbidden, what);
    Ok(())
}

fn read_key(path: &Path) -> std::io::Result<CacheKey> {
    let mut bytes = Vec::with_capacity(33);
    std::fs::File::open(path)?
        .take(33)
        .read_to_end(&mut bytes)?;
    let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} bytes, not 32", b.len()),
        )
    })?;
    Ok(CacheKey(key))
}

/// Writes a fresh key aside (mode 0600) and links it into place; a key
/// another host put there first is kept.
fn create(path: &Path) -> std::io::Result<()> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1 and 2 of RFC 4231.
        let tag = hmac_sha256(&[0x0b; 20], &[b"Hi ", b"There"]);
        assert_eq!(
            crate::manifest::hex(&tag),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(
            crate::manifest::hex(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(same_tag(&tag, &tag) && !same_tag(&tag, &[0; 32]));
    }

    #[test]
    fn the_key_is_created_once_private_and_refused_when_others_can_touch_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/pulp/module-cache.key");
        let key = load_or_create(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(load_or_create(&path).unwrap(), key, "created once");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.contains("has mode 644: others could read it"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let parent = path.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.contains("others could replace the key in it"), "{err}");
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)).unwrap();

        std::fs::write(&path, b"short").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.contains("5 bytes, not 32"), "{err}");
    }
}
