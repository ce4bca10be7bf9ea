//! The connection to Docker: a one-thread async runtime of the capability's
//! own, a client made on first use, the labels that tie a container to this
//! host, and the reaper of containers other hosts left behind.
//!
//! Every container carries a deadline label (its start, its timeout and
//! [`DEADLINE_GRACE`]), so its end does not depend on the host that started
//! it staying alive: a host removes every container of its data directory
//! that another host instance left when its first `spawn.docker` instance
//! starts, and then, every [`SWEEP_EVERY`] while it runs, those of other host
//! instances (a killed one, or a live one that lost track) past their deadline.
//!
//! The runtime is the capability's so that it works the same under `pulp run`
//! and in an embedder without tokio; its one worker sleeps while no container
//! runs. The client honours `DOCKER_HOST` (bollard's defaults: the local
//! socket otherwise) and negotiates the API version, so an older daemon works.

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Label: the host instance that started the container.
pub const LABEL_HOST: &str = "pulp.host";
/// Label: the plugin that asked for it.
pub const LABEL_PLUGIN: &str = "pulp.plugin";
/// Label: its spawn id.
pub const LABEL_SPAWN: &str = "pulp.spawn-id";
/// Label: the host's data directory, absolute. Containers with this label and
/// another host instance were left by an earlier run and are reaped.
pub const LABEL_DATA_DIR: &str = "pulp.data-dir";
/// Label: when (Unix time, ms) the container must be gone, whoever started it.
pub const LABEL_DEADLINE: &str = "pulp.deadline";

/// Added to a container's timeout for its deadline label: the host that
/// started it kills it at its timeout itself; others step in only after this.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(5);
/// How often a running host looks for other hosts' containers past their deadline.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Whether the storage driver can cap a container's writable layer
/// (`StorageOpt size`; overlay2 only on xfs with `pquota`).
const QUOTA_UNKNOWN: u8 = 0;
const QUOTA_YES: u8 = 1;
const QUOTA_NO: u8 = 2;

/// How long connecting (with version negotiation) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Engine {
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    client: tokio::sync::Mutex<Option<Docker>>,
    /// Random per host instance, so two runs never share a label value.
    instance: String,
    /// [`QUOTA_UNKNOWN`] until the first create tells.
    storage_quota: AtomicU8,
}

impl Engine {
    pub fn new() -> Engine {
        let mut bytes = [0u8; 8];
        // Without OS randomness the time still tells runs apart.
        if getrandom::fill(&mut bytes).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            bytes = (now.as_nanos() as u64).to_le_bytes();
        }
        Engine {
            runtime: OnceLock::new(),
            client: tokio::sync::Mutex::new(None),
            instance: crate::manifest::hex(&bytes),
            storage_quota: AtomicU8::new(QUOTA_UNKNOWN),
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, String> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("pulp-docker")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the Docker runtime: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Runs `future` in the background.
    pub fn spawn<F>(&self, future: F) -> Result<(), String>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.runtime()?.spawn(future);
        Ok(())
    }

    /// Runs `future` to completion from synchronous code. It runs on a scoped
    /// thread, so this works from inside another runtime too (`pulp run`
    /// prepares plugins on a tokio worker).
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, String>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime()?;
        std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(future))
                .join()
                .map_err(|_| "the Docker runtime thread panicked".to_string())
        })
    }

    /// The client, connecting on first use. A failure is not remembered: the
    /// next call tries again, so a daemon started later is found.
    pub async fn client(&self) -> Result<Docker, String> {
        let mut client = self.client.lock().await;
        if let Some(docker) = client.as_ref() {
            return Ok(docker.clone());
        }
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, connect())
            .await
            .map_err(|_| format!("{}: no answer within {CONNECT_TIMEOUT:?}", where_docker()))??;
        *client = Some(docker.clone());
        Ok(docker)
    }

    /// Labels of a container this host starts now for `plugin`, to run at
    /// most `timeout`.
    pub fn labels(
        &self,
        data_root: &Path,
        plugin: &str,
        spawn_id: u64,
        timeout: Duration,
    ) -> HashMap<String, String> {
        let deadline = unix_ms().saturating_add(millis(timeout + DEADLINE_GRACE));
        HashMap::from([
            (LABEL_HOST.to_string(), self.instance.clone()),
            (LABEL_PLUGIN.to_string(), plugin.to_string()),
            (LABEL_SPAWN.to_string(), spawn_id.to_string()),
            (LABEL_DATA_DIR.to_string(), data_root_label(data_root)),
            (LABEL_DEADLINE.to_string(), deadline.to_string()),
        ])
    }

    /// False once Docker said it cannot cap a container's writable layer.
    pub fn storage_quota_possible(&self) -> bool {
        self.storage_quota.load(Ordering::Relaxed) != QUOTA_NO
    }

    /// Records whether a create with a writable-layer cap worked; says once
    /// when the storage driver cannot.
    pub fn storage_quota_found(&self, possible: bool) {
        let now = if possible { QUOTA_YES } else { QUOTA_NO };
        if self.storage_quota.swap(now, Ordering::Relaxed) != now && !possible {
            tracing::info!(
                "docker: the storage driver cannot cap a container's writable layer (overlay2 needs xfs with pquota); \
                 containers run with a read-only root and write only to their size-limited tmpfs"
            );
        }
    }

    /// Starts the sweep of other hosts' containers of `data_root` past their
    /// deadline, every [`SWEEP_EVERY`] until the engine is dropped.
    pub fn start_sweeper(self: &Arc<Self>, data_root: &Path) -> Result<(), String> {
        let engine: Weak<Engine> = Arc::downgrade(self);
        let data_root = data_root.to_path_buf();
        self.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                match engine.reap(&data_root, Reap::Expired).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        "removed {n} containers of data directory {} that other hosts left running past their deadline",
                        data_root.display()
                    ),
                    Err(e) => tracing::debug!("docker: the deadline sweep failed: {e}"),
                }
            }
        })
    }

    /// Removes containers of `data_root` that another host instance started:
    /// all of them ([`Reap::LeftBehind`], at start: an earlier run of this
    /// data directory crashed) or those past their deadline label
    /// ([`Reap::Expired`]). Returns how many were removed.
    pub async fn reap(&self, data_root: &Path, which: Reap) -> Result<usize, String> {
        let docker = self.client().await?;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_DATA_DIR}={}", data_root_label(data_root))],
        )]);
        let found = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| format!("listing containers: {e}"))?;
        let now = unix_ms();
        let mut removed = 0;
        for container in found {
            let labels = container.labels.unwrap_or_default();
            let ours = labels.get(LABEL_HOST) == Some(&self.instance);
            let due = match which {
                Reap::LeftBehind => true,
                Reap::Expired => labels
                    .get(LABEL_DEADLINE)
                    .and_then(|d| d.parse::<u64>().ok())
                    .is_some_and(|deadline| deadline <= now),
            };
            let Some(id) = container.id.filter(|_| !ours && due) else {
                continue;
            };
            match docker.remove_container(&id, Some(force_remove())).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(container = %id, "could not reap a container left by an earlier run: {e}")
                }
            }
        }
        Ok(removed)
    }
}

/// Which containers of other host instances [`Engine::reap`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reap {
    /// All of them.
    LeftBehind,
    /// Those past their [`LABEL_DEADLINE`].
    Expired,
}

/// Now, in milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for Engine {
    fn drop(&mut self) {
        // A runtime may not be dropped inside another one (`pulp run` drops the
        // host in its own); containers were already removed by `release`.
        if let Some(Ok(runtime)) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Remove even when running (the kill is part of the removal), with the
/// anonymous volumes an image's `VOLUME` lines created.
pub fn force_remove() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    }
}

async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults().map_err(|e| format!("{}: {e}", where_docker()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| format!("{} is not reachable: {e}", where_docker()))
}

/// Where the client looks for Docker, for messages.
pub fn where_docker() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) => format!("Docker at DOCKER_HOST={host}"),
        Err(_) => "Docker at unix:///var/run/docker.sock".to_string(),
    }
}

/// The data directory as an absolute path, the same for every run that names
/// it the same way (lexical: it need not exist yet).
fn data_root_label(data_root: &Path) -> String {
    std::path::absolute(data_root)
        .unwrap_or_else(|_| data_root.to_path_buf())
        .display()
        .to_string()
}
