//! Containment of the HTTP listener (issue 12): hostile clients and plugins
//! against the real `pulp run`, with raw TCP where the attack needs control of
//! every byte.
//!
//! Every attack runs beside the healthy echo plugin (manifests/echo.toml),
//! counting its 200s while the attack runs, checks the host's RSS stays
//! bounded, and ends with SIGTERM, which must stop the host promptly with an
//! attacker still connected. The listener runs with short limits so each test
//! takes a few seconds. Last: bad limits refused by `pulp check` and `pulp
//! run`, and (through the library, to read the plugin's usage) the bytes of a
//! waiting request charged to its plugin.

use pulp_abi::http::{HttpResponse, HttpRoute};
use pulp_integration::http_client::{runtime, send, wait_until_serving, RawConn};
use pulp_integration::{
    example_manifest, manifest, plugin_wasm, run_pulp, text, wat_data, RunningPulp, ScratchPlugin,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEADER_TIMEOUT_MS: u64 = 600;
const BODY_TIMEOUT_MS: u64 = 800;
const IDLE_TIMEOUT_MS: u64 = 600;
const MAX_CONNECTIONS: usize = 24;
const MAX_HEADERS: usize = 20;
const MAX_HEADER_KB: usize = 4;
/// The host's resident memory must stay under this through every attack.
const MAX_RSS_KB: u64 = 128 * 1024;
/// SIGTERM must end the host within this, attackers still connected.
const PROMPT_EXIT: Duration = Duration::from_secs(5);

/// The listener flags of these tests, with some overridden.
fn flags(overrides: &[(&str, String)]) -> Vec<String> {
    let mut flags = vec![
        ("--http-header-timeout-ms", HEADER_TIMEOUT_MS.to_string()),
        ("--http-body-timeout-ms", BODY_TIMEOUT_MS.to_string()),
        ("--http-idle-timeout-ms", IDLE_TIMEOUT_MS.to_string()),
        ("--http-max-connections", MAX_CONNECTIONS.to_string()),
        ("--http-max-headers", MAX_HEADERS.to_string()),
        ("--http-max-header-kb", MAX_HEADER_KB.to_string()),
    ];
    for (flag, value) in overrides {
        flags.retain(|(f, _)| f != flag);
        flags.push((flag, value.clone()));
    }
    flags
        .into_iter()
        .flat_map(|(f, v)| [f.to_string(), v])
        .collect()
}

/// The echo plugin asked for `/echo/alive` in a loop on fresh connections.
struct Healthy {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    other: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Healthy {
    fn start(addr: std::net::SocketAddr) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let other = Arc::new(AtomicU64::new(0));
        let (s, o, b) = (stop.clone(), ok.clone(), other.clone());
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            while !s.load(Ordering::Relaxed) {
                let reply = rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(3),
                        send(addr, "GET", "/echo/alive", &[], b""),
                    )
                    .await
                });
                match reply {
                    Ok(Ok(r)) if r.status == 200 && r.text() == "alive" => &o,
                    _ => &b,
                }
                .fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Healthy {
            stop,
            ok,
            other,
            thread,
        }
    }

    /// Stops; returns (200s, anything else).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.ok.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
        )
    }
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

/// `pulp run` with the echo plugin and `others`, listener flags `overrides`.
fn start(overrides: &[(&str, String)], others: &[&Path]) -> RunningPulp {
    plugin_wasm("echo");
    let flags = flags(overrides);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let echo = manifest("echo");
    let mut manifests: Vec<&Path> = vec![&echo];
    manifests.extend_from_slice(others);
    let pulp = RunningPulp::start(&flags, &manifests);
    wait_until_serving(pulp.addr, "/echo/ready");
    pulp
}

/// Runs `attack` while the echo plugin is asked in a loop; then checks the
/// healthy 200s (all of them when `all_healthy`), the host's RSS, and that
/// SIGTERM ends it promptly with a slow attacker still connected.
fn under_attack(pulp: RunningPulp, all_healthy: bool, attack: impl FnOnce(&RunningPulp)) -> Output {
    let healthy = Healthy::start(pulp.addr);
    attack(&pulp);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, other) = healthy.finish();
    assert!(
        ok >= 3,
        "the echo plugin answered {ok} times (and {other} otherwise) during the attack"
    );
    if all_healthy {
        assert_eq!(
            other, 0,
            "healthy requests not answered 200 during the attack ({ok} were)"
        );
    }
    let rss = vm_rss_kb(pulp.pid());
    assert!(rss < MAX_RSS_KB, "host RSS {rss} kB after the attack");

    let mut lingering = RawConn::connect(pulp.addr);
    lingering
        .send(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = Instant::now();
    let out = pulp.stop();
    assert!(
        t.elapsed() < PROMPT_EXIT,
        "SIGTERM took {:?}: {}",
        t.elapsed(),
        text(&out)
    );
    assert!(out.status.success(), "{}", text(&out));
    out
}

#[test]
fn slow_and_silent_request_heads_are_cut_at_the_header_timeout() {
    let pulp = start(&[], &[]);
    under_attack(pulp, true, |pulp| {
        let silent = std::thread::spawn({
            let addr = pulp.addr;
            move || {
                let mut conn = RawConn::connect(addr);
                let t = Instant::now();
                assert!(
                    conn.closed_within(Duration::from_secs(3)),
                    "silent connection kept open"
                );
                t.elapsed()
            }
        });
        // One header line every 100 ms: each byte is on time, the head is not.
        let mut conn = RawConn::connect(pulp.addr);
        let t = Instant::now();
        conn.send(b"GET /echo/slow HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let closed_after = loop {
            if conn.send(b"X-Slow: 1\r\n").is_err()
                || conn.closed_within(Duration::from_millis(100))
            {
                break t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "a trickled head was never cut"
            );
        };
        let floor = Duration::from_millis(HEADER_TIMEOUT_MS - 100);
        assert!(
            closed_after >= floor,
            "cut after {closed_after:?}, before the header timeout"
        );
        assert!(
            !conn.text().contains("200"),
            "the trickled request was served: {}",
            conn.text()
        );
        let silent_after = silent.join().unwrap();
        assert!(
            silent_after >= floor,
            "silent connection cut after {silent_after:?}"
        );
    });
}

#[test]
fn a_slow_body_is_408_at_the_body_timeout() {
    let pulp = start(&[], &[]);
    under_attack(pulp, true, |pulp| {
        let mut conn = RawConn::connect(pulp.addr);
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        let t = Instant::now();
        let reply = loop {
            let _ = conn.send(b"a");
            if let Ok(reply) = conn.read_response(Duration::from_millis(100)) {
                break reply;
            }
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "no answer to a slow body: {}",
                conn.text()
            );
        };
        assert_eq!(reply.status, 408, "{}", reply.text());
        assert!(
            reply.text().contains("--http-body-timeout-ms = 800"),
            "{}",
            reply.text()
        );
        assert!(
            t.elapsed() >= Duration::from_millis(BODY_TIMEOUT_MS - 100),
            "{:?}",
            t.elapsed()
        );
        assert!(
            conn.closed_within(Duration::from_secs(2)),
            "connection kept after the 408"
        );
    });
}

#[test]
fn connections_over_the_cap_wait_and_are_served_once_others_close() {
    // Long head deadline: the idle connections hold their slots until closed here.
    let pulp = start(&[("--http-header-timeout-ms", "20000".into())], &[]);
    let baseline = open_fds(pulp.pid());
    under_attack(pulp, false, |pulp| {
        let idle: Vec<RawConn> = (0..MAX_CONNECTIONS * 3)
            .map(|_| RawConn::connect(pulp.addr))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        // The cap counts every connection, the healthy loop's too; 4 spare for the runtime.
        let fds = open_fds(pulp.pid());
        assert!(
            fds <= baseline + MAX_CONNECTIONS + 4,
            "{fds} descriptors open with {} idle clients (baseline {baseline}, cap {MAX_CONNECTIONS})",
            idle.len()
        );
        let mut waiting = RawConn::connect(pulp.addr);
        waiting
            .send(b"GET /echo/waited HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(
            waiting.read_response(Duration::from_millis(700)).is_err(),
            "a client over the cap was served while the cap was full"
        );
        drop(idle);
        let reply = waiting
            .read_response(Duration::from_secs(5))
            .expect("served once the others closed");
        assert_eq!((reply.status, reply.text().as_str()), (200, "waited"));
    });
}

#[test]
fn idle_keep_alive_connections_close_at_the_idle_timeout_not_before() {
    // The head deadline is long here, so only the idle timeout can close them.
    let pulp = start(&[("--http-header-timeout-ms", "20000".into())], &[]);
    under_attack(pulp, true, |pulp| {
        // Several at once: the deadline must hold however hyper's polls interleave.
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let addr = pulp.addr;
                std::thread::spawn(move || {
                    let mut conn = RawConn::connect(addr);
                    for word in ["one", "two"] {
                        let word = format!("{word}{i}");
                        conn.send(
                            format!("GET /echo/{word} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                        )
                        .unwrap();
                        let reply = conn.read_response(Duration::from_secs(2)).unwrap();
                        assert_eq!(reply.text(), word);
                        // Well within the idle timeout: the connection is reused.
                        std::thread::sleep(Duration::from_millis(IDLE_TIMEOUT_MS / 3));
                    }
                    let t = Instant::now();
                    let closed = conn.closed_within(Duration::from_secs(3));
                    (
                        closed,
                        t.elapsed() + Duration::from_millis(IDLE_TIMEOUT_MS / 3),
                    )
                })
            })
            .collect();
        for client in clients {
            let (closed, idle) = client.join().unwrap();
            assert!(closed, "idle keep-alive kept open for {idle:?}");
            assert!(
                idle >= Duration::from_millis(IDLE_TIMEOUT_MS - 100),
                "closed after {idle:?} idle"
            );
        }
    });
}

#[test]
fn requests_over_the_listeners_byte_budget_are_503_before_their_body_is_read() {
    let pulp = start(&[("--http-max-buffered-mb", "1".into())], &[]);
    under_attack(pulp, true, |pulp| {
        let body = vec![b'b'; 700_000];
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // The first holds 700 kB of the 1 MiB budget while its body trickles in...
        let mut first = RawConn::connect(pulp.addr);
        first.send(head.as_bytes()).unwrap();
        first.send(&body[..10]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // ...so a second as large is refused at once, its body unread.
        let mut second = RawConn::connect(pulp.addr);
        second.send(head.as_bytes()).unwrap();
        let refused = second.read_response(Duration::from_secs(2)).unwrap();
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert!(
            refused.text().contains("over --http-max-buffered-mb = 1"),
            "{}",
            refused.text()
        );
        assert_eq!(
            refused.headers.get("retry-after").map(String::as_str),
            Some("1")
        );
        first.send(&body[10..]).unwrap();
        let served = first.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!((served.status, served.body.len()), (200, body.len()));
        // Answered: its bytes are back in the budget.
        let mut third = RawConn::connect(pulp.addr);
        third.send(head.as_bytes()).unwrap();
        third.send(&body).unwrap();
        let served = third.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!((served.status, served.body.len()), (200, body.len()));
    });
}

#[test]
fn header_floods_are_431() {
    let pulp = start(&[], &[]);
    under_attack(pulp, true, |pulp| {
        let many: String = (0..MAX_HEADERS + 5)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect();
        let big = format!("X-Big: {}\r\n", "b".repeat(MAX_HEADER_KB * 1024));
        for flood in [many, big] {
            let mut conn = RawConn::connect(pulp.addr);
            conn.send(format!("GET /echo/flood HTTP/1.1\r\nHost: x\r\n{flood}\r\n").as_bytes())
                .unwrap();
            let reply = conn.read_response(Duration::from_secs(2));
            assert_eq!(reply.map(|r| r.status), Ok(431));
            assert!(conn.closed_within(Duration::from_secs(2)));
        }
        // Just under both limits is served.
        let fine: String = (0..MAX_HEADERS - 2)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect();
        let mut conn = RawConn::connect(pulp.addr);
        conn.send(format!("GET /echo/fine HTTP/1.1\r\nHost: x\r\n{fine}\r\n").as_bytes())
            .unwrap();
        assert_eq!(
            conn.read_response(Duration::from_secs(2)).unwrap().text(),
            "fine"
        );
    });
}

/// A response to request id 0x1234, so its id is encoded `cd 12 34` at bytes 4..7.
fn response_template(headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let bytes = rmp_serde::to_vec_named(&HttpResponse {
        id: 0x1234,
        status: 200,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        body: body.to_vec(),
    })
    .unwrap();
    assert_eq!(&bytes[..7], &[0x84, 0xa2, b'i', b'd', 0xcd, 0x12, 0x34]);
    bytes
}

/// A plugin serving `GET /smuggle`: it answers each request with
/// `Content-Length: 2` and an 11-byte body, then answers again, cleanly, with
/// `code=N`, N being what the first `http_respond` returned.
fn smuggling_plugin() -> String {
    let route = rmp_serde::to_vec_named(&HttpRoute {
        method: "GET".into(),
        path: "/smuggle".into(),
    })
    .unwrap();
    let bad = response_template(&[("Content-Length", "2")], b"hello world");
    let good = response_template(&[], b"code=?");
    format!(
        r#"(module
  (import "pulp" "http_register" (func $register (param i32 i32) (result i32)))
  (import "pulp" "http_respond" (func $respond (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 2048) {route})
  (data (i32.const 4096) {bad})
  (data (i32.const 8192) {good})
  (func (export "pulp_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 60000)) (then (i32.const 0)) (else (i32.const 16384))))
  (func (export "pulp_init") (param i32 i32) (result i32)
    (call $register (i32.const 2048) (i32.const {route_len})))
  (func $set_id (param $at i32) (param $hi i32) (param $lo i32)
    (i32.store8 offset=5 (local.get $at) (local.get $hi))
    (i32.store8 offset=6 (local.get $at) (local.get $lo)))
  (func (export "pulp_step") (param $ptr i32) (param $len i32) (result i32)
    (local $i i32) (local $end i32) (local $tag i32) (local $hi i32) (local $lo i32)
    (if (i32.le_u (local.get $len) (i32.const 20)) (then (return (i32.const 0))))
    ;; The first "id" key (a2 69 64) is the request's id.
    (local.set $i (i32.add (local.get $ptr) (i32.const 20)))
    (local.set $end (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 6)))
    (block $found
      (loop $scan
        (br_if $found
          (i32.and
            (i32.eq (i32.load8_u (local.get $i)) (i32.const 0xa2))
            (i32.and
              (i32.eq (i32.load8_u offset=1 (local.get $i)) (i32.const 0x69))
              (i32.eq (i32.load8_u offset=2 (local.get $i)) (i32.const 0x64)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $scan (i32.lt_u (local.get $i) (local.get $end)))
        (return (i32.const -1))))
    (local.set $tag (i32.load8_u offset=3 (local.get $i)))
    (if (i32.lt_u (local.get $tag) (i32.const 0x80))
      (then (local.set $lo (local.get $tag)))
      (else (if (i32.eq (local.get $tag) (i32.const 0xcc))
        (then (local.set $lo (i32.load8_u offset=4 (local.get $i))))
        (else (if (i32.eq (local.get $tag) (i32.const 0xcd))
          (then
            (local.set $hi (i32.load8_u offset=4 (local.get $i)))
            (local.set $lo (i32.load8_u offset=5 (local.get $i))))
          (else (return (i32.const -2))))))))
    (call $set_id (i32.const 4096) (local.get $hi) (local.get $lo))
    (call $set_id (i32.const 8192) (local.get $hi) (local.get $lo))
    (i32.store8 (i32.const {code_at})
      (i32.add (i32.const 48) (call $respond (i32.const 4096) (i32.const {bad_len}))))
    (drop (call $respond (i32.const 8192) (i32.const {good_len})))
    (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#,
        route = wat_data(&route),
        route_len = route.len(),
        bad = wat_data(&bad),
        bad_len = bad.len(),
        good = wat_data(&good),
        good_len = good.len(),
        code_at = 8192 + good.len() - 1,
    )
}

#[test]
fn a_plugin_setting_content_length_gets_4_and_keep_alive_answers_stay_in_step() {
    let plugin = ScratchPlugin::wat(
        "smuggler",
        &smuggling_plugin(),
        "wasm = \"plugin.wasm\"\ncapabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000",
    );
    let pulp = start(&[], &[&plugin.manifest]);
    under_attack(pulp, true, |pulp| {
        let mut conn = RawConn::connect(pulp.addr);
        conn.send(b"GET /smuggle HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = conn.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!(
            (first.status, first.text().as_str()),
            (200, "code=4"),
            "http_respond with Content-Length must return 4"
        );
        assert_eq!(
            first.headers.get("content-length").map(String::as_str),
            Some("6")
        );
        // The next request on the same connection gets its own answer, nothing left over.
        conn.send(b"GET /echo/second HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let second = conn.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!((second.status, second.text().as_str()), (200, "second"));
        assert_eq!(conn.text(), "", "bytes beyond the two responses");
    });
}

#[test]
fn a_request_just_over_the_plugins_buffer_is_413_or_431_and_the_plugin_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let small = example_manifest(
        dir.path(),
        "small",
        "echo",
        "capabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000\n[limits]\nmax_buffer_kb = 8\n[grants.\"transport.http.inbound\"]\nmax_body_kb = 6",
    );
    // Echo's own routes are served by `small` here: the healthy loop asks it too.
    plugin_wasm("echo");
    let flags = flags(&[("--http-max-header-kb", "32".into())]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let pulp = RunningPulp::start(&flags, &[&small]);
    wait_until_serving(pulp.addr, "/echo/ready");
    let out = under_attack(pulp, true, |pulp| {
        let mut conn = RawConn::connect(pulp.addr);
        // A body within max_body_kb that, with a 2 KiB header, would not fit 8 KiB.
        let body = vec![b'a'; 6 * 1024];
        let pad = "p".repeat(2048);
        conn.send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let _ = conn.send(&body);
        let reply = conn.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!(reply.status, 413, "{}", reply.text());
        assert!(
            reply.text().contains("limits.max_buffer_kb = 8"),
            "{}",
            reply.text()
        );

        // Headers alone over the buffer: 431 before any body is read.
        let mut conn = RawConn::connect(pulp.addr);
        let pads: String = (0..3)
            .map(|i| format!("X-Pad{i}: {}\r\n", "q".repeat(3000)))
            .collect();
        conn.send(format!("GET /echo/big HTTP/1.1\r\nHost: x\r\n{pads}\r\n").as_bytes())
            .unwrap();
        let reply = conn.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!(reply.status, 431, "{}", reply.text());
        assert!(
            reply.text().contains("limits.max_buffer_kb = 8"),
            "{}",
            reply.text()
        );

        // Over max_body_kb itself is named so.
        let mut conn = RawConn::connect(pulp.addr);
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7000\r\n\r\n")
            .unwrap();
        let reply = conn.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!(reply.status, 413);
        assert!(reply.text().contains("max_body_kb = 6"), "{}", reply.text());

        // Just under: served by the same, never restarted, plugin.
        let mut conn = RawConn::connect(pulp.addr);
        let body = vec![b'z'; 6 * 1024];
        conn.send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        conn.send(&body).unwrap();
        let reply = conn.read_response(Duration::from_secs(3)).unwrap();
        assert_eq!((reply.status, reply.body.len()), (200, body.len()));
    });
    let all = text(&out);
    assert!(
        !all.contains("restarts=") && !all.contains("failed ("),
        "{all}"
    );
}

/// A plugin whose `pulp_init` registers `routes` in order and returns 10 + i
/// when register i returns another code than expected (0 when all match).
fn registering_plugin(routes: &[(&str, &str, u32)]) -> String {
    let mut data = String::new();
    let mut calls = String::new();
    for (i, (method, path, expected)) in routes.iter().enumerate() {
        let route = rmp_serde::to_vec_named(&HttpRoute {
            method: method.to_string(),
            path: path.to_string(),
        })
        .unwrap();
        let at = 2048 + i * 256;
        assert!(route.len() < 256);
        data.push_str(&format!("  (data (i32.const {at}) {})\n", wat_data(&route)));
        calls.push_str(&format!(
            "    (if (i32.ne (call $register (i32.const {at}) (i32.const {})) (i32.const {expected})) (then (return (i32.const {}))))\n",
            route.len(),
            10 + i
        ));
    }
    format!(
        r#"(module
  (import "pulp" "http_register" (func $register (param i32 i32) (result i32)))
  (memory (export "memory") 2)
{data}
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "pulp_init") (param i32 i32) (result i32)
{calls}    (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#
    )
}

#[test]
fn routes_match_paths_by_case_refuse_control_characters_and_stop_at_max_routes() {
    let grants = "wasm = \"plugin.wasm\"\ncapabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000\n[grants.\"transport.http.inbound\"]\ntimeout_ms = 200\n";
    let listed = ScratchPlugin::wat(
        "listed",
        &registering_plugin(&[
            // Granted `GET /NOTES`: the lower-case path is another route.
            ("GET", "/notes", 4),
            ("GET", "/NOTES\r\n2026-01-01 INFO FORGED log line", 4),
            ("GET", "/NOTES\0", 4),
            ("get", "/NOTES", 0),
        ]),
        &format!("{grants}routes = [\"GET /NOTES\"]"),
    );
    let capped = ScratchPlugin::wat(
        "capped",
        &registering_plugin(&[
            ("GET", "/r1", 0),
            ("GET", "/r2", 0),
            // Registering a route again is not a new route.
            ("GET", "/r1", 0),
            ("GET", "/r3", 9),
            ("POST", "/r1", 9),
        ]),
        &format!("{grants}max_routes = 2"),
    );
    let pulp = start(&[], &[&listed.manifest, &capped.manifest]);
    let out = under_attack(pulp, true, |pulp| {
        let rt = runtime();
        let status = |path: &str| {
            rt.block_on(send(pulp.addr, "GET", path, &[], b""))
                .unwrap()
                .status
        };
        // 504: routed to a running plugin (whose init saw every expected code), which does not answer.
        assert_eq!(status("/NOTES"), 504);
        assert_eq!(status("/notes"), 404);
        assert_eq!(status("/r2"), 504);
        assert_eq!(status("/r3"), 404);
    });
    let all = text(&out);
    assert!(!all.contains("FORGED"), "{all}");
    assert!(!all.contains("failed ("), "{all}");
}

#[test]
fn bad_limits_are_refused_naming_the_key_or_flag() {
    plugin_wasm("echo");
    let dir = tempfile::tempdir().unwrap();
    let grant = |name: &str, grants: &str| {
        example_manifest(
            dir.path(),
            name,
            "echo",
            &format!("capabilities = [\"transport.http.inbound\"]\n[grants.\"transport.http.inbound\"]\n{grants}"),
        )
    };
    for (manifest, expected) in [
        (
            grant("zero", "max_routes = 0"),
            "max_routes = 0 is not 1..=1024",
        ),
        (
            grant(
                "three",
                "max_routes = 2\nroutes = [\"GET /a\", \"GET /b\", \"GET /c\"]",
            ),
            "routes lists 3 routes: over max_routes = 2",
        ),
        (
            grant("crlf", "routes = [\"GET /a\\r\\nb\"]"),
            "route \"GET /a\\r\\nb\" must be \"METHOD /path\"",
        ),
        (
            grant("del", "routes = [\"GET /a\\u007f\"]"),
            "holds '\\u{7f}'",
        ),
        (grant("nul", "routes = [\"GET /a\\u0000\"]"), "holds '\\0'"),
    ] {
        let out = run_pulp(&["check", manifest.to_str().unwrap()]);
        assert!(
            !out.status.success() && text(&out).contains(expected),
            "{expected}: {}",
            text(&out)
        );
    }
    let ok = run_pulp(&["check", manifest("echo").to_str().unwrap()]);
    assert!(text(&ok).contains("at most 64 routes"), "{}", text(&ok));

    for flag in [
        "--http-max-connections",
        "--http-header-timeout-ms",
        "--http-max-header-kb",
    ] {
        let out = run_pulp(&["run", flag, "0", manifest("echo").to_str().unwrap()]);
        assert!(
            !out.status.success() && text(&out).contains(flag),
            "{flag}: {}",
            text(&out)
        );
    }
}

#[test]
fn a_request_awaiting_its_answer_is_not_charged_twice_and_leaves_nothing_behind() {
    use pulp_host::caps::http::ListenerSettings;
    use pulp_host::caps::HttpCapability;
    use pulp_host::{Host, RunOptions};

    let data = tempfile::tempdir().unwrap();
    let http = HttpCapability::new();
    let host = Host::builder()
        .gated(http.clone())
        .data_dir(data.path())
        .build()
        .unwrap();
    // Registers POST /slow and never answers: each request waits its timeout_ms.
    let plugin = ScratchPlugin::wat(
        "silent",
        &registering_plugin(&[("POST", "/slow", 0)]),
        "wasm = \"plugin.wasm\"\ncapabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000\n[grants.\"transport.http.inbound\"]\ntimeout_ms = 1500",
    );
    let prepared = host.prepare(&plugin.manifest).unwrap();
    let usage = prepared.info.usage.clone();
    let (events, _received) = pulp_host::run_events(64, 1 << 20);
    let running = host.spawn(prepared, RunOptions::default(), events).unwrap();
    let rt = runtime();
    let server = rt
        .block_on(http.serve("127.0.0.1:0", &ListenerSettings::default()))
        .unwrap();
    let addr = server.local_addr();
    let t = Instant::now();
    // 405 (the path exists for POST) once pulp_init has registered the route.
    while rt
        .block_on(send(addr, "GET", "/slow", &[], b""))
        .unwrap()
        .status
        != 405
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "/slow never registered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = vec![b'x'; 100_000];
    let held_within = |min: u64, max: u64| {
        let t = Instant::now();
        while !(min..=max).contains(&usage.host_bytes()) {
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "host bytes {} not in {min}..={max}",
                usage.host_bytes()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    assert_eq!(usage.host_bytes(), 0);
    for hang_up in [false, true] {
        let mut conn = RawConn::connect(addr);
        conn.send(
            format!(
                "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        conn.send(&body).unwrap();
        // Once its step took the event, the host holds no copy of it while the
        // answer is awaited (the mailbox charged it while it was queued).
        std::thread::sleep(Duration::from_millis(100));
        held_within(0, 0);
        if hang_up {
            drop(conn);
        } else {
            let reply = conn.read_response(Duration::from_secs(3)).unwrap();
            assert_eq!(reply.status, 504, "{}", reply.text());
        }
        held_within(0, 0);
    }
    rt.block_on(server.shutdown(Duration::from_secs(1)));
    running.stop();
    running.join();
}

#[test]
fn a_plugin_that_never_answers_holds_at_most_max_pending_requests() {
    // Registers GET /silent and never answers: each request waits timeout_ms.
    let silent = ScratchPlugin::wat(
        "silent",
        &registering_plugin(&[("GET", "/silent", 0), ("POST", "/silent", 0)]),
        "wasm = \"plugin.wasm\"\ncapabilities = [\"transport.http.inbound\"]\ntick_ms = 3600000\n[grants.\"transport.http.inbound\"]\ntimeout_ms = 1500\nmax_pending = 2",
    );
    let pulp = start(&[], &[&silent.manifest]);
    under_attack(pulp, true, |pulp| {
        let mut waiting: Vec<RawConn> = (0..2)
            .map(|_| {
                let mut conn = RawConn::connect(pulp.addr);
                conn.send(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                conn
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // Two wait for their answer: a third is refused at once, before its
        // body is read (it never sends one).
        let mut third = RawConn::connect(pulp.addr);
        third
            .send(b"POST /silent HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            .unwrap();
        let refused = third.read_response(Duration::from_secs(1)).unwrap();
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert!(
            refused.text().contains("over max_pending = 2"),
            "{}",
            refused.text()
        );
        assert_eq!(
            refused.headers.get("retry-after").map(String::as_str),
            Some("1")
        );
        // The two end at the plugin's timeout_ms; then their slots are free again.
        for conn in &mut waiting {
            assert_eq!(
                conn.read_response(Duration::from_secs(3)).unwrap().status,
                504
            );
        }
        let mut later = RawConn::connect(pulp.addr);
        later
            .send(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(
            later.read_response(Duration::from_secs(3)).unwrap().status,
            504
        );
    });
}
