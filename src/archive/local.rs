//! [`LocalDirArchive`]: an archive store in a local directory.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::archive::key::{check_key, check_prefix, is_valid_key};
use crate::archive::{ArchiveStore, ObjectDigest, ObjectMeta, archive_error, check_range, digest_chunks, not_found};
use crate::error::{ArchiveErrorKind, Error, IoContext, Result};
use crate::io::{Io, OsIo};

/// An archive store in a local directory (a mounted network file system, a
/// second disk): the object under `a/b/c.seg` is the file `ROOT/a/b/c.seg`.
///
/// Writes are crash-safe: the content goes to a temporary file
/// (`.c.seg.PID-N.tmp` beside the final one), which is fsynced, renamed to
/// the final name, and the directory fsynced (as is every directory the write
/// created). A crash therefore leaves under a key either the old object, or
/// the complete new one, never part of it; it may leave a temporary file,
/// which `list` and `head` never show (names starting with `.` are not keys).
///
/// The file system keeps no checksum: [`ObjectMeta::e_tag`] is `None`, and
/// [`ArchiveStore::verify`] reads the file back.
#[derive(Debug)]
pub struct LocalDirArchive {
    root: PathBuf,
    name: String,
    io: Arc<dyn Io>,
    tmp_counter: AtomicU64,
}

impl LocalDirArchive {
    /// Opens (creating it if needed) the archive directory `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalDirArchive> {
        LocalDirArchive::with_io(root, Arc::new(OsIo))
    }

    /// Like [`LocalDirArchive::open`], with every write, fsync, rename and
    /// removal going through `io` (so tests can inject failures).
    pub fn with_io(root: impl Into<PathBuf>, io: Arc<dyn Io>) -> Result<LocalDirArchive> {
        let root = root.into();
        if !root.is_dir() {
            fs::create_dir_all(&root).ctx("create archive directory", &root)?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                io.sync_dir(parent).ctx("fsync directory", parent)?;
            }
        }
        let name = format!("dir {}", root.display());
        Ok(LocalDirArchive { root, name, io, tmp_counter: AtomicU64::new(0) })
    }

    /// The archive directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a (valid) key.
    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Creates the directories of `key` below the root that do not exist yet,
    /// fsyncing the parent of each one created.
    fn create_dirs(&self, key: &str) -> Result<PathBuf> {
        let mut dir = self.root.clone();
        let components: Vec<&str> = key.split('/').collect();
        for component in &components[..components.len() - 1] {
            let parent = dir.clone();
            dir.push(component);
            match fs::create_dir(&dir) {
                Ok(()) => self.io.sync_dir(&parent).ctx("fsync directory", &parent)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create directory", &dir, e)),
            }
        }
        Ok(dir)
    }

    /// Writes an object crash-safely: `fill` writes the content into a
    /// temporary file, which is then fsynced and renamed over `key`.
    fn write_object(&self, key: &str, fill: impl FnOnce(&File, &Path) -> Result<ObjectDigest>) -> Result<ObjectDigest> {
        check_key(&self.name, key)?;
        let dir = self.create_dirs(key)?;
        let path = self.path_of(key);
        let file_name = key.rsplit('/').next().unwrap_or(key);
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{file_name}.{}-{n}.tmp", std::process::id()));
        let result = (|| {
            let file = self.io.create(&tmp).ctx("create", &tmp)?;
            let digest = fill(&file, &tmp)?;
            self.io.sync_all(&file).ctx("fsync", &tmp)?;
            drop(file);
            self.io.rename(&tmp, &path).ctx("rename into place", &path)?;
            Ok(digest)
        })();
        let digest = match result {
            Ok(digest) => digest,
            Err(e) => {
                // Best effort: the temporary file is invisible anyway.
                let _ = self.io.remove_file(&tmp);
                return Err(e);
            }
        };
        self.io.sync_dir(&dir).ctx("fsync directory", &dir)?;
        Ok(digest)
    }

    /// Adds to `out` the objects below `dir` (whose key prefix is `rel`) that
    /// start with `prefix`.
    fn walk(&self, dir: &Path, rel: &str, prefix: &str, out: &mut Vec<ObjectMeta>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(Error::io("read directory", dir, e)),
        };
        for entry in entries {
            let entry = entry.ctx("read directory", dir)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if name.starts_with('.') {
                continue; // temporary files, and anything that is not a key
            }
            let key = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let file_type = entry.file_type().ctx("stat", &entry.path())?;
            if file_type.is_dir() {
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    self.walk(&entry.path(), &key, prefix, out)?;
                }
            } else if file_type.is_file() && key.starts_with(prefix) && is_valid_key(&key) {
                let size = entry.metadata().ctx("stat", &entry.path())?.len();
                out.push(ObjectMeta { key, size, e_tag: None });
            }
        }
        Ok(())
    }
}

/// True for the errors that mean "no file there".
fn is_missing(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

impl ArchiveStore for LocalDirArchive {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> Option<String> {
        let root = std::path::absolute(&self.root).ok()?;
        Some(format!("file://{}", root.to_str()?))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<ObjectDigest> {
        self.write_object(key, |file, tmp| {
            self.io.write_all_at(file, bytes, 0).ctx("write", tmp)?;
            Ok(ObjectDigest::of(bytes))
        })
    }

    fn put_file(&self, key: &str, path: &Path) -> Result<ObjectDigest> {
        check_key(&self.name, key)?;
        let mut source = File::open(path).ctx("open", path)?;
        self.write_object(key, |file, tmp| {
            digest_chunks(&mut source, path, |bytes, pos| self.io.write_all_at(file, bytes, pos).ctx("write", tmp))
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        check_key(&self.name, key)?;
        let path = self.path_of(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Err(not_found(&self.name, key)),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let meta = file.metadata().ctx("stat", &path)?;
        if !meta.is_file() {
            return Err(not_found(&self.name, key));
        }
        check_range(&self.name, key, &range, meta.len())?;
        let len = usize::try_from(range.end - range.start).map_err(|_| {
            archive_error(&self.name, key, ArchiveErrorKind::InvalidRange, "the range does not fit in memory")
        })?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, range.start).ctx("read", &path)?;
        Ok(buf)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(&self.name, key)?;
        let path = self.path_of(key);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta { key: key.to_owned(), size: meta.len(), e_tag: None })),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        check_prefix(&self.name, prefix)?;
        // Start at the deepest directory the prefix names entirely.
        let (start, rel) = match prefix.rfind('/') {
            Some(i) => (self.root.join(&prefix[..i]), &prefix[..i]),
            None => (self.root.clone(), ""),
        };
        let mut out = Vec::new();
        self.walk(&start, rel, prefix, &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(&self.name, key)?;
        let path = self.path_of(key);
        match self.io.remove_file(&path) {
            Ok(()) => {
                let dir = path.parent().unwrap_or(&self.root);
                self.io.sync_dir(dir).ctx("fsync directory", dir)
            }
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Error::io("remove", &path, e)),
        }
    }
}
