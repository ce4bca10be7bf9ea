//! The `pulp` command line, as a library: a custom host is the `pulp` binary
//! plus its own capabilities, in a few lines.
//!
//! ```no_run
//! use pulp_host::caps::LoggingCapability;
//! # struct MyCapability;
//! # impl pulp_ext::Capability for MyCapability {
//! #     fn name(&self) -> &str { "my.capability" }
//! #     fn summary(&self) -> &str { "" }
//! #     fn imports(&self) -> &[pulp_ext::ImportSpec] { &[] }
//! #     fn link(&self, _: &mut wasmtime::Linker<pulp_ext::PluginState>) -> wasmtime::Result<()> { Ok(()) }
//! # }
//! fn main() -> std::process::ExitCode {
//!     pulp_host::cli::main(|host| host.gated(MyCapability))
//! }
//! ```

mod caps;
mod check;
mod inspect;
mod metrics_endpoint;
mod run;
mod scaffold;
mod telemetry;

use crate::caps::HttpCapability;
use crate::{Host, HostBuilder, Manifest, Pooling};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run WebAssembly plugins with only the capabilities their manifests declare.
#[derive(Parser, Debug)]
#[command(name = "pulp", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: telemetry::LogArgs,
}

/// Adds an embedder's capabilities to the built-in ones.
type Extend<'a> = &'a dyn Fn(HostBuilder) -> HostBuilder;

/// Parses the command line and runs it on a host with the built-in
/// capabilities plus whatever `extend` adds. Returns the process exit code.
pub fn main(extend: impl Fn(HostBuilder) -> HostBuilder) -> ExitCode {
    let args = Cli::parse();
    if let Err(e) = telemetry::init(&args.log) {
        eprintln!("pulp: {}", error_line(&e));
        return ExitCode::from(2);
    }
    match dispatch(args, &extend) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pulp: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose
/// text the line already holds: an error that embeds its source in its own
/// message (as `io::Error`-wrapping errors of other crates do) is said once.
fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run plugins until a signal (SIGINT/SIGTERM), N steps each, or a duration.
    Run(run::RunArgs),
    /// Check manifests and wasm against the registry without running anything.
    Check {
        /// Manifests to check.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// Data directory the plugins would use.
        #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Compile every module afresh instead of using DATA_DIR/.modules.
        #[arg(long)]
        no_module_cache: bool,
    },
    /// List the capabilities of this host and their imports.
    Caps {
        /// Print the Markdown table the README includes.
        #[arg(long)]
        markdown: bool,
    },
    /// Create a plugin crate (Cargo.toml, src/lib.rs, manifest) that builds and runs as is.
    New {
        /// Plugin name (a-z, 0-9, '-', '_'); also the directory created.
        name: String,
        /// Serve an HTTP route.
        #[arg(long)]
        http: bool,
        /// Keep data in SQLite.
        #[arg(long)]
        sqlite: bool,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The guest SDK (`plugins/guest` of a Pulp checkout).
        #[arg(long, default_value_os_t = scaffold::default_sdk())]
        sdk: PathBuf,
    },
    /// Show a wasm module's exports and imports, the capabilities it needs,
    /// and whether it satisfies the ABI (exit 1 when it does not).
    Inspect {
        /// The module.
        file: PathBuf,
    },
}

/// The host the `pulp` binary runs: the built-in capabilities, assembled like any
/// embedder's. The HTTP capability is returned too: `run` starts its listener.
/// Fuel metering is on only when one of `manifests` sets `limits.fuel`. With
/// `pooling`, instance memory comes from a pool with one slot per manifest.
/// Compiled modules are kept in `DATA_DIR/.modules` unless `no_module_cache`
/// (plugin names cannot start with a dot, so it never meets a plugin's directory).
fn host(
    data_dir: PathBuf,
    manifests: &[PathBuf],
    no_module_cache: bool,
    pooling: bool,
    extend: Extend,
) -> anyhow::Result<(Host, HttpCapability)> {
    let http = HttpCapability::new();
    let mut builder: HostBuilder = Host::builder();
    if !no_module_cache {
        builder = builder.module_cache(data_dir.join(".modules"));
    }
    // Problems with a manifest are reported later, when it is loaded for real.
    let loaded: Vec<Manifest> = manifests
        .iter()
        .filter_map(|m| Manifest::load(m).ok())
        .collect();
    if pooling {
        builder = builder.pooling(Pooling {
            instances: u32::try_from(manifests.len()).unwrap_or(u32::MAX).max(1),
            // Never below the default: a table over a plugin's own limit is then
            // refused by its limiter when instantiated, with the limit named,
            // rather than by the pool when compiled.
            table_elements: loaded
                .iter()
                .map(|m| u32::try_from(m.limits.table_elements).unwrap_or(u32::MAX))
                .fold(crate::manifest::defaults::TABLE_ELEMENTS, u32::max),
        });
    }
    let builder = builder
        .data_dir(data_dir)
        .fuel_metering(loaded.iter().any(|m| m.limits.fuel.is_some()))
        .gated(http.clone());
    #[cfg(feature = "sqlite")]
    let builder = builder.gated(crate::caps::SqliteCapability);
    #[cfg(feature = "docker")]
    let builder = builder.gated(crate::caps::DockerCapability::new());
    Ok((extend(builder).build()?, http))
}

/// Runs the chosen subcommand.
fn dispatch(cli: Cli, extend: Extend) -> anyhow::Result<ExitCode> {
    let default_dir = || PathBuf::from(crate::DEFAULT_DATA_DIR);
    match cli.command {
        Command::Run(args) => run::run(args, extend),
        Command::Check {
            manifests,
            data_dir,
            no_module_cache,
        } => check::check(
            &host(data_dir, &manifests, no_module_cache, false, extend)?.0,
            &manifests,
        ),
        Command::Caps { markdown } => {
            caps::caps(&host(default_dir(), &[], true, false, extend)?.0, markdown)
        }
        Command::New {
            name,
            http,
            sqlite,
            dir,
            sdk,
        } => scaffold::new_plugin(scaffold::NewPlugin {
            name,
            http,
            sqlite,
            dir,
            sdk,
        }),
        Command::Inspect { file } => {
            inspect::inspect(&host(default_dir(), &[], true, false, extend)?.0, &file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read manifest: {0}")]
    struct Embeds(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Embeds(io)).context("x.toml");
        assert_eq!(error_line(&e), "x.toml: cannot read manifest: no such file");
    }
}
