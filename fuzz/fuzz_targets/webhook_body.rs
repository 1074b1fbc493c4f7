#![no_main]
//! The webhook body decoder never panics, and whatever it accepts is well-formed.

use libfuzzer_sys::fuzz_target;
use wharf_ingest::decode::{Body, decode_webhook};

fuzz_target!(|data: &[u8]| {
    if let Ok(Body::Rows(rows)) = decode_webhook(data) {
        for row in rows {
            assert!(!row.key.is_empty(), "accepted an empty key");
            assert!(!row.table.is_empty(), "accepted an empty table");
            assert!(row.hlc > wharf_queue::Hlc::ZERO, "accepted the zero timestamp");
        }
    }
});
