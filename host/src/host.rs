//! The host: one engine, one registry, one epoch timer, and the plugins loaded into it.

use crate::actor::{self, RunOptions, RunningPlugin};
use crate::caps::{EntropyCapability, LoggingCapability};
use crate::check::{check_plugin, CheckReport};
use crate::epoch::{EpochClock, EpochTimer};
use crate::log_gate::LogGate;
use crate::manifest::{Manifest, ManifestError};
use crate::module_cache::{CacheOutcome, ModuleCache};
use crate::prepared::PreparedPlugin;
use crate::registry::{Gate, Registry, RegistryError};
use crate::run_events::RunEventSender;
use pulp_ext::{Capability, GuestLimits, PluginInfo, PluginState};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::{Config, Engine, Linker, Module};

/// Data directory when none is given: `./data`.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Where a plugin's compiled module came from, for `pulp check`.
enum Compiled {
    /// Another plugin of this host runs the same wasm.
    Shared,
    /// The on-disk cache (hit, stored or rebuilt).
    Cache(CacheOutcome),
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest or its wasm file was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The module does not fit the ABI or the registry.
    #[error("plugin `{plugin}` ({file}): {}", problems.join("; "))]
    Rejected {
        plugin: String,
        file: PathBuf,
        problems: Vec<String>,
    },
}

/// Why the host could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Two capabilities collide.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// wasmtime refused the engine configuration.
    #[error("wasmtime engine: {0}")]
    Engine(String),
    /// The epoch timer thread could not start.
    #[error("cannot start the epoch timer thread")]
    Timer(#[from] std::io::Error),
}

/// Assembles a [`Host`]: the built-in capabilities plus any extensions.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let host = pulp_host::Host::builder().data_dir("/var/lib/pulp").build()?;
/// let plugin = host.prepare(std::path::Path::new("manifests/heartbeat.toml"))?;
/// # Ok(()) }
/// ```
pub struct HostBuilder {
    registry: Result<Registry, RegistryError>,
    data_dir: PathBuf,
    fuel_metering: bool,
    module_cache: Option<ModuleCache>,
    pooling: Option<Pooling>,
}

/// Slots the pooling allocator reserves up front (see [`HostBuilder::pooling`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// Plugin instances alive at once.
    pub instances: u32,
    /// Elements each of an instance's tables may reach (the largest
    /// `limits.table_elements` of the plugins).
    pub table_elements: u32,
}

/// How the host allocates instance memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Memory mapped when an instance is created and unmapped when it goes.
    OnDemand,
    /// Slots reserved once; an instance takes a free one (see [`HostBuilder::pooling`]).
    Pooling(Pooling),
}

impl HostBuilder {
    /// Adds a capability bound for every plugin.
    pub fn always(mut self, capability: impl Capability) -> Self {
        self.registry = self
            .registry
            .and_then(|mut r| r.register(Arc::new(capability), Gate::Always).map(|_| r));
        self
    }

    /// Adds a capability bound only for plugins that declare it.
    pub fn gated(mut self, capability: impl Capability) -> Self {
        self.registry = self
            .registry
            .and_then(|mut r| r.register(Arc::new(capability), Gate::Manifest).map(|_| r));
        self
    }

    /// Where plugins keep their files: `<dir>/<plugin name>/`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// Keeps compiled modules in `dir`, so a plugin loads without compiling
    /// after its first start (see [`ModuleCache`]). Off by default.
    pub fn module_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.module_cache = Some(ModuleCache::new(dir));
        self
    }

    /// Uses `cache` for compiled modules: [`HostBuilder::module_cache`] with
    /// its key file chosen ([`ModuleCache::key_file`]).
    pub fn module_cache_with(mut self, cache: ModuleCache) -> Self {
        self.module_cache = Some(cache);
        self
    }

    /// Reserves address space for `pooling.instances` instances up front, so
    /// instantiating (and restarting) a plugin takes a ready slot instead of
    /// mapping memory afresh. Each slot reserves about 4 GiB of virtual address
    /// space (not memory); when the machine cannot reserve that much (a
    /// `ulimit -v`, a small address space), the host falls back to on-demand
    /// allocation and logs why. An instance beyond the pool's size fails to start.
    pub fn pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = Some(pooling);
        self
    }

    /// Meters fuel in every plugin, so manifests may set `limits.fuel`. Off by
    /// default: metering costs every guest call some speed.
    pub fn fuel_metering(mut self, on: bool) -> Self {
        self.fuel_metering = on;
        self
    }

    /// Builds the engine and starts the epoch timer.
    pub fn build(self) -> Result<Host, HostError> {
        let registry = self.registry?;
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(self.fuel_metering);
        let (engine, allocator) = match self.pooling {
            Some(pooling) => {
                match Engine::new(config.clone().allocation_strategy(pool_config(pooling))) {
                    Ok(engine) => (engine, Allocator::Pooling(pooling)),
                    Err(e) => {
                        tracing::warn!(
                            "pooling allocator for {} instances unavailable, allocating on demand: {e:#}",
                            pooling.instances
                        );
                        (engine(&config)?, Allocator::OnDemand)
                    }
                }
            }
            None => (engine(&config)?, Allocator::OnDemand),
        };
        let (timer, clock) = EpochTimer::start(&engine)?;
        Ok(Host {
            engine,
            allocator,
            modules: Mutex::new(HashMap::new()),
            registry,
            data_dir: self.data_dir,
            fuel_metering: self.fuel_metering,
            module_cache: self.module_cache,
            clock,
            _timer: timer,
        })
    }
}

/// A plugin host. Cheap to share by reference across threads.
pub struct Host {
    engine: Engine,
    allocator: Allocator,
    /// Compiled modules by wasm sha256, shared by plugins with the same wasm.
    modules: Mutex<HashMap<[u8; 32], Module>>,
    registry: Registry,
    data_dir: PathBuf,
    fuel_metering: bool,
    module_cache: Option<ModuleCache>,
    clock: EpochClock,
    _timer: EpochTimer,
}

impl Host {
    /// A builder holding the always-on capabilities (`logging`, `entropy`).
    pub fn builder() -> HostBuilder {
        HostBuilder {
            registry: Ok(Registry::new()),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            fuel_metering: false,
            module_cache: None,
            pooling: None,
        }
        .always(LoggingCapability)
        .always(EntropyCapability)
    }

    /// The capabilities this host offers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How instance memory is allocated (pooling may have fallen back).
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// The shared wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The handle plugins use to run under the host's epoch timer.
    pub fn clock(&self) -> &EpochClock {
        &self.clock
    }

    /// Checks the plugin at `manifest` without running it: the report, and the
    /// prepared plugin when there are no problems.
    pub fn inspect(&self, manifest: &Path) -> (CheckReport, Option<PreparedPlugin>) {
        match self.try_prepare(manifest) {
            Ok(prepared) => (prepared.report.clone(), Some(prepared)),
            Err(failure) => (failure.0, None),
        }
    }

    /// Loads, checks and links the plugin at `manifest`.
    pub fn prepare(&self, manifest: &Path) -> Result<PreparedPlugin, LoadError> {
        self.try_prepare(manifest).map_err(|failure| failure.1)
    }

    /// Errors carry the report too, for `pulp check`; boxed, as they are large and rare.
    fn try_prepare(&self, path: &Path) -> Result<PreparedPlugin, Box<(CheckReport, LoadError)>> {
        let failed = |plugin: String, problems: Vec<String>, report: CheckReport| {
            let err = LoadError::Rejected {
                plugin,
                file: path.to_path_buf(),
                problems,
            };
            Box::new((report, err))
        };
        let manifest = Manifest::load(path).map_err(|e| {
            let report = CheckReport {
                plugin: path.display().to_string(),
                problems: vec![e.to_string()],
                ..CheckReport::default()
            };
            Box::new((report, LoadError::Manifest(e)))
        })?;
        let name = manifest.name.clone();
        let wasm = manifest.read_wasm().map_err(|e| {
            let report = CheckReport {
                plugin: name.clone(),
                problems: vec![e.to_string()],
                ..CheckReport::default()
            };
            (report, LoadError::Manifest(e))
        })?;
        // Plugins running the same wasm share one compiled module (its code is
        // mapped once, however many instances run it).
        let digest: [u8; 32] = Sha256::digest(&wasm).into();
        let shared = self
            .modules
            .lock()
            .ok()
            .and_then(|modules| modules.get(&digest).cloned());
        let compiled = match (shared, &self.module_cache) {
            (Some(module), _) => Ok((module, Some(Compiled::Shared))),
            (None, Some(cache)) => cache
                .load_or_compile(&self.engine, &wasm, &digest)
                .map(|(m, outcome)| (m, Some(Compiled::Cache(outcome)))),
            (None, None) => Module::new(&self.engine, &wasm).map(|m| (m, None)),
        };
        if let (Ok((module, _)), Ok(mut modules)) = (&compiled, self.modules.lock()) {
            modules.entry(digest).or_insert_with(|| module.clone());
        }
        let (module, cached) = compiled.map_err(|e| {
            let problem = format!(
                "{}: not a valid wasm module: {e:#}",
                manifest.wasm.display()
            );
            let report = CheckReport {
                plugin: name.clone(),
                problems: vec![problem.clone()],
                ..CheckReport::default()
            };
            failed(name.clone(), vec![problem], report)
        })?;
        let info = Arc::new(PluginInfo {
            name: name.clone(),
            capabilities: manifest.capabilities.clone(),
            data_dir: self.data_dir.join(&name),
            grants: manifest.grants.clone(),
            limits: GuestLimits {
                max_buffer: manifest.limits.max_buffer,
                call_budget: manifest.limits.call_timeout,
            },
            usage: Default::default(),
        });
        let (mut report, granted) = check_plugin(&self.registry, &manifest, &info, &module);
        report.notes.extend(cached.map(|outcome| match outcome {
            Compiled::Shared => {
                "module: the same wasm is already compiled for another plugin of this host".into()
            }
            Compiled::Cache(CacheOutcome::Hit(path)) => {
                format!("module: loaded from cache {}", path.display())
            }
            Compiled::Cache(CacheOutcome::Stored(path)) => {
                format!("module: compiled, cached as {}", path.display())
            }
            Compiled::Cache(CacheOutcome::Rebuilt(path, why)) => {
                format!("module: cache entry {} rebuilt ({why})", path.display())
            }
            Compiled::Cache(CacheOutcome::Unused(why)) => format!("module: compiled; {why}"),
        }));
        if manifest.limits.fuel.is_some() && !self.fuel_metering {
            report.problems.push(
                "limits.fuel needs a host that meters fuel (HostBuilder::fuel_metering; `pulp` turns it on when a manifest sets limits.fuel)".into(),
            );
        }
        if !report.ok() {
            return Err(failed(name, report.problems.clone(), report));
        }
        let linked = self
            .linker(&granted)
            .and_then(|linker| linker.instantiate_pre(&module));
        let pre = match linked {
            Ok(pre) => pre,
            Err(e) => {
                report.problems.push(format!("linking failed: {e:#}"));
                return Err(failed(name, report.problems.clone(), report));
            }
        };
        Ok(PreparedPlugin {
            log: LogGate::new(&info, manifest.limits.log),
            manifest,
            info,
            pre,
            granted,
            report,
            fuel_metering: self.fuel_metering,
        })
    }

    /// A linker for one plugin: WASI, the real functions of `granted`, and the
    /// stubs of every other capability.
    fn linker(
        &self,
        granted: &[crate::registry::Registered],
    ) -> wasmtime::Result<Linker<PluginState>> {
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut PluginState| s.wasi_mut())?;
        crate::wasi_poll::add_to_linker(&mut linker)?;
        for entry in self.registry.entries() {
            let cap = &entry.capability;
            if granted.iter().any(|g| g.capability.name() == cap.name()) {
                cap.link(&mut linker)?;
            } else {
                cap.link_stub(&mut linker)?;
            }
        }
        Ok(linker)
    }

    /// Starts `plugin` as an actor on its own thread; `events` receives what it
    /// does. The channel is bounded in events and bytes ([`crate::run_events`]):
    /// an actor never waits for room in it, it drops the event and counts it
    /// ([`UsageSnapshot::events_dropped`](crate::metrics::UsageSnapshot)).
    pub fn spawn(
        &self,
        plugin: PreparedPlugin,
        options: RunOptions,
        events: RunEventSender,
    ) -> std::io::Result<RunningPlugin> {
        actor::spawn(Arc::new(plugin), self.clock.clone(), options, events)
    }
}

fn engine(config: &Config) -> Result<Engine, HostError> {
    Engine::new(config).map_err(|e| HostError::Engine(e.to_string()))
}

/// The pooling allocator sized for `pooling`: one memory and up to
/// [`MAX_TABLES`](crate::limiter::MAX_TABLES) tables per instance, as the
/// limiter allows.
fn pool_config(pooling: Pooling) -> wasmtime::PoolingAllocationConfig {
    let tables = crate::limiter::MAX_TABLES as u32;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_core_instances(pooling.instances)
        .total_memories(pooling.instances)
        .total_tables(pooling.instances.saturating_mul(tables))
        .max_memories_per_module(1)
        .max_tables_per_module(tables)
        .table_elements(pooling.table_elements as usize);
    pool
}
