//! The archive tier's storage layer: where sealed segments go when they leave
//! local disk.
//!
//! An [`ArchiveStore`] keeps immutable objects (whole segment files) under
//! string keys, and reads them back by byte range. Two stores implement it:
//!
//! - [`LocalDirArchive`]: a directory, written crash-safely (temporary file,
//!   fsync, rename, directory fsync).
//! - `ObjectStoreArchive` (cargo feature `object-store`): any
//!   [`object_store`](https://docs.rs/object_store) store, with a constructor
//!   for S3-compatible endpoints.
//!
//! Both pass the same test suite (`tests/archive.rs`).
//!
//! # Keys
//!
//! A key is a `/`-separated path of components made of ASCII letters, digits,
//! `.`, `_` and `-`; no component is empty or starts with `.` (so `..`, `.` and
//! absolute paths are refused, and names starting with `.` stay free for a
//! store's temporary files); at most [`MAX_KEY_LEN`] bytes. An invalid key is
//! refused with [`ArchiveErrorKind::InvalidKey`](crate::ArchiveErrorKind) before
//! anything is sent or written. Segments are stored under
//! [`segment_key`]: `{topic}/{partition}/{base_offset:020}.seg`.
//!
//! # Verifying an upload before deleting the local copy
//!
//! [`ArchiveStore::put`] and [`ArchiveStore::put_file`] return the
//! [`ObjectDigest`] (size and CRC-32) of the bytes they read and sent, computed
//! while reading, so a 1 GiB segment is read once and never held in memory.
//! [`ArchiveStore::verify`] then reads the stored object back with ranged reads
//! of [`VERIFY_CHUNK`] bytes and compares its size and CRC-32 with the digest;
//! a difference is an [`ArchiveErrorKind::Integrity`](crate::ArchiveErrorKind)
//! error. The local copy may be deleted only once `verify` returned `Ok`:
//!
//! ```
//! use annal::archive::{segment_key, ArchiveStore, LocalDirArchive, ObjectDigest};
//!
//! let dir = tempfile::tempdir()?;
//! let segment = dir.path().join("00000000000000000000.log");
//! std::fs::write(&segment, b"sealed segment bytes")?;
//!
//! let store = LocalDirArchive::open(dir.path().join("archive"))?;
//! let key = segment_key("orders", 0, 0);
//! let digest = store.put_file(&key, &segment)?; // size and CRC-32 of what was read
//! store.verify(&key, &digest)?;                  // re-read from the store and compared
//! assert_eq!(ObjectDigest::of_file(&segment)?, digest);
//! std::fs::remove_file(&segment)?;               // only now
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Store-side checksums are not relied on: an S3 ETag is the MD5 of the
//! content only for single-part uploads (a multipart upload's is a digest of
//! the parts' digests), and a directory keeps none. Reading the object back
//! costs one download of it, and checks what a later read will return rather
//! than what the store says it received. The digest is worth keeping (in the
//! archive's manifest, for example) to check later reads against.

mod key;
mod local;
#[cfg(feature = "object-store")]
mod object;

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use crate::error::{ArchiveErrorKind, Error, IoContext, Result};

pub use key::{MAX_KEY_LEN, is_valid_key, segment_key};
pub use local::LocalDirArchive;
#[cfg(feature = "object-store")]
pub use object::{ObjectStoreArchive, ObjectStoreOptions, S3Config};

/// How many bytes [`ArchiveStore::verify`] reads per ranged request.
pub const VERIFY_CHUNK: u64 = 8 << 20;

/// The size and CRC-32 (the IEEE polynomial, as `crc32fast` computes it) of
/// an object's content: what an upload sent, or what a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectDigest {
    /// Length of the content in bytes.
    pub size: u64,
    /// CRC-32 of the content.
    pub crc32: u32,
}

impl ObjectDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> ObjectDigest {
        let mut builder = DigestBuilder::default();
        builder.update(bytes);
        builder.finish()
    }

    /// The digest of a file's content, read sequentially in 1 MiB chunks.
    pub fn of_file(path: &Path) -> Result<ObjectDigest> {
        let mut file = std::fs::File::open(path).ctx("open", path)?;
        digest_chunks(&mut file, path, |_, _| Ok(()))
    }
}

/// Reads the file `source` (at `path`) to its end in 1 MiB chunks, passing
/// each with its position to `sink`, and returns the digest of it all.
pub(crate) fn digest_chunks(
    source: &mut impl Read,
    path: &Path,
    mut sink: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<ObjectDigest> {
    let mut builder = DigestBuilder::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read_some(source, &mut buf).ctx("read", path)?;
        if n == 0 {
            return Ok(builder.finish());
        }
        sink(&buf[..n], builder.size)?;
        builder.update(&buf[..n]);
    }
}

impl fmt::Display for ObjectDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes, crc32 {:#010x}", self.size, self.crc32)
    }
}

/// Computes an [`ObjectDigest`] over bytes fed in pieces.
#[derive(Debug, Default)]
pub(crate) struct DigestBuilder {
    hasher: crc32fast::Hasher,
    size: u64,
}

impl DigestBuilder {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub(crate) fn finish(self) -> ObjectDigest {
        ObjectDigest { size: self.size, crc32: self.hasher.finalize() }
    }
}

/// What a store tells about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The store's entity tag, if it keeps one (S3 does, a directory does
    /// not). It changes when the object is replaced; it is not a checksum
    /// annal relies on (see the [module documentation](self)).
    pub e_tag: Option<String>,
}

/// A store of immutable objects (archived segments) under string keys.
///
/// Every method is blocking and may be called from several threads at once.
/// A failure is an [`Error::Archive`] whose [`ArchiveErrorKind`] says what a
/// caller can do about it (an [`Error::Io`] for a local file that could not be
/// read or written). An object is either entirely present under its key or
/// absent: no store ever exposes part of an upload under the final key.
pub trait ArchiveStore: Send + Sync + fmt::Debug {
    /// A description of the store for messages (`dir /var/archive`,
    /// `s3 bucket logs at https://...`).
    fn name(&self) -> &str;

    /// Where the store is, in a form a later process can find it again by: a
    /// store of topics records it in its metadata ([`crate::TopicStore::open`])
    /// so that it, and the command-line tool, reach the archive without
    /// being told again. `file:///absolute/path` for a local directory,
    /// `s3://BUCKET?endpoint=URL&region=REGION` for S3 (never credentials).
    /// `None` (the default) for a store that cannot be named that way.
    fn location(&self) -> Option<String> {
        None
    }

    /// Stores `bytes` under `key`, replacing any object there. Meant for small
    /// objects: the bytes are sent in one request. Returns their digest.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<ObjectDigest>;

    /// Stores the content of the file at `path` under `key`, replacing any
    /// object there, reading the file once and holding at most a bounded
    /// number of bytes in memory (large files go up in parts). Returns the
    /// digest of the bytes read, to be checked with [`ArchiveStore::verify`].
    /// If it fails, the object that was under `key` before (if any) stays,
    /// and no part of the new content is visible under `key`.
    fn put_file(&self, key: &str, path: &Path) -> Result<ObjectDigest>;

    /// Reads bytes `range` of the object under `key`. An empty range returns
    /// no bytes (if the object exists and the range starts within it or at its
    /// end); a reversed range, or one that reaches past the end of the object,
    /// is an [`ArchiveErrorKind::InvalidRange`] error.
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>>;

    /// The object's metadata, or `None` if no object is under `key`.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Every object whose key starts with `prefix` (a plain string prefix:
    /// `"t/0"` matches `t/0/...` and `t/01/...`; `""` matches everything),
    /// sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Removes the object under `key`. Removing a key that holds no object
    /// succeeds, as in S3.
    fn delete(&self, key: &str) -> Result<()>;

    /// Reads the whole object under `key` (a `head`, then one ranged read; a
    /// concurrent replacement of the object can make them disagree).
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        match self.head(key)? {
            Some(meta) => self.get_range(key, 0..meta.size),
            None => Err(not_found(self.name(), key)),
        }
    }

    /// Checks that the object under `key` has exactly the size and CRC-32 of
    /// `expected` (what `put` or `put_file` returned), by reading it back in
    /// ranged reads of [`VERIFY_CHUNK`] bytes. A difference is an
    /// [`ArchiveErrorKind::Integrity`] error; a missing object
    /// [`ArchiveErrorKind::NotFound`].
    fn verify(&self, key: &str, expected: &ObjectDigest) -> Result<()> {
        verify_by_reading(self, key, expected)
    }
}

/// The default [`ArchiveStore::verify`]: one `head`, then ranged reads.
fn verify_by_reading<S: ArchiveStore + ?Sized>(store: &S, key: &str, expected: &ObjectDigest) -> Result<()> {
    let Some(meta) = store.head(key)? else {
        return Err(not_found(store.name(), key));
    };
    if meta.size != expected.size {
        return Err(archive_error(
            store.name(),
            key,
            ArchiveErrorKind::Integrity,
            format!("the stored object has {} bytes, the upload had {}", meta.size, expected.size),
        ));
    }
    let mut builder = DigestBuilder::default();
    let mut pos = 0;
    while pos < meta.size {
        let end = (pos + VERIFY_CHUNK).min(meta.size);
        let chunk = match store.get_range(key, pos..end) {
            Ok(chunk) => chunk,
            // The object shrank (was replaced) while it was being read.
            Err(e) if e.archive_kind() == Some(ArchiveErrorKind::InvalidRange) => {
                return Err(archive_error(
                    store.name(),
                    key,
                    ArchiveErrorKind::Integrity,
                    format!("the stored object ends before byte {end} while being verified: {e}"),
                ));
            }
            Err(e) => return Err(e),
        };
        builder.update(&chunk);
        pos = end;
    }
    let found = builder.finish();
    if found != *expected {
        return Err(archive_error(
            store.name(),
            key,
            ArchiveErrorKind::Integrity,
            format!("the stored object is {found}, the upload was {expected}"),
        ));
    }
    Ok(())
}

/// An [`Error::Archive`] without an underlying error.
pub(crate) fn archive_error(store: &str, key: &str, kind: ArchiveErrorKind, message: impl Into<String>) -> Error {
    Error::Archive { store: store.to_owned(), key: key.to_owned(), kind, message: message.into(), source: None }
}

/// The [`ArchiveErrorKind::NotFound`] error for `key`.
pub(crate) fn not_found(store: &str, key: &str) -> Error {
    archive_error(store, key, ArchiveErrorKind::NotFound, "no object under this key")
}

/// Checks that `range` is not reversed and lies within an object of `size` bytes.
pub(crate) fn check_range(store: &str, key: &str, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end {
        return Err(archive_error(
            store,
            key,
            ArchiveErrorKind::InvalidRange,
            format!("range {}..{} is reversed", range.start, range.end),
        ));
    }
    if range.end > size {
        return Err(archive_error(
            store,
            key,
            ArchiveErrorKind::InvalidRange,
            format!("range {}..{} reaches past the end of the object ({size} bytes)", range.start, range.end),
        ));
    }
    Ok(())
}

/// Reads as many bytes as fit into `buf` (fewer only at the end of the
/// source), retrying interrupted reads.
pub(crate) fn read_some(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
