//! What the host knows about a plugin ([`PluginInfo`]) and the data of its
//! wasmtime store ([`PluginState`]).

use crate::{CallClock, CapabilityError, PluginUsage};
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Memory, ResourceLimiter, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

/// Limits a host function must respect when it moves data across the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Largest buffer the host reads from or writes into the guest in one piece.
    pub max_buffer: u32,
    /// Wall-clock budget of one `pulp_init` / `pulp_step` / `pulp_shutdown` call;
    /// slow host work (a long SQL query) should give up within it.
    pub call_budget: Duration,
}

/// The view of a plugin a capability gets: who it is and what its manifest grants.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The manifest's `name`.
    pub name: String,
    /// Capabilities the manifest declares, normalised.
    pub capabilities: Vec<String>,
    /// This plugin's own directory under the host's data directory (may not exist yet).
    pub data_dir: PathBuf,
    /// Per-capability settings: the manifest's `[grants."<capability>"]` tables.
    pub grants: BTreeMap<String, toml::Table>,
    /// Boundary limits.
    pub limits: GuestLimits,
    /// What the host holds and has spent for this plugin (shared by every
    /// instance of it and every capability).
    pub usage: Arc<PluginUsage>,
}

impl PluginInfo {
    /// True when the manifest declares `capability`.
    pub fn declares(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Decodes `[grants."<capability>"]` into `T`; an absent table decodes as empty,
    /// so `T`'s serde defaults apply. Use `#[serde(deny_unknown_fields)]` on `T` so a
    /// misspelt key is an error that names it.
    ///
    /// ```
    /// use pulp_ext::{GuestLimits, PluginInfo};
    /// use std::time::Duration;
    ///
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// #[serde(deny_unknown_fields, default)]
    /// struct Settings { images: Vec<String>, max_running: u32 }
    /// impl Default for Settings {
    ///     fn default() -> Self { Settings { images: vec![], max_running: 1 } }
    /// }
    ///
    /// let manifest: toml::Table = toml::from_str(r#"
    ///     [grants."spawn.example"]
    ///     images = ["busybox"]
    /// "#).unwrap();
    /// let grants = manifest["grants"].as_table().unwrap().iter()
    ///     .map(|(k, v)| (k.clone(), v.as_table().unwrap().clone())).collect();
    /// let info = PluginInfo {
    ///     name: "p".into(),
    ///     capabilities: vec!["spawn.example".into()],
    ///     data_dir: "data/p".into(),
    ///     grants,
    ///     limits: GuestLimits { max_buffer: 1 << 20, call_budget: Duration::from_secs(1) },
    ///     usage: Default::default(),
    /// };
    /// let s: Settings = info.settings("spawn.example").unwrap();
    /// assert_eq!(s, Settings { images: vec!["busybox".into()], max_running: 1 });
    ///
    /// let mut typo = info.clone();
    /// typo.grants.get_mut("spawn.example").unwrap().insert("max_runing".into(), 2.into());
    /// let err = typo.settings::<Settings>("spawn.example").unwrap_err().to_string();
    /// assert!(err.contains("unknown field `max_runing`"), "{err}");
    /// ```
    pub fn settings<T: DeserializeOwned>(&self, capability: &str) -> Result<T, CapabilityError> {
        let table = self.grants.get(capability).cloned().unwrap_or_default();
        T::deserialize(toml::Value::Table(table)).map_err(|e| CapabilityError {
            capability: capability.to_string(),
            plugin: self.name.clone(),
            message: format!("in [grants.\"{capability}\"]: {}", e.message()),
        })
    }

    /// A [`CapabilityError`] about this plugin.
    pub fn error(&self, capability: &str, message: impl Into<String>) -> CapabilityError {
        CapabilityError {
            capability: capability.to_string(),
            plugin: self.name.clone(),
            message: message.into(),
        }
    }
}

/// Why an event could not be queued for a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRejected {
    /// The plugin's mailbox is at capacity; try later.
    Full,
    /// The plugin is not running any more.
    Closed,
}

/// Delivers encoded [`pulp_abi::StepEvent`]s to a plugin's mailbox. Each one
/// becomes one `pulp_step` call on the plugin's thread.
pub trait EventSink: Send + Sync {
    /// Queues one encoded event without blocking.
    fn push(&self, event: Vec<u8>) -> Result<(), EventRejected>;
}

/// The exports host functions need, looked up once after instantiation.
#[derive(Clone)]
pub struct GuestExports {
    /// The guest's linear memory.
    pub memory: Memory,
    /// `pulp_alloc`, shared: cloning a `TypedFunc` itself clones its type.
    pub alloc: Arc<TypedFunc<u32, u32>>,
}

/// The data of a plugin's wasmtime store: everything its host functions can reach.
pub struct PluginState {
    info: Arc<PluginInfo>,
    events: Arc<dyn EventSink>,
    guest: Option<GuestExports>,
    limiter: Box<dyn ResourceLimiter + Send>,
    wasi: WasiP1Ctx,
    slots: HashMap<TypeId, Box<dyn Any + Send>>,
    clock: Option<CallClock>,
    /// Tick at which the running call started; `None` outside a call.
    call_started: Option<u64>,
}

impl PluginState {
    /// State for a new instance. The host calls this; extensions receive it.
    pub fn new(
        info: Arc<PluginInfo>,
        events: Arc<dyn EventSink>,
        limiter: Box<dyn ResourceLimiter + Send>,
        wasi: WasiP1Ctx,
    ) -> Self {
        PluginState {
            info,
            events,
            guest: None,
            limiter,
            wasi,
            slots: HashMap::new(),
            clock: None,
            call_started: None,
        }
    }

    /// Who this plugin is.
    pub fn info(&self) -> &Arc<PluginInfo> {
        &self.info
    }

    /// Where events for this plugin go (for results that arrive later).
    pub fn events(&self) -> &Arc<dyn EventSink> {
        &self.events
    }

    /// Memory and allocator of the instance; `None` until instantiation completes.
    pub fn guest(&self) -> Option<&GuestExports> {
        self.guest.as_ref()
    }

    /// When the running `pulp_init` / `pulp_step` / `pulp_shutdown` must end:
    /// one absolute deadline for the guest code and every host call inside it.
    /// Slow host work (a SQL statement, a sleep) stops at this instant, never
    /// at a budget of its own. `None` outside a call (or before the host set
    /// its clock), when a host call should use [`GuestLimits::call_budget`]
    /// from now.
    pub fn call_deadline(&self) -> Option<Instant> {
        let clock = self.clock?;
        Some(clock.deadline(self.call_started?, self.info.limits.call_budget))
    }

    /// Sets the clock calls are timed with (host only).
    pub fn set_call_clock(&mut self, clock: CallClock) {
        self.clock = Some(clock);
    }

    /// Marks the start of a call (host only): one relaxed load, no clock read.
    #[inline]
    pub fn begin_call(&mut self) {
        self.call_started = self.clock.map(|c| c.now());
    }

    /// Marks the end of a call (host only).
    #[inline]
    pub fn end_call(&mut self) {
        self.call_started = None;
    }

    /// Records the instance's exports (host only).
    pub fn set_guest(&mut self, guest: GuestExports) {
        self.guest = Some(guest);
    }

    /// The store's resource limiter (host only: `Store::limiter`).
    pub fn limiter_mut(&mut self) -> &mut (dyn ResourceLimiter + Send) {
        self.limiter.as_mut()
    }

    /// The WASI preview 1 context (host only: the WASI linker projection).
    pub fn wasi_mut(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    /// Per-instance state of a capability, by type.
    pub fn slot<T: Any + Send>(&self) -> Option<&T> {
        self.slots
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    /// Mutable per-instance state of a capability, by type.
    pub fn slot_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.slots
            .get_mut(&TypeId::of::<T>())
            .and_then(|b| b.downcast_mut())
    }

    /// Stores per-instance state, replacing any of the same type.
    pub fn insert_slot<T: Any + Send>(&mut self, value: T) {
        self.slots.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// Removes and returns per-instance state.
    pub fn take_slot<T: Any + Send>(&mut self) -> Option<T> {
        self.slots
            .remove(&TypeId::of::<T>())
            .and_then(|b| b.downcast().ok())
            .map(|b| *b)
    }
}
