//! The argument of `pulp_step`: a fixed little-endian header and a payload.
//!
//! ```text
//! call_number u64 | wall_time u64 (unix ns) | payload_len u32 | payload
//! ```
//!
//! An empty payload is a tick; otherwise the payload is a MessagePack
//! [`StepEvent`](crate::StepEvent).

use core::fmt;

/// Bytes before the payload.
pub const ENVELOPE_HEADER_LEN: usize = 8 + 8 + 4;

/// A decoded envelope borrowing its payload from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepEnvelope<'a> {
    /// 1 for the first step of an instance, then one more per step.
    pub call_number: u64,
    /// Host wall-clock time when the step was issued, in nanoseconds since the Unix epoch.
    pub wall_time_ns: u64,
    /// Empty for a tick, else a MessagePack event.
    pub payload: &'a [u8],
}

/// Why bytes are not an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Fewer bytes than the fixed header.
    TruncatedHeader { len: usize },
    /// The header announces more payload than the buffer holds.
    TruncatedPayload { declared: u32, available: usize },
    /// The buffer holds bytes past the declared payload.
    TrailingBytes { declared: u32, available: usize },
    /// The payload is larger than `u32::MAX` and cannot be described by the header.
    PayloadTooLarge { len: usize },
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::TruncatedHeader { len } => {
                write!(
                    f,
                    "envelope truncated: {len} bytes, header needs {ENVELOPE_HEADER_LEN}"
                )
            }
            EnvelopeError::TruncatedPayload {
                declared,
                available,
            } => write!(
                f,
                "envelope truncated: header declares {declared} payload bytes, {available} present"
            ),
            EnvelopeError::TrailingBytes {
                declared,
                available,
            } => write!(
                f,
                "envelope oversized: header declares {declared} payload bytes, {available} present"
            ),
            EnvelopeError::PayloadTooLarge { len } => {
                write!(
                    f,
                    "payload of {len} bytes does not fit the u32 length field"
                )
            }
        }
    }
}

impl<'a> StepEnvelope<'a> {
    /// Total encoded size.
    pub fn encoded_len(&self) -> usize {
        ENVELOPE_HEADER_LEN + self.payload.len()
    }

    /// Writes the 20-byte header for this envelope. The payload is written
    /// separately so the host can copy it straight into guest memory.
    #[inline]
    pub fn header(&self) -> Result<[u8; ENVELOPE_HEADER_LEN], EnvelopeError> {
        let len =
            u32::try_from(self.payload.len()).map_err(|_| EnvelopeError::PayloadTooLarge {
                len: self.payload.len(),
            })?;
        let mut h = [0u8; ENVELOPE_HEADER_LEN];
        h[0..8].copy_from_slice(&self.call_number.to_le_bytes());
        h[8..16].copy_from_slice(&self.wall_time_ns.to_le_bytes());
        h[16..20].copy_from_slice(&len.to_le_bytes());
        Ok(h)
    }

    /// Encodes header and payload into `out`, replacing its contents.
    pub fn encode_into(&self, out: &mut alloc::vec::Vec<u8>) -> Result<(), EnvelopeError> {
        let header = self.header()?;
        out.clear();
        out.extend_from_slice(&header);
        out.extend_from_slice(self.payload);
        Ok(())
    }

    /// Decodes an envelope; the buffer must hold exactly one.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let (head, payload) = bytes
            .split_first_chunk::<ENVELOPE_HEADER_LEN>()
            .ok_or(EnvelopeError::TruncatedHeader { len: bytes.len() })?;
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let declared = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
        let available = payload.len();
        match (declared as usize).cmp(&available) {
            core::cmp::Ordering::Greater => Err(EnvelopeError::TruncatedPayload {
                declared,
                available,
            }),
            core::cmp::Ordering::Less => Err(EnvelopeError::TrailingBytes {
                declared,
                available,
            }),
            core::cmp::Ordering::Equal => Ok(StepEnvelope {
                call_number: word(0),
                wall_time_ns: word(8),
                payload,
            }),
        }
    }

    /// True when this envelope is a tick (no event).
    pub fn is_tick(&self) -> bool {
        self.payload.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_little_endian() {
        let env = StepEnvelope {
            call_number: 7,
            wall_time_ns: 0x0102_0304_0506_0708,
            payload: b"abc",
        };
        let mut buf = alloc::vec::Vec::new();
        env.encode_into(&mut buf).unwrap();
        assert_eq!(&buf[0..8], &7u64.to_le_bytes());
        assert_eq!(&buf[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&buf[16..20], &3u32.to_le_bytes());
        assert_eq!(StepEnvelope::decode(&buf).unwrap(), env);
    }

    #[test]
    fn truncated_and_oversized_inputs_are_errors() {
        let env = StepEnvelope {
            call_number: 1,
            wall_time_ns: 2,
            payload: b"hello",
        };
        let mut buf = alloc::vec::Vec::new();
        env.encode_into(&mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(
                StepEnvelope::decode(&buf[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        buf.push(0);
        assert_eq!(
            StepEnvelope::decode(&buf),
            Err(EnvelopeError::TrailingBytes {
                declared: 5,
                available: 6
            })
        );
        let mut huge = [0u8; ENVELOPE_HEADER_LEN];
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            StepEnvelope::decode(&huge),
            Err(EnvelopeError::TruncatedPayload {
                declared: u32::MAX,
                available: 0
            })
        ));
    }

    #[test]
    fn empty_payload_is_a_tick() {
        let env = StepEnvelope {
            call_number: 1,
            wall_time_ns: 0,
            payload: &[],
        };
        let mut buf = alloc::vec::Vec::new();
        env.encode_into(&mut buf).unwrap();
        assert!(StepEnvelope::decode(&buf).unwrap().is_tick());
    }
}
