//! Guest stdout/stderr (WASI fd 1 and 2) go to the host log, tagged with the
//! plugin: each non-empty line is one line through the plugin's [`LogGate`],
//! so it shares `log`'s rate limit, line cap and escaping.

use crate::log_gate::{GuestLevel, LogGate};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A WASI output stream that logs each line written to it at info level.
#[derive(Clone)]
pub struct GuestLog {
    stream: Arc<Stream>,
}

/// One stream of one instance: WASI may hand a write over in pieces (4 KiB
/// each), so the line being written is kept across writes, up to the line
/// cap, until its LF arrives or the instance ends.
struct Stream {
    gate: Arc<LogGate>,
    name: &'static str,
    partial: Mutex<Partial>,
}

/// The start of an unfinished line (at most the line cap) and its full length.
#[derive(Default)]
struct Partial {
    kept: Vec<u8>,
    len: usize,
}

impl GuestLog {
    /// The stream named `stream` ("stdout" or "stderr") of a plugin whose log budget is `gate`.
    pub fn new(gate: Arc<LogGate>, stream: &'static str) -> Self {
        GuestLog {
            stream: Arc::new(Stream {
                gate,
                name: stream,
                partial: Mutex::default(),
            }),
        }
    }

    fn emit(&self, bytes: &[u8]) {
        self.stream.write(bytes);
    }
}

impl Stream {
    /// Logs every line `bytes` completes; keeps the unfinished rest.
    fn write(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        let cap = self.gate.line_bytes();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            partial.push(&rest[..end], cap);
            self.finish(&mut partial);
            rest = &rest[end + 1..];
        }
        partial.push(rest, cap);
    }

    /// Logs the line in `partial` (without a trailing CR; an empty one not at all).
    fn finish(&self, partial: &mut Partial) {
        let Partial { mut kept, mut len } = std::mem::take(partial);
        if len == kept.len() && kept.last() == Some(&b'\r') {
            kept.pop();
            len -= 1;
        }
        if len > 0 {
            self.gate
                .line(GuestLevel::Info, Some(self.name), &kept, len);
        }
    }
}

impl Partial {
    fn push(&mut self, bytes: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.len = self.len.saturating_add(bytes.len());
    }
}

impl Drop for Stream {
    /// The instance ended: a last line without its LF is logged too.
    fn drop(&mut self) {
        let mut partial = std::mem::take(self.partial.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.finish(&mut partial);
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

#[cfg(test)]
mod tests {
    use super::*;
    use pulp_ext::PluginUsage;

    /// Stdout of a plugin allowed `burst` lines (at one a minute after that).
    fn stdout(burst: u32) -> (GuestLog, Arc<PluginUsage>) {
        let (gate, usage) = crate::log_gate::test_gate(1, burst);
        (GuestLog::new(gate, "stdout"), usage)
    }

    #[test]
    fn a_line_written_in_pieces_is_one_line() {
        // Room for one line: a second would be dropped, and counted.
        let (log, usage) = stdout(1);
        log.emit(b"a");
        log.emit(b"b\r");
        log.emit(b"\n\n\r\n");
        assert_eq!(usage.log_lines_dropped(), 0, "one line, empty ones skipped");
        log.emit(b"c\n");
        assert_eq!(usage.log_lines_dropped(), 1);
    }

    #[test]
    fn an_unfinished_line_keeps_at_most_the_cap_and_is_logged_at_the_end() {
        let (log, usage) = stdout(0);
        for _ in 0..1000 {
            log.emit(&[b'x'; 1000]);
        }
        {
            let partial = log.stream.partial.lock().unwrap();
            assert_eq!((partial.kept.len(), partial.len), (64, 1_000_000));
        }
        drop(log);
        assert_eq!(
            usage.log_lines_dropped(),
            1,
            "logged (here: dropped) when the stream ends"
        );
    }
}
