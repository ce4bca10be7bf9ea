//! The built-in capabilities, one module each, all written against `pulp-ext`.

mod entropy;
mod logging;

pub use entropy::EntropyCapability;
pub use logging::LoggingCapability;
