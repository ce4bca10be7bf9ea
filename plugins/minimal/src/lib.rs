//! minimal: what the step benchmark (`bench/`) drives. With `echo = false` a
//! step only decodes its envelope; with `echo = true` it returns the payload
//! as its output, the same work as the Extism echo guest it is compared with.

use pulp_guest::{export_plugin, Plugin, Step, StepResult};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    echo: bool,
}

struct Minimal {
    echo: bool,
}

impl Plugin for Minimal {
    type Config = Config;

    fn init(config: Config) -> Result<Self, pulp_guest::Error> {
        Ok(Minimal { echo: config.echo })
    }

    fn step(&mut self, step: Step<'_>) -> StepResult {
        Ok((self.echo && !step.payload.is_empty()).then(|| step.payload.to_vec()))
    }
}

export_plugin!(Minimal);
