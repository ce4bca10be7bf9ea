//! CPU time of a plugin: the CPU time of its actor thread.
//!
//! Every call into a plugin (and the host work done inside it: SQL, copies,
//! envelopes) runs on the plugin's own thread, and that thread does nothing
//! else, so its CPU clock is what the plugin cost. The clock is read when
//! someone asks (a `/metrics` scrape, the run summary), never on the step
//! path: a clock read per step would cost more than a step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The CPU clock of one actor thread, readable from any thread.
#[derive(Debug, Default)]
pub struct ThreadCpu {
    /// Kernel id of the running actor thread; 0 when none runs.
    tid: AtomicU64,
    /// CPU time of the thread when it ended.
    ended: AtomicU64,
}

impl ThreadCpu {
    /// Binds the clock to the calling thread (the actor, as it starts).
    pub fn attach(&self) {
        if let Some(tid) = own_tid() {
            self.tid.store(tid, Ordering::Relaxed);
        }
    }

    /// Keeps the calling thread's final CPU time (the actor, as it ends).
    pub fn detach(&self) {
        let tid = self.tid.swap(0, Ordering::Relaxed);
        if let Some(ns) = cpu_ns(tid) {
            self.ended.store(ns, Ordering::Relaxed);
        }
    }

    /// CPU time used so far.
    pub fn get(&self) -> Duration {
        let tid = self.tid.load(Ordering::Relaxed);
        let ns = match tid {
            0 => None,
            tid => cpu_ns(tid),
        };
        Duration::from_nanos(ns.unwrap_or_else(|| self.ended.load(Ordering::Relaxed)))
    }
}

/// The calling thread's kernel id: `/proc/thread-self` links to `<pid>/task/<tid>`.
fn own_tid() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time of thread `tid` of this process, in nanoseconds: the first field
/// of its `schedstat`, else user + system time from `stat` (clock ticks).
fn cpu_ns(tid: u64) -> Option<u64> {
    let task = format!("/proc/self/task/{tid}");
    if let Ok(text) = std::fs::read_to_string(format!("{task}/schedstat")) {
        if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(ns);
        }
    }
    let stat = std::fs::read_to_string(format!("{task}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI Rust targets.
    Some((utime + stime) * 10_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_thread_is_charged_its_cpu_not_its_wall_time_and_keeps_it_after_it_ends() {
        let cpu = std::sync::Arc::new(ThreadCpu::default());
        let worker = cpu.clone();
        let wall = Instant::now();
        std::thread::spawn(move || {
            worker.attach();
            // Asleep: wall time passes, CPU time does not.
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                worker.get() < Duration::from_millis(50),
                "{:?}",
                worker.get()
            );
            // Busy until the clock itself says 100 ms, however loaded the machine is.
            let mut x = 0u64;
            while worker.get() < Duration::from_millis(100) {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            std::hint::black_box(x);
            worker.detach();
        })
        .join()
        .unwrap();
        let used = cpu.get();
        assert!(used >= Duration::from_millis(100), "{used:?}");
        assert!(
            used < wall.elapsed() - Duration::from_millis(150),
            "{used:?}"
        );
    }
}
