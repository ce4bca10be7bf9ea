//! jobs: an HTTP job runner on `spawn.docker`, `transport.http.inbound` and
//! `storage.sqlite`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /jobs` `{"cmd": [...], "env"?: {..}, "stdin"?: "..", "timeout_ms"?: n, "image"?: ".."}` | 201 `{"id": n}`; 400 bad JSON, 403 image not allowed or bad request (code 4), 429 too many running (code 9) |
//! | `GET /jobs/:id` | 200 `{id, status, exit_code, stdout, stderr, ...}` or 404 |
//! | `DELETE /jobs/:id` | 202 the job is being killed; 409 when it is not running; 404 |
//!
//! `status` is `running`, then `exited` (it ran to its end; see `exit_code`),
//! `failed` (it could not run, see `error`), `killed`, `timed_out`, or `lost`
//! (the host stopped before it finished). The container's start and end are
//! seen as two steps, so `latency_ms` is the spawn-to-exit time the plugin saw.
//! Jobs are rows in the plugin's SQLite database, so they survive restarts.

use pulp_guest::docker::{self, Exit, Spawn};
use pulp_guest::sqlite::{self, Value};
use pulp_guest::{export_plugin, http, log, Code, HostCallError, Plugin, Step, StepResult};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// Schema migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spawn_id INTEGER NOT NULL,
    image TEXT NOT NULL,
    cmd TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    stdout BLOB,
    stderr BLOB,
    stdout_truncated INTEGER NOT NULL DEFAULT 0,
    stderr_truncated INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    duration_ms INTEGER,
    created_ns INTEGER NOT NULL,
    finished_ns INTEGER
)"];

/// `[config]`: the image a job runs in when it names none.
#[derive(Deserialize)]
#[serde(default)]
struct Config {
    image: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            image: "pulp-busybox".into(),
        }
    }
}

struct Jobs {
    image: String,
}

impl Plugin for Jobs {
    type Config = Config;

    fn init(config: Config) -> Result<Self, pulp_guest::Error> {
        sqlite::migrate(MIGRATIONS)?;
        // Spawn ids are per host run, and a stopped host has removed its containers.
        let lost = sqlite::exec(
            "UPDATE jobs SET status = 'lost', error = 'the host stopped before the job finished' WHERE status = 'running'",
            &[],
        )?;
        if lost.rows_affected > 0 {
            log::warn(&format!(
                "{} jobs were lost when the host stopped",
                lost.rows_affected
            ));
        }
        for (method, path) in [
            ("POST", "/jobs"),
            ("GET", "/jobs/:id"),
            ("DELETE", "/jobs/:id"),
        ] {
            http::register(method, path)?;
        }
        Ok(Jobs {
            image: config.image,
        })
    }

    fn step(&mut self, step: Step<'_>) -> StepResult {
        if let Some(exit) = docker::exit(&step)? {
            finish(&exit, step.wall_time_ns)?;
            return Ok(None);
        }
        let Some(req) = http::request(&step)? else {
            return Ok(None);
        };
        let reply = self.handle(&req, step.wall_time_ns).unwrap_or_else(|e| {
            log::error(&format!("{} {}: {e}", req.method, req.path));
            (500, json!({ "error": format!("database error: {e}") }))
        });
        let body = serde_json::to_vec(&reply.1).unwrap_or_default();
        if let Err(e) = http::respond(&http::json(req.id, reply.0, body)) {
            log::warn(&format!(
                "response to {} {} not delivered: {e}",
                req.method, req.path
            ));
        }
        Ok(None)
    }
}

export_plugin!(Jobs);

type Reply = (u16, Json);

fn error(status: u16, message: &str) -> Reply {
    (status, json!({ "error": message }))
}

/// The body of `POST /jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJob {
    cmd: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    stdin: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    image: Option<String>,
}

impl Jobs {
    fn handle(&self, req: &http::Request, now_ns: u64) -> Result<Reply, HostCallError> {
        let id = req.params.get("id").map(|raw| raw.parse::<i64>());
        match (req.method.as_str(), id) {
            ("POST", None) => self.create(&req.body, now_ns),
            (_, Some(Err(_))) => Ok(error(400, "job id must be an integer")),
            ("GET", Some(Ok(id))) => show(id),
            ("DELETE", Some(Ok(id))) => kill(id),
            _ => Ok(error(405, "not supported")),
        }
    }

    fn create(&self, body: &[u8], now_ns: u64) -> Result<Reply, HostCallError> {
        let job: NewJob = match serde_json::from_slice(body) {
            Ok(job) => job,
            Err(e) => {
                return Ok(error(
                    400,
                    &format!("body must be JSON {{\"cmd\": [strings], \"env\"?, \"stdin\"?, \"timeout_ms\"?, \"image\"?}}: {e}"),
                ))
            }
        };
        let image = job.image.unwrap_or_else(|| self.image.clone());
        let mut spawn = Spawn::new(&image, job.cmd.iter().cloned()).stdin(job.stdin.into_bytes());
        spawn.env = job.env;
        spawn.timeout_ms = job.timeout_ms;
        let spawn_id = match docker::spawn(&spawn) {
            Ok(id) => id,
            Err(e) => {
                let status = match e.code() {
                    Some(Code::InvalidArgument) => 403,
                    Some(Code::LimitExceeded) => 429,
                    _ => 502,
                };
                return Ok((status, json!({ "error": e.to_string(), "code": e.0 })));
            }
        };
        let cmd = serde_json::to_string(&job.cmd).unwrap_or_default();
        let created_ns = i64::try_from(now_ns).unwrap_or(i64::MAX);
        let inserted = sqlite::exec(
            "INSERT INTO jobs (spawn_id, image, cmd, status, created_ns) VALUES (?1, ?2, ?3, 'running', ?4)",
            &[(spawn_id as i64).into(), image.into(), cmd.into(), created_ns.into()],
        );
        match inserted {
            Ok(done) => Ok((201, json!({ "id": done.last_insert_id }))),
            Err(e) => {
                // Nobody could ever ask for this job: stop its container.
                let _ = docker::kill(spawn_id);
                Err(e)
            }
        }
    }
}

/// Records how a job's container ended.
fn finish(exit: &Exit, now_ns: u64) -> Result<(), HostCallError> {
    let status = if exit.killed {
        "killed"
    } else if exit.timed_out {
        "timed_out"
    } else if exit.error.is_some() {
        "failed"
    } else {
        "exited"
    };
    let error = exit.error.clone().map_or(Value::Nil, Value::from);
    sqlite::exec(
        "UPDATE jobs SET status = ?1, exit_code = ?2, stdout = ?3, stderr = ?4, stdout_truncated = ?5,
            stderr_truncated = ?6, error = ?7, duration_ms = ?8, finished_ns = ?9
         WHERE spawn_id = ?10 AND status = 'running'",
        &[
            status.into(),
            exit.exit_code.into(),
            exit.stdout.clone().into(),
            exit.stderr.clone().into(),
            exit.stdout_truncated.into(),
            exit.stderr_truncated.into(),
            error,
            i64::try_from(exit.duration_ms).unwrap_or(i64::MAX).into(),
            i64::try_from(now_ns).unwrap_or(i64::MAX).into(),
            (exit.spawn_id as i64).into(),
        ],
    )?;
    Ok(())
}

const COLUMNS: &str = "id, image, cmd, status, exit_code, stdout, stderr, stdout_truncated, stderr_truncated, error, duration_ms, created_ns, finished_ns";

fn show(id: i64) -> Result<Reply, HostCallError> {
    let found = sqlite::query(
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
        &[id.into()],
    )?;
    let Some(row) = found.rows.first() else {
        return Ok(error(404, &format!("job {id} not found")));
    };
    let int = |i: usize| row.get(i).and_then(Value::as_i64);
    let text = |i: usize| row.get(i).and_then(Value::as_str);
    let lossy = |i: usize| {
        row.get(i)
            .and_then(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let cmd: Json = text(2)
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Json::Null);
    let latency_ms = match (int(11), int(12)) {
        (Some(start), Some(end)) => Json::from((end - start) as f64 / 1e6),
        _ => Json::Null,
    };
    Ok((
        200,
        json!({
            "id": int(0),
            "image": text(1),
            "cmd": cmd,
            "status": text(3),
            "exit_code": int(4),
            "stdout": lossy(5),
            "stderr": lossy(6),
            "stdout_truncated": int(7) == Some(1),
            "stderr_truncated": int(8) == Some(1),
            "error": text(9),
            "duration_ms": int(10),
            "latency_ms": latency_ms,
        }),
    ))
}

fn kill(id: i64) -> Result<Reply, HostCallError> {
    let found = sqlite::query(
        "SELECT spawn_id, status FROM jobs WHERE id = ?1",
        &[id.into()],
    )?;
    let Some(row) = found.rows.first() else {
        return Ok(error(404, &format!("job {id} not found")));
    };
    let status = row.get(1).and_then(Value::as_str).unwrap_or_default();
    let spawn_id = row.first().and_then(Value::as_i64).unwrap_or(0) as u64;
    if status != "running" {
        return Ok(error(
            409,
            &format!("job {id} is not running (status {status})"),
        ));
    }
    match docker::kill(spawn_id) {
        Ok(()) => Ok((202, json!({ "id": id, "status": "killing" }))),
        // It ended just now; its exit event is on its way.
        Err(e) if e.code() == Some(Code::NotFound) => {
            Ok(error(409, &format!("job {id} has just ended")))
        }
        Err(e) => Err(e),
    }
}
