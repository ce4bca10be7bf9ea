//! Log set-up: `RUST_LOG` or `--log-level`, human or JSON lines, on stderr,
//! coloured only on a terminal.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Log format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// Logging flags shared by every subcommand.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log filter (tracing syntax, e.g. `info` or `pulp=debug`); `RUST_LOG` wins when set.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// Colour only on a terminal, and never under `NO_COLOR` (any non-empty
/// value, as no-color.org says): a log piped into a file, `systemd` or
/// `docker logs` holds no escape codes.
fn colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Installs the global subscriber.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&args.log_level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!(e))
}
