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
    /// Guest log lines (`log` calls and stdout/stderr lines) per second, sustained.
    pub const LOG_LINES_PER_SEC: u32 = 100;
    /// Guest log lines allowed in a burst above the sustained rate.
    pub const LOG_BURST: u32 = 500;
    /// Longest guest log line, bytes; longer ones are cut and marked.
    pub const LOG_LINE_BYTES: u32 = 4 * 1024;
}

/// The largest value each manifest key accepts. Each bounds something the host
/// allocates or waits for on the plugin's behalf, and is far above any real
/// need; a manifest over one is refused at load, naming the key.
pub mod maxima {
    /// `limits.memory_mb`: all a wasm32 memory can address.
    pub const MEMORY_MB: u32 = 4096;
    /// `limits.call_timeout_ms`: a stop waits for the running call, so this bounds it.
    pub const CALL_TIMEOUT_MS: u64 = 60_000;
    /// `limits.max_buffer_kb`: 1 GiB, the most the host copies in one piece.
    pub const MAX_BUFFER_KB: u32 = 1024 * 1024;
    /// `limits.mailbox`: the queue's slots are allocated up front.
    pub const MAILBOX: u32 = 65_536;
    /// `limits.table_elements`: tables (and the pooling allocator's slots) are sized by it.
    pub const TABLE_ELEMENTS: u32 = 1_000_000;
    /// `limits.fuel`: a million million instructions; the call timeout ends any call long before.
    pub const FUEL: u64 = 1_000_000_000_000;
    /// `limits.log_lines_per_sec`.
    pub const LOG_LINES_PER_SEC: u32 = 10_000;
    /// `limits.log_burst`.
    pub const LOG_BURST: u32 = 100_000;
    /// `limits.log_line_bytes`.
    pub const LOG_LINE_BYTES: u32 = 64 * 1024;
    /// `tick_ms`: one day.
    pub const TICK_MS: u64 = 86_400_000;
    /// Size of the wasm file the manifest names.
    pub const WASM_BYTES: u64 = 256 * 1024 * 1024;
    /// Size of a manifest file.
    pub const MANIFEST_BYTES: u64 = 1024 * 1024;
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
    /// Rate and size of the plugin's log lines.
    pub log: LogLimits,
}

/// How much a plugin may write to the host log (`log` and WASI stdout/stderr together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Lines per second, sustained (`limits.log_lines_per_sec`).
    pub lines_per_sec: u32,
    /// Lines above the sustained rate allowed at once (`limits.log_burst`).
    pub burst: u32,
    /// Longest line, bytes (`limits.log_line_bytes`); longer lines are cut.
    pub line_bytes: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            lines_per_sec: defaults::LOG_LINES_PER_SEC,
            burst: defaults::LOG_BURST,
            line_bytes: defaults::LOG_LINE_BYTES,
        }
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read. The I/O error is part of the
    /// message, not a `source()`, so a printed chain says it once.
    #[error("{file}: cannot read manifest: {error}")]
    Read {
        file: PathBuf,
        error: std::io::Error,
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
    log_lines_per_sec: Option<Spanned<u32>>,
    log_burst: Option<Spanned<u32>>,
    log_line_bytes: Option<Spanned<u32>>,
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
        let read_error = |error| ManifestError::Read {
            file: path.to_path_buf(),
            error,
        };
        let bytes = read_regular_file(path, maxima::MANIFEST_BYTES).map_err(read_error)?;
        let src = String::from_utf8(bytes).map_err(|e| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8: {e}"),
            ))
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

        let tick_ms = within(&raw.tick_ms, "tick_ms", 1, maxima::TICK_MS, &invalid)?;
        let tick = tick_ms.map_or(DEFAULT_TICK, Duration::from_millis);

        let l = &raw.limits;
        let memory_mb = within(
            &l.memory_mb,
            "limits.memory_mb",
            1,
            maxima::MEMORY_MB,
            &invalid,
        )?
        .unwrap_or(defaults::MEMORY_MB);
        let call_timeout_ms = within(
            &l.call_timeout_ms,
            "limits.call_timeout_ms",
            1,
            maxima::CALL_TIMEOUT_MS,
            &invalid,
        )?
        .unwrap_or(defaults::CALL_TIMEOUT_MS);
        let max_buffer_kb = within(
            &l.max_buffer_kb,
            "limits.max_buffer_kb",
            1,
            maxima::MAX_BUFFER_KB,
            &invalid,
        )?
        .unwrap_or(defaults::MAX_BUFFER_KB);
        let mailbox = within(&l.mailbox, "limits.mailbox", 1, maxima::MAILBOX, &invalid)?
            .unwrap_or(defaults::MAILBOX);
        let table_elements = within(
            &l.table_elements,
            "limits.table_elements",
            1,
            maxima::TABLE_ELEMENTS,
            &invalid,
        )?
        .unwrap_or(defaults::TABLE_ELEMENTS);
        let fuel = within(&l.fuel, "limits.fuel", 1, maxima::FUEL, &invalid)?;
        let log = LogLimits {
            lines_per_sec: within(
                &l.log_lines_per_sec,
                "limits.log_lines_per_sec",
                1,
                maxima::LOG_LINES_PER_SEC,
                &invalid,
            )?
            .unwrap_or(defaults::LOG_LINES_PER_SEC),
            burst: within(
                &l.log_burst,
                "limits.log_burst",
                1,
                maxima::LOG_BURST,
                &invalid,
            )?
            .unwrap_or(defaults::LOG_BURST),
            line_bytes: within(
                &l.log_line_bytes,
                "limits.log_line_bytes",
                64,
                maxima::LOG_LINE_BYTES,
                &invalid,
            )?
            .unwrap_or(defaults::LOG_LINE_BYTES),
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
                log,
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
        let bytes = read_regular_file(&self.wasm, maxima::WASM_BYTES)
            .map_err(|e| err(format!("cannot read: {e}")))?;
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

/// A number of the manifest within `min..=max`, or the error naming its key.
fn within<T: Copy + PartialOrd + std::fmt::Display>(
    value: &Option<Spanned<T>>,
    key: &str,
    min: T,
    max: T,
    invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> ManifestError,
) -> Result<Option<T>, ManifestError> {
    match value {
        Some(v) if *v.get_ref() < min => Err(invalid(
            v.span(),
            key,
            format!("{} is below the minimum {min}", v.get_ref()),
        )),
        Some(v) if *v.get_ref() > max => Err(invalid(
            v.span(),
            key,
            format!("{} is over the maximum {max}", v.get_ref()),
        )),
        Some(v) => Ok(Some(*v.get_ref())),
        None => Ok(None),
    }
}

/// The content of the regular file at `path`, at most `max` bytes.
///
/// Opened without blocking (`O_NONBLOCK`, so a FIFO without a writer does not
/// hang the host) and checked with `fstat` on the open file (so it cannot be
/// swapped after the check): a FIFO, device (`/dev/zero`), socket or directory
/// is refused before a byte is read, and no more than `max + 1` bytes are ever
/// read, however the file grows meanwhile.
fn read_regular_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("not a regular file ({})", file_kind(&meta.file_type())),
        ));
    }
    let over = || {
        Error::new(
            ErrorKind::InvalidData,
            format!("larger than the {max}-byte limit"),
        )
    };
    if meta.len() > max {
        return Err(over());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(over());
    }
    Ok(bytes)
}

/// What a non-regular file is, for the error that refuses it.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a file"
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

    #[test]
    fn values_the_host_would_allocate_or_wait_for_are_bounded_naming_the_key() {
        for (line, key, message) in [
            (
                "[limits]\nmailbox = 4294967295",
                "limits.mailbox",
                "4294967295 is over the maximum 65536",
            ),
            (
                "[limits]\nmailbox = 0",
                "limits.mailbox",
                "0 is below the minimum 1",
            ),
            (
                "[limits]\ntable_elements = 4294967295",
                "limits.table_elements",
                "over the maximum 1000000",
            ),
            (
                "[limits]\nmemory_mb = 4097",
                "limits.memory_mb",
                "over the maximum 4096",
            ),
            (
                "[limits]\nmax_buffer_kb = 1048577",
                "limits.max_buffer_kb",
                "over the maximum 1048576",
            ),
            (
                "[limits]\ncall_timeout_ms = 60001",
                "limits.call_timeout_ms",
                "over the maximum 60000",
            ),
            (
                "[limits]\ncall_timeout_ms = 0",
                "limits.call_timeout_ms",
                "below the minimum 1",
            ),
            (
                "[limits]\nfuel = 1000000000001",
                "limits.fuel",
                "over the maximum 1000000000000",
            ),
            ("[limits]\nfuel = 0", "limits.fuel", "below the minimum 1"),
            (
                "[limits]\nlog_lines_per_sec = 0",
                "limits.log_lines_per_sec",
                "below the minimum 1",
            ),
            (
                "[limits]\nlog_lines_per_sec = 10001",
                "limits.log_lines_per_sec",
                "over the maximum 10000",
            ),
            (
                "[limits]\nlog_burst = 100001",
                "limits.log_burst",
                "over the maximum 100000",
            ),
            (
                "[limits]\nlog_line_bytes = 63",
                "limits.log_line_bytes",
                "below the minimum 64",
            ),
            (
                "[limits]\nlog_line_bytes = 65537",
                "limits.log_line_bytes",
                "over the maximum 65536",
            ),
            ("tick_ms = 86400001", "tick_ms", "over the maximum 86400000"),
            (
                "[restart]\npolicy = \"on-failure\"\nbackoff_ms = 0",
                "restart.backoff_ms",
                "not within 1..=60000",
            ),
            (
                "[restart]\npolicy = \"on-failure\"\nmax_restarts = 4294967295",
                "restart.max_restarts",
                "over the maximum 1200",
            ),
        ] {
            let err = parse(&format!("name = \"a\"\nversion = \"1\"\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("key `{key}`")), "{line}: {err}");
            assert!(err.contains(message), "{line}: {err}");
        }
        let most = parse(
            "name=\"a\"\nversion=\"1\"\n[limits]\nmailbox=65536\ntable_elements=1000000\nmemory_mb=4096\ncall_timeout_ms=60000\nlog_line_bytes=64",
        )
        .unwrap();
        assert_eq!(most.limits.mailbox, 65_536);
        assert_eq!(most.limits.log.line_bytes, 64);
        assert_eq!(
            parse("name=\"a\"\nversion=\"1\"").unwrap().limits.log,
            LogLimits {
                lines_per_sec: 100,
                burst: 500,
                line_bytes: 4096
            }
        );
    }

    /// A manifest whose `wasm` is `target`, in a fresh directory.
    fn naming(target: &Path) -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let src = format!(
            "name=\"a\"\nversion=\"1\"\nwasm={:?}",
            target.to_str().unwrap()
        );
        let m = Manifest::parse(&dir.path().join("p.toml"), &src).unwrap();
        (dir, m)
    }

    #[test]
    fn wasm_that_is_not_a_bounded_regular_file_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.wasm");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let huge = dir.path().join("huge.wasm");
        // Sparse: one byte over the cap costs no disk.
        let f = std::fs::File::create(&huge).unwrap();
        f.set_len(maxima::WASM_BYTES + 1).unwrap();
        let started = std::time::Instant::now();
        for (target, message) in [
            (fifo.as_path(), "not a regular file (a FIFO)"),
            (
                Path::new("/dev/zero"),
                "not a regular file (a character device)",
            ),
            (dir.path(), "not a regular file (a directory)"),
            (huge.as_path(), "larger than the 268435456-byte limit"),
        ] {
            let (_d, m) = naming(target);
            let err = m.read_wasm().unwrap_err().to_string();
            assert!(err.contains("key `wasm`") && err.contains(message), "{err}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // The manifest file itself is read the same way.
        let err = Manifest::load(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a regular file (a character device)"),
            "{err}"
        );
        let err = Manifest::load(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    }
}
