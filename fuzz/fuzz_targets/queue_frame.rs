#![no_main]
//! The queue protocol's frame decoder never panics or over-allocates on hostile bytes, what it
//! accepts re-encodes to exactly the same bytes, and the decoder that keeps a `Rows` frame's
//! buffer agrees with it on every input.

use libfuzzer_sys::fuzz_target;
use wharf_queue::wire::{decode, decode_owned, encode, frame_len};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = frame_len(data[..4].try_into().expect("4 bytes"));
    }
    let decoded = decode(data);
    assert_eq!(decode_owned(&mut data.to_vec()), decoded);
    if let Ok(message) = decoded {
        assert_eq!(&encode(&message)[4..], data);
    }
});
