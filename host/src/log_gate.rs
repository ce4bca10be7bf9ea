//! The gate every guest log line passes, from `log` and from WASI stdout/stderr.
//!
//! A plugin must not be able to flood the host log, nor write anything into it
//! that reads as a line the host or another plugin wrote. So each line:
//!
//! - takes a token from the plugin's bucket (`limits.log_lines_per_sec`,
//!   refilled continuously, holding at most `limits.log_burst`; one bucket for
//!   all the plugin's instances, so a restart does not refill it); without one
//!   it is dropped and counted in [`PluginUsage::log_dropped`], and one warning
//!   says how many were dropped when logging resumes and when an instance ends;
//! - is cut at `limits.log_line_bytes` (the caller copies no more than that
//!   from the guest) and marked with its full length;
//! - has its control characters (CR, LF, ESC, NUL, ...) and the Unicode line
//!   and direction marks escaped, so it stays one line that says what it is.

use crate::manifest::LogLimits;
use pulp_ext::{PluginInfo, PluginUsage};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Log levels of guest lines (`log`'s level argument: 0 trace .. 4 error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl GuestLevel {
    /// The level `log` was called with: 0 trace, 1 debug, 2 info, 3 warn, 4 and above error.
    pub fn from_code(level: u32) -> Self {
        match level {
            0 => GuestLevel::Trace,
            1 => GuestLevel::Debug,
            2 => GuestLevel::Info,
            3 => GuestLevel::Warn,
            _ => GuestLevel::Error,
        }
    }
}

/// One plugin's log budget; shared by the `log` import and the WASI streams of
/// each of its instances.
pub struct LogGate {
    plugin: Arc<str>,
    usage: Arc<PluginUsage>,
    limits: LogLimits,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last warning about them.
    dropped: u64,
}

impl LogGate {
    /// A full bucket for `plugin`.
    pub fn new(plugin: &PluginInfo, limits: LogLimits) -> Arc<LogGate> {
        Arc::new(LogGate {
            plugin: Arc::from(plugin.name.as_str()),
            usage: plugin.usage.clone(),
            limits,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limits.burst),
                refilled: Instant::now(),
                dropped: 0,
            }),
        })
    }

    /// The most bytes of one line that are kept: read no more than this from the guest.
    pub fn line_bytes(&self) -> usize {
        self.limits.line_bytes as usize
    }

    /// Writes one line if the rate allows: [`LogGate::admit`], then [`LogGate::write`].
    pub fn line(
        &self,
        level: GuestLevel,
        stream: Option<&str>,
        kept: &[u8],
        full_len: usize,
    ) -> bool {
        let admitted = self.admit();
        if admitted {
            self.write(level, stream, kept, full_len);
        }
        admitted
    }

    /// Takes a token for one line: true when it may be written. A line without
    /// one is dropped and counted; the first line admitted after drops is
    /// preceded by a warning saying how many.
    pub fn admit(&self) -> bool {
        match self.take_token() {
            Some(0) => true,
            Some(dropped) => {
                self.report_dropped(dropped, "resumed");
                true
            }
            None => false,
        }
    }

    /// Writes one admitted line of `full_len` bytes, of which `kept` are the
    /// first (at most [`LogGate::line_bytes`] are used).
    pub fn write(&self, level: GuestLevel, stream: Option<&str>, kept: &[u8], full_len: usize) {
        let kept = &kept[..kept.len().min(self.line_bytes())];
        let mut text = escape(&String::from_utf8_lossy(kept));
        if full_len > kept.len() {
            let _ = write!(
                text,
                " [truncated: {full_len} bytes, over limits.log_line_bytes = {}]",
                self.limits.line_bytes
            );
        }
        let plugin = &*self.plugin;
        macro_rules! emit {
            ($level:expr) => {
                match stream {
                    Some(stream) => {
                        tracing::event!(target: "pulp::guest", $level, plugin, stream, "{text}")
                    }
                    None => tracing::event!(target: "pulp::guest", $level, plugin, "{text}"),
                }
            };
        }
        match level {
            GuestLevel::Trace => emit!(tracing::Level::TRACE),
            GuestLevel::Debug => emit!(tracing::Level::DEBUG),
            GuestLevel::Info => emit!(tracing::Level::INFO),
            GuestLevel::Warn => emit!(tracing::Level::WARN),
            GuestLevel::Error => emit!(tracing::Level::ERROR),
        }
    }

    /// Reports lines dropped and not yet reported (an instance is ending).
    pub fn flush(&self) {
        let dropped = std::mem::take(&mut self.lock().dropped);
        if dropped > 0 {
            self.report_dropped(dropped, "instance released");
        }
    }

    /// `Some(lines dropped since the last report)` when a token was taken, `None`
    /// when the line is dropped (and counted).
    fn take_token(&self) -> Option<u64> {
        let mut bucket = self.lock();
        let now = Instant::now();
        let refill = now.duration_since(bucket.refilled).as_secs_f64()
            * f64::from(self.limits.lines_per_sec);
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.limits.burst));
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            self.usage.log_dropped(1);
            return None;
        }
        bucket.tokens -= 1.0;
        Some(std::mem::take(&mut bucket.dropped))
    }

    fn report_dropped(&self, lines: u64, when: &str) {
        tracing::warn!(
            target: "pulp::guest",
            plugin = &*self.plugin,
            dropped = lines,
            "{lines} log lines dropped ({when}): over limits.log_lines_per_sec = {} (burst {})",
            self.limits.lines_per_sec,
            self.limits.burst
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // The bucket is plain numbers, valid even if a holder panicked.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LogGate {
    /// Drops after the last instance's release (one failed while starting)
    /// are still reported.
    fn drop(&mut self) {
        self.flush();
    }
}

/// `text` with every character that could end, rewrite or disguise a log line
/// written as an escape: `\n`, `\r`, `\t`, `\0`, other controls (ESC is
/// `\u{1b}`), and the Unicode line/paragraph separators and direction marks.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A gate for plugin `p` with 64-byte lines, and the usage it charges (unit tests).
#[cfg(test)]
pub(crate) fn test_gate(lines_per_sec: u32, burst: u32) -> (Arc<LogGate>, Arc<PluginUsage>) {
    let usage = Arc::new(PluginUsage::default());
    let info = PluginInfo {
        name: "p".into(),
        capabilities: vec![],
        data_dir: "d".into(),
        grants: Default::default(),
        limits: pulp_ext::GuestLimits {
            max_buffer: 1024,
            call_budget: std::time::Duration::from_secs(1),
        },
        usage: usage.clone(),
    };
    let limits = LogLimits {
        lines_per_sec,
        burst,
        line_bytes: 64,
    };
    (LogGate::new(&info, limits), usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gate(lines_per_sec: u32, burst: u32) -> (Arc<LogGate>, Arc<PluginUsage>) {
        test_gate(lines_per_sec, burst)
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape("a\r\nINFO forged\u{1b}[2J\0\t\u{7f}\u{2028}\u{202e}é"),
            "a\\r\\nINFO forged\\u{1b}[2J\\0\\t\\u{7f}\\u{2028}\\u{202e}é"
        );
    }

    #[test]
    fn the_burst_passes_then_lines_are_dropped_and_counted() {
        let (gate, usage) = gate(1, 3);
        let passed = (0..10)
            .filter(|_| gate.line(GuestLevel::Info, None, b"x", 1))
            .count();
        assert_eq!(passed, 3);
        assert_eq!(usage.log_lines_dropped(), 7);
        assert_eq!(gate.lock().dropped, 7);
        gate.flush();
        assert_eq!(gate.lock().dropped, 0, "reported once");
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let (gate, usage) = gate(1000, 1);
        assert!(gate.line(GuestLevel::Info, None, b"x", 1));
        assert!(!gate.line(GuestLevel::Info, None, b"x", 1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(gate.line(GuestLevel::Info, None, b"x", 1));
        assert_eq!(usage.log_lines_dropped(), 1);
        assert_eq!(gate.lock().dropped, 0, "reported when logging resumed");
    }
}
