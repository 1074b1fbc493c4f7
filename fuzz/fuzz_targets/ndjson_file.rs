#![no_main]
//! The ndjson decoder never panics, and accepted rows carry the file's table.

use libfuzzer_sys::fuzz_target;
use wharf_ingest::decode::{Body, Feed, decode_ndjson};

fuzz_target!(|data: &[u8]| {
    for feed in [Feed::File("t"), Feed::Query("t")] {
        if let Ok(Body::Rows { messages, .. }) = decode_ndjson(data, feed) {
            assert!(messages.iter().all(|r| r.table == "t"));
        }
    }
});
