//! Compressed bodies and files: what CockroachDB sends with `compression = 'gzip' | 'zstd'`
//! (`Content-Encoding` on a webhook request, a `.gz` or `.zst` suffix on a cloud-storage file).
//! The decoded bytes are read in pieces, so the caller checks the decoded size (`--bodyLimit`)
//! as it grows: a small bomb never inflates past the limit in memory.

use std::io::Read;

/// How a body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

/// The encodings accepted, for refusals.
pub const ACCEPTED: &str = "gzip, zstd (or none)";

impl Encoding {
    /// From a `Content-Encoding` header (absent or `identity`: not encoded). One encoding only:
    /// a list (stacked encodings) or an unknown name is refused with the reason (415).
    pub fn from_header(value: Option<&[u8]>) -> Result<Encoding, String> {
        let Some(value) = value else { return Ok(Encoding::Identity) };
        let text = std::str::from_utf8(value).map_err(|_| "Content-Encoding is not text".to_owned())?.trim();
        match text.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            other if other.contains(',') => {
                Err(format!("Content-Encoding {text:?} stacks encodings; one of {ACCEPTED} is accepted"))
            }
            _ => Err(format!("Content-Encoding {text:?} is not accepted; use one of {ACCEPTED}")),
        }
    }

    /// From a cloud-storage file name's compression suffix (`.gz`, `.zst`), with the name left.
    pub fn from_file_name(name: &str) -> (&str, Encoding) {
        if let Some(stem) = name.strip_suffix(".gz") {
            (stem, Encoding::Gzip)
        } else if let Some(stem) = name.strip_suffix(".zst") {
            (stem, Encoding::Zstd)
        } else {
            (name, Encoding::Identity)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
        }
    }

    /// A reader of the decoded bytes of `raw` (gzip members and zstd frames may be concatenated).
    pub fn decoder(self, raw: &[u8]) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(match self {
            Encoding::Identity => Box::new(raw),
            Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Encoding::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(raw)?),
        })
    }
}

/// Why a compressed body cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// It decodes to more than the limit (413).
    TooLarge { limit: u64 },
    /// Truncated or corrupt (400).
    Corrupt(String),
}

/// Decodes `raw` whole, refusing past `limit` decoded bytes (for callers without an async
/// budget to grow, such as the fuzz target; the server reads [`Encoding::decoder`] in pieces).
pub fn decode(encoding: Encoding, raw: &[u8], limit: u64) -> Result<Vec<u8>, Undecodable> {
    let corrupt =
        |e: std::io::Error| Undecodable::Corrupt(format!("the {} body cannot be decoded: {e}", encoding.name()));
    let mut out = Vec::new();
    encoding.decoder(raw).map_err(corrupt)?.take(limit + 1).read_to_end(&mut out).map_err(corrupt)?;
    if out.len() as u64 > limit {
        return Err(Undecodable::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn headers_name_one_encoding_and_anything_else_is_refused_with_what_is_accepted() {
        assert_eq!(Encoding::from_header(None), Ok(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some(b"identity")), Ok(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some(b" GZIP ")), Ok(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some(b"zstd")), Ok(Encoding::Zstd));
        for refused in [&b"br"[..], b"deflate", b"gzip, zstd", b"gzip,gzip"] {
            let why = Encoding::from_header(Some(refused)).unwrap_err();
            assert!(why.contains(ACCEPTED), "{why}");
        }
        assert!(Encoding::from_header(Some(b"gzip, gzip")).unwrap_err().contains("stacks"));
    }

    #[test]
    fn file_suffixes_name_the_encoding() {
        assert_eq!(Encoding::from_file_name("a.ndjson.gz"), ("a.ndjson", Encoding::Gzip));
        assert_eq!(Encoding::from_file_name("a.ndjson.zst"), ("a.ndjson", Encoding::Zstd));
        assert_eq!(Encoding::from_file_name("a.ndjson"), ("a.ndjson", Encoding::Identity));
    }

    #[test]
    fn bodies_decode_and_concatenated_members_and_frames_are_read_whole() {
        let mut two = gzip(b"{\"a\":");
        two.extend(gzip(b"1}"));
        assert_eq!(decode(Encoding::Gzip, &two, 100).unwrap(), b"{\"a\":1}");
        let mut frames = zstd::stream::encode_all(&b"{\"a\":"[..], 1).unwrap();
        frames.extend(zstd::stream::encode_all(&b"1}"[..], 1).unwrap());
        assert_eq!(decode(Encoding::Zstd, &frames, 100).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_damage_is_named() {
        let bomb = gzip(&vec![b' '; 64 << 20]);
        assert!(bomb.len() < 128 << 10, "{} bytes", bomb.len());
        assert_eq!(decode(Encoding::Gzip, &bomb, 1 << 20), Err(Undecodable::TooLarge { limit: 1 << 20 }));
        let whole = gzip(b"{\"payload\":[]}");
        let Err(Undecodable::Corrupt(why)) = decode(Encoding::Gzip, &whole[..whole.len() - 6], 100) else {
            panic!("a truncated body decoded")
        };
        assert!(why.starts_with("the gzip body cannot be decoded"), "{why}");
        assert!(matches!(decode(Encoding::Zstd, b"not zstd at all", 100), Err(Undecodable::Corrupt(_))));
    }
}
