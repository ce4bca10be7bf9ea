//! One call of `pulp_step`, decoded.

use crate::Error;
use pulp_abi::{EventHeader, StepEvent};
use serde::de::DeserializeOwned;

/// A decoded step envelope. `payload` borrows the host's buffer for this call.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// 1 for the first step of this instance, then one more per step.
    pub call_number: u64,
    /// Host wall-clock time, nanoseconds since the Unix epoch.
    pub wall_time_ns: u64,
    /// Empty for a tick; otherwise a MessagePack event.
    pub payload: &'a [u8],
}

impl<'a> Step<'a> {
    /// True when this step is a tick rather than an event.
    pub fn is_tick(&self) -> bool {
        self.payload.is_empty()
    }

    /// The event's kind (`http.request`, ...), or `None` for a tick.
    pub fn kind(&self) -> Result<Option<String>, Error> {
        if self.is_tick() {
            return Ok(None);
        }
        Ok(Some(EventHeader::decode(self.payload)?.kind))
    }

    /// Decodes the event's payload as `T`.
    pub fn event<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if self.is_tick() {
            return Err(Error::new("a tick carries no event"));
        }
        Ok(StepEvent::<T>::decode(self.payload)?.payload)
    }
}
