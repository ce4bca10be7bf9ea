//! Docker benchmark: spawn-to-exit latency of `true` in the `pulp-busybox`
//! image through `spawn.docker` vs `docker run --rm` from the CLI, same image,
//! same run, alternating. Prints JSON lines; run with
//! `cargo bench -p pulp-integration --bench docker` (after `scripts/docker-setup`).
//!
//! Through the capability, the latency is what the jobs plugin saw: from the
//! wall time of the step that called `docker_spawn` to that of the step that
//! received `docker.exit` (create, attach, start, wait, event; the removal
//! follows the event). The
//! CLI's is the wall time of the whole `docker run --rm` process.

use pulp_integration::docker::{self, IMAGE};
use pulp_integration::http_client::{request, wait_until_serving};
use pulp_integration::{example_manifest, plugin_wasm, RunningPulp};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;

fn main() {
    if !docker::available("bench docker") {
        return;
    }
    plugin_wasm("jobs");
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = example_manifest(
        dir.path(),
        "jobs",
        "jobs",
        &format!(
            "capabilities = [\"transport.http.inbound\", \"storage.sqlite\", \"spawn.docker\"]\n[config]\nimage = \"{IMAGE}\"\n[grants.\"spawn.docker\"]\nimages = [\"{IMAGE}\"]\nnetwork = \"none\""
        ),
    );
    let data = tempfile::tempdir().expect("tempdir");
    let pulp = RunningPulp::start(
        &["--data-dir", data.path().to_str().expect("utf-8")],
        &[&manifest],
    );
    wait_until_serving(pulp.addr, "/jobs/x");

    let (mut plugin, mut cli) = (Vec::new(), Vec::new());
    // One warm-up of each, not counted.
    for round in 0..=ROUNDS {
        let through_pulp = spawn_through_pulp(&pulp);
        let started = Instant::now();
        let status = Command::new("docker")
            .args(["run", "--rm", "--network", "none", IMAGE, "true"])
            .status()
            .expect("docker run");
        assert!(status.success());
        if round > 0 {
            plugin.push(through_pulp);
            cli.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (p, c) = (summary(&mut plugin), summary(&mut cli));
    println!(
        r#"{{"case":"docker_spawn_to_exit","via":"spawn.docker","image":"{IMAGE}","cmd":"true","rounds":{ROUNDS},"median_ms":{:.1},"p90_ms":{:.1}}}"#,
        p.0, p.1
    );
    println!(
        r#"{{"case":"docker_spawn_to_exit","via":"docker run --rm","image":"{IMAGE}","cmd":"true","rounds":{ROUNDS},"median_ms":{:.1},"p90_ms":{:.1}}}"#,
        c.0, c.1
    );
    println!(
        r#"{{"case":"docker_spawn_to_exit","ratio_cli_over_pulp":{:.2}}}"#,
        c.0 / p.0
    );
    pulp.stop();
}

/// One `true` job through the jobs plugin; the latency it saw, in ms.
fn spawn_through_pulp(pulp: &RunningPulp) -> f64 {
    let r = request(pulp.addr, "POST", "/jobs", &[], br#"{"cmd":["true"]}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = serde_json::from_slice::<Value>(&r.body).expect("json")["id"].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = request(pulp.addr, "GET", &format!("/jobs/{id}"), &[], b"");
        let job: Value = serde_json::from_slice(&r.body).expect("json");
        if job["status"] != "running" {
            assert_eq!(job["status"], "exited", "{job}");
            return job["latency_ms"].as_f64().expect("latency");
        }
        assert!(Instant::now() < deadline, "job {id} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (median, p90) of `values`.
fn summary(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}
