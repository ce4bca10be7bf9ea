//! `pulp run --metrics-addr`: a Prometheus scrape of a running host.

use pulp_integration::http_client::{free_addr, request, wait_until_serving};
use pulp_integration::{manifest, plugin_wasm, text, wat_plugin, RunningPulp, ScratchPlugin};
use std::time::Duration;

/// The value of the sample `series` (name and labels, exactly) in `scrape`.
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{scrape}"))
}

#[test]
fn a_scrape_shows_steps_latency_errors_faults_restarts_mailbox_and_http_statuses() {
    plugin_wasm("echo");
    plugin_wasm("heartbeat");
    let flaky = ScratchPlugin::wat(
        "flaky",
        &wat_plugin("", "unreachable", ""),
        "tick_ms = 20\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 2\nbackoff_ms = 10",
    );
    let metrics_addr = free_addr();
    let pulp = RunningPulp::start(
        &["--metrics-addr", &metrics_addr.to_string()],
        &[&manifest("echo"), &manifest("heartbeat"), &flaky.manifest],
    );
    wait_until_serving(pulp.addr, "/echo/ready");
    for _ in 0..3 {
        assert_eq!(request(pulp.addr, "GET", "/echo/x", &[], b"").status, 200);
    }
    assert_eq!(request(pulp.addr, "GET", "/nowhere", &[], b"").status, 404);
    std::thread::sleep(Duration::from_millis(600));

    let scrape = request(metrics_addr, "GET", "/metrics", &[], b"");
    assert_eq!(scrape.status, 200);
    assert_eq!(scrape.headers["content-type"], "text/plain; version=0.0.4");
    let s = scrape.text();
    // echo: the readiness probe and three requests, each one step.
    assert_eq!(sample(&s, "pulp_steps_total{plugin=\"echo\"}"), 4.0);
    assert_eq!(
        sample(
            &s,
            "pulp_http_responses_total{plugin=\"echo\",status=\"200\"}"
        ),
        4.0
    );
    assert_eq!(
        sample(&s, "pulp_http_responses_total{plugin=\"-\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        sample(&s, "pulp_step_duration_seconds_count{plugin=\"echo\"}"),
        4.0
    );
    assert_eq!(
        sample(
            &s,
            "pulp_step_duration_seconds_bucket{plugin=\"echo\",le=\"+Inf\"}"
        ),
        4.0
    );
    assert!(sample(&s, "pulp_step_duration_seconds_sum{plugin=\"echo\"}") > 0.0);
    assert_eq!(sample(&s, "pulp_mailbox_depth{plugin=\"echo\"}"), 0.0);
    // What each plugin costs the host.
    assert!(sample(&s, "pulp_cpu_seconds_total{plugin=\"echo\"}") > 0.0);
    assert!(sample(&s, "pulp_memory_bytes{plugin=\"echo\"}") >= 65536.0);
    assert_eq!(sample(&s, "pulp_host_bytes{plugin=\"echo\"}"), 0.0);
    assert_eq!(sample(&s, "pulp_disk_bytes{plugin=\"echo\"}"), 0.0);
    assert_eq!(sample(&s, "pulp_fuel_consumed_total{plugin=\"echo\"}"), 0.0);
    assert_eq!(
        sample(&s, "pulp_log_lines_dropped_total{plugin=\"heartbeat\"}"),
        0.0
    );
    assert_eq!(sample(&s, "pulp_containers{plugin=\"echo\"}"), 0.0);
    assert_eq!(
        sample(&s, "pulp_run_events_dropped_total{plugin=\"heartbeat\"}"),
        0.0
    );
    // heartbeat ticks every 100 ms.
    assert!(sample(&s, "pulp_steps_total{plugin=\"heartbeat\"}") >= 4.0);
    assert_eq!(
        sample(&s, "pulp_step_errors_total{plugin=\"heartbeat\"}"),
        0.0
    );
    // flaky traps on every step: three instances, two restarts, then it gives up.
    assert_eq!(
        sample(&s, "pulp_faults_total{plugin=\"flaky\",kind=\"trap\"}"),
        3.0
    );
    assert_eq!(sample(&s, "pulp_restarts_total{plugin=\"flaky\"}"), 2.0);
    assert_eq!(
        sample(&s, "pulp_faults_total{plugin=\"echo\",kind=\"trap\"}"),
        0.0
    );

    assert_eq!(request(metrics_addr, "GET", "/other", &[], b"").status, 404);
    let out = pulp.stop();
    assert!(out.status.success(), "{}", text(&out));
}
