//! One timer thread for the whole host turns call budgets into epoch interrupts.
//!
//! The engine's epoch is advanced every [`EPOCH_TICK`] only while at least one
//! guest call is running; when no plugin is inside a call the thread is parked,
//! so an idle host wakes no thread at all. Entering a call costs one atomic
//! increment and one load (plus an unpark when the timer is parked).

use pulp_ext::CallClock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use wasmtime::Engine;

/// Resolution of call budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

struct Shared {
    active: AtomicUsize,
    /// The timer is parked or about to park. With `active`, both sides use
    /// SeqCst, so a call that starts while the timer goes to sleep either is
    /// seen by the timer or sees `parked` and unparks it.
    parked: AtomicBool,
    stop: AtomicBool,
    /// Epochs the timer has advanced: the tick count of [`CallClock`].
    ticks: AtomicU64,
}

/// Owns the timer thread; dropping it stops the thread.
///
/// Its shared state is allocated once per host and never freed (a few
/// bytes), so a [`CallGuard`] is a plain `&'static` reference: entering a
/// call borrows nothing from the plugin and counts no references.
pub struct EpochTimer {
    shared: &'static Shared,
    thread: Option<JoinHandle<()>>,
}

/// A handle plugins use to mark their calls.
#[derive(Clone)]
pub struct EpochClock {
    shared: &'static Shared,
    thread: thread::Thread,
}

/// Marks one guest call in progress; the timer runs while any exists.
pub struct CallGuard(&'static Shared);

impl EpochTimer {
    /// Starts the timer thread for `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<(EpochTimer, EpochClock)> {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
        }));
        let engine = engine.clone();
        let state = shared;
        let thread = thread::Builder::new()
            .name("pulp-epoch".into())
            .spawn(move || loop {
                if state.stop.load(Ordering::Acquire) {
                    return;
                }
                state.parked.store(true, Ordering::SeqCst);
                if state.active.load(Ordering::SeqCst) == 0 {
                    thread::park();
                    continue;
                }
                state.parked.store(false, Ordering::SeqCst);
                thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
                state.ticks.fetch_add(1, Ordering::Relaxed);
            })?;
        let clock = EpochClock {
            shared,
            thread: thread.thread().clone(),
        };
        Ok((
            EpochTimer {
                shared,
                thread: Some(thread),
            },
            clock,
        ))
    }
}

impl Drop for EpochTimer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl EpochClock {
    /// Marks a call as running until the guard drops.
    pub fn enter(&self) -> CallGuard {
        if self.shared.active.fetch_add(1, Ordering::SeqCst) == 0
            && self.shared.parked.load(Ordering::SeqCst)
        {
            self.thread.unpark();
        }
        CallGuard(self.shared)
    }

    /// The timer's tick count as a [`CallClock`], for deadlines of host calls.
    pub fn call_clock(&self) -> CallClock {
        CallClock::new(&self.shared.ticks, EPOCH_TICK)
    }

    /// Epoch ticks that cover `budget` (at least one full tick more than asked).
    pub fn ticks_for(budget: Duration) -> u64 {
        (budget.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
