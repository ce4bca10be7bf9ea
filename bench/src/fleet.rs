//! Many plugins in one `pulp run` (the release binary): CPU while idle, and
//! resident memory with 1, 100 and 1,000 heartbeat plugins.

use crate::report::{line, n, s};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `count` heartbeat manifests ticking every `tick_ms`; each outputs every `output_every` steps.
fn manifests(dir: &Path, count: usize, tick_ms: u64, output_every: u64) -> Vec<PathBuf> {
    let wasm = crate::artifact("plugins/target/wasm32-wasip1/release/heartbeat.wasm");
    (0..count)
        .map(|i| {
            let path = dir.join(format!("hb{i}.toml"));
            std::fs::write(
                &path,
                format!(
                    "name = \"hb{i}\"\nversion = \"0.1.0\"\nwasm = {:?}\ntick_ms = {tick_ms}\n[limits]\nmemory_mb = 16\n[config]\nmarker = 1\ngreeting = \"hb\"\nlog_every = 1000000\noutput_every = {output_every}\n",
                    wasm.display().to_string()
                ),
            )
            .expect("manifest");
            path
        })
        .collect()
}

/// A `pulp run` of `manifests`; counts the plugins that printed their first output.
struct Fleet {
    child: Child,
    first_outputs: Arc<AtomicUsize>,
}

impl Fleet {
    fn start(data: &Path, manifests: &[PathBuf], extra: &[&str]) -> Fleet {
        let mut child = Command::new(crate::artifact("target/release/pulp"))
            .args(["--log-level", "warn", "run", "--data-dir"])
            .arg(data)
            .args(extra)
            .args(manifests)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulp run");
        let first_outputs = Arc::new(AtomicUsize::new(0));
        let counter = first_outputs.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                if text.contains(" step 1 output") {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Fleet {
            child,
            first_outputs,
        }
    }

    /// Waits until `count` plugins have stepped once.
    fn await_outputs(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.first_outputs.load(Ordering::Relaxed) < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} plugins stepped",
                self.first_outputs.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time of every thread, in nanoseconds (`/proc/PID/task/*/schedstat`).
    fn cpu_ns(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks)
            .expect("tasks")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// `VmRSS` and `VmHWM` in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub fn idle_cpu() {
    const PLUGINS: usize = 10;
    const WINDOW: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let list = manifests(dir.path(), PLUGINS, 1000, 1);
    let fleet = Fleet::start(&dir.path().join("data"), &list, &[]);
    fleet.await_outputs(PLUGINS, Duration::from_secs(60));
    let before = fleet.cpu_ns();
    std::thread::sleep(WINDOW);
    let used = fleet.cpu_ns() - before;
    fleet.stop();
    line(&[
        ("case", s("idle_cpu")),
        ("plugins", PLUGINS.to_string()),
        ("tick_ms", "1000".into()),
        ("seconds", WINDOW.as_secs().to_string()),
        (
            "cpu_percent",
            n(used as f64 / WINDOW.as_nanos() as f64 * 100.0, 3),
        ),
        ("target_percent", "0.5".into()),
    ]);
}

pub fn resident_memory() {
    for (allocator, extra) in [("pooling", &[][..]), ("on_demand", &["--no-pooling"][..])] {
        for count in [1, 100, 1000] {
            let dir = tempfile::tempdir().expect("tempdir");
            let list = manifests(dir.path(), count, 1000, 1);
            let started = Instant::now();
            let fleet = Fleet::start(&dir.path().join("data"), &list, extra);
            fleet.await_outputs(count, Duration::from_secs(300));
            let ready = started.elapsed();
            std::thread::sleep(Duration::from_secs(2));
            let (rss, hwm) = fleet.memory_kib();
            fleet.stop();
            line(&[
                ("case", s("rss")),
                ("plugins", count.to_string()),
                ("allocator", s(allocator)),
                ("rss_mib", n(rss as f64 / 1024.0, 1)),
                ("peak_mib", n(hwm as f64 / 1024.0, 1)),
                ("all_stepped_ms", n(ready.as_secs_f64() * 1e3, 0)),
                ("target_mib_at_1000", "2048".into()),
            ]);
        }
    }
}
