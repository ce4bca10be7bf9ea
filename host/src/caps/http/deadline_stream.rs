//! Header and keep-alive deadlines of one connection, enforced on its socket.
//!
//! hyper's own `header_read_timeout` starts whenever it waits for a request
//! head, idle keep-alive time included, so it cannot tell a slow client from
//! an idle one. This stream can: the service marks the time a request is being
//! served ([`ServiceGuard`]), and the stream keeps one deadline for the rest:
//!
//! - **head**: from the connection's opening, or from the first byte of a
//!   further request, the whole head must arrive within the header timeout,
//!   however slowly the bytes trickle;
//! - **idle**: after a response, the connection may stay silent (or its client
//!   may stop reading the response) for the idle timeout; writing progress
//!   restarts it;
//! - **service**: while a request is served, no deadline here: its body has the
//!   body timeout and its plugin the route's `timeout_ms`, both in the server.
//!
//! A passed deadline fails the next read or write with `TimedOut`, and hyper
//! closes the connection.
//!
//! Moving a deadline is a field write, not a timer reset: the timer stays
//! registered where it is while the deadline only moves later, and is moved
//! only when it fires early (or the deadline moves earlier). Resetting a
//! tokio timer takes the timer driver's lock, and keep-alive moves the
//! deadline several times per request: done eagerly it cost the echo
//! benchmark about 4% of its throughput (88.5k → 92.0k requests/s).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the service tells the stream: requests being served, and served so far.
#[derive(Debug, Default)]
pub(super) struct ConnActivity {
    in_service: AtomicUsize,
    served: AtomicU64,
}

/// Held by the service while it handles one request.
pub(super) struct ServiceGuard(Arc<ConnActivity>);

impl ConnActivity {
    /// True while a request of the connection is being served.
    pub(super) fn serving(&self) -> bool {
        self.in_service.load(Ordering::Acquire) > 0
    }
}

impl ServiceGuard {
    pub(super) fn new(activity: &Arc<ConnActivity>) -> Self {
        activity.in_service.fetch_add(1, Ordering::AcqRel);
        ServiceGuard(activity.clone())
    }
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        self.0.served.fetch_add(1, Ordering::AcqRel);
        self.0.in_service.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Idle,
    Service,
}

/// A socket with the connection's head and idle deadlines.
pub(super) struct DeadlineStream<S> {
    inner: S,
    activity: Arc<ConnActivity>,
    seen_served: u64,
    phase: Phase,
    /// When the current phase's time is up.
    due: Instant,
    /// Registered at or before `due`; re-registered lazily (see the module doc).
    timer: Pin<Box<Sleep>>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl<S> DeadlineStream<S> {
    /// A new connection: its first head is due within `header_timeout`.
    pub(super) fn new(
        inner: S,
        activity: Arc<ConnActivity>,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        DeadlineStream {
            inner,
            activity,
            seen_served: 0,
            phase: Phase::Head,
            due: Instant::now() + header_timeout,
            timer: Box::pin(tokio::time::sleep(header_timeout)),
            header_timeout,
            idle_timeout,
        }
    }

    /// Follows the service: serving → no deadline; a request done → idle.
    fn sync(&mut self) {
        let served = self.activity.served.load(Ordering::Acquire);
        if self.activity.serving() {
            self.phase = Phase::Service;
        } else if self.phase == Phase::Service || served != self.seen_served {
            self.seen_served = served;
            self.arm(Phase::Idle);
        }
    }

    fn arm(&mut self, phase: Phase) {
        self.phase = phase;
        let after = match phase {
            Phase::Head => self.header_timeout,
            _ => self.idle_timeout,
        };
        self.due = Instant::now() + after;
        if self.timer.deadline() > self.due {
            self.timer.as_mut().reset(self.due);
        }
    }

    /// Ends every poll: registers the task with the current deadline (which
    /// this very poll may have moved: hyper need not poll again before it
    /// passes), and turns a wait past it into `TimedOut`.
    fn finish<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let expired = self.phase != Phase::Service && self.expired(cx);
        match result {
            Poll::Pending if expired => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }

    /// True once `due` has passed; otherwise the timer is registered (for
    /// `cx`'s task) at or before `due`.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if Instant::now() >= self.due {
            return true;
        }
        // Fired early: the deadline moved later since the timer was set.
        self.timer.as_mut().reset(self.due);
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// Writing progress between requests restarts the idle deadline.
    fn wrote(&mut self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) && self.phase == Phase::Idle {
            self.arm(Phase::Idle);
        }
    }

    fn timed_out(&self) -> io::Error {
        let what = match self.phase {
            Phase::Head => format!(
                "request head not received within {} ms",
                self.header_timeout.as_millis()
            ),
            _ => format!("connection idle for {} ms", self.idle_timeout.as_millis()),
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.sync();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before && this.phase == Phase::Idle {
            this.arm(Phase::Head);
        }
        this.finish(cx, result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.sync();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(&result);
        this.finish(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.sync();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&result);
        this.finish(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.sync();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.finish(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
