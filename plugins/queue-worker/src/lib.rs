//! queue-worker: uses the `queue.sqlite` extension (run it with `pulp-queue`).
//!
//! On start it fills its queue with the config's `seed` messages (when the queue
//! is empty). Each tick it receives one message and marks it done, with one
//! exception to show redelivery: the first delivery of a message starting with
//! `flaky` is left undone, so it comes back after `visibility_ms`.

use pulp_guest::{export_plugin, ext, log, HostCallError, Plugin, Step, StepResult};
use serde::{Deserialize, Serialize};

#[link(wasm_import_module = "pulp")]
extern "C" {
    fn queue_send(ptr: *const u8, len: u32, out_ptr: *mut u32, out_len: *mut u32) -> u32;
    fn queue_receive(ptr: *const u8, len: u32, out_ptr: *mut u32, out_len: *mut u32) -> u32;
    fn queue_done(ptr: *const u8, len: u32) -> u32;
    fn queue_len(ptr: *const u8, len: u32, out_ptr: *mut u32, out_len: *mut u32) -> u32;
}

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    queue: String,
    seed: Vec<String>,
    visibility_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue: "jobs".into(),
            seed: Vec::new(),
            visibility_ms: 200,
        }
    }
}

#[derive(Serialize)]
struct Send<'a> {
    queue: &'a str,
    #[serde(with = "serde_bytes")]
    body: &'a [u8],
}

#[derive(Serialize)]
struct Receive<'a> {
    queue: &'a str,
    visibility_ms: u64,
}

#[derive(Deserialize)]
struct Received {
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    id: i64,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    deliveries: u32,
}

#[derive(Serialize)]
struct Done<'a> {
    queue: &'a str,
    id: i64,
}

#[derive(Serialize)]
struct Len<'a> {
    queue: &'a str,
}

#[derive(Deserialize)]
struct Length {
    len: u64,
}

struct Worker {
    config: Config,
}

impl Plugin for Worker {
    type Config = Config;

    fn init(config: Config) -> Result<Self, pulp_guest::Error> {
        let length: Length = ext::call_in_out(
            queue_len,
            &Len {
                queue: &config.queue,
            },
        )?;
        if length.len == 0 {
            for body in &config.seed {
                let _: serde::de::IgnoredAny = ext::call_in_out(
                    queue_send,
                    &Send {
                        queue: &config.queue,
                        body: body.as_bytes(),
                    },
                )?;
            }
        }
        log::info(&format!(
            "{} messages waiting in {}",
            length.len.max(config.seed.len() as u64),
            config.queue
        ));
        Ok(Worker { config })
    }

    fn step(&mut self, _step: Step<'_>) -> StepResult {
        let queue = &self.config.queue;
        let received: Received = ext::call_in_out(
            queue_receive,
            &Receive {
                queue,
                visibility_ms: self.config.visibility_ms,
            },
        )?;
        let Some(message) = received.message else {
            return Ok(None);
        };
        let body = String::from_utf8_lossy(&message.body);
        if body.starts_with("flaky") && message.deliveries == 1 {
            return Ok(Some(format!("dropped {body} (delivery 1)").into_bytes()));
        }
        ext::call_in(
            queue_done,
            &Done {
                queue,
                id: message.id,
            },
        )
        .map_err(|e: HostCallError| e.to_string())?;
        Ok(Some(
            format!("processed {body} after {} deliveries", message.deliveries).into_bytes(),
        ))
    }
}

export_plugin!(Worker);
