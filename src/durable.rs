//! Writing small files so that a crash leaves the old content or the new,
//! never a mix: a temporary name, fsync, rename, fsync of the directory.
//! Index files, the start offset, the archive manifest, topic metadata and
//! the store's metadata are all written this way; their bytes are an
//! [`crate::envelope`] (index files excepted: FORMAT.md, "Index files").

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::io::Io;

/// The temporary name a file is written under before it is renamed into
/// place: `<path>.tmp` (removed at open when the name is annal's own).
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename.
/// The caller fsyncs the directory.
/// A failure leaves `path` as it was, and removes the temporary file (as far
/// as it can: one left behind is removed at the next open).
pub(crate) fn write_file_atomic(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let file = io.create(&tmp).ctx("create", &tmp)?;
    let written = io
        .write_all_at(&file, bytes, 0)
        .ctx("write", &tmp)
        .and_then(|()| io.sync_data(&file).ctx("fsync", &tmp))
        .and_then(|()| io.rename(&tmp, path).ctx("rename", path));
    if written.is_err() {
        let _ = io.remove_file(&tmp);
    }
    written
}

/// Durably replaces the small file `path` (a start offset, a manifest, a
/// topic's metadata) with `bytes`: [`write_file_atomic`], then an fsync of
/// its directory, so that the new content survives a crash once this returns.
pub(crate) fn replace_file_durably(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomic(io, path, bytes)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir).ctx("fsync directory", dir)
}

/// The content of the small file `path`, or `None` if there is no such file.
pub(crate) fn read_optional(io: &dyn Io, path: &Path) -> Result<Option<Vec<u8>>> {
    match io.read_file(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// The small file `path` decoded as a `T` in its envelope, or `None` if there
/// is no such file; a damaged file is [`Error::Corruption`] naming it.
pub(crate) fn read_decoded<T: crate::envelope::Decode>(io: &dyn Io, path: &Path) -> Result<Option<T>> {
    let Some(bytes) = read_optional(io, path)? else { return Ok(None) };
    T::decode(&bytes).map(Some).map_err(|kind| Error::Corruption { path: path.to_owned(), offset: 0, position: 0, kind })
}
