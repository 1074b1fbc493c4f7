#![no_main]
//! The journal record decoder never panics on damaged bytes, and what it accepts re-encodes to
//! exactly the same bytes.

use libfuzzer_sys::fuzz_target;
use wharf_queue::record::{decode, encode_key, encode_value};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = data[0] as usize % data.len();
    let (key, value) = data[1..].split_at(split.min(data.len() - 1));
    if let Ok(row) = decode(key, value) {
        assert_eq!(encode_key(&row), key);
        assert_eq!(encode_value(&row), value);
    }
});
