//! A plugin that passed its checks: compiled, linked, ready to instantiate.

use crate::check::CheckReport;
use crate::log_gate::LogGate;
use crate::manifest::Manifest;
use crate::registry::Registered;
use pulp_ext::{PluginInfo, PluginState};
use std::sync::Arc;
use wasmtime::InstancePre;

/// Everything needed to start instances of one plugin; instantiating again
/// (a restart) reuses the compiled module and the resolved imports.
pub struct PreparedPlugin {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The view of the plugin capabilities receive.
    pub info: Arc<PluginInfo>,
    /// The module with every import resolved.
    pub pre: InstancePre<PluginState>,
    /// Capabilities bound for real (always-on plus declared).
    pub granted: Vec<Registered>,
    /// What the check found (notes only: a prepared plugin has no problems).
    pub report: CheckReport,
    /// The engine meters fuel: every store needs fuel before it runs.
    pub fuel_metering: bool,
    /// The plugin's log budget, shared by all its instances: a restart does not refill it.
    pub(crate) log: Arc<LogGate>,
}
