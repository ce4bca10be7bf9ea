//! One request, in four phases, each able to answer on its own: route
//! (404/405/503), read (431/413/408/400/503: the request must fit the plugin's
//! buffer and the listener's budget), dispatch (503 when the mailbox is full or
//! closed) and answer (the plugin's response, 503 or 504).

use super::listener::ListenerSettings;
use super::routes::{parse_query, Lookup};
use super::server::Budget;
use super::{PendingReply, RoutePlugin, Shared};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use pulp_abi::http::{HttpRequest, REQUEST_EVENT};
use pulp_abi::{StepEvent, ENVELOPE_HEADER_LEN};
use pulp_ext::EventRejected;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

fn plain(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.into() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// One of a plugin's `max_pending` slots, taken before the request's body is
/// read and given back when dropped.
struct PendingSlot(Arc<RoutePlugin>);

impl PendingSlot {
    /// A slot, or 503 naming `max_pending` when the plugin has none left.
    fn take(plugin: &Arc<RoutePlugin>) -> Result<PendingSlot, Refusal> {
        let max_pending = plugin.settings.max_pending as usize;
        if plugin.pending.fetch_add(1, Ordering::AcqRel) >= max_pending {
            plugin.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(busy(format!(
                "plugin `{}` has {max_pending} requests awaiting its answer: over max_pending = {max_pending}",
                plugin.name
            )));
        }
        Ok(PendingSlot(plugin.clone()))
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Removes its request from the pending table when dropped (after a
/// response, a 504, or a client that hung up: hyper drops the handler's
/// future), and with it the request's `max_pending` slot. (The event's bytes
/// are charged by the plugin's mailbox while it is queued.)
struct PendingGuard {
    shared: Arc<Shared>,
    id: u64,
    _slot: PendingSlot,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

/// Handles a request and counts its response by plugin and status.
pub(super) async fn counted(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    budget: &Budget,
) -> Response<Full<Bytes>> {
    let mut matched = None;
    let response = match handle(req, &shared, budget, &mut matched).await {
        Ok(response) => response,
        Err(refusal) => *refusal,
    };
    if let Ok(mut counts) = shared.responses.lock() {
        let plugin = matched.unwrap_or_else(|| "-".to_string());
        *counts
            .entry((plugin, response.status().as_u16()))
            .or_default() += 1;
    }
    response
}

/// An answer the host gives by itself, ending the request early (boxed: it
/// is the rare path, and keeps each phase's `Result` small).
pub(super) type Refusal = Box<Response<Full<Bytes>>>;

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Box::new(plain(status, message))
}

/// Serves one request; `matched` is set to the plugin whose route matched.
async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    budget: &Budget,
    matched: &mut Option<String>,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let (plugin, params) = route(&req, shared, matched)?;
    // Before anything is read: a plugin at max_pending costs no body.
    let slot = PendingSlot::take(&plugin)?;
    // `_reserved` holds the request's bytes in the budget until it is answered.
    let (id, event, _reserved) = read(req, shared, &plugin, params, budget).await?;
    let replied = dispatch(shared, &plugin, slot, id, event)?;
    Ok(answer(&plugin, replied).await)
}

/// Finds the plugin serving the request, or answers 404/405/503.
fn route(
    req: &Request<Incoming>,
    shared: &Shared,
    matched: &mut Option<String>,
) -> Result<(Arc<RoutePlugin>, BTreeMap<String, String>), Refusal> {
    let method = req.method().as_str().to_ascii_uppercase();
    let path = req.uri().path();
    let lookup = match shared.routes.read() {
        Ok(table) => table.lookup(&method, path),
        Err(_) => {
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "route table unavailable",
            ))
        }
    };
    let (plugin_name, params) = match lookup {
        Lookup::Found { plugin, params } => (plugin, params),
        Lookup::NotFound => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("no route for {method} {path}"),
            ))
        }
        Lookup::MethodNotAllowed(allow) => {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            );
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(ALLOW, value);
            }
            return Err(Box::new(response));
        }
    };
    *matched = Some(plugin_name.clone());
    let Some(plugin) = shared
        .plugins
        .read()
        .ok()
        .and_then(|p| p.get(&plugin_name).cloned())
    else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{plugin_name}` is not serving"),
        ));
    };
    if !plugin.available.load(Ordering::Acquire) {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{}` is not running", plugin.name),
        ));
    }
    Ok((plugin, params))
}

/// Bytes a MessagePack `bin` header adds beyond the two of an empty body.
const BIN_HEADER_GROWTH: usize = 3;

/// Reads the request into its `http.request` event, refusing before the body
/// is read a head that cannot fit the plugin's buffer (431) or a declared body
/// over the limits (413) or the listener's budget (503), and stopping a body
/// that is too large (413) or too slow (408, `--http-body-timeout-ms`).
async fn read(
    req: Request<Incoming>,
    shared: &Shared,
    plugin: &RoutePlugin,
    params: BTreeMap<String, String>,
    budget: &Budget,
) -> Result<(u64, Vec<u8>, OwnedSemaphorePermit), Refusal> {
    let limits = &budget.limits;
    let (parts, body) = req.into_parts();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mut request = request_head(&parts, id, params);
    // The envelope the plugin gets must fit its buffer (else it would fault).
    let room = plugin.max_buffer.saturating_sub(ENVELOPE_HEADER_LEN);
    // Encoded with an empty body: the whole event when there is no body.
    let head = encode(&request)?;
    let head_len = head.len();
    if head_len > room {
        return Err(closing(refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers, path and query take {head_len} bytes as an event: over the plugin's limits.max_buffer_kb = {}",
                plugin.max_buffer / 1024
            ),
        )));
    }
    let body_room = (room - head_len).saturating_sub(BIN_HEADER_GROWTH);
    let limit = plugin.max_body().min(body_room);
    // Exact when the length is known from the head (`content-length`, or no
    // body at all): hyper holds the body to it. A chunked body may reach `limit`.
    let known_len = body.size_hint().exact();
    if let Some(len) = known_len.filter(|n| *n > limit as u64) {
        return Err(too_large(
            plugin,
            format!("{len} bytes"),
            len > plugin.max_body() as u64,
        ));
    }
    let reserved = budget.reserve(head_len + known_len.map_or(limit, |n| n as usize))?;
    if known_len == Some(0) {
        return Ok((id, head, reserved));
    }
    // The body's time starts once the head is read (no clock read without a body).
    let body_deadline = tokio::time::Instant::now() + limits.body_timeout();
    request.body = read_body(body, plugin, limit, body_deadline, limits).await?;
    let event = encode(&request)?;
    if event.len() > room {
        return Err(too_large(
            plugin,
            format!("{} bytes", request.body.len()),
            false,
        ));
    }
    Ok((id, event, reserved))
}

/// The request without its body; header names lower-case, repeats joined by `, `.
fn request_head(
    parts: &hyper::http::request::Parts,
    id: u64,
    params: BTreeMap<String, String>,
) -> HttpRequest {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    HttpRequest {
        id,
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        params,
        query: parse_query(parts.uri.query()),
        headers,
        body: Vec::new(),
    }
}

/// Collects at most `limit` bytes of body by `deadline`.
async fn read_body(
    body: Incoming,
    plugin: &RoutePlugin,
    limit: usize,
    deadline: tokio::time::Instant,
    limits: &ListenerSettings,
) -> Result<Vec<u8>, Refusal> {
    match tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(
            plugin,
            format!("more than {limit} bytes"),
            limit == plugin.max_body(),
        )),
        Ok(Err(e)) => Err(closing(refuse(
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {e}"),
        ))),
        Err(_) => Err(closing(refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within --http-body-timeout-ms = {}",
                limits.body_timeout_ms
            ),
        ))),
    }
}

/// 413 for a body of `size` (as far as known): over `max_body_kb` when
/// `over_body`, else too large for the plugin's buffer with the request's head.
fn too_large(plugin: &RoutePlugin, size: String, over_body: bool) -> Refusal {
    let what = match over_body {
        true => format!("over max_body_kb = {}", plugin.settings.max_body_kb),
        false => format!(
            "with the headers, over the plugin's limits.max_buffer_kb = {}",
            plugin.max_buffer / 1024
        ),
    };
    closing(refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("a request body of {size} is {what}"),
    ))
}

/// Marks a refusal that leaves an unread body: the connection closes after it.
pub(super) fn closing(mut response: Refusal) -> Refusal {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn encode(request: &HttpRequest) -> Result<Vec<u8>, Refusal> {
    StepEvent {
        kind: REQUEST_EVENT.to_string(),
        payload: request,
    }
    .encode()
    .map_err(|e| {
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the request: {e}"),
        )
    })
}

/// A request handed to its plugin, waiting for `http_respond`.
struct Dispatched {
    replied: oneshot::Receiver<pulp_abi::http::HttpResponse>,
    _guard: PendingGuard,
}

/// Records the request as pending (holding its `max_pending` slot) and puts
/// its event in the plugin's mailbox, or answers 503.
fn dispatch(
    shared: &Arc<Shared>,
    plugin: &RoutePlugin,
    slot: PendingSlot,
    id: u64,
    event: Vec<u8>,
) -> Result<Dispatched, Refusal> {
    let (reply, replied) = oneshot::channel();
    // From here the guard clears the entry and gives back the slot, whatever happens.
    let guard = PendingGuard {
        shared: shared.clone(),
        id,
        _slot: slot,
    };
    match shared.pending.lock() {
        Ok(mut pending) => pending.insert(
            id,
            PendingReply {
                plugin: plugin.name.clone(),
                reply,
            },
        ),
        Err(_) => {
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "pending table unavailable",
            ))
        }
    };
    let sink = match plugin.sink.read() {
        Ok(sink) => sink.clone(),
        Err(_) => {
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin mailbox unavailable",
            ))
        }
    };
    match sink.push(event) {
        Ok(()) => Ok(Dispatched {
            replied,
            _guard: guard,
        }),
        Err(EventRejected::Full) => Err(busy(format!("plugin `{}` is busy", plugin.name))),
        Err(EventRejected::Closed) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{}` is not running", plugin.name),
        )),
    }
}

/// 503 with `Retry-After: 1`: the plugin cannot take the request now.
fn busy(message: String) -> Refusal {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    Box::new(response)
}

/// Waits for the plugin's answer until its `timeout_ms` (then 504).
async fn answer(plugin: &RoutePlugin, dispatched: Dispatched) -> Response<Full<Bytes>> {
    match tokio::time::timeout(plugin.timeout(), dispatched.replied).await {
        Ok(Ok(answer)) => {
            let mut response = Response::new(Full::new(Bytes::from(answer.body)));
            *response.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (name, value) in answer.headers {
                // Checked by http_respond already; a header failing now is left out.
                if let Ok((name, value)) = super::response_headers::check(&name, &value) {
                    response.headers_mut().append(name, value);
                }
            }
            response
        }
        Ok(Err(_)) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{}` stopped before responding", plugin.name),
        ),
        Err(_) => plain(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "plugin `{}` did not respond within {} ms",
                plugin.name, plugin.settings.timeout_ms
            ),
        ),
    }
}
