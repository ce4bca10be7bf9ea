//! Step envelopes and the events inside them: any bytes decode to a value or
//! an error, never a panic, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulp_abi::http::HttpRequest;
use pulp_abi::{EventHeader, StepEnvelope, StepEvent};

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = StepEnvelope::decode(data) {
        let mut again = Vec::new();
        envelope
            .encode_into(&mut again)
            .expect("a decoded envelope encodes");
        assert_eq!(again, data);
        let _ = EventHeader::decode(envelope.payload);
        let _ = StepEvent::<HttpRequest>::decode(envelope.payload);
    }
    let _ = EventHeader::decode(data);
});
