//! The [`Capability`] trait and the description of its imports.

use crate::{CapabilityError, PluginInfo, PluginState};
use pulp_abi::{names::IMPORT_MODULE, Code};
use wasmtime::{FuncType, Linker, Val, ValType};

/// A wasm value type used in `pulp` import signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValKind {
    /// 32-bit integer: pointers, lengths, codes.
    I32,
    /// 64-bit integer.
    I64,
}

impl ValKind {
    fn val_type(self) -> ValType {
        match self {
            ValKind::I32 => ValType::I32,
            ValKind::I64 => ValType::I64,
        }
    }

    fn matches(self, ty: &ValType) -> bool {
        matches!(
            (self, ty),
            (ValKind::I32, ValType::I32) | (ValKind::I64, ValType::I64)
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            ValKind::I32 => "i32",
            ValKind::I64 => "i64",
        }
    }
}

/// One function of module `pulp` a capability provides: its name and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSpec {
    /// The import's field name in module `pulp`.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValKind],
    /// Result types (every Pulp import returns one `i32` code).
    pub results: &'static [ValKind],
}

impl ImportSpec {
    /// `(ptr, len) -> code`: a MessagePack request, no data back.
    pub const fn msgpack_in(name: &'static str) -> Self {
        ImportSpec {
            name,
            params: &[ValKind::I32, ValKind::I32],
            results: &[ValKind::I32],
        }
    }

    /// `(ptr, len, out_ptr_addr, out_len_addr) -> code`: a MessagePack request and response.
    pub const fn msgpack_in_out(name: &'static str) -> Self {
        ImportSpec {
            name,
            params: &[ValKind::I32, ValKind::I32, ValKind::I32, ValKind::I32],
            results: &[ValKind::I32],
        }
    }

    /// Any signature.
    pub const fn new(
        name: &'static str,
        params: &'static [ValKind],
        results: &'static [ValKind],
    ) -> Self {
        ImportSpec {
            name,
            params,
            results,
        }
    }

    /// The wasmtime function type of this import.
    pub fn func_type(&self, engine: &wasmtime::Engine) -> FuncType {
        FuncType::new(
            engine,
            self.params.iter().map(|k| k.val_type()),
            self.results.iter().map(|k| k.val_type()),
        )
    }

    /// True when a module's import type is exactly this signature.
    pub fn matches(&self, ty: &FuncType) -> bool {
        let same = |want: &[ValKind], got: &mut dyn ExactSizeIterator<Item = ValType>| {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| w.matches(&g))
        };
        same(self.params, &mut ty.params()) && same(self.results, &mut ty.results())
    }

    /// The signature written as `(i32, i32) -> i32`, for messages and docs.
    pub fn signature(&self) -> String {
        let list = |ks: &[ValKind]| ks.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
        let results = match self.results {
            [] => "()".to_string(),
            [one] => one.as_str().to_string(),
            many => format!("({})", list(many)),
        };
        format!("({}) -> {}", list(self.params), results)
    }
}

/// Ungranted imports an instance has called (and been warned about).
#[derive(Default)]
struct StubsCalled(Vec<&'static str>);

/// True the first time this instance calls the stub of `import`.
fn first_call(state: &mut PluginState, import: &'static str) -> bool {
    if state.slot::<StubsCalled>().is_none() {
        state.insert_slot(StubsCalled::default());
    }
    match state.slot_mut::<StubsCalled>() {
        Some(called) if !called.0.contains(&import) => {
            called.0.push(import);
            true
        }
        _ => false,
    }
}

/// A host capability: a named set of `pulp` imports plus the state behind them.
///
/// Implementations must be cheap to share: one value serves every plugin of a
/// host, and per-plugin state lives in the plugin's [`PluginState`].
pub trait Capability: Send + Sync + 'static {
    /// The name manifests use in `capabilities = [...]`, such as `storage.sqlite`.
    fn name(&self) -> &str;

    /// One line for `pulp caps`.
    fn summary(&self) -> &str;

    /// Every function this capability adds to module `pulp`.
    fn imports(&self) -> &[ImportSpec];

    /// Binds the real functions into `linker` (for a plugin that declares this capability).
    fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()>;

    /// Binds stand-ins for a plugin that imports these functions without declaring the
    /// capability. The default binds every import to a function that returns 99,
    /// with a warning the first time each instance calls it (one line, not one
    /// per call: a loop over an ungranted import must not flood the log).
    fn link_stub(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        for spec in self.imports() {
            let ty = spec.func_type(linker.engine());
            let name = spec.name;
            let capability = self.name().to_string();
            linker.func_new(IMPORT_MODULE, name, ty, move |mut caller, _params, results| {
                if first_call(caller.data_mut(), name) {
                    tracing::warn!(
                        plugin = %caller.data().info().name,
                        import = name,
                        capability = %capability,
                        "import called without the capability declared in the manifest (returns 99; warned once per instance)"
                    );
                }
                if let Some(slot) = results.first_mut() {
                    *slot = Val::I32(Code::NotGranted.as_u32() as i32);
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Validates a plugin that declares this capability, at load time, and
    /// returns lines for `pulp check` (settings in effect, warnings).
    ///
    /// Reject bad settings here, naming the manifest key: nothing has run yet.
    fn prepare(&self, plugin: &PluginInfo) -> Result<Vec<String>, CapabilityError> {
        let _ = plugin;
        Ok(Vec::new())
    }

    /// Sets up per-instance state in `state` before `pulp_init` runs.
    fn instantiate(&self, state: &mut PluginState) -> Result<(), CapabilityError> {
        let _ = state;
        Ok(())
    }

    /// Releases per-instance state: the instance stopped or failed.
    fn release(&self, state: &mut PluginState) {
        let _ = state;
    }
}
