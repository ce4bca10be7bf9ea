//! notes: a small JSON notes service on `transport.http.inbound` and `storage.sqlite`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /notes` `{"title", "body"}` | 201 `{"id": n}`; 400 when the JSON is invalid or a field is missing |
//! | `GET /notes?limit=&after=` | 200 `{"notes": [...], "next_after": id or null}`, by id, `limit` 20 by default, 100 at most |
//! | `GET /notes/:id` | 200 `{"id", "title", "body"}` or 404 |
//! | `DELETE /notes/:id` | 204 or 404 |
//!
//! Errors are JSON `{"error": "..."}`. The schema version is SQLite's
//! `PRAGMA user_version`; `init` applies the migrations the database has not
//! seen yet, each in its own transaction, so a database from any earlier
//! version of the plugin is brought up to date.

use pulp_guest::sqlite::{self, Value};
use pulp_guest::{export_plugin, http, log, HostCallError, Plugin, Step, StepResult};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// Schema migrations: entry `i` takes the schema from version `i` to `i + 1`.
/// Append only; a released migration never changes.
const MIGRATIONS: &[&str] = &["CREATE TABLE notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ns INTEGER NOT NULL
)"];

/// Page size of `GET /notes` without `limit`.
const DEFAULT_LIMIT: i64 = 20;
/// Largest page; a larger `limit` is lowered to this.
const MAX_LIMIT: i64 = 100;

/// No settings; an empty struct still accepts an empty `[config]`.
#[derive(Deserialize, Default)]
struct Config {}

struct Notes;

impl Plugin for Notes {
    type Config = Config;

    fn init(_config: Config) -> Result<Self, pulp_guest::Error> {
        sqlite::migrate(MIGRATIONS)?;
        for (method, path) in [
            ("POST", "/notes"),
            ("GET", "/notes"),
            ("GET", "/notes/:id"),
            ("DELETE", "/notes/:id"),
        ] {
            http::register(method, path)?;
        }
        Ok(Notes)
    }

    fn step(&mut self, step: Step<'_>) -> StepResult {
        let Some(req) = http::request(&step)? else {
            return Ok(None); // a tick: nothing to do
        };
        let reply = handle(&req, step.wall_time_ns).unwrap_or_else(|e| {
            log::error(&format!("{} {}: {e}", req.method, req.path));
            Reply::error(500, &format!("database error: {e}"))
        });
        if let Err(e) = http::respond(&http::json(req.id, reply.status, reply.body)) {
            // The host gave up on the request (its deadline passed): nothing to undo.
            log::warn(&format!(
                "response to {} {} not delivered: {e}",
                req.method, req.path
            ));
        }
        Ok(None)
    }
}

export_plugin!(Notes);

/// A status and a JSON body (empty for 204).
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: &Json) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({ "error": message }))
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
        }
    }
}

/// Answers one request. `Err` is a database failure (500); every mistake of
/// the client is an `Ok` with a 4xx.
fn handle(req: &http::Request, now_ns: u64) -> Result<Reply, HostCallError> {
    match (req.method.as_str(), req.params.get("id")) {
        ("POST", None) => create(&req.body, now_ns),
        ("GET", None) => list(&req.query),
        ("GET", Some(id)) => with_id(id, get),
        ("DELETE", Some(id)) => with_id(id, delete),
        _ => Ok(Reply::error(
            405,
            &format!("{} {} is not supported", req.method, req.path),
        )),
    }
}

/// Parses the `:id` of a route, answering 400 when it is not an integer.
fn with_id(
    raw: &str,
    f: impl FnOnce(i64) -> Result<Reply, HostCallError>,
) -> Result<Reply, HostCallError> {
    match raw.parse::<i64>() {
        Ok(id) => f(id),
        Err(_) => Ok(Reply::error(
            400,
            &format!("note id must be an integer, got {raw:?}"),
        )),
    }
}

/// The body of `POST /notes`.
#[derive(Deserialize)]
struct NewNote {
    title: String,
    body: String,
}

fn create(body: &[u8], now_ns: u64) -> Result<Reply, HostCallError> {
    // Two stages, so the message says whether the JSON or its shape is wrong.
    let value: Json = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Ok(Reply::error(400, &format!("body is not valid JSON: {e}"))),
    };
    let note: NewNote = match serde_json::from_value(value) {
        Ok(n) => n,
        Err(e) => {
            return Ok(Reply::error(
                400,
                &format!("body must be an object with string fields \"title\" and \"body\": {e}"),
            ))
        }
    };
    let created_ns = i64::try_from(now_ns).unwrap_or(i64::MAX);
    let done = sqlite::exec(
        "INSERT INTO notes (title, body, created_ns) VALUES (?1, ?2, ?3)",
        &[note.title.into(), note.body.into(), created_ns.into()],
    )?;
    Ok(Reply::json(201, &json!({ "id": done.last_insert_id })))
}

fn get(id: i64) -> Result<Reply, HostCallError> {
    let found = sqlite::query(
        "SELECT id, title, body FROM notes WHERE id = ?1",
        &[id.into()],
    )?;
    Ok(match found.rows.first() {
        Some(row) => Reply::json(200, &note_json(row)),
        None => Reply::error(404, &format!("note {id} not found")),
    })
}

fn delete(id: i64) -> Result<Reply, HostCallError> {
    let done = sqlite::exec("DELETE FROM notes WHERE id = ?1", &[id.into()])?;
    Ok(if done.rows_affected == 0 {
        Reply::error(404, &format!("note {id} not found"))
    } else {
        Reply::empty(204)
    })
}

/// One page of notes after id `after`; `next_after` is the id to pass for
/// the next page, or null on the last one.
fn list(query: &BTreeMap<String, String>) -> Result<Reply, HostCallError> {
    let limit = match query.get("limit").map(|s| s.parse::<i64>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if n >= 1 => n.min(MAX_LIMIT),
        Some(_) => {
            return Ok(Reply::error(
                400,
                &format!(
                    "limit must be an integer from 1 (at most {MAX_LIMIT} notes are returned)"
                ),
            ))
        }
    };
    let after = match query.get("after").map(|s| s.parse::<i64>()) {
        None => 0,
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => {
            return Ok(Reply::error(
                400,
                "after must be a note id (an integer from 0)",
            ))
        }
    };
    // One row more than asked tells whether there is a next page.
    let page = sqlite::query(
        "SELECT id, title, body FROM notes WHERE id > ?1 ORDER BY id LIMIT ?2",
        &[after.into(), (limit + 1).into()],
    )?;
    let shown = page.rows.len().min(limit as usize);
    let notes: Vec<Json> = page.rows[..shown]
        .iter()
        .map(|row| note_json(row))
        .collect();
    let next_after = if page.rows.len() > shown {
        page.rows[shown - 1].first().and_then(Value::as_i64)
    } else {
        None
    };
    Ok(Reply::json(
        200,
        &json!({ "notes": notes, "next_after": next_after }),
    ))
}

/// A `SELECT id, title, body` row as the JSON the API returns.
fn note_json(row: &[Value]) -> Json {
    json!({
        "id": row.first().and_then(Value::as_i64),
        "title": row.get(1).and_then(Value::as_str),
        "body": row.get(2).and_then(Value::as_str),
    })
}
