//! Hybrid-logical-clock timestamps as CockroachDB prints them.
//!
//! The canonical text is `WALL.LOGICAL`: decimal wall-clock nanoseconds since the Unix epoch, a dot,
//! and the logical counter as exactly ten zero-padded digits (`1732615201500000000.0000000001`).
//! Ordering is (wall, logical). The parser is strict where the peer is lax: only decimal digits, no
//! sign, no hex or octal, and a logical part of exactly ten digits unless it is zero (`10.0` is
//! accepted because MOLT Replicator's tests and users send it).

use std::fmt;

use thiserror::Error;

/// A CockroachDB HLC timestamp. `Hlc::ZERO` sorts before every real timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    pub wall: u64,
    pub logical: u32,
}

/// Why a timestamp string was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HlcError {
    #[error("timestamp {0:?} is not WALL.LOGICAL (e.g. 1732615200000000000.0000000000)")]
    Shape(String),
    #[error("timestamp {0:?}: wall time must be decimal digits that fit in a signed 64-bit integer")]
    Wall(String),
    #[error("timestamp {0:?}: logical part must be exactly 10 digits (or zero) and at most 2147483647")]
    Logical(String),
    #[error("cloud-storage timestamp {0:?} is not 33 digits YYYYMMDDHHMMSS+9 ns+10 logical")]
    FileName(String),
}

/// Length of the binary form used in journal keys.
pub const HLC_BYTES: usize = 12;

impl Hlc {
    pub const ZERO: Hlc = Hlc { wall: 0, logical: 0 };

    pub fn new(wall: u64, logical: u32) -> Self {
        Hlc { wall, logical }
    }

    /// Parses the `WALL.LOGICAL` text form.
    pub fn parse(text: &str) -> Result<Hlc, HlcError> {
        let (wall, logical) = text.split_once('.').ok_or_else(|| HlcError::Shape(text.into()))?;
        if wall.is_empty() || logical.is_empty() || logical.contains('.') {
            return Err(HlcError::Shape(text.into()));
        }
        let wall = parse_digits(wall).filter(|w| *w <= i64::MAX as u64).ok_or_else(|| HlcError::Wall(text.into()))?;
        let logical_value =
            parse_digits(logical).filter(|l| *l <= i32::MAX as u64).ok_or_else(|| HlcError::Logical(text.into()))?;
        if logical.len() != 10 && logical_value != 0 {
            return Err(HlcError::Logical(text.into()));
        }
        Ok(Hlc { wall, logical: logical_value as u32 })
    }

    /// Parses the 33-digit form of cloud-storage file names:
    /// `YYYYMMDDHHMMSS` (UTC) + 9 digits of nanoseconds + 10 logical digits.
    pub fn parse_file_name(text: &str) -> Result<Hlc, HlcError> {
        let bad = || HlcError::FileName(text.into());
        if text.len() != 33 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let num = |range: std::ops::Range<usize>| text[range].parse::<u64>().map_err(|_| bad());
        let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
        let (hour, minute, second) = (num(8..10)?, num(10..12)?, num(12..14)?);
        let (nanos, logical) = (num(14..23)?, num(23..33)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
        if logical > i32::MAX as u64 {
            return Err(bad());
        }
        let days = days_from_civil(year as i64, month as i64, day as i64);
        if days < 0 {
            return Err(bad());
        }
        let secs = days as u64 * 86_400 + hour * 3600 + minute * 60 + second;
        let wall = secs.checked_mul(1_000_000_000).and_then(|w| w.checked_add(nanos)).ok_or_else(bad)?;
        Ok(Hlc { wall, logical: logical as u32 })
    }

    /// Big-endian bytes: their lexical order is the timestamp order.
    pub fn to_bytes(self) -> [u8; HLC_BYTES] {
        let mut out = [0u8; HLC_BYTES];
        out[..8].copy_from_slice(&self.wall.to_be_bytes());
        out[8..].copy_from_slice(&self.logical.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Hlc> {
        let wall = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let logical = u32::from_be_bytes(bytes.get(8..HLC_BYTES)?.try_into().ok()?);
        Some(Hlc { wall, logical })
    }

    /// The smallest timestamp after this one (the largest timestamp is its own).
    pub fn next(self) -> Hlc {
        match self.logical.checked_add(1) {
            Some(logical) => Hlc { wall: self.wall, logical },
            // The largest timestamp has no successor; it stays its own bound.
            None => {
                Hlc { wall: self.wall.saturating_add(1), logical: if self.wall == u64::MAX { u32::MAX } else { 0 } }
            }
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:010}", self.wall, self.logical)
    }
}

fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_round_trips() {
        for text in [
            "0.0000000000",
            "1586019746136571000.0000000000",
            "1586019746136571000.0000000001",
            "9223372036854775807.2147483647",
        ] {
            assert_eq!(Hlc::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn short_logical_is_accepted_only_when_zero() {
        assert_eq!(Hlc::parse("10.0").unwrap(), Hlc::new(10, 0));
        assert_eq!(Hlc::parse("1.00").unwrap(), Hlc::new(1, 0));
        assert!(matches!(Hlc::parse("1.5"), Err(HlcError::Logical(_))));
        assert!(matches!(Hlc::parse("1732615212000000000.12"), Err(HlcError::Logical(_))));
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for text in [
            "",
            ".",
            "1233",
            ".1233",
            "123.123",
            "2024-11-26T10:00:12Z",
            "+1.0000000000",
            "0x10.0000000000",
            "1_0.0000000000",
            "1.0000000000.0",
            "9223372036854775808.0000000000",
            "1.2147483648",
            " 1.0000000000",
        ] {
            assert!(Hlc::parse(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn byte_order_is_timestamp_order() {
        let a = Hlc::new(5, u32::MAX);
        let b = Hlc::new(6, 0);
        assert!(a < b && a.to_bytes() < b.to_bytes());
        assert_eq!(Hlc::from_bytes(&a.to_bytes()), Some(a));
    }

    #[test]
    fn cloud_storage_names_decode_to_unix_nanos() {
        let hlc = Hlc::parse_file_name("202004042351304139680000000000000").unwrap();
        assert_eq!(hlc.to_string(), "1586044290413968000.0000000000");
        let hlc = Hlc::parse_file_name("202411261000100000000000000000000").unwrap();
        assert_eq!(hlc.to_string(), "1732615210000000000.0000000000");
        assert!(Hlc::parse_file_name("20241126100010000000000000000000").is_err());
        assert!(Hlc::parse_file_name("202413261000100000000000000000000").is_err());
    }
}
