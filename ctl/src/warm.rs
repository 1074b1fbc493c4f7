//! Touching the machine's free memory once before measuring.
//!
//! On a freshly booted virtual machine the first write to each page of guest memory is slow: the
//! hypervisor backs the page only then. Measured on the 2-core machine the bench was written on:
//! writing 3 GB through the page cache ran at 370 MB/s the first time and 3.4 GB/s the next, and
//! touching 6 GiB of new memory took 17.9 s the first time and 6.2 s the next. Durable ingest
//! writes every row into new page-cache pages, so on a cold machine it measured the hypervisor,
//! not the journal. Pages touched once and freed are the ones the kernel hands out next.

use std::time::{Duration, Instant};

const GIB: usize = 1 << 30;
const PAGE: usize = 4096;
/// Memory left untouched for the rest of the machine.
const SPARE_GIB: u64 = 2;

/// Writes one byte to every page of up to `gib` GiB (never more than the memory available less
/// 2 GiB), then frees it. Returns the GiB touched and the time it took.
pub fn touch_free_memory(gib: u64) -> (u64, Duration) {
    let started = Instant::now();
    let gib = gib.min(available_gib().saturating_sub(SPARE_GIB));
    let mut held = Vec::with_capacity(gib as usize);
    for _ in 0..gib {
        let mut chunk = vec![0u8; GIB];
        chunk.iter_mut().step_by(PAGE).for_each(|byte| *byte = 1);
        held.push(chunk);
    }
    drop(held);
    (gib, started.elapsed())
}

/// `MemAvailable` from `/proc/meminfo`, in whole GiB; 0 when it cannot be read.
fn available_gib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    parse_available_kib(&text).map_or(0, |kib| kib >> 20)
}

fn parse_available_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24684000 kB\nMemFree:        19000000 kB\nMemAvailable:   23000000 kB\n";
        assert_eq!(parse_available_kib(meminfo), Some(23_000_000));
        assert_eq!(parse_available_kib("MemTotal: 1 kB\n"), None);
    }
}
