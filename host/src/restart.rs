//! Restart policy: what happens after a plugin fails.
//!
//! `never` (the default) leaves a failed plugin failed. `on-failure`
//! re-instantiates it from its compiled module and calls `pulp_init` again,
//! after a backoff that doubles with each restart, and gives up after
//! `max_restarts` restarts within `window_secs`. Its mailbox and HTTP routes
//! survive the restart.
//!
//! The policy is bounded at load so a manifest cannot turn a failing plugin
//! into a hot loop: `backoff_ms` is at least [`MIN_BACKOFF_MS`], and
//! `max_restarts` at most [`MAX_RESTARTS_PER_SEC`] per second of `window_secs`.

use serde::Deserialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The shortest `backoff_ms`: a restart never follows a failure at once.
pub const MIN_BACKOFF_MS: u64 = 1;
/// The longest `backoff_ms` (one minute).
pub const MAX_BACKOFF_MS: u64 = 60_000;
/// The longest `max_backoff_ms` (one hour).
pub const MAX_MAX_BACKOFF_MS: u64 = 3_600_000;
/// The longest `window_secs` (one day).
pub const MAX_WINDOW_SECS: u64 = 86_400;
/// `max_restarts` may be at most this many times `window_secs`: restarts
/// average at most this many a second over the window, whatever the backoff.
pub const MAX_RESTARTS_PER_SEC: u64 = 20;

/// `[restart]` with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restart after a failure at all.
    pub on_failure: bool,
    /// Restarts allowed within `window` before giving up.
    pub max_restarts: u32,
    /// The sliding window restarts are counted in.
    pub window: Duration,
    /// Delay before the first restart; doubled for each further one in the window.
    pub backoff: Duration,
    /// Upper bound of the delay.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            on_failure: false,
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// `[restart]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    policy: String,
    max_restarts: Option<u32>,
    window_secs: Option<u64>,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

impl RawRestart {
    /// Validates; the error names the key.
    pub(crate) fn resolve(self) -> Result<RestartPolicy, (&'static str, String)> {
        let d = RestartPolicy::default();
        let on_failure = match self.policy.as_str() {
            "never" => false,
            "on-failure" => true,
            other => {
                return Err((
                    "restart.policy",
                    format!("{other:?} is not \"never\" or \"on-failure\""),
                ))
            }
        };
        let window_secs = self.window_secs.unwrap_or(d.window.as_secs());
        if !(1..=MAX_WINDOW_SECS).contains(&window_secs) {
            return Err((
                "restart.window_secs",
                format!("{window_secs} is not within 1..={MAX_WINDOW_SECS}"),
            ));
        }
        let backoff_ms = self.backoff_ms.unwrap_or(d.backoff.as_millis() as u64);
        if !(MIN_BACKOFF_MS..=MAX_BACKOFF_MS).contains(&backoff_ms) {
            return Err((
                "restart.backoff_ms",
                format!("{backoff_ms} is not within {MIN_BACKOFF_MS}..={MAX_BACKOFF_MS}"),
            ));
        }
        let max_backoff_ms = self
            .max_backoff_ms
            .unwrap_or(d.max_backoff.as_millis() as u64);
        if max_backoff_ms > MAX_MAX_BACKOFF_MS {
            return Err((
                "restart.max_backoff_ms",
                format!("{max_backoff_ms} is over the maximum {MAX_MAX_BACKOFF_MS}"),
            ));
        }
        if max_backoff_ms < backoff_ms {
            return Err((
                "restart.max_backoff_ms",
                "must not be below backoff_ms".into(),
            ));
        }
        let max_restarts = self.max_restarts.unwrap_or(d.max_restarts);
        let most = MAX_RESTARTS_PER_SEC * window_secs;
        if u64::from(max_restarts) > most {
            return Err((
                "restart.max_restarts",
                format!(
                    "{max_restarts} is over the maximum {most} ({MAX_RESTARTS_PER_SEC} a second of window_secs = {window_secs})"
                ),
            ));
        }
        let policy = RestartPolicy {
            on_failure,
            max_restarts,
            window: Duration::from_secs(window_secs),
            backoff: Duration::from_millis(backoff_ms),
            max_backoff: Duration::from_millis(max_backoff_ms),
        };
        Ok(policy)
    }
}

/// Counts a plugin's restarts and decides the next one.
#[derive(Debug)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker with no restarts yet.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// After a failure at `now`: the delay before restarting, or `None` to give up.
    pub fn after_failure(&mut self, now: Instant) -> Option<Duration> {
        if !self.policy.on_failure {
            return None;
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return None;
        }
        let doublings = (self.recent.len() as u32).min(20);
        let delay = self
            .policy
            .backoff
            .saturating_mul(1 << doublings)
            .min(self.policy.max_backoff);
        self.recent.push_back(now);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_failure(max_restarts: u32) -> RestartPolicy {
        RestartPolicy {
            on_failure: true,
            max_restarts,
            ..RestartPolicy::default()
        }
    }

    fn resolve(toml: &str) -> Result<RestartPolicy, (&'static str, String)> {
        toml::from_str::<RawRestart>(&format!("policy = \"on-failure\"\n{toml}"))
            .unwrap()
            .resolve()
    }

    #[test]
    fn hot_loops_are_refused_naming_the_key() {
        for (toml, key, message) in [
            (
                "backoff_ms = 0",
                "restart.backoff_ms",
                "0 is not within 1..=60000",
            ),
            (
                "backoff_ms = 60001",
                "restart.backoff_ms",
                "60001 is not within",
            ),
            (
                "max_restarts = 4294967295",
                "restart.max_restarts",
                "over the maximum 1200 (20 a second of window_secs = 60)",
            ),
            (
                "max_restarts = 21\nwindow_secs = 1",
                "restart.max_restarts",
                "over the maximum 20",
            ),
            (
                "window_secs = 0",
                "restart.window_secs",
                "0 is not within 1..=86400",
            ),
            (
                "window_secs = 86401",
                "restart.window_secs",
                "86401 is not within",
            ),
            (
                "max_backoff_ms = 3600001",
                "restart.max_backoff_ms",
                "over the maximum 3600000",
            ),
            (
                "backoff_ms = 50\nmax_backoff_ms = 10",
                "restart.max_backoff_ms",
                "below backoff_ms",
            ),
        ] {
            let (got, why) = resolve(toml).unwrap_err();
            assert_eq!(got, key, "{toml}");
            assert!(why.contains(message), "{toml}: {why}");
        }
        let edge =
            resolve("backoff_ms = 1\nmax_backoff_ms = 1\nmax_restarts = 20\nwindow_secs = 1")
                .unwrap();
        assert_eq!(
            (edge.max_restarts, edge.backoff),
            (20, Duration::from_millis(1))
        );
    }

    #[test]
    fn never_gives_up_at_once() {
        assert_eq!(
            RestartTracker::new(RestartPolicy::default()).after_failure(Instant::now()),
            None
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let policy = RestartPolicy {
            max_backoff: Duration::from_millis(300),
            ..on_failure(4)
        };
        let mut t = RestartTracker::new(policy);
        let now = Instant::now();
        let delays: Vec<_> = (0..5).map(|_| t.after_failure(now)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(delays, [ms(100), ms(200), ms(300), ms(300), None]);
    }

    #[test]
    fn restarts_outside_the_window_no_longer_count() {
        let mut t = RestartTracker::new(RestartPolicy {
            window: Duration::from_secs(10),
            ..on_failure(1)
        });
        let start = Instant::now();
        assert!(t.after_failure(start).is_some());
        assert!(t.after_failure(start + Duration::from_secs(5)).is_none());
        assert_eq!(
            t.after_failure(start + Duration::from_secs(11)),
            Some(Duration::from_millis(100))
        );
    }
}
