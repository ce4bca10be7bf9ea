//! Each plugin instance runs as an actor: one thread owns its store, a bounded
//! mailbox feeds it events, and ticks arrive on the manifest's interval.
//!
//! The thread blocks in `recv_timeout` until the next event or tick: an idle
//! plugin costs no CPU.

use crate::epoch::EpochClock;
use crate::metrics::PluginMetrics;
use crate::metrics::UsageSnapshot;
use crate::plugin::{Plugin, PluginFault, StepOutcome};
use crate::prepared::PreparedPlugin;
use crate::restart::RestartTracker;
use crate::run_events::{NotSent, RunEventSender};
use pulp_ext::{EventRejected, EventSink};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// How long to run a plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop the plugin after this many steps.
    pub max_steps: Option<u64>,
}

/// What an actor reports as it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// `pulp_init` succeeded; the plugin is running.
    Started { plugin: String },
    /// A step returned an output handle (and the bytes, when the guest resolves handles).
    Output {
        plugin: String,
        outcome: StepOutcome,
    },
    /// A step returned a negative code: the guest reported an error for that event.
    StepError {
        plugin: String,
        call_number: u64,
        code: i32,
    },
    /// The plugin failed and will be restarted after `delay` (restart policy `on-failure`).
    Restarting {
        plugin: String,
        fault: PluginFault,
        delay: std::time::Duration,
    },
    /// The plugin failed and was stopped.
    Failed { plugin: String, fault: PluginFault },
    /// The plugin stopped (`pulp_shutdown` called).
    Stopped { plugin: String },
}

/// Final state of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginStatus {
    /// Shut down cleanly.
    Stopped,
    /// Failed; the fault says where and why.
    Failed(PluginFault),
}

/// What a plugin did over its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSummary {
    /// Plugin name.
    pub name: String,
    /// How it ended.
    pub status: PluginStatus,
    /// Successful steps.
    pub steps: u64,
    /// Steps that returned an output handle.
    pub outputs: u64,
    /// Steps that returned a negative code.
    pub step_errors: u64,
    /// Times the plugin was restarted after a failure.
    pub restarts: u32,
    /// Values of the `probe_*` exports, read before shutdown (none when the
    /// last instance failed: a failed instance is never entered again).
    pub probes: Vec<(String, i64)>,
    /// What the plugin cost the host over the run.
    pub usage: UsageSnapshot,
}

impl PluginSummary {
    /// A plugin that has done nothing yet.
    pub fn new(name: String) -> Self {
        PluginSummary {
            name,
            status: PluginStatus::Stopped,
            steps: 0,
            outputs: 0,
            step_errors: 0,
            restarts: 0,
            probes: Vec::new(),
            usage: UsageSnapshot::default(),
        }
    }
}

enum Mail {
    Event(Vec<u8>),
    Stop,
}

/// A plugin's mailbox: capabilities push encoded events into it.
#[derive(Clone)]
pub struct Mailbox {
    tx: SyncSender<Mail>,
    metrics: Arc<PluginMetrics>,
}

impl EventSink for Mailbox {
    /// Queues an event, charging its bytes to the plugin until its step takes it.
    fn push(&self, event: Vec<u8>) -> Result<(), EventRejected> {
        let len = event.len();
        // Charged before the send: the actor may take and release it at once.
        let usage = self.metrics.plugin_usage();
        usage.hold(len);
        self.tx.try_send(Mail::Event(event)).map_err(|e| {
            usage.release(len);
            match e {
                TrySendError::Full(_) => EventRejected::Full,
                TrySendError::Disconnected(_) => EventRejected::Closed,
            }
        })?;
        self.metrics.mailbox(1);
        Ok(())
    }
}

/// A plugin running on its own thread.
pub struct RunningPlugin {
    name: String,
    mailbox: Mailbox,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<PluginSummary>,
}

impl RunningPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where to send it events.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// Its live counters.
    pub fn metrics(&self) -> &Arc<PluginMetrics> {
        &self.mailbox.metrics
    }

    /// Asks the plugin to stop after its current step.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // When the mailbox is full the actor is busy and sees the flag after this step.
        let _ = self.mailbox.tx.try_send(Mail::Stop);
    }

    /// True once the actor thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the plugin's thread and returns its summary.
    pub fn join(self) -> PluginSummary {
        let name = self.name;
        self.thread.join().unwrap_or_else(|_| PluginSummary {
            status: PluginStatus::Failed(PluginFault {
                plugin: name.clone(),
                export: "actor",
                call_number: 0,
                kind: crate::plugin::FaultKind::Trap("actor thread panicked".into()),
            }),
            ..PluginSummary::new(name)
        })
    }
}

/// Starts the actor thread of `prepared`. What it does goes to `events`
/// without ever blocking the plugin: when the channel is full the event is
/// dropped and counted (`pulp_run_events_dropped_total`, the summary's usage).
pub fn spawn(
    prepared: Arc<PreparedPlugin>,
    clock: EpochClock,
    options: RunOptions,
    events: RunEventSender,
) -> std::io::Result<RunningPlugin> {
    let name = prepared.manifest.name.clone();
    let (tx, rx) = sync_channel(prepared.manifest.limits.mailbox);
    let metrics = Arc::new(PluginMetrics::for_plugin(&prepared.info));
    let mailbox = Mailbox {
        tx,
        metrics: metrics.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let actor = Actor {
        prepared,
        clock,
        options,
        events,
        mailbox: mailbox.clone(),
        rx,
        stop: stop.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("pulp-{name}"))
        .stack_size(4 << 20)
        .spawn(move || actor.run())?;
    Ok(RunningPlugin {
        name,
        mailbox,
        stop,
        thread,
    })
}

struct Actor {
    prepared: Arc<PreparedPlugin>,
    clock: EpochClock,
    options: RunOptions,
    events: RunEventSender,
    mailbox: Mailbox,
    rx: Receiver<Mail>,
    stop: Arc<AtomicBool>,
}

impl Actor {
    fn run(self) -> PluginSummary {
        let metrics = self.mailbox.metrics.clone();
        metrics.cpu.attach();
        let mut summary = self.run_instances();
        // Events no instance will take are dropped with the mailbox: give their bytes back.
        while let Ok(mail) = self.rx.try_recv() {
            if let Mail::Event(event) = mail {
                metrics.mailbox(-1);
                metrics.plugin_usage().release(event.len());
            }
        }
        metrics.cpu.detach();
        summary.usage = metrics.usage();
        summary
    }

    /// Sends `event` to whoever watches the run, dropping it (counted) when
    /// their channel is full: a slow consumer never stalls a plugin.
    fn send(&self, event: RunEvent) {
        if let Err(NotSent::Full) = self.events.try_send(event) {
            self.mailbox.metrics.event_dropped();
        }
    }

    fn run_instances(&self) -> PluginSummary {
        let name = self.prepared.manifest.name.clone();
        let mut summary = PluginSummary::new(name.clone());
        let mut restarts = RestartTracker::new(self.prepared.manifest.restart);
        loop {
            let fault = match self.run_instance(&mut summary) {
                Ok(()) => return summary,
                Err(fault) => fault,
            };
            self.mailbox.metrics.fault(&fault.kind);
            // A failure once the run is over (a probe trapping after the last
            // step) ends the plugin: a new instance would have nothing to do.
            let done = self.stopping()
                || self
                    .options
                    .max_steps
                    .is_some_and(|max| summary.steps >= max);
            let delay = match restarts.after_failure(Instant::now()) {
                Some(delay) if !done => delay,
                _ => return self.failed(summary, fault),
            };
            summary.restarts += 1;
            self.mailbox.metrics.restart();
            tracing::warn!(plugin = %name, "{fault}; restart {} in {} ms", summary.restarts, delay.as_millis());
            self.send(RunEvent::Restarting {
                plugin: name.clone(),
                fault: fault.clone(),
                delay,
            });
            if !self.pause(delay) {
                return self.failed(summary, fault);
            }
        }
    }

    /// One instance, from instantiation to `pulp_shutdown`; `Err` when it failed.
    fn run_instance(&self, summary: &mut PluginSummary) -> Result<(), PluginFault> {
        let events: Arc<dyn EventSink> = Arc::new(self.mailbox.clone());
        let mut plugin = Plugin::instantiate(self.prepared.clone(), self.clock.clone(), events)?;
        plugin.wake_sleeps_on(self.stop.clone());
        plugin.init(&self.prepared.manifest.config)?;
        self.send(RunEvent::Started {
            plugin: summary.name.clone(),
        });
        summary.probes.clear();
        if let Err(fault) = self.step_loop(&mut plugin, summary) {
            // Release first: HTTP clients waiting on this instance get their 503 now.
            plugin.release();
            return Err(fault);
        }
        summary.probes = plugin.probes()?;
        plugin.shutdown()?;
        self.send(RunEvent::Stopped {
            plugin: summary.name.clone(),
        });
        Ok(())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits out a restart backoff; false when a stop was asked for meanwhile.
    /// Events keep queueing in the mailbox for the next instance.
    fn pause(&self, delay: std::time::Duration) -> bool {
        let until = Instant::now() + delay;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(std::time::Duration::from_millis(20)));
        }
        false
    }

    fn step_loop(
        &self,
        plugin: &mut Plugin,
        summary: &mut PluginSummary,
    ) -> Result<(), PluginFault> {
        let tick = self.prepared.manifest.tick;
        let mut next_tick = Instant::now() + tick;
        // Ticks and events take turns when both are due, so neither starves
        // the other: a plugin whose steps outlast its tick still gets every
        // event, in order, at worst one tick step late.
        let mut last_was_tick = false;
        loop {
            if self.stop.load(Ordering::Acquire)
                || self
                    .options
                    .max_steps
                    .is_some_and(|max| summary.steps >= max)
            {
                return Ok(());
            }
            let now = Instant::now();
            let mail = if now < next_tick {
                match self.rx.recv_timeout(next_tick - now) {
                    Ok(mail) => Some(mail),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            } else if last_was_tick {
                match self.rx.try_recv() {
                    Ok(mail) => Some(mail),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return Ok(()),
                }
            } else {
                None
            };
            last_was_tick = mail.is_none();
            let started = Instant::now();
            let outcome = match mail {
                Some(Mail::Stop) => return Ok(()),
                Some(Mail::Event(event)) => {
                    self.mailbox.metrics.mailbox(-1);
                    let outcome = plugin.step(&event);
                    self.mailbox.metrics.plugin_usage().release(event.len());
                    outcome?
                }
                None => {
                    // Skip ticks missed while a step ran long rather than bursting to catch up.
                    next_tick = (next_tick + tick).max(Instant::now());
                    plugin.step(&[])?
                }
            };
            self.mailbox.metrics.step(started.elapsed(), outcome.handle);
            summary.steps += 1;
            self.report(summary, outcome);
        }
    }

    fn report(&self, summary: &mut PluginSummary, outcome: StepOutcome) {
        let plugin = summary.name.clone();
        if outcome.handle > 0 {
            summary.outputs += 1;
            self.send(RunEvent::Output { plugin, outcome });
        } else if outcome.handle < 0 {
            summary.step_errors += 1;
            self.send(RunEvent::StepError {
                plugin,
                call_number: outcome.call_number,
                code: outcome.handle,
            });
        }
    }

    fn failed(&self, mut summary: PluginSummary, fault: PluginFault) -> PluginSummary {
        tracing::error!(plugin = %summary.name, "{fault}");
        self.send(RunEvent::Failed {
            plugin: summary.name.clone(),
            fault: fault.clone(),
        });
        summary.status = PluginStatus::Failed(fault);
        summary
    }
}
