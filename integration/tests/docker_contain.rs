//! `spawn.docker` when the plugin does not keep up: a full mailbox delays
//! the `docker.exit` reports, and with them the removal of exited
//! containers. Those still count against `max_running` and in the plugin's
//! usage, so they cannot pile up. A WAT plugin spawns whatever its step
//! payload asks for, on a real Docker engine (skipped without one, except
//! under `CI=true`).

use pulp_abi::docker::DockerSpawn;
use pulp_ext::{EventRejected, EventSink};
use pulp_host::caps::DockerCapability;
use pulp_host::{Host, Plugin};
use pulp_integration::docker::{self, IMAGE};
use pulp_integration::{wat_plugin, ScratchPlugin};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A mailbox that is always full: no exit is ever reported while it is.
struct FullMailbox;
impl EventSink for FullMailbox {
    fn push(&self, _: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Full)
    }
}

/// A step that hands its payload (a MessagePack `DockerSpawn`) to
/// `docker_spawn` and returns the import's code.
fn spawner() -> String {
    wat_plugin(
        r#"(import "pulp" "docker_spawn" (func $spawn (param i32 i32 i32 i32) (result i32)))"#,
        "(call $spawn (i32.add (local.get $ptr) (i32.const 20)) (i32.sub (local.get $len) (i32.const 20)) (i32.const 8) (i32.const 12))",
        "",
    )
}

fn spawn_request(cmd: &[&str]) -> Vec<u8> {
    rmp_serde::to_vec_named(&DockerSpawn {
        image: IMAGE.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        ..DockerSpawn::default()
    })
    .unwrap()
}

/// Ids of the containers of `data_dir` whose status is `status`.
fn containers_in(data_dir: &str, status: &str) -> Vec<String> {
    docker::containers("pulp.data-dir", data_dir)
        .into_iter()
        .filter(|id| docker::inspect(id).contains(&format!("\"Status\": \"{status}\"")))
        .collect()
}

#[test]
fn exited_containers_not_yet_removed_count_against_max_running() {
    if !docker::available("exited_containers_count") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let data_dir = std::path::absolute(data.path()).unwrap();
    let data_dir = data_dir.to_str().unwrap();
    let _cleanup = docker::RemoveOnDrop(data_dir.to_string());
    let scratch = ScratchPlugin::wat(
        "spawner",
        &spawner(),
        &format!(
            "capabilities = [\"spawn.docker\"]\n[grants.\"spawn.docker\"]\nimages = [\"{IMAGE}\"]\nmax_running = 2"
        ),
    );
    let host = Host::builder()
        .data_dir(data.path())
        .gated(DockerCapability::new())
        .build()
        .unwrap();
    let prepared = Arc::new(host.prepare(&scratch.manifest).unwrap());
    let usage = prepared.info.usage.clone();
    let mut plugin =
        Plugin::instantiate(prepared, host.clock().clone(), Arc::new(FullMailbox)).unwrap();
    plugin.init(&[]).unwrap();
    for _ in 0..2 {
        let outcome = plugin.step(&spawn_request(&["true"])).unwrap();
        assert_eq!(outcome.handle, 0, "spawn accepted");
    }
    assert_eq!(usage.containers(), 2);
    // Both end at once; their exits wait for room in the mailbox.
    let deadline = Instant::now() + Duration::from_secs(20);
    while containers_in(data_dir, "exited").len() < 2 {
        assert!(Instant::now() < deadline, "the containers did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing runs, but two containers exist: a third spawn is over max_running.
    let outcome = plugin.step(&spawn_request(&["true"])).unwrap();
    assert_eq!(outcome.handle, 9, "over max_running");
    assert_eq!(docker::containers("pulp.data-dir", data_dir).len(), 2);
    assert_eq!(usage.containers(), 2);
    // Stopping the instance removes them, reported or not.
    plugin.shutdown().unwrap();
    assert_eq!(
        docker::containers("pulp.data-dir", data_dir),
        Vec::<String>::new()
    );
    assert_eq!(usage.containers(), 0);
}
