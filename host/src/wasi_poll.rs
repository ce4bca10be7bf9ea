//! WASI `poll_oneoff`, bounded by the running call's deadline.
//!
//! wasmtime-wasi's own `poll_oneoff` sleeps inside the host call, where no
//! epoch check runs: a guest's `thread::sleep(1 hour)` would hold its actor
//! thread for an hour, past every budget and past SIGTERM. This one replaces
//! it (the linker shadows the WASI definition) and never sleeps past
//! [`PluginState::call_deadline`]: a sleep that would end later sleeps until
//! the deadline and then ends the call as a timeout, exactly like guest code
//! that runs too long.
//!
//! A plugin has no files and no sockets, only stdin (empty), stdout and
//! stderr, so fd subscriptions are answered at once: stdin at end of file
//! (hang-up), stdout and stderr writable; any other fd is `EBADF`.

use pulp_ext::{guest, HostError, PluginState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Linker, Trap};

/// The WASI module these functions belong to.
const WASI: &str = "wasi_snapshot_preview1";
/// Size of one `subscription` and one `event` in guest memory.
const SUBSCRIPTION: u32 = 48;
const EVENT: u32 = 32;
/// Most subscriptions one call may pass: more is `EINVAL`, not a huge copy.
const MAX_SUBSCRIPTIONS: u32 = 1024;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: u16 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOTSUP: i32 = 58;

const EVENT_CLOCK: u8 = 0;
const EVENT_FD_READ: u8 = 1;
const EVENT_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;
const FD_READWRITE_HANGUP: u16 = 1;

/// Set when the host asks the plugin to stop: a sleep in progress ends at
/// once (as if its clock fired), so the step finishes and the plugin gets
/// its `pulp_shutdown` without waiting out the sleep.
pub struct StopSignal(pub Arc<AtomicBool>);

/// How often a sleep looks at the [`StopSignal`].
const STOP_POLL: Duration = Duration::from_millis(10);

/// When the guest's WASI monotonic clock read zero: taken as the WASI context
/// is built, so an absolute monotonic timeout maps onto a host [`Instant`].
pub struct MonotonicBase(pub Instant);

/// Replaces `poll_oneoff` in a linker that already holds WASI preview 1.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(WASI, "poll_oneoff", poll_oneoff)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One decoded subscription.
struct Subscription {
    userdata: u64,
    kind: Kind,
}

enum Kind {
    /// Fires at this instant.
    Clock(Instant),
    Fd {
        read: bool,
        fd: u32,
    },
}

fn poll_oneoff(
    mut caller: Caller<'_, PluginState>,
    subs_ptr: u32,
    events_ptr: u32,
    count: u32,
    nevents_ptr: u32,
) -> wasmtime::Result<i32> {
    if count == 0 || count > MAX_SUBSCRIPTIONS {
        return Ok(ERRNO_INVAL);
    }
    let Ok(raw) = guest::read(&mut caller, subs_ptr, count * SUBSCRIPTION) else {
        return Ok(ERRNO_INVAL);
    };
    let base = caller
        .data()
        .slot::<MonotonicBase>()
        .map_or_else(Instant::now, |b| b.0);
    let mut subs = Vec::with_capacity(count as usize);
    for chunk in raw.chunks_exact(SUBSCRIPTION as usize) {
        match decode(chunk, base) {
            Ok(sub) => subs.push(sub),
            Err(errno) => return Ok(errno),
        }
    }
    let deadline = caller
        .data()
        .call_deadline()
        .unwrap_or_else(|| Instant::now() + caller.data().info().limits.call_budget);

    // Ready fds answer at once; otherwise wait for the first clock.
    let mut events: Vec<[u8; EVENT as usize]> = subs
        .iter()
        .filter_map(|s| match s.kind {
            Kind::Fd { read, fd } => Some(fd_event(s.userdata, read, fd)),
            Kind::Clock(_) => None,
        })
        .collect();
    if events.is_empty() {
        let first = subs
            .iter()
            .filter_map(|s| match s.kind {
                Kind::Clock(at) => Some(at),
                Kind::Fd { .. } => None,
            })
            .min()
            .unwrap_or(deadline);
        let stop = caller.data().slot::<StopSignal>().map(|s| s.0.clone());
        let stopped = sleep_until(first.min(deadline), stop.as_deref());
        if first > deadline && !stopped {
            // Slept to the deadline and not one moment past it: the call is over.
            return Err(Trap::Interrupt.into());
        }
        // On a stop, the earliest clock fires now: the guest sees its sleep end.
        let now = if stopped { first } else { Instant::now() };
        events.extend(subs.iter().filter_map(|s| match s.kind {
            Kind::Clock(at) if at <= now => Some(clock_event(s.userdata)),
            _ => None,
        }));
    }
    let written = events.len() as u32;
    let out = guest::fill(&mut caller, events_ptr, written * EVENT, |bytes| {
        for (slot, event) in bytes.chunks_exact_mut(EVENT as usize).zip(&events) {
            slot.copy_from_slice(event);
        }
        Ok(())
    })
    .and_then(|()| {
        guest::fill(&mut caller, nevents_ptr, 4, |bytes| {
            bytes.copy_from_slice(&written.to_le_bytes());
            Ok(())
        })
    });
    Ok(match out {
        Ok(()) => ERRNO_SUCCESS,
        Err(HostError::Trap(e)) => return Err(e),
        Err(HostError::Code { .. }) => ERRNO_INVAL,
    })
}

/// Sleeps until `until`, or until `stop` is set; true when stopped early.
fn sleep_until(until: Instant, stop: Option<&AtomicBool>) -> bool {
    loop {
        if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(match stop {
            Some(_) => left.min(STOP_POLL),
            None => left,
        });
    }
}

fn decode(chunk: &[u8], base: Instant) -> Result<Subscription, i32> {
    let u64_at = |at: usize| u64::from_le_bytes(chunk[at..at + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |at: usize| u32::from_le_bytes(chunk[at..at + 4].try_into().unwrap_or([0; 4]));
    let userdata = u64_at(0);
    let kind = match chunk[8] {
        EVENT_CLOCK => {
            let clock = u32_at(16);
            let timeout = Duration::from_nanos(u64_at(24));
            let absolute = u16::from_le_bytes([chunk[40], chunk[41]]) & SUBCLOCK_ABSTIME != 0;
            let now = Instant::now();
            let at = match (clock, absolute) {
                (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => now.checked_add(timeout),
                (CLOCK_MONOTONIC, true) => base.checked_add(timeout),
                (CLOCK_REALTIME, true) => {
                    let since_epoch = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    now.checked_add(timeout.saturating_sub(since_epoch))
                }
                _ => return Err(ERRNO_NOTSUP),
            };
            // Beyond what an Instant can hold: it never fires within any budget.
            Kind::Clock(at.unwrap_or(now + Duration::from_secs(86400 * 365)))
        }
        EVENT_FD_READ => Kind::Fd {
            read: true,
            fd: u32_at(16),
        },
        EVENT_FD_WRITE => Kind::Fd {
            read: false,
            fd: u32_at(16),
        },
        _ => return Err(ERRNO_INVAL),
    };
    Ok(Subscription { userdata, kind })
}

fn clock_event(userdata: u64) -> [u8; EVENT as usize] {
    let mut event = [0; EVENT as usize];
    event[0..8].copy_from_slice(&userdata.to_le_bytes());
    event[10] = EVENT_CLOCK;
    event
}

fn fd_event(userdata: u64, read: bool, fd: u32) -> [u8; EVENT as usize] {
    let mut event = [0; EVENT as usize];
    event[0..8].copy_from_slice(&userdata.to_le_bytes());
    event[10] = if read { EVENT_FD_READ } else { EVENT_FD_WRITE };
    match (read, fd) {
        (true, 0) => event[24..26].copy_from_slice(&FD_READWRITE_HANGUP.to_le_bytes()),
        (false, 1 | 2) => {}
        _ => event[8..10].copy_from_slice(&ERRNO_BADF.to_le_bytes()),
    }
    event
}
