//! The hyper 1.x listener: turns requests into `http.request` events and
//! waits for the owning plugin's `http_respond`.

use super::routes::{parse_query, Lookup};
use super::{PendingReply, Shared};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use pulp_abi::http::{HttpRequest, REQUEST_EVENT};
use pulp_abi::StepEvent;
use pulp_ext::EventRejected;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running listener.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(super) async fn start(shared: Arc<Shared>, addr: &str) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, shared, stopped));
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<Duration>,
) {
    let graceful = GracefulShutdown::new();
    let grace = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(counted(req, shared).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("http connection: {e}");
                        }
                    });
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

fn plain(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.into() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Removes its request from the pending table when dropped: after a response,
/// a 504, or a client that hung up (hyper drops the handler's future).
struct PendingGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

/// Handles a request and counts its response by plugin and status.
async fn counted(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    let mut matched = None;
    let response = handle(req, &shared, &mut matched).await;
    if let Ok(mut counts) = shared.responses.lock() {
        let plugin = matched.unwrap_or_else(|| "-".to_string());
        *counts
            .entry((plugin, response.status().as_u16()))
            .or_default() += 1;
    }
    response
}

/// Serves one request; `matched` is set to the plugin whose route matched.
async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    matched: &mut Option<String>,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_ascii_uppercase();
    let path = req.uri().path().to_string();
    let lookup = match shared.routes.read() {
        Ok(table) => table.lookup(&method, &path),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "route table unavailable"),
    };
    let (plugin_name, params) = match lookup {
        Lookup::Found { plugin, params } => {
            *matched = Some(plugin.clone());
            (plugin, params)
        }
        Lookup::NotFound => {
            return plain(
                StatusCode::NOT_FOUND,
                format!("no route for {method} {path}"),
            )
        }
        Lookup::MethodNotAllowed(allow) => {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            );
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(ALLOW, value);
            }
            return response;
        }
    };
    let Some(plugin) = shared
        .plugins
        .read()
        .ok()
        .and_then(|p| p.get(&plugin_name).cloned())
    else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{plugin_name}` is not serving"),
        );
    };
    if !plugin.available.load(Ordering::Acquire) {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{plugin_name}` is not running"),
        );
    }

    let max_body = plugin.max_body();
    let declared_len = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > max_body as u64) {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over {max_body} bytes"),
        );
    }
    let query = parse_query(req.uri().query());
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over {max_body} bytes"),
            )
        }
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            )
        }
    };

    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let request = HttpRequest {
        id,
        method,
        path,
        params,
        query,
        headers,
        body: body.to_vec(),
    };
    let event = match (StepEvent {
        kind: REQUEST_EVENT.to_string(),
        payload: request,
    })
    .encode()
    {
        Ok(event) => event,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not encode the request: {e}"),
            )
        }
    };
    let (reply, replied) = oneshot::channel();
    match shared.pending.lock() {
        Ok(mut pending) => pending.insert(
            id,
            PendingReply {
                plugin: plugin_name.clone(),
                reply,
            },
        ),
        Err(_) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "pending table unavailable",
            )
        }
    };
    let _guard = PendingGuard {
        shared: shared.clone(),
        id,
    };
    let sink = match plugin.sink.read() {
        Ok(sink) => sink.clone(),
        Err(_) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin mailbox unavailable",
            )
        }
    };
    match sink.push(event) {
        Ok(()) => {}
        Err(EventRejected::Full) => {
            let mut response = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("plugin `{plugin_name}` is busy"),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(EventRejected::Closed) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("plugin `{plugin_name}` is not running"),
            )
        }
    }
    match tokio::time::timeout(plugin.timeout(), replied).await {
        Ok(Ok(answer)) => {
            let mut response = Response::new(Full::new(Bytes::from(answer.body)));
            *response.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (name, value) in answer.headers {
                // Validated by http_respond already.
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().append(name, value);
                }
            }
            response
        }
        Ok(Err(_)) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plugin `{plugin_name}` stopped before responding"),
        ),
        Err(_) => plain(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "plugin `{plugin_name}` did not respond within {} ms",
                plugin.settings.timeout_ms
            ),
        ),
    }
}
