//! The coarse clock calls are timed with: a tick count the host's epoch
//! timer advances while any guest call runs.
//!
//! The one deadline of a call must be known to every host call inside it,
//! but reading the system clock on every step would cost more than a small
//! step itself. So a call records only the tick it started at (one relaxed
//! load); [`PluginState::call_deadline`](crate::PluginState::call_deadline)
//! turns that into an [`Instant`] when a host call actually needs one. The
//! resolution is one tick, the same as the epoch interruption that stops
//! guest code at the same deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A shared tick counter and the length of one tick.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    ticks: &'static AtomicU64,
    tick: Duration,
}

impl CallClock {
    /// A clock reading `ticks`, which its owner advances every `tick` while calls run.
    pub fn new(ticks: &'static AtomicU64, tick: Duration) -> Self {
        CallClock { ticks, tick }
    }

    /// The current tick.
    #[inline]
    pub fn now(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// The instant a call that started at tick `started` with `budget` must end.
    pub fn deadline(&self, started: u64, budget: Duration) -> Instant {
        let ticks = u32::try_from(self.now().saturating_sub(started)).unwrap_or(u32::MAX);
        let elapsed = self.tick.saturating_mul(ticks);
        Instant::now() + budget.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_shrinks_as_ticks_pass() {
        let ticks: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(10)));
        let clock = CallClock::new(ticks, Duration::from_millis(5));
        let budget = Duration::from_millis(100);
        let fresh = clock.deadline(10, budget);
        assert!(fresh > Instant::now() + Duration::from_millis(90));
        ticks.store(30, Ordering::Relaxed);
        assert!(clock.deadline(10, budget) <= Instant::now());
        ticks.store(16, Ordering::Relaxed);
        let later = clock.deadline(10, budget);
        assert!(later <= Instant::now() + Duration::from_millis(71));
        assert!(later > Instant::now() + Duration::from_millis(60));
    }
}
