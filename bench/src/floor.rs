//! The floor: the minimal guest driven by raw wasmtime typed calls doing
//! exactly the ABI's work for one step (alloc, write the envelope, step,
//! free), with wasmtime's default configuration and no Pulp code at all.
//! With `epochs`, the engine also compiles epoch checks into the guest, as
//! Pulp's does for call budgets (the deadline is set once, far away): that
//! variant shows what the checks alone cost.

use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::{Config, Engine, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiCtxBuilder;

pub struct Floor {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    step: TypedFunc<(u32, u32), i32>,
    free: TypedFunc<(u32, u32), ()>,
    call_number: u64,
}

impl Floor {
    pub fn new(wasm: &[u8], epochs: bool) -> Floor {
        let engine = Engine::new(Config::new().epoch_interruption(epochs)).expect("engine");
        let module = Module::new(&engine, wasm).expect("compile");
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s).expect("wasi");
        // `pulp.log` and friends: never called on this path.
        linker
            .define_unknown_imports_as_traps(&module)
            .expect("imports");
        let mut store = Store::new(&engine, WasiCtxBuilder::new().build_p1());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker.instantiate(&mut store, &module).expect("instance");
        if let Ok(initialize) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            initialize.call(&mut store, ()).expect("_initialize");
        }
        let init = instance
            .get_typed_func::<(u32, u32), i32>(&mut store, "pulp_init")
            .expect("pulp_init");
        assert_eq!(init.call(&mut store, (0, 0)).expect("init"), 0);
        Floor {
            memory: instance.get_memory(&mut store, "memory").expect("memory"),
            alloc: instance
                .get_typed_func(&mut store, "pulp_alloc")
                .expect("alloc"),
            step: instance
                .get_typed_func(&mut store, "pulp_step")
                .expect("step"),
            free: instance
                .get_typed_func(&mut store, "pulp_free")
                .expect("free"),
            store,
            call_number: 0,
        }
    }

    /// One step: the envelope is `call_number u64 | wall_time u64 | len u32 | payload`.
    pub fn step(&mut self, payload: &[u8]) -> i32 {
        self.call_number += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let len = 20 + payload.len();
        let ptr = self.alloc.call(&mut self.store, len as u32).expect("alloc");
        let at = ptr as usize;
        let data = &mut self.memory.data_mut(&mut self.store)[at..at + len];
        data[..8].copy_from_slice(&self.call_number.to_le_bytes());
        data[8..16].copy_from_slice(&now.to_le_bytes());
        data[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        data[20..].copy_from_slice(payload);
        let result = self
            .step
            .call(&mut self.store, (ptr, len as u32))
            .expect("step");
        self.free
            .call(&mut self.store, (ptr, len as u32))
            .expect("free");
        result
    }
}
