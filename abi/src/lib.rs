//! The Pulp plugin ABI: everything host and guest must agree on, and nothing else.
//!
//! This crate compiles for the host and for `wasm32` guests alike; it has no
//! wasmtime in it. It holds:
//!
//! - [`envelope`]: the binary layout of the argument to `pulp_step`;
//! - [`event`]: the MessagePack event carried in an envelope's payload;
//! - [`names`]: the names of the exports a plugin provides and of the `pulp` imports;
//! - [`code`]: the numeric codes host imports return;
//! - one module per capability with its request/response structs ([`http`], [`sqlite`],
//!   [`docker`]).
//!
//! The ABI is Pulp v0.1 compatible: a plugin built for the Go host runs unchanged.

extern crate alloc;

pub mod code;
pub mod docker;
pub mod envelope;
pub mod event;
pub mod http;
pub mod names;
pub mod sqlite;

pub use code::Code;
pub use envelope::{EnvelopeError, StepEnvelope, ENVELOPE_HEADER_LEN};
pub use event::{EventHeader, StepEvent};
