//! heartbeat: the smallest useful plugin.
//!
//! Counts its steps, logs a greeting every `log_every` ticks, returns an
//! output every `output_every` steps, and exports two probes:
//! `probe_last_call` (call number of the last step) and
//! `probe_config_marker` (the `marker` from its config).

use pulp_guest::{export_plugin, log, Plugin, Step, StepResult};
use serde::Deserialize;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    marker: i64,
    greeting: String,
    log_every: u64,
    output_every: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            marker: 0,
            greeting: "hello".into(),
            log_every: 10,
            output_every: 5,
        }
    }
}

struct Heartbeat {
    config: Config,
    steps: u64,
    ticks: u64,
}

static LAST_CALL: AtomicI64 = AtomicI64::new(0);
static CONFIG_MARKER: AtomicI64 = AtomicI64::new(0);

impl Plugin for Heartbeat {
    type Config = Config;

    fn init(config: Config) -> Result<Self, pulp_guest::Error> {
        if config.output_every == 0 || config.log_every == 0 {
            return Err(pulp_guest::Error::new(
                "log_every and output_every must be at least 1",
            ));
        }
        CONFIG_MARKER.store(config.marker, Ordering::Relaxed);
        log::info(&format!("{} (marker {})", config.greeting, config.marker));
        Ok(Heartbeat {
            config,
            steps: 0,
            ticks: 0,
        })
    }

    fn step(&mut self, step: Step<'_>) -> StepResult {
        self.steps += 1;
        LAST_CALL.store(step.call_number as i64, Ordering::Relaxed);
        if step.is_tick() {
            self.ticks += 1;
            if self.ticks.is_multiple_of(self.config.log_every) {
                log::info(&format!("{}: {} ticks", self.config.greeting, self.ticks));
            }
        }
        if self.steps.is_multiple_of(self.config.output_every) {
            return Ok(Some(
                format!("beat {} (call {})", self.steps, step.call_number).into_bytes(),
            ));
        }
        Ok(None)
    }

    fn shutdown(&mut self) -> Result<(), pulp_guest::Error> {
        log::info(&format!(
            "heartbeat shutting down after {} steps",
            self.steps
        ));
        Ok(())
    }
}

export_plugin!(Heartbeat);

/// Call number of the last step.
#[no_mangle]
pub extern "C" fn probe_last_call() -> i64 {
    LAST_CALL.load(Ordering::Relaxed)
}

/// The `marker` value from the config.
#[no_mangle]
pub extern "C" fn probe_config_marker() -> i64 {
    CONFIG_MARKER.load(Ordering::Relaxed)
}
