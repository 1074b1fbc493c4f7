#![no_main]
//! HLC parsing never panics; an accepted timestamp prints back to text that parses to itself.

use libfuzzer_sys::fuzz_target;
use wharf_queue::Hlc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(hlc) = Hlc::parse(text) {
        assert_eq!(Hlc::parse(&hlc.to_string()), Ok(hlc));
    }
    if let Ok(hlc) = Hlc::parse_file_name(text) {
        assert!(hlc.wall > 0 || text.starts_with("1970"));
    }
});
