//! Restart policy: what happens after a plugin fails.
//!
//! `never` (the default) leaves a failed plugin failed. `on-failure`
//! re-instantiates it from its compiled module and calls `pulp_init` again,
//! after a backoff that doubles with each restart, and gives up after
//! `max_restarts` restarts within `window_secs`. Its mailbox and HTTP routes
//! survive the restart.

use serde::Deserialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
        let policy = RestartPolicy {
            on_failure,
            max_restarts: self.max_restarts.unwrap_or(d.max_restarts),
            window: self.window_secs.map_or(d.window, Duration::from_secs),
            backoff: self.backoff_ms.map_or(d.backoff, Duration::from_millis),
            max_backoff: self
                .max_backoff_ms
                .map_or(d.max_backoff, Duration::from_millis),
        };
        if policy.window.is_zero() {
            return Err(("restart.window_secs", "must be at least 1".into()));
        }
        if policy.max_backoff < policy.backoff {
            return Err((
                "restart.max_backoff_ms",
                "must not be below backoff_ms".into(),
            ));
        }
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
