//! `spawn.docker` (gated): plugins run containers from the images their
//! manifest allows; a step never waits for Docker.
//!
//! `docker_spawn({image, cmd, env, stdin, timeout_ms})` checks the request
//! against `[grants."spawn.docker"]` (an image not listed → 4, one spawn over
//! `max_running` → 9, both before any Docker call), answers `{spawn_id}` at
//! once and runs the container on the capability's own runtime
//! ([`run`]). Its end arrives as a `docker.exit` event in the plugin's
//! mailbox, also when it failed (`error` set). `docker_kill({spawn_id})` stops
//! one early. A container counts against `max_running` from the spawn until
//! it is removed (after its exit is reported, which may wait for room in the
//! mailbox), and in the plugin's usage as long. When the instance stops or
//! fails, its containers are killed and removed before `release` returns, so
//! none outlives a clean exit; ones left by a crashed earlier run of the same
//! data directory are removed when the first instance starts ([`engine`]), or
//! at a later start when Docker did not answer then, and ones of other hosts
//! past their deadline label while this one runs.

mod engine;
mod image;
mod run;
mod settings;

pub use engine::{LABEL_DATA_DIR, LABEL_DEADLINE, LABEL_HOST, LABEL_PLUGIN, LABEL_SPAWN};
pub use settings::DockerSettings;

use engine::{Engine, Reap};
use pulp_abi::docker::{DockerExit, DockerKill, DockerSpawn, DockerSpawned, EXIT_EVENT};
use pulp_abi::{Code, StepEvent};
use pulp_ext::{
    host_fn, Capability, CapabilityError, EventRejected, EventSink, HostError, ImportSpec,
    PluginInfo, PluginState, PluginUsage,
};
use run::{Job, Stop};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::Linker;

/// The capability's name in manifests.
pub const NAME: &str = "spawn.docker";

/// How long `release` waits for an instance's containers to be removed.
const RELEASE_WAIT: Duration = Duration::from_secs(20);
/// How long `prepare` waits for the daemon to answer before warning.
const PING_WAIT: Duration = Duration::from_secs(3);

const IMPORTS: &[ImportSpec] = &[
    ImportSpec::msgpack_in_out("docker_spawn"),
    ImportSpec::msgpack_in("docker_kill"),
];

/// A spawn whose container is not removed yet.
struct Running {
    plugin: String,
    instance: u64,
    stop: watch::Sender<Stop>,
    /// Its exit was reported; only the removal is left. It still counts
    /// against `max_running`, and `release` still waits for it.
    exited: bool,
}

/// How many containers exist for `plugin` (spawned and not yet removed).
fn count_of(running: &HashMap<u64, Running>, plugin: &str) -> usize {
    running.values().filter(|r| r.plugin == plugin).count()
}

/// Drops a spawn whose container is removed (or was never created) and
/// charges the plugin's usage with the containers left.
fn forget(shared: &Shared, spawn_id: u64, plugin: &str, usage: &PluginUsage) {
    if let Ok(mut running) = shared.running.lock() {
        running.remove(&spawn_id);
        charge(&running, plugin, usage);
    }
}

/// Charges the plugin's usage with its containers now.
fn charge(running: &HashMap<u64, Running>, plugin: &str, usage: &PluginUsage) {
    usage.set_containers(count_of(running, plugin) as u64);
}

struct Shared {
    engine: Arc<Engine>,
    running: Mutex<HashMap<u64, Running>>,
    next_spawn: AtomicU64,
    next_instance: AtomicU64,
    /// Containers of an earlier run were looked for (retried until Docker answers).
    reaped: AtomicBool,
    /// The deadline sweep runs.
    sweeping: AtomicBool,
}

/// The Docker capability. Clones share one connection and one table of
/// running containers.
#[derive(Clone)]
pub struct DockerCapability {
    shared: Arc<Shared>,
}

/// Per-instance state.
struct DockerSlot {
    settings: Arc<DockerSettings>,
    instance: u64,
    data_root: PathBuf,
}

impl Default for DockerCapability {
    fn default() -> Self {
        DockerCapability::new()
    }
}

impl DockerCapability {
    /// A capability that connects to Docker when first needed.
    pub fn new() -> Self {
        DockerCapability {
            shared: Arc::new(Shared {
                engine: Arc::new(Engine::new()),
                running: Mutex::new(HashMap::new()),
                next_spawn: AtomicU64::new(1),
                next_instance: AtomicU64::new(1),
                reaped: AtomicBool::new(false),
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    fn spawn(
        state: &PluginState,
        request: DockerSpawn,
        shared: &Arc<Shared>,
    ) -> Result<DockerSpawned, HostError> {
        let slot = state
            .slot::<DockerSlot>()
            .ok_or_else(|| HostError::failed("spawn.docker was not set up for this instance"))?;
        let settings = &slot.settings;
        let image = settings.image_for(&request.image).ok_or_else(|| {
            HostError::invalid(format!(
                "image {:?} is not in the manifest's images ({})",
                request.image,
                settings.images.join(", ")
            ))
        })?;
        let env = environment(&request)?;
        if request.cmd.iter().any(|arg| arg.contains('\0')) {
            return Err(HostError::invalid("cmd arguments may not contain NUL"));
        }
        let timeout_ms = match request.timeout_ms {
            None => settings.timeout_ms,
            Some(t) if (1..=settings.timeout_ms).contains(&t) => t,
            Some(t) => {
                return Err(HostError::invalid(format!(
                    "timeout_ms = {t} is not within 1..={} (the manifest's timeout_ms)",
                    settings.timeout_ms
                )))
            }
        };
        let plugin = state.info().name.clone();
        let usage = state.info().usage.clone();
        let (stop, stopped) = watch::channel(Stop::Run);
        let spawn_id = {
            let mut running = shared
                .running
                .lock()
                .map_err(|_| HostError::failed("spawn table poisoned"))?;
            let mine = count_of(&running, &plugin);
            if mine >= settings.max_running as usize {
                return Err(HostError::code(
                    Code::LimitExceeded,
                    format!(
                        "{mine} containers exist for this plugin (running, or exited and not yet removed): over max_running = {}",
                        settings.max_running
                    ),
                ));
            }
            let spawn_id = shared.next_spawn.fetch_add(1, Ordering::Relaxed);
            running.insert(
                spawn_id,
                Running {
                    plugin: plugin.clone(),
                    instance: slot.instance,
                    stop,
                    exited: false,
                },
            );
            charge(&running, &plugin, &usage);
            spawn_id
        };
        let timeout = Duration::from_millis(timeout_ms);
        let job = Job {
            spawn_id,
            labels: shared
                .engine
                .labels(&slot.data_root, &plugin, spawn_id, timeout),
            plugin,
            image,
            cmd: request.cmd,
            env,
            stdin: request.stdin,
            timeout,
            memory_bytes: settings.memory_bytes(),
            nano_cpus: settings.nano_cpus(),
            pids: settings.pids,
            network: settings.network.clone(),
            max_output: settings.max_output(),
            tmpfs_mb: settings.tmpfs_mb,
        };
        let sink = state.events().clone();
        let task_shared = shared.clone();
        let task_usage = usage.clone();
        let plugin = job.plugin.clone();
        let started = shared.engine.spawn(async move {
            let engine = task_shared.engine.clone();
            run::run(engine, job, stopped, |exit| async {
                if let Ok(mut running) = task_shared.running.lock() {
                    if let Some(r) = running.get_mut(&spawn_id) {
                        r.exited = true;
                    }
                }
                deliver(sink.as_ref(), exit).await;
            })
            .await;
            forget(&task_shared, spawn_id, &plugin, &task_usage);
        });
        if let Err(e) = started {
            forget(shared, spawn_id, &state.info().name, &usage);
            return Err(HostError::failed(e));
        }
        Ok(DockerSpawned { spawn_id })
    }

    fn kill(state: &PluginState, request: DockerKill, shared: &Shared) -> Result<(), HostError> {
        let instance = state.slot::<DockerSlot>().map(|s| s.instance);
        let running = shared
            .running
            .lock()
            .map_err(|_| HostError::failed("spawn table poisoned"))?;
        match running.get(&request.spawn_id) {
            Some(r) if Some(r.instance) == instance && !r.exited => {
                r.stop.send_replace(Stop::Kill);
                Ok(())
            }
            _ => Err(HostError::code(
                Code::NotFound,
                format!("spawn {} is not running for this plugin", request.spawn_id),
            )),
        }
    }

    /// Lines for `pulp check`: the settings, and a warning when the daemon or
    /// an allowed image cannot be found.
    fn survey(&self, settings: &DockerSettings) -> Vec<String> {
        let mut notes = vec![format!(
            "docker: images {}; up to {} containers, each {} MiB, {} CPUs, {} pids, network {}, read-only root with {} MiB tmpfs, {} ms at most, {} KiB of output per stream",
            settings.images.join(", "),
            settings.max_running,
            settings.memory_mb,
            settings.cpus,
            settings.pids,
            settings.network,
            settings.tmpfs_mb,
            settings.timeout_ms,
            settings.max_output_kb
        )];
        let engine = &self.shared.engine;
        let survey = async {
            let docker = engine.client().await?;
            let mut warnings = Vec::new();
            for image in &settings.images {
                if let Err(e) = image::resolve(&docker, image).await {
                    warnings.push(format!("{e}; spawns of it will fail"));
                }
            }
            let cpus = docker.info().await.ok().and_then(|info| info.ncpu);
            if let Some(n) = cpus.filter(|&n| settings.cpus > n as f64) {
                warnings.push(format!(
                    "cpus = {} is more than the Docker host's {n}; Docker will refuse every spawn",
                    settings.cpus
                ));
            }
            Ok::<_, String>(warnings)
        };
        let found = engine.block_on(async {
            tokio::time::timeout(PING_WAIT, survey).await.map_err(|_| {
                format!("{}: no answer within {PING_WAIT:?}", engine::where_docker())
            })?
        });
        match found.and_then(|r| r) {
            Ok(warnings) => notes.extend(warnings.into_iter().map(|w| format!("WARNING: docker: {w}"))),
            Err(e) => notes.push(format!(
                "WARNING: docker: {e}; every spawn will end in a docker.exit event with an error until it is reachable"
            )),
        }
        notes
    }
}

/// The request's environment as `NAME=value`, refusing names Docker would
/// misread.
fn environment(request: &DockerSpawn) -> Result<Vec<String>, HostError> {
    request
        .env
        .iter()
        .map(|(name, value)| {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                Err(HostError::invalid(format!(
                    "env: {name:?} is not a valid variable (empty, or contains '=' or NUL)"
                )))
            } else {
                Ok(format!("{name}={value}"))
            }
        })
        .collect()
}

/// Queues the exit event. A full mailbox is waited out (the event must not be
/// lost); a closed one means the plugin is gone.
async fn deliver(sink: &dyn EventSink, exit: DockerExit) {
    let spawn_id = exit.spawn_id;
    let event = StepEvent {
        kind: EXIT_EVENT.to_string(),
        payload: exit,
    };
    let bytes = match event.encode() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(spawn_id, "docker.exit event could not be encoded: {e}");
            return;
        }
    };
    let mut pause = Duration::from_millis(2);
    loop {
        match sink.push(bytes.clone()) {
            Ok(()) => return,
            Err(EventRejected::Closed) => return,
            Err(EventRejected::Full) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

impl Capability for DockerCapability {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "run containers from allowed images; each result arrives later as a `docker.exit` event"
    }

    fn imports(&self) -> &[ImportSpec] {
        IMPORTS
    }

    fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        host_fn::msgpack_in_out(
            linker,
            "docker_spawn",
            move |caller, request: DockerSpawn| {
                DockerCapability::spawn(caller.data(), request, &shared)
            },
        )?;
        let shared = self.shared.clone();
        host_fn::msgpack_in(linker, "docker_kill", move |caller, request: DockerKill| {
            DockerCapability::kill(caller.data(), request, &shared)
        })
    }

    fn prepare(&self, plugin: &PluginInfo) -> Result<Vec<String>, CapabilityError> {
        let settings = DockerSettings::of(plugin)?;
        Ok(self.survey(&settings))
    }

    fn instantiate(&self, state: &mut PluginState) -> Result<(), CapabilityError> {
        let info = state.info().clone();
        let settings = DockerSettings::of(&info)?;
        let data_root = info
            .data_dir
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let engine = &self.shared.engine;
        if !self.shared.reaped.load(Ordering::Acquire) {
            match engine
                .block_on(engine.reap(&data_root, Reap::LeftBehind))
                .and_then(|r| r)
            {
                Ok(n) => {
                    self.shared.reaped.store(true, Ordering::Release);
                    if n > 0 {
                        tracing::info!(
                            "removed {n} containers left by an earlier run of data directory {}",
                            data_root.display()
                        );
                    }
                }
                Err(e) => tracing::warn!(
                    "could not look for containers left by an earlier run (tried again at the next start): {e}"
                ),
            }
        }
        if !self.shared.sweeping.swap(true, Ordering::AcqRel) {
            if let Err(e) = engine.start_sweeper(&data_root) {
                self.shared.sweeping.store(false, Ordering::Release);
                tracing::warn!("docker: the deadline sweep could not start (tried again at the next start): {e}");
            }
        }
        state.insert_slot(DockerSlot {
            settings: Arc::new(settings),
            instance: self.shared.next_instance.fetch_add(1, Ordering::Relaxed),
            data_root,
        });
        Ok(())
    }

    fn release(&self, state: &mut PluginState) {
        let Some(slot) = state.take_slot::<DockerSlot>() else {
            return;
        };
        let mine: Vec<watch::Sender<Stop>> = match self.shared.running.lock() {
            Ok(mut running) => {
                let ids: Vec<u64> = running
                    .iter()
                    .filter(|(_, r)| r.instance == slot.instance)
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter()
                    .filter_map(|id| running.remove(id))
                    .map(|r| r.stop)
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        if mine.is_empty() {
            return;
        }
        for stop in &mine {
            stop.send_replace(Stop::Release);
        }
        // Each task drops its receiver once its container is removed.
        let removed = self.shared.engine.block_on(async {
            let all = futures_util::future::join_all(mine.iter().map(|s| s.closed()));
            tokio::time::timeout(RELEASE_WAIT, all).await.is_ok()
        });
        if removed != Ok(true) {
            tracing::warn!(
                plugin = %state.info().name,
                "containers of this instance were not all removed within {RELEASE_WAIT:?}"
            );
        }
        if let Ok(running) = self.shared.running.lock() {
            charge(&running, &state.info().name, &state.info().usage);
        }
    }
}
