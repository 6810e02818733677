//! One test suite for every archive store (`cases`), run against:
//!
//! - `LocalDirArchive` in a temporary directory (always);
//! - `ObjectStoreArchive` talking to a real S3-compatible server (s3s-fs, an
//!   S3 implementation over a directory, served by hyper on 127.0.0.1:0 inside
//!   the test process, with signature checking on), and over
//!   `object_store::memory::InMemory` (feature `object-store`).
//!
//! Then each store's own failure modes: a local write whose fsync or rename
//! fails, temporary files left by a crash; an S3 server that is stopped, that
//! never answers, that fails or stalls in the middle of a multipart upload.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annal::archive::{ArchiveStore, LocalDirArchive, ObjectDigest, VERIFY_CHUNK, is_valid_key, segment_key};
use annal::{ArchiveErrorKind, Error};
use common::{FaultIo, Rng, all_files};

/// A store under test, with a scratch directory for `put_file` sources and
/// whatever must outlive the store (a server). Fields drop in order: the
/// store before the server.
struct Fixture {
    store: Box<dyn ArchiveStore>,
    scratch: tempfile::TempDir,
    _keep: Vec<Box<dyn std::any::Any>>,
}

impl Fixture {
    fn store(&self) -> &dyn ArchiveStore {
        &*self.store
    }
}

fn local_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirArchive::open(dir.path().join("archive")).unwrap();
    Fixture { store: Box::new(store), scratch: tempfile::tempdir().unwrap(), _keep: vec![Box::new(dir)] }
}

/// Deterministic bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `bytes` to a file in `dir` and returns its path.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The archive kind of a failed result (panics if it succeeded or failed otherwise).
#[track_caller]
fn kind_of<T: std::fmt::Debug>(result: annal::Result<T>) -> ArchiveErrorKind {
    match result {
        Ok(value) => panic!("expected an archive error, got Ok({value:?})"),
        Err(e) => e.archive_kind().unwrap_or_else(|| panic!("expected an archive error, got {e:?}")),
    }
}

/// The shared suite: every function takes any store.
mod cases {
    use super::*;

    pub fn roundtrip_and_ranges(f: &Fixture) {
        let store = f.store();
        let key = segment_key("orders", 3, 1024);
        let bytes = data(100_003, 1);
        let digest = store.put(&key, &bytes).unwrap();
        assert_eq!(digest, ObjectDigest::of(&bytes));
        assert_eq!(digest.size, bytes.len() as u64);

        let meta = store.head(&key).unwrap().expect("the object exists");
        assert_eq!((meta.key.as_str(), meta.size), (key.as_str(), bytes.len() as u64));
        assert_eq!(store.get(&key).unwrap(), bytes);

        let n = bytes.len() as u64;
        for range in [0..n, 0..1, n - 1..n, 1..n - 1, 4096..8192, 0..0, n..n, 17..17] {
            let got = store.get_range(&key, range.clone()).unwrap();
            assert_eq!(got, bytes[range.start as usize..range.end as usize], "range {range:?}");
        }
        store.verify(&key, &digest).unwrap();
    }

    pub fn range_errors(f: &Fixture) {
        let store = f.store();
        let bytes = data(1000, 2);
        store.put("r/obj", &bytes).unwrap();
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 10..5;
        for range in [0..1001, 999..1001, 1000..1001, 1001..1002, 2000..3000, 1001..1001, reversed] {
            assert_eq!(kind_of(store.get_range("r/obj", range.clone())), ArchiveErrorKind::InvalidRange, "{range:?}");
        }
        assert_eq!(kind_of(store.get_range("r/missing", 0..1)), ArchiveErrorKind::NotFound);
        assert_eq!(kind_of(store.get_range("r/missing", 0..0)), ArchiveErrorKind::NotFound);
        // The error says where.
        let e = store.get_range("r/obj", 0..1001).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("r/obj") && text.contains(store.name()) && text.contains("1000 bytes"), "{text}");
    }

    pub fn missing_objects(f: &Fixture) {
        let store = f.store();
        assert_eq!(store.head("none/here.seg").unwrap(), None);
        assert_eq!(kind_of(store.get("none/here.seg")), ArchiveErrorKind::NotFound);
        assert_eq!(kind_of(store.verify("none/here.seg", &ObjectDigest::of(b""))), ArchiveErrorKind::NotFound);
        assert!(store.list("").unwrap().is_empty());
        assert!(store.list("none/").unwrap().is_empty());
    }

    pub fn list_with_prefix(f: &Fixture) {
        let store = f.store();
        let keys = ["t/0/a.seg", "t/0/b.seg", "t/1/a.seg", "t/10/a.seg", "t2/0/x.seg", "u/0/y.seg", "top"];
        for (i, key) in keys.iter().enumerate() {
            store.put(key, &data(i * 10, i as u64)).unwrap();
        }
        let list = |prefix: &str| -> Vec<String> { store.list(prefix).unwrap().into_iter().map(|m| m.key).collect() };
        assert_eq!(list("t/0/"), ["t/0/a.seg", "t/0/b.seg"]);
        assert_eq!(list("t/1"), ["t/1/a.seg", "t/10/a.seg"]);
        assert_eq!(list("t/1/"), ["t/1/a.seg"]);
        assert_eq!(list("t/"), ["t/0/a.seg", "t/0/b.seg", "t/1/a.seg", "t/10/a.seg"]);
        assert_eq!(list("t"), ["t/0/a.seg", "t/0/b.seg", "t/1/a.seg", "t/10/a.seg", "t2/0/x.seg", "top"]);
        assert_eq!(list("t/0/a"), ["t/0/a.seg"]);
        assert_eq!(list("t/0/a.seg"), ["t/0/a.seg"]);
        assert!(list("t/2/").is_empty());
        assert!(list("v").is_empty());
        let mut all = keys.to_vec();
        all.sort();
        assert_eq!(list(""), all);
        // Sizes are reported.
        for meta in store.list("").unwrap() {
            let i = keys.iter().position(|k| *k == meta.key).unwrap();
            assert_eq!(meta.size, (i * 10) as u64, "{}", meta.key);
        }
        // Segment keys of a partition list in offset order.
        for base in [100u64, 5, 2_000_000, 0] {
            store.put(&segment_key("ord", 0, base), b"x").unwrap();
        }
        let bases: Vec<String> = list("ord/0/");
        assert_eq!(bases, [0u64, 5, 100, 2_000_000].map(|b| segment_key("ord", 0, b)));
    }

    pub fn delete(f: &Fixture) {
        let store = f.store();
        store.put("d/0/a.seg", b"aaa").unwrap();
        store.put("d/0/b.seg", b"bbb").unwrap();
        store.delete("d/0/a.seg").unwrap();
        assert_eq!(store.head("d/0/a.seg").unwrap(), None);
        assert_eq!(kind_of(store.get_range("d/0/a.seg", 0..1)), ArchiveErrorKind::NotFound);
        assert_eq!(store.list("d/").unwrap().len(), 1);
        assert_eq!(store.get("d/0/b.seg").unwrap(), b"bbb");
        // Deleting what is not there succeeds.
        store.delete("d/0/a.seg").unwrap();
        store.delete("never/was/here.seg").unwrap();
        store.delete("d/0/b.seg").unwrap();
        assert!(store.list("").unwrap().is_empty());
    }

    pub fn overwrite(f: &Fixture) {
        let store = f.store();
        let first = data(5000, 3);
        let second = data(1234, 4);
        let d1 = store.put("o/k", &first).unwrap();
        let d2 = store.put("o/k", &second).unwrap();
        assert_eq!(store.get("o/k").unwrap(), second);
        assert_eq!(store.head("o/k").unwrap().unwrap().size, 1234);
        store.verify("o/k", &d2).unwrap();
        assert_eq!(kind_of(store.verify("o/k", &d1)), ArchiveErrorKind::Integrity);
        // put_file over put, and back.
        let path = write_file(f.scratch.path(), "third", &first);
        let d3 = store.put_file("o/k", &path).unwrap();
        assert_eq!(d3, d1);
        assert_eq!(store.get("o/k").unwrap(), first);
        assert_eq!(store.list("o/").unwrap().len(), 1);
    }

    pub fn put_file_multi_mib(f: &Fixture) {
        let store = f.store();
        // Not a multiple of any part or chunk size: 12 MiB and a bit.
        let bytes = data((12 << 20) + 12_345, 5);
        let path = write_file(f.scratch.path(), "segment.log", &bytes);
        let key = segment_key("big", 0, 0);
        let digest = store.put_file(&key, &path).unwrap();
        assert_eq!(digest, ObjectDigest::of(&bytes));
        assert_eq!(digest, ObjectDigest::of_file(&path).unwrap());
        assert_eq!(store.head(&key).unwrap().unwrap().size, bytes.len() as u64);
        store.verify(&key, &digest).unwrap();
        // Byte-identical, including across part boundaries (5 MiB, 16 MiB) and chunk ones.
        assert_eq!(store.get(&key).unwrap(), bytes);
        let n = bytes.len() as u64;
        let m5 = 5u64 << 20;
        for range in [m5 - 10..m5 + 10, 2 * m5 - 1..2 * m5 + 1, VERIFY_CHUNK - 3..VERIFY_CHUNK + 3, n - 100..n] {
            let got = store.get_range(&key, range.clone()).unwrap();
            assert_eq!(got, bytes[range.start as usize..range.end as usize], "range {range:?}");
        }
    }

    pub fn small_and_empty_objects(f: &Fixture) {
        let store = f.store();
        let path = write_file(f.scratch.path(), "small", b"hello archive");
        let digest = store.put_file("s/small", &path).unwrap();
        assert_eq!(digest, ObjectDigest::of(b"hello archive"));
        assert_eq!(store.get("s/small").unwrap(), b"hello archive");

        let empty = write_file(f.scratch.path(), "empty", b"");
        let digest = store.put_file("s/empty-file", &empty).unwrap();
        assert_eq!(digest, ObjectDigest { size: 0, crc32: 0 });
        let digest = store.put("s/empty", b"").unwrap();
        for key in ["s/empty", "s/empty-file"] {
            assert_eq!(store.head(key).unwrap().unwrap().size, 0);
            assert_eq!(store.get(key).unwrap(), b"");
            assert_eq!(store.get_range(key, 0..0).unwrap(), b"");
            assert_eq!(kind_of(store.get_range(key, 0..1)), ArchiveErrorKind::InvalidRange);
            store.verify(key, &digest).unwrap();
        }
    }

    pub fn verify_catches_mismatch(f: &Fixture) {
        let store = f.store();
        let bytes = data(70_000, 6);
        let digest = store.put("v/obj", &bytes).unwrap();
        store.verify("v/obj", &digest).unwrap();

        let e = store.verify("v/obj", &ObjectDigest { size: digest.size + 1, ..digest }).unwrap_err();
        assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Integrity));
        assert!(e.to_string().contains("70000 bytes"), "{e}");
        let e = store.verify("v/obj", &ObjectDigest { crc32: digest.crc32 ^ 1, ..digest }).unwrap_err();
        assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Integrity));
        assert!(e.to_string().contains("crc32"), "{e}");

        // The same size, one byte different: only the checksum can tell.
        let mut damaged = bytes.clone();
        damaged[54_321] ^= 0x40;
        store.put("v/obj", &damaged).unwrap();
        assert_eq!(kind_of(store.verify("v/obj", &digest)), ArchiveErrorKind::Integrity);
        // A digest of the file on disk catches a changed source too.
        let path = write_file(f.scratch.path(), "src", &bytes);
        let uploaded = store.put_file("v/file", &path).unwrap();
        std::fs::write(&path, &damaged).unwrap();
        assert_ne!(ObjectDigest::of_file(&path).unwrap(), uploaded);
        store.verify("v/file", &uploaded).unwrap();
    }

    pub fn invalid_keys(f: &Fixture) {
        let store = f.store();
        let path = write_file(f.scratch.path(), "src", b"payload");
        let long = "k".repeat(1025);
        let bad = [
            "",
            "/abs/key",
            "/",
            "a/../b",
            "../escape",
            "..",
            ".",
            "a//b",
            "a/",
            "a/./b",
            ".hidden",
            "a/.tmp",
            "a\\b",
            "a b",
            "a\0b",
            "ä",
            "a?b",
            "a%2Fb",
            &long,
        ];
        for key in bad {
            assert!(!is_valid_key(key));
            let expect = |r: annal::Result<()>, what: &str| {
                assert_eq!(kind_of(r), ArchiveErrorKind::InvalidKey, "{what} {key:?}");
            };
            expect(store.put(key, b"x").map(drop), "put");
            expect(store.put_file(key, &path).map(drop), "put_file");
            expect(store.get_range(key, 0..1).map(drop), "get_range");
            expect(store.get(key).map(drop), "get");
            expect(store.head(key).map(drop), "head");
            expect(store.delete(key), "delete");
            expect(store.verify(key, &ObjectDigest::of(b"x")), "verify");
        }
        for prefix in ["/", "../", "a//", "/a", "a/../", "a b"] {
            assert_eq!(kind_of(store.list(prefix)), ArchiveErrorKind::InvalidKey, "list {prefix:?}");
        }
        // Nothing was written anywhere.
        assert!(store.list("").unwrap().is_empty());
        // An invalid key is refused before the source file is even opened.
        assert_eq!(kind_of(store.put_file("../x", Path::new("/no/such/file"))), ArchiveErrorKind::InvalidKey);
    }

    pub fn missing_source_file(f: &Fixture) {
        let store = f.store();
        let missing = f.scratch.path().join("no-such-segment.log");
        match store.put_file("m/k", &missing) {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected an I/O error naming the source, got {other:?}"),
        }
        assert_eq!(store.head("m/k").unwrap(), None);
    }
}

/// One `#[test]` per case of the suite, for one kind of store.
macro_rules! archive_suite {
    ($module:ident, $fixture:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn roundtrip_and_ranges() {
                cases::roundtrip_and_ranges(&$fixture);
            }
            #[test]
            fn range_errors() {
                cases::range_errors(&$fixture);
            }
            #[test]
            fn missing_objects() {
                cases::missing_objects(&$fixture);
            }
            #[test]
            fn list_with_prefix() {
                cases::list_with_prefix(&$fixture);
            }
            #[test]
            fn delete() {
                cases::delete(&$fixture);
            }
            #[test]
            fn overwrite() {
                cases::overwrite(&$fixture);
            }
            #[test]
            fn put_file_multi_mib() {
                cases::put_file_multi_mib(&$fixture);
            }
            #[test]
            fn small_and_empty_objects() {
                cases::small_and_empty_objects(&$fixture);
            }
            #[test]
            fn verify_catches_mismatch() {
                cases::verify_catches_mismatch(&$fixture);
            }
            #[test]
            fn invalid_keys() {
                cases::invalid_keys(&$fixture);
            }
            #[test]
            fn missing_source_file() {
                cases::missing_source_file(&$fixture);
            }
        }
    };
}

archive_suite!(local_dir, local_fixture());
#[cfg(feature = "object-store")]
archive_suite!(s3_server, s3::fixture());
#[cfg(feature = "object-store")]
archive_suite!(in_memory, s3::memory_fixture());

// ---------------------------------------------------------------------------
// The directory store's own failure modes
// ---------------------------------------------------------------------------

#[test]
fn local_failed_writes_leave_the_old_object_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultIo::new());
    let store = LocalDirArchive::with_io(dir.path(), io.clone()).unwrap();
    let old = data(3000, 7);
    store.put("t/0/a.seg", &old).unwrap();
    let src = tempfile::tempdir().unwrap();
    let path = write_file(src.path(), "new", &data(3_000_000, 8));

    // fsync of the temporary file fails: nothing replaced.
    io.set_fail_sync(true);
    assert!(matches!(store.put_file("t/0/a.seg", &path), Err(Error::Io { op: "fsync", .. })));
    assert!(matches!(store.put("t/0/b.seg", b"new"), Err(Error::Io { .. })));
    io.set_fail_sync(false);
    assert_eq!(store.get("t/0/a.seg").unwrap(), old);
    assert_eq!(store.head("t/0/b.seg").unwrap(), None);
    assert_eq!(all_files(dir.path()), ["t/0/a.seg"]);

    // The rename fails: nothing replaced either.
    io.fail_rename.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(store.put_file("t/0/a.seg", &path), Err(Error::Io { op: "rename into place", .. })));
    io.fail_rename.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(store.get("t/0/a.seg").unwrap(), old);
    assert_eq!(all_files(dir.path()), ["t/0/a.seg"]);

    // And once the faults are gone, the write goes through.
    let digest = store.put_file("t/0/a.seg", &path).unwrap();
    store.verify("t/0/a.seg", &digest).unwrap();
}

#[test]
fn local_writes_fsync_every_directory_they_create() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultIo::new());
    let store = LocalDirArchive::with_io(dir.path(), io.clone()).unwrap();
    let before = io.dir_syncs.load(std::sync::atomic::Ordering::SeqCst);
    store.put("a/b/c/d.seg", b"x").unwrap();
    // Root (for a), a (for b), b (for c), then c after the rename.
    assert_eq!(io.dir_syncs.load(std::sync::atomic::Ordering::SeqCst) - before, 4);
    // A failed directory fsync is reported, not ignored.
    io.set_fail_sync_dir(true);
    assert!(matches!(store.put("a/b/c/e.seg", b"y"), Err(Error::Io { op: "fsync directory", .. })));
    assert!(matches!(store.delete("a/b/c/d.seg"), Err(Error::Io { op: "fsync directory", .. })));
}

#[test]
fn local_leftover_temporary_files_are_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirArchive::open(dir.path()).unwrap();
    store.put("t/0/a.seg", b"whole").unwrap();
    // What a crash between create and rename leaves behind.
    std::fs::write(dir.path().join("t/0/.b.seg.4242-0.tmp"), b"par").unwrap();
    std::fs::write(dir.path().join(".stray"), b"?").unwrap();
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["t/0/a.seg"]);
    assert_eq!(store.head("t/0/b.seg").unwrap(), None);
    assert_eq!(kind_of(store.head("t/0/.b.seg.4242-0.tmp")), ArchiveErrorKind::InvalidKey);
}

#[test]
fn local_keys_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let store = LocalDirArchive::open(&root).unwrap();
    std::fs::write(dir.path().join("outside"), b"secret").unwrap();
    assert_eq!(kind_of(store.get("../outside")), ArchiveErrorKind::InvalidKey);
    assert_eq!(kind_of(store.delete("../outside")), ArchiveErrorKind::InvalidKey);
    assert_eq!(kind_of(store.put(&format!("{}/x", dir.path().display()), b"x")), ArchiveErrorKind::InvalidKey);
    assert!(dir.path().join("outside").exists());
    // A key that is a directory in the store is no object.
    store.put("a/b", b"x").unwrap();
    assert_eq!(store.head("a").unwrap(), None);
    assert_eq!(kind_of(store.get_range("a", 0..1)), ArchiveErrorKind::NotFound);
}

// ---------------------------------------------------------------------------
// The object store: an S3-compatible server on loopback
// ---------------------------------------------------------------------------

#[cfg(feature = "object-store")]
mod s3 {
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use crate::common::BackgroundThread;
    use crate::common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, test_options};
    use annal::archive::{ObjectStoreArchive, S3Config};

    use super::*;

    pub fn fixture() -> Fixture {
        let server = S3Server::start();
        let store = ObjectStoreArchive::s3(&server.config(), test_options()).unwrap();
        Fixture { store: Box::new(store), scratch: tempfile::tempdir().unwrap(), _keep: vec![Box::new(server)] }
    }

    pub fn memory_fixture() -> Fixture {
        let inner = Arc::new(object_store::memory::InMemory::new());
        let store = ObjectStoreArchive::new("memory", inner, test_options().part_size(1 << 20)).unwrap();
        Fixture { store: Box::new(store), scratch: tempfile::tempdir().unwrap(), _keep: vec![] }
    }

    #[test]
    fn objects_are_stored_by_the_server_under_their_keys() {
        let server = S3Server::start();
        let store = ObjectStoreArchive::s3(&server.config(), test_options()).unwrap();
        let key = segment_key("orders", 7, 42);
        store.put(&key, b"on the server").unwrap();
        let on_disk = std::fs::read(server.root.path().join(BUCKET).join(&key)).unwrap();
        assert_eq!(on_disk, b"on the server");
        assert!(store.name().contains(&server.endpoint()));
    }

    #[test]
    fn wrong_credentials_are_a_typed_error() {
        let server = S3Server::start();
        let config = S3Config::new(server.endpoint(), BUCKET, ACCESS_KEY, "wrong-secret").allow_http(true);
        let store = ObjectStoreArchive::s3(&config, test_options()).unwrap();
        let e = store.put("k", b"x").unwrap_err();
        assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Other), "{e}");
        assert!(store.head("k").is_err());
        assert!(!server.root.path().join(BUCKET).join("k").exists());
    }

    #[test]
    fn configuration_errors_are_refused() {
        let config = S3Config::new("http://127.0.0.1:1", BUCKET, ACCESS_KEY, SECRET_KEY).allow_http(true);
        assert!(matches!(
            ObjectStoreArchive::s3(&config, test_options().part_size(1 << 20)),
            Err(Error::InvalidConfig(_))
        ));
        // Plain HTTP must be allowed explicitly.
        let config = S3Config::new("http://127.0.0.1:1", BUCKET, ACCESS_KEY, SECRET_KEY);
        let store = ObjectStoreArchive::s3(&config, test_options()).unwrap();
        assert!(store.put("k", b"x").is_err());
        // The secret is not printed.
        assert!(!format!("{config:?}").contains(SECRET_KEY));
    }

    #[test]
    fn a_stopped_server_is_unreachable_and_nothing_panics() {
        let mut server = S3Server::start();
        let options = test_options().request_timeout(Duration::from_secs(2)).connect_timeout(Duration::from_secs(1));
        let store = ObjectStoreArchive::s3(&server.config(), options).unwrap();
        store.put("t/0/a.seg", b"before the stop").unwrap();
        server.stop();

        let scratch = tempfile::tempdir().unwrap();
        let big = write_file(scratch.path(), "big", &data(11 << 20, 9));
        let small = write_file(scratch.path(), "small", b"small");
        let digest = ObjectDigest::of(b"before the stop");
        type Op<'a> = (&'a str, Box<dyn Fn() -> annal::Result<()> + 'a>);
        let ops: Vec<Op> = vec![
            ("head", Box::new(|| store.head("t/0/a.seg").map(drop))),
            ("get_range", Box::new(|| store.get_range("t/0/a.seg", 0..5).map(drop))),
            ("get_range empty", Box::new(|| store.get_range("t/0/a.seg", 0..0).map(drop))),
            ("put", Box::new(|| store.put("t/0/b.seg", b"x").map(drop))),
            ("put_file small", Box::new(|| store.put_file("t/0/c.seg", &small).map(drop))),
            ("put_file multipart", Box::new(|| store.put_file("t/0/d.seg", &big).map(drop))),
            ("list", Box::new(|| store.list("t/").map(drop))),
            ("delete", Box::new(|| store.delete("t/0/a.seg"))),
            ("verify", Box::new(|| store.verify("t/0/a.seg", &digest))),
        ];
        for (what, op) in ops {
            let start = Instant::now();
            let e = op().unwrap_err();
            let elapsed = start.elapsed();
            assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{what}: {e}");
            assert!(elapsed < Duration::from_secs(10), "{what} took {elapsed:?}");
            assert!(e.to_string().contains(&server.endpoint()), "{what}: {e}");
        }
    }

    /// A TCP server on loopback that accepts connections and never answers;
    /// it stops by itself after a minute at most.
    struct BlackHole {
        addr: SocketAddr,
        _thread: BackgroundThread,
    }

    impl BlackHole {
        fn start() -> BlackHole {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let thread = BackgroundThread::spawn(move |stop| {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((socket, _)) => held.push(socket),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            BlackHole { addr, _thread: thread }
        }
    }

    #[test]
    fn a_server_that_never_answers_times_out_as_unreachable() {
        let hole = BlackHole::start();
        let config = S3Config::new(format!("http://{}", hole.addr), BUCKET, ACCESS_KEY, SECRET_KEY).allow_http(true);
        let options = test_options().request_timeout(Duration::from_millis(500)).max_retries(1);
        let store = ObjectStoreArchive::s3(&config, options).unwrap();
        for (what, result) in [
            ("head", store.head("k").map(drop)),
            ("put", store.put("k", b"x").map(drop)),
            ("get_range", store.get_range("k", 0..1).map(drop)),
        ] {
            let start = Instant::now();
            let e = result.unwrap_err();
            assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{what}: {e}");
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        }
    }

    #[test]
    fn the_per_request_timeout_bounds_a_store_without_its_own() {
        // An S3 client whose own timeout is a minute, wrapped with a 300 ms
        // step timeout: the wrapper's timeout fires.
        let hole = BlackHole::start();
        let inner = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://{}", hole.addr))
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_client_options(object_store::ClientOptions::new().with_timeout(Duration::from_secs(60)))
            .with_allow_http(true)
            .build()
            .unwrap();
        let options = test_options().request_timeout(Duration::from_millis(300)).max_retries(0);
        let store = ObjectStoreArchive::new("slow", Arc::new(inner), options).unwrap();
        let start = Instant::now();
        let e = store.head("k").unwrap_err();
        assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{e}");
        assert!(e.to_string().contains("no answer within"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_multipart_upload_failing_midway_leaves_nothing_under_the_key() {
        let server = S3Server::start();
        let store = ObjectStoreArchive::s3(&server.config(), test_options()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let bytes = data((16 << 20) + 7, 10); // 4 parts of 5 MiB
        let path = write_file(scratch.path(), "segment", &bytes);
        let old = b"the previous object".to_vec();
        store.put("t/0/old.seg", &old).unwrap();

        // The second part (and every later one) fails with a 500, also when retried.
        *server.faults.fail_parts_after.lock().unwrap() = Some(1);
        for key in ["t/0/new.seg", "t/0/old.seg"] {
            let e = store.put_file(key, &path).unwrap_err();
            assert!(e.archive_kind().is_some(), "{key}: {e}");
        }
        assert_eq!(server.faults.completes.load(Ordering::SeqCst), 0);
        assert!(server.faults.aborts.load(Ordering::SeqCst) >= 2);
        // No new object, the old one untouched, no parts left on the server.
        assert_eq!(store.head("t/0/new.seg").unwrap(), None);
        assert_eq!(store.get("t/0/old.seg").unwrap(), old);
        let digest = ObjectDigest::of(&bytes);
        assert_eq!(kind_of(store.verify("t/0/new.seg", &digest)), ArchiveErrorKind::NotFound);
        assert_eq!(kind_of(store.verify("t/0/old.seg", &digest)), ArchiveErrorKind::Integrity);
        assert_eq!(server.upload_leftovers(), Vec::<String>::new());
        assert_eq!(store.list("").unwrap().len(), 1);

        // Without the fault the same upload goes through.
        *server.faults.fail_parts_after.lock().unwrap() = None;
        let uploaded = store.put_file("t/0/new.seg", &path).unwrap();
        store.verify("t/0/new.seg", &uploaded).unwrap();
        assert_eq!(server.upload_leftovers(), Vec::<String>::new());
    }

    #[test]
    fn a_multipart_upload_stalling_midway_times_out_and_leaves_nothing() {
        let server = S3Server::start();
        let options = test_options().request_timeout(Duration::from_secs(1)).max_retries(0);
        let store = ObjectStoreArchive::s3(&server.config(), options).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let path = write_file(scratch.path(), "segment", &data(16 << 20, 11));
        *server.faults.stall_parts_after.lock().unwrap() = Some(1);
        let start = Instant::now();
        let e = store.put_file("t/0/a.seg", &path).unwrap_err();
        assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{e}");
        assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
        assert_eq!(server.faults.completes.load(Ordering::SeqCst), 0);
        assert_eq!(store.head("t/0/a.seg").unwrap(), None);
    }

    #[test]
    fn usable_from_inside_an_async_runtime() {
        let server = S3Server::start();
        let store = ObjectStoreArchive::s3(&server.config(), test_options()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let digest = store.put("in/async", b"from a task").unwrap();
            store.verify("in/async", &digest).unwrap();
            assert_eq!(store.get("in/async").unwrap(), b"from a task");
            drop(store); // shutting its runtime down here must not panic either
        });
    }

    #[test]
    fn concurrent_callers_share_one_store() {
        let server = S3Server::start();
        let store = ObjectStoreArchive::s3(&server.config(), test_options()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..10u64 {
                        let key = segment_key("c", t as u32, i);
                        let bytes = data(1000 + i as usize, t * 100 + i);
                        let digest = store.put(&key, &bytes).unwrap();
                        store.verify(&key, &digest).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.list("c/").unwrap().len(), 40);
    }
}
