//! The MessagePack requests host imports decode from guest memory:
//! `http_register`, `http_respond`, `sqlite_*` params and `docker_spawn`. Decoding never panics,
//! and every value that decodes survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulp_abi::docker::DockerSpawn;
use pulp_abi::http::{HttpResponse, HttpRoute};
use pulp_abi::sqlite::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(route) = rmp_serde::from_slice::<HttpRoute>(data) {
        let bytes = rmp_serde::to_vec_named(&route).expect("encodes");
        assert_eq!(
            rmp_serde::from_slice::<HttpRoute>(&bytes).expect("decodes"),
            route
        );
    }
    if let Ok(response) = rmp_serde::from_slice::<HttpResponse>(data) {
        let bytes = rmp_serde::to_vec_named(&response).expect("encodes");
        assert_eq!(
            rmp_serde::from_slice::<HttpResponse>(&bytes).expect("decodes"),
            response
        );
    }
    if let Ok(spawn) = rmp_serde::from_slice::<DockerSpawn>(data) {
        let bytes = rmp_serde::to_vec_named(&spawn).expect("encodes");
        assert_eq!(
            rmp_serde::from_slice::<DockerSpawn>(&bytes).expect("decodes"),
            spawn
        );
    }
    if let Ok(params) = rmp_serde::from_slice::<Vec<Value>>(data) {
        let bytes = rmp_serde::to_vec(&params).expect("encodes");
        let again: Vec<Value> = rmp_serde::from_slice(&bytes).expect("decodes");
        // NaN != NaN: compare the encodings instead of the values.
        assert_eq!(rmp_serde::to_vec(&again).expect("encodes"), bytes);
    }
});
