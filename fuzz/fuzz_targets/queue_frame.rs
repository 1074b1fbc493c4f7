#![no_main]
//! The queue protocol's frame decoder never panics or over-allocates on hostile bytes, and what
//! it accepts re-encodes to exactly the same bytes.

use libfuzzer_sys::fuzz_target;
use wharf_queue::wire::{decode, encode, frame_len};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = frame_len(data[..4].try_into().expect("4 bytes"));
    }
    if let Ok(message) = decode(data) {
        assert_eq!(&encode(&message)[4..], data);
    }
});
