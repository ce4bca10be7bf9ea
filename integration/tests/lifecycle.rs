//! The plugin lifecycle through the library: heartbeat loaded, configured,
//! stepped and shut down by `pulp_host` directly.

use pulp_ext::{EventRejected, EventSink};
use pulp_host::{Host, Plugin};
use pulp_integration::{manifest, plugin_wasm};
use std::sync::Arc;

/// Heartbeat never receives events; a closed sink is all it needs.
struct NoEvents;
impl EventSink for NoEvents {
    fn push(&self, _event: Vec<u8>) -> Result<(), EventRejected> {
        Err(EventRejected::Closed)
    }
}

fn heartbeat() -> (Host, Plugin, Vec<u8>) {
    plugin_wasm("heartbeat");
    let host = Host::builder().build().unwrap();
    let prepared = host.prepare(&manifest("heartbeat")).unwrap();
    let config = prepared.manifest.config.clone();
    let plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents)).unwrap();
    (host, plugin, config)
}

#[test]
fn config_marker_round_trips_and_call_numbers_count_up() {
    let (_host, mut plugin, config) = heartbeat();
    plugin.init(&config).unwrap();
    let mut outputs = Vec::new();
    for expected in 1..=12u64 {
        let outcome = plugin.step(&[]).unwrap();
        assert_eq!(outcome.call_number, expected);
        if let Some(bytes) = outcome.output {
            assert!(outcome.handle > 0);
            outputs.push(String::from_utf8(bytes).unwrap());
        } else {
            assert_eq!(
                outcome.handle, 0,
                "no output means handle 0 at call {expected}"
            );
        }
    }
    // output_every = 5 in manifests/heartbeat.toml
    assert_eq!(outputs, ["beat 5 (call 5)", "beat 10 (call 10)"]);
    let probes = plugin.probes().expect("probes");
    assert_eq!(
        probes,
        [
            ("probe_config_marker".to_string(), 4242),
            ("probe_last_call".to_string(), 12)
        ]
    );
    plugin.shutdown().unwrap();
}

#[test]
fn empty_config_gives_the_plugin_its_defaults() {
    let (_host, mut plugin, _config) = heartbeat();
    plugin.init(&[]).unwrap();
    assert_eq!(
        plugin.probes().expect("probes")[0],
        ("probe_config_marker".to_string(), 0)
    );
}

#[test]
fn config_the_plugin_rejects_fails_init_with_its_code() {
    let (_host, mut plugin, _config) = heartbeat();
    // {"output_every": 0} as MessagePack: heartbeat's init refuses it and pulp_init returns 2.
    let bad = rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("output_every", 0i64)]))
        .unwrap();
    let fault = plugin.init(&bad).unwrap_err();
    assert_eq!(fault.export, "pulp_init");
    assert_eq!(fault.kind, pulp_host::FaultKind::ErrorCode(2));
    assert!(
        fault.to_string().contains("plugin `heartbeat`: pulp_init"),
        "{fault}"
    );
}

#[test]
fn a_failed_instance_is_never_entered_again() {
    // Counts its steps in a global and traps on the second.
    let wat = pulp_integration::wat_plugin(
        "",
        "(global.set $steps (i32.add (global.get $steps) (i32.const 1)))
         (if (i32.eq (global.get $steps) (i32.const 2)) (then unreachable))
         (global.get $steps)",
        r#"(global $steps (mut i32) (i32.const 0))
           (func (export "probe_steps") (result i64) (i64.extend_i32_u (global.get $steps)))"#,
    );
    let scratch = pulp_integration::ScratchPlugin::wat("fragile", &wat, "");
    let host = Host::builder().build().unwrap();
    let prepared = host.prepare(&scratch.manifest).unwrap();
    let mut plugin =
        Plugin::instantiate(Arc::new(prepared), host.clock().clone(), Arc::new(NoEvents)).unwrap();
    plugin.init(&[]).unwrap();
    assert_eq!(plugin.step(&[]).unwrap().handle, 1);
    let fault = plugin.step(&[]).unwrap_err();
    assert_eq!((fault.export, fault.call_number), ("pulp_step", 2));
    // Later calls report the same fault without running guest code.
    assert_eq!(plugin.step(&[]).unwrap_err(), fault);
    assert_eq!(plugin.shutdown().unwrap_err(), fault);
    assert_eq!(plugin.failure(), Some(&fault));
    // Probes too: a probe is guest code like any other export.
    assert_eq!(plugin.probes().unwrap_err(), fault);
}
