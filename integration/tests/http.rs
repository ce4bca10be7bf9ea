//! `transport.http.inbound` end to end: the real `pulp` binary serving plugins,
//! hit by a real HTTP client on loopback.

use pulp_abi::http::HttpRoute;
use pulp_integration::http_client::{request, runtime, send, wait_until_serving};
use pulp_integration::{
    example_manifest, manifest, plugin_wasm, run_pulp, text, wat_data, RunningPulp,
};
use std::io::Write;
use std::time::Duration;

fn echo_with(extra_grants: &str, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = example_manifest(
        dir.path(),
        "echo",
        "echo",
        &format!(
            "capabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000\n{extra}\n[grants.\"transport.http.inbound\"]\n{extra_grants}"
        ),
    );
    (dir, m)
}

/// A WAT plugin that registers `GET <path>` in init and traps on any event.
fn trapping_route_plugin(path: &str) -> String {
    let route = rmp_serde::to_vec_named(&HttpRoute {
        method: "GET".into(),
        path: path.into(),
    })
    .unwrap();
    format!(
        r#"(module
  (import "pulp" "http_register" (func $register (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 2048) {data})
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "pulp_init") (param i32 i32) (result i32) (call $register (i32.const 2048) (i32.const {len})))
  (func (export "pulp_step") (param $ptr i32) (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 20)) (then unreachable)) (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#,
        data = wat_data(&route),
        len = route.len()
    )
}

#[test]
fn echo_round_trips_path_params_bodies_headers_and_queries() {
    plugin_wasm("echo");
    let pulp = RunningPulp::start(&[], &[&manifest("echo")]);
    wait_until_serving(pulp.addr, "/echo/ready");

    let r = request(
        pulp.addr,
        "GET",
        "/echo/hello%20world?b=2&a=x+y",
        &[("x-trace", "abc")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    assert_eq!(r.headers["x-trace"], "abc");
    assert_eq!(r.headers["x-echo-query"], "a=x y&b=2");
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");

    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let r = request(
        pulp.addr,
        "POST",
        "/echo",
        &[("content-type", "application/x-bin")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    assert_eq!(r.headers["content-type"], "application/x-bin");
    let out = pulp.stop();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    plugin_wasm("echo");
    let pulp = RunningPulp::start(&[], &[&manifest("echo")]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let r = request(pulp.addr, "GET", "/nothing/here", &[], b"");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no route for GET /nothing/here"));
    let r = request(pulp.addr, "DELETE", "/echo", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "POST");
    let r = request(pulp.addr, "PUT", "/echo/x", &[], b"");
    assert_eq!((r.status, r.headers["allow"].as_str()), (405, "GET"));
}

#[test]
fn bodies_over_the_limit_are_413() {
    let (_dir, m) = echo_with("max_body_kb = 1", "");
    let pulp = RunningPulp::start(&[], &[&m]);
    wait_until_serving(pulp.addr, "/echo/ready");
    assert_eq!(
        request(pulp.addr, "POST", "/echo", &[], &[7u8; 1024]).status,
        200
    );
    let r = request(pulp.addr, "POST", "/echo", &[], &[7u8; 1025]);
    assert_eq!(r.status, 413, "{}", r.text());
    // Without a content-length the limit still holds (chunked body, cut while reading).
    let mut raw = std::net::TcpStream::connect(pulp.addr).unwrap();
    raw.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n800\r\n").unwrap();
    raw.write_all(&[b'a'; 0x800]).unwrap();
    raw.write_all(b"\r\n0\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut raw.try_clone().unwrap(), &mut answer).ok();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn no_response_before_the_deadline_is_504_and_the_late_answer_is_dropped() {
    let (_dir, m) = echo_with("timeout_ms = 300", "[limits]\ncall_timeout_ms = 5000");
    let pulp = RunningPulp::start(&["--log-level", "info,pulp_ext=debug"], &[&m]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let r = request(pulp.addr, "GET", "/echo/slow?sleep_ms=800", &[], b"");
    assert_eq!(r.status, 504);
    assert!(r.text().contains("did not respond within 300 ms"));
    // The plugin answers late (its step is still running: steps are serial); that
    // answer goes nowhere and the plugin serves on.
    std::thread::sleep(Duration::from_millis(700));
    let r = request(pulp.addr, "GET", "/echo/fast", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "fast"));
    let out = pulp.stop();
    let all = text(&out);
    assert!(
        all.contains("is waiting for this plugin"),
        "http_respond of the late answer is refused: {all}"
    );
    assert!(
        all.contains("echo: stopped; steps=3 outputs=0 step_errors=1"),
        "{all}"
    );
}

#[test]
fn a_full_mailbox_is_503_with_retry_after() {
    let (_dir, m) = echo_with("", "[limits]\nmailbox = 1\ncall_timeout_ms = 5000");
    let pulp = RunningPulp::start(&[], &[&m]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let addr = pulp.addr;
    let replies = runtime().block_on(async move {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                tokio::spawn(async move {
                    send(addr, "GET", &format!("/echo/{i}?sleep_ms=300"), &[], b"").await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for t in tasks {
            replies.push(t.await.unwrap().unwrap());
        }
        replies
    });
    let busy: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert!(
        !busy.is_empty(),
        "8 slow requests into a mailbox of 1 all got in"
    );
    assert!(ok >= 1, "none answered");
    assert_eq!(busy.len() + ok, 8);
    for r in busy {
        assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
    }
}

#[test]
fn a_trapping_plugin_answers_503_while_another_keeps_serving() {
    plugin_wasm("echo");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("boom.wasm"),
        wat::parse_str(trapping_route_plugin("/boom")).unwrap(),
    )
    .unwrap();
    let boom = dir.path().join("boom.toml");
    std::fs::write(&boom, "name = \"boom\"\nversion = \"1\"\nwasm = \"boom.wasm\"\ncapabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000\n").unwrap();
    let pulp = RunningPulp::start(&[], &[&boom, &manifest("echo")]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let first = request(pulp.addr, "GET", "/boom", &[], b"");
    assert_eq!(first.status, 503, "{}", first.text());
    let again = request(pulp.addr, "GET", "/boom", &[], b"");
    assert_eq!(again.status, 503);
    assert!(
        again.text().contains("plugin `boom` is not running"),
        "{}",
        again.text()
    );
    let r = request(pulp.addr, "GET", "/echo/still-here", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "still-here"));
    let out = pulp.stop();
    assert!(
        text(&out).contains("boom: failed (pulp_step call 1: wasm trap"),
        "{}",
        text(&out)
    );
}

#[test]
fn two_hundred_concurrent_requests_are_all_answered_correctly() {
    plugin_wasm("echo");
    let pulp = RunningPulp::start(&[], &[&manifest("echo")]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let addr = pulp.addr;
    let wrong = runtime().block_on(async move {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                tokio::spawn(async move {
                    (i, send(addr, "GET", &format!("/echo/m{i}"), &[], b"").await)
                })
            })
            .collect();
        let mut wrong = Vec::new();
        for t in tasks {
            let (i, reply) = t.await.unwrap();
            match reply {
                Ok(r) if r.status == 200 && r.text() == format!("m{i}") => {}
                other => wrong.push((i, other.map(|r| (r.status, r.text())))),
            }
        }
        wrong
    });
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn sigterm_finishes_requests_in_flight_before_shutdown() {
    plugin_wasm("echo");
    let pulp = RunningPulp::start(&[], &[&manifest("echo")]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let addr = pulp.addr;
    let rt = runtime();
    let in_flight: Vec<_> = (0..4)
        .map(|i| {
            rt.spawn(async move {
                send(addr, "GET", &format!("/echo/f{i}?sleep_ms=200"), &[], b"").await
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let out = pulp.stop();
    for (i, t) in in_flight.into_iter().enumerate() {
        let r = rt.block_on(t).unwrap().unwrap();
        assert_eq!((r.status, r.text()), (200, format!("f{i}")));
    }
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("echo: stopped; steps=5"),
        "{}",
        text(&out)
    );
}

#[test]
fn clients_that_hang_up_cost_nothing() {
    plugin_wasm("echo");
    let pulp = RunningPulp::start(&[], &[&manifest("echo")]);
    wait_until_serving(pulp.addr, "/echo/ready");
    for _ in 0..20 {
        // Half a body, then gone.
        let mut s = std::net::TcpStream::connect(pulp.addr).unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b")
            .unwrap();
        drop(s);
        // A whole request, gone before the (slow) answer.
        let mut s = std::net::TcpStream::connect(pulp.addr).unwrap();
        s.write_all(b"GET /echo/x?sleep_ms=20 HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        drop(s);
    }
    let r = request(pulp.addr, "GET", "/echo/fine", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "fine"));
    let out = pulp.stop();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn two_plugins_declaring_one_route_are_refused_at_load_naming_both() {
    plugin_wasm("echo");
    let dir = tempfile::tempdir().unwrap();
    let grants = "capabilities = [\"transport.http.inbound\"]\n[grants.\"transport.http.inbound\"]\nroutes = [\"GET /echo/:other\"]";
    let twin = example_manifest(dir.path(), "twin", "echo", grants);
    let out = run_pulp(&[
        "check",
        manifest("echo").to_str().unwrap(),
        twin.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("route GET /echo/:other is already served by plugin `echo`; plugin `twin` cannot register it"), "{all}");
}

#[test]
fn two_plugins_registering_one_route_at_init_fail_naming_both() {
    plugin_wasm("echo");
    let dir = tempfile::tempdir().unwrap();
    let undeclared = "capabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000";
    let a = example_manifest(dir.path(), "first", "echo", undeclared);
    let b = example_manifest(dir.path(), "second", "echo", undeclared);
    let out = RunningPulp::start(&["--duration", "2"], &[&a, &b]).wait();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    // Both start at once; whichever registers second fails, naming the other.
    let named_both = all
        .contains("is already served by plugin `first`; plugin `second` cannot register it")
        || all.contains("is already served by plugin `second`; plugin `first` cannot register it");
    assert!(named_both, "{all}");
}

#[test]
fn routes_outside_the_manifest_list_are_refused() {
    // Echo registers GET /echo/:msg and POST /echo; allow only the first.
    let (_dir, m) = echo_with("routes = [\"GET /echo/:msg\"]", "");
    let out = RunningPulp::start(&["--duration", "2", "--log-level", "debug"], &[&m]).wait();
    let all = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "init fails when a registration is refused: {all}"
    );
    assert!(
        all.contains("route POST /echo is not in the manifest's routes"),
        "{all}"
    );
}

#[test]
fn check_lists_declared_routes_and_limits() {
    plugin_wasm("echo");
    let out = run_pulp(&["check", manifest("echo").to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("note: http: route GET /echo/:msg")
            && all.contains("note: http: route POST /echo"),
        "{all}"
    );
    assert!(
        all.contains("request bodies up to 1024 KiB, response deadline 5000 ms"),
        "{all}"
    );
}

#[test]
fn an_undeclared_http_import_is_stubbed_and_reported() {
    let wat = trapping_route_plugin("/x");
    let p = pulp_integration::ScratchPlugin::wat("sneaky", &wat, "");
    let out = run_pulp(&["check", p.arg()]);
    let all = text(&out);
    assert!(
        out.status.success(),
        "a stub is reported, not refused: {all}"
    );
    assert!(
        all.contains(
            "import pulp::http_register: STUB (returns 99): `transport.http.inbound` not declared"
        ),
        "{all}"
    );
    // At run time the stub's 99 is pulp_init's result, so init fails with code 99.
    let out = run_pulp(&["run", "--duration", "1", p.arg()]);
    assert!(
        text(&out).contains("pulp_init (call 0): returned error code 99"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_body_limit_the_guest_buffer_cannot_hold_is_refused_at_load() {
    let (_dir, m) = echo_with("max_body_kb = 2048", "[limits]\nmax_buffer_kb = 1024");
    let out = run_pulp(&["check", m.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("max_body_kb (2048) must be below limits.max_buffer_kb (1024)"),
        "{all}"
    );
}
