//! One running instance of a plugin: its store, its exports and the calls the
//! host makes into it.
//!
//! Every call runs under the plugin's wall-clock budget (epoch interruption)
//! and memory limit; any fault becomes a [`PluginFault`] naming the export,
//! the call number and what went wrong. Nothing here panics on guest behaviour.

use crate::epoch::EpochClock;
use crate::fault::classify;
pub use crate::fault::{FaultKind, PluginFault};
use crate::limiter::PluginLimiter;
use crate::prepared::PreparedPlugin;
use crate::wasi_log::GuestLog;
use pulp_abi::{names, StepEnvelope};
use pulp_ext::{guest::checked_range, EventSink, GuestExports, PluginState, PluginUsage};

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::{Instance, Memory, Store, TypedFunc, Val};
use wasmtime_wasi::WasiCtxBuilder;

/// The result of one successful `pulp_step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// The envelope's call number.
    pub call_number: u64,
    /// What `pulp_step` returned: 0 no output, > 0 output handle, < 0 step error.
    pub handle: i32,
    /// The output bytes, when the guest exports `pulp_output` and returned a handle.
    pub output: Option<Vec<u8>>,
}

struct Exports {
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: Option<TypedFunc<(u32, u32), ()>>,
    init: TypedFunc<(u32, u32), i32>,
    step: TypedFunc<(u32, u32), i32>,
    shutdown: TypedFunc<(), i32>,
    output: Option<TypedFunc<i32, i64>>,
    initialize: Option<TypedFunc<(), ()>>,
    probes: Vec<(String, wasmtime::Func)>,
}

/// A live plugin instance. Owned by one thread at a time.
pub struct Plugin {
    name: Arc<str>,
    store: Store<PluginState>,
    exports: Exports,
    prepared: Arc<PreparedPlugin>,
    clock: EpochClock,
    budget_ticks: u64,
    call_number: u64,
    released: bool,
    failed: Option<PluginFault>,
}

impl Plugin {
    /// Instantiates `prepared`, sets up its capabilities and calls `_initialize`
    /// when present. `pulp_init` is not called yet: see [`Plugin::init`].
    pub fn instantiate(
        prepared: Arc<PreparedPlugin>,
        clock: EpochClock,
        events: Arc<dyn EventSink>,
    ) -> Result<Plugin, PluginFault> {
        let info = prepared.info.clone();
        let name: Arc<str> = Arc::from(info.name.as_str());
        let setup = |kind: FaultKind| PluginFault {
            plugin: info.name.clone(),
            export: "instantiate",
            call_number: 0,
            kind,
        };
        let wasi_started = crate::wasi_poll::MonotonicBase(std::time::Instant::now());
        let log = prepared.log.clone();
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestLog::new(log.clone(), "stdout"))
            .stderr(GuestLog::new(log.clone(), "stderr"))
            .build_p1();
        let limiter = Box::new(PluginLimiter::new(
            prepared.manifest.limits.memory_bytes,
            prepared.manifest.limits.table_elements,
            info.usage.clone(),
        ));
        let mut state = PluginState::new(info.clone(), events, limiter, wasi);
        state.insert_slot(wasi_started);
        state.set_call_clock(clock.call_clock());
        state.insert_slot(log);
        let mut store = Store::new(prepared.pre.module().engine(), state);
        store.limiter(|s| s.limiter_mut());
        store.epoch_deadline_trap();
        let budget = prepared.manifest.limits.call_timeout;
        let budget_ticks = EpochClock::ticks_for(budget);
        store.set_epoch_deadline(budget_ticks);
        if prepared.fuel_metering {
            // Without a per-call budget the store simply never runs dry.
            let fuel = prepared.manifest.limits.fuel.unwrap_or(u64::MAX);
            store
                .set_fuel(fuel)
                .map_err(|e| setup(FaultKind::Setup(e.to_string())))?;
        }

        let instance = {
            let _running = clock.enter();
            prepared.pre.instantiate(&mut store)
        }
        .map_err(|e| setup(classify(&e, &prepared.manifest.limits)))?;
        let exports =
            Exports::look_up(&instance, &mut store).map_err(|m| setup(FaultKind::Abi(m)))?;
        store.data_mut().set_guest(GuestExports {
            memory: exports.memory,
            alloc: Arc::new(exports.alloc.clone()),
        });
        for cap in &prepared.granted {
            cap.capability
                .instantiate(store.data_mut())
                .map_err(|e| setup(FaultKind::Setup(e.to_string())))?;
        }
        let mut plugin = Plugin {
            name,
            store,
            exports,
            prepared,
            clock,
            budget_ticks,
            call_number: 0,
            released: false,
            failed: None,
        };
        if let Ok(initialize) =
            instance.get_typed_func::<(), ()>(&mut plugin.store, names::INITIALIZE)
        {
            plugin.exports.initialize = Some(initialize);
            plugin.unless_failed(|p| {
                p.call_optional(names::INITIALIZE, |e| e.initialize.as_ref(), ())
                    .map(drop)
            })?;
        }
        Ok(plugin)
    }

    /// Makes WASI sleeps of this instance end early once `stop` is set, so a
    /// plugin asleep in a step does not hold up the host's stop.
    pub fn wake_sleeps_on(&mut self, stop: Arc<std::sync::atomic::AtomicBool>) {
        self.store
            .data_mut()
            .insert_slot(crate::wasi_poll::StopSignal(stop));
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Steps issued so far.
    pub fn call_number(&self) -> u64 {
        self.call_number
    }

    /// Calls `pulp_init` with the MessagePack config (`(0, 0)` when empty).
    pub fn init(&mut self, config: &[u8]) -> Result<(), PluginFault> {
        self.unless_failed(|p| p.init_once(config))
    }

    fn init_once(&mut self, config: &[u8]) -> Result<(), PluginFault> {
        let (ptr, len) = if config.is_empty() {
            (0, 0)
        } else {
            self.write_guest(names::INIT, &[config])?
        };
        let code = self.call(names::INIT, |e| &e.init, (ptr, len));
        // A trapped instance is not entered again, not even to free its buffer.
        if code.is_ok() {
            self.free(ptr, len);
        }
        match code? {
            0 => Ok(()),
            code => Err(self.fault(names::INIT, FaultKind::ErrorCode(code))),
        }
    }

    /// Calls `pulp_step` with the next envelope; `payload` empty means a tick.
    pub fn step(&mut self, payload: &[u8]) -> Result<StepOutcome, PluginFault> {
        self.unless_failed(|p| p.step_once(payload))
    }

    fn step_once(&mut self, payload: &[u8]) -> Result<StepOutcome, PluginFault> {
        self.call_number += 1;
        let wall_time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let envelope = StepEnvelope {
            call_number: self.call_number,
            wall_time_ns,
            payload,
        };
        let header = envelope
            .header()
            .map_err(|e| self.fault(names::STEP, FaultKind::Abi(e.to_string())))?;
        let (ptr, len) = self.write_guest(names::STEP, &[&header, payload])?;
        let handle = self.call(names::STEP, |e| &e.step, (ptr, len));
        if handle.is_ok() {
            self.free(ptr, len);
        }
        let handle = handle?;
        let output = if handle > 0 {
            self.read_output(handle)?
        } else {
            None
        };
        Ok(StepOutcome {
            call_number: self.call_number,
            handle,
            output,
        })
    }

    /// Calls `pulp_shutdown`, then releases the plugin's capability state.
    pub fn shutdown(&mut self) -> Result<(), PluginFault> {
        self.unless_failed(|p| p.shutdown_once())
    }

    /// The fault that failed this instance, if one did.
    pub fn failure(&self) -> Option<&PluginFault> {
        self.failed.as_ref()
    }

    /// Runs `call` unless the instance already failed; a fault fails it for good.
    /// A trapped or interrupted instance may be mid-way through its own state,
    /// so it is never entered again: restart it from the compiled module instead.
    ///
    /// The whole of `call` (for a step: alloc, step, output, free) is one call
    /// for the budget: one deadline, and one entry for the epoch timer.
    fn unless_failed<T>(
        &mut self,
        call: impl FnOnce(&mut Self) -> Result<T, PluginFault>,
    ) -> Result<T, PluginFault> {
        if let Some(fault) = &self.failed {
            return Err(fault.clone());
        }
        let _running = self.clock.enter();
        self.store.set_epoch_deadline(self.budget_ticks);
        self.store.data_mut().begin_call();
        let result = call(self);
        self.store.data_mut().end_call();
        if let Err(fault) = &result {
            self.failed = Some(fault.clone());
        }
        result
    }

    fn shutdown_once(&mut self) -> Result<(), PluginFault> {
        let result = match self.call(names::SHUTDOWN, |e| &e.shutdown, ()) {
            Ok(0) => Ok(()),
            Ok(code) => Err(self.fault(names::SHUTDOWN, FaultKind::ErrorCode(code))),
            Err(e) => Err(e),
        };
        self.release();
        result
    }

    /// Releases capability state (rolls back transactions, kills containers...).
    /// Called by [`Plugin::shutdown`] and when the plugin fails; idempotent.
    pub fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        for cap in self.prepared.granted.clone().iter() {
            cap.capability.release(self.store.data_mut());
        }
    }

    /// Reads every `probe_*` export, in name order, as one call for the
    /// budget. A failed instance is never entered again, so it has no probe
    /// values (`Err` with its fault); a probe that traps fails the instance
    /// like any other export.
    pub fn probes(&mut self) -> Result<Vec<(String, i64)>, PluginFault> {
        self.unless_failed(|p| {
            let mut values = Vec::new();
            for (name, func) in p.exports.probes.clone() {
                let mut out = [Val::I64(0)];
                let fuel = p.prepared.manifest.limits.fuel;
                if let Some(fuel) = fuel {
                    let _ = p.store.set_fuel(fuel);
                }
                let called = func.call(&mut p.store, &[], &mut out);
                if let Some(fuel) = fuel {
                    let left = p.store.get_fuel().unwrap_or(0);
                    p.prepared.info.usage.fuel(fuel.saturating_sub(left));
                }
                if let Err(e) = called {
                    return Err(p.fault("probe_*", classify(&e, &p.prepared.manifest.limits)));
                }
                match out[0] {
                    Val::I64(v) => values.push((name, v)),
                    Val::I32(v) => values.push((name, v as i64)),
                    _ => {}
                }
            }
            Ok(values)
        })
    }

    /// Allocates guest memory for the concatenation of `parts` and copies them in.
    fn write_guest(
        &mut self,
        export: &'static str,
        parts: &[&[u8]],
    ) -> Result<(u32, u32), PluginFault> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let max = self.prepared.manifest.limits.max_buffer as usize;
        if total > max {
            return Err(self.fault(
                export,
                FaultKind::Abi(format!(
                    "input of {total} bytes is over the {max}-byte buffer limit"
                )),
            ));
        }
        let len = total as u32;
        let ptr = self.call(names::ALLOC, |e| &e.alloc, len)?;
        let data = self.exports.memory.data_mut(&mut self.store);
        let size = data.len();
        let range = match checked_range(ptr, len, size) {
            Some(r) if ptr != 0 => r,
            _ => {
                return Err(self.fault(
                    export,
                    FaultKind::Abi(format!("pulp_alloc({len}) returned {ptr:#x}, not a usable range in {size} bytes of memory")),
                ))
            }
        };
        let mut at = range.start;
        for part in parts {
            data[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok((ptr, len))
    }

    fn read_output(&mut self, handle: i32) -> Result<Option<Vec<u8>>, PluginFault> {
        if self.exports.output.is_none() {
            return Ok(None);
        }
        let packed = self
            .call_optional(names::OUTPUT, |e| e.output.as_ref(), handle)?
            .unwrap_or(0) as u64;
        let (ptr, len) = ((packed >> 32) as u32, packed as u32);
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let max = self.prepared.manifest.limits.max_buffer;
        let data = self.exports.memory.data(&self.store);
        let bytes = match checked_range(ptr, len, data.len()) {
            Some(range) if len <= max => data[range].to_vec(),
            _ => {
                return Err(self.fault(
                    names::OUTPUT,
                    FaultKind::Abi(format!(
                        "output handle {handle} resolved to {len} bytes at {ptr:#x}, outside {} bytes of memory or over the {max}-byte limit",
                        data.len()
                    )),
                ))
            }
        };
        self.free(ptr, len);
        Ok(Some(bytes))
    }

    /// Gives memory back through `pulp_free` when the guest exports it. A fault in
    /// `pulp_free` is logged and otherwise ignored: the step itself succeeded.
    fn free(&mut self, ptr: u32, len: u32) {
        if len == 0 {
            return;
        }
        if let Err(e) = self.call_optional(names::FREE, |e| e.free.as_ref(), (ptr, len)) {
            tracing::warn!(plugin = %self.name, "{e}");
        }
    }

    /// Calls the export `pick` selects, under the call budget. The export is
    /// borrowed, not cloned: cloning a `TypedFunc` clones its type, which shows
    /// up on the step path.
    fn call<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        export: &'static str,
        pick: impl FnOnce(&Exports) -> &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, PluginFault> {
        self.call_optional(export, |e| Some(pick(e)), params)?
            .ok_or_else(|| {
                self.fault(
                    export,
                    FaultKind::Abi(format!("export `{export}` is missing")),
                )
            })
    }

    /// Like [`Plugin::call`] for an optional export: `Ok(None)` when absent.
    /// Both go through here, so every guest call gets the same budget and fault mapping.
    fn call_optional<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        export: &'static str,
        pick: impl FnOnce(&Exports) -> Option<&TypedFunc<P, R>>,
        params: P,
    ) -> Result<Option<R>, PluginFault> {
        let Some(func) = pick(&self.exports) else {
            return Ok(None);
        };
        let fuel = self.prepared.manifest.limits.fuel;
        let metered = fuel.map(|fuel| (fuel, &*self.prepared.info.usage));
        run_guest(&mut self.store, metered, func, params)
            .map(Some)
            .map_err(|e| self.fault_from(export, &e))
    }

    fn fault_from(&self, export: &'static str, err: &wasmtime::Error) -> PluginFault {
        self.fault(export, classify(err, &self.prepared.manifest.limits))
    }

    fn fault(&self, export: &'static str, kind: FaultKind) -> PluginFault {
        PluginFault {
            plugin: self.name.to_string(),
            export,
            call_number: self.call_number,
            kind,
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.release();
    }
}

/// One guest call, with fresh fuel when budgeted (and what it consumed
/// charged to the plugin). The caller holds a
/// [`CallGuard`](crate::epoch::CallGuard) and has set the epoch deadline.
fn run_guest<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<PluginState>,
    metered: Option<(u64, &PluginUsage)>,
    func: &TypedFunc<P, R>,
    params: P,
) -> wasmtime::Result<R> {
    let Some((fuel, usage)) = metered else {
        return func.call(store, params);
    };
    store.set_fuel(fuel)?;
    let result = func.call(&mut *store, params);
    usage.fuel(fuel.saturating_sub(store.get_fuel().unwrap_or(0)));
    result
}

impl Exports {
    fn look_up(instance: &Instance, store: &mut Store<PluginState>) -> Result<Exports, String> {
        let memory = instance
            .get_memory(&mut *store, names::MEMORY)
            .ok_or_else(|| format!("export `{}` is not a memory", names::MEMORY))?;
        let required = |e: wasmtime::Error| e.to_string();
        let mut probes: Vec<(String, wasmtime::Func)> = instance
            .exports(&mut *store)
            .filter(|e| e.name().starts_with(names::PROBE_PREFIX))
            .filter_map(|e| {
                let name = e.name().to_string();
                e.into_func().map(|f| (name, f))
            })
            .collect();
        probes.retain(|(_, f)| {
            let ty = f.ty(&*store);
            ty.params().len() == 0 && ty.results().len() == 1
        });
        probes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Exports {
            memory,
            alloc: instance
                .get_typed_func(&mut *store, names::ALLOC)
                .map_err(required)?,
            free: instance.get_typed_func(&mut *store, names::FREE).ok(),
            init: instance
                .get_typed_func(&mut *store, names::INIT)
                .map_err(required)?,
            step: instance
                .get_typed_func(&mut *store, names::STEP)
                .map_err(required)?,
            shutdown: instance
                .get_typed_func(&mut *store, names::SHUTDOWN)
                .map_err(required)?,
            output: instance.get_typed_func(&mut *store, names::OUTPUT).ok(),
            initialize: None,
            probes,
        })
    }
}
