//! `spawn.docker` against a real Docker engine, through the jobs plugin and
//! the real binary: output, exit codes, env, stdin, truncation, kill,
//! timeout, the manifest's narrowing, container limits, and cleanup (clean
//! stop and reaping after a crash). Without an engine these tests skip with a
//! message, except under `CI=true`, where they fail.

use pulp_integration::docker::{self, IMAGE};
use pulp_integration::http_client::{request, wait_until_serving};
use pulp_integration::{example_manifest, plugin_wasm, pulp, text, RunningPulp};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A host running the jobs plugin with its own data directory.
struct Jobs {
    pulp: Option<RunningPulp>,
    data: tempfile::TempDir,
    manifest: PathBuf,
    _dir: tempfile::TempDir,
}

/// The jobs plugin with `grants` added to `[grants."spawn.docker"]`.
fn manifest(dir: &Path, grants: &str) -> PathBuf {
    plugin_wasm("jobs");
    example_manifest(
        dir,
        "jobs",
        "jobs",
        &format!(
            r#"capabilities = ["transport.http.inbound", "storage.sqlite", "spawn.docker"]
[config]
image = "{IMAGE}"
[limits]
call_timeout_ms = 2000
[grants."spawn.docker"]
{grants}"#
        ),
    )
}

impl Jobs {
    fn start(grants: &str) -> Jobs {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest(dir.path(), grants);
        let data = tempfile::tempdir().unwrap();
        let mut jobs = Jobs {
            pulp: None,
            data,
            manifest,
            _dir: dir,
        };
        jobs.restart();
        jobs
    }

    /// Starts (again) a host on the same data directory.
    fn restart(&mut self) {
        let pulp = RunningPulp::start(
            &["--data-dir", self.data.path().to_str().unwrap()],
            &[&self.manifest],
        );
        wait_until_serving(pulp.addr, "/jobs/x");
        self.pulp = Some(pulp);
    }

    fn pulp(&self) -> &RunningPulp {
        self.pulp.as_ref().expect("running")
    }

    fn post(&self, job: Value) -> (u16, Value) {
        let r = request(
            self.pulp().addr,
            "POST",
            "/jobs",
            &[("content-type", "application/json")],
            job.to_string().as_bytes(),
        );
        (r.status, json_of(&r.body))
    }

    /// Starts a job that must be accepted; its id.
    fn start_job(&self, job: Value) -> i64 {
        let (status, body) = self.post(job);
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    fn get(&self, id: i64) -> Value {
        let r = request(self.pulp().addr, "GET", &format!("/jobs/{id}"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        json_of(&r.body)
    }

    /// Polls until the job is no longer running.
    fn finished(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.get(id);
            if job["status"] != "running" {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} still running: {job}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a job to its end.
    fn run(&self, job: Value) -> Value {
        let id = self.start_job(job);
        self.finished(id)
    }

    fn kill(&self, id: i64) -> u16 {
        request(self.pulp().addr, "DELETE", &format!("/jobs/{id}"), &[], b"").status
    }

    /// This host's containers, running or not.
    fn containers(&self) -> Vec<String> {
        docker::containers("pulp.data-dir", self.data.path().to_str().unwrap())
    }

    /// Waits until this host's container count is `n`; the ids.
    fn await_containers(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self.containers();
            if found.len() == n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} containers, found {found:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A test that fails half-way leaves nothing on the (shared) engine: the
/// host is killed, then its containers are removed.
impl Drop for Jobs {
    fn drop(&mut self) {
        drop(self.pulp.take());
        drop(docker::RemoveOnDrop(
            self.data.path().to_str().unwrap_or_default().to_string(),
        ));
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

const SETTINGS: &str = r#"images = ["pulp-busybox"]"#;

#[test]
fn runs_commands_and_reports_exit_code_output_env_and_stdin() {
    if !docker::available("runs_commands") {
        return;
    }
    let jobs = Jobs::start(SETTINGS);
    let hi = jobs.run(json!({"cmd": ["echo", "hi"]}));
    assert_eq!(
        (
            &hi["status"],
            &hi["exit_code"],
            &hi["stdout"],
            &hi["stderr"]
        ),
        (&json!("exited"), &json!(0), &json!("hi\n"), &json!("")),
        "{hi}"
    );
    assert!(
        hi["error"].is_null() && hi["latency_ms"].as_f64().unwrap() > 0.0,
        "{hi}"
    );

    let three = jobs.run(json!({"cmd": ["sh", "-c", "echo out; echo oops >&2; exit 3"]}));
    assert_eq!(
        (
            &three["status"],
            &three["exit_code"],
            &three["stdout"],
            &three["stderr"]
        ),
        (
            &json!("exited"),
            &json!(3),
            &json!("out\n"),
            &json!("oops\n")
        ),
        "{three}"
    );

    let env = jobs.run(json!({"cmd": ["sh", "-c", "echo \"$GREETING, $WHO\""], "env": {"GREETING": "hello", "WHO": "pulp"}}));
    assert_eq!(env["stdout"], "hello, pulp\n", "{env}");

    let piped = jobs.run(json!({"cmd": ["sh", "-c", "tr a-z A-Z"], "stdin": "abc\n"}));
    assert_eq!(
        (&piped["exit_code"], &piped["stdout"]),
        (&json!(0), &json!("ABC\n")),
        "{piped}"
    );
    // Every container was removed after its exit was reported.
    jobs.await_containers(0);
}

#[test]
fn output_is_cut_at_the_limit_and_marked() {
    if !docker::available("output_is_cut") {
        return;
    }
    let jobs = Jobs::start(&format!("{SETTINGS}\nmax_output_kb = 1"));
    let big =
        jobs.run(json!({"cmd": ["sh", "-c", "yes | head -c 5000; yes e | head -c 3000 >&2"]}));
    assert_eq!(big["stdout"].as_str().unwrap().len(), 1024, "{big}");
    assert_eq!(big["stderr"].as_str().unwrap().len(), 1024, "{big}");
    assert_eq!(
        (&big["stdout_truncated"], &big["stderr_truncated"]),
        (&json!(true), &json!(true))
    );
    let small = jobs.run(json!({"cmd": ["echo", "short"]}));
    assert_eq!(
        (&small["stdout_truncated"], &small["stderr_truncated"]),
        (&json!(false), &json!(false))
    );
}

#[test]
fn kill_stops_a_sleeper_and_its_exit_still_arrives() {
    if !docker::available("kill_stops_a_sleeper") {
        return;
    }
    let jobs = Jobs::start(SETTINGS);
    let id = jobs.start_job(json!({"cmd": ["sleep", "60"]}));
    jobs.await_containers(1);
    let asked = Instant::now();
    assert_eq!(jobs.kill(id), 202);
    let job = jobs.finished(id);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        (&job["status"], &job["exit_code"]),
        (&json!("killed"), &json!(137)),
        "{job}"
    );
    assert_eq!(jobs.kill(id), 409, "a finished job cannot be killed");
    jobs.await_containers(0);
}

#[test]
fn timeout_kills_the_container() {
    if !docker::available("timeout_kills") {
        return;
    }
    let jobs = Jobs::start(&format!("{SETTINGS}\ntimeout_ms = 5000"));
    let started = Instant::now();
    let job = jobs.run(json!({"cmd": ["sleep", "60"], "timeout_ms": 500}));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(job["status"], "timed_out", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 500 ms"),
        "{job}"
    );
    // The manifest's timeout bounds the default too.
    let job = jobs.run(json!({"cmd": ["sleep", "60"]}));
    assert_eq!(job["status"], "timed_out", "{job}");
    assert!(job["duration_ms"].as_i64().unwrap() >= 5000, "{job}");
    // A request may not ask for more than the manifest allows: code 4.
    let (status, body) = jobs.post(json!({"cmd": ["true"], "timeout_ms": 60000}));
    assert_eq!((status, &body["code"]), (403, &json!(4)), "{body}");
}

#[test]
fn an_image_not_in_the_manifest_is_refused_before_docker_is_asked() {
    if !docker::available("image_not_in_the_manifest") {
        return;
    }
    let jobs = Jobs::start(SETTINGS);
    for image in ["busybox", "pulp-busybox:other-tag", "alpine"] {
        let (status, body) = jobs.post(json!({"cmd": ["true"], "image": image}));
        assert_eq!((status, &body["code"]), (403, &json!(4)), "{image}: {body}");
    }
    assert!(jobs.containers().is_empty());
    // The normal form of the allowed image is allowed.
    let ok = jobs.run(json!({"cmd": ["true"], "image": "pulp-busybox:latest"}));
    assert_eq!(ok["exit_code"], 0, "{ok}");
}

#[test]
fn max_running_is_enforced_per_plugin() {
    if !docker::available("max_running") {
        return;
    }
    let jobs = Jobs::start(&format!("{SETTINGS}\nmax_running = 1"));
    let first = jobs.start_job(json!({"cmd": ["sleep", "60"]}));
    let (status, body) = jobs.post(json!({"cmd": ["true"]}));
    assert_eq!((status, &body["code"]), (429, &json!(9)), "{body}");
    jobs.await_containers(1);
    assert_eq!(jobs.kill(first), 202);
    jobs.finished(first);
    // The slot is free once the container is removed (just after its exit is reported).
    jobs.await_containers(0);
    let next = jobs.run(json!({"cmd": ["true"]}));
    assert_eq!(next["status"], "exited", "{next}");
}

#[test]
fn containers_get_the_manifest_limits_and_labels() {
    if !docker::available("containers_get_the_manifest_limits") {
        return;
    }
    let jobs = Jobs::start(&format!(
        "{SETTINGS}\nmemory_mb = 48\ncpus = 0.5\npids = 32"
    ));
    let id = jobs.start_job(json!({"cmd": ["sleep", "60"]}));
    let container = jobs.await_containers(1).remove(0);
    let inspected: Value = serde_json::from_str(&docker::inspect(&container)).unwrap();
    let host = &inspected[0]["HostConfig"];
    assert_eq!(host["Memory"], 48 << 20, "{host}");
    assert_eq!(host["MemorySwap"], 48 << 20, "no swap on top: {host}");
    assert_eq!(host["NanoCpus"], 500_000_000i64, "{host}");
    assert_eq!(host["PidsLimit"], 32, "{host}");
    assert_eq!(host["NetworkMode"], "none", "{host}");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{host}");
    assert_eq!(host["LogConfig"]["Type"], "none", "{host}");
    let labels = &inspected[0]["Config"]["Labels"];
    assert_eq!(labels["pulp.plugin"], "jobs", "{labels}");
    assert!(labels["pulp.spawn-id"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert_eq!(jobs.kill(id), 202);
    jobs.finished(id);
}

#[test]
fn stopping_the_host_removes_its_containers() {
    if !docker::available("stopping_the_host") {
        return;
    }
    let mut jobs = Jobs::start(SETTINGS);
    for _ in 0..2 {
        jobs.start_job(json!({"cmd": ["sleep", "60"]}));
    }
    jobs.await_containers(2);
    let stopped = Instant::now();
    let out = jobs.pulp.take().unwrap().stop();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(jobs.containers(), Vec::<String>::new(), "{}", text(&out));
}

#[test]
fn containers_left_by_a_crashed_host_are_reaped_at_the_next_start() {
    if !docker::available("containers_left_by_a_crashed_host") {
        return;
    }
    let mut jobs = Jobs::start(SETTINGS);
    let id = jobs.start_job(json!({"cmd": ["sleep", "60"]}));
    jobs.await_containers(1);
    let crashed = jobs.pulp.take().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &crashed.pid().to_string()])
        .status()
        .unwrap();
    crashed.wait();
    assert_eq!(jobs.containers().len(), 1, "a killed host cannot clean up");
    jobs.restart();
    jobs.await_containers(0);
    let job = jobs.get(id);
    assert_eq!(job["status"], "lost", "{job}");
}

#[test]
fn a_missing_image_ends_in_an_exit_event_with_an_error() {
    if !docker::available("a_missing_image") {
        return;
    }
    let jobs = Jobs::start(r#"images = ["pulp-busybox", "pulp-no-such-image"]"#);
    let job = jobs.run(json!({"cmd": ["true"], "image": "pulp-no-such-image"}));
    assert_eq!(
        (&job["status"], &job["exit_code"]),
        (&json!("failed"), &json!(-1)),
        "{job}"
    );
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("pulp-no-such-image:latest is not on the Docker host"),
        "{error}"
    );
}

/// Needs no engine: Docker is pointed at a socket that does not exist.
#[test]
fn unreachable_docker_is_an_exit_event_and_a_check_warning() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), SETTINGS);
    let nowhere = format!("unix://{}/no-docker.sock", dir.path().display());
    let env = [("DOCKER_HOST", nowhere.as_str())];

    let out = pulp()
        .envs(env)
        .args(["check"])
        .arg(&manifest)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "a warning, not a failure: {said}");
    assert!(
        said.contains("WARNING: docker:") && said.contains("no-docker.sock"),
        "{said}"
    );

    let data = tempfile::tempdir().unwrap();
    let pulp = RunningPulp::start_with_env(
        &env,
        &["--data-dir", data.path().to_str().unwrap()],
        &[&manifest],
    );
    wait_until_serving(pulp.addr, "/jobs/x");
    let jobs = Jobs {
        pulp: Some(pulp),
        data,
        manifest,
        _dir: dir,
    };
    let job = jobs.run(json!({"cmd": ["true"]}));
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("no-docker.sock"),
        "{job}"
    );
    // The host is unharmed: it still answers, and stops cleanly.
    assert_eq!(jobs.get(job["id"].as_i64().unwrap())["status"], "failed");
    let mut jobs = jobs;
    let out = jobs.pulp.take().unwrap().stop();
    assert!(out.status.success(), "{}", text(&out));
}

/// A spawn whose out-addresses are outside memory is refused (8) before
/// anything starts: no container is left running without an id to kill it by.
#[test]
fn a_bad_out_address_is_refused_before_the_container_starts() {
    if !docker::available("a_bad_out_address") {
        return;
    }
    #[derive(serde::Serialize)]
    struct Request<'a> {
        image: &'a str,
        cmd: [&'a str; 2],
    }
    let request = rmp_serde::to_vec_named(&Request {
        image: IMAGE,
        cmd: ["sleep", "30"],
    })
    .unwrap();
    let step = format!(
        "(call $spawn (i32.const 4096) (i32.const {}) (i32.const 0xfffffff0) (i32.const 0xfffffff0))",
        request.len()
    );
    let wat = pulp_integration::wat_plugin(
        r#"(import "pulp" "docker_spawn" (func $spawn (param i32 i32 i32 i32) (result i32)))"#,
        &step,
        &format!(
            "(data (i32.const 4096) {})",
            pulp_integration::wat_data(&request)
        ),
    );
    let plugin = pulp_integration::ScratchPlugin::wat(
        "spawner",
        &wat,
        &format!("capabilities = [\"spawn.docker\"]\ntick_ms = 200\n[grants.\"spawn.docker\"]\n{SETTINGS}"),
    );
    let data = tempfile::tempdir().unwrap();
    let pulp = RunningPulp::start(
        &["--data-dir", data.path().to_str().unwrap()],
        &[&plugin.manifest],
    );
    // It steps every 200 ms; before the fix each step left a sleeper running.
    std::thread::sleep(Duration::from_millis(2000));
    let during = docker::containers("pulp.data-dir", data.path().to_str().unwrap());
    let said = text(&pulp.stop());
    assert_eq!(during, Vec::<String>::new(), "{said}");
    // The step returns the import's code, which `pulp run` prints as an output handle.
    assert!(said.contains("spawner step 3 output 8"), "{said}");
}

#[test]
fn the_root_filesystem_is_read_only_and_tmp_is_a_bounded_tmpfs() {
    if !docker::available("the_root_filesystem_is_read_only") {
        return;
    }
    let jobs = Jobs::start(&format!("{SETTINGS}\ntmpfs_mb = 2"));
    let job = jobs.run(json!({"cmd": ["sh", "-c",
        "echo x > /x || echo root-refused; echo x >> /etc/hosts || echo hosts-refused; \
         dd if=/dev/zero of=/tmp/f bs=1024 count=4096 2>/dev/null || echo tmp-full; \
         echo $(( $(wc -c < /tmp/f) / 1024 ))"]}));
    assert_eq!(
        job["stdout"], "root-refused\nhosts-refused\ntmp-full\n2048\n",
        "{job}"
    );
    jobs.await_containers(0);
    let id = jobs.start_job(json!({"cmd": ["sleep", "60"]}));
    let container = jobs.await_containers(1).remove(0);
    let inspected: Value = serde_json::from_str(&docker::inspect(&container)).unwrap();
    let host = &inspected[0]["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true, "{host}");
    assert_eq!(host["Tmpfs"]["/tmp"], "rw,nosuid,nodev,size=2m", "{host}");
    assert_eq!(jobs.kill(id), 202);
    jobs.finished(id);
}

/// The id of the test image, `sha256:…`.
fn image_id() -> String {
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_pinned_image_runs_only_when_the_local_image_has_its_digest() {
    if !docker::available("a_pinned_image") {
        return;
    }
    let digest = image_id();
    let jobs = Jobs::start(&format!(r#"images = ["{IMAGE}@{digest}"]"#));
    // The plugin asks for the name; the pin decides what runs.
    let id = jobs.start_job(json!({"cmd": ["sleep", "60"]}));
    let container = jobs.await_containers(1).remove(0);
    let inspected: Value = serde_json::from_str(&docker::inspect(&container)).unwrap();
    assert_eq!(inspected[0]["Image"], digest.as_str(), "{inspected}");
    assert_eq!(jobs.kill(id), 202);
    jobs.finished(id);
    jobs.await_containers(0);

    let other = format!("sha256:{}", "0".repeat(64));
    let jobs = Jobs::start(&format!(r#"images = ["{IMAGE}@{other}"]"#));
    let job = jobs.run(json!({"cmd": ["true"]}));
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains(&format!("no image on the Docker host has digest {other}")),
        "{job}"
    );
    assert!(jobs.containers().is_empty());
    // A digest that is not one is refused at load.
    let dir = tempfile::tempdir().unwrap();
    let out = pulp()
        .arg("check")
        .arg(manifest(
            dir.path(),
            &format!(r#"images = ["{IMAGE}@sha256:abc"]"#),
        ))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is not an image reference"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_killed_hosts_container_is_removed_at_its_deadline_by_another_host() {
    if !docker::available("a_killed_hosts_container") {
        return;
    }
    // Two hosts on one data directory; the second starts after the first.
    let watcher = Jobs::start(SETTINGS);
    let dir = tempfile::tempdir().unwrap();
    let crashing = RunningPulp::start(
        &["--data-dir", watcher.data.path().to_str().unwrap()],
        &[&manifest(
            dir.path(),
            &format!("{SETTINGS}\ntimeout_ms = 1000"),
        )],
    );
    wait_until_serving(crashing.addr, "/jobs/x");
    let r = request(
        crashing.addr,
        "POST",
        "/jobs",
        &[("content-type", "application/json")],
        json!({"cmd": ["sleep", "600"]}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let container = watcher.await_containers(1).remove(0);
    let inspected: Value = serde_json::from_str(&docker::inspect(&container)).unwrap();
    let deadline: u64 = inspected[0]["Config"]["Labels"]["pulp.deadline"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        deadline > now_ms && deadline <= now_ms + 1000 + 5000,
        "deadline {deadline} vs now {now_ms}: the timeout and 5 s of grace"
    );
    std::process::Command::new("kill")
        .args(["-9", &crashing.pid().to_string()])
        .status()
        .unwrap();
    crashing.wait();
    let killed = Instant::now();
    assert_eq!(watcher.containers(), vec![container.clone()], "still there");
    // The other host's sweep (every 5 s) removes it once its deadline has passed.
    let until = Instant::now() + Duration::from_secs(20);
    while !watcher.containers().is_empty() {
        assert!(Instant::now() < until, "{container} outlived its deadline");
        std::thread::sleep(Duration::from_millis(200));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now_ms >= deadline, "removed {} ms early", deadline - now_ms);
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
}

#[test]
fn an_image_volume_is_a_bounded_tmpfs_not_a_volume_on_the_host_disk() {
    if !docker::available("an_image_volume_is_a_bounded_tmpfs") {
        return;
    }
    let image = "pulp-busybox-volume";
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", image, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    build
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM {IMAGE}\nVOLUME /data\n").as_bytes())
        .unwrap();
    let built = build.wait_with_output().unwrap();
    assert!(built.status.success(), "{}", text(&built));

    let jobs = Jobs::start(&format!("images = [\"{image}\"]\ntmpfs_mb = 1"));
    let job = jobs.run(json!({"image": image, "cmd": ["sh", "-c",
        "dd if=/dev/zero of=/data/f bs=1024 count=2048 2>/dev/null || echo data-full; \
         grep ' /data ' /proc/mounts | cut -d' ' -f3"]}));
    assert_eq!(job["stdout"], "data-full\ntmpfs\n", "{job}");
    jobs.await_containers(0);
    let id = jobs.start_job(json!({"image": image, "cmd": ["sleep", "60"]}));
    let container = jobs.await_containers(1).remove(0);
    let inspected: Value = serde_json::from_str(&docker::inspect(&container)).unwrap();
    assert_eq!(inspected[0]["Mounts"], json!([]), "no volume: {inspected}");
    assert_eq!(
        inspected[0]["HostConfig"]["Tmpfs"]["/data"],
        "rw,nosuid,nodev,size=1m"
    );
    assert_eq!(jobs.kill(id), 202);
    jobs.finished(id);
}

#[test]
fn a_cpu_burner_ends_by_itself_when_its_host_is_killed() {
    if !docker::available("a_cpu_burner_ends_by_itself") {
        return;
    }
    let mut jobs = Jobs::start(&format!("{SETTINGS}\ntimeout_ms = 2000"));
    jobs.start_job(json!({"cmd": ["sh", "-c", "while :; do :; done"]}));
    let container = jobs.await_containers(1).remove(0);
    let running = || {
        let state: Value = serde_json::from_str(&docker::inspect(&container)).unwrap();
        state[0]["State"]["Running"] == true
    };
    // Created is not started: kill the host only once the container runs.
    let until = Instant::now() + Duration::from_secs(15);
    while !running() {
        assert!(Instant::now() < until, "{container} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let crashed = jobs.pulp.take().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &crashed.pid().to_string()])
        .status()
        .unwrap();
    crashed.wait();
    // No host is left on the data directory: the kernel ends it at its CPU
    // time (3 s for a 2 s timeout on one CPU), not a reaper.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Value = serde_json::from_str(&docker::inspect(&container)).unwrap();
        if state[0]["State"]["Running"] == false {
            assert_eq!(state[0]["State"]["ExitCode"], 137, "SIGKILL: {state}");
            break;
        }
        assert!(Instant::now() < until, "still burning CPU: {state}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
