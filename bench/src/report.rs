//! JSON lines, written by hand: every value is a number or a plain string.

use std::time::Duration;

/// A JSON line from `(key, value)` pairs; values are inserted as they are,
/// so strings must come quoted (see [`s`]).
pub fn line(fields: &[(&str, String)]) {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!("{{{}}}", body.join(","));
}

/// A quoted JSON string (no escaping needed for the values used here).
pub fn s(value: &str) -> String {
    format!("\"{value}\"")
}

/// A number with `digits` decimals.
pub fn n(value: f64, digits: usize) -> String {
    format!("{value:.digits$}")
}

/// Median of some durations.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// The machine the figures come from.
pub fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().replace('"', ""))
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    line(&[
        ("case", s("machine")),
        ("cpu", s(&cpu)),
        ("cores", cores.to_string()),
        ("os", s(std::env::consts::OS)),
    ]);
}
