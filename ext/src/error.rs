//! Errors of capabilities: at load time ([`CapabilityError`]) and inside a host
//! call ([`HostError`]).

use pulp_abi::Code;

/// A capability refused a plugin at load time, or failed to set up an instance.
#[derive(Debug, thiserror::Error)]
#[error("capability `{capability}` for plugin `{plugin}`: {message}")]
pub struct CapabilityError {
    /// The capability's name.
    pub capability: String,
    /// The plugin's name.
    pub plugin: String,
    /// What was wrong, naming the manifest key where there is one.
    pub message: String,
}

/// How a host call ends when it does not succeed.
///
/// A [`HostError::Code`] goes back to the guest as the import's return value;
/// a [`HostError::Trap`] (a trap inside a nested guest call such as
/// `pulp_alloc`) unwinds the guest and fails the plugin.
#[derive(Debug)]
pub enum HostError {
    /// Return this code to the guest; `detail` is logged at debug level.
    Code { code: Code, detail: String },
    /// Abort the guest call.
    Trap(wasmtime::Error),
}

impl HostError {
    /// A code with a detail for the log.
    pub fn code(code: Code, detail: impl Into<String>) -> Self {
        HostError::Code {
            code,
            detail: detail.into(),
        }
    }

    /// [`Code::InvalidArgument`] with a reason.
    pub fn invalid(detail: impl Into<String>) -> Self {
        HostError::code(Code::InvalidArgument, detail)
    }

    /// [`Code::OperationFailed`] with a reason.
    pub fn failed(detail: impl Into<String>) -> Self {
        HostError::code(Code::OperationFailed, detail)
    }
}

impl From<Code> for HostError {
    fn from(code: Code) -> Self {
        HostError::Code {
            code,
            detail: String::new(),
        }
    }
}
