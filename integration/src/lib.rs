//! Shared helpers for the end-to-end tests in `tests/`: where the repository,
//! the built plugins and the `pulp` binary are, and small WAT plugins.

pub mod docker;
pub mod http_client;
pub mod sql_runner;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ has a parent")
        .to_path_buf()
}

/// A manifest under `manifests/`.
pub fn manifest(name: &str) -> PathBuf {
    repo().join("manifests").join(format!("{name}.toml"))
}

/// The built wasm of an example plugin; panics with the command to run when missing.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = repo()
        .join("plugins/target/wasm32-wasip1/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins (scripts/test does)",
        path.display()
    );
    path
}

/// The `pulp` binary of this build. `cargo test` does not build it (pulp-host
/// has no tests of its own), so scripts/test runs `cargo build --bins` first;
/// a binary older than the host's sources is refused rather than tested.
pub fn pulp_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("pulp");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let newest_source = newest_mtime(&repo().join("host/src"));
    match built {
        Ok(built) if newest_source.is_none_or(|src| built >= src) => bin,
        _ => panic!("{} is missing or older than host/src: run scripts/test (or cargo build --workspace --bins)", bin.display()),
    }
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            if path.is_dir() {
                newest_mtime(&path)
            } else {
                e.metadata().and_then(|m| m.modified()).ok()
            }
        })
        .max()
}

/// `pulp <args>` with logs in plain text at info.
pub fn pulp() -> Command {
    let mut cmd = Command::new(pulp_bin());
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    cmd
}

/// Runs `pulp <args>` to completion.
pub fn run_pulp(args: &[&str]) -> Output {
    pulp().args(args).output().expect("pulp runs")
}

/// The summary line of `plugin` in `pulp run`'s stdout, trimmed.
pub fn summary_line<'a>(stdout: &'a str, plugin: &str) -> &'a str {
    stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{plugin}: ")))
        .unwrap_or_else(|| panic!("no summary for {plugin} in:\n{stdout}"))
}

/// The count after `name=` in a line of `pulp run`'s summary (`steps=12`).
pub fn summary_count(line: &str, name: &str) -> u64 {
    line.split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// Text of stdout and stderr together, for assertions on messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A scratch plugin: a manifest and a wasm file in a temporary directory.
pub struct ScratchPlugin {
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
}

impl ScratchPlugin {
    /// Writes `wasm` as `plugin.wasm` and a manifest `name = <name>` with `extra` TOML lines.
    pub fn new(name: &str, wasm: &[u8], extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("plugin.wasm"), wasm).expect("write wasm");
        let manifest = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &manifest,
            format!("name = \"{name}\"\nversion = \"0.1.0\"\n{extra}\n"),
        )
        .expect("write manifest");
        ScratchPlugin { dir, manifest }
    }

    /// Same, with the module given as WAT text.
    pub fn wat(name: &str, wat: &str, extra: &str) -> Self {
        ScratchPlugin::new(name, &wat::parse_str(wat).expect("valid WAT"), extra)
    }

    /// The manifest path as a string argument.
    pub fn arg(&self) -> &str {
        self.manifest.to_str().expect("utf-8 temp path")
    }
}

/// A complete minimal plugin in WAT whose `pulp_step` body is `step_body`
/// (locals `$ptr` and `$len` hold the envelope; it must leave an i32).
/// `pulp_alloc` hands out one fixed buffer at 1024, enough for small envelopes.
pub fn wat_plugin(imports: &str, step_body: &str, extra_funcs: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  (func (export "pulp_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 60000)) (then (i32.const 0)) (else (i32.const 1024))))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param $ptr i32) (param $len i32) (result i32)
    {step_body})
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
  {extra_funcs}
)"#
    )
}

/// A `pulp run` serving HTTP on a free loopback port; SIGTERM'd and reaped on drop.
/// Its stdout and stderr are drained as it runs, so a chatty log never blocks it.
pub struct RunningPulp {
    child: Option<std::process::Child>,
    drains: Vec<std::thread::JoinHandle<Vec<u8>>>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

impl RunningPulp {
    /// Starts `pulp run --http-addr <free port> <manifests>` with `extra` arguments first.
    pub fn start(extra: &[&str], manifests: &[&Path]) -> RunningPulp {
        RunningPulp::start_with_env(&[], extra, manifests)
    }

    /// [`RunningPulp::start`] with environment variables set for the host.
    pub fn start_with_env(
        env: &[(&str, &str)],
        extra: &[&str],
        manifests: &[&Path],
    ) -> RunningPulp {
        let addr = http_client::free_addr();
        let mut child = pulp()
            .envs(env.iter().copied())
            .arg("run")
            .args(extra)
            .args(["--http-addr", &addr.to_string()])
            .args(manifests)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("pulp starts");
        let drains = vec![
            drain(child.stdout.take().expect("stdout piped")),
            drain(child.stderr.take().expect("stderr piped")),
        ];
        RunningPulp {
            child: Some(child),
            drains,
            addr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// SIGTERM, then waits for exit and returns everything it printed.
    pub fn stop(self) -> Output {
        self.terminate();
        self.wait()
    }

    /// Waits for the process to exit by itself and returns its output.
    pub fn wait(mut self) -> Output {
        let status = self
            .child
            .take()
            .expect("running")
            .wait()
            .expect("pulp exits");
        let mut drains = std::mem::take(&mut self.drains)
            .into_iter()
            .map(|d| d.join().unwrap_or_default());
        Output {
            status,
            stdout: drains.next().unwrap_or_default(),
            stderr: drains.next().unwrap_or_default(),
        }
    }
}

impl Drop for RunningPulp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Bytes as a WAT data string (`"\00\ff..."`).
pub fn wat_data(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for b in bytes {
        s.push_str(&format!("\\{b:02x}"));
    }
    s.push('"');
    s
}

/// A manifest beside a scratch directory that runs an example plugin's wasm
/// with `extra` TOML (capabilities, grants, limits).
pub fn example_manifest(dir: &Path, name: &str, plugin: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let wasm = plugin_wasm(plugin);
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nwasm = {:?}\n{extra}\n",
            wasm.display().to_string()
        ),
    )
    .expect("write manifest");
    path
}
