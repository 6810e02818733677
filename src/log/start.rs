//! The log-start-offset file: the first offset a log still holds, once
//! retention or [`crate::Log::delete_before`] has moved it past the first
//! segment's base offset.
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

use crate::error::{CorruptionKind, Error, Result};
use crate::io::Io;

/// File name of the log-start-offset file inside a log directory.
pub const START_OFFSET_FILE_NAME: &str = "start-offset";

const MAGIC: &[u8; 8] = b"ANNALSTO";
const VERSION: u32 = 1;
/// Size of the file in bytes.
pub(crate) const LEN: usize = 32;

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(START_OFFSET_FILE_NAME)
}

/// The file's bytes for `offset`.
pub(crate) fn encode(offset: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&b[0..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes the file's bytes; the error says what is wrong.
pub(crate) fn decode(b: &[u8]) -> std::result::Result<u64, CorruptionKind> {
    if b.len() != LEN {
        return Err(CorruptionKind::BadHeader(format!("start-offset file is {} bytes, expected {LEN}", b.len())));
    }
    if &b[0..8] != MAGIC {
        return Err(CorruptionKind::BadHeader("start-offset file has the wrong magic".into()));
    }
    let stored = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&b[0..24]);
    if stored != actual {
        return Err(CorruptionKind::BadHeader(format!(
            "start-offset file checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(CorruptionKind::BadHeader(format!("start-offset file has unsupported version {version}")));
    }
    if b[12..16] != [0; 4] || b[28..32] != [0; 4] {
        return Err(CorruptionKind::BadHeader("reserved bytes of the start-offset file are not zero".into()));
    }
    Ok(u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")))
}

/// Reads the start offset recorded in `dir`, `None` if there is no file. A
/// damaged file is corruption (reported, never ignored: ignoring it would
/// bring deleted offsets back or let offsets be reused).
pub(crate) fn read(dir: &Path) -> Result<Option<u64>> {
    let p = path(dir);
    let Some(bytes) = crate::segment::read_optional(&p)? else { return Ok(None) };
    decode(&bytes).map(Some).map_err(|kind| Error::Corruption { path: p, offset: 0, position: 0, kind })
}

/// Durably records `offset` as the log's start offset.
pub(crate) fn write(io: &dyn Io, dir: &Path, offset: u64) -> Result<()> {
    crate::segment::replace_file_durably(io, &path(dir), &encode(offset))
}
