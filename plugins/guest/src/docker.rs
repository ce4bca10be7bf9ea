//! `spawn.docker`: run containers from the images the manifest allows.
//!
//! [`spawn`] returns a spawn id at once; the container runs in the background
//! and its end arrives later as a step event, read with [`exit`]. A spawn
//! that could not run at all (Docker unreachable, image missing) still ends in
//! an [`Exit`], with `error` set.
//!
//! ```ignore
//! let id = docker::spawn(&docker::Spawn::new("busybox", ["echo", "hi"]).env("LANG", "C"))?;
//! // ... a later step:
//! if let Some(exit) = docker::exit(&step)? {
//!     assert_eq!((exit.spawn_id, exit.exit_code, &exit.stdout[..]), (id, 0, &b"hi\n"[..]));
//! }
//! ```
//!
//! Codes: [`Code::InvalidArgument`](crate::Code) (4) for an image the manifest
//! does not list or a bad request, [`Code::LimitExceeded`](crate::Code) (9)
//! when `max_running` containers of this plugin already run.

use crate::{HostCallError, Step};
pub use pulp_abi::docker::{DockerExit as Exit, DockerSpawn as Spawn};
use pulp_abi::docker::{DockerKill, DockerSpawned, EXIT_EVENT};

/// Starts a container; returns its spawn id, which the [`Exit`] will carry.
pub fn spawn(request: &Spawn) -> Result<u64, HostCallError> {
    let spawned: DockerSpawned = crate::ext::call_in_out(crate::sys::docker_spawn, request)?;
    Ok(spawned.spawn_id)
}

/// Kills a running spawn. Its [`Exit`] still arrives, with `killed` set.
/// [`Code::NotFound`](crate::Code) (6) when it already ended.
pub fn kill(spawn_id: u64) -> Result<(), HostCallError> {
    crate::ext::call_in(crate::sys::docker_kill, &DockerKill { spawn_id })
}

/// The container exit this step carries, if it carries one.
pub fn exit(step: &Step<'_>) -> Result<Option<Exit>, crate::Error> {
    match step.kind()? {
        Some(kind) if kind == EXIT_EVENT => Ok(Some(step.event()?)),
        _ => Ok(None),
    }
}
