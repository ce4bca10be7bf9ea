//! The hyper 1.x listener: turns requests into `http.request` events and
//! waits for the owning plugin's `http_respond`.
//!
//! A request goes through four phases, each able to answer on its own:
//! route (404/405/503), read (431/413/408/400: the request must fit the
//! plugin's buffer), dispatch (503 when the mailbox is full or closed) and
//! answer (the plugin's response, 503 or 504).

use super::deadline_stream::{ConnActivity, DeadlineStream, ServiceGuard};
use super::listener::ListenerSettings;
use super::routes::{parse_query, Lookup};
use super::{PendingReply, RoutePlugin, Shared};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use pulp_abi::http::{HttpRequest, REQUEST_EVENT};
use pulp_abi::{StepEvent, ENVELOPE_HEADER_LEN};
use pulp_ext::{EventRejected, PluginUsage};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// A running listener.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(super) async fn start(
        shared: Arc<Shared>,
        addr: &str,
        limits: ListenerSettings,
    ) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let budget = Arc::new(Budget::new(limits));
        let task = tokio::spawn(accept_loop(listener, shared, budget, stopped));
        tracing::info!("http listening on {addr}");
        Ok(HttpServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address (useful when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and lets requests in flight finish, for at most `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        let _ = (&mut self.task).await;
    }
}

/// The listener's limits and the request bytes it holds under them.
struct Budget {
    limits: ListenerSettings,
    /// KiB of request heads and bodies held (being read or waiting for their
    /// plugin's answer), `--http-max-buffered-mb` in all.
    buffered_kib: Arc<Semaphore>,
}

impl Budget {
    fn new(limits: ListenerSettings) -> Self {
        let kib = limits.max_buffered_mb as usize * 1024;
        Budget {
            limits,
            buffered_kib: Arc::new(Semaphore::new(kib.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Reserves `bytes` of request data, or refuses with 503 at once.
    fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Refusal> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        self.buffered_kib
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| {
                let mut refusal = refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the host holds too many requests: {bytes} more bytes would be over --http-max-buffered-mb = {}",
                        self.limits.max_buffered_mb
                    ),
                );
                refusal
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                closing(refusal)
            })
    }
}

/// hyper's smallest allowed read buffer.
const MIN_READ_BUFFER: usize = 8192;

/// Accepts connections while fewer than `max_connections` are open: past the
/// cap, new clients wait in the kernel's backlog (no descriptor, no memory
/// here) until a connection closes.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    budget: Arc<Budget>,
    mut stopped: oneshot::Receiver<Duration>,
) {
    let graceful = GracefulShutdown::new();
    let (stopping, stop_seen) = watch::channel(false);
    let limits = &budget.limits;
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut warned_full = false;
    let grace = loop {
        // One warning per time the cap is reached.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                warned_full = false;
                permit
            }
            Err(_) => {
                if !warned_full {
                    tracing::warn!(
                        "http: --http-max-connections = {} reached: new connections wait in the backlog",
                        limits.max_connections
                    );
                    warned_full = true;
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break Duration::ZERO,
                    },
                    grace = &mut stopped => break grace.unwrap_or(Duration::ZERO),
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let watched = Watched { graceful: &graceful, stopping: stop_seen.clone() };
                    serve_connection(stream, &shared, &budget, watched, permit);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            grace = &mut stopped => break grace.unwrap_or(Duration::ZERO),
        }
    };
    drop(listener);
    let _ = stopping.send(true);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "http: connections still open after {} ms of grace",
            grace.as_millis()
        );
    }
}

/// How a connection learns that the listener is stopping.
struct Watched<'a> {
    /// Lets a request being served finish (hyper's graceful shutdown).
    graceful: &'a GracefulShutdown,
    /// Becomes true when stopping: a connection between requests closes at once.
    stopping: watch::Receiver<bool>,
}

/// Serves one connection on its own task; `permit` is its slot under the cap.
fn serve_connection(
    stream: TcpStream,
    shared: &Arc<Shared>,
    budget: &Arc<Budget>,
    watched: Watched<'_>,
    permit: OwnedSemaphorePermit,
) {
    let limits = &budget.limits;
    let activity = Arc::new(ConnActivity::default());
    let conn_activity = activity.clone();
    let io = DeadlineStream::new(
        stream,
        activity.clone(),
        limits.header_timeout(),
        limits.idle_timeout(),
    );
    let (shared, service_budget) = (shared.clone(), budget.clone());
    let service = service_fn(move |req| {
        let guard = ServiceGuard::new(&activity);
        let (shared, budget) = (shared.clone(), service_budget.clone());
        async move {
            let response = counted(req, shared, &budget).await;
            drop(guard);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .max_headers(limits.max_headers as usize)
        .max_header_size(limits.max_header_bytes())
        // hyper's read buffer (400 KiB by default) holds a head, or pipelined
        // bytes while a request is served: a head's worth is enough.
        .max_buf_size(limits.max_header_bytes().max(MIN_READ_BUFFER))
        // The head deadline is DeadlineStream's; hyper's would also cut idle keep-alives.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    let conn = watched.graceful.watch(conn);
    let mut stopping = watched.stopping;
    tokio::spawn(async move {
        tokio::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            _ = stopping.changed() => match conn_activity.serving() {
                true => conn.await,
                // Idle, or a head still arriving: nothing to finish, so no grace to wait for.
                false => Ok(()),
            },
        };
        if let Err(e) = ended {
            tracing::debug!("http connection: {e}");
        }
        drop(permit);
    });
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.into() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Removes its request from the pending table, and gives back the bytes
/// charged to the plugin for it, when dropped: after a response, a 504, or a
/// client that hung up (hyper drops the handler's future).
struct PendingGuard {
    shared: Arc<Shared>,
    id: u64,
    usage: Arc<PluginUsage>,
    held: usize,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.remove(&self.id);
        }
        self.usage.release(self.held);
    }
}

/// Handles a request and counts its response by plugin and status.
async fn counted(
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
type Refusal = Box<Response<Full<Bytes>>>;

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
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
    // `_reserved` holds the request's bytes in the budget until it is answered.
    let (id, event, _reserved) = read(req, shared, &plugin, params, budget).await?;
    let replied = dispatch(shared, &plugin, id, event)?;
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
    let body_deadline = tokio::time::Instant::now() + limits.body_timeout();
    let (parts, body) = req.into_parts();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mut request = request_head(&parts, id, params);
    // The envelope the plugin gets must fit its buffer (else it would fault).
    let room = plugin.max_buffer.saturating_sub(ENVELOPE_HEADER_LEN);
    let head_len = encode(&request)?.len();
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
fn closing(mut response: Refusal) -> Refusal {
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

/// Records the request as pending (charging its bytes to the plugin) and
/// puts its event in the plugin's mailbox, or answers 503.
fn dispatch(
    shared: &Arc<Shared>,
    plugin: &RoutePlugin,
    id: u64,
    event: Vec<u8>,
) -> Result<Dispatched, Refusal> {
    let (reply, replied) = oneshot::channel();
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
    plugin.usage.hold(event.len());
    let guard = PendingGuard {
        shared: shared.clone(),
        id,
        usage: plugin.usage.clone(),
        held: event.len(),
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
        Err(EventRejected::Full) => {
            let mut response = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("plugin `{}` is busy", plugin.name),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            Err(Box::new(response))
        }
        Err(EventRejected::Closed) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{}` is not running", plugin.name),
        )),
    }
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
