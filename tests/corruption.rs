//! Corruption sweeps: copies of small logs are damaged in the ways a disk, a
//! file system or an operator can damage them (bit flips, zeroed sectors and
//! pages, truncated or extended files, lost or swapped index files, swapped
//! segment names, stray files), and every case must end in one of the
//! documented outcomes (ARCHITECTURE.md invariants 1-3, DESIGN.md "Recovery"):
//!
//! * **intact**: every record reads back exactly; a damaged or missing index
//!   is rebuilt from the data, stray files are ignored;
//! * **cut**: damage after the durable checkpoint of the unsealed last segment
//!   is a torn tail: the log holds a prefix and reports the bytes it cuts;
//! * **corruption**: `Error::Corruption` naming the damaged file, at open or
//!   when a reader reaches the damage, after exactly the records before it
//!   (and, for a damaged record, with that record's offset and byte position).
//!
//! Never a panic, a hang, a record that differs from what was appended, or a
//! record missing without an error or a reported cut. The outcome each case
//! must have is derived from the pristine layout and the damaged bytes, and
//! asserted for a read-write open, a read-only open and `inspect::verify`.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annal::inspect::{Severity, VerifyReport, verify};
use annal::io::{Io, OsIo};
use annal::segment::header::decode_checkpoint;
use annal::segment::{DATA_START, FOOTER_LEN, HEADER_LEN, SegmentFooter, log_file_name};
use annal::{Durability, Error, Header, Log, LogConfig, OwnedRecord, Record};
use common::{BackgroundThread, Rng, assert_same_files, copy_dir, header_refs, make_record, snapshot};

/// A case that takes longer than this is taken to hang: the test aborts.
const CASE_TIME_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Configuration: small segments, no fsync cost
// ---------------------------------------------------------------------------

/// The real file system without fsyncs: durability does not matter for
/// copies that no power loss can reach, and thousands of opens stay fast.
#[derive(Debug, Default)]
struct NoSyncIo(OsIo);

impl Io for NoSyncIo {
    fn create(&self, path: &Path) -> io::Result<File> {
        self.0.create(path)
    }
    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(file, buf, pos)
    }
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        self.0.allocate(file, len)
    }
    fn sync_data(&self, _: &File) -> io::Result<()> {
        Ok(())
    }
    fn sync_all(&self, _: &File) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.0.set_len(file, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
}

fn cfg() -> LogConfig {
    LogConfig::default()
        .with_segment_bytes(8 * 1024)
        .with_index_interval_bytes(256)
        .with_durability(Durability::Never)
        .with_io(Arc::new(NoSyncIo::default()))
}

// ---------------------------------------------------------------------------
// Fixtures: small logs, their records, and where every byte of them lies
// ---------------------------------------------------------------------------

/// One segment file of a pristine fixture.
#[derive(Debug)]
struct Seg {
    base: u64,
    name: String,
    bytes: Vec<u8>,
    sealed: bool,
    /// End of the records (the footer's position if sealed).
    data_end: usize,
    /// Position, length, first offset and record count of each frame (a
    /// batch, or a v1 record).
    frames: Vec<(usize, usize, u64, u64)>,
}

impl Seg {
    fn records(&self) -> u64 {
        self.frames.iter().map(|f| f.3).sum()
    }
}

#[derive(Debug)]
struct Fixture {
    name: &'static str,
    dir: PathBuf,
    model: Vec<OwnedRecord>,
    segs: Vec<Seg>,
    /// Every file of the pristine directory.
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Closed cleanly: every segment sealed.
    Closed,
    /// Abandoned (a crash) under `Durability::Never` without a sync: the last
    /// segment is unsealed and its checkpoint vouches for nothing.
    Crashed,
    /// Abandoned after a `sync()` in the middle of the last segment: records
    /// before its checkpoint are durable, records after it are not.
    CrashedAfterSync,
}

fn random_bytes(rng: &mut Rng, len: u64) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// A record of varied shape: with or without key, headers, a value from empty
/// to 2.5 KiB or none (a tombstone), and timestamps that go back and forth.
fn random_record(rng: &mut Rng, offset: u64) -> OwnedRecord {
    let key = (rng.range(0, 4) != 0).then(|| format!("key-{offset}-{}", rng.range(0, 1000)).into_bytes());
    let tombstone = key.is_some() && rng.range(0, 12) == 0;
    let len = match rng.range(0, 10) {
        0..=5 => rng.range(0, 200),
        6..=8 => rng.range(200, 900),
        _ => rng.range(900, 2500),
    };
    let value = (!tombstone).then(|| random_bytes(rng, len));
    let headers = (0..rng.range(0, 3))
        .map(|h| {
            let n = rng.range(0, 12);
            (format!("h{h}"), random_bytes(rng, n))
        })
        .collect();
    let timestamp = 1_700_000_000_000 + offset as i64 * 50 + rng.range(0, 400) as i64 - 200;
    OwnedRecord { offset, timestamp, key, value, headers }
}

fn append(log: &Log, model: &mut Vec<OwnedRecord>, rng: &mut Rng, n: u64) {
    let start = model.len() as u64;
    let recs: Vec<OwnedRecord> = (start..start + n).map(|o| random_record(rng, o)).collect();
    let headers: Vec<Vec<Header<'_>>> = recs.iter().map(|r| header_refs(&r.headers)).collect();
    let batch: Vec<Record<'_>> = recs
        .iter()
        .zip(&headers)
        .map(|(r, h)| make_record(r.key.as_deref(), r.value.as_deref(), Some(r.timestamp), h))
        .collect();
    assert_eq!(log.append_batch(&batch).unwrap(), start..start + n);
    model.extend(recs);
}

fn last_segment_records(log: &Log) -> u64 {
    let last = log.segments().last().copied().unwrap();
    last.next_offset - last.base_offset
}

fn build_fixture(root: &Path, name: &'static str, ending: Ending, seed: u64) -> Fixture {
    let dir = root.join(name);
    let mut rng = Rng::new(seed);
    let mut model = Vec::new();
    let log = Log::open(&dir, cfg()).unwrap();
    while model.len() < 90 || log.segments().len() < 4 {
        let n = rng.range(1, 4);
        append(&log, &mut model, &mut rng, n);
    }
    match ending {
        Ending::Closed => log.close().unwrap(),
        Ending::Crashed => {
            while last_segment_records(&log) < 4 {
                append(&log, &mut model, &mut rng, 1);
            }
            log.abandon();
        }
        Ending::CrashedAfterSync => {
            loop {
                while last_segment_records(&log) < 3 {
                    append(&log, &mut model, &mut rng, 1);
                }
                log.sync().unwrap();
                let base = log.segments().last().unwrap().base_offset;
                for _ in 0..4 {
                    append(&log, &mut model, &mut rng, 1);
                }
                if log.segments().last().unwrap().base_offset == base {
                    break;
                }
            }
            log.abandon();
        }
    }
    let files = snapshot(&dir);
    let mut segs = Vec::new();
    for (name, bytes) in &files {
        let Some(base) = annal::segment::parse_log_file_name(name) else { continue };
        let len = bytes.len();
        let footer = SegmentFooter::decode(&bytes[len - FOOTER_LEN..], len as u64).ok();
        let sealed = footer.is_some();
        let limit = footer.map_or(len - FOOTER_LEN, |f| f.data_end as usize);
        let mut frames = Vec::new();
        let mut pos = DATA_START;
        let mut next = base;
        while pos < limit {
            match annal::record::decode_frame(&bytes[pos..limit]) {
                Ok(f) if f.base_offset() == next => {
                    frames.push((pos, f.len(), next, u64::from(f.count())));
                    pos += f.len();
                    next = f.next_offset();
                }
                _ => break,
            }
        }
        if let Some(f) = footer {
            assert_eq!((pos as u64, next), (f.data_end, f.next_offset), "{name}");
        }
        segs.push(Seg { base, name: name.clone(), bytes: bytes.clone(), sealed, data_end: pos, frames });
    }
    assert_eq!(segs.iter().map(Seg::records).sum::<u64>(), model.len() as u64, "{name}: layout");
    assert!(segs[..segs.len() - 1].iter().all(|s| s.sealed));
    let last = segs.last().unwrap();
    let checkpoint = decode_checkpoint(&last.bytes).unwrap() as usize;
    match ending {
        Ending::Closed => assert!(last.sealed && checkpoint == last.data_end),
        Ending::Crashed => assert!(!last.sealed && checkpoint == DATA_START),
        Ending::CrashedAfterSync => {
            assert!(!last.sealed && checkpoint > DATA_START + 100 && checkpoint + 100 < last.data_end, "{name}")
        }
    }
    // The pristine fixture is what the model says, and verify finds nothing wrong.
    let ro = Log::open_read_only(&dir, cfg()).unwrap();
    assert_eq!(ro.read_from(0).unwrap().collect::<annal::Result<Vec<_>>>().unwrap(), model, "{name}");
    assert!(verify(&dir).unwrap().is_clean(), "{name}");
    Fixture { name, dir, model, segs, files }
}

// ---------------------------------------------------------------------------
// Damage and the outcome it must have
// ---------------------------------------------------------------------------

/// A change of a file's bytes.
#[derive(Debug, Clone, Copy)]
enum Change {
    Flip {
        pos: usize,
        bit: u8,
    },
    Zero {
        start: usize,
        len: usize,
    },
    SetLen(usize),
    /// Extended (or cut) to `len`, with a non-zero byte at `at`.
    Dirty {
        len: usize,
        at: usize,
    },
}

impl Change {
    fn apply(self, pristine: &[u8]) -> Vec<u8> {
        let mut d = pristine.to_vec();
        match self {
            Change::Flip { pos, bit } => d[pos] ^= 1 << bit,
            Change::Zero { start, len } => d[start..start + len].fill(0),
            Change::SetLen(len) => d.resize(len, 0),
            Change::Dirty { len, at } => {
                d.resize(len, 0);
                d[at] = 0x5A;
            }
        }
        d
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Bytes(String, Change),
    Remove(String),
    /// Swaps the names of two files.
    Swap(String, String),
    Write(String, Vec<u8>),
    Mkdir(String),
}

/// Where readers meet damaged data.
#[derive(Debug, Clone)]
struct Corrupt {
    /// Names of the files the error may name (the damaged one).
    files: Vec<String>,
    /// Offset and byte position of the first damaged record, if the damage
    /// is in records (then readers return exactly the records before it).
    at: Option<(u64, u64)>,
    rw_open_fails: bool,
    ro_open_fails: bool,
    /// `next_offset()` of a read-only handle that opens.
    ro_visible: u64,
    /// Any error at open names the file, not only `Corruption` (a directory
    /// where a segment file should be cannot be read at all).
    any_error: bool,
}

#[derive(Debug, Clone)]
enum Expect {
    /// Every record exact. `rebuilt`: segments whose index must be rebuilt;
    /// `stray`: extra files, and whether a writer removes them (its own `.tmp`).
    Intact {
        rebuilt: Vec<u64>,
        stray: Vec<(String, bool)>,
    },
    /// The records from `keep` on are gone: damage after the checkpoint of the
    /// last segment. `bytes`: the non-zero bytes there, reported as cut (none
    /// when the damage left only zeros: then it looks like unwritten space).
    Cut {
        keep: u64,
        bytes: u64,
    },
    Corrupt(Corrupt),
}

impl Expect {
    fn intact() -> Expect {
        Expect::Intact { rebuilt: Vec::new(), stray: Vec::new() }
    }

    fn rebuilt(bases: Vec<u64>) -> Expect {
        Expect::Intact { rebuilt: bases, stray: Vec::new() }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Expect::Intact { .. } => "intact",
            Expect::Cut { .. } => "cut",
            Expect::Corrupt(_) => "corruption",
        }
    }
}

impl Fixture {
    fn n(&self) -> u64 {
        self.model.len() as u64
    }

    fn index_base(name: &str) -> Option<u64> {
        let stem = name.strip_suffix(".index").or_else(|| name.strip_suffix(".timeindex"))?;
        annal::segment::parse_log_file_name(&format!("{stem}.log"))
    }

    fn corrupt(&self, files: Vec<String>, at: Option<(u64, usize)>, rw_fails: bool, ro_fails: bool) -> Expect {
        let ro_visible = match (at, rw_fails) {
            // Damage in the records of the unsealed last segment before its
            // checkpoint: a read-only open publishes only the records before it.
            (Some((k, _)), true) => k,
            _ => self.n(),
        };
        Expect::Corrupt(Corrupt {
            files,
            at: at.map(|(k, p)| (k, p as u64)),
            rw_open_fails: rw_fails,
            ro_open_fails: ro_fails,
            ro_visible,
            any_error: false,
        })
    }

    /// The outcome of replacing the file `name` by `d`.
    fn expect_bytes(&self, name: &str, d: &[u8]) -> Expect {
        if let Some(si) = self.segs.iter().position(|s| s.name == name) {
            return self.expect_segment(si, d);
        }
        let base = Fixture::index_base(name).expect("an index file");
        if d == &self.files[name][..] { Expect::intact() } else { Expect::rebuilt(vec![base]) }
    }

    /// The outcome of replacing segment `si` by `d`, from the rules of
    /// DESIGN.md "Recovery" applied to the pristine layout.
    fn expect_segment(&self, si: usize, d: &[u8]) -> Expect {
        let s = &self.segs[si];
        let p = &s.bytes[..];
        if d == p {
            return Expect::intact();
        }
        let changed = |a: usize, b: usize| (a..b).any(|i| p.get(i) != d.get(i));
        let this = vec![s.name.clone()];
        if d.len() < DATA_START || changed(0, HEADER_LEN) {
            return self.corrupt(this, None, true, true);
        }
        let first_bad = s.frames.iter().position(|&(pos, len, _, _)| changed(pos, pos + len));
        let footer = p.len() - FOOTER_LEN;
        if s.sealed && d.len() == p.len() && !changed(footer, p.len()) {
            // Still sealed: records are checked as they are read.
            return match first_bad {
                Some(i) => self.corrupt(this, Some((s.frames[i].2, s.frames[i].0)), false, false),
                None => Expect::intact(),
            };
        }
        if si + 1 < self.segs.len() {
            // A segment before the last one that is not sealed.
            return self.corrupt(this, None, true, true);
        }
        // The last segment, unsealed: scanned at open.
        let checkpoint = decode_checkpoint(&d[..DATA_START]).map_or(DATA_START, |c| c as usize);
        let (k, pos) = match first_bad {
            Some(i) => (s.frames[i].2, s.frames[i].0),
            None => (s.base + s.records(), s.data_end),
        };
        if pos < checkpoint {
            return self.corrupt(this, Some((k, pos)), true, false);
        }
        // A footer right after intact records is an interrupted seal, not a torn write.
        let footer_kept =
            first_bad.is_none() && s.sealed && d.get(s.data_end..s.data_end + FOOTER_LEN) == Some(&p[footer..]);
        let after = if footer_kept { s.data_end + FOOTER_LEN } else { pos };
        let bytes = d.get(after..).and_then(|rest| rest.iter().rposition(|&b| b != 0)).map_or(0, |i| i as u64 + 1);
        if k == self.n() && bytes == 0 { Expect::intact() } else { Expect::Cut { keep: k, bytes } }
    }
}

fn apply_edits(dir: &Path, fx: &Fixture, edits: &[Edit]) {
    for e in edits {
        match e {
            Edit::Bytes(name, change) => fs::write(dir.join(name), change.apply(&fx.files[name])).unwrap(),
            Edit::Remove(name) => fs::remove_file(dir.join(name)).unwrap(),
            Edit::Swap(a, b) => {
                let tmp = dir.join("swap.tmp-name");
                fs::rename(dir.join(a), &tmp).unwrap();
                fs::rename(dir.join(b), dir.join(a)).unwrap();
                fs::rename(&tmp, dir.join(b)).unwrap();
            }
            Edit::Write(name, bytes) => fs::write(dir.join(name), bytes).unwrap(),
            Edit::Mkdir(name) => fs::create_dir(dir.join(name)).unwrap(),
        }
    }
}

#[derive(Debug)]
struct Case {
    fx: usize,
    category: &'static str,
    what: String,
    edits: Vec<Edit>,
    expect: Expect,
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

fn bytes_case(fxi: usize, fx: &Fixture, category: &'static str, name: &str, change: Change) -> Case {
    let expect = fx.expect_bytes(name, &change.apply(&fx.files[name]));
    Case {
        fx: fxi,
        category,
        what: format!("{}: {change:?} of {name}", fx.name),
        edits: vec![Edit::Bytes(name.to_owned(), change)],
        expect,
    }
}

fn index_names(fx: &Fixture) -> Vec<String> {
    fx.files.keys().filter(|n| Fixture::index_base(n).is_some()).cloned().collect()
}

/// Seeded single-bit flips spread over every kind of byte a log has.
fn flip_cases(fxi: usize, fx: &Fixture, rng: &mut Rng, count: usize) -> Vec<Case> {
    let sealed: Vec<&Seg> = fx.segs.iter().filter(|s| s.sealed).collect();
    let last = fx.segs.last().unwrap();
    let indexes = index_names(fx);
    let mut cases = Vec::new();
    while cases.len() < count {
        let any = &fx.segs[rng.range(0, fx.segs.len() as u64) as usize];
        let (name, pos) = match rng.range(0, 100) {
            // Record bytes of a sealed segment.
            0..=34 => {
                let s = sealed[rng.range(0, sealed.len() as u64) as usize];
                (&s.name, rng.range(DATA_START as u64, s.data_end as u64) as usize)
            }
            // Record bytes of the last segment.
            35..=49 => (&last.name, rng.range(DATA_START as u64, last.data_end as u64) as usize),
            // Segment header.
            50..=59 => (&any.name, rng.range(0, HEADER_LEN as u64) as usize),
            // Checkpoint and the reserved bytes after it.
            60..=66 => (&any.name, rng.range(HEADER_LEN as u64, DATA_START as u64) as usize),
            // Footer of a sealed segment.
            67..=76 => {
                let s = sealed[rng.range(0, sealed.len() as u64) as usize];
                (&s.name, rng.range((s.bytes.len() - FOOTER_LEN) as u64, s.bytes.len() as u64) as usize)
            }
            // The zeros after the records of an unsealed last segment.
            77..=84 if !last.sealed => (&last.name, rng.range(last.data_end as u64, last.bytes.len() as u64) as usize),
            // Index files.
            _ => {
                let name = &indexes[rng.range(0, indexes.len() as u64) as usize];
                (name, rng.range(0, fx.files[name].len() as u64) as usize)
            }
        };
        let bit = rng.range(0, 8) as u8;
        cases.push(bytes_case(fxi, fx, "flips", name, Change::Flip { pos, bit }));
    }
    cases
}

/// Every bit of the header area (header, checkpoint, reserved) and of the
/// footer of one sealed segment, plus every bit of the last segment's footer.
fn exhaustive_cases(fxi: usize, fx: &Fixture) -> Vec<Case> {
    let mut cases = Vec::new();
    let middle = &fx.segs[1];
    let last = fx.segs.last().unwrap();
    assert!(middle.sealed && last.sealed);
    let footer = |s: &Seg| s.bytes.len() - FOOTER_LEN..s.bytes.len();
    let positions = (0..DATA_START).chain(footer(middle)).map(|p| (middle, p)).chain(footer(last).map(|p| (last, p)));
    for (s, pos) in positions {
        for bit in 0..8 {
            cases.push(bytes_case(fxi, fx, "flips", &s.name, Change::Flip { pos, bit }));
        }
    }
    cases
}

/// Aligned regions of `size` bytes zeroed at seeded places.
fn zero_cases(fxi: usize, fx: &Fixture, rng: &mut Rng, size: usize, count: usize) -> Vec<Case> {
    let category = if size == 512 { "zeroed 512 B" } else { "zeroed 4 KiB" };
    let indexes = index_names(fx);
    (0..count)
        .map(|_| {
            let name = if rng.range(0, 5) == 0 {
                indexes[rng.range(0, indexes.len() as u64) as usize].clone()
            } else {
                fx.segs[rng.range(0, fx.segs.len() as u64) as usize].name.clone()
            };
            let len = fx.files[&name].len();
            let start = size * rng.range(0, len.div_ceil(size) as u64) as usize;
            bytes_case(fxi, fx, category, &name, Change::Zero { start, len: size.min(len - start) })
        })
        .collect()
}

/// Every segment and index file cut by a byte, by a page and to nothing, and
/// extended by a byte and by a page.
fn resize_cases(fxi: usize, fx: &Fixture) -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, bytes) in &fx.files {
        if annal::segment::parse_log_file_name(name).is_none() && Fixture::index_base(name).is_none() {
            continue;
        }
        let len = bytes.len();
        let mut lens = vec![len - 1, len + 1, len + 4096, 0];
        if len >= 4096 {
            lens.push(len - 4096);
        }
        for l in lens {
            cases.push(bytes_case(fxi, fx, "resized", name, Change::SetLen(l)));
        }
    }
    // The last segment extended by a page with garbage in it.
    let last = fx.segs.last().unwrap();
    let len = last.bytes.len();
    for at in [len, len + 100, len + 4095] {
        cases.push(bytes_case(fxi, fx, "resized", &last.name, Change::Dirty { len: len + 4096, at }));
    }
    cases
}

fn index_file_cases(fxi: usize, fx: &Fixture) -> Vec<Case> {
    let mut cases = Vec::new();
    let sealed: Vec<u64> = fx.segs.iter().filter(|s| s.sealed).map(|s| s.base).collect();
    let names = |b: u64| [format!("{b:020}.index"), format!("{b:020}.timeindex")];
    for &b in &sealed {
        let [i, t] = names(b);
        for removed in [vec![i.clone()], vec![t.clone()], vec![i.clone(), t.clone()]] {
            cases.push(Case {
                fx: fxi,
                category: "index deleted",
                what: format!("{}: {removed:?} deleted", fx.name),
                edits: removed.into_iter().map(Edit::Remove).collect(),
                expect: Expect::rebuilt(vec![b]),
            });
        }
    }
    for w in sealed.windows(2) {
        let ([ia, ta], [ib, tb]) = (names(w[0]), names(w[1]));
        for swaps in [vec![(ia.clone(), ib.clone())], vec![(ta.clone(), tb.clone())], vec![(ia, ib), (ta, tb)]] {
            cases.push(Case {
                fx: fxi,
                category: "index swapped",
                what: format!("{}: {swaps:?} swapped", fx.name),
                edits: swaps.into_iter().map(|(a, b)| Edit::Swap(a, b)).collect(),
                expect: Expect::rebuilt(vec![w[0], w[1]]),
            });
        }
    }
    cases
}

fn swap_segment_cases(fxi: usize, fx: &Fixture) -> Vec<Case> {
    let last = fx.segs.len() - 1;
    let mut pairs = vec![(0, 1), (1, 2), (0, last), (last - 1, last)];
    pairs.dedup();
    pairs
        .into_iter()
        .map(|(a, b)| {
            let (na, nb) = (fx.segs[a].name.clone(), fx.segs[b].name.clone());
            Case {
                fx: fxi,
                category: "segments swapped",
                what: format!("{}: {na} and {nb} swapped", fx.name),
                // The first of the two in order has a header naming another base offset.
                expect: fx.corrupt(vec![na.clone()], None, true, true),
                edits: vec![Edit::Swap(na, nb)],
            }
        })
        .collect()
}

fn stray_cases(fxi: usize, fx: &Fixture) -> Vec<Case> {
    let mut cases = Vec::new();
    let seg0 = fx.segs[0].bytes.clone();
    let files: [(&str, Vec<u8>, bool); 4] = [
        ("notes.txt", b"not a segment".to_vec(), false),
        ("123.log", b"not a segment either".to_vec(), false),
        ("00000000000000000000.log.tmp", seg0.clone(), true),
        ("00000000000000000000.index.tmp", seg0, true),
    ];
    for (name, bytes, removed) in files {
        cases.push(Case {
            fx: fxi,
            category: "stray",
            what: format!("{}: stray file {name}", fx.name),
            edits: vec![Edit::Write(name.to_owned(), bytes)],
            expect: Expect::Intact { rebuilt: Vec::new(), stray: vec![(name.to_owned(), removed)] },
        });
    }
    // A directory named like a segment makes the log refuse to open (a
    // segment name can never be skipped): in the middle it is a gap, at the
    // end it cannot be read, or (after an unsealed segment) it makes that
    // segment a non-last unsealed one.
    let last = fx.segs.last().unwrap().name.clone();
    for base in [1, fx.n() + 7] {
        let name = log_file_name(base);
        let Expect::Corrupt(mut c) = fx.corrupt(vec![name.clone(), last.clone()], None, true, true) else {
            unreachable!()
        };
        c.any_error = true;
        cases.push(Case {
            fx: fxi,
            category: "stray",
            what: format!("{}: a directory named {name}", fx.name),
            edits: vec![Edit::Mkdir(name)],
            expect: Expect::Corrupt(c),
        });
    }
    cases
}

// ---------------------------------------------------------------------------
// Checking one case
// ---------------------------------------------------------------------------

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn corruption_in(e: &Error, c: &Corrupt) -> bool {
    matches!(e, Error::Corruption { path, .. } if c.files.contains(&file_name(path)))
}

/// Reads from `from` with the borrowing reader until the end or an error.
/// After an error the reader returns the same error again.
fn read_span(log: &Log, from: u64, what: &str) -> (Vec<OwnedRecord>, Option<Error>) {
    let mut reader = match log.read_from(from) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    loop {
        assert!(out.len() < 10_000, "{what}: a reader from {from} does not end");
        match reader.next_record() {
            Ok(Some(r)) => out.push(r.to_owned()),
            Ok(None) => return (out, None),
            Err(e) => {
                let again = reader.next_record().map(|r| r.map(|r| r.offset()));
                assert!(
                    matches!(&again, Err(e2) if e2.to_string() == e.to_string()),
                    "{what}: after {e} the reader returned {again:?}"
                );
                return (out, Some(e));
            }
        }
    }
}

/// Checks a log that opened against the expected outcome: a full read, reads
/// from random offsets, `get`, and `offset_for_timestamp`.
fn check_open_log(log: &Log, fx: &Fixture, exp: &Expect, read_only: bool, rng: &mut Rng, what: &str) {
    let n = fx.n();
    let model = &fx.model;
    let (visible, damage, corrupt) = match exp {
        Expect::Intact { .. } => (n, None, None),
        Expect::Cut { keep, .. } => (*keep, None, None),
        Expect::Corrupt(c) => {
            let at = c.at.unwrap_or_else(|| panic!("{what}: the log opened despite {c:?}"));
            (if read_only { c.ro_visible } else { n }, Some(at), Some(c))
        }
    };
    assert_eq!(log.start_offset(), 0, "{what}");
    assert_eq!(log.next_offset(), visible, "{what}: next offset");
    let truncated = log.recovery_report().truncated_bytes;
    match exp {
        Expect::Intact { .. } => assert_eq!(truncated, 0, "{what}: nothing to cut"),
        Expect::Cut { bytes, .. } => assert_eq!(truncated, *bytes, "{what}: bytes cut"),
        Expect::Corrupt(_) => {}
    }
    let is_damage = |e: &Error| corrupt.is_some_and(|c| corruption_in(e, c));

    // From the start: exactly the records before the damage, then the error at it.
    let (got, err) = read_span(log, 0, what);
    for r in &got {
        assert_eq!(r, &model[r.offset as usize], "{what}: record {}", r.offset);
    }
    match damage {
        None => {
            assert!(err.is_none(), "{what}: reading failed after {} records: {err:?}", got.len());
            assert_eq!(got.len() as u64, visible, "{what}: records read");
        }
        Some((k, pos)) => {
            assert_eq!(got.len() as u64, k, "{what}: records before the damage ({err:?})");
            match &err {
                Some(Error::Corruption { path, offset, position, .. }) => {
                    assert!(corrupt.unwrap().files.contains(&file_name(path)), "{what}: error names {path:?}");
                    assert_eq!((*offset, *position), (k, pos), "{what}: offset and position of the damage");
                }
                other => panic!("{what}: expected Corruption at offset {k}, got {other:?}"),
            }
        }
    }

    // From random offsets (and around the damage).
    let mut starts: Vec<u64> = (0..3).map(|_| rng.range(0, visible + 1)).collect();
    if let Some((k, _)) = damage {
        starts.extend([k.saturating_sub(1), k, k + 1].into_iter().filter(|&o| o <= visible));
    }
    for from in starts {
        let (got, err) = read_span(log, from, what);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r, &model[(from + i as u64) as usize], "{what}: read_from({from})");
        }
        let end = from + got.len() as u64;
        match (damage, err) {
            (_, None) => assert_eq!(end, visible, "{what}: read_from({from}) ended early without an error"),
            (Some((k, _)), Some(e)) if from <= k => {
                assert!(is_damage(&e) && end == k, "{what}: read_from({from}) ended at {end} with {e}")
            }
            (Some(_), Some(e)) => assert!(is_damage(&e), "{what}: read_from({from}): {e}"),
            (None, Some(e)) => panic!("{what}: read_from({from}) failed after {} records: {e}", got.len()),
        }
    }

    // Single records.
    let mut offsets: Vec<u64> = (0..3).map(|_| rng.range(0, n)).collect();
    if let Some((k, _)) = damage {
        offsets.push(k);
    }
    for o in offsets {
        match log.get(o) {
            Ok(r) => {
                assert_eq!(r, model[o as usize], "{what}: get({o})");
                assert!(damage.is_none_or(|(k, _)| o != k), "{what}: get({o}) returned the damaged record");
            }
            Err(Error::OffsetOutOfRange { .. }) if o >= visible => {}
            Err(e) if damage.is_some_and(|(k, _)| o >= k) && is_damage(&e) => {}
            Err(e) => panic!("{what}: get({o}): {e}"),
        }
    }

    // By timestamp: the first record at or after t among the records the log
    // must still hold (all of them when there is corruption).
    let holds = if corrupt.is_some() { n } else { visible };
    let mut probes = vec![i64::MIN, i64::MAX];
    for _ in 0..4 {
        let t = model[rng.range(0, n) as usize].timestamp;
        probes.extend([t - 1, t, t + 1]);
    }
    for t in probes {
        let want = model[..holds as usize].iter().find(|r| r.timestamp >= t).map(|r| r.offset);
        match (log.offset_for_timestamp(t), damage) {
            (Ok(got), _) if got == want => {}
            (Err(e), Some((k, _))) if is_damage(&e) && want.is_none_or(|a| a >= k) => {}
            (got, _) => {
                panic!("{what}: offset_for_timestamp({t}) = {got:?}, the first record at or after it is {want:?}")
            }
        }
    }
}

fn check_verify(report: annal::Result<VerifyReport>, fx: &Fixture, exp: &Expect, what: &str) {
    let v = match (report, exp) {
        (Ok(v), _) => v,
        (Err(e), Expect::Corrupt(c)) if c.any_error => {
            assert!(c.files.iter().any(|f| e.to_string().contains(f)), "{what}: verify: {e}");
            return;
        }
        (Err(e), _) => panic!("{what}: verify failed: {e}"),
    };
    let corruption: Vec<_> = v.problems_of(Severity::Corruption).collect();
    match exp {
        Expect::Intact { rebuilt, stray } => {
            assert!(corruption.is_empty(), "{what}: verify reports {:?}", v.problems);
            assert_eq!(v.records, fx.n(), "{what}: verify counts the records");
            for b in rebuilt {
                let prefix = format!("{b:020}.");
                assert!(
                    v.problems_of(Severity::Index).any(|p| file_name(&p.path).starts_with(&prefix)),
                    "{what}: verify does not report the index of segment {b}: {:?}",
                    v.problems
                );
            }
            if rebuilt.is_empty() {
                assert!(v.is_clean(), "{what}: verify reports {:?}", v.problems);
            }
            for (name, _) in stray {
                assert!(v.ignored.iter().any(|p| file_name(p) == *name), "{what}: {name} not in {:?}", v.ignored);
            }
        }
        Expect::Cut { keep, bytes } => {
            assert!(corruption.is_empty(), "{what}: verify reports {:?}", v.problems);
            assert_eq!(v.records, *keep, "{what}: verify counts the records");
            assert_eq!(
                v.problems_of(Severity::TornTail).count(),
                usize::from(*bytes > 0),
                "{what}: verify reports {:?}",
                v.problems
            );
        }
        Expect::Corrupt(c) => {
            assert!(
                corruption.iter().any(|p| c.files.contains(&file_name(&p.path))),
                "{what}: verify reports no corruption in {:?}: {:?}",
                c.files,
                v.problems
            );
            if let Some(at) = c.at {
                assert!(
                    corruption.iter().any(|p| (p.offset, p.position) == at),
                    "{what}: verify does not place the damage at {at:?}: {:?}",
                    v.problems
                );
            }
        }
    }
}

/// Segment and index files only (a writer removes its own `.tmp` files even
/// when it then refuses to open).
fn log_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut s = snapshot(dir);
    s.retain(|name, _| !name.ends_with(".tmp"));
    s
}

fn run_case(fx: &Fixture, case: &Case, scratch: &Path, rng: &mut Rng) {
    let what = &case.what;
    let exp = &case.expect;
    let (rw_dir, ro_dir) = (scratch.join("rw"), scratch.join("ro"));
    for d in [&rw_dir, &ro_dir] {
        if d.exists() {
            fs::remove_dir_all(d).unwrap();
        }
        copy_dir(&fx.dir, d);
        apply_edits(d, fx, &case.edits);
    }

    // verify, and a read-only open: neither changes a byte.
    let before = snapshot(&ro_dir);
    check_verify(verify(&ro_dir), fx, exp, what);
    match (Log::open_read_only(&ro_dir, cfg()), exp) {
        (Err(e), Expect::Corrupt(c)) if c.ro_open_fails => {
            assert!(corruption_in(&e, c) || c.any_error, "{what}: read-only open: {e}")
        }
        (Err(e), _) => panic!("{what}: read-only open failed: {e}"),
        (Ok(_), Expect::Corrupt(c)) if c.ro_open_fails => panic!("{what}: read-only open succeeded"),
        (Ok(log), _) => {
            check_open_log(&log, fx, exp, true, rng, &format!("{what} (read-only)"));
            if let Expect::Intact { rebuilt, .. } = exp {
                assert_eq!(log.indexes_rebuilt(), rebuilt.len() as u64, "{what} (read-only): indexes rebuilt");
            }
        }
    }
    assert_same_files(&before, &snapshot(&ro_dir), &format!("{what}: read-only open and verify"));

    // A read-write open.
    let before = log_files(&rw_dir);
    let log = match (Log::open(&rw_dir, cfg()), exp) {
        (Err(e), Expect::Corrupt(c)) if c.rw_open_fails => {
            assert!(corruption_in(&e, c) || c.any_error, "{what}: open: {e}");
            if let (Some(at), Error::Corruption { offset, position, .. }) = (c.at, &e) {
                assert_eq!((*offset, *position), at, "{what}: open: {e}");
            }
            assert_same_files(&before, &log_files(&rw_dir), &format!("{what}: a refused open changes nothing"));
            return;
        }
        (Err(e), _) => panic!("{what}: open failed: {e}"),
        (Ok(_), Expect::Corrupt(c)) if c.rw_open_fails => panic!("{what}: open succeeded"),
        (Ok(log), _) => log,
    };
    let rw_what = format!("{what} (read-write)");
    check_open_log(&log, fx, exp, false, rng, &rw_what);
    let keep = match exp {
        Expect::Corrupt(_) => {
            log.abandon();
            return;
        }
        Expect::Intact { rebuilt, stray } => {
            // Including the index of a closed log's last segment, rebuilt at
            // open when that segment is reopened for appending.
            assert_eq!(log.indexes_rebuilt(), rebuilt.len() as u64, "{rw_what}: indexes rebuilt");
            for (name, removed) in stray {
                assert_eq!(!rw_dir.join(name).exists(), *removed, "{rw_what}: {name} removed");
                let reported = log.recovery_report().removed_temp_files.iter().any(|p| file_name(p) == *name);
                assert_eq!(reported, *removed, "{rw_what}: {name} reported as removed");
            }
            fx.n()
        }
        Expect::Cut { keep, .. } => *keep,
    };
    // Rebuilt index files are the ones written when the segment was sealed.
    for s in log.segments().iter().filter(|s| s.sealed) {
        for ext in ["index", "timeindex"] {
            let name = format!("{:020}.{ext}", s.base_offset);
            assert!(fs::read(rw_dir.join(&name)).ok() == fx.files.get(&name).cloned(), "{rw_what}: {name}");
        }
    }
    // The repair holds: closed and reopened, the log is clean and holds the same.
    log.close().unwrap();
    let log = Log::open(&rw_dir, cfg()).unwrap();
    assert_eq!(log.recovery_report().scanned_segment, None, "{rw_what}: a clean close");
    let all: Vec<OwnedRecord> = log.read_from(0).unwrap().collect::<annal::Result<_>>().unwrap();
    assert!(all[..] == fx.model[..keep as usize], "{rw_what}: after close and reopen");
    log.close().unwrap();
    let v = verify(&rw_dir).unwrap();
    assert!(v.is_clean() && v.records == keep, "{rw_what}: verify after repair: {:?}", v.problems);
}

// ---------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------

/// Aborts the process if a case runs for longer than [`CASE_TIME_LIMIT`].
/// What each worker runs, and since when.
type Slots = Arc<Vec<Mutex<Option<(String, Instant)>>>>;

struct Watchdog {
    slots: Slots,
    _thread: BackgroundThread,
}

impl Watchdog {
    fn new(workers: usize) -> Watchdog {
        let slots: Slots = Arc::new((0..workers).map(|_| Mutex::new(None)).collect());
        let s = Arc::clone(&slots);
        let thread = BackgroundThread::spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                for slot in s.iter() {
                    if let Some((what, since)) = &*slot.lock().unwrap_or_else(|e| e.into_inner())
                        && since.elapsed() > CASE_TIME_LIMIT
                    {
                        eprintln!("corruption: case hangs (> {CASE_TIME_LIMIT:?}): {what}");
                        std::process::abort();
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Watchdog { slots, _thread: thread }
    }

    fn enter(&self, worker: usize, what: &str) {
        *self.slots[worker].lock().unwrap() = Some((what.to_owned(), Instant::now()));
    }
}

#[test]
fn corruption_sweep() {
    let started = Instant::now();
    // Thousands of directory copies: on tmpfs when there is one.
    let tmp = common::fast_tempdir();
    let fixtures = [
        build_fixture(tmp.path(), "closed", Ending::Closed, 11),
        build_fixture(tmp.path(), "crashed", Ending::Crashed, 22),
        build_fixture(tmp.path(), "crashed-after-sync", Ending::CrashedAfterSync, 33),
    ];
    let mut rng = Rng::new(0x0C02_20F7);
    let mut cases = Vec::new();
    for (i, fx) in fixtures.iter().enumerate() {
        cases.extend(flip_cases(i, fx, &mut rng, 340));
        cases.extend(zero_cases(i, fx, &mut rng, 512, 40));
        cases.extend(zero_cases(i, fx, &mut rng, 4096, 40));
        cases.extend(resize_cases(i, fx));
        cases.extend(index_file_cases(i, fx));
        cases.extend(swap_segment_cases(i, fx));
        cases.extend(stray_cases(i, fx));
    }
    cases.extend(exhaustive_cases(0, &fixtures[0]));

    let workers = 2;
    let watchdog = Watchdog::new(workers);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (cases, fixtures, next, watchdog, failures) = (&cases, &fixtures, &next, &watchdog, &failures);
            let scratch = tmp.path().join(format!("scratch-{w}"));
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    watchdog.enter(w, &case.what);
                    let mut rng = Rng::new(i as u64 + 1);
                    let run = || run_case(&fixtures[case.fx], case, &scratch, &mut rng);
                    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.lock().unwrap().push(msg);
                    }
                }
            });
        }
    });
    drop(watchdog);
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed; the first ones:\n{}",
        failures.len(),
        cases.len(),
        failures.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );

    let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        *categories.entry(c.category).or_default() += 1;
        *outcomes.entry(c.expect.outcome()).or_default() += 1;
    }
    let count = |m: &BTreeMap<&str, usize>, k: &str| m.get(k).copied().unwrap_or(0);
    let list = |m: &BTreeMap<&str, usize>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    // Reads that met a damaged record in the middle of the log, after records
    // they returned, and whose error gave its exact offset and position.
    let located = cases
        .iter()
        .filter(|c| matches!(&c.expect, Expect::Corrupt(Corrupt { at: Some((k, _)), .. }) if *k > 0))
        .count();
    for fx in &fixtures {
        let sealed = fx.segs.iter().filter(|s| s.sealed).count();
        println!("corruption: fixture {}: {} records in {} segments ({sealed} sealed)", fx.name, fx.n(), fx.segs.len());
    }
    println!(
        "corruption: {} cases ({}), outcomes: intact {}, cut {}, corruption {} ({located} at a record mid-log, \
         offset and position checked); {:.1} s",
        cases.len(),
        list(&categories),
        count(&outcomes, "intact"),
        count(&outcomes, "cut"),
        count(&outcomes, "corruption"),
        started.elapsed().as_secs_f64()
    );
    assert!(count(&categories, "flips") >= 1000);
    for o in ["intact", "cut", "corruption"] {
        assert!(count(&outcomes, o) >= 20, "too few cases end in {o}: {outcomes:?}");
    }
}

/// A sealed last segment cut by one byte whose footer ended in a zero byte:
/// the zeros a writer extends the file with must not complete the footer
/// (the same rule as for records cut by the end of a short file), so a
/// writer, a read-only open and `verify` all see the 63 footer bytes left as
/// a torn tail, and every record intact.
#[test]
fn footer_cut_by_a_byte_is_not_completed_by_the_extension() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let mut rng = Rng::new(5);
    let mut model = Vec::new();
    // Close after one more record each time until the last footer ends in 0x00.
    let path = loop {
        let log = Log::open(&dir, cfg()).unwrap();
        append(&log, &mut model, &mut rng, 1);
        let last = log.segments().last().copied().unwrap();
        log.close().unwrap();
        let path = dir.join(log_file_name(last.base_offset));
        if fs::read(&path).unwrap().last() == Some(&0) {
            break path;
        }
        assert!(model.len() < 5000, "no footer ending in a zero byte");
    };
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let v = verify(&dir).unwrap();
    assert!(v.is_intact() && v.records == model.len() as u64, "{:?}", v.problems);
    assert_eq!(v.problems_of(Severity::TornTail).count(), 1, "{:?}", v.problems);
    let ro = Log::open_read_only(&dir, cfg()).unwrap();
    assert_eq!(ro.recovery_report().truncated_bytes, FOOTER_LEN as u64 - 1, "read-only");
    assert_eq!(ro.read_from(0).unwrap().collect::<annal::Result<Vec<_>>>().unwrap(), model);
    drop(ro);
    let log = Log::open(&dir, cfg()).unwrap();
    assert_eq!(log.recovery_report().truncated_bytes, FOOTER_LEN as u64 - 1, "read-write");
    assert_eq!(log.read_from(0).unwrap().collect::<annal::Result<Vec<_>>>().unwrap(), model);
}

/// A reader positioned inside an index interval steps over the frames before
/// its offset by their headers: damage in the body of such a frame neither
/// stops it nor reaches what it returns (the frame itself is refused when
/// read), and a damaged length in such a header ends the read with
/// `Corruption` rather than with wrong records. `Log::read_at` behaves the
/// same.
#[test]
fn a_reader_steps_over_a_frame_before_its_offset_by_its_header() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    // One index entry for the whole segment: every read scans from its start.
    let config = LogConfig::default().with_index_interval_bytes(1 << 20).with_durability(Durability::Never);
    let value = |i: u64| vec![i as u8; 100];
    let frame_len = 32 + 24 + 100;
    let log = Log::open(&dir, config.clone()).unwrap();
    for i in 0..10 {
        log.append(&Record::new(&value(i)).with_timestamp(1_000 + i as i64)).unwrap();
    }
    log.roll().unwrap();
    log.close().unwrap();
    let path = dir.join(log_file_name(0));
    let original = fs::read(&path).unwrap();
    let frame_at = |i: usize| DATA_START + frame_len * i;
    assert_eq!(original[frame_at(3)..frame_at(3) + 4], (frame_len as u32).to_le_bytes(), "the frame layout");

    // A flipped byte in the value of record 3.
    let mut bytes = original.clone();
    bytes[frame_at(3) + 80] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let log = Log::open_read_only(&dir, config.clone()).unwrap();
    let from_5: Vec<OwnedRecord> = log.read_from(5).unwrap().collect::<annal::Result<_>>().unwrap();
    assert_eq!(
        from_5.iter().map(|r| r.value.clone().unwrap()).collect::<Vec<_>>(),
        (5..10).map(value).collect::<Vec<_>>()
    );
    assert!(matches!(log.get(3), Err(Error::Corruption { offset: 3, .. })), "{:?}", log.get(3));
    let mut seen = Vec::new();
    let read = log.read_at(&[5, 9, 3], |_, r| {
        seen.push(r.offset());
        Ok::<(), Error>(())
    });
    assert!(matches!(read, Err(Error::Corruption { offset: 3, .. })), "{read:?}");
    assert!(seen.is_empty(), "nothing visited before the damaged frame: {seen:?}");
    let mut seen = Vec::new();
    log.read_at(&[5, 9], |_, r| {
        assert_eq!(r.value(), Some(&value(r.offset())[..]));
        seen.push(r.offset());
        Ok::<(), Error>(())
    })
    .unwrap();
    assert_eq!(seen, [5, 9]);
    drop(log);

    // A damaged length in the header of frame 3: reads past it fail.
    for len in [frame_len as u32 + 1, frame_len as u32 - 1, 3, u32::MAX] {
        let mut bytes = original.clone();
        bytes[frame_at(3)..frame_at(3) + 4].copy_from_slice(&len.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let log = Log::open_read_only(&dir, config.clone()).unwrap();
        let read: annal::Result<Vec<OwnedRecord>> = log.read_from(5).and_then(|r| r.collect());
        assert!(matches!(read, Err(Error::Corruption { .. })), "length {len}: {read:?}");
        let read = log.read_at(&[7], |_, _| Ok::<(), Error>(()));
        assert!(matches!(read, Err(Error::Corruption { .. })), "length {len}: {read:?}");
        let (before, _) = read_span(&log, 0, "damaged length");
        assert_eq!(before.len(), 3, "length {len}: the records before the damage");
    }
}
