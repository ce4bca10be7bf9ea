//! Manifest parsing: any text is a manifest or an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match pulp_host::Manifest::parse(Path::new("fuzz.toml"), text) {
            Ok(m) => assert!(!m.name.is_empty()),
            Err(e) => assert!(e.to_string().starts_with("fuzz.toml")),
        }
    }
});
