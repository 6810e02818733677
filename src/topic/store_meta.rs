//! The store's own metadata, `store.meta` in its root directory: where its
//! archive is, so that a later open (and the command-line tool) reaches the
//! archived segments without being told again.
//!
//! A [`crate::envelope`] (magic `ANNALSTM`, version 1) around:
//!
//! ```text
//!  0  4  location_len  u32, at most 4096; 0 = no archive recorded
//!  4  N  location      UTF-8: what ArchiveStore::location reported
//! ```
//!
//! Replaced atomically (temporary file, fsync, rename, directory fsync).
//! docs/FORMAT.md ("Store metadata") is the reference.

use std::path::{Path, PathBuf};

use crate::envelope::{Decode, Encode, Reader};
use crate::error::Result;
use crate::io::Io;

/// File name of the store's metadata in its root directory.
pub const STORE_META_FILE_NAME: &str = "store.meta";

/// Longest archive location recorded, in bytes.
pub const MAX_LOCATION_LEN: usize = 4096;

const MAGIC: [u8; 8] = *b"ANNALSTM";

/// The contents of `store.meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreMeta {
    /// Where the store's archive is ([`crate::ArchiveStore::location`]), if
    /// one was ever configured.
    pub archive_location: Option<String>,
}

impl Encode for StoreMeta {
    const MAGIC: [u8; 8] = MAGIC;
    const VERSION: u16 = 1;

    fn encode_body(&self, out: &mut Vec<u8>) {
        let location = self.archive_location.as_deref().unwrap_or("");
        out.extend_from_slice(&(location.len() as u32).to_le_bytes());
        out.extend_from_slice(location.as_bytes());
    }
}

impl Decode for StoreMeta {
    const MAGIC: [u8; 8] = MAGIC;
    const NAME: &'static str = "store.meta";
    const FIRST_ENVELOPED: u16 = 1;
    const NEWEST: u16 = 1;

    fn decode_body(_version: u16, body: &[u8]) -> std::result::Result<StoreMeta, String> {
        let mut r = Reader::new(body);
        let len = r.u32()? as usize;
        if len > MAX_LOCATION_LEN {
            return Err(format!("an archive location of {len} bytes (at most {MAX_LOCATION_LEN})"));
        }
        let location = std::str::from_utf8(r.take(len)?).map_err(|_| "the archive location is not UTF-8")?;
        r.finish()?;
        Ok(StoreMeta { archive_location: (!location.is_empty()).then(|| location.to_owned()) })
    }
}

pub(crate) fn path(root: &Path) -> PathBuf {
    root.join(STORE_META_FILE_NAME)
}

/// Reads the store's metadata; no file means nothing recorded. A damaged
/// file is [`crate::Error::Corruption`] naming it.
pub fn read(root: &Path) -> Result<StoreMeta> {
    read_with(&crate::io::OsIo, root)
}

/// [`read`] through `io`.
pub(crate) fn read_with(io: &dyn Io, root: &Path) -> Result<StoreMeta> {
    Ok(crate::durable::read_decoded::<StoreMeta>(io, &path(root))?.unwrap_or_default())
}

/// Durably replaces the store's metadata.
pub(crate) fn write(io: &dyn Io, root: &Path, meta: &StoreMeta) -> Result<()> {
    crate::durable::replace_file_durably(io, &path(root), &meta.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_store_meta() {
        let meta = StoreMeta { archive_location: Some("file:///var/archive".into()) };
        let mut expected = b"ANNALSTM".to_vec();
        expected.extend_from_slice(&[1, 0, 0, 0]); // version 1, flags 0
        expected.extend_from_slice(&23u32.to_le_bytes()); // body length
        expected.extend_from_slice(&19u32.to_le_bytes()); // location length
        expected.extend_from_slice(b"file:///var/archive");
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[0; 4]);
        assert_eq!(meta.encode(), expected);
        assert_eq!(StoreMeta::decode(&expected), Ok(meta));
        let none = StoreMeta::default();
        assert_eq!(none.encode().len(), 24 + 4);
        assert_eq!(StoreMeta::decode(&none.encode()), Ok(none));
    }
}
