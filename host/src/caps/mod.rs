//! The built-in capabilities, one module each, all written against `pulp-ext`.

#[cfg(feature = "docker")]
pub mod docker;
mod entropy;
pub mod http;
mod logging;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "docker")]
pub use docker::DockerCapability;
pub use entropy::EntropyCapability;
pub use http::HttpCapability;
pub use logging::LoggingCapability;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteCapability, SqliteSettings};
