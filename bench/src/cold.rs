//! Cold start of the heartbeat plugin, in process: compiling its module,
//! loading it from the compiled-module cache instead, and instantiating it
//! plus `pulp_init`, with the pooling allocator and without.

use crate::report::{line, median, n, s};
use crate::NoEvents;
use pulp_host::{Host, Plugin, Pooling};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COMPILES: usize = 5;
const LOADS: usize = 21;
const INSTANCES: usize = 101;

fn ms(d: Duration) -> String {
    n(d.as_secs_f64() * 1e3, 4)
}

pub fn run() {
    crate::artifact("plugins/target/wasm32-wasip1/release/heartbeat.wasm");
    let manifest = crate::repo().join("manifests/heartbeat.toml");
    let cache = tempfile::tempdir().expect("tempdir");

    // Each prepare gets a fresh host: nothing compiled is shared between runs.
    let compile = median(
        (0..COMPILES)
            .map(|_| {
                let host = Host::builder().build().expect("host");
                let started = Instant::now();
                host.prepare(&manifest).expect("prepare");
                started.elapsed()
            })
            .collect(),
    );
    let cached_host = || {
        Host::builder()
            .module_cache(cache.path())
            .build()
            .expect("host")
    };
    cached_host().prepare(&manifest).expect("fill the cache");
    let load = median(
        (0..LOADS)
            .map(|_| {
                let host = cached_host();
                let started = Instant::now();
                host.prepare(&manifest).expect("prepare");
                started.elapsed()
            })
            .collect(),
    );
    line(&[
        ("case", s("cold_start")),
        ("phase", s("compile")),
        ("plugin", s("heartbeat")),
        ("ms", ms(compile)),
    ]);
    line(&[
        ("case", s("cold_start")),
        ("phase", s("cache_load")),
        ("plugin", s("heartbeat")),
        ("ms", ms(load)),
    ]);

    let pooled = Host::builder()
        .pooling(Pooling {
            instances: 4,
            table_elements: 100_000,
        })
        .build()
        .expect("pooled host");
    let on_demand = Host::builder().build().expect("host");
    for (allocator, host) in [("pooling", &pooled), ("on_demand", &on_demand)] {
        let prepared = Arc::new(host.prepare(&manifest).expect("prepare"));
        let start = median(
            (0..INSTANCES)
                .map(|_| {
                    let started = Instant::now();
                    let mut plugin = Plugin::instantiate(
                        prepared.clone(),
                        host.clock().clone(),
                        Arc::new(NoEvents),
                    )
                    .expect("instantiate");
                    plugin.init(&prepared.manifest.config).expect("init");
                    let took = started.elapsed();
                    drop(plugin);
                    took
                })
                .collect(),
        );
        line(&[
            ("case", s("cold_start")),
            ("phase", s("instantiate_init")),
            ("allocator", s(allocator)),
            ("plugin", s("heartbeat")),
            ("ms", ms(start)),
        ]);
        line(&[
            ("case", s("cold_start")),
            ("phase", s("cache_load_instantiate_init")),
            ("allocator", s(allocator)),
            ("plugin", s("heartbeat")),
            ("ms", ms(load + start)),
            ("target_ms", "5".into()),
        ]);
    }
}
