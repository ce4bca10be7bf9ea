//! The channel that carries [`RunEvent`]s from plugins to whoever runs them
//! (the `pulp run` printer, an embedder), bounded in events and in bytes.
//!
//! A plugin may return an output of up to its `max_buffer_kb` on every tick;
//! a consumer slower than that must not make the host buffer without limit,
//! and must not stall the plugin either. So the sender never waits: an event
//! that would take the queue past its count or byte bound is dropped, and the
//! actor counts it (`pulp_run_events_dropped_total`, the summary's
//! `events_dropped`). Bytes are charged while an output sits in the queue and
//! given back when the consumer takes it.

use crate::actor::RunEvent;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The plugin side: given to [`Host::spawn`](crate::Host::spawn). Cheap to clone.
#[derive(Clone)]
pub struct RunEventSender {
    tx: mpsc::Sender<RunEvent>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The consumer side.
pub struct RunEventReceiver {
    rx: mpsc::Receiver<RunEvent>,
    queued: Arc<AtomicUsize>,
}

/// A channel holding at most `capacity` events and `max_bytes` of output bytes.
pub fn run_events(capacity: usize, max_bytes: usize) -> (RunEventSender, RunEventReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        RunEventSender {
            tx,
            queued: queued.clone(),
            max_bytes,
        },
        RunEventReceiver { rx, queued },
    )
}

/// The event was not queued: the channel is at a bound, or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// At its event or byte bound: dropped.
    Full,
    /// Nobody receives any more.
    Closed,
}

impl RunEventSender {
    /// Queues `event` unless that would pass a bound; never waits.
    pub fn try_send(&self, event: RunEvent) -> Result<(), NotSent> {
        if self.tx.is_closed() {
            return Err(NotSent::Closed);
        }
        let bytes = output_len(&event);
        if bytes > 0 {
            let reserved =
                self.queued
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                        queued
                            .checked_add(bytes)
                            .filter(|total| *total <= self.max_bytes)
                    });
            if reserved.is_err() {
                return Err(NotSent::Full);
            }
        }
        self.tx.try_send(event).map_err(|e| {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => NotSent::Full,
                mpsc::error::TrySendError::Closed(_) => NotSent::Closed,
            }
        })
    }
}

impl RunEventReceiver {
    /// The next event; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<RunEvent> {
        let event = self.rx.recv().await?;
        Some(self.taken(event))
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<RunEvent> {
        let event = self.rx.try_recv().ok()?;
        Some(self.taken(event))
    }

    /// Output bytes queued right now.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn taken(&self, event: RunEvent) -> RunEvent {
        self.queued.fetch_sub(output_len(&event), Ordering::AcqRel);
        event
    }
}

fn output_len(event: &RunEvent) -> usize {
    match event {
        RunEvent::Output { outcome, .. } => outcome.output.as_ref().map_or(0, Vec::len),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StepOutcome;

    fn output(len: usize) -> RunEvent {
        RunEvent::Output {
            plugin: "p".into(),
            outcome: StepOutcome {
                call_number: 1,
                handle: 1,
                output: Some(vec![0; len]),
            },
        }
    }

    #[test]
    fn bounded_in_events_and_in_bytes() {
        let (tx, mut rx) = run_events(3, 1000);
        assert_eq!(tx.try_send(output(600)), Ok(()));
        assert_eq!(
            tx.try_send(output(600)),
            Err(NotSent::Full),
            "over the bytes"
        );
        assert_eq!(tx.try_send(output(400)), Ok(()));
        assert_eq!(rx.queued_bytes(), 1000);
        let started = RunEvent::Started { plugin: "p".into() };
        assert_eq!(tx.try_send(started.clone()), Ok(()));
        assert_eq!(tx.try_send(started), Err(NotSent::Full), "over the count");
        assert!(rx.try_recv().is_some());
        assert_eq!(rx.queued_bytes(), 400, "taken bytes are given back");
        assert_eq!(tx.try_send(output(600)), Ok(()));
        drop(rx);
        assert_eq!(tx.try_send(output(1)), Err(NotSent::Closed));
    }
}
