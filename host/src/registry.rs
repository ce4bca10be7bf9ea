//! The registry of capabilities a host offers: always-on and manifest-gated.

use pulp_ext::{Capability, ImportSpec};
use std::fmt;
use std::sync::Arc;

/// When a capability is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// For every plugin, declared or not (logging, entropy).
    Always,
    /// Only for plugins whose manifest declares it; others get its stubs.
    Manifest,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gate::Always => "always",
            Gate::Manifest => "gated",
        })
    }
}

/// A capability registered with its gate.
#[derive(Clone)]
pub struct Registered {
    /// The capability.
    pub capability: Arc<dyn Capability>,
    /// When it is bound.
    pub gate: Gate,
}

/// Two capabilities cannot share a name or an import.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A second capability with an existing name.
    #[error("capability `{0}` is registered twice")]
    DuplicateCapability(String),
    /// An import name already provided by another capability.
    #[error("import `pulp::{import}` is provided by both `{first}` and `{second}`")]
    DuplicateImport {
        import: String,
        first: String,
        second: String,
    },
}

/// Every capability the host can bind, in registration order.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Registered>,
}

impl Registry {
    /// An empty registry (not even logging): see [`crate::HostBuilder`] for the usual one.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a capability; its name and imports must be new to the registry.
    pub fn register(
        &mut self,
        capability: Arc<dyn Capability>,
        gate: Gate,
    ) -> Result<(), RegistryError> {
        let name = capability.name().to_string();
        if self.get(&name).is_some() {
            return Err(RegistryError::DuplicateCapability(name));
        }
        for spec in capability.imports() {
            if let Some((owner, _)) = self.import_owner(spec.name) {
                return Err(RegistryError::DuplicateImport {
                    import: spec.name.to_string(),
                    first: owner.capability.name().to_string(),
                    second: name,
                });
            }
        }
        self.entries.push(Registered { capability, gate });
        Ok(())
    }

    /// Every registered capability.
    pub fn entries(&self) -> &[Registered] {
        &self.entries
    }

    /// The capability called `name`.
    pub fn get(&self, name: &str) -> Option<&Registered> {
        self.entries.iter().find(|e| e.capability.name() == name)
    }

    /// The capability providing `pulp::<import>`, with the import's signature.
    pub fn import_owner(&self, import: &str) -> Option<(&Registered, ImportSpec)> {
        self.entries.iter().find_map(|e| {
            e.capability
                .imports()
                .iter()
                .find(|s| s.name == import)
                .map(|s| (e, *s))
        })
    }

    /// Names of every capability, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.capability.name()).collect()
    }
}
