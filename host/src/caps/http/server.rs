//! The hyper 1.x listener: accepts connections under the connection cap,
//! gives each its deadlines and limits, and hands each request to the
//! `request` module; stops gracefully.

use super::deadline_stream::{ConnActivity, DeadlineStream, ServiceGuard};
use super::listener::ListenerSettings;
use super::request::{closing, counted, refuse, Refusal};
use super::Shared;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
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
pub(super) struct Budget {
    pub(super) limits: ListenerSettings,
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
    pub(super) fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Refusal> {
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

/// How long a connection not serving a request may still run once the
/// listener stops (to finish writing a response already handed to hyper).
const STOP_GRACE: Duration = Duration::from_millis(500);

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
                // Idle, a head still arriving, or a response whose service has
                // returned but is still being written: a short grace lets the
                // last finish, and never waits on a slow or silent client.
                false => tokio::time::timeout(STOP_GRACE, conn)
                    .await
                    .unwrap_or(Ok(())),
            },
        };
        if let Err(e) = ended {
            tracing::debug!("http connection: {e}");
        }
        drop(permit);
    });
}
