//! The connection to Docker: a one-thread async runtime of the capability's
//! own, a client made on first use, and the labels that tie a container to
//! this host.
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
use std::sync::OnceLock;
use std::time::Duration;

/// Label: the host instance that started the container.
pub const LABEL_HOST: &str = "pulp.host";
/// Label: the plugin that asked for it.
pub const LABEL_PLUGIN: &str = "pulp.plugin";
/// Label: its spawn id.
pub const LABEL_SPAWN: &str = "pulp.spawn-id";
/// Label: the host's data directory, absolute. Containers with this label and
/// another host instance were left by an earlier run and are reaped.
pub const LABEL_DATA_DIR: &str = "pulp.data-dir";

/// How long connecting (with version negotiation) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Engine {
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    client: tokio::sync::Mutex<Option<Docker>>,
    /// Random per host instance, so two runs never share a label value.
    instance: String,
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

    /// Labels of a container this host starts for `plugin`.
    pub fn labels(&self, data_root: &Path, plugin: &str, spawn_id: u64) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_HOST.to_string(), self.instance.clone()),
            (LABEL_PLUGIN.to_string(), plugin.to_string()),
            (LABEL_SPAWN.to_string(), spawn_id.to_string()),
            (LABEL_DATA_DIR.to_string(), data_root_label(data_root)),
        ])
    }

    /// Removes containers of `data_root` that another (crashed) host instance
    /// left behind. Returns how many were removed.
    pub async fn reap(&self, data_root: &Path) -> Result<usize, String> {
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
        let mut removed = 0;
        for container in found {
            let ours = container
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_HOST))
                .is_some_and(|h| *h == self.instance);
            let Some(id) = container.id.filter(|_| !ours) else {
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
