#![no_main]
//! The journal decoders never panic on damaged bytes, and what they accept re-encodes to exactly
//! the same bytes: row entries (key and value) and the journal's log records.

use libfuzzer_sys::fuzz_target;
use wharf_queue::record::{
    LogRecord, RowSource, decode, decode_log, encode_key, encode_log_applied, encode_log_epoch, encode_log_resolved,
    encode_log_rows, encode_value,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    if data[0] & 1 == 0 {
        let split = data[1] as usize % (data.len() - 1);
        let (key, value) = data[2..].split_at(split.min(data.len() - 2));
        if let Ok(row) = decode(key, value) {
            assert_eq!(encode_key(&row), key);
            assert_eq!(encode_value(&row), value);
        }
        return;
    }
    match decode_log(&data[1..]) {
        Ok(LogRecord::Resolved { partition, hlc }) => assert_eq!(encode_log_resolved(&partition, hlc), &data[1..]),
        Ok(LogRecord::Applied { partition, hlc }) => assert_eq!(encode_log_applied(&partition, hlc), &data[1..]),
        Ok(LogRecord::Epoch { partition, epoch }) => assert_eq!(encode_log_epoch(&partition, epoch), &data[1..]),
        Ok(LogRecord::Rows { partition, entries }) => {
            let rows: Vec<_> = entries.iter().filter_map(|(k, v)| decode(k, v).ok()).collect();
            if rows.len() == entries.len() {
                let refs: Vec<_> = rows.iter().map(RowSource::row).collect();
                assert_eq!(encode_log_rows(&partition, &refs), &data[1..]);
            }
        }
        Err(_) => {}
    }
});
