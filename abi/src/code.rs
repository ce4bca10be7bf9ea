//! Codes returned by every `pulp` host import.
//!
//! Pulp v0.1 returned bare numbers; here they are one enum so a number never
//! appears twice with two meanings.

use core::fmt;

/// What a host import reports back to the guest, as a `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    /// The call did what was asked.
    Ok = 0,
    /// The input was empty where data was required.
    EmptyInput = 1,
    /// A `(ptr, len)` the guest passed lies outside its linear memory.
    MemoryReadOutOfRange = 2,
    /// The input bytes did not decode as the expected MessagePack shape.
    DecodeFailed = 3,
    /// The input decoded but a value in it is not acceptable.
    InvalidArgument = 4,
    /// The host tried and the operation failed (I/O, SQL error, ...).
    OperationFailed = 5,
    /// The thing named (request id, spawn id, ...) does not exist.
    NotFound = 6,
    /// `pulp_alloc` returned 0 or a range outside linear memory.
    AllocFailed = 7,
    /// An out-address or result range lies outside linear memory.
    MemoryWriteFailed = 8,
    /// A size or count limit from the manifest was exceeded.
    LimitExceeded = 9,
    /// The plugin's manifest does not declare the capability this import belongs to.
    NotGranted = 99,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 11] = [
        Code::Ok,
        Code::EmptyInput,
        Code::MemoryReadOutOfRange,
        Code::DecodeFailed,
        Code::InvalidArgument,
        Code::OperationFailed,
        Code::NotFound,
        Code::AllocFailed,
        Code::MemoryWriteFailed,
        Code::LimitExceeded,
        Code::NotGranted,
    ];

    /// The number on the wire.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code for a number, if it is one.
    pub fn from_u32(n: u32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_u32() == n)
    }

    /// A short description, for logs and error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::EmptyInput => "empty input",
            Code::MemoryReadOutOfRange => "guest memory read out of range",
            Code::DecodeFailed => "decode failed",
            Code::InvalidArgument => "invalid argument",
            Code::OperationFailed => "operation failed",
            Code::NotFound => "not found",
            Code::AllocFailed => "alloc failed",
            Code::MemoryWriteFailed => "guest memory write failed",
            Code::LimitExceeded => "limit exceeded",
            Code::NotGranted => "capability not granted",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_u32(), self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_match_the_published_table() {
        let published = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99];
        for (code, n) in Code::ALL.into_iter().zip(published) {
            assert_eq!(code.as_u32(), n);
            assert_eq!(Code::from_u32(n), Some(code));
        }
        assert_eq!(Code::from_u32(10), None);
    }
}
