//! One spawn, start to finish, in the background: create, attach, start,
//! feed stdin, collect capped output, wait (killing on timeout or request),
//! remove. Whatever happens, the outcome is a [`DockerExit`]; a failure is its
//! `error`, never a host error.

use super::engine::{force_remove, Engine};
use super::image::{self, LocalImage};
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, KillContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use pulp_abi::docker::DockerExit;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// Longest wait for each Docker call around the container's run (create,
/// attach, start, kill, remove): a daemon that hangs cannot hold a spawn forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// After the container exits, how long output still in transit may take to arrive.
const OUTPUT_LINGER: Duration = Duration::from_secs(1);
/// Longest `error` text handed to the plugin.
const MAX_ERROR: usize = 1024;

/// What the plugin (through `docker_kill`) or the host (through release) wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Let it run.
    Run,
    /// `docker_kill`: kill it, still report its exit.
    Kill,
    /// The instance is gone: kill and remove it, report nothing.
    Release,
}

/// Everything one container needs, fixed when the spawn is accepted.
pub struct Job {
    pub spawn_id: u64,
    pub plugin: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
    pub labels: HashMap<String, String>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub network: String,
    pub max_output: usize,
    /// Size of `/tmp` and of each image `VOLUME`, MiB.
    pub tmpfs_mb: u64,
}

/// Output of one stream, cut at a limit.
struct Capture {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Capture {
            bytes: Vec::new(),
            limit,
            truncated: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.limit - self.bytes.len();
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// Runs `job` to its end and hands its exit to `report`, then removes the
/// container: the plugin hears of the exit without waiting for the removal.
/// Nothing is reported when the instance was released meanwhile (nobody is
/// left to tell).
pub async fn run<F, R>(engine: Arc<Engine>, job: Job, mut stop: watch::Receiver<Stop>, report: F)
where
    F: FnOnce(DockerExit) -> R,
    R: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    if *stop.borrow() == Stop::Release {
        return;
    }
    let mut exit = DockerExit {
        spawn_id: job.spawn_id,
        exit_code: -1,
        ..DockerExit::default()
    };
    let mut created = None;
    let outcome = match engine.client().await {
        Ok(docker) => match create(&engine, &docker, &job).await {
            Ok(id) => {
                let outcome = supervise(&docker, &id, &job, &mut stop, &mut exit).await;
                created = Some((docker, id));
                outcome
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    exit.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Err(error) = outcome {
        tracing::warn!(plugin = %job.plugin, spawn_id = job.spawn_id, image = %job.image, "docker spawn failed: {error}");
        exit.error = Some(cut(error));
    }
    if *stop.borrow() != Stop::Release {
        // The report may wait for room in the mailbox: a release ends the wait.
        tokio::select! {
            () = report(exit) => {}
            () = released(&mut stop) => {}
        }
    }
    if let Some((docker, id)) = created {
        remove(&docker, &id, &job).await;
    }
}

/// Resolves once the instance is released.
async fn released(stop: &mut watch::Receiver<Stop>) {
    if stop.wait_for(|s| *s == Stop::Release).await.is_err() {
        // No sender: nobody can release it any more.
        std::future::pending::<()>().await;
    }
}

/// Creates the container, sandboxed: no capabilities, no new privileges, the
/// manifest's memory/CPU/pids/network limits, and no log driver (output is
/// read through the attach stream, so Docker stores none of it). Its root
/// filesystem is read-only (so are `/etc/hosts` and friends then); it may
/// write only to a tmpfs of `tmpfs_mb` at `/tmp` and at each `VOLUME` of the
/// image, memory its cgroup is charged for. Where the storage driver can, the
/// writable layer is capped at `tmpfs_mb` as well. Each process gets the CPU
/// time its timeout allows ([`cpu_seconds`]), so one that burns CPU ends by
/// itself even when no host is left to kill it.
async fn create(engine: &Engine, docker: &Docker, job: &Job) -> Result<String, String> {
    let image = image::resolve(docker, &job.image).await?;
    if engine.storage_quota_possible() {
        match create_with(docker, job, &image, true).await {
            Err(CallError::Docker(e)) if is_storage_opt_refusal(&e) => {
                engine.storage_quota_found(false)
            }
            created => {
                if created.is_ok() {
                    engine.storage_quota_found(true);
                }
                return created.map_err(|e| e.to_string());
            }
        }
    }
    create_with(docker, job, &image, false)
        .await
        .map_err(|e| e.to_string())
}

/// `RLIMIT_CPU` of each process in the container, seconds: what it could use
/// running flat out on all its CPUs until its timeout, and one more. The
/// kernel kills a process there (even the container's PID 1), so a runaway
/// computation ends with or without its host; one that sleeps or keeps
/// forking fresh processes is only ended by a host (see the deadline label).
fn cpu_seconds(job: &Job) -> i64 {
    let cpus = (job.nano_cpus as f64 / 1e9).max(1.0);
    (job.timeout.as_secs_f64() * cpus).ceil() as i64 + 1
}

/// True when Docker refused a create for its `StorageOpt` alone.
fn is_storage_opt_refusal(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            let message = message.to_ascii_lowercase();
            message.contains("storage-opt") || message.contains("storage opt")
        }
        _ => false,
    }
}

async fn create_with(
    docker: &Docker,
    job: &Job,
    image: &LocalImage,
    storage_quota: bool,
) -> Result<String, CallError> {
    let has_stdin = !job.stdin.is_empty();
    let tmpfs_options = format!("rw,nosuid,nodev,size={}m", job.tmpfs_mb);
    let tmpfs = std::iter::once("/tmp".to_string())
        .chain(image.volumes.iter().cloned())
        .map(|path| (path, tmpfs_options.clone()))
        .collect();
    let body = ContainerCreateBody {
        image: Some(image.run.clone()),
        cmd: (!job.cmd.is_empty()).then(|| job.cmd.clone()),
        env: Some(job.env.clone()),
        labels: Some(job.labels.clone()),
        attach_stdin: Some(has_stdin),
        open_stdin: Some(has_stdin),
        stdin_once: Some(has_stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        host_config: Some(HostConfig {
            memory: Some(job.memory_bytes),
            memory_swap: Some(job.memory_bytes),
            nano_cpus: Some(job.nano_cpus),
            pids_limit: Some(job.pids),
            network_mode: Some(job.network.clone()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            readonly_rootfs: Some(true),
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("cpu".into()),
                soft: Some(cpu_seconds(job)),
                hard: Some(cpu_seconds(job)),
            }]),
            tmpfs: Some(tmpfs),
            storage_opt: storage_quota
                .then(|| HashMap::from([("size".to_string(), format!("{}m", job.tmpfs_mb))])),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let created = within(
        "create",
        docker.create_container(None::<CreateContainerOptions>, body),
    )
    .await?;
    Ok(created.id)
}

/// Attaches, starts, feeds stdin and waits for the exit, collecting output and
/// honouring the timeout and stop requests. Fills `exit`; `Err` = why it failed.
async fn supervise(
    docker: &Docker,
    id: &str,
    job: &Job,
    stop: &mut watch::Receiver<Stop>,
    exit: &mut DockerExit,
) -> Result<(), String> {
    let has_stdin = !job.stdin.is_empty();
    let attached = within(
        "attach",
        docker.attach_container(
            id,
            Some(AttachContainerOptions {
                stream: true,
                stdin: has_stdin,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        ),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut output = attached.output;
    let mut input = attached.input;
    within(
        "start",
        docker.start_container(id, None::<StartContainerOptions>),
    )
    .await
    .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + job.timeout;

    let stdin = job.stdin.clone();
    let feed = async move {
        if !stdin.is_empty() {
            // A container that exits without reading its stdin closes the pipe: not an error.
            let _ = input.write_all(&stdin).await;
        }
        let _ = input.shutdown().await;
    };
    tokio::pin!(feed);
    let mut fed = false;

    let mut stdout = Capture::new(job.max_output);
    let mut stderr = Capture::new(job.max_output);
    let mut wait = docker.wait_container(id, None::<WaitContainerOptions>);
    let mut status: Option<Result<i64, String>> = None;
    let mut output_open = true;
    let mut linger = deadline;
    let mut stop_open = true;
    loop {
        tokio::select! {
            () = &mut feed, if !fed => fed = true,
            item = output.next(), if output_open => match item {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => stdout.push(&message),
                Some(Ok(LogOutput::StdErr { message })) => stderr.push(&message),
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(_)) | None => output_open = false,
            },
            waited = wait.next(), if status.is_none() => {
                status = Some(exit_status(waited));
                linger = tokio::time::Instant::now() + OUTPUT_LINGER;
            }
            () = tokio::time::sleep_until(deadline), if status.is_none() && !exit.timed_out => {
                exit.timed_out = true;
                kill(docker, id).await;
            }
            changed = stop.changed(), if stop_open => match changed {
                Ok(()) => {
                    let wanted = *stop.borrow_and_update();
                    match wanted {
                        Stop::Run => {}
                        Stop::Kill => {
                            exit.killed = status.is_none() && !exit.timed_out;
                            kill(docker, id).await;
                        }
                        // Removal (forced) follows at once; the exit is never reported.
                        Stop::Release => return Ok(()),
                    }
                }
                Err(_) => stop_open = false,
            },
            () = tokio::time::sleep_until(linger), if status.is_some() => break,
        }
        if status.is_some() && !output_open {
            break;
        }
    }
    exit.stdout_truncated = stdout.truncated;
    exit.stderr_truncated = stderr.truncated;
    exit.stdout = stdout.bytes;
    exit.stderr = stderr.bytes;
    exit.exit_code = match status {
        Some(Ok(code)) => code,
        Some(Err(e)) => return Err(e),
        None => -1,
    };
    if exit.timed_out {
        return Err(format!(
            "timed out after {} ms and was killed",
            job.timeout.as_millis()
        ));
    }
    Ok(())
}

/// The exit code from the wait stream. bollard reports a non-zero exit as an error.
fn exit_status(
    waited: Option<Result<bollard::models::ContainerWaitResponse, bollard::errors::Error>>,
) -> Result<i64, String> {
    match waited {
        Some(Ok(response)) => Ok(response.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(format!("waiting for the container: {e}")),
        None => Err("waiting for the container: Docker closed the stream".into()),
    }
}

async fn kill(docker: &Docker, id: &str) {
    let killed = within(
        "kill",
        docker.kill_container(id, None::<KillContainerOptions>),
    )
    .await;
    // 409: it had already stopped, which is what we wanted.
    if let Err(e) = killed {
        tracing::debug!(container = id, "kill: {e}");
    }
}

async fn remove(docker: &Docker, id: &str, job: &Job) {
    if let Err(e) = within("remove", docker.remove_container(id, Some(force_remove()))).await {
        tracing::warn!(plugin = %job.plugin, spawn_id = job.spawn_id, container = id, "could not remove the container: {e}");
    }
}

/// A Docker call that failed or took too long.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("docker {0}: no answer within {CALL_TIMEOUT:?}")]
    Timeout(&'static str),
    #[error(transparent)]
    Docker(bollard::errors::Error),
}

async fn within<T>(
    what: &'static str,
    call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(CallError::Docker),
        Err(_) => Err(CallError::Timeout(what)),
    }
}

/// At most [`MAX_ERROR`] bytes, cut on a character boundary.
fn cut(mut message: String) -> String {
    if message.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_first_bytes_and_marks_the_cut() {
        let mut c = Capture::new(5);
        c.push(b"abc");
        assert!(!c.truncated);
        c.push(b"defg");
        c.push(b"h");
        assert_eq!((c.bytes.as_slice(), c.truncated), (&b"abcde"[..], true));
    }

    #[test]
    fn cpu_time_covers_the_timeout_on_every_cpu() {
        let job = |timeout_ms, nano_cpus| Job {
            spawn_id: 1,
            plugin: "p".into(),
            image: "i".into(),
            cmd: Vec::new(),
            env: Vec::new(),
            stdin: Vec::new(),
            timeout: Duration::from_millis(timeout_ms),
            labels: HashMap::new(),
            memory_bytes: 1 << 30,
            nano_cpus,
            pids: 1,
            network: "none".into(),
            max_output: 1,
            tmpfs_mb: 1,
        };
        assert_eq!(cpu_seconds(&job(2000, 500_000_000)), 3);
        assert_eq!(cpu_seconds(&job(2500, 2_000_000_000)), 6);
        assert_eq!(cpu_seconds(&job(1, 1_000_000_000)), 2);
    }

    #[test]
    fn errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR);
        let cut = cut(long);
        assert!(cut.len() <= MAX_ERROR && cut.chars().all(|c| c == 'é'));
    }
}
