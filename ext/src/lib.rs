//! The Pulp extension API: how a host capability is written.
//!
//! A **capability** is a named bundle of host functions in the `pulp` import
//! module. A plugin whose manifest declares the capability gets the real
//! functions; a plugin that does not gets stubs that return
//! [`Code::NotGranted`] (99), so an undeclared import is visible in `pulp check`
//! and harmless at run time. The host's built-in capabilities (logging,
//! entropy, HTTP, SQLite) are written with exactly this API.
//!
//! A capability goes through three phases, each a method of [`Capability`]:
//!
//! 1. [`Capability::link`]: bind its functions into a plugin's linker;
//! 2. [`Capability::prepare`]: validate the plugin's manifest settings for it at
//!    load time (so `pulp check` reports a bad setting before anything runs);
//! 3. [`Capability::instantiate`] / [`Capability::release`]: build and drop
//!    per-instance state held in the [`PluginState`] of the plugin's store.
//!
//! Host functions never touch raw guest pointers themselves: [`guest`] reads
//! and writes guest memory with bounds checks, and [`host_fn`] turns a closure
//! from a decoded MessagePack request to a response into a complete import.
//!
//! ```
//! use pulp_ext::{host_fn, Capability, HostError, ImportSpec, PluginState, ValKind};
//! use serde::{Deserialize, Serialize};
//! use wasmtime::Linker;
//!
//! #[derive(Deserialize)]
//! struct AddRequest { a: i64, b: i64 }
//! #[derive(Serialize)]
//! struct AddResponse { sum: i64 }
//!
//! /// `math.add`: adds two numbers for the guest.
//! struct Math;
//!
//! impl Capability for Math {
//!     fn name(&self) -> &str { "math.add" }
//!     fn summary(&self) -> &str { "adds two integers" }
//!     fn imports(&self) -> &[ImportSpec] {
//!         const IMPORTS: &[ImportSpec] = &[ImportSpec::msgpack_in_out("math_add")];
//!         IMPORTS
//!     }
//!     fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
//!         host_fn::msgpack_in_out(linker, "math_add", |_caller, req: AddRequest| {
//!             let sum = req.a.checked_add(req.b).ok_or(HostError::invalid("overflow"))?;
//!             Ok(AddResponse { sum })
//!         })
//!     }
//! }
//!
//! let engine = wasmtime::Engine::default();
//! let mut linker = Linker::new(&engine);
//! Math.link(&mut linker).unwrap();
//! assert_eq!(Math.imports()[0].signature(), "(i32, i32, i32, i32) -> i32");
//! ```

mod call_clock;
mod capability;
mod error;
pub mod guest;
pub mod host_fn;
mod state;
mod usage;

pub use call_clock::CallClock;
pub use capability::{Capability, ImportSpec, ValKind};
pub use error::{CapabilityError, HostError};
pub use pulp_abi::Code;
pub use state::{EventRejected, EventSink, GuestExports, GuestLimits, PluginInfo, PluginState};
pub use usage::PluginUsage;
