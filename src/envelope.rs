//! The envelope of every small metadata file (docs/FORMAT.md, "The small-file
//! envelope"): a magic naming the structure, its version, the length of its
//! body, and a CRC-32 over all of it. A structure implements [`Encode`] and
//! [`Decode`] for its body alone; this module frames it and checks the frame,
//! so that a new structure (consumer offsets, snapshots, ...) gets the same
//! checks as the others without writing them again.
//!
//! ```text
//!  0        8         10      12       16             16+N     20+N       24+N
//!  +--------+---------+-------+--------+--------------+--------+----------+
//!  | magic  | version | flags | length | body (N)     | CRC-32 | reserved |
//!  +--------+---------+-------+--------+--------------+--------+----------+
//! ```
//!
//! Little-endian; the CRC-32 (IEEE) covers bytes `[0, 16 + N)`; flags and
//! reserved are zero. Files written before a structure had an envelope are
//! told apart by their version (an older version than the structure's first
//! enveloped one) and decoded by [`Decode::decode_legacy`].

use crate::error::CorruptionKind;

/// Bytes of the envelope around a body: 16 before it, 8 after.
pub const OVERHEAD: usize = 24;

/// The largest body an envelope carries. Small files are read whole into
/// memory: a length above this is damage, not a large file.
pub const MAX_BODY: usize = 64 << 20;

/// A structure stored in an envelope: how its body is written.
pub trait Encode {
    /// The 8 bytes that name the structure (`ANNALSTO`, ...).
    const MAGIC: [u8; 8];
    /// The version this build writes.
    const VERSION: u16;

    /// Appends the body's bytes to `out`.
    fn encode_body(&self, out: &mut Vec<u8>);

    /// The whole file: envelope and body.
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64);
        self.encode_body(&mut body);
        wrap(Self::MAGIC, Self::VERSION, &body)
    }
}

/// The file of an envelope of `magic` and `version` around `body` (at most
/// [`MAX_BODY`] bytes).
pub fn wrap(magic: [u8; 8], version: u16, body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= MAX_BODY, "a body of {} bytes is too large for a small file", body.len());
    let mut out = Vec::with_capacity(OVERHEAD + body.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out
}

/// A structure stored in an envelope: how its body is read.
pub trait Decode: Sized {
    /// The 8 bytes that name the structure.
    const MAGIC: [u8; 8];
    /// What the structure is called in errors (`"start-offset file"`).
    const NAME: &'static str;
    /// The oldest version in an envelope; older versions are legacy files.
    const FIRST_ENVELOPED: u16;
    /// The newest version this build reads.
    const NEWEST: u16;

    /// Decodes a body of version `version` (between [`Decode::FIRST_ENVELOPED`]
    /// and [`Decode::NEWEST`]); the error says what is wrong with it.
    fn decode_body(version: u16, body: &[u8]) -> Result<Self, String>;

    /// Decodes a whole file of a version older than the envelope. By default
    /// there are none.
    fn decode_legacy(version: u16, bytes: &[u8]) -> Result<Self, CorruptionKind> {
        let _ = bytes;
        Err(bad::<Self>(format!("unsupported version {version}")))
    }

    /// Decodes a whole file, checking its envelope first: length, magic,
    /// version, flags, CRC, reserved bytes, in that order.
    fn decode(bytes: &[u8]) -> Result<Self, CorruptionKind> {
        if bytes.len() < 12 {
            return Err(bad::<Self>(format!("{} bytes is too short", bytes.len())));
        }
        if bytes[0..8] != Self::MAGIC {
            return Err(bad::<Self>("wrong magic".into()));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version < Self::FIRST_ENVELOPED {
            return Self::decode_legacy(version, bytes);
        }
        if version > Self::NEWEST {
            return Err(bad::<Self>(format!("unsupported version {version}")));
        }
        if bytes.len() < OVERHEAD {
            return Err(bad::<Self>(format!("{} bytes is too short", bytes.len())));
        }
        let body_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if body_len > MAX_BODY || bytes.len() != OVERHEAD + body_len {
            return Err(bad::<Self>(format!("{} bytes, but its envelope says {}", bytes.len(), OVERHEAD + body_len)));
        }
        let end = 16 + body_len;
        let stored = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&bytes[..end]);
        if stored != computed {
            return Err(bad::<Self>(format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")));
        }
        if bytes[10..12] != [0, 0] || bytes[end + 4..] != [0; 4] {
            return Err(bad::<Self>("flags or reserved bytes are not zero".into()));
        }
        Self::decode_body(version, &bytes[16..end]).map_err(bad::<Self>)
    }
}

/// The corruption of a structure's file, naming the structure.
pub fn bad<T: Decode>(why: String) -> CorruptionKind {
    CorruptionKind::BadHeader(format!("{}: {why}", T::NAME))
}

/// Reads little-endian fields from a body in order, failing on a short body.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("body of {} bytes ends inside a field at byte {}", self.bytes.len(), self.pos));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next `u8`.
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// The next little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    /// The next little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// The next little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// The next little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), String> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the last field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Pair(u32, u64);

    impl Encode for Pair {
        const MAGIC: [u8; 8] = *b"ANNALTST";
        const VERSION: u16 = 2;
        fn encode_body(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_le_bytes());
            out.extend_from_slice(&self.1.to_le_bytes());
        }
    }

    impl Decode for Pair {
        const MAGIC: [u8; 8] = *b"ANNALTST";
        const NAME: &'static str = "test file";
        const FIRST_ENVELOPED: u16 = 2;
        const NEWEST: u16 = 2;
        fn decode_body(_: u16, body: &[u8]) -> Result<Pair, String> {
            let mut r = Reader::new(body);
            let pair = Pair(r.u32()?, r.u64()?);
            r.finish()?;
            Ok(pair)
        }
    }

    #[test]
    fn golden_bytes_of_an_envelope() {
        let bytes = Pair(7, 0x0102_0304_0506_0708).encode();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"ANNALTST");
        expected.extend_from_slice(&[2, 0, 0, 0, 12, 0, 0, 0]);
        expected.extend_from_slice(&[7, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[0; 4]);
        assert_eq!(bytes, expected);
        assert_eq!(Pair::decode(&bytes), Ok(Pair(7, 0x0102_0304_0506_0708)));
    }

    #[test]
    fn every_damage_to_the_envelope_is_named() {
        let good = Pair(1, 2).encode();
        let why = |b: &[u8]| match Pair::decode(b) {
            Err(CorruptionKind::BadHeader(s)) => s,
            other => panic!("expected a bad header, got {other:?}"),
        };
        assert!(why(&good[..5]).contains("too short"));
        let mut b = good.clone();
        b[0] = b'X';
        assert!(why(&b).contains("wrong magic"));
        let mut b = good.clone();
        b[8] = 9;
        assert!(why(&b).contains("unsupported version 9"));
        b[8] = 1;
        assert!(why(&b).contains("unsupported version 1"), "older than the envelope, and no legacy decoder");
        let mut b = good.clone();
        b.push(0);
        assert!(why(&b).contains("envelope says"));
        let mut b = good.clone();
        b[12] = 200;
        assert!(why(&b).contains("envelope says"));
        let mut b = good.clone();
        b[17] ^= 1;
        assert!(why(&b).contains("checksum mismatch"));
        let mut b = good.clone();
        let n = b.len();
        b[n - 1] = 1;
        assert!(why(&b).contains("reserved"));
        // Non-zero flags, under a valid checksum.
        let mut b = good.clone();
        b[10] = 1;
        let crc = crc32fast::hash(&b[..n - 8]);
        b[n - 8..n - 4].copy_from_slice(&crc.to_le_bytes());
        assert!(why(&b).contains("flags or reserved"));
        assert!(why(&good[..good.len() - 1]).contains("envelope says"));
        assert!(why(&b"ANNALTST\x02\x00\x00\x00\x04\x00\x00\x00abcd\x00\x00\x00\x00\x00\x00\x00\x00"[..]).contains("checksum"));
        assert!(why(&short_body()).contains("ends inside a field"), "{}", why(&short_body()));
    }

    /// A valid envelope around a body too short for a `Pair`.
    fn short_body() -> Vec<u8> {
        wrap(*b"ANNALTST", 2, b"abcd")
    }
}
