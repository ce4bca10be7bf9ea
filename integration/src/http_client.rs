//! A real HTTP/1.1 client (hyper's) for the tests, one connection per request.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a fresh connection (async).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Sends one request and waits for the reply (blocking).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    runtime()
        .block_on(send(addr, method, path, headers, body))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A small runtime for driving many requests at once.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Polls `GET path` until the server answers anything, for up to 20 s.
pub fn wait_until_serving(addr: SocketAddr, path: &str) {
    let rt = runtime();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if rt
            .block_on(send(addr, "GET", path, &[], b""))
            .is_ok_and(|r| r.status != 404)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing served {path} on {addr} within 20 s");
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A raw HTTP/1.1 connection, for tests that must control every byte on the
/// wire (slow senders, floods, several requests on one keep-alive connection).
pub struct RawConn {
    stream: std::net::TcpStream,
    /// Bytes read and not yet consumed by a parsed response.
    unread: Vec<u8>,
}

impl RawConn {
    /// Connects (the server may not accept it yet: it can wait in the backlog).
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        RawConn {
            stream,
            unread: Vec::new(),
        }
    }

    /// Writes `bytes`; an error means the server closed the connection.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.stream.write_all(bytes)
    }

    /// Reads more bytes until `deadline`: `Ok(0)` when the peer closed,
    /// `Err` on timeout or reset.
    fn fill(&mut self, deadline: std::time::Instant) -> std::io::Result<usize> {
        use std::io::Read;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.unread.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (framed by `content-length`, as the host frames
    /// all of its responses) within `timeout`.
    pub fn read_response(&mut self, timeout: Duration) -> Result<Reply, String> {
        let deadline = std::time::Instant::now() + timeout;
        let head_end = loop {
            if let Some(at) = self.unread.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match self.fill(deadline) {
                Ok(0) => return Err(format!("closed after {:?}", self.text())),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} after {:?}", self.text())),
            }
        };
        let head = String::from_utf8_lossy(&self.unread[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        while self.unread.len() < head_end + len {
            match self.fill(deadline) {
                Ok(0) => return Err(format!("closed inside the body of {head:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} inside the body of {head:?}")),
            }
        }
        let body = self.unread[head_end..head_end + len].to_vec();
        self.unread.drain(..head_end + len);
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Waits up to `timeout` for the server to close the connection (reading
    /// and keeping whatever it sends first); true when it did.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Everything read and not consumed, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.unread).into_owned()
    }
}
