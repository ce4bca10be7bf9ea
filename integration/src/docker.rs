//! The Docker engine the `spawn.docker` tests use: is it there, and which
//! containers carry a label. `scripts/docker-setup` provides engine and image.

use std::process::Command;
use std::sync::OnceLock;

/// The test image: busybox on `scratch`, built locally by `scripts/docker-setup`.
pub const IMAGE: &str = "pulp-busybox";

/// True when an engine answers and has [`IMAGE`]. Otherwise: under `CI=true`
/// this panics (CI must have Docker); elsewhere it prints why the calling
/// test skips and returns false.
pub fn available(test: &str) -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let out = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
            .output()
            .map_err(|e| format!("the docker CLI cannot run: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "no Docker engine with image {IMAGE}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    });
    match probe {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: CI needs Docker for this test, but {why} (scripts/docker-setup sets it up)")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}; run scripts/docker-setup to set it up");
            false
        }
    }
}

/// Ids of every container, running or not, with label `key=value`.
pub fn containers(key: &str, value: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label={key}={value}"))
        .output()
        .expect("docker ps runs");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `docker inspect` of one container, as JSON text.
pub fn inspect(id: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", id])
        .output()
        .expect("docker inspect runs");
    assert!(
        out.status.success(),
        "docker inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes every container of a data directory when dropped, so a test that
/// fails half-way leaves nothing running on the (shared) engine.
pub struct RemoveOnDrop(pub String);

impl Drop for RemoveOnDrop {
    /// Never panics (it may run while a test unwinds, or with no engine).
    fn drop(&mut self) {
        let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter"])
            .arg(format!("label=pulp.data-dir={}", self.0))
            .output()
        else {
            return;
        };
        let found = String::from_utf8_lossy(&out.stdout);
        let ids: Vec<&str> = found.lines().collect();
        if out.status.success() && !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}
