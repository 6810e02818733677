//! The log-start-offset file: the first offset a log still holds, once
//! retention or [`crate::Log::delete_before`] has moved it past the first
//! segment's base offset.
//!
//! Version 2 is an [`crate::envelope`] around the offset (a `u64`). Version 1,
//! written before the envelope existed, is still read:
//!
//! ```text
//!  0        8        12       16                24       28       32
//!  +--------+--------+--------+-----------------+--------+--------+
//!  |ANNALSTO|version | zero   | start offset    | CRC-32 | zero   |
//!  +--------+--------+--------+-----------------+--------+--------+
//! ```
//!
//! Little-endian; the CRC-32 (IEEE) covers bytes `[0, 24)`. The file is
//! replaced atomically (temporary file, fsync, rename, fsync of the directory),
//! so it is either the old or the new offset, never a mix.

use std::path::{Path, PathBuf};

use crate::envelope::{Decode, Encode, Reader, bad};
use crate::error::{CorruptionKind, Result};
use crate::io::Io;

/// File name of the log-start-offset file inside a log directory.
pub const START_OFFSET_FILE_NAME: &str = "start-offset";

const MAGIC: [u8; 8] = *b"ANNALSTO";
/// Size of a version 1 file in bytes.
const V1_LEN: usize = 32;

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(START_OFFSET_FILE_NAME)
}

/// The recorded start offset, as the file stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartOffset(pub u64);

impl Encode for StartOffset {
    const MAGIC: [u8; 8] = MAGIC;
    const VERSION: u16 = 2;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
}

impl Decode for StartOffset {
    const MAGIC: [u8; 8] = MAGIC;
    const NAME: &'static str = "start-offset file";
    const FIRST_ENVELOPED: u16 = 2;
    const NEWEST: u16 = 2;

    fn decode_body(_version: u16, body: &[u8]) -> std::result::Result<StartOffset, String> {
        let mut r = Reader::new(body);
        let offset = r.u64()?;
        r.finish()?;
        Ok(StartOffset(offset))
    }

    /// Version 1: 32 bytes, checked in order: length, magic, CRC, version,
    /// reserved bytes.
    fn decode_legacy(version: u16, b: &[u8]) -> std::result::Result<StartOffset, CorruptionKind> {
        if b.len() != V1_LEN {
            return Err(bad::<Self>(format!("{} bytes, expected {V1_LEN}", b.len())));
        }
        let stored = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"));
        let actual = crc32fast::hash(&b[0..24]);
        if stored != actual {
            return Err(bad::<Self>(format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")));
        }
        if version != 1 || b[10..12] != [0; 2] {
            return Err(bad::<Self>(format!("unsupported version {}", u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")))));
        }
        if b[12..16] != [0; 4] || b[28..32] != [0; 4] {
            return Err(bad::<Self>("reserved bytes are not zero".into()));
        }
        Ok(StartOffset(u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"))))
    }
}

/// The file's bytes for `offset`.
pub(crate) fn encode(offset: u64) -> Vec<u8> {
    StartOffset(offset).encode()
}


/// Reads the start offset recorded in `dir`, `None` if there is no file. A
/// damaged file is corruption (reported, never ignored: ignoring it would
/// bring deleted offsets back or let offsets be reused).
pub(crate) fn read(io: &dyn Io, dir: &Path) -> Result<Option<u64>> {
    Ok(crate::durable::read_decoded::<StartOffset>(io, &path(dir))?.map(|s| s.0))
}

/// Durably records `offset` as the log's start offset.
pub(crate) fn write(io: &dyn Io, dir: &Path, offset: u64) -> Result<()> {
    crate::durable::replace_file_durably(io, &path(dir), &encode(offset))
}
