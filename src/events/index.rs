//! The event store's indexes (docs/EVENTS.md, "The indexes"): the stream
//! index, (stream hash, version) → position; the event-id index, (event id,
//! position) → version; the category and event-type indexes, (hash,
//! position). Each is a memtable of recent entries over immutable runs; one
//! manifest lists the runs of all four and the position up to which they
//! cover the global log.
//!
//! Entries reach the memtable after their events are in the global log (the
//! log is the truth; the index can always be rebuilt from it). A flush
//! freezes the memtable, makes the log durable up to the freeze, writes the
//! frozen entries as one run per index, and replaces the manifest: an index
//! run never covers a record that a crash could take away. When an index has
//! more runs than the merge threshold, its runs are merged into one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use super::meta::{INDEX_MANIFEST_FILE_NAME, IndexManifest, RunRecord};
use super::run::{self, Entry, Run, RunKind};
use crate::error::{IoContext, Result};
use crate::io::Io;
use crate::sync::{MutexExt, RwLockExt};

/// The last entries of a key in the active and the frozen memtable, and the runs.
type Snapshot = (Option<(u64, u64)>, Option<(u64, u64)>, Vec<Arc<OpenRun>>);

/// One index's entries in a memtable: per key, its `(a, b)` pairs sorted
/// by `a`. A key's `a` grows with the log (a stream's versions, an id's or
/// a category's positions), so an insert is almost always a push; a key
/// with one entry (an event id) takes no allocation of its own.
#[derive(Debug, Default, Clone)]
struct Table {
    by_key: HashMap<u128, Pairs, foldhash::fast::RandomState>,
    len: usize,
}

/// A key's entries in a [`Table`].
#[derive(Debug, Clone)]
enum Pairs {
    One((u64, u64)),
    Many(Vec<(u64, u64)>),
}

impl Pairs {
    fn as_slice(&self) -> &[(u64, u64)] {
        match self {
            Pairs::One(p) => std::slice::from_ref(p),
            Pairs::Many(v) => v,
        }
    }
}

impl Table {
    /// Adds `(a, b)` under `key` (replacing an entry of the same `a`).
    fn insert(&mut self, key: u128, a: u64, b: u64) {
        let pairs = match self.by_key.entry(key) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Pairs::One((a, b)));
                self.len += 1;
                return;
            }
            std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
        };
        let v = match pairs {
            Pairs::One(p) if p.0 == a => {
                *p = (a, b);
                return;
            }
            Pairs::One(p) => {
                let first = *p;
                *pairs = Pairs::Many(vec![first]);
                match pairs {
                    Pairs::Many(v) => v,
                    Pairs::One(_) => return,
                }
            }
            Pairs::Many(v) => v,
        };
        match v.last() {
            Some(&(last, _)) if last < a => {
                v.push((a, b));
                self.len += 1;
            }
            _ => match v.binary_search_by_key(&a, |p| p.0) {
                Ok(i) => v[i] = (a, b),
                Err(i) => {
                    v.insert(i, (a, b));
                    self.len += 1;
                }
            },
        }
    }

    fn pairs(&self, key: u128) -> &[(u64, u64)] {
        self.by_key.get(&key).map_or(&[], Pairs::as_slice)
    }

    /// The last entry of `key` with `a` at most `a_max`.
    fn last_at_or_below(&self, key: u128, a_max: u64) -> Option<(u64, u64)> {
        let pairs = self.pairs(key);
        let n = pairs.partition_point(|p| p.0 <= a_max);
        n.checked_sub(1).map(|i| pairs[i])
    }

    /// Up to `max` entries of `key` from `a` up (or down, `backward`).
    fn range(&self, key: u128, a: u64, backward: bool, max: usize) -> Vec<(u64, u64)> {
        let pairs = self.pairs(key);
        if backward {
            let n = pairs.partition_point(|p| p.0 <= a);
            pairs[..n].iter().rev().take(max).copied().collect()
        } else {
            let n = pairs.partition_point(|p| p.0 < a);
            pairs[n..].iter().take(max).copied().collect()
        }
    }

    /// Every entry, sorted by `(key, a)`: what a run of this table holds.
    fn sorted(&self) -> Vec<Entry> {
        let mut keys: Vec<u128> = self.by_key.keys().copied().collect();
        keys.sort_unstable();
        let mut out = Vec::with_capacity(self.len);
        for key in keys {
            out.extend(self.pairs(key).iter().map(|&(a, b)| Entry { key, a, b }));
        }
        out
    }

    fn extend(&mut self, other: &Table) {
        for (&key, pairs) in &other.by_key {
            for &(a, b) in pairs.as_slice() {
                self.insert(key, a, b);
            }
        }
    }
}

/// Entries appended since the last flush, one table per index, in the
/// order of [`RunKind::ALL`].
#[derive(Debug, Default, Clone)]
struct Memtable([Table; 4]);

impl Memtable {
    fn table(&self, kind: RunKind) -> &Table {
        &self.0[kind as usize - 1]
    }

    /// Adds the entries of one event.
    fn add(&mut self, e: &Indexed) {
        self.0[0].insert(e.stream, e.version, e.position);
        self.0[1].insert(e.id, e.position, e.version);
        self.0[2].insert(e.category, e.position, 0);
        self.0[3].insert(e.event_type, e.position, 0);
    }

    /// Events in it.
    fn len(&self) -> usize {
        self.0[0].len
    }

    fn extend(&mut self, other: &Memtable) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.extend(theirs);
        }
    }
}

/// What the indexes hold of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Indexed {
    /// The hash of its stream.
    pub(crate) stream: u128,
    /// Its version.
    pub(crate) version: u64,
    /// Its id.
    pub(crate) id: u128,
    /// The hash of its stream's category.
    pub(crate) category: u128,
    /// The hash of its type.
    pub(crate) event_type: u128,
    /// Its global position.
    pub(crate) position: u64,
}

/// An open run and the manifest's record of it.
#[derive(Debug)]
struct OpenRun {
    record: RunRecord,
    run: Run,
}

#[derive(Debug)]
struct State {
    active: Memtable,
    /// A memtable being flushed: still read until its runs are installed.
    frozen: Option<Arc<Memtable>>,
    /// Every run, oldest first, as the manifest lists them.
    runs: Vec<Arc<OpenRun>>,
    manifest: IndexManifest,
}

/// What opening the indexes found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRecovery {
    /// Events replayed from the global log into the memtable.
    pub replayed: u64,
    /// Why the indexes were rebuilt from the whole log, if they were.
    pub rebuilt: Option<String>,
    /// Files removed: runs no manifest lists (a crash during a flush or a
    /// merge), and temporary files.
    pub removed: Vec<PathBuf>,
}

/// How big the indexes' parts grow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexLimits {
    /// Stream entries in the memtable that trigger a flush.
    pub(crate) flush_entries: usize,
    /// Runs of one index that trigger a merge of them all.
    pub(crate) merge_runs: usize,
}

/// The indexes of an event store.
#[derive(Debug)]
pub(crate) struct Indexes {
    dir: PathBuf,
    io: Arc<dyn Io>,
    limits: IndexLimits,
    state: RwLock<State>,
    /// Held shared by an append from before its log append until its entries
    /// are in the memtable, and exclusively by a freeze: a freeze at log
    /// position `p` then knows that every entry below `p` is in the memtable.
    gate: RwLock<()>,
    /// One flush (or merge) at a time.
    flushing: Mutex<()>,
}

/// A held [`Indexes::gate`]: see [`Indexes::begin_append`].
#[derive(Debug)]
pub(crate) struct AppendGate<'a>(#[allow(dead_code)] RwLockReadGuard<'a, ()>);

impl Indexes {
    /// Opens the indexes in `dir` (created if missing) for a global log
    /// whose records end at `log_end`: reads the manifest and opens its
    /// runs, or, if either is missing or damaged or covers more than the
    /// log holds, starts over empty (the caller replays from `replay_from`).
    pub(crate) fn open(
        dir: &Path,
        io: Arc<dyn Io>,
        limits: IndexLimits,
        log_end: u64,
    ) -> Result<(Indexes, IndexRecovery)> {
        let mut recovery = IndexRecovery::default();
        if !dir.is_dir() {
            io.create_dir_all(dir).ctx("create index directory", dir)?;
            // Durable before any run is written in it: a power loss must not
            // take the directory, and the runs with it, away.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                io.sync_dir(parent).ctx("fsync directory", parent)?;
            }
        }
        let loaded = load(dir, io.as_ref(), log_end);
        let (manifest, runs) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => (IndexManifest::default(), Vec::new()),
            Err(why) => {
                recovery.rebuilt = Some(why);
                (IndexManifest::default(), Vec::new())
            }
        };
        // Remove what no manifest lists: runs of an interrupted flush or merge
        // (or of indexes being rebuilt), temporary files, an unusable manifest.
        let listed: Vec<String> = manifest.runs.iter().map(|r| RunRecord::file_name(r.seq)).collect();
        for entry in io.read_dir(dir).ctx("list index directory", dir)? {
            let Some(name) = entry.name.to_str() else { continue };
            let ours = name.starts_with("run-") && (name.ends_with(".run") || name.ends_with(".run.tmp"));
            let stale_manifest = recovery.rebuilt.is_some() && name.starts_with(INDEX_MANIFEST_FILE_NAME);
            if (ours && !listed.iter().any(|l| l == name)) || stale_manifest || name == "index.manifest.tmp" {
                let path = dir.join(name);
                io.remove_file(&path).ctx("remove index file", &path)?;
                recovery.removed.push(path);
            }
        }
        if !recovery.removed.is_empty() {
            io.sync_dir(dir).ctx("fsync directory", dir)?;
        }
        let state = State { active: Memtable::default(), frozen: None, runs, manifest };
        let indexes = Indexes {
            dir: dir.to_owned(),
            io,
            limits,
            state: RwLock::new(state),
            gate: RwLock::new(()),
            flushing: Mutex::new(()),
        };
        Ok((indexes, recovery))
    }

    /// The position up to which the runs cover the log: replay starts there.
    pub(crate) fn indexed_to(&self) -> u64 {
        self.state.read_locked().manifest.indexed_to
    }

    /// Runs of index `kind`, for statistics and tests.
    pub(crate) fn run_count(&self, kind: RunKind) -> usize {
        self.state.read_locked().runs.iter().filter(|r| r.record.header.kind == kind).count()
    }

    /// Entries in the memtable (stream index).
    pub(crate) fn memtable_len(&self) -> usize {
        self.state.read_locked().active.len()
    }

    /// Holds back freezes while an append puts its events in the log and
    /// their entries in the memtable. `None` if an appender panicked between
    /// the two: the memtable may lack events the log has, and the store must
    /// be reopened (which replays them).
    pub(crate) fn begin_append(&self) -> Option<AppendGate<'_>> {
        self.gate.read().ok().map(AppendGate)
    }

    /// Adds the entries of events: under an [`AppendGate`], or while
    /// replaying the log at open.
    pub(crate) fn insert_all(&self, events: impl IntoIterator<Item = Indexed>) {
        let mut st = self.state.write_locked();
        for e in events {
            st.active.add(&e);
        }
    }

    /// Whether the memtable is due for a flush.
    pub(crate) fn flush_due(&self) -> bool {
        self.memtable_len() >= self.limits.flush_entries
    }

    /// The last entry of stream `hash` at or below version `version`:
    /// `(version, position)`.
    pub(crate) fn last_of(&self, hash: u128, version: u64) -> Result<Option<(u64, u64)>> {
        let (active, frozen, runs) = self.snapshot_for(RunKind::Stream, hash, version);
        if let Some(found) = active.or(frozen) {
            return Ok(Some(found));
        }
        for r in runs.iter().rev().filter(|r| r.run.may_contain(hash)) {
            if let Some(e) = r.run.last_at_or_below(hash, version)? {
                return Ok(Some((e.a, e.b)));
            }
        }
        Ok(None)
    }

    /// The memtables' last entries of `key` at or below `a`, and the runs of
    /// `kind`, read under one lock.
    fn snapshot_for(&self, kind: RunKind, key: u128, a: u64) -> Snapshot {
        let st = self.state.read_locked();
        let active = st.active.table(kind).last_at_or_below(key, a);
        let frozen = st.frozen.as_ref().and_then(|f| f.table(kind).last_at_or_below(key, a));
        let runs = st.runs.iter().filter(|r| r.record.header.kind == kind).cloned().collect();
        (active, frozen, runs)
    }

    /// Up to `max` entries of `key` from `a` on (forward) or from `a` down
    /// (backward), as `(a, b)`: in a stream's index, `(version, position)`.
    pub(crate) fn entries(
        &self,
        kind: RunKind,
        key: u128,
        a: u64,
        backward: bool,
        max: usize,
    ) -> Result<Vec<(u64, u64)>> {
        let (tables, runs) = {
            let st = self.state.read_locked();
            let pick = |t: &Table| t.range(key, a, backward, max);
            let frozen = st.frozen.as_ref().map(|f| pick(f.table(kind))).unwrap_or_default();
            let tables = [frozen, pick(st.active.table(kind))];
            let runs: Vec<Arc<OpenRun>> = st.runs.iter().filter(|r| r.record.header.kind == kind).cloned().collect();
            (tables, runs)
        };
        // Sources in log order: runs oldest first, the frozen memtable, the
        // active one. A key's `a` grows with the log (a stream's versions, an
        // id's positions), so each source's entries follow the previous one's.
        let mut out = Vec::new();
        if backward {
            for t in tables.iter().rev() {
                out.extend(t.iter().take(max - out.len()));
            }
            for r in runs.iter().rev().filter(|r| r.run.may_contain(key)) {
                if out.len() >= max {
                    break;
                }
                for e in r.run.entries_back_from(key, a)? {
                    let e = e?;
                    if e.key != key || out.len() >= max {
                        break;
                    }
                    out.push((e.a, e.b));
                }
            }
        } else {
            for r in runs.iter().filter(|r| r.run.may_contain(key)) {
                for e in r.run.entries_from(key, a)? {
                    let e = e?;
                    if e.key != key || out.len() >= max {
                        break;
                    }
                    out.push((e.a, e.b));
                }
            }
            for t in &tables {
                out.extend(t.iter().take(max - out.len()));
            }
        }
        Ok(out)
    }

    /// Freezes the memtable at log position `log_end` (every entry below it
    /// is in the memtable, none above: the caller holds no append gate and
    /// reads `log_end` inside `freeze`), returning false if there is nothing
    /// to flush. Then `make_durable` makes the log durable up to `log_end`,
    /// the frozen entries are written as runs, and the manifest replaced.
    /// With `wait: false`, returns false at once if another flush is under way.
    pub(crate) fn flush(
        &self,
        wait: bool,
        log_end: impl FnOnce() -> u64,
        make_durable: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        let _one = match wait {
            true => self.flushing.locked(),
            false => match self.flushing.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
            },
        };
        let (frozen, from, to) = {
            // A poisoned gate: an appender panicked between the log and the
            // memtable, which may lack events; no run may be written from it.
            let _gate = self.gate.write().map_err(|_| crate::Error::Panicked {
                path: self.dir.clone(),
                during: "an event append (reopen the store to index its events)",
            })?;
            let mut st = self.state.write_locked();
            if st.active.len() == 0 {
                return Ok(false);
            }
            let to = log_end();
            let frozen = Arc::new(std::mem::take(&mut st.active));
            st.frozen = Some(Arc::clone(&frozen));
            (frozen, st.manifest.indexed_to, to)
        };
        let written = (|| {
            make_durable()?;
            let mut manifest = self.state.read_locked().manifest.clone();
            let mut new_runs = Vec::new();
            for kind in RunKind::ALL {
                let table = frozen.table(kind);
                let (keys, entries) = (table.by_key.len() as u64, table.sorted());
                let seq = manifest.next_seq;
                manifest.next_seq += 1;
                let path = self.dir.join(RunRecord::file_name(seq));
                let header = run::write(self.io.as_ref(), &path, kind, from, to, keys, entries)?;
                let record = RunRecord { seq, header };
                manifest.runs.push(record);
                new_runs.push(Arc::new(OpenRun { record, run: Run::open(self.io.as_ref(), &path)? }));
            }
            manifest.indexed_to = to;
            self.write_manifest(&manifest)?;
            Ok((manifest, new_runs))
        })();
        drop(frozen);
        let mut st = self.state.write_locked();
        match written {
            Ok((manifest, new_runs)) => {
                st.runs.extend(new_runs);
                st.manifest = manifest;
                st.frozen = None;
                drop(st);
                self.merge_if_due()?;
                Ok(true)
            }
            Err(e) => {
                // Put the entries back: nothing was installed, and the runs
                // written (if any) are removed at the next open.
                let frozen = st.frozen.take().expect("the frozen memtable");
                // The frozen entries are older than the active ones: they go first.
                let mut back = Arc::try_unwrap(frozen).unwrap_or_else(|f| (*f).clone());
                back.extend(&st.active);
                st.active = back;
                Err(e)
            }
        }
    }

    /// Merges the runs of an index into one if it has more than the limit.
    /// The caller holds `flushing`.
    fn merge_if_due(&self) -> Result<()> {
        for kind in RunKind::ALL {
            while let Some(inputs) = self.merge_candidates(kind) {
                self.merge(kind, &inputs)?;
            }
        }
        Ok(())
    }

    /// The runs of `kind` to merge now, if any: the newest ones, when at
    /// least `merge_runs` of them are of the same size tier. A run's tier is
    /// how many times `merge_runs` flushes' worth it holds, as a power of
    /// `merge_runs` (a flushed run is of tier 0; `merge_runs` of them merge
    /// into one of tier 1, and so on), so an entry is rewritten once per
    /// tier, and an index of `n` flushes keeps at most about `merge_runs`
    /// runs per tier, `log(n) / log(merge_runs)` tiers.
    fn merge_candidates(&self, kind: RunKind) -> Option<Vec<Arc<OpenRun>>> {
        let runs: Vec<Arc<OpenRun>> = {
            let st = self.state.read_locked();
            st.runs.iter().filter(|r| r.record.header.kind == kind).cloned().collect()
        };
        let fanout = self.limits.merge_runs.max(2) as u64;
        let flush = self.limits.flush_entries.max(1) as u64;
        let tier = |r: &OpenRun| {
            let mut size = r.record.header.entries / flush;
            let mut tier = 0;
            while size >= fanout {
                size /= fanout;
                tier += 1;
            }
            tier
        };
        let last = tier(runs.last()?);
        let same = runs.iter().rev().take_while(|r| tier(r) <= last).count();
        (same >= self.limits.merge_runs).then(|| runs[runs.len() - same..].to_vec())
    }

    /// Merges `inputs` (consecutive runs of `kind`, oldest first) into one.
    fn merge(&self, kind: RunKind, inputs: &[Arc<OpenRun>]) -> Result<()> {
        {
            let mut manifest = self.state.read_locked().manifest.clone();
            let seq = manifest.next_seq;
            manifest.next_seq += 1;
            let path = self.dir.join(RunRecord::file_name(seq));
            let from = inputs.iter().map(|r| r.record.header.from).min().unwrap_or(0);
            let to = inputs.iter().map(|r| r.record.header.to).max().unwrap_or(0);
            let mut iters = Vec::with_capacity(inputs.len());
            for r in inputs {
                iters.push(r.run.iter()?.peekable());
            }
            let mut failure = None;
            let merged = std::iter::from_fn(|| {
                // The smallest head among the inputs (a handful of runs: a
                // linear scan beats a heap).
                let mut best: Option<(usize, Entry)> = None;
                for (i, it) in iters.iter_mut().enumerate() {
                    match it.peek() {
                        Some(Ok(e)) if best.is_none_or(|(_, b)| *e < b) => best = Some((i, *e)),
                        Some(Err(_)) => {
                            if let Some(Err(e)) = it.next() {
                                failure = Some(e);
                            }
                            return None;
                        }
                        _ => {}
                    }
                }
                let (i, e) = best?;
                iters[i].next();
                Some(e)
            });
            // At most the inputs' keys together (fewer where they share keys).
            let keys = inputs.iter().map(|r| r.run.keys()).sum();
            let header = run::write(self.io.as_ref(), &path, kind, from, to, keys, merged);
            if let Some(e) = failure {
                let _ = self.io.remove_file(&path);
                return Err(e);
            }
            let header = header?;
            let record = RunRecord { seq, header };
            let merged_run = Arc::new(OpenRun { record, run: Run::open(self.io.as_ref(), &path)? });
            let merged_seqs: Vec<u64> = inputs.iter().map(|r| r.record.seq).collect();
            manifest.runs.retain(|r| !merged_seqs.contains(&r.seq));
            // The merged run takes the place of the oldest input.
            let at = manifest.runs.iter().position(|r| r.header.from >= from).unwrap_or(manifest.runs.len());
            manifest.runs.insert(at, record);
            self.write_manifest(&manifest)?;
            {
                let mut st = self.state.write_locked();
                st.runs.retain(|r| !merged_seqs.contains(&r.record.seq));
                let at = st.runs.iter().position(|r| r.record.header.from >= from).unwrap_or(st.runs.len());
                st.runs.insert(at, merged_run);
                st.manifest = manifest;
            }
            for seq in merged_seqs {
                let old = self.dir.join(RunRecord::file_name(seq));
                // Left behind on failure: the next open removes what no manifest lists.
                let _ = self.io.remove_file(&old);
            }
            self.io.sync_dir(&self.dir).ctx("fsync directory", &self.dir)?;
        }
        Ok(())
    }

    fn write_manifest(&self, manifest: &IndexManifest) -> Result<()> {
        let path = self.dir.join(INDEX_MANIFEST_FILE_NAME);
        crate::durable::replace_file_durably(self.io.as_ref(), &path, &crate::envelope::Encode::encode(manifest))
    }
}

/// A manifest and its runs, opened.
type Loaded = (IndexManifest, Vec<Arc<OpenRun>>);

/// Reads the manifest in `dir` and opens its runs. `Ok(None)`: no manifest;
/// `Err(why)`: the indexes cannot be used as they are.
fn load(dir: &Path, io: &dyn Io, log_end: u64) -> std::result::Result<Option<Loaded>, String> {
    let path = dir.join(INDEX_MANIFEST_FILE_NAME);
    let manifest = match crate::durable::read_decoded::<IndexManifest>(io, &path) {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if manifest.indexed_to > log_end {
        return Err(format!(
            "{} covers positions up to {}, but the global log ends at {log_end}",
            path.display(),
            manifest.indexed_to
        ));
    }
    let mut runs = Vec::with_capacity(manifest.runs.len());
    for record in &manifest.runs {
        let run_path = dir.join(RunRecord::file_name(record.seq));
        let run = Run::open(io, &run_path).map_err(|e| e.to_string())?;
        if *run.header() != record.header {
            return Err(format!("{} does not match its record in the manifest", run_path.display()));
        }
        runs.push(Arc::new(OpenRun { record: *record, run }));
    }
    Ok(Some((manifest, runs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memtable_table_keeps_each_keys_entries_sorted() {
        let mut t = Table::default();
        for (key, a) in [(1u128, 5u64), (1, 7), (2, 1), (1, 6), (1, 3), (1, 7)] {
            t.insert(key, a, a * 10 + key as u64);
        }
        assert_eq!(t.len, 5, "(1, 7) replaced, not added");
        assert_eq!(t.pairs(1), [(3, 31), (5, 51), (6, 61), (7, 71)]);
        assert_eq!(t.last_at_or_below(1, 6), Some((6, 61)));
        assert_eq!(t.last_at_or_below(1, 2), None);
        assert_eq!(t.last_at_or_below(3, 9), None);
        assert_eq!(t.range(1, 4, false, 2), [(5, 51), (6, 61)]);
        assert_eq!(t.range(1, 6, true, 9), [(6, 61), (5, 51), (3, 31)]);
        let sorted: Vec<(u128, u64)> = t.sorted().iter().map(|e| (e.key, e.a)).collect();
        assert_eq!(sorted, [(1, 3), (1, 5), (1, 6), (1, 7), (2, 1)]);
        let mut u = Table::default();
        u.insert(2, 1, 0);
        u.insert(2, 0, 0);
        u.extend(&t);
        assert_eq!(u.len, 6);
        assert_eq!(u.pairs(2), [(0, 0), (1, 12)]);
    }
}
