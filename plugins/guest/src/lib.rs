//! The Pulp guest SDK: write a plugin as a Rust type.
//!
//! Implement [`Plugin`] and call [`export_plugin!`] once; the macro generates
//! every export of the ABI (`pulp_alloc`, `pulp_free`, `pulp_init`,
//! `pulp_step`, `pulp_shutdown`, `pulp_output`). Config arrives decoded into
//! your `Config` type, each step as a [`Step`] with its decoded envelope,
//! and an output is just the bytes you return.
//!
//! ```ignore
//! use pulp_guest::{export_plugin, log, Plugin, Step, StepResult};
//!
//! #[derive(serde::Deserialize, Default)]
//! struct Config { greeting: String }
//!
//! struct Hello { greeting: String }
//!
//! impl Plugin for Hello {
//!     type Config = Config;
//!     fn init(config: Config) -> Result<Self, pulp_guest::Error> {
//!         Ok(Hello { greeting: config.greeting })
//!     }
//!     fn step(&mut self, step: Step<'_>) -> StepResult {
//!         log::info(&self.greeting);
//!         Ok(Some(format!("step {}", step.call_number).into_bytes()))
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```

pub mod docker;
pub mod entropy;
pub mod ext;
pub mod http;
pub mod log;
mod memory;
#[doc(hidden)]
pub mod rt;
pub mod sqlite;
mod step;
mod sys;

pub use pulp_abi::{self as abi, Code};
pub use step::Step;

/// An error a plugin reports from `init`, `step` or `shutdown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! error_from_display {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error(e.to_string())
            }
        }
    )*};
}

error_from_display!(
    &str,
    String,
    HostCallError,
    rmp_serde::decode::Error,
    rmp_serde::encode::Error,
    pulp_abi::EnvelopeError,
    core::str::Utf8Error,
    std::string::FromUtf8Error
);

/// What a step returns: optional output bytes, or an error (reported to the
/// host as a negative step result and logged).
pub type StepResult = Result<Option<Vec<u8>>, Error>;

/// A plugin. One value lives for the life of the instance.
pub trait Plugin: Sized + 'static {
    /// The manifest's `[config]`, decoded from MessagePack. An absent or empty
    /// `[config]` gives `Config::default()`.
    type Config: serde::de::DeserializeOwned + Default;

    /// Builds the plugin from its config (`pulp_init`). An error aborts the load.
    fn init(config: Self::Config) -> Result<Self, Error>;

    /// Handles one tick or event (`pulp_step`).
    fn step(&mut self, step: Step<'_>) -> StepResult;

    /// Cleans up before the instance goes away (`pulp_shutdown`).
    fn shutdown(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A host import returned something other than [`Code::Ok`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCallError(pub u32);

impl HostCallError {
    /// The code as an enum, when it is a known one.
    pub fn code(&self) -> Option<Code> {
        Code::from_u32(self.0)
    }
}

impl core::fmt::Display for HostCallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.code() {
            Some(code) => write!(f, "host call failed: {code}"),
            None => write!(f, "host call failed: code {}", self.0),
        }
    }
}

/// Generates the ABI exports for a [`Plugin`] type.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[no_mangle]
        pub extern "C" fn pulp_alloc(size: u32) -> u32 {
            $crate::rt::alloc(size)
        }

        #[no_mangle]
        pub unsafe extern "C" fn pulp_free(ptr: u32, size: u32) {
            // SAFETY: the host only frees what pulp_alloc returned, with its size.
            unsafe { $crate::rt::free(ptr, size) }
        }

        #[no_mangle]
        pub extern "C" fn pulp_init(ptr: u32, len: u32) -> i32 {
            $crate::rt::init::<$plugin>(ptr, len)
        }

        #[no_mangle]
        pub extern "C" fn pulp_step(ptr: u32, len: u32) -> i32 {
            $crate::rt::step::<$plugin>(ptr, len)
        }

        #[no_mangle]
        pub extern "C" fn pulp_shutdown() -> i32 {
            $crate::rt::shutdown::<$plugin>()
        }

        #[no_mangle]
        pub extern "C" fn pulp_output(handle: i32) -> i64 {
            $crate::rt::output(handle)
        }
    };
}
