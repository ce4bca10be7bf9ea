//! Guest stdout/stderr (WASI fd 1 and 2) go to the host log, tagged with the
//! plugin: each non-empty line of a write is one line through the plugin's
//! [`LogGate`], so it shares `log`'s rate limit, line cap and escaping.

use crate::log_gate::{GuestLevel, LogGate};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A WASI output stream that logs each line of a write at info level.
#[derive(Clone)]
pub struct GuestLog {
    gate: Arc<LogGate>,
    stream: &'static str,
}

impl GuestLog {
    /// The stream named `stream` ("stdout" or "stderr") of a plugin whose log budget is `gate`.
    pub fn new(gate: Arc<LogGate>, stream: &'static str) -> Self {
        GuestLog { gate, stream }
    }

    /// Splits on LF (a CR before it goes too); nothing is copied but the
    /// kept prefix of each line.
    fn emit(&self, bytes: &[u8]) {
        let lines = bytes.split(|b| *b == b'\n');
        for line in lines.map(|l| l.strip_suffix(b"\r").unwrap_or(l)) {
            if !line.is_empty() {
                let kept = &line[..line.len().min(self.gate.line_bytes())];
                self.gate
                    .line(GuestLevel::Info, Some(self.stream), kept, line.len());
            }
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.emit(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.emit(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
