//! The pooling allocator: plugins run from reserved slots, a pool that
//! cannot be reserved falls back to on-demand allocation, a full pool refuses
//! one more instance with a clear fault, and a freed slot is reused.

use pulp_ext::{EventRejected, EventSink};
use pulp_host::{Allocator, Host, Plugin, Pooling, PreparedPlugin};
use pulp_integration::{manifest, plugin_wasm, run_pulp, text};
use std::sync::Arc;

struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _event: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

fn pooled(instances: u32) -> Host {
    Host::builder()
        .pooling(Pooling {
            instances,
            table_elements: 100_000,
        })
        .build()
        .unwrap()
}

fn heartbeat(host: &Host) -> Arc<PreparedPlugin> {
    plugin_wasm("heartbeat");
    Arc::new(host.prepare(&manifest("heartbeat")).unwrap())
}

fn start(host: &Host, prepared: &Arc<PreparedPlugin>) -> Result<Plugin, pulp_host::PluginFault> {
    let mut plugin =
        Plugin::instantiate(prepared.clone(), host.clock().clone(), Arc::new(NoEvents))?;
    plugin.init(&prepared.manifest.config)?;
    Ok(plugin)
}

#[test]
fn plugins_run_from_the_pool_and_a_full_pool_refuses_one_more() {
    let host = pooled(2);
    assert_eq!(
        host.allocator(),
        Allocator::Pooling(Pooling {
            instances: 2,
            table_elements: 100_000
        })
    );
    let prepared = heartbeat(&host);
    let mut first = start(&host, &prepared).unwrap();
    let second = start(&host, &prepared).unwrap();
    for expected in 1..=3 {
        assert_eq!(first.step(&[]).unwrap().call_number, expected);
    }
    let Err(fault) = start(&host, &prepared) else {
        panic!("a third instance fitted in a pool of two");
    };
    assert_eq!(fault.export, "instantiate");
    let message = fault.to_string();
    assert!(message.contains("concurrent"), "{message}");
    // A slot given back is used again.
    drop(second);
    let mut third = start(&host, &prepared).unwrap();
    assert_eq!(third.step(&[]).unwrap().call_number, 1);
}

#[test]
fn a_pool_that_cannot_be_reserved_falls_back_to_on_demand() {
    // A million slots of about 4 GiB each is more address space than x86_64 has.
    let host = pooled(1_000_000);
    assert_eq!(host.allocator(), Allocator::OnDemand);
    let prepared = heartbeat(&host);
    let mut plugin = start(&host, &prepared).unwrap();
    assert_eq!(plugin.step(&[]).unwrap().call_number, 1);
}

#[test]
fn pulp_run_pools_by_default_and_can_be_told_not_to() {
    plugin_wasm("heartbeat");
    let data = tempfile::tempdir().unwrap();
    let hb = manifest("heartbeat");
    for extra in [&[][..], &["--no-pooling"][..]] {
        let mut args = vec![
            "run",
            "--steps",
            "5",
            "--data-dir",
            data.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(hb.to_str().unwrap());
        let out = run_pulp(&args);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("heartbeat: stopped; steps=5"), "{said}");
    }
}
