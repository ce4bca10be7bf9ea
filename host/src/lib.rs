//! Pulp: run WebAssembly plugins in a sandbox, each with only the host
//! capabilities its manifest declares.
//!
//! The flow, in the order things happen:
//!
//! 1. [`Manifest`] parses and validates a plugin's TOML manifest;
//! 2. [`Host::prepare`] compiles the wasm and checks it against the
//!    [`Registry`] (unknown capability, undeclared or unknown import, missing
//!    export: all reported before anything runs), producing a [`PreparedPlugin`];
//! 3. [`Host::spawn`] runs it as an actor: [`Plugin::init`] with the manifest's
//!    `[config]` as MessagePack, one [`Plugin::step`] per event or tick, then
//!    [`Plugin::shutdown`].
//!
//! Capabilities are written against the public `pulp-ext` API; the built-in
//! ones live in [`caps`], one module each.

pub mod actor;
pub mod caps;
pub mod check;
pub mod cli;
pub mod config;
mod epoch;
mod fault;
mod host;
pub mod limiter;
mod log_gate;
pub mod manifest;
pub mod metrics;
pub mod module_cache;
pub mod plugin;
mod prepared;
pub mod registry;
pub mod restart;
pub mod run_events;
mod thread_cpu;
mod wasi_log;
mod wasi_poll;

pub use actor::{PluginStatus, PluginSummary, RunEvent, RunOptions, RunningPlugin};
pub use check::CheckReport;
pub use epoch::EpochClock;
pub use host::{Allocator, Host, HostBuilder, HostError, LoadError, Pooling, DEFAULT_DATA_DIR};
pub use manifest::{Manifest, ManifestError};
pub use plugin::{FaultKind, Plugin, PluginFault, StepOutcome};
pub use prepared::PreparedPlugin;
pub use registry::{Gate, Registry};
pub use run_events::{run_events, RunEventReceiver, RunEventSender};
