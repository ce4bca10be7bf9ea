//! What keeps a plugin inside its own database file and inside its time budget.
//!
//! SQLite has several ways to reach a file other than the one it opened:
//! `ATTACH` (and `VACUUM` / `VACUUM INTO`, which SQLite implements by attaching
//! the target file), `load_extension()` (native code), and a few pragmas that
//! name directories. The authorizer below refuses each of them while the
//! statement is prepared (or, for `VACUUM`, when its internal `ATTACH` is
//! prepared), so SQLite reports `SQLITE_AUTH` and nothing is touched. The
//! connection's attach limit is also 0 and extension loading stays disabled,
//! so each escape is closed twice.
//!
//! The same authorizer keeps the plugin inside its budgets: pragmas that
//! would raise what SQLite may hold (page cache, memory map, temp storage in
//! memory, heap limits, helper threads) or undo the disk quota and the
//! durability the host set up ([`FIXED_PRAGMAS`]) may be read but not set.
//!
//! A wasm guest is interrupted by epoch ticks, but host code is not: a
//! runaway query would hold the plugin's thread forever. The [`Deadline`] is
//! armed with the running `pulp_init`/`pulp_step`/`pulp_shutdown`'s own
//! deadline at the start of each host call and checked from SQLite's
//! progress handler, which interrupts the statement once it has passed. It is
//! one instant for the whole export call, so many statements in one step end
//! together at the step's deadline rather than each getting a fresh budget.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Pragmas that name a directory SQLite would then write to.
const DENIED_PRAGMAS: &[&str] = &["temp_store_directory", "data_store_directory"];

/// Pragmas a plugin may read but not set: each would raise what SQLite holds
/// for the plugin (memory, disk, threads), undo the `max_db_mb` quota, or
/// weaken the durability and locking the host set up at open.
const FIXED_PRAGMAS: &[&str] = &[
    "busy_timeout",
    "cache_size",
    "cache_spill",
    "hard_heap_limit",
    "journal_mode",
    "journal_size_limit",
    "locking_mode",
    "max_page_count",
    "mmap_size",
    "page_size",
    "soft_heap_limit",
    "synchronous",
    "temp_store",
    "threads",
    "wal_autocheckpoint",
];

/// SQLite virtual-machine instructions between two deadline checks: a check
/// is a clock read, so this keeps the overhead negligible while a runaway
/// query stops within microseconds of its deadline.
pub const PROGRESS_OPS: i32 = 1000;

/// The instant a running statement must stop by, shared with the progress handler.
///
/// Stored as nanoseconds since `base` in an atomic, so the handler (called by
/// SQLite on the plugin's own thread, but required to be `Send + 'static`)
/// needs no lock.
#[derive(Debug)]
pub struct Deadline {
    base: Instant,
    at_ns: AtomicU64,
}

impl Deadline {
    /// A deadline that is not armed.
    pub fn new() -> Arc<Deadline> {
        Arc::new(Deadline {
            base: Instant::now(),
            at_ns: AtomicU64::new(u64::MAX),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Statements from now on must finish by `at`.
    pub fn arm(&self, at: Instant) {
        let at_ns =
            u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.at_ns.store(at_ns, Ordering::Relaxed);
    }

    /// No deadline (between calls, and for the host's own statements).
    pub fn disarm(&self) {
        self.at_ns.store(u64::MAX, Ordering::Relaxed);
    }

    /// True once the armed deadline has passed: the progress handler's answer.
    pub fn passed(&self) -> bool {
        self.now_ns() >= self.at_ns.load(Ordering::Relaxed)
    }
}

/// The reason for the authorizer's last refusal, so the log says what was
/// refused rather than SQLite's bare "not authorized".
#[derive(Debug, Default)]
pub struct Refusals(Mutex<Option<String>>);

impl Refusals {
    fn record(&self, reason: String) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(reason);
        }
    }

    /// Takes the last recorded reason, leaving none.
    pub fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut last| last.take())
    }
}

/// Why `action` is refused, or `None` to allow it.
pub fn refusal(action: &AuthAction<'_>) -> Option<String> {
    match action {
        AuthAction::Attach { filename } => Some(format!(
            "ATTACH of {filename:?} refused: a plugin may only use its own database \
             (VACUUM and VACUUM INTO attach a file too, so they are refused as well)"
        )),
        AuthAction::Detach { database_name } => {
            Some(format!("DETACH of {database_name:?} refused"))
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Some("load_extension() refused: extensions are native code".to_string())
        }
        AuthAction::Pragma { pragma_name, .. }
            if DENIED_PRAGMAS
                .iter()
                .any(|p| pragma_name.eq_ignore_ascii_case(p)) =>
        {
            Some(format!(
                "PRAGMA {pragma_name} refused: it names a directory outside the plugin's data"
            ))
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(value),
        } if FIXED_PRAGMAS
            .iter()
            .any(|p| pragma_name.eq_ignore_ascii_case(p)) =>
        {
            Some(format!(
                "PRAGMA {pragma_name} = {value} refused: the host fixes {pragma_name} to keep \
                 the plugin within its memory, max_db_mb and durability (reading it is allowed)"
            ))
        }
        _ => None,
    }
}

/// The authorizer callback: allows everything [`refusal`] does not refuse,
/// recording the reason of each refusal in `refusals`.
pub fn authorizer(
    refusals: Arc<Refusals>,
) -> impl for<'r> FnMut(AuthContext<'r>) -> Authorization + Send + 'static {
    move |ctx: AuthContext<'_>| match refusal(&ctx.action) {
        Some(reason) => {
            refusals.record(reason);
            Authorization::Deny
        }
        None => Authorization::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escapes_are_refused_and_ordinary_work_is_not() {
        assert!(refusal(&AuthAction::Attach {
            filename: "/etc/x.db"
        })
        .is_some());
        assert!(refusal(&AuthAction::Detach { database_name: "x" }).is_some());
        assert!(refusal(&AuthAction::Function {
            function_name: "LOAD_EXTENSION"
        })
        .is_some());
        assert!(refusal(&AuthAction::Pragma {
            pragma_name: "temp_store_directory",
            pragma_value: Some("'/tmp'")
        })
        .is_some());
        assert!(refusal(&AuthAction::Function {
            function_name: "lower"
        })
        .is_none());
        for pragma_name in FIXED_PRAGMAS {
            assert!(refusal(&AuthAction::Pragma {
                pragma_name,
                pragma_value: Some("1")
            })
            .is_some_and(|r| r.contains(pragma_name)));
            assert!(refusal(&AuthAction::Pragma {
                pragma_name,
                pragma_value: None
            })
            .is_none());
        }
        assert!(refusal(&AuthAction::Pragma {
            pragma_name: "user_version",
            pragma_value: Some("2")
        })
        .is_none());
        assert!(refusal(&AuthAction::Select).is_none());
    }

    #[test]
    fn deadline_passes_only_when_armed_and_due() {
        let d = Deadline::new();
        assert!(!d.passed());
        d.arm(Instant::now());
        assert!(d.passed());
        d.arm(Instant::now() + Duration::from_secs(3600));
        assert!(!d.passed());
        d.disarm();
        assert!(!d.passed());
    }
}
