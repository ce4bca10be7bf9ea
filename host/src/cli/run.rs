//! `pulp run`: load plugins, drive them, print outputs and a summary.

use crate::metrics::PluginMetrics;
use crate::{PluginStatus, PluginSummary, RunEvent, RunOptions, RunningPlugin};
use anyhow::Context;
use clap::Args;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::metrics_endpoint;

/// Longest wait for HTTP requests in flight at shutdown, beyond the slowest call budget.
const HTTP_GRACE: Duration = Duration::from_secs(10);

/// Run events (outputs, errors) queued between the plugins and the printer,
/// and the output bytes among them. Plugins never wait for room: past either
/// bound an event is dropped and counted, so a plugin printing faster than
/// the terminal reads costs the host at most this much.
const RUN_EVENTS: usize = 256;
const RUN_EVENT_BYTES: usize = 32 << 20;

/// Bytes of one output printed; the rest is summarised by its length.
const PRINTED_OUTPUT: usize = 4096;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stop each plugin after N steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Stop everything after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Where plugins keep their files: DIR/<plugin name>/.
    #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Address of the HTTP listener, for plugins that declare `transport.http.inbound`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: String,
    #[command(flatten)]
    http_limits: crate::caps::http::ListenerSettings,
    /// Compile every module afresh instead of using DATA_DIR/.modules.
    #[arg(long)]
    no_module_cache: bool,
    /// Map each instance's memory when it starts instead of reserving a pool
    /// of slots up front (the pool falls back to this by itself when the
    /// address space cannot be reserved).
    #[arg(long)]
    no_pooling: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Plugin manifests.
    #[arg(required = true)]
    manifests: Vec<PathBuf>,
}

pub fn run(args: RunArgs, extend: super::Extend) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    runtime.block_on(run_async(args, extend))
}

async fn run_async(args: RunArgs, extend: super::Extend<'_>) -> anyhow::Result<ExitCode> {
    let (host, http) = super::host(
        args.data_dir.clone(),
        &args.manifests,
        args.no_module_cache,
        !args.no_pooling,
        extend,
    )?;
    let mut prepared = Vec::new();
    let mut names = HashSet::new();
    for path in &args.manifests {
        let plugin = host.prepare(path)?;
        anyhow::ensure!(
            names.insert(plugin.manifest.name.clone()),
            "{}: plugin name `{}` is already used by another manifest",
            path.display(),
            plugin.manifest.name
        );
        prepared.push(plugin);
    }

    // The listener starts only when some plugin may serve HTTP.
    let wants_http = prepared
        .iter()
        .any(|p| p.info.declares(crate::caps::http::NAME));
    let server = match wants_http {
        true => Some(
            http.serve(&args.http_addr, &args.http_limits)
                .await
                .with_context(|| format!("http listener on {}", args.http_addr))?,
        ),
        false => None,
    };
    let grace = prepared
        .iter()
        .map(|p| p.manifest.limits.call_timeout)
        .max()
        .unwrap_or_default()
        + HTTP_GRACE;

    let (tx, mut rx) = crate::run_events(RUN_EVENTS, RUN_EVENT_BYTES);
    let options = RunOptions {
        max_steps: args.steps,
    };
    let mut running: Vec<RunningPlugin> = Vec::new();
    for plugin in prepared {
        running.push(host.spawn(plugin, options, tx.clone())?);
    }
    drop(tx);

    let metrics = match &args.metrics_addr {
        Some(addr) => {
            let plugins: Vec<(String, Arc<PluginMetrics>)> = running
                .iter()
                .map(|p| (p.name().to_string(), p.metrics().clone()))
                .collect();
            let http = http.clone();
            let render: metrics_endpoint::Render = Arc::new(move || {
                let view: Vec<(String, &PluginMetrics)> = plugins
                    .iter()
                    .map(|(n, m)| (n.clone(), m.as_ref()))
                    .collect();
                crate::metrics::render(&view, &http.responses())
            });
            let (_, task) = metrics_endpoint::serve(addr, render)
                .await
                .with_context(|| format!("metrics listener on {addr}"))?;
            Some(task)
        }
        None => None,
    };

    let deadline = async {
        match args.duration {
            Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    // Both listeners exist for the whole loop, so a signal that arrives while
    // an output is being printed is kept, not lost between two `select!`s.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping plugins"); break }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping plugins"); break }
            event = rx.recv() => match event {
                Some(event) => print_event(&event),
                None => break, // every actor has ended
            },
            _ = &mut deadline => { tracing::info!("duration reached: stopping plugins"); break }
        }
    }
    // In-flight requests finish while their plugins still run; then the plugins stop.
    if let Some(server) = server {
        server.shutdown(grace).await;
    }
    for plugin in &running {
        plugin.stop();
    }
    if let Some(task) = metrics {
        task.abort();
    }
    let summaries = tokio::task::spawn_blocking(move || {
        running
            .into_iter()
            .map(RunningPlugin::join)
            .collect::<Vec<_>>()
    })
    .await?;
    while let Some(event) = rx.try_recv() {
        print_event(&event);
    }
    print_summary(&summaries);
    let init_failed = summaries
        .iter()
        .any(|s| matches!(&s.status, PluginStatus::Failed(f) if f.call_number == 0));
    Ok(if init_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_event(event: &RunEvent) {
    if let RunEvent::Output { plugin, outcome } = event {
        match &outcome.output {
            Some(bytes) => println!(
                "{plugin} step {} output {}: {}",
                outcome.call_number,
                outcome.handle,
                render(bytes)
            ),
            None => println!(
                "{plugin} step {} output {}",
                outcome.call_number, outcome.handle
            ),
        }
    }
}

/// Output bytes as text when they are UTF-8 without control characters, else
/// as hex; at most [`PRINTED_OUTPUT`] bytes of it, then the total length.
fn render(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(PRINTED_OUTPUT)];
    let mut text = match std::str::from_utf8(shown) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => s.to_string(),
        _ => {
            let mut hex = String::with_capacity(2 + 2 * shown.len());
            hex.push_str("0x");
            for b in shown {
                hex.push(char::from(HEX[usize::from(b >> 4)]));
                hex.push(char::from(HEX[usize::from(b & 15)]));
            }
            hex
        }
    };
    if shown.len() < bytes.len() {
        text.push_str(&format!(" … ({} bytes in all)", bytes.len()));
    }
    text
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn print_summary(summaries: &[PluginSummary]) {
    println!("summary:");
    for s in summaries {
        let state = match &s.status {
            PluginStatus::Stopped => "stopped".to_string(),
            PluginStatus::Failed(f) => {
                format!("failed ({} call {}: {})", f.export, f.call_number, f.kind)
            }
        };
        let mut probes: String = s.probes.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        if s.restarts > 0 {
            probes = format!(" restarts={}{probes}", s.restarts);
        }
        println!(
            "  {}: {state}; steps={} outputs={} step_errors={}{probes}",
            s.name, s.steps, s.outputs, s.step_errors
        );
        let u = &s.usage;
        println!(
            "    usage: cpu={:.3}s memory={} host_bytes={} disk={} fuel={} log_lines_dropped={} containers={} events_dropped={}",
            u.cpu.as_secs_f64(),
            u.memory_bytes,
            u.host_bytes,
            u.disk_bytes,
            u.fuel_consumed,
            u.log_lines_dropped,
            u.containers,
            u.events_dropped
        );
    }
}
