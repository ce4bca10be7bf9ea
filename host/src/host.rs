//! The host: one engine, one registry, one epoch timer, and the plugins loaded into it.

use crate::actor::{self, RunEvent, RunOptions, RunningPlugin};
use crate::caps::{EntropyCapability, LoggingCapability};
use crate::check::{check_plugin, CheckReport};
use crate::epoch::{EpochClock, EpochTimer};
use crate::manifest::{Manifest, ManifestError};
use crate::module_cache::{CacheOutcome, ModuleCache};
use crate::prepared::PreparedPlugin;
use crate::registry::{Gate, Registry, RegistryError};
use pulp_ext::{Capability, GuestLimits, PluginInfo, PluginState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use wasmtime::{Config, Engine, Linker, Module};

/// Data directory when none is given: `./data`.
pub const DEFAULT_DATA_DIR: &str = "data";

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
    #[error("epoch timer thread: {0}")]
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
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(e.to_string()))?;
        let (timer, clock) = EpochTimer::start(&engine)?;
        Ok(Host {
            engine,
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
        }
        .always(LoggingCapability)
        .always(EntropyCapability)
    }

    /// The capabilities this host offers.
    pub fn registry(&self) -> &Registry {
        &self.registry
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
        let compiled = match &self.module_cache {
            Some(cache) => cache
                .load_or_compile(&self.engine, &wasm)
                .map(|(m, outcome)| (m, Some(outcome))),
            None => Module::new(&self.engine, &wasm).map(|m| (m, None)),
        };
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
        });
        let (mut report, granted) = check_plugin(&self.registry, &manifest, &info, &module);
        report.notes.extend(cached.map(|outcome| match outcome {
            CacheOutcome::Hit(path) => format!("module: loaded from cache {}", path.display()),
            CacheOutcome::Stored(path) => format!("module: compiled, cached as {}", path.display()),
            CacheOutcome::Rebuilt(path, why) => {
                format!("module: cache entry {} rebuilt ({why})", path.display())
            }
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

    /// Starts `plugin` as an actor on its own thread; `events` receives what it does.
    pub fn spawn(
        &self,
        plugin: PreparedPlugin,
        options: RunOptions,
        events: UnboundedSender<RunEvent>,
    ) -> std::io::Result<RunningPlugin> {
        actor::spawn(Arc::new(plugin), self.clock.clone(), options, events)
    }
}
