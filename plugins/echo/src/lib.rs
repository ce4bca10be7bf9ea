//! echo: an HTTP plugin in a few lines.
//!
//! - `GET /echo/:msg` answers `msg`;
//! - `POST /echo` answers the request body with the request's content type;
//! - every `x-*` request header comes back, and the query string comes back
//!   in `x-echo-query` (`k=v&k2=v2`, keys sorted);
//! - `?sleep_ms=N` busy-waits N ms before answering, to show deadlines (504)
//!   and graceful shutdown with requests in flight;
//! - `?crash=1` panics (a trap), to show failure isolation and restarts.

use pulp_guest::{export_plugin, http, Plugin, Step, StepResult};

struct Echo;

impl Plugin for Echo {
    type Config = ();

    fn init(_: ()) -> Result<Self, pulp_guest::Error> {
        http::register("GET", "/echo/:msg")?;
        http::register("POST", "/echo")?;
        Ok(Echo)
    }

    fn step(&mut self, step: Step<'_>) -> StepResult {
        let Some(req) = http::request(&step)? else {
            return Ok(None);
        };
        if req.query.contains_key("crash") {
            panic!("asked to crash by {}", req.path);
        }
        if let Some(ms) = req
            .query
            .get("sleep_ms")
            .and_then(|v| v.parse::<u64>().ok())
        {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
            while std::time::Instant::now() < until {}
        }
        let mut response = match req.method.as_str() {
            "GET" => http::text(
                req.id,
                200,
                req.params.get("msg").cloned().unwrap_or_default(),
            ),
            _ => {
                let content_type = req
                    .headers
                    .get("content-type")
                    .map_or("application/octet-stream", |v| v.as_str());
                http::response(req.id, 200, content_type, req.body)
            }
        };
        for (name, value) in req.headers.iter().filter(|(n, _)| n.starts_with("x-")) {
            response.headers.insert(name.clone(), value.clone());
        }
        if !req.query.is_empty() {
            let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            response
                .headers
                .insert("x-echo-query".into(), query.join("&"));
        }
        http::respond(&response)?;
        Ok(None)
    }
}

export_plugin!(Echo);
