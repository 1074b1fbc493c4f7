#![no_main]
//! The ndjson decoder never panics, and accepted rows carry the file's table.

use libfuzzer_sys::fuzz_target;
use wharf_ingest::decode::{Body, decode_ndjson};

fuzz_target!(|data: &[u8]| {
    if let Ok(Body::Rows(rows)) = decode_ndjson(data, "t") {
        assert!(rows.iter().all(|r| r.table == "t" && !r.key.is_empty()));
    }
});
