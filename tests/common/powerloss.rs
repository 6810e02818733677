//! A simulated disk for crash tests: [`PowerLossIo`] runs annal's persistence
//! calls against the real file system (in a test directory, the *root*) while
//! it keeps track of what a disk would actually guarantee after a power loss,
//! and can then rewrite the tree under the root to one possible
//! post-power-loss state.
//!
//! What it models:
//!
//! - **A crash at a chosen persistence call.** Every call of the [`Io`] trait
//!   (`create`, `write_all_at`, `allocate`, `sync_data`, `sync_all`,
//!   `sync_dir`, `set_len`, `rename`, `remove_file`, `create_dir_all`,
//!   `remove_dir_all`; not the reads) is counted from 1, wherever its path
//!   is. With `crash_at = Some(k)`, call `k` and every later call fail with
//!   `EIO` and have no effect: the process is dead from then on. At call `k`
//!   the tree under the root is photographed ([`Image`]): that is the page
//!   cache the dead process left, whatever the program does afterwards
//!   (writes through its maps, removals that bypass [`Io`]) does not count.
//! - **Durable file contents.** Per file (identified by its inode while it is
//!   linked, by a simulator id after that, so a reused inode number is never
//!   confused with a removed file), the *durable image* is the file's bytes,
//!   size included, as of its last successful `sync_data` or `sync_all` (both
//!   are treated alike). A file never synced has an empty durable image. No
//!   real fsync is issued: durability is simulated, which keeps the test fast.
//! - **The durable namespace of the directory tree under the root.** Every
//!   directory under the root, at any depth, is tracked, and has an identity
//!   as a file has (so a directory keeps it, and its contents, when it moves).
//!   The name of a file or of a subdirectory is durable in its parent as of
//!   the parent's last successful `sync_dir`. The directory operations since
//!   then are not durable: a creation (`create` of a new file;
//!   `create_dir_all`: each directory it creates is a creation in its parent),
//!   a rename of a file or of a directory (an atomic move of the whole
//!   subtree; a rename between two directories is an operation of both, made
//!   durable by a sync of either, and kept or lost as one unit), a removal
//!   (`remove_file`; `remove_dir_all`: the removal of the whole subtree, one
//!   operation in the parent of the removed directory). A file or directory
//!   that appears without going through [`Io`] (the lock files annal opens
//!   itself) counts as created, not durably, when the simulator first sees it:
//!   when a call names it or something under it, or renames or removes a
//!   directory above it; at a sync of its directory (durable then); failing
//!   those, as the last operation before the power loss.
//! - **A power loss** ([`PowerLossIo::power_loss_into`]): each undurable
//!   directory operation is kept or lost on its own. The tree as of the first
//!   undurable operation is the starting point, and every operation from there
//!   on is replayed in order, the durable ones always and the others if kept,
//!   each only if it still applies: a file or directory created (even durably)
//!   in a directory whose creation was lost vanishes with it, a rename or
//!   removal of a file whose creation was lost does not happen, a directory
//!   never moves below itself and replaces only an empty directory. A rename
//!   is atomic: if it is lost, the file or directory (with its subtree) is
//!   back under its old name if that was durable (else gone) and what it
//!   replaced is still there; if it is kept, the replaced one is gone. A lost
//!   removal brings the file back with its durable image, or the directory
//!   with its subtree as the replay leaves it (each file in it with its
//!   durable image); a kept one takes the whole subtree. A lost creation makes
//!   the file, or the directory and everything created in it, vanish. Each
//!   file's length is its current or its durable length; each 4-KiB page that
//!   differs is the current one (the OS wrote it back) or the durable one, and
//!   optionally torn: each 512-byte sector chosen on its own. Bytes beyond the
//!   end of the chosen image read as zeros (fresh or preallocated blocks never
//!   expose stale data). Pages of zeros are left as holes, as in a
//!   preallocated file.
//!
//! What it does not model: a disk that acknowledges an fsync it did not
//! perform, damage to data that was synced (bit rot, misdirected writes:
//! other tests cover those), anything outside the root (a directory above it,
//! a sibling archive directory: calls on paths there are counted, and can be
//! crashed at, but pass through with no durability tracked, and a power loss
//! writes out only the tree under the root), the root itself (it always exists: its creation,
//! removal or renaming is not tracked), a `remove_dir_all` that fails half-way
//! (it is one operation or none), directory metadata other than names
//! (permissions, times), hard and symbolic links (a file has one name;
//! anything but regular files and directories is ignored), size changes that
//! reach the disk without their data (a length is always paired with zeros,
//! never garbage), and concurrency (calls are serialized; crash points are
//! deterministic only for a single-threaded workload).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use annal::io::{Io, OsIo};

/// Granularity at which the OS writes dirty data back.
pub const PAGE: usize = 4096;
/// Granularity at which a device writes atomically (a torn page tears here).
pub const SECTOR: usize = 512;

/// errno EIO.
const EIO: i32 = 5;

/// A simulator-wide identity of a file or directory (see the module
/// documentation).
type NodeId = u64;

/// The identity of the root directory.
const ROOT: NodeId = 0;

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
    /// durable image, the namespace is the one of the last directory syncs.
    Clean,
    /// Power loss with arbitrary writeback: each undurable directory
    /// operation, length and differing page is the current one with
    /// probability `keep_percent` %, otherwise the durable one; with `torn`, a
    /// quarter of the differing pages are torn (each 512-byte sector chosen on
    /// its own).
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

/// A namespace: the entries of every directory in it, by identity. A node is
/// a directory if and only if it has entries here (possibly none); a
/// directory unlinked from the tree is taken out with its subtree, so every
/// directory listed is reachable from the root, which is always there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree {
    dirs: HashMap<NodeId, BTreeMap<String, NodeId>>,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree { dirs: HashMap::from([(ROOT, BTreeMap::new())]) }
    }
}

/// One node of a [`Tree`], as [`Tree::walk`] lists it.
#[derive(Debug, Clone)]
struct Node {
    /// Path relative to the root, `/`-separated.
    path: String,
    parent: NodeId,
    name: String,
    id: NodeId,
    dir: bool,
}

impl Tree {
    fn is_dir(&self, id: NodeId) -> bool {
        self.dirs.contains_key(&id)
    }

    fn entry(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        self.dirs.get(&dir).and_then(|e| e.get(name)).copied()
    }

    /// Takes the directories of `id`'s subtree out (nothing for a file).
    fn detach(&mut self, id: NodeId) {
        if let Some(entries) = self.dirs.remove(&id) {
            for child in entries.into_values() {
                self.detach(child);
            }
        }
    }

    /// Whether `node` is `top` or lies below it.
    fn within(&self, node: NodeId, top: NodeId) -> bool {
        node == top || self.dirs.get(&top).is_some_and(|e| e.values().any(|&c| self.within(node, c)))
    }

    /// Every node but the root, depth first, each directory's entries in
    /// name order (a directory before what it holds).
    fn walk(&self) -> Vec<Node> {
        fn visit(tree: &Tree, dir: NodeId, prefix: &str, out: &mut Vec<Node>) {
            for (name, &id) in &tree.dirs[&dir] {
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                let is_dir = tree.is_dir(id);
                out.push(Node { path: path.clone(), parent: dir, name: name.clone(), id, dir: is_dir });
                if is_dir {
                    visit(tree, id, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        visit(self, ROOT, "", &mut out);
        out
    }

    /// Every path with its node, and whether it is a directory.
    fn paths(&self) -> BTreeMap<String, (NodeId, bool)> {
        self.walk().into_iter().map(|n| (n.path, (n.id, n.dir))).collect()
    }

    /// Every node in the tree.
    fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.dirs.values().flat_map(|e| e.values().copied())
    }
}

/// The files and directories under the root: names and, per file, its bytes.
#[derive(Debug, Clone, Default)]
pub struct Image {
    tree: Tree,
    contents: HashMap<NodeId, Vec<u8>>,
}

impl Image {
    /// Every path (relative to the root, `/`-separated) with its contents:
    /// `None` for a directory.
    pub fn entries(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        self.tree.walk().into_iter().map(|n| (n.path, self.contents.get(&n.id).filter(|_| !n.dir).cloned())).collect()
    }
}

/// What one simulated power loss chose, for failure messages.
#[derive(Debug, Default, Clone)]
pub struct LossReport {
    /// One line per file that differs from its current state, or directory
    /// operation lost (or moot).
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

/// A change to the namespace, not durable until a directory it changes is
/// synced. Parents are identities, so an operation inside a directory
/// follows the directory wherever it moves; the paths are for reports.
#[derive(Debug, Clone)]
enum DirOp {
    /// File or directory `id` appears as `name` in `parent`.
    Create { parent: NodeId, name: String, id: NodeId, dir: bool, path: String },
    /// `id` (with its subtree) moves from `from` in `from_parent` to `to` in
    /// `to_parent`, replacing what was there.
    Rename { from_parent: NodeId, from: String, to_parent: NodeId, to: String, id: NodeId, paths: (String, String) },
    /// `id` (with its subtree) disappears from `parent`.
    Remove { parent: NodeId, name: String, id: NodeId, dir: bool, path: String },
}

impl DirOp {
    /// Whether the operation changes directory `dir`'s entries.
    fn changes(&self, dir: NodeId) -> bool {
        match self {
            DirOp::Create { parent, .. } | DirOp::Remove { parent, .. } => *parent == dir,
            DirOp::Rename { from_parent, to_parent, .. } => *from_parent == dir || *to_parent == dir,
        }
    }

    fn id(&self) -> NodeId {
        match self {
            DirOp::Create { id, .. } | DirOp::Rename { id, .. } | DirOp::Remove { id, .. } => *id,
        }
    }

    fn describe(&self) -> String {
        match self {
            DirOp::Create { path, dir: false, .. } => format!("create {path}"),
            DirOp::Create { path, dir: true, .. } => format!("create directory {path}"),
            DirOp::Rename { paths: (from, to), .. } => format!("rename {from} -> {to}"),
            DirOp::Remove { path, dir: false, .. } => format!("remove {path}"),
            DirOp::Remove { path, dir: true, .. } => format!("remove directory {path} with everything in it"),
        }
    }

    /// Applies the operation to `tree` if it applies there (see the module
    /// documentation); returns whether it did.
    fn apply(&self, tree: &mut Tree) -> bool {
        match self {
            DirOp::Create { parent, name, id, dir, .. } => {
                let Some(entries) = tree.dirs.get_mut(parent) else { return false };
                if entries.contains_key(name) {
                    return false;
                }
                entries.insert(name.clone(), *id);
                if *dir {
                    tree.dirs.insert(*id, BTreeMap::new());
                }
                true
            }
            DirOp::Rename { from_parent, from, to_parent, to, id, .. } => {
                if tree.entry(*from_parent, from) != Some(*id) || !tree.is_dir(*to_parent) {
                    return false;
                }
                let dir = tree.is_dir(*id);
                if dir && tree.within(*to_parent, *id) {
                    return false;
                }
                if let Some(replaced) = tree.entry(*to_parent, to).filter(|r| r != id) {
                    // As rename(2): a file replaces a file, a directory an empty directory.
                    let fits = match tree.dirs.get(&replaced) {
                        None => !dir,
                        Some(entries) => dir && entries.is_empty(),
                    };
                    if !fits {
                        return false;
                    }
                    tree.detach(replaced);
                }
                tree.dirs.get_mut(from_parent).expect("a directory").remove(from);
                tree.dirs.get_mut(to_parent).expect("a directory").insert(to.clone(), *id);
                true
            }
            DirOp::Remove { parent, name, id, .. } => {
                if tree.entry(*parent, name) != Some(*id) {
                    return false;
                }
                tree.dirs.get_mut(parent).expect("a directory").remove(name);
                tree.detach(*id);
                true
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Persistence calls so far (failed ones included).
    calls: u64,
    /// Calls that failed because the process is dead.
    failed: u64,
    /// What each call was, numbered from 1.
    trace: Vec<String>,
    next_id: NodeId,
    /// (device, inode) of each linked file or directory -> its id.
    live: HashMap<(u64, u64), NodeId>,
    /// Durable images; a file missing here has an empty one.
    durable: HashMap<NodeId, Vec<u8>>,
    /// The namespace as of the first operation of `ops`: every operation
    /// before it was durable.
    base: Tree,
    /// Directory operations since, in order, each with whether it is durable
    /// (a directory it changes was synced after it).
    ops: Vec<(DirOp, bool)>,
    /// The namespace as the process sees it: `base` with every operation of
    /// `ops` applied.
    current: Tree,
    /// The page cache when the process died, if it did.
    dead: Option<Image>,
}

impl State {
    /// Records a directory operation that just happened.
    fn record(&mut self, op: DirOp) {
        op.apply(&mut self.current);
        self.ops.push((op, false));
    }
}

/// An [`Io`] over the real file system that models what a disk guarantees
/// (see the module documentation). Only the tree under `dir` is modeled.
#[derive(Debug)]
pub struct PowerLossIo {
    dir: PathBuf,
    /// `dir`, canonical, to recognize paths under it spelled another way.
    canonical: Option<PathBuf>,
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
    /// tree under it holds now counts as durable.
    pub fn new(dir: &Path, crash_at: Option<u64>) -> PowerLossIo {
        fs::create_dir_all(dir).expect("create the simulated directory");
        let io = PowerLossIo {
            dir: dir.to_owned(),
            canonical: dir.canonicalize().ok(),
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

    /// The root of the simulated tree.
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

    /// The directory operations not durable yet, one per line (for failure
    /// messages).
    pub fn undurable(&self) -> Vec<String> {
        self.lock().ops.iter().filter(|(_, durable)| !durable).map(|(op, _)| op.describe()).collect()
    }

    /// The page cache as the process left it: the photograph taken when it
    /// died, or the tree as it is now if it never did.
    pub fn image(&self) -> Image {
        let mut st = self.lock();
        match &st.dead {
            Some(img) => img.clone(),
            None => self.capture(&mut st),
        }
    }

    /// Writes one possible post-crash state of the tree into `target`
    /// (created; it should be empty). The simulated tree is untouched, so
    /// several outcomes of one crash can be tried.
    pub fn power_loss_into(&self, target: &Path, mode: LossMode, rng: &mut SplitMix) -> LossReport {
        let image = self.image();
        let st = self.lock();
        let (entries, report) = outcome(&image, &st, mode, rng);
        drop(st);
        materialize(target, &entries);
        report
    }

    /// Rewrites the simulated tree itself to one possible post-crash state
    /// (the program must have abandoned it). Afterwards the tree, as
    /// rewritten, counts as durable, and the process is alive again (calls
    /// after `crash_at` still fail).
    pub fn power_loss(&self, mode: LossMode, rng: &mut SplitMix) -> LossReport {
        let image = self.image();
        let mut st = self.lock();
        let (entries, report) = outcome(&image, &st, mode, rng);
        for e in fs::read_dir(&self.dir).expect("list the simulated directory") {
            let e = e.expect("list the simulated directory");
            match e.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(e.path()).expect("clear the simulated directory"),
                Ok(t) if t.is_file() => fs::remove_file(e.path()).expect("clear the simulated directory"),
                _ => {}
            }
        }
        materialize(&self.dir, &entries);
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

    /// Forgets the history: the tree as it is now is durable.
    fn reset_to_disk(&self, st: &mut State) {
        st.live.clear();
        st.durable.clear();
        st.dead = None;
        st.failed = 0;
        st.ops.clear();
        if let Ok(meta) = fs::metadata(&self.dir) {
            st.live.insert(key_of(&meta), ROOT);
        }
        let img = self.capture(st);
        st.base = img.tree.clone();
        st.current = img.tree;
        st.durable = img.contents;
    }

    fn fresh_id(st: &mut State) -> NodeId {
        st.next_id += 1;
        st.next_id
    }

    fn id_for_key(st: &mut State, key: (u64, u64)) -> NodeId {
        if let Some(&id) = st.live.get(&key) {
            return id;
        }
        let id = Self::fresh_id(st);
        st.live.insert(key, id);
        id
    }

    /// The regular files and directories under the root now, with the files'
    /// contents.
    fn capture(&self, st: &mut State) -> Image {
        fn visit(st: &mut State, path: &Path, dir: NodeId, img: &mut Image) {
            let mut entries: Vec<(String, PathBuf, fs::Metadata)> = fs::read_dir(path)
                .expect("list a simulated directory")
                .filter_map(|e| {
                    let e = e.expect("list a simulated directory");
                    let name = e.file_name().to_str()?.to_owned();
                    Some((name, e.path(), e.metadata().ok()?))
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            img.tree.dirs.insert(dir, BTreeMap::new());
            for (name, path, meta) in entries {
                if !meta.is_file() && !meta.is_dir() {
                    continue;
                }
                let id = PowerLossIo::id_for_key(st, key_of(&meta));
                img.tree.dirs.get_mut(&dir).expect("a directory").insert(name, id);
                if meta.is_dir() {
                    visit(st, &path, id, img);
                } else {
                    let bytes = fs::read(&path).expect("read a simulated file");
                    img.contents.insert(id, bytes);
                }
            }
        }
        let mut img = Image::default();
        visit(st, &self.dir, ROOT, &mut img);
        img
    }

    /// `path` relative to the root, if it is the root or lies under it.
    fn relative(&self, path: &Path) -> Option<PathBuf> {
        let rel = match path.strip_prefix(&self.dir) {
            Ok(r) => r.to_owned(),
            Err(_) => {
                // Spelled another way: canonicalize the longest part that
                // exists (the rest may not exist yet).
                let canonical = self.canonical.as_ref()?;
                let mut existing = path;
                let mut rest = Vec::new();
                let real = loop {
                    if let Ok(c) = existing.canonicalize() {
                        break c;
                    }
                    rest.push(existing.file_name()?);
                    existing = existing.parent()?;
                };
                let full = rest.iter().rev().fold(real, |p, n| p.join(n));
                full.strip_prefix(canonical).ok()?.to_owned()
            }
        };
        rel.components().all(|c| matches!(c, Component::Normal(_))).then_some(rel)
    }

    /// `path` relative to the root if it lies strictly under it: its parent's
    /// relative path and its name.
    fn split(&self, path: &Path) -> Option<(PathBuf, String)> {
        let rel = self.relative(path)?;
        let name = rel.file_name()?.to_str()?.to_owned();
        Some((rel.parent()?.to_owned(), name))
    }

    /// How a path shows in the trace: relative to the root if it lies under
    /// it, else its file name.
    fn shown(&self, path: &Path) -> String {
        match self.relative(path) {
            Some(rel) if rel.as_os_str().is_empty() => ".".into(),
            Some(rel) => rel.display().to_string(),
            None => short(path),
        }
    }

    /// The path an open file has now, for the trace.
    fn file_name_of(&self, file: &File) -> String {
        use std::os::fd::AsRawFd;
        fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_or_else(|_| "?".into(), |p| self.shown(&p))
    }

    /// The node at `rel` (relative to the root), which exists on disk, as the
    /// model knows it. Whatever the model does not know on the way (created
    /// behind the simulator's back: lock files) is recorded as created now,
    /// not durably. `None` if there is no file or directory at `rel`.
    fn known(&self, st: &mut State, rel: &Path) -> Option<NodeId> {
        let mut node = ROOT;
        let mut path = self.dir.clone();
        let mut shown = String::new();
        for c in rel.components() {
            let Component::Normal(name) = c else { return None };
            let name = name.to_str()?;
            path.push(name);
            shown = if shown.is_empty() { name.to_owned() } else { format!("{shown}/{name}") };
            let meta = fs::symlink_metadata(&path).ok()?;
            if !meta.is_file() && !meta.is_dir() {
                return None;
            }
            let id = Self::id_for_key(st, key_of(&meta));
            match st.current.entry(node, name) {
                Some(had) if had == id => {}
                had => {
                    if let Some(stale) = had {
                        // Replaced behind the simulator's back.
                        let dir = st.current.is_dir(stale);
                        st.record(DirOp::Remove {
                            parent: node,
                            name: name.to_owned(),
                            id: stale,
                            dir,
                            path: shown.clone(),
                        });
                    }
                    let op = DirOp::Create {
                        parent: node,
                        name: name.to_owned(),
                        id,
                        dir: meta.is_dir(),
                        path: shown.clone(),
                    };
                    st.record(op);
                }
            }
            node = id;
        }
        Some(node)
    }

    /// Makes the subtree at `rel` known, everything in it included.
    fn known_subtree(&self, st: &mut State, rel: &Path) -> Option<NodeId> {
        let id = self.known(st, rel)?;
        if let Ok(entries) = fs::read_dir(self.dir.join(rel)) {
            let mut names: Vec<String> =
                entries.filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned)).collect();
            names.sort();
            for name in names {
                self.known_subtree(st, &rel.join(name));
            }
        }
        Some(id)
    }

    /// `sync_data` or `sync_all` (`call`), treated alike: the file's bytes as
    /// they are now become its durable image.
    fn sync_file(&self, call: &str, file: &File) -> io::Result<()> {
        {
            let mut st = self.begin(|| format!("{call} {}", self.file_name_of(file)))?;
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

fn short(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn key_of(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// `name` in the directory whose relative path is `parent`, for reports.
fn joined(parent: &Path, name: &str) -> String {
    parent.join(name).display().to_string()
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

/// (device, inode) of everything under `path`, itself included.
fn subtree_keys(path: &Path, out: &mut Vec<(u64, u64)>) {
    let Ok(meta) = fs::symlink_metadata(path) else { return };
    out.push(key_of(&meta));
    if meta.is_dir()
        && let Ok(entries) = fs::read_dir(path)
    {
        for e in entries.flatten() {
            subtree_keys(&e.path(), out);
        }
    }
}

impl Io for PowerLossIo {
    fn create(&self, path: &Path) -> io::Result<File> {
        let mut st = self.begin(|| format!("create {}", self.shown(path)))?;
        let existed = fs::symlink_metadata(path).is_ok();
        let place = self.split(path).and_then(|(parent, name)| Some((self.known(&mut st, &parent)?, parent, name)));
        let file = OsIo.create(path)?;
        if let Some((parent, parent_rel, name)) = place {
            if existed {
                self.known(&mut st, &parent_rel.join(&name));
            } else {
                // A new inode: never the file a reused inode number used to name.
                let key = key_of(&file.metadata()?);
                let id = Self::fresh_id(&mut st);
                st.live.insert(key, id);
                let path = joined(&parent_rel, &name);
                st.record(DirOp::Create { parent, name, id, dir: false, path });
            }
        }
        Ok(file)
    }

    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        let _st =
            self.begin(|| format!("write_all_at {} [{pos}, {})", self.file_name_of(file), pos + buf.len() as u64))?;
        OsIo.write_all_at(file, buf, pos)
    }

    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        let _st = self.begin(|| format!("allocate {} to {len}", self.file_name_of(file)))?;
        OsIo.allocate(file, len)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.sync_file("sync_data", file)
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        self.sync_file("sync_all", file)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("sync_dir {}", self.shown(dir)))?;
        if !dir.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let Some(id) = self.relative(dir).and_then(|rel| self.known(&mut st, &rel)) else { return Ok(()) };
        // The entries on disk now are what becomes durable: whatever the
        // model missed (created or removed behind its back) is recorded first.
        let mut listed = BTreeMap::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let meta = e.metadata()?;
            if (meta.is_file() || meta.is_dir())
                && let Some(name) = e.file_name().to_str()
            {
                let nid = Self::id_for_key(&mut st, key_of(&meta));
                listed.insert(name.to_owned(), (nid, meta.is_dir()));
            }
        }
        let shown = |name: &str| match self.relative(dir) {
            Some(rel) => joined(&rel, name),
            None => name.to_owned(),
        };
        let modeled = st.current.dirs.get(&id).cloned().unwrap_or_default();
        for (name, had) in modeled {
            if listed.get(&name).map(|l| l.0) != Some(had) {
                let dir = st.current.is_dir(had);
                st.record(DirOp::Remove { parent: id, path: shown(&name), name, id: had, dir });
            }
        }
        for (name, (nid, is_dir)) in listed {
            if st.current.entry(id, &name) != Some(nid) {
                st.record(DirOp::Create { parent: id, path: shown(&name), name, id: nid, dir: is_dir });
            }
        }
        // Every operation on this directory's entries so far is durable now;
        // the durable ones at the front go into the base.
        for (op, durable) in &mut st.ops {
            if op.changes(id) {
                *durable = true;
            }
        }
        let n = st.ops.iter().take_while(|(_, durable)| *durable).count();
        let State { base, ops, .. } = &mut *st;
        for (op, _) in ops.drain(..n) {
            op.apply(base);
        }
        Ok(())
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        let _st = self.begin(|| format!("set_len {} to {len}", self.file_name_of(file)))?;
        OsIo.set_len(file, len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("rename {} -> {}", self.shown(from), self.shown(to)))?;
        let moved_key = fs::symlink_metadata(from).map(|m| key_of(&m)).ok();
        let replaced_key = fs::symlink_metadata(to).map(|m| key_of(&m)).ok();
        let source = self.split(from).and_then(|(parent, name)| {
            let parent_id = self.known(&mut st, &parent)?;
            let id = self.known_subtree(&mut st, &parent.join(&name))?;
            Some((parent_id, parent, name, id))
        });
        let target = self.split(to).and_then(|(parent, name)| Some((self.known(&mut st, &parent)?, parent, name)));
        OsIo.rename(from, to)?;
        match (source, target) {
            (Some((from_parent, from_rel, from, id)), Some((to_parent, to_rel, to))) => {
                let paths = (joined(&from_rel, &from), joined(&to_rel, &to));
                st.record(DirOp::Rename { from_parent, from, to_parent, to, id, paths });
            }
            (Some((parent, rel, name, id)), None) => {
                // Moved out of the simulated tree: gone from it.
                let dir = st.current.is_dir(id);
                let path = joined(&rel, &name);
                st.record(DirOp::Remove { parent, name, id, dir, path });
            }
            (None, Some((_, rel, name))) => {
                // Moved into the simulated tree: a creation.
                self.known_subtree(&mut st, &rel.join(name));
            }
            (None, None) => {}
        }
        if let Some(r) = replaced_key
            && Some(r) != moved_key
        {
            // The replaced file lost its last name; its inode number may be reused.
            st.live.remove(&r);
        }
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("create_dir_all {}", self.shown(path)))?;
        // The directories this call creates, outermost first, after the
        // deepest one that exists (which the model must know).
        let mut missing = Vec::new();
        if let Some(rel) = self.relative(path) {
            let mut prefix = PathBuf::new();
            for c in rel.components() {
                prefix.push(c);
                if fs::symlink_metadata(self.dir.join(&prefix)).is_err() {
                    missing.push(prefix.clone());
                } else if missing.is_empty() {
                    self.known(&mut st, &prefix);
                }
            }
        }
        OsIo.create_dir_all(path)?;
        for rel in missing {
            let parent_rel = rel.parent().expect("under the root").to_owned();
            let Some(parent) = self.known(&mut st, &parent_rel) else { continue };
            let Ok(meta) = fs::symlink_metadata(self.dir.join(&rel)) else { continue };
            let id = Self::fresh_id(&mut st);
            st.live.insert(key_of(&meta), id);
            let name = rel.file_name().and_then(|n| n.to_str()).expect("a name").to_owned();
            st.record(DirOp::Create { parent, name, id, dir: true, path: rel.display().to_string() });
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("remove_dir_all {}", self.shown(path)))?;
        let place = self.split(path).and_then(|(parent, name)| {
            let parent_id = self.known(&mut st, &parent)?;
            let id = self.known_subtree(&mut st, &parent.join(&name))?;
            Some((parent_id, parent, name, id))
        });
        let mut keys = Vec::new();
        subtree_keys(path, &mut keys);
        OsIo.remove_dir_all(path)?;
        if let Some((parent, rel, name, id)) = place {
            let path = joined(&rel, &name);
            st.record(DirOp::Remove { parent, name, id, dir: true, path });
        }
        for k in keys {
            st.live.remove(&k);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.begin(|| format!("remove_file {}", self.shown(path)))?;
        let key = fs::symlink_metadata(path).map(|m| key_of(&m)).ok();
        let place = self.split(path).and_then(|(parent, name)| {
            let parent_id = self.known(&mut st, &parent)?;
            let id = self.known(&mut st, &parent.join(&name))?;
            Some((parent_id, parent, name, id))
        });
        OsIo.remove_file(path)?;
        if let Some((parent, rel, name, id)) = place {
            let path = joined(&rel, &name);
            st.record(DirOp::Remove { parent, name, id, dir: false, path });
        }
        if let Some(k) = key {
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

/// What a power loss leaves: each path (relative to the root, parents
/// before what they hold) with its bytes, `None` for a directory.
type Entries = Vec<(String, Option<Vec<u8>>)>;

/// Chooses one post-crash state of the tree.
fn outcome(image: &Image, st: &State, mode: LossMode, rng: &mut SplitMix) -> (Entries, LossReport) {
    let mut report = LossReport::default();
    let keep = |rng: &mut SplitMix| match mode {
        LossMode::ProcessCrash => true,
        LossMode::Clean => false,
        LossMode::Random { keep_percent, .. } => rng.chance(u64::from(keep_percent)),
    };

    // Files and directories created without going through `Io` that no call
    // or directory sync has shown the simulator yet count as created last,
    // undurably (each in its parent, wherever that is by then).
    let known: HashSet<NodeId> = st.base.nodes().chain(st.ops.iter().map(|(op, _)| op.id())).collect();
    let unseen: Vec<DirOp> = image
        .tree
        .walk()
        .into_iter()
        .filter(|n| !known.contains(&n.id))
        .map(|n| DirOp::Create { parent: n.parent, name: n.name, id: n.id, dir: n.dir, path: n.path })
        .collect();
    let ops: Vec<(&DirOp, bool)> =
        st.ops.iter().map(|(op, durable)| (op, *durable)).chain(unseen.iter().map(|op| (op, false))).collect();

    // Replaying every operation must give the tree the process left; if not,
    // something changed it behind the simulator's back.
    let mut all = st.base.clone();
    for (op, _) in &ops {
        op.apply(&mut all);
    }
    assert_eq!(
        all.paths(),
        image.tree.paths(),
        "simulator: the tree changed outside the Io trait (durable {:?}, operations {:?})",
        st.base.paths(),
        st.ops
    );

    let placed = match mode {
        LossMode::ProcessCrash => image.tree.clone(),
        LossMode::Clean | LossMode::Random { .. } => {
            // Which undurable operations are kept: the unseen creations are
            // drawn first (as they always were), then the others in order.
            let mut kept: Vec<bool> = ops.iter().map(|(_, durable)| *durable).collect();
            for k in &mut kept[st.ops.len()..] {
                *k = keep(rng);
            }
            for (k, (_, durable)) in kept.iter_mut().zip(&st.ops) {
                if !durable {
                    *k = keep(rng);
                }
            }
            let mut tree = st.base.clone();
            for ((op, _), kept) in ops.iter().zip(kept) {
                if !kept {
                    report.lines.push(format!("lost: {}", op.describe()));
                } else if !op.apply(&mut tree) {
                    report.lines.push(format!("moot: {} (an operation it depends on was lost)", op.describe()));
                }
            }
            tree
        }
    };

    // Contents.
    let empty = Vec::new();
    let mut entries = Vec::new();
    for node in placed.walk() {
        if node.dir {
            entries.push((node.path, None));
            continue;
        }
        let (name, id) = (node.path, node.id);
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
        entries.push((name, Some(bytes)));
    }
    (entries, report)
}

/// Writes `entries` under `dir`, leaving pages of zeros as holes.
fn materialize(dir: &Path, entries: &Entries) {
    fs::create_dir_all(dir).expect("create the target directory");
    for (path, bytes) in entries {
        let Some(bytes) = bytes else {
            fs::create_dir_all(dir.join(path)).expect("create a directory after the power loss");
            continue;
        };
        let f = File::create(dir.join(path)).expect("create a file after the power loss");
        f.set_len(bytes.len() as u64).expect("size a file after the power loss");
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            if page.iter().any(|&b| b != 0) {
                f.write_all_at(page, (i * PAGE) as u64).expect("write a file after the power loss");
            }
        }
    }
}

/// The post-crash states a sweep tries at each crash point: the process
/// dies, the power goes with only synced data kept, and three random
/// writebacks (two with torn pages).
pub const SWEEP_MODES: [LossMode; 5] = [
    LossMode::ProcessCrash,
    LossMode::Clean,
    LossMode::Random { keep_percent: 50, torn: false },
    LossMode::Random { keep_percent: 50, torn: true },
    LossMode::Random { keep_percent: 80, torn: true },
];

/// The number in environment variable `name`, if it is set (a sweep's
/// replay settings); panics on anything else.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// Fails a sweep that fired less than it should: each `(what, got, least)`
/// must have `got >= least`, so that a simulator that stops firing fails
/// instead of passing. `summary` is the sweep's summary line.
pub fn assert_fired(summary: &str, seen: &[(&str, u64, u64)]) {
    for &(what, got, least) in seen {
        assert!(got >= least, "{summary}\n\nthe simulation fired too little: {got} {what}, at least {least} expected");
    }
}
