//! The file-system seam. Every call that makes data durable, changes which
//! files or directories exist, or reads what recovery trusts goes through
//! [`Io`], so that tests can inject failures (a failed fsync, a full disk, a
//! failed or interrupted read) without touching production code paths:
//! creating, opening, reading, listing, syncing, renaming and removing files
//! and directories. Outside it are the lock files (created and `flock`ed
//! directly: they hold no data), the stat probes that only ask whether a path
//! exists or is a directory before one of the calls above, the archive
//! stores (an `ArchiveStore` is a seam of its own), and the inspection tools
//! (`annal dump`, `annal verify`), which read with the real file system.
//!
//! Writes of record bytes go through the memory map (see `mmap.rs`) and are
//! made durable by [`Io::sync_data`] on the segment's file: on Linux `fdatasync`
//! writes back pages dirtied through a shared mapping as well as by `write(2)`.

use crate::sync::MutexExt;
use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// File-system operations annal needs to be able to fail on purpose.
///
/// The default is [`OsIo`]. Implementations must be thread-safe.
pub trait Io: Send + Sync + Debug {
    /// Creates (or truncates to empty) a file and opens it for reading and
    /// writing. annal creates files only under temporary names and renames
    /// them into place.
    fn create(&self, path: &Path) -> io::Result<File>;
    /// Writes all of `buf` at position `pos` (segment headers and index files;
    /// records are written through the memory map).
    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Reserves disk blocks so that `file` is at least `len` bytes long and
    /// writes to it through a memory map cannot fail for lack of space.
    fn allocate(&self, file: &File, len: u64) -> io::Result<()>;
    /// Flushes the file's data (and the metadata needed to read it) to disk.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// Flushes the file's data and all of its metadata (size included).
    fn sync_all(&self, file: &File) -> io::Result<()>;
    /// Flushes a directory, so that files created, renamed or removed in it survive a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Sets the file's length (used to trim a sealed segment).
    fn set_len(&self, file: &File, len: u64) -> io::Result<()>;
    /// Renames a file atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Reads into `buf` from position `pos` of `file`, as `pread(2)`: the
    /// bytes read, fewer at the end of the file, 0 past it. Recovery, index
    /// loading and the read-only scan read segment files through it.
    fn read_at(&self, file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(file, buf, pos)
    }

    /// The first position at or after `pos` that holds data (`SEEK_DATA`),
    /// or `None` if there is none before the end of the file (`ENXIO`).
    fn seek_data(&self, file: &File, pos: u64) -> io::Result<Option<u64>> {
        use rustix::fs::{SeekFrom, seek};
        match seek(file, SeekFrom::Data(pos)) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e == rustix::io::Errno::NXIO => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The first position at or after `pos` in a hole (`SEEK_HOLE`): the end
    /// of the file if there is no hole before it.
    fn seek_hole(&self, file: &File, pos: u64) -> io::Result<u64> {
        use rustix::fs::{SeekFrom, seek};
        Ok(seek(file, SeekFrom::Hole(pos))?)
    }

    /// Reads a whole small file (index files, the start offset, manifests).
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    /// Opens an existing file for reading: segment files at recovery, for
    /// the read-only open and for readers of a parked partition, and small
    /// files read with a bound on their length.
    fn open_read(&self, path: &Path) -> io::Result<File> {
        File::open(path)
    }

    /// Opens an existing file for reading and writing, without truncating it:
    /// the last segment of a log, which recovery scans and appends continue.
    fn open_writable(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    /// The length of an open file (`fstat`).
    fn file_len(&self, file: &File) -> io::Result<u64> {
        Ok(file.metadata()?.len())
    }

    /// The entries of a directory, in no particular order: recovery lists a
    /// log's files, a store its topics, a deleted topic its partitions, and a
    /// log the archive cache it empties at open.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            entries.push(DirEntry { is_dir: entry.file_type()?.is_dir(), name: entry.file_name() });
        }
        Ok(entries)
    }

    /// Creates a directory and any missing parents (a log's, a store's, the
    /// archive cache's). The caller fsyncs the parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    /// Removes a directory and everything in it (a deleted topic, an
    /// abandoned one). The caller fsyncs the parent.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
}

/// An entry of a directory, as [`Io::read_dir`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: OsString,
    /// Whether the entry is a directory (a symbolic link is not followed).
    pub is_dir: bool,
}

/// Reads at most `max + 1` bytes of the file `path` through `io`: a caller
/// that gets more than `max` knows the file is too long for its format, and
/// a damaged or foreign file never costs more memory than the format allows.
pub(crate) fn read_bounded(io: &dyn Io, path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let file = io.open_read(path)?;
    let limit = max.saturating_add(1);
    let mut bytes = vec![0u8; limit.min(1 << 16)];
    let mut len = 0;
    while len < limit {
        if len == bytes.len() {
            bytes.resize(len.saturating_mul(2).min(limit), 0);
        }
        match io.read_at(&file, &mut bytes[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(len);
    Ok(bytes)
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsIo;

impl Io for OsIo {
    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)
    }

    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, pos)
    }

    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => zero_fill(file, len),
            Err(e) => Err(e.into()),
        }
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// Fallback for file systems without `fallocate`: write real zeros so that the
/// blocks exist before the file is mapped.
fn zero_fill(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let current = file.metadata()?.len();
    let zeros = vec![0u8; 1 << 20];
    let mut pos = current;
    while pos < len {
        let n = (len - pos).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// A segment file whose fsyncs are serialized and whose failure is sticky.
///
/// Linux reports a writeback error to one `fsync` per open file description
/// and then forgets it, so two threads fsyncing the same file (a group-commit
/// leader and a roll sealing the segment) could see one failure and one
/// success. The gate serializes them and remembers the failure: once one fsync
/// of this file failed, every later one fails too.
#[derive(Debug)]
pub(crate) struct SyncedFile {
    file: File,
    failed: std::sync::Mutex<bool>,
}

impl SyncedFile {
    pub(crate) fn new(file: File) -> SyncedFile {
        SyncedFile { file, failed: std::sync::Mutex::new(false) }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// `sync_data` (or `sync_all` if `all`) through `io`, behind the gate.
    pub(crate) fn sync(&self, io: &dyn Io, all: bool) -> io::Result<()> {
        let mut failed = self.failed.locked();
        if *failed {
            return Err(io::Error::other("an earlier fsync of this file failed"));
        }
        let result = if all { io.sync_all(&self.file) } else { io.sync_data(&self.file) };
        if result.is_err() {
            *failed = true;
        }
        result
    }
}

/// Opens a file for reading and writing, creating it if `create`.
pub(crate) fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)
}

/// Takes the exclusive lock (`flock`) on an open lock file, and writes this
/// process's id into it for the message a second writer gets. `Ok(Err(pid))`
/// if another handle holds it: `pid` is the id its holder wrote, if it could
/// be read. The id is informational: failing to write it is not an error.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<Result<(), Option<u32>>> {
    use std::os::unix::fs::FileExt;
    match file.try_lock() {
        Ok(()) => {
            let pid = format!("{}\n", std::process::id());
            let _ = file.set_len(0).and_then(|()| file.write_all_at(pid.as_bytes(), 0));
            Ok(Ok(()))
        }
        Err(fs::TryLockError::WouldBlock) => {
            let mut buf = [0u8; 16];
            let n = file.read_at(&mut buf, 0).unwrap_or(0);
            let pid = std::str::from_utf8(&buf[..n]).ok().and_then(|s| s.trim().parse().ok());
            Ok(Err(pid))
        }
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}
