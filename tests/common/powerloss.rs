//! A simulated disk for crash tests: [`PowerLossIo`] runs annal's persistence
//! calls against the real file system (in a test directory) while it keeps
//! track of what a disk would actually guarantee after a power loss, and can
//! then rewrite the directory to one possible post-power-loss state.
//!
//! What it models:
//!
//! - **A crash at a chosen persistence call.** Every call of the [`Io`] trait
//!   (`create`, `write_all_at`, `allocate`, `sync_data`, `sync_all`,
//!   `sync_dir`, `set_len`, `rename`, `remove_file`, `create_dir_all`,
//!   `remove_dir_all`; not the reads) is counted from 1. With
//!   `crash_at = Some(k)`, call `k` and every later call fail with `EIO` and
//!   have no effect: the process is dead from then on. At call `k` the
//!   directory is photographed ([`Image`]): that is the page cache the dead
//!   process left, whatever the log does afterwards (writes through its map,
//!   removals that bypass [`Io`]) does not count.
//! - **Durable file contents.** Per file (identified by its inode while it is
//!   linked, by a simulator id after that, so a reused inode number is never
//!   confused with a removed file), the *durable image* is the file's bytes,
//!   size included, as of its last successful `sync_data` or `sync_all` (both
//!   are treated alike). A file never synced has an empty durable image. No
//!   real fsync is issued: durability is simulated, which keeps the test fast.
//! - **The durable namespace.** The names of the directory and the files they
//!   point to as of the last successful `sync_dir` of the directory, and the
//!   directory operations since then (creations, renames, removals), which
//!   are not durable.
//! - **A power loss** ([`PowerLossIo::power_loss_into`]): each directory
//!   operation since the last directory sync is kept or lost on its own, and
//!   the kept ones are replayed in order over the durable namespace, each
//!   only if it still applies (a rename of a file whose creation was lost does
//!   not happen). A rename is atomic: if it is lost, the file is back under
//!   its old name if that was durable (else gone) and a file it replaced is
//!   still there; if it is kept, the replaced file is gone. A lost removal
//!   brings the file back with its durable image; a lost creation makes the
//!   file vanish. Each file's length is its current or its durable length;
//!   each 4-KiB page that differs is the current one (the OS wrote it back) or
//!   the durable one, and optionally torn: each 512-byte sector chosen on its
//!   own. Bytes beyond the end of the chosen image read as zeros (fresh or
//!   preallocated blocks never expose stale data). Pages of zeros are left as
//!   holes, as in a preallocated file.
//!
//! What it does not model: a disk that acknowledges an fsync it did not
//! perform, damage to data that was synced (bit rot, misdirected writes:
//! other tests cover those), the durability of other directories (only the
//! log directory's namespace is tracked), size changes that reach the disk
//! without their data (a length is always paired with zeros, never garbage),
//! and concurrency (calls are serialized; crash points are deterministic only
//! for a single-threaded workload).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use annal::io::{Io, OsIo};

/// Granularity at which the OS writes dirty data back.
pub const PAGE: usize = 4096;
/// Granularity at which a device writes atomically (a torn page tears here).
pub const SECTOR: usize = 512;

/// errno EIO.
const EIO: i32 = 5;

/// A simulator-wide file identity (see the module documentation).
type FileId = u64;

/// splitmix64: a tiny seeded generator, enough for choosing crash outcomes.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with a probability of `percent` %.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What survives the crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossMode {
    /// The process dies, the machine does not: the page cache survives, every
    /// file is exactly as the dead process left it.
    ProcessCrash,
    /// Power loss after which nothing unsynced survived: every file is its
    /// durable image, the namespace is the one of the last directory sync.
    Clean,
    /// Power loss with arbitrary writeback: each undurable name, length and
    /// differing page is the current one with probability `keep_percent` %,
    /// otherwise the durable one; with `torn`, a quarter of the differing
    /// pages are torn (each 512-byte sector chosen on its own).
    Random { keep_percent: u8, torn: bool },
}

impl fmt::Display for LossMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossMode::ProcessCrash => f.write_str("process crash (page cache kept)"),
            LossMode::Clean => f.write_str("clean power loss (only synced data)"),
            LossMode::Random { keep_percent, torn } => {
                write!(f, "random power loss (keep {keep_percent}%{})", if *torn { ", torn pages" } else { "" })
            }
        }
    }
}

/// The files of the directory: names and, per file, its bytes.
#[derive(Debug, Clone, Default)]
pub struct Image {
    names: BTreeMap<String, FileId>,
    contents: HashMap<FileId, Vec<u8>>,
}

/// What one simulated power loss chose, for failure messages.
#[derive(Debug, Default, Clone)]
pub struct LossReport {
    /// One line per file that differs from its current state, or name that moved.
    pub lines: Vec<String>,
    pub pages_current: usize,
    pub pages_durable: usize,
    pub pages_torn: usize,
}

impl fmt::Display for LossReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} differing pages kept, {} reverted to the durable image, {} torn",
            self.pages_current, self.pages_durable, self.pages_torn
        )?;
        for l in &self.lines {
            write!(f, "\n      {l}")?;
        }
        Ok(())
    }
}

/// A change to the directory that is not durable until the next directory sync.
#[derive(Debug, Clone)]
enum DirOp {
    Create { name: String, id: FileId },
    Rename { from: String, to: String, id: FileId },
    Remove { name: String, id: FileId },
}

#[derive(Debug, Default)]
struct State {
    /// Persistence calls so far (failed ones included).
    calls: u64,
    /// Calls that failed because the process is dead.
    failed: u64,
    /// What each call was, numbered from 1.
    trace: Vec<String>,
    next_id: FileId,
    /// (device, inode) of each linked file -> its id.
    live: HashMap<(u64, u64), FileId>,
    /// Durable images; a file missing here has an empty one.
    durable: HashMap<FileId, Vec<u8>>,
    /// The directory as of its last successful sync.
    durable_names: BTreeMap<String, FileId>,
    /// Directory operations since then, in order.
    dir_ops: Vec<DirOp>,
    /// The page cache when the process died, if it did.
    dead: Option<Image>,
}

/// An [`Io`] over the real file system that models what a disk guarantees
/// (see the module documentation). Only files directly in `dir` are modeled.
#[derive(Debug)]
pub struct PowerLossIo {
    dir: PathBuf,
    crash_at: Option<u64>,
    /// Set by [`PowerLossIo::crash_now`]: the next call and every later one fail.
    crash_now: std::sync::atomic::AtomicBool,
    /// How long a successful `sync_data`/`sync_all` takes after it captured
    /// the file's durable image (a real fsync takes time, during which other
    /// threads go on writing what it does not cover).
    sync_delay: std::time::Duration,
    state: Mutex<State>,
}

impl PowerLossIo {
    /// Simulates the disk under `dir` (created if needed). Whatever the
    /// directory holds now counts as durable.
    pub fn new(dir: &Path, crash_at: Option<u64>) -> PowerLossIo {
        fs::create_dir_all(dir).expect("create the simulated directory");
        let io = PowerLossIo {
            dir: dir.to_owned(),
            crash_at,
            crash_now: std::sync::atomic::AtomicBool::new(false),
            sync_delay: std::time::Duration::ZERO,
            state: Mutex::new(State::default()),
        };
        {
            let mut st = io.lock();
            io.reset_to_disk(&mut st);
        }
        io
    }

    /// Makes every successful fsync take `delay` after it has captured what
    /// it makes durable (for workloads with several threads).
    pub fn with_sync_delay(mut self, delay: std::time::Duration) -> PowerLossIo {
        self.sync_delay = delay;
        self
    }

    /// The process dies now: the next call, and every later one, fails with
    /// no effect (the page cache is photographed then).
    pub fn crash_now(&self) {
        self.crash_now.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The directory whose files are simulated.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Persistence calls made so far.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Whether the process is dead (a call failed because of `crash_at`).
    pub fn crashed(&self) -> bool {
        self.lock().failed > 0
    }

    /// What call `k` (from 1) was, if it was made.
    pub fn describe_call(&self, k: u64) -> Option<String> {
        let st = self.lock();
        k.checked_sub(1).and_then(|i| st.trace.get(i as usize).cloned())
    }

    /// Every call so far, one per line, numbered.
    pub fn trace(&self) -> Vec<String> {
        self.lock().trace.iter().enumerate().map(|(i, t)| format!("{:4} {t}", i + 1)).collect()
    }

    /// The page cache as the process left it: the photograph taken when it
    /// died, or the directory as it is now if it never did.
    pub fn image(&self) -> Image {
        let mut st = self.lock();
        match &st.dead {
            Some(img) => img.clone(),
            None => self.capture(&mut st),
        }
    }

    /// Writes one possible post-crash state of the directory into `target`
    /// (created; it should be empty). The simulated directory is untouched, so
    /// several outcomes of one crash can be tried.
    pub fn power_loss_into(&self, target: &Path, mode: LossMode, rng: &mut SplitMix) -> LossReport {
        let image = self.image();
        let st = self.lock();
        let (files, report) = outcome(&image, &st, mode, rng);
        drop(st);
        materialize(target, &files);
        report
    }

    /// Rewrites the simulated directory itself to one possible post-crash
    /// state (the log must have been abandoned). Afterwards the directory, as
    /// rewritten, counts as durable, and the process is alive again (calls
    /// after `crash_at` still fail).
    pub fn power_loss(&self, mode: LossMode, rng: &mut SplitMix) -> LossReport {
        let image = self.image();
        let mut st = self.lock();
        let (files, report) = outcome(&image, &st, mode, rng);
        for e in fs::read_dir(&self.dir).expect("list the simulated directory") {
            let e = e.expect("list the simulated directory");
            if e.file_type().is_ok_and(|t| t.is_file()) {
                fs::remove_file(e.path()).expect("clear the simulated directory");
            }
        }
        materialize(&self.dir, &files);
        self.reset_to_disk(&mut st);
        report
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a call: counts it, and fails it if the process is dead.
    fn begin(&self, what: impl FnOnce() -> String) -> io::Result<MutexGuard<'_, State>> {
        let mut st = self.lock();
        st.calls += 1;
        let what = what();
        st.trace.push(what);
        if self.crash_at.is_some_and(|k| st.calls >= k) || self.crash_now.load(std::sync::atomic::Ordering::SeqCst) {
            if st.dead.is_none() {
                let img = self.capture(&mut st);
                st.dead = Some(img);
            }
            st.failed += 1;
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(st)
    }

    /// Forgets the history: the directory as it is now is durable.
    fn reset_to_disk(&self, st: &mut State) {
        st.live.clear();
        st.durable.clear();
        st.dead = None;
        st.failed = 0;
        st.dir_ops.clear();
        let img = self.capture(st);
        st.durable_names = img.names;
        st.durable = img.contents;
    }

    fn fresh_id(st: &mut State) -> FileId {
        st.next_id += 1;
        st.next_id
    }

    fn id_for_key(st: &mut State, key: (u64, u64)) -> FileId {
        if let Some(&id) = st.live.get(&key) {
            return id;
        }
        let id = Self::fresh_id(st);
        st.live.insert(key, id);
        id
    }

    /// The names and contents of the regular files in the directory now.
    fn capture(&self, st: &mut State) -> Image {
        let mut img = Image::default();
        for e in fs::read_dir(&self.dir).expect("list the simulated directory") {
            let e = e.expect("list the simulated directory");
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
            let id = Self::id_for_key(st, (meta.dev(), meta.ino()));
            let bytes = fs::read(e.path()).expect("read a simulated file");
            img.names.insert(name, id);
            img.contents.insert(id, bytes);
        }
        img
    }

    /// The name of `path` if it lies directly in the simulated directory.
    fn name_in_dir(&self, path: &Path) -> Option<String> {
        let parent = path.parent()?;
        let same =
            parent == self.dir || (parent.canonicalize().ok().is_some_and(|p| Some(p) == self.dir.canonicalize().ok()));
        if !same {
            return None;
        }
        path.file_name()?.to_str().map(str::to_owned)
    }

    fn is_dir(&self, dir: &Path) -> bool {
        dir == self.dir || dir.canonicalize().ok().is_some_and(|d| Some(d) == self.dir.canonicalize().ok())
    }

    /// `sync_data` or `sync_all` (`call`), treated alike: the file's bytes as
    /// they are now become its durable image.
    fn sync_file(&self, call: &str, file: &File) -> io::Result<()> {
        {
            let mut st = self.begin(|| format!("{call} {}", file_name_of(file)))?;
            let key = key_of(&file.metadata()?);
            let id = Self::id_for_key(&mut st, key);
            let bytes = read_whole(file)?;
            st.durable.insert(id, bytes);
        }
        if !self.sync_delay.is_zero() {
            std::thread::sleep(self.sync_delay);
        }
        Ok(())
    }
}

/// The path an open file has now, for the trace.
fn file_name_of(file: &File) -> String {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "?".into())
}

fn short(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn key_of(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Reads the whole file through its descriptor.
fn read_whole(file: &File) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len() as usize;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

impl Io for PowerLossIo {
    fn create(&self, path: &Path) -> io::Result<File> {
        let mut st = self.begin(|| format!("create {}", short(path)))?;
        let existed = fs::symlink_metadata(path).is_ok();
        let file = OsIo.create(path)?;
        if let Some(name) = self.name_in_dir(path)
            && !existed
        {
            // A new inode: never the file a reused inode number used to name.
            let key = key_of(&file.metadata()?);
            let id = Self::fresh_id(&mut st);
            st.live.insert(key, id);
            st.dir_ops.push(DirOp::Create { name, id });
        }
        Ok(file)
    }

    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        let _st = self.begin(|| format!("write_all_at {} [{pos}, {})", file_name_of(file), pos + buf.len() as u64))?;
        OsIo.write_all_at(file, buf, pos)
    }

    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        let _st = self.begin(|| format!("allocate {} to {len}", file_name_of(file)))?;
        OsIo.allocate(file, len)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.sync_file("sync_data", file)
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        self.sync_file("sync_all", file)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("sync_dir {}", short(dir)))?;
        if !dir.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        if self.is_dir(dir) {
            let mut names = BTreeMap::new();
            for e in fs::read_dir(&self.dir)? {
                let e = e?;
                let meta = e.metadata()?;
                if meta.is_file()
                    && let Some(name) = e.file_name().to_str()
                {
                    let id = Self::id_for_key(&mut st, key_of(&meta));
                    names.insert(name.to_owned(), id);
                }
            }
            st.durable_names = names;
            st.dir_ops.clear();
        }
        Ok(())
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        let _st = self.begin(|| format!("set_len {} to {len}", file_name_of(file)))?;
        OsIo.set_len(file, len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("rename {} -> {}", short(from), short(to)))?;
        let moved = fs::symlink_metadata(from).map(|m| key_of(&m)).ok();
        let replaced = fs::symlink_metadata(to).map(|m| key_of(&m)).ok();
        OsIo.rename(from, to)?;
        if let (Some(f), Some(t), Some(m)) = (self.name_in_dir(from), self.name_in_dir(to), moved) {
            let id = Self::id_for_key(&mut st, m);
            st.dir_ops.push(DirOp::Rename { from: f, to: t, id });
        }
        if let Some(r) = replaced
            && Some(r) != moved
        {
            // The replaced file lost its last name; its inode number may be reused.
            st.live.remove(&r);
        }
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let _st = self.begin(|| format!("create_dir_all {}", short(path)))?;
        OsIo.create_dir_all(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let _st = self.begin(|| format!("remove_dir_all {}", short(path)))?;
        OsIo.remove_dir_all(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("remove_file {}", short(path)))?;
        let key = fs::symlink_metadata(path).map(|m| key_of(&m)).ok();
        OsIo.remove_file(path)?;
        if let Some(k) = key {
            if let Some(name) = self.name_in_dir(path) {
                let id = Self::id_for_key(&mut st, k);
                st.dir_ops.push(DirOp::Remove { name, id });
            }
            st.live.remove(&k);
        }
        Ok(())
    }
}

/// Bytes `range` of `image`, zeros beyond its end.
fn padded(image: &[u8], start: usize, end: usize) -> Vec<u8> {
    let mut out = vec![0u8; end - start];
    if start < image.len() {
        let n = image.len().min(end) - start;
        out[..n].copy_from_slice(&image[start..start + n]);
    }
    out
}

/// Replays `ops` over `names`, each kept with `keep` (and only if it still
/// applies). Returns the lines describing the lost ones.
fn replay(names: &mut BTreeMap<String, FileId>, ops: &[DirOp], mut keep: impl FnMut() -> bool) -> Vec<String> {
    let mut lost = Vec::new();
    for op in ops {
        let kept = keep();
        let applies = match op {
            DirOp::Create { name, .. } => !names.contains_key(name),
            DirOp::Rename { from, id, .. } | DirOp::Remove { name: from, id } => names.get(from) == Some(id),
        };
        if !kept {
            lost.push(match op {
                DirOp::Create { name, .. } => format!("lost: create {name}"),
                DirOp::Rename { from, to, .. } => format!("lost: rename {from} -> {to}"),
                DirOp::Remove { name, .. } => format!("lost: remove {name}"),
            });
            continue;
        }
        if !applies {
            lost.push(format!("moot: {op:?} (an operation it depends on was lost)"));
            continue;
        }
        match op {
            DirOp::Create { name, id } => {
                names.insert(name.clone(), *id);
            }
            DirOp::Rename { from, to, id } => {
                names.remove(from);
                names.insert(to.clone(), *id);
            }
            DirOp::Remove { name, .. } => {
                names.remove(name);
            }
        }
    }
    lost
}

/// Chooses one post-crash state: the files (name -> bytes) that exist after it.
fn outcome(image: &Image, st: &State, mode: LossMode, rng: &mut SplitMix) -> (BTreeMap<String, Vec<u8>>, LossReport) {
    let mut report = LossReport::default();
    let keep = |rng: &mut SplitMix| match mode {
        LossMode::ProcessCrash => true,
        LossMode::Clean => false,
        LossMode::Random { keep_percent, .. } => rng.chance(u64::from(keep_percent)),
    };

    // Files created without going through `Io` (the lock file) count as
    // created first, since the last directory sync.
    let known: BTreeSet<FileId> = st
        .durable_names
        .values()
        .copied()
        .chain(st.dir_ops.iter().map(|op| match op {
            DirOp::Create { id, .. } | DirOp::Rename { id, .. } | DirOp::Remove { id, .. } => *id,
        }))
        .collect();
    let mut ops: Vec<DirOp> = image
        .names
        .iter()
        .filter(|(_, id)| !known.contains(id))
        .map(|(name, id)| DirOp::Create { name: name.clone(), id: *id })
        .collect();
    ops.extend(st.dir_ops.iter().cloned());

    // Replaying every operation must give the directory the process left;
    // if not, something changed it behind the simulator's back.
    let mut all = st.durable_names.clone();
    replay(&mut all, &ops, || true);
    assert_eq!(
        all, image.names,
        "simulator: the directory changed outside the Io trait (durable {:?}, operations {:?})",
        st.durable_names, st.dir_ops
    );

    let placed = match mode {
        LossMode::ProcessCrash => image.names.clone(),
        LossMode::Clean => {
            report.lines.extend(replay(&mut st.durable_names.clone(), &ops, || false));
            st.durable_names.clone()
        }
        LossMode::Random { .. } => {
            let mut names = st.durable_names.clone();
            report.lines.extend(replay(&mut names, &ops, || keep(rng)));
            names
        }
    };

    // Contents.
    let empty = Vec::new();
    let mut files = BTreeMap::new();
    for (name, id) in placed {
        let dur = st.durable.get(&id).unwrap_or(&empty);
        let bytes = match (mode, image.contents.get(&id)) {
            (_, None) => {
                report.lines.push(format!("{name}: removed, back with its durable image ({} bytes)", dur.len()));
                dur.clone()
            }
            (LossMode::ProcessCrash, Some(cur)) => cur.clone(),
            (LossMode::Clean, Some(cur)) => {
                if cur != dur {
                    report.lines.push(format!("{name}: {} -> durable image of {} bytes", cur.len(), dur.len()));
                }
                dur.clone()
            }
            (LossMode::Random { torn, .. }, Some(cur)) => {
                let len = if cur.len() == dur.len() || keep(rng) { cur.len() } else { dur.len() };
                let mut out = vec![0u8; len];
                let (mut kept, mut reverted, mut tore) = (0, 0, 0);
                for start in (0..len).step_by(PAGE) {
                    let end = (start + PAGE).min(len);
                    let c = padded(cur, start, end);
                    let d = padded(dur, start, end);
                    if c == d {
                        out[start..end].copy_from_slice(&c);
                    } else if torn && rng.chance(25) {
                        tore += 1;
                        for s in (0..end - start).step_by(SECTOR) {
                            let e = (s + SECTOR).min(end - start);
                            let src = if keep(rng) { &c } else { &d };
                            out[start + s..start + e].copy_from_slice(&src[s..e]);
                        }
                    } else if keep(rng) {
                        kept += 1;
                        out[start..end].copy_from_slice(&c);
                    } else {
                        reverted += 1;
                        out[start..end].copy_from_slice(&d);
                    }
                }
                report.pages_current += kept;
                report.pages_durable += reverted;
                report.pages_torn += tore;
                if out != *cur {
                    report.lines.push(format!(
                        "{name}: length {} (current {}, durable {}), {kept} pages kept, {reverted} reverted, {tore} torn",
                        len,
                        cur.len(),
                        dur.len()
                    ));
                }
                out
            }
        };
        files.insert(name, bytes);
    }
    (files, report)
}

/// Writes `files` into `dir`, leaving pages of zeros as holes.
fn materialize(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    fs::create_dir_all(dir).expect("create the target directory");
    for (name, bytes) in files {
        let f = File::create(dir.join(name)).expect("create a file after the power loss");
        f.set_len(bytes.len() as u64).expect("size a file after the power loss");
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            if page.iter().any(|&b| b != 0) {
                f.write_all_at(page, (i * PAGE) as u64).expect("write a file after the power loss");
            }
        }
    }
}
