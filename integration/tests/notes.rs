//! The notes app (HTTP + SQLite) through the real binary, including a write
//! that was acknowledged surviving `kill -9` of the host.

use pulp_integration::http_client::{request, runtime, send, wait_until_serving};
use pulp_integration::{manifest, plugin_wasm, text, RunningPulp};
use serde_json::{json, Value};

fn start(data: &std::path::Path) -> RunningPulp {
    plugin_wasm("notes");
    let pulp = RunningPulp::start(
        &["--data-dir", data.to_str().unwrap()],
        &[&manifest("notes")],
    );
    wait_until_serving(pulp.addr, "/notes");
    pulp
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[test]
fn create_read_list_delete() {
    let data = tempfile::tempdir().unwrap();
    let pulp = start(data.path());
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = json!({"title": format!("t{i}"), "body": format!("b{i}")}).to_string();
        let r = request(
            pulp.addr,
            "POST",
            "/notes",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(json_of(&r.body)["id"].as_i64().unwrap());
    }
    let r = request(pulp.addr, "GET", &format!("/notes/{}", ids[2]), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        json_of(&r.body),
        json!({"id": ids[2], "title": "t2", "body": "b2"})
    );

    let page = json_of(&request(pulp.addr, "GET", "/notes?limit=2", &[], b"").body);
    assert_eq!(page["notes"].as_array().unwrap().len(), 2);
    let after = page["next_after"].as_i64().unwrap();
    let next = json_of(
        &request(
            pulp.addr,
            "GET",
            &format!("/notes?limit=10&after={after}"),
            &[],
            b"",
        )
        .body,
    );
    let titles: Vec<&str> = next["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["t2", "t3", "t4"]);
    assert!(next["next_after"].is_null());

    assert_eq!(
        request(pulp.addr, "DELETE", &format!("/notes/{}", ids[0]), &[], b"").status,
        204
    );
    assert_eq!(
        request(pulp.addr, "GET", &format!("/notes/{}", ids[0]), &[], b"").status,
        404
    );
    assert_eq!(
        request(pulp.addr, "DELETE", &format!("/notes/{}", ids[0]), &[], b"").status,
        404
    );
    let out = pulp.stop();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn bad_input_is_400_with_a_message() {
    let data = tempfile::tempdir().unwrap();
    let pulp = start(data.path());
    for (body, needle) in [
        (&b"{not json"[..], "not valid JSON"),
        (br#"{"title": "only a title"}"#, "body"),
        (br#"{"title": 3, "body": "x"}"#, "title"),
    ] {
        let r = request(pulp.addr, "POST", "/notes", &[], body);
        assert_eq!(r.status, 400, "{}", r.text());
        let err = json_of(&r.body)["error"].as_str().unwrap().to_string();
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{err:?} should mention {needle}"
        );
    }
    assert_eq!(
        request(pulp.addr, "GET", "/notes/abc", &[], b"").status,
        400
    );
    assert_eq!(
        request(pulp.addr, "GET", "/notes?limit=zero", &[], b"").status,
        400
    );
}

#[test]
fn every_acknowledged_note_survives_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let pulp = start(data.path());
    let addr = pulp.addr;
    let rt = runtime();
    // Writers keep posting while the host is killed under them.
    let writers = rt.spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0.. {
            let body = json!({"title": format!("n{i}"), "body": "durable"}).to_string();
            match send(addr, "POST", "/notes", &[], body.as_bytes()).await {
                Ok(r) if r.status == 201 => {
                    acknowledged.push((json_of(&r.body)["id"].as_i64().unwrap(), format!("n{i}")))
                }
                Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                Err(_) => break, // the host is gone
            }
        }
        acknowledged
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    std::process::Command::new("kill")
        .args(["-KILL", &pulp.pid().to_string()])
        .status()
        .unwrap();
    let acknowledged = rt.block_on(writers).unwrap();
    drop(pulp);
    assert!(
        acknowledged.len() > 10,
        "only {} writes before the kill",
        acknowledged.len()
    );

    let again = start(data.path());
    for (id, title) in &acknowledged {
        let r = request(again.addr, "GET", &format!("/notes/{id}"), &[], b"");
        assert_eq!(r.status, 200, "note {id} was acknowledged, then lost");
        assert_eq!(json_of(&r.body)["title"], title.as_str());
    }
    println!(
        "{{\"case\":\"kill_9_durability\",\"acknowledged_writes\":{}}}",
        acknowledged.len()
    );
}
