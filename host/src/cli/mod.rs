//! Command-line interface: argument parsing and one module per subcommand.

mod caps;
mod check;
mod inspect;
mod metrics_endpoint;
mod run;
mod scaffold;
pub mod telemetry;

use clap::{Parser, Subcommand};
use pulp_host::caps::{HttpCapability, SqliteCapability};
use pulp_host::{Host, HostBuilder, Manifest};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run WebAssembly plugins with only the capabilities their manifests declare.
#[derive(Parser, Debug)]
#[command(name = "pulp", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    pub log: telemetry::LogArgs,
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
        #[arg(long, default_value = pulp_host::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
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
/// Fuel metering is on only when one of `manifests` sets `limits.fuel`.
fn host(data_dir: PathBuf, manifests: &[PathBuf]) -> anyhow::Result<(Host, HttpCapability)> {
    let http = HttpCapability::new();
    let builder: HostBuilder = Host::builder()
        .data_dir(data_dir)
        .fuel_metering(manifests.iter().any(|m| wants_fuel(m)))
        .gated(http.clone())
        .gated(SqliteCapability);
    Ok((builder.build()?, http))
}

/// True when the manifest at `path` parses and sets `limits.fuel`; any problem
/// with it is reported later, when it is loaded for real.
fn wants_fuel(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|src| Manifest::parse(path, &src).ok())
        .is_some_and(|m| m.limits.fuel.is_some())
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check {
            manifests,
            data_dir,
        } => check::check(&host(data_dir, &manifests)?.0, &manifests),
        Command::Caps { markdown } => caps::caps(
            &host(PathBuf::from(pulp_host::DEFAULT_DATA_DIR), &[])?.0,
            markdown,
        ),
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
        Command::Inspect { file } => inspect::inspect(
            &host(PathBuf::from(pulp_host::DEFAULT_DATA_DIR), &[])?.0,
            &file,
        ),
    }
}
