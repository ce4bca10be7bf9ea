//! `spawn.docker`: the container a plugin asks for, the id it gets back at
//! once, and the `docker.exit` event that reports how the container ended.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Event kind of a finished spawn.
pub const EXIT_EVENT: &str = "docker.exit";

/// Argument of `docker_spawn`: run `cmd` in a container of `image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DockerSpawn {
    /// An image the manifest allows (`name` means `name:latest`). It must already
    /// be on the Docker host: Pulp never pulls.
    pub image: String,
    /// The command; empty runs the image's default.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Environment variables of the container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bytes written to the container's stdin, which is then closed; empty = no stdin.
    #[serde(default, with = "serde_bytes")]
    pub stdin: Vec<u8>,
    /// Kill the container after this long; at most (and by default) the manifest's `timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Result of `docker_spawn`: the id its [`DockerExit`] event will carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerSpawned {
    /// Unique within one run of the host.
    pub spawn_id: u64,
}

/// Argument of `docker_kill`: stop this spawn now (its exit event still comes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerKill {
    /// What `docker_spawn` returned.
    pub spawn_id: u64,
}

/// Payload of a `docker.exit` event: how one spawn ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DockerExit {
    /// What `docker_spawn` returned.
    pub spawn_id: u64,
    /// The container's exit status; -1 when it never ran or its status could
    /// not be read (see `error`).
    pub exit_code: i64,
    /// Standard output, cut at the manifest's `max_output_kb`.
    #[serde(default, with = "serde_bytes")]
    pub stdout: Vec<u8>,
    /// Standard error, cut at the manifest's `max_output_kb`.
    #[serde(default, with = "serde_bytes")]
    pub stderr: Vec<u8>,
    /// True when `stdout` was cut.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// True when `stderr` was cut.
    #[serde(default)]
    pub stderr_truncated: bool,
    /// From the spawn call to the container's exit.
    pub duration_ms: u64,
    /// True when `docker_kill` stopped it (never together with `timed_out`).
    #[serde(default)]
    pub killed: bool,
    /// True when it ran past its timeout and was killed.
    #[serde(default)]
    pub timed_out: bool,
    /// Why the spawn failed or was cut short (Docker unreachable, image missing,
    /// create/start refused, timeout); `None` when the container ran to its end.
    #[serde(default)]
    pub error: Option<String>,
}

impl DockerSpawn {
    /// A request to run `cmd` in `image`.
    pub fn new<I, S>(image: &str, cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        DockerSpawn {
            image: image.into(),
            cmd: cmd.into_iter().map(Into::into).collect(),
            ..DockerSpawn::default()
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Bytes for the container's stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// Kills it after `ms` milliseconds (at most the manifest's `timeout_ms`).
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }
}

impl DockerExit {
    /// True when the container ran to its end and exited with status 0.
    pub fn success(&self) -> bool {
        self.error.is_none() && !self.killed && self.exit_code == 0
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn builder_fills_the_request() {
        let s = DockerSpawn::new("busybox", ["sh", "-c", "cat"])
            .env("A", "1")
            .stdin(&b"in"[..])
            .timeout_ms(500);
        assert_eq!(s.cmd, ["sh", "-c", "cat"]);
        assert_eq!(
            (s.env["A"].as_str(), &s.stdin[..], s.timeout_ms),
            ("1", &b"in"[..], Some(500))
        );
    }

    #[test]
    fn spawn_request_needs_only_an_image() {
        #[derive(Serialize)]
        struct Minimal<'a> {
            image: &'a str,
        }
        let bytes = rmp_serde::to_vec_named(&Minimal { image: "busybox" }).unwrap();
        let spawn: DockerSpawn = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(spawn.image, "busybox");
        assert!(spawn.cmd.is_empty() && spawn.env.is_empty() && spawn.stdin.is_empty());
        assert_eq!(spawn.timeout_ms, None);
    }

    #[test]
    fn exit_round_trips_with_output_as_bin() {
        let exit = DockerExit {
            spawn_id: 7,
            exit_code: 3,
            stdout: b"hi\n".to_vec(),
            stderr: vec![0xff],
            stdout_truncated: true,
            duration_ms: 120,
            error: Some("timed out".to_string()),
            ..DockerExit::default()
        };
        let bytes = rmp_serde::to_vec_named(&exit).unwrap();
        // stdout is a bin 8 (0xc4) of 3 bytes, not an array of integers.
        let at = bytes.windows(6).position(|w| w == b"stdout").unwrap();
        assert_eq!(&bytes[at + 6..at + 8], &[0xc4, 3]);
        assert_eq!(rmp_serde::from_slice::<DockerExit>(&bytes).unwrap(), exit);
    }
}
