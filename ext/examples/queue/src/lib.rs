//! `queue.sqlite`: a durable message queue per plugin, written as a Pulp
//! extension with nothing but the public `pulp-ext` API.
//!
//! Queues are named in each call and created on first use; messages live in
//! `{data dir}/{plugin}/queue.db`, so they survive restarts of the plugin and
//! of the host. A received message becomes invisible for `visibility_ms`; if the
//! plugin does not mark it done by then, it is delivered again (with its
//! delivery count raised), which is how work survives a crash.
//!
//! | import | request | response |
//! |---|---|---|
//! | `queue_send(ptr, len, out_ptr, out_len)` | `{queue, body: bin}` | `{id}` |
//! | `queue_receive(ptr, len, out_ptr, out_len)` | `{queue, visibility_ms}` | `{message: {id, body, deliveries} \| nil}` |
//! | `queue_done(ptr, len)` | `{queue, id}` | code 6 when no such message |
//! | `queue_len(ptr, len, out_ptr, out_len)` | `{queue}` | `{len}`: messages not done yet |
//!
//! Settings, `[grants."queue.sqlite"]`: `max_body_kb` (default 64) and
//! `max_visibility_ms` (default 600 000).

use pulp_ext::{
    host_fn, Capability, CapabilityError, Code, HostError, ImportSpec, PluginInfo, PluginState,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::Linker;

/// The capability's name in manifests.
pub const NAME: &str = "queue.sqlite";

/// The extension: register it with `HostBuilder::gated`.
pub struct QueueCapability;

/// `[grants."queue.sqlite"]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Largest message body, KiB.
    pub max_body_kb: u32,
    /// Longest visibility timeout a receive may ask for, ms.
    pub max_visibility_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            max_body_kb: 64,
            max_visibility_ms: 600_000,
        }
    }
}

#[derive(Deserialize)]
struct SendRequest {
    queue: String,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

#[derive(Serialize)]
struct SendResponse {
    id: i64,
}

#[derive(Deserialize)]
struct ReceiveRequest {
    queue: String,
    visibility_ms: u64,
}

/// A delivered message.
#[derive(Serialize)]
struct Message {
    id: i64,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    deliveries: u32,
}

#[derive(Serialize)]
struct ReceiveResponse {
    message: Option<Message>,
}

#[derive(Deserialize)]
struct DoneRequest {
    queue: String,
    id: i64,
}

#[derive(Deserialize)]
struct LenRequest {
    queue: String,
}

#[derive(Serialize)]
struct LenResponse {
    len: u64,
}

/// Per-instance state: the plugin's queue database and its settings.
struct Queues {
    db: Connection,
    settings: QueueSettings,
}

const IMPORTS: &[ImportSpec] = &[
    ImportSpec::msgpack_in_out("queue_send"),
    ImportSpec::msgpack_in_out("queue_receive"),
    ImportSpec::msgpack_in("queue_done"),
    ImportSpec::msgpack_in_out("queue_len"),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn sql_failed(e: rusqlite::Error) -> HostError {
    HostError::failed(format!("queue database: {e}"))
}

fn queues(state: &PluginState) -> Result<&Queues, HostError> {
    state
        .slot::<Queues>()
        .ok_or_else(|| HostError::failed("queue database is not open"))
}

fn check_name(queue: &str) -> Result<(), HostError> {
    if queue.is_empty() || queue.len() > 128 {
        return Err(HostError::invalid("queue names are 1 to 128 bytes"));
    }
    Ok(())
}

impl Capability for QueueCapability {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "durable named queues with visibility timeouts and redelivery, in the plugin's own SQLite file"
    }

    fn imports(&self) -> &[ImportSpec] {
        IMPORTS
    }

    fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        host_fn::msgpack_in_out(linker, "queue_send", |caller, req: SendRequest| {
            let q = queues(caller.data())?;
            check_name(&req.queue)?;
            let max = q.settings.max_body_kb as usize * 1024;
            if req.body.len() > max {
                return Err(HostError::code(
                    Code::LimitExceeded,
                    format!("body over {max} bytes"),
                ));
            }
            q.db.execute(
                "INSERT INTO messages(queue, body, visible_at_ms, deliveries) VALUES (?1, ?2, 0, 0)",
                params![req.queue, req.body],
            )
            .map_err(sql_failed)?;
            Ok(SendResponse {
                id: q.db.last_insert_rowid(),
            })
        })?;
        host_fn::msgpack_in_out(linker, "queue_receive", |caller, req: ReceiveRequest| {
            let q = queues(caller.data())?;
            check_name(&req.queue)?;
            if req.visibility_ms > q.settings.max_visibility_ms {
                return Err(HostError::invalid(format!(
                    "visibility_ms over {}",
                    q.settings.max_visibility_ms
                )));
            }
            let now = now_ms();
            // One statement claims the oldest visible message, so two receives never get the same one.
            let message = q
                .db
                .query_row(
                    "UPDATE messages SET visible_at_ms = ?1, deliveries = deliveries + 1
                     WHERE id = (SELECT id FROM messages WHERE queue = ?2 AND visible_at_ms <= ?3 ORDER BY id LIMIT 1)
                     RETURNING id, body, deliveries",
                    params![now.saturating_add(req.visibility_ms as i64), req.queue, now],
                    |row| Ok(Message { id: row.get(0)?, body: row.get(1)?, deliveries: row.get(2)? }),
                )
                .optional()
                .map_err(sql_failed)?;
            Ok(ReceiveResponse { message })
        })?;
        host_fn::msgpack_in(linker, "queue_done", |caller, req: DoneRequest| {
            let q = queues(caller.data())?;
            let deleted =
                q.db.execute(
                    "DELETE FROM messages WHERE queue = ?1 AND id = ?2",
                    params![req.queue, req.id],
                )
                .map_err(sql_failed)?;
            match deleted {
                0 => Err(HostError::code(
                    Code::NotFound,
                    format!("no message {} in {}", req.id, req.queue),
                )),
                _ => Ok(()),
            }
        })?;
        host_fn::msgpack_in_out(linker, "queue_len", |caller, req: LenRequest| {
            let q = queues(caller.data())?;
            let len: i64 =
                q.db.query_row(
                    "SELECT count(*) FROM messages WHERE queue = ?1",
                    params![req.queue],
                    |r| r.get(0),
                )
                .map_err(sql_failed)?;
            Ok(LenResponse {
                len: len.max(0) as u64,
            })
        })
    }

    fn prepare(&self, plugin: &PluginInfo) -> Result<Vec<String>, CapabilityError> {
        let settings: QueueSettings = plugin.settings(NAME)?;
        if settings.max_body_kb == 0 {
            return Err(plugin.error(NAME, "max_body_kb must be at least 1"));
        }
        Ok(vec![format!(
            "queue: {} (bodies up to {} KiB)",
            plugin.data_dir.join("queue.db").display(),
            settings.max_body_kb
        )])
    }

    fn instantiate(&self, state: &mut PluginState) -> Result<(), CapabilityError> {
        let info = state.info().clone();
        let settings: QueueSettings = info.settings(NAME)?;
        let fail = |e: &dyn std::fmt::Display| info.error(NAME, format!("queue database: {e}"));
        std::fs::create_dir_all(&info.data_dir).map_err(|e| fail(&e))?;
        let db = Connection::open(info.data_dir.join("queue.db")).map_err(|e| fail(&e))?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS messages(
               id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body BLOB NOT NULL,
               visible_at_ms INTEGER NOT NULL, deliveries INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS messages_by_queue ON messages(queue, visible_at_ms, id);",
        )
        .map_err(|e| fail(&e))?;
        state.insert_slot(Queues { db, settings });
        Ok(())
    }

    fn release(&self, state: &mut PluginState) {
        state.take_slot::<Queues>();
    }
}
