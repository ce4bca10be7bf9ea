//! The event in a step envelope's payload: a MessagePack map `{kind, payload}`.
//!
//! `payload` is the per-kind value embedded inline (a map, not a bin string), so
//! a guest decodes the whole event in one pass into `StepEvent<ItsType>`.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// An event of kind `kind` carrying `payload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent<P> {
    /// What happened, such as `http.request`.
    pub kind: String,
    /// The data of this kind of event.
    pub payload: P,
}

/// Just the kind of an event, for dispatching before the payload is decoded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventHeader {
    /// What happened.
    pub kind: String,
}

impl<P: Serialize> StepEvent<P> {
    /// Encodes as a MessagePack map keyed by field name.
    pub fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }
}

impl<P: DeserializeOwned> StepEvent<P> {
    /// Decodes an event whose payload has type `P`.
    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

impl EventHeader {
    /// Reads the `kind` of an encoded event, skipping its payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        #[derive(Deserialize)]
        struct Head {
            kind: String,
            #[allow(dead_code)]
            payload: serde::de::IgnoredAny,
        }
        let head: Head = rmp_serde::from_slice(bytes)?;
        Ok(EventHeader { kind: head.kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u64,
    }

    #[test]
    fn payload_is_an_inline_map() {
        let ev = StepEvent {
            kind: "ping".to_string(),
            payload: Ping { n: 3 },
        };
        let bytes = ev.encode().unwrap();
        // {"kind": "ping", "payload": {"n": 3}}: a 2-entry fixmap whose payload value is a fixmap.
        assert_eq!(bytes[0], 0x82);
        let at = bytes.windows(7).position(|w| w == b"payload").unwrap();
        assert_eq!(bytes[at + 7], 0x81);
        assert_eq!(StepEvent::<Ping>::decode(&bytes).unwrap(), ev);
        assert_eq!(EventHeader::decode(&bytes).unwrap().kind, "ping");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(EventHeader::decode(&[0xc1]).is_err());
        assert!(EventHeader::decode(&[]).is_err());
        assert!(StepEvent::<Ping>::decode(&[0x82, 0xa4]).is_err());
    }
}
