//! The built-in capabilities, one module each, all written against `pulp-ext`.

pub mod docker;
mod entropy;
pub mod http;
mod logging;
pub mod sqlite;

pub use docker::DockerCapability;
pub use entropy::EntropyCapability;
pub use http::HttpCapability;
pub use logging::LoggingCapability;
pub use sqlite::{SqliteCapability, SqliteSettings};
