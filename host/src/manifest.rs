//! The plugin manifest: a TOML file naming the wasm, the capabilities it may
//! use, its limits and its `[config]`.
//!
//! Parsing is strict: unknown keys are errors, and every error names the file,
//! the line (where TOML gives one) and the key.

use crate::config::config_to_msgpack;
use crate::restart::{RawRestart, RestartPolicy};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Tick interval when the manifest sets none (every Pulp v0.1 manifest).
pub const DEFAULT_TICK: Duration = Duration::from_millis(1000);

/// Limits applied when the manifest's `[limits]` is silent.
pub mod defaults {
    /// Linear memory per plugin.
    pub const MEMORY_MB: u32 = 64;
    /// Wall-clock budget of one `pulp_init` / `pulp_step` / `pulp_shutdown` call.
    pub const CALL_TIMEOUT_MS: u64 = 1_000;
    /// Largest buffer exchanged with the guest in one piece (envelope, output, result).
    pub const MAX_BUFFER_KB: u32 = 16 * 1024;
    /// Events queued for a plugin before producers are told it is full.
    pub const MAILBOX: u32 = 1_024;
    /// Elements a table may hold.
    pub const TABLE_ELEMENTS: u32 = 100_000;
}

/// A manifest that parsed and validated.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Path of the manifest file.
    pub path: PathBuf,
    /// Plugin name: unique per host, `[a-z0-9_-]`, names its data directory.
    pub name: String,
    /// Plugin version, free text.
    pub version: String,
    /// Absolute or manifest-relative path to the wasm module, resolved.
    pub wasm: PathBuf,
    /// Expected sha256 of the wasm file, lower-case hex.
    pub sha256: Option<String>,
    /// Declared capabilities: trimmed, lower-case, without duplicates, in order.
    pub capabilities: Vec<String>,
    /// Pulp v0.1 metadata, kept and reported, not acted upon.
    pub provides: Vec<String>,
    /// Pulp v0.1 metadata, kept and reported, not acted upon.
    pub consumes: Vec<String>,
    /// Pulp v0.1 metadata, kept and reported, not acted upon.
    pub shared_memory_groups: Vec<String>,
    /// Pulp v0.1: every plugin here runs on a thread of its own, so this is always true in effect.
    pub dedicated_thread: bool,
    /// Pulp v0.1 metadata, kept and reported, not acted upon.
    pub snapshotable: bool,
    /// Interval between tick steps.
    pub tick: Duration,
    /// Resource limits.
    pub limits: Limits,
    /// What happens after a failure.
    pub restart: RestartPolicy,
    /// Per-capability settings, `[grants."<capability>"]`.
    pub grants: BTreeMap<String, toml::Table>,
    /// `[config]` encoded as MessagePack; empty when the table is absent or empty.
    pub config: Vec<u8>,
}

/// `[limits]` with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory, bytes.
    pub memory_bytes: usize,
    /// Budget of one guest call.
    pub call_timeout: Duration,
    /// Largest buffer exchanged with the guest, bytes.
    pub max_buffer: u32,
    /// Mailbox capacity, events.
    pub mailbox: usize,
    /// Elements any one table may hold (function references for indirect calls).
    pub table_elements: usize,
    /// Fuel (wasm instructions, roughly) per guest call, for budgets that do not
    /// depend on machine speed; `None` = wall-clock budget only.
    pub fuel: Option<u64>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("{file}: cannot read manifest: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, unknown key, missing key or a value of the wrong type.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A key whose value is well-typed but not acceptable.
    #[error("{file}:{line}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// The wasm file named by the manifest is missing, unreadable, not wasm, or has the wrong hash.
    #[error("{file}: key `wasm` ({wasm}): {message}")]
    Wasm {
        file: PathBuf,
        wasm: PathBuf,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    version: Spanned<String>,
    wasm: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    provides: Vec<String>,
    #[serde(default)]
    consumes: Vec<String>,
    #[serde(default)]
    shared_memory_groups: Vec<String>,
    #[serde(default)]
    dedicated_thread: bool,
    #[serde(default)]
    snapshotable: bool,
    tick_ms: Option<Spanned<u64>>,
    #[serde(default)]
    limits: RawLimits,
    restart: Option<Spanned<RawRestart>>,
    #[serde(default)]
    grants: BTreeMap<String, toml::Table>,
    #[serde(default)]
    config: toml::Table,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<Spanned<u32>>,
    call_timeout_ms: Option<Spanned<u64>>,
    max_buffer_kb: Option<Spanned<u32>>,
    mailbox: Option<Spanned<u32>>,
    fuel: Option<Spanned<u64>>,
    table_elements: Option<Spanned<u32>>,
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Manifest {
    /// Reads and validates the manifest at `path`. The wasm file is not touched
    /// here: [`Manifest::read_wasm`] reads and checks it, once, when it is needed.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let src = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(path, &src)
    }

    /// Parses manifest text; `path` locates relative paths and appears in errors.
    pub fn parse(path: &Path, src: &str) -> Result<Manifest, ManifestError> {
        let file = path.to_path_buf();
        let raw: RawManifest = toml::from_str(src).map_err(|e| ManifestError::Parse {
            file: file.clone(),
            line: e.span().map(|s| line_of(src, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let invalid =
            |span: std::ops::Range<usize>, key: &str, message: String| ManifestError::Invalid {
                file: file.clone(),
                line: line_of(src, span.start),
                key: key.to_string(),
                message,
            };

        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                raw.name.span(),
                "name",
                format!("{name:?} must be non-empty and use only a-z, 0-9, '-' and '_'"),
            ));
        }
        let version = raw.version.get_ref().trim().to_string();
        if version.is_empty() {
            return Err(invalid(
                raw.version.span(),
                "version",
                "must not be empty".into(),
            ));
        }

        let dir = path.parent().unwrap_or(Path::new("."));
        let wasm = match &raw.wasm {
            Some(w) if w.get_ref().trim().is_empty() => {
                return Err(invalid(w.span(), "wasm", "must not be empty".into()))
            }
            Some(w) => dir.join(w.get_ref().trim()),
            None => dir.join("plugin.wasm"),
        };
        let sha256 = match raw.sha256 {
            Some(h) => {
                let hex = h.get_ref().trim().to_ascii_lowercase();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(invalid(h.span(), "sha256", "must be 64 hex digits".into()));
                }
                Some(hex)
            }
            None => None,
        };

        let mut capabilities: Vec<String> = Vec::new();
        for cap in &raw.capabilities {
            let cap = cap.trim().to_ascii_lowercase();
            if !cap.is_empty() && !capabilities.contains(&cap) {
                capabilities.push(cap);
            }
        }

        let tick = match raw.tick_ms {
            Some(t) if *t.get_ref() == 0 => {
                return Err(invalid(t.span(), "tick_ms", "must be at least 1".into()))
            }
            Some(t) => Duration::from_millis(*t.get_ref()),
            None => DEFAULT_TICK,
        };

        let positive = |v: &Option<Spanned<u32>>, key: &str, default: u32| match v {
            Some(v) if *v.get_ref() == 0 => {
                Err(invalid(v.span(), key, "must be at least 1".into()))
            }
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let memory_mb = positive(
            &raw.limits.memory_mb,
            "limits.memory_mb",
            defaults::MEMORY_MB,
        )?;
        if memory_mb > 4096 {
            let span = raw
                .limits
                .memory_mb
                .as_ref()
                .map(|v| v.span())
                .unwrap_or(0..0);
            return Err(invalid(
                span,
                "limits.memory_mb",
                "wasm32 memory is at most 4096 MiB".into(),
            ));
        }
        let max_buffer_kb = positive(
            &raw.limits.max_buffer_kb,
            "limits.max_buffer_kb",
            defaults::MAX_BUFFER_KB,
        )?;
        if max_buffer_kb > 4 * 1024 * 1024 - 1 {
            let span = raw
                .limits
                .max_buffer_kb
                .as_ref()
                .map(|v| v.span())
                .unwrap_or(0..0);
            return Err(invalid(
                span,
                "limits.max_buffer_kb",
                "must be under 4 GiB".into(),
            ));
        }
        let mailbox = positive(&raw.limits.mailbox, "limits.mailbox", defaults::MAILBOX)?;
        let table_elements = positive(
            &raw.limits.table_elements,
            "limits.table_elements",
            defaults::TABLE_ELEMENTS,
        )?;
        let call_timeout_ms = match &raw.limits.call_timeout_ms {
            Some(v) if *v.get_ref() == 0 => {
                return Err(invalid(
                    v.span(),
                    "limits.call_timeout_ms",
                    "must be at least 1".into(),
                ))
            }
            Some(v) => *v.get_ref(),
            None => defaults::CALL_TIMEOUT_MS,
        };

        let restart = match raw.restart {
            Some(r) => {
                let span = r.span();
                r.into_inner()
                    .resolve()
                    .map_err(|(key, message)| invalid(span, key, message))?
            }
            None => RestartPolicy::default(),
        };
        let fuel = match &raw.limits.fuel {
            Some(v) if *v.get_ref() == 0 => {
                return Err(invalid(
                    v.span(),
                    "limits.fuel",
                    "must be at least 1".into(),
                ))
            }
            Some(v) => Some(*v.get_ref()),
            None => None,
        };
        let config = config_to_msgpack(&raw.config);
        Ok(Manifest {
            path: file,
            name,
            version,
            wasm,
            sha256,
            capabilities,
            provides: raw.provides,
            consumes: raw.consumes,
            shared_memory_groups: raw.shared_memory_groups,
            dedicated_thread: raw.dedicated_thread,
            snapshotable: raw.snapshotable,
            tick,
            limits: Limits {
                memory_bytes: memory_mb as usize * 1024 * 1024,
                call_timeout: Duration::from_millis(call_timeout_ms),
                max_buffer: max_buffer_kb * 1024,
                mailbox: mailbox as usize,
                table_elements: table_elements as usize,
                fuel,
            },
            restart,
            grants: raw.grants,
            config,
        })
    }

    /// Reads the wasm file, checks its magic number and, when given, its sha256.
    pub fn read_wasm(&self) -> Result<Vec<u8>, ManifestError> {
        let err = |message: String| ManifestError::Wasm {
            file: self.path.clone(),
            wasm: self.wasm.clone(),
            message,
        };
        let bytes = std::fs::read(&self.wasm).map_err(|e| err(format!("cannot read: {e}")))?;
        if !bytes.starts_with(b"\0asm") {
            return Err(err(
                "not a WebAssembly module (no \\0asm magic number)".into()
            ));
        }
        if let Some(expected) = &self.sha256 {
            let actual = hex(&Sha256::digest(&bytes));
            if &actual != expected {
                return Err(err(format!(
                    "sha256 mismatch: manifest says {expected}, file is {actual}"
                )));
            }
        }
        Ok(bytes)
    }
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("/m/test.toml"), src)
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse("name = \"a\"\nversion = \"1\"\n").unwrap();
        assert_eq!(m.wasm, Path::new("/m/plugin.wasm"));
        assert_eq!(m.tick, DEFAULT_TICK);
        assert_eq!(m.limits.memory_bytes, 64 << 20);
        assert!(m.config.is_empty());
    }

    #[test]
    fn restart_policy_is_parsed_and_checked() {
        let m =
            parse("name=\"a\"\nversion=\"1\"\n[restart]\npolicy=\"on-failure\"\nmax_restarts=3\n")
                .unwrap();
        assert!(m.restart.on_failure);
        assert_eq!(m.restart.max_restarts, 3);
        let err = parse("name=\"a\"\nversion=\"1\"\n[restart]\npolicy=\"always\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3: key `restart.policy`"), "{err}");
    }

    #[test]
    fn capabilities_are_normalised() {
        let m = parse("name=\"a\"\nversion=\"1\"\ncapabilities=[\" Logging \", \"logging\", \"Storage.SQLite\"]").unwrap();
        assert_eq!(m.capabilities, ["logging", "storage.sqlite"]);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("name = \"a\"\nversion = \"1\"\ncolour = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/m/test.toml:3:"), "{err}");
        assert!(err.contains("colour"), "{err}");
        let err = parse("name = \"a\"\nversion = \"1\"\n[limits]\nmemory = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":4:") && err.contains("memory"), "{err}");
    }

    #[test]
    fn missing_name_and_bad_values_are_named() {
        let err = parse("version = \"1\"\n").unwrap_err().to_string();
        assert!(err.contains("missing field `name`"), "{err}");
        let err = parse("name = \"A B\"\nversion = \"1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1: key `name`"), "{err}");
        let err = parse("name = \"a\"\nversion = \"1\"\ntick_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3: key `tick_ms`"), "{err}");
        let err = parse("name = \"a\"\nversion = \"1\"\nsha256 = \"xyz\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `sha256`"), "{err}");
    }

    #[test]
    fn wasm_file_problems_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let m = Manifest::parse(&path, "name=\"a\"\nversion=\"1\"\nwasm=\"x.wasm\"").unwrap();
        assert!(m.read_wasm().unwrap_err().to_string().contains("x.wasm"));
        std::fs::write(dir.path().join("x.wasm"), b"garbage").unwrap();
        assert!(m
            .read_wasm()
            .unwrap_err()
            .to_string()
            .contains("not a WebAssembly module"));
        std::fs::write(dir.path().join("x.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let digest = hex(&Sha256::digest(b"\0asm\x01\0\0\0"));
        let ok = Manifest::parse(
            &path,
            &format!("name=\"a\"\nversion=\"1\"\nwasm=\"x.wasm\"\nsha256=\"{digest}\""),
        )
        .unwrap();
        assert!(ok.read_wasm().is_ok());
        let bad = Manifest::parse(
            &path,
            &format!(
                "name=\"a\"\nversion=\"1\"\nwasm=\"x.wasm\"\nsha256=\"{}\"",
                "0".repeat(64)
            ),
        )
        .unwrap();
        assert!(bad
            .read_wasm()
            .unwrap_err()
            .to_string()
            .contains("sha256 mismatch"));
    }
}
