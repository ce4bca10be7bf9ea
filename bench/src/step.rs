//! Step throughput: Pulp vs the raw-wasmtime floor vs Extism, interleaved
//! round by round so all see the same machine; the median round is reported.

use crate::floor::Floor;
use crate::report::{line, n, s};
use crate::NoEvents;
use pulp_host::{Host, Plugin};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAYLOADS: [usize; 3] = [0, 1024, 64 * 1024];
const ROUNDS: usize = 7;
/// Wall time of one sample of one case.
const SAMPLE: Duration = Duration::from_millis(200);

/// One measured thing: runs its operation `n` times per call.
struct Case {
    case: &'static str,
    driver: &'static str,
    payload: usize,
    run: Box<dyn FnMut(u64)>,
    iterations: u64,
    rates: Vec<f64>,
    allocations: u64,
    operations: u64,
}

impl Case {
    fn new(
        case: &'static str,
        driver: &'static str,
        payload: usize,
        run: Box<dyn FnMut(u64)>,
    ) -> Case {
        Case {
            case,
            driver,
            payload,
            run,
            iterations: 0,
            rates: Vec::new(),
            allocations: 0,
            operations: 0,
        }
    }

    /// Finds how many operations fill one sample.
    fn calibrate(&mut self) {
        let mut n = 16;
        loop {
            let started = Instant::now();
            (self.run)(n);
            let took = started.elapsed();
            if took >= SAMPLE / 4 {
                self.iterations = ((n as f64) * SAMPLE.as_secs_f64() / took.as_secs_f64()) as u64;
                return;
            }
            n *= 4;
        }
    }

    fn sample(&mut self) {
        let allocations = crate::allocs::count();
        let started = Instant::now();
        (self.run)(self.iterations);
        let took = started.elapsed();
        // Other threads (the epoch timer, Extism's) may allocate meanwhile: an upper bound.
        self.allocations += crate::allocs::count() - allocations;
        self.operations += self.iterations;
        self.rates.push(self.iterations as f64 / took.as_secs_f64());
    }

    fn ops_per_sec(&self) -> f64 {
        let mut rates = self.rates.clone();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    }
}

/// A Pulp plugin instance of the minimal guest, `echo` on or off.
fn pulp_plugin(host: &Host, dir: &Path, echo: bool) -> Plugin {
    let wasm = crate::artifact("plugins/target/wasm32-wasip1/release/minimal.wasm");
    let name = if echo { "minimal-echo" } else { "minimal" };
    let manifest = dir.join(format!("{name}.toml"));
    let config = if echo { "[config]\necho = true\n" } else { "" };
    std::fs::write(
        &manifest,
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nwasm = {:?}\n{config}",
            wasm.display().to_string()
        ),
    )
    .expect("manifest");
    let prepared = Arc::new(host.prepare(&manifest).expect("prepare"));
    let mut plugin =
        Plugin::instantiate(prepared.clone(), host.clock().clone(), Arc::new(NoEvents))
            .expect("instantiate");
    plugin.init(&prepared.manifest.config).expect("init");
    plugin
}

pub fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Host::builder().build().expect("host");
    let minimal = std::fs::read(crate::artifact(
        "plugins/target/wasm32-wasip1/release/minimal.wasm",
    ))
    .expect("minimal.wasm");
    let extism_wasm = std::fs::read(crate::artifact(
        "bench/extism-guest/target/wasm32-unknown-unknown/release/extism_guest.wasm",
    ))
    .expect("extism_guest.wasm");

    let mut cases = Vec::new();
    for payload in PAYLOADS {
        let bytes = vec![0x5a; payload];

        let mut plugin = pulp_plugin(&host, dir.path(), false);
        let input = bytes.clone();
        cases.push(Case::new(
            "step",
            "pulp",
            payload,
            Box::new(move |n| {
                for _ in 0..n {
                    plugin.step(&input).expect("pulp step");
                }
            }),
        ));

        let mut floor = Floor::new(&minimal, false);
        let input = bytes.clone();
        cases.push(Case::new(
            "step",
            "wasmtime_floor",
            payload,
            Box::new(move |n| {
                for _ in 0..n {
                    floor.step(&input);
                }
            }),
        ));

        let mut floor = Floor::new(&minimal, true);
        let input = bytes.clone();
        cases.push(Case::new(
            "step",
            "wasmtime_floor_epochs",
            payload,
            Box::new(move |n| {
                for _ in 0..n {
                    floor.step(&input);
                }
            }),
        ));

        let mut extism = extism::Plugin::new(&extism_wasm, [], false).expect("extism plugin");
        let input = bytes.clone();
        let function = if payload == 0 { "noop" } else { "echo" };
        let out: Vec<u8> = extism
            .call::<&[u8], &[u8]>(function, &input)
            .expect("extism call")
            .to_vec();
        assert_eq!(out.len(), if payload == 0 { 0 } else { payload });
        cases.push(Case::new(
            "step",
            "extism",
            payload,
            Box::new(move |n| {
                for _ in 0..n {
                    extism
                        .call::<&[u8], &[u8]>(function, &input)
                        .expect("extism call");
                }
            }),
        ));

        if payload > 0 {
            // Like for like with Extism's echo: the guest hands the payload back.
            let mut echo = pulp_plugin(&host, dir.path(), true);
            let output = echo.step(&bytes).expect("echo step").output;
            assert_eq!(output.as_deref(), Some(&bytes[..]));
            let input = bytes.clone();
            cases.push(Case::new(
                "echo",
                "pulp",
                payload,
                Box::new(move |n| {
                    for _ in 0..n {
                        echo.step(&input).expect("pulp echo");
                    }
                }),
            ));
        }
    }
    // `PULP_BENCH_ONLY=pulp` (or another driver) keeps one driver, for profiling it alone.
    if let Ok(only) = std::env::var("PULP_BENCH_ONLY") {
        cases.retain(|c| c.driver == only);
        for case in &mut cases {
            case.calibrate();
            for _ in 0..ROUNDS {
                case.sample();
            }
        }
        return;
    }
    for case in &mut cases {
        case.calibrate();
    }
    for _ in 0..ROUNDS {
        for case in &mut cases {
            case.sample();
        }
    }
    for case in &cases {
        let rate = case.ops_per_sec();
        line(&[
            ("case", s(case.case)),
            ("impl", s(case.driver)),
            ("payload", case.payload.to_string()),
            ("ops_per_sec", n(rate, 0)),
            ("ns_per_op", n(1e9 / rate, 1)),
            (
                "host_allocs_per_op",
                n(case.allocations as f64 / case.operations as f64, 3),
            ),
            ("rounds", ROUNDS.to_string()),
        ]);
    }
    let rate = |case: &str, driver: &str, payload: usize| {
        cases
            .iter()
            .find(|c| c.case == case && c.driver == driver && c.payload == payload)
            .map(Case::ops_per_sec)
            .expect("measured")
    };
    for payload in PAYLOADS {
        let pulp = rate("step", "pulp", payload);
        line(&[
            ("case", s("step_ratio")),
            ("payload", payload.to_string()),
            (
                "pulp_over_floor",
                n(pulp / rate("step", "wasmtime_floor", payload), 3),
            ),
            (
                "pulp_over_floor_epochs",
                n(pulp / rate("step", "wasmtime_floor_epochs", payload), 3),
            ),
            (
                "pulp_over_extism",
                n(pulp / rate("step", "extism", payload), 1),
            ),
            ("target_over_floor", "0.8".into()),
        ]);
        if payload > 0 {
            line(&[
                ("case", s("echo_ratio")),
                ("payload", payload.to_string()),
                (
                    "pulp_over_extism",
                    n(
                        rate("echo", "pulp", payload) / rate("step", "extism", payload),
                        1,
                    ),
                ),
            ]);
        }
    }
}
