//! Pulp's performance figures, with its peers side by side in one run.
//! Prints one JSON line per measurement; `scripts/bench` builds everything
//! and runs it. Sections (all by default, or name some as arguments):
//!
//! - `step`: Pulp `Plugin::step` vs the same guest driven by raw wasmtime
//!   (the floor) vs Extism calling an extism-pdk guest, payloads 0 B, 1 KiB, 64 KiB;
//! - `cold`: compile, load from the module cache, instantiate + `pulp_init`;
//! - `idle`: CPU of a `pulp run` with 10 plugins ticking every second;
//! - `rss`: resident memory of a `pulp run` with 1, 100 and 1,000 plugins.

mod allocs;
mod cold;
mod fleet;
mod floor;
mod report;
mod step;

use pulp_ext::{EventRejected, EventSink};
use std::path::PathBuf;

/// The benchmarked plugins receive no events; a closed sink is all they need.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn push(&self, _: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the repository")
        .to_path_buf()
}

/// A built artifact, or a message saying how to build it.
pub fn artifact(relative: &str) -> PathBuf {
    let path = repo().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/bench, which builds it",
        path.display()
    );
    path
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |section: &str| args.is_empty() || args.iter().any(|a| a == section);
    report::machine();
    if wanted("step") {
        step::run();
    }
    if wanted("cold") {
        cold::run();
    }
    if wanted("idle") {
        fleet::idle_cpu();
    }
    if wanted("rss") {
        fleet::resident_memory();
    }
}
