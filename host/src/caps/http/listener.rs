//! The listener's own limits: what one client may cost the host before any
//! plugin sees its request. They are host-wide (one listener serves every
//! plugin), so they are `pulp run` flags, not manifest grants.

use clap::Args;
use std::time::Duration;

const MAX_CONNECTIONS: u32 = 512;
const HEADER_TIMEOUT_MS: u64 = 10_000;
const BODY_TIMEOUT_MS: u64 = 30_000;
const IDLE_TIMEOUT_MS: u64 = 30_000;
const MAX_HEADERS: u32 = 100;
const MAX_HEADER_KB: u32 = 16;
const MAX_BUFFERED_MB: u32 = 256;

/// Limits of the HTTP listener, with production defaults
/// ([`ListenerSettings::default`]); `pulp run` takes each as a flag.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "HTTP listener limits")]
pub struct ListenerSettings {
    /// Most HTTP connections open at once; further clients wait in the
    /// kernel's accept backlog until one closes.
    #[arg(long = "http-max-connections", default_value_t = MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// A request's line and headers must arrive within this many ms of their
    /// first byte (of the connection's opening, for its first request);
    /// otherwise the connection is closed.
    #[arg(long = "http-header-timeout-ms", default_value_t = HEADER_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// A request's whole body must arrive within this many ms of its headers;
    /// otherwise 408 and the connection is closed.
    #[arg(long = "http-body-timeout-ms", default_value_t = BODY_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// A keep-alive connection with no request in progress is closed after this
    /// many ms without traffic (also the limit for a client that stops reading
    /// its response).
    #[arg(long = "http-idle-timeout-ms", default_value_t = IDLE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,
    /// Most header fields in one request; more → 431 and the connection is closed.
    #[arg(long = "http-max-headers", default_value_t = MAX_HEADERS,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_headers: u32,
    /// Largest request line plus headers, in KiB; larger → 431 and the
    /// connection is closed.
    #[arg(long = "http-max-header-kb", default_value_t = MAX_HEADER_KB,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_header_kb: u32,
    /// Most request bytes the listener holds at once, in MiB: parsed heads and bodies
    /// being read or waiting for their plugin's answer. A request that would
    /// go over (by its declared length, or its body limit when chunked) gets
    /// 503 with `Retry-After: 1` before its body is read.
    #[arg(long = "http-max-buffered-mb", default_value_t = MAX_BUFFERED_MB,
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_buffered_mb: u32,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            max_connections: MAX_CONNECTIONS,
            header_timeout_ms: HEADER_TIMEOUT_MS,
            body_timeout_ms: BODY_TIMEOUT_MS,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            max_headers: MAX_HEADERS,
            max_header_kb: MAX_HEADER_KB,
            max_buffered_mb: MAX_BUFFERED_MB,
        }
    }
}

impl ListenerSettings {
    /// Refuses zero values (the flags cannot be zero; a library caller's can),
    /// naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        let zero = [
            ("--http-max-connections", u64::from(self.max_connections)),
            ("--http-header-timeout-ms", self.header_timeout_ms),
            ("--http-body-timeout-ms", self.body_timeout_ms),
            ("--http-idle-timeout-ms", self.idle_timeout_ms),
            ("--http-max-headers", u64::from(self.max_headers)),
            ("--http-max-header-kb", u64::from(self.max_header_kb)),
            ("--http-max-buffered-mb", u64::from(self.max_buffered_mb)),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        match zero {
            Some((flag, _)) => Err(format!("{flag} must be at least 1")),
            None => Ok(()),
        }
    }

    pub(super) fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub(super) fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub(super) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub(super) fn max_header_bytes(&self) -> usize {
        self.max_header_kb as usize * 1024
    }
}
