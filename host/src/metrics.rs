//! Per-plugin counters and their Prometheus text rendering.
//!
//! Each actor owns an `Arc<PluginMetrics>` and updates it with relaxed
//! atomics (a few nanoseconds on the step path); the mailbox keeps the queue
//! depth; `render` turns a snapshot of every plugin into the text format
//! Prometheus scrapes.

use crate::fault::FaultKind;
use crate::thread_cpu::ThreadCpu;
use pulp_ext::{PluginInfo, PluginUsage};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most directory entries counted for a plugin's disk use: a plugin with
/// more files than this is reported at that count's size, never walked forever.
const MAX_DISK_ENTRIES: usize = 10_000;

/// Upper bounds of the step-latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1.0,
];

/// Fault kinds as metric labels, in [`FaultKind`] order.
const FAULT_KINDS: [&str; 7] = [
    "trap",
    "timeout",
    "memory",
    "fuel",
    "error_code",
    "abi",
    "setup",
];

/// What one plugin has done, updated as it runs.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    steps: AtomicU64,
    step_errors: AtomicU64,
    restarts: AtomicU64,
    mailbox_depth: AtomicI64,
    faults: [AtomicU64; FAULT_KINDS.len()],
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_ns: AtomicU64,
    events_dropped: AtomicU64,
    /// The actor thread's CPU clock.
    pub(crate) cpu: ThreadCpu,
    usage: Arc<PluginUsage>,
    data_dir: PathBuf,
}

/// What a plugin has cost the host, read at one moment (see [`PluginMetrics::usage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSnapshot {
    /// CPU time of the plugin's thread: its calls and the host work inside them.
    pub cpu: Duration,
    /// Linear memory of the running (or last) instance.
    pub memory_bytes: u64,
    /// Bytes the host holds for it now: events queued in its mailbox.
    pub host_bytes: u64,
    /// Bytes of its files under the data directory (SQLite database, WAL, ...).
    pub disk_bytes: u64,
    /// Fuel consumed, when the host meters fuel.
    pub fuel_consumed: u64,
    /// Log lines dropped by its rate limit.
    pub log_lines_dropped: u64,
    /// Containers that exist for it.
    pub containers: u64,
    /// Run events (outputs, errors) the embedder's channel had no room for.
    pub events_dropped: u64,
}

impl PluginMetrics {
    /// Counters for the plugin `info` describes, sharing its [`PluginUsage`].
    pub fn for_plugin(info: &PluginInfo) -> Self {
        PluginMetrics {
            usage: info.usage.clone(),
            data_dir: info.data_dir.clone(),
            ..PluginMetrics::default()
        }
    }

    /// The plugin's [`PluginUsage`], which capabilities charge.
    pub fn plugin_usage(&self) -> &Arc<PluginUsage> {
        &self.usage
    }

    /// A run event was dropped: the embedder's channel was full.
    pub fn event_dropped(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// What the plugin has cost so far. Reads the thread's CPU clock and walks
    /// the plugin's data directory: for scrapes and summaries, not hot paths.
    pub fn usage(&self) -> UsageSnapshot {
        UsageSnapshot {
            cpu: self.cpu.get(),
            memory_bytes: self.usage.memory_bytes(),
            host_bytes: self.usage.host_bytes(),
            disk_bytes: dir_bytes(&self.data_dir),
            fuel_consumed: self.usage.fuel_consumed(),
            log_lines_dropped: self.usage.log_lines_dropped(),
            containers: self.usage.containers(),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// A step finished after `took`; `handle` is what `pulp_step` returned.
    pub fn step(&self, took: Duration, handle: i32) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        if handle < 0 {
            self.step_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The plugin failed.
    pub fn fault(&self, kind: &FaultKind) {
        let i = match kind {
            FaultKind::Trap(_) => 0,
            FaultKind::Timeout(_) => 1,
            FaultKind::MemoryLimit(_) => 2,
            FaultKind::FuelExhausted(_) => 3,
            FaultKind::ErrorCode(_) => 4,
            FaultKind::Abi(_) => 5,
            FaultKind::Setup(_) => 6,
        };
        self.faults[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The plugin was restarted.
    pub fn restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// An event entered (`+1`) or left (`-1`) the mailbox.
    pub fn mailbox(&self, delta: i64) {
        self.mailbox_depth.fetch_add(delta, Ordering::Relaxed);
    }

    /// Steps completed so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }
}

/// HTTP responses of one plugin with one status.
pub struct ResponseCount {
    /// The plugin whose route matched (`-` when none did: 404, 405).
    pub plugin: String,
    /// HTTP status.
    pub status: u16,
    /// Responses sent.
    pub count: u64,
}

/// The Prometheus text exposition of `plugins` and `responses`.
pub fn render(plugins: &[(String, &PluginMetrics)], responses: &[ResponseCount]) -> String {
    let mut out = String::new();
    let counter =
        |out: &mut String, name: &str, help: &str, get: &dyn Fn(&PluginMetrics) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (plugin, m) in plugins {
                let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {}", escape(plugin), get(m));
            }
        };
    counter(
        &mut out,
        "pulp_steps_total",
        "Steps that completed.",
        &|m| m.steps.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "pulp_step_errors_total",
        "Steps whose pulp_step returned a negative code.",
        &|m| m.step_errors.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "pulp_restarts_total",
        "Restarts after a failure.",
        &|m| m.restarts.load(Ordering::Relaxed),
    );

    let _ = writeln!(out, "# HELP pulp_faults_total Failures of a plugin instance, by kind.\n# TYPE pulp_faults_total counter");
    for (plugin, m) in plugins {
        for (kind, n) in FAULT_KINDS.iter().zip(&m.faults) {
            let _ = writeln!(
                out,
                "pulp_faults_total{{plugin=\"{}\",kind=\"{kind}\"}} {}",
                escape(plugin),
                n.load(Ordering::Relaxed)
            );
        }
    }

    let _ = writeln!(out, "# HELP pulp_mailbox_depth Events waiting in the plugin's mailbox.\n# TYPE pulp_mailbox_depth gauge");
    for (plugin, m) in plugins {
        let _ = writeln!(
            out,
            "pulp_mailbox_depth{{plugin=\"{}\"}} {}",
            escape(plugin),
            m.mailbox_depth.load(Ordering::Relaxed).max(0)
        );
    }

    let _ = writeln!(out, "# HELP pulp_step_duration_seconds Wall time of pulp_step calls.\n# TYPE pulp_step_duration_seconds histogram");
    for (plugin, m) in plugins {
        let plugin = escape(plugin);
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS.iter().zip(&m.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "pulp_step_duration_seconds_bucket{{plugin=\"{plugin}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let steps = m.steps.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "pulp_step_duration_seconds_bucket{{plugin=\"{plugin}\",le=\"+Inf\"}} {steps}"
        );
        let sum = m.latency_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "pulp_step_duration_seconds_sum{{plugin=\"{plugin}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "pulp_step_duration_seconds_count{{plugin=\"{plugin}\"}} {steps}"
        );
    }

    let usage: Vec<(&String, UsageSnapshot)> =
        plugins.iter().map(|(p, m)| (p, m.usage())).collect();
    let per_plugin = |out: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      get: &dyn Fn(&UsageSnapshot) -> String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (plugin, u) in &usage {
            let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {}", escape(plugin), get(u));
        }
    };
    per_plugin(
        &mut out,
        "pulp_cpu_seconds_total",
        "counter",
        "CPU time of the plugin's thread: its calls and the host work inside them.",
        &|u| u.cpu.as_secs_f64().to_string(),
    );
    per_plugin(
        &mut out,
        "pulp_memory_bytes",
        "gauge",
        "Linear memory of the plugin's instance.",
        &|u| u.memory_bytes.to_string(),
    );
    per_plugin(
        &mut out,
        "pulp_host_bytes",
        "gauge",
        "Bytes the host holds for the plugin: events queued in its mailbox.",
        &|u| u.host_bytes.to_string(),
    );
    per_plugin(
        &mut out,
        "pulp_disk_bytes",
        "gauge",
        "Bytes of the plugin's files under the data directory.",
        &|u| u.disk_bytes.to_string(),
    );
    per_plugin(
        &mut out,
        "pulp_fuel_consumed_total",
        "counter",
        "Fuel consumed (0 unless the host meters fuel).",
        &|u| u.fuel_consumed.to_string(),
    );
    per_plugin(
        &mut out,
        "pulp_log_lines_dropped_total",
        "counter",
        "Log lines dropped by the plugin's rate limit.",
        &|u| u.log_lines_dropped.to_string(),
    );
    per_plugin(
        &mut out,
        "pulp_containers",
        "gauge",
        "Containers that exist for the plugin.",
        &|u| u.containers.to_string(),
    );
    per_plugin(
        &mut out,
        "pulp_run_events_dropped_total",
        "counter",
        "Outputs and other run events dropped because the consumer's queue was full.",
        &|u| u.events_dropped.to_string(),
    );

    let _ = writeln!(out, "# HELP pulp_http_responses_total HTTP responses, by plugin and status.\n# TYPE pulp_http_responses_total counter");
    for r in responses {
        let _ = writeln!(
            out,
            "pulp_http_responses_total{{plugin=\"{}\",status=\"{}\"}} {}",
            escape(&r.plugin),
            r.status,
            r.count
        );
    }
    out
}

/// Bytes of the regular files under `dir` (at most [`MAX_DISK_ENTRIES`]
/// entries; symlinks are not followed; 0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_DISK_ENTRIES {
                return total;
            }
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) if m.is_file() => total = total.saturating_add(m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Escapes a label value (plugin names are already restricted, but be exact).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counts_add_up() {
        let m = PluginMetrics::default();
        m.step(Duration::from_micros(5), 0);
        m.step(Duration::from_micros(700), 1);
        m.step(Duration::from_secs(3), -1);
        m.fault(&FaultKind::Timeout(Duration::from_secs(1)));
        m.mailbox(2);
        m.mailbox(-1);
        let text = render(
            &[("p".into(), &m)],
            &[ResponseCount {
                plugin: "p".into(),
                status: 200,
                count: 4,
            }],
        );
        assert!(
            text.contains("pulp_steps_total{plugin=\"p\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("pulp_step_errors_total{plugin=\"p\"} 1\n"));
        assert!(text.contains("pulp_step_duration_seconds_bucket{plugin=\"p\",le=\"0.00001\"} 1\n"));
        assert!(text.contains("pulp_step_duration_seconds_bucket{plugin=\"p\",le=\"0.001\"} 2\n"));
        assert!(text.contains("pulp_step_duration_seconds_bucket{plugin=\"p\",le=\"1\"} 2\n"));
        assert!(text.contains("pulp_step_duration_seconds_bucket{plugin=\"p\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("pulp_faults_total{plugin=\"p\",kind=\"timeout\"} 1\n"));
        assert!(text.contains("pulp_mailbox_depth{plugin=\"p\"} 1\n"));
        assert!(text.contains("pulp_http_responses_total{plugin=\"p\",status=\"200\"} 4\n"));
    }
}
