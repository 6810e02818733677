//! Read-only inspection of a log directory: verification and dumps.
//!
//! Nothing in this module writes, renames or removes a file, and nothing maps
//! a file: segments are read with positioned reads in bounded chunks (at most
//! a few MiB at a time, or one record if a record is larger), so a log of any
//! size can be checked while a writer is running. A writer that is appending
//! at the same time can make the end of the last segment look like a torn
//! tail; run [`verify`] on a log nobody writes to for a definite answer.
//!
//! [`verify`] applies the same rules as opening the log (docs/FORMAT.md,
//! docs/DESIGN.md "Recovery"), but does not stop at the first problem: it
//! checks every segment and reports everything it finds, each problem with its
//! file, log offset and byte position.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::LogConfig;
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::index::{SegmentIndex, stored_crc};
use crate::log::LOCK_FILE_NAME;
use crate::record::{Frame, FrameFormat};
use crate::segment::header::{CHECKPOINT_POS, decode_checkpoint};
use crate::segment::scan::{self, FileSource, Scan, Tail};
use crate::io::OsIo;
use crate::segment::{
    DATA_START, FOOTER_LEN, HEADER_LEN, SegmentFlags, SegmentFooter, SegmentHeader, index_path, log_file_name,
    log_path, parse_log_file_name, timeindex_path,
};

/// How serious a [`Problem`] found by [`verify`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Damaged or inconsistent record data, header or footer: opening or
    /// reading the log fails at this point. Never repaired automatically.
    Corruption,
    /// A sealed segment's `.index` or `.timeindex` file is missing or invalid.
    /// The data is intact; the log rebuilds the index from the data when it
    /// opens the segment (and a writer rewrites the files).
    Index,
    /// Bytes after the last valid record of the last, unsealed segment, past
    /// its durable checkpoint: a write torn by a crash. A read-only open
    /// ignores them; a writer's recovery cuts them. Not data loss of anything
    /// that was acknowledged as durable.
    TornTail,
}

impl Severity {
    /// Whether this is a warning (the log opens and reads fine) rather than corruption.
    pub fn is_warning(self) -> bool {
        !matches!(self, Severity::Corruption)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Corruption => "corruption",
            Severity::Index => "index: will be rebuilt on open",
            Severity::TornTail => "torn tail: a writer would cut it",
        })
    }
}

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// How serious it is.
    pub severity: Severity,
    /// The file concerned.
    pub path: PathBuf,
    /// The log offset at or after which the problem lies (the segment's base
    /// offset for problems with a whole file).
    pub offset: u64,
    /// Byte position of the problem in the file.
    pub position: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} offset {} byte {}: {}",
            self.severity,
            self.path.display(),
            self.offset,
            self.position,
            self.message
        )
    }
}

/// What [`verify`] checked and found.
#[must_use]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The log directory.
    pub dir: PathBuf,
    /// Segment data files found.
    pub segments: usize,
    /// How many of them are sealed (have a valid footer).
    pub sealed_segments: usize,
    /// Valid records found, in all segments.
    pub records: u64,
    /// Bytes of segment and index files read and checked.
    pub bytes_checked: u64,
    /// The first offset the log holds: its recorded start offset (retention
    /// moved it), else the base offset of its first segment, archived or
    /// local, if it has any.
    pub first_offset: Option<u64>,
    /// The start offset recorded in the `start-offset` file, if there is one
    /// and it is valid.
    pub recorded_start: Option<u64>,
    /// Segments in the archive tier (from the archive manifest, which is
    /// checked; the objects themselves are not read).
    pub archived_segments: usize,
    /// Records of those segments, as the manifest counts them.
    pub archived_records: u64,
    /// Offset after the last valid record, if any segment.
    pub next_offset: Option<u64>,
    /// Everything found wrong, in file order.
    pub problems: Vec<Problem>,
    /// Files and directories that are not part of the log format and were not
    /// looked at (including leftover `.tmp` files and orphaned index files).
    pub ignored: Vec<PathBuf>,
    /// Remarks that are not problems (for example index files that differ
    /// from the ones written at sealing but whose every entry is valid).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True if no problem is [`Severity::Corruption`]: the log opens and every
    /// record reads back (warnings may remain).
    pub fn is_intact(&self) -> bool {
        self.problems.iter().all(|p| p.severity.is_warning())
    }

    /// True if nothing at all was found wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems of one severity.
    pub fn problems_of(&self, severity: Severity) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(move |p| p.severity == severity)
    }
}

/// The files of a log directory, classified.
struct Listing {
    bases: Vec<u64>,
    ignored: Vec<PathBuf>,
}

/// Lists a log directory the way opening it read-only does, and fails with
/// [`Error::NotALog`] in the same cases (no directory; no segment and no lock file).
fn list_dir(dir: &Path) -> Result<Listing> {
    if let Some(reason) = crate::log::not_a_directory(dir) {
        return Err(Error::NotALog { path: dir.to_owned(), reason });
    }
    let mut bases = Vec::new();
    let mut others = Vec::new();
    let mut has_lock = false;
    for entry in fs::read_dir(dir).ctx("list log directory", dir)? {
        let entry = entry.ctx("list log directory", dir)?;
        let name = entry.file_name();
        match name.to_str() {
            Some(n) if parse_log_file_name(n).is_some() => {
                bases.push(parse_log_file_name(n).expect("checked"));
            }
            Some(LOCK_FILE_NAME) => has_lock = true,
            // Checked by `verify` itself.
            Some(crate::log::START_OFFSET_FILE_NAME | crate::log::ARCHIVE_MANIFEST_FILE_NAME) => {}
            _ => others.push(entry.path()),
        }
    }
    bases.sort_unstable();
    if bases.is_empty() && !has_lock {
        return Err(Error::NotALog { path: dir.to_owned(), reason: crate::log::no_log_files(dir) });
    }
    // Index files of existing segments are part of the log; anything else is ignored.
    let mut ignored: Vec<PathBuf> = others
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let stem = name.strip_suffix(".index").or_else(|| name.strip_suffix(".timeindex"));
            let base = stem.and_then(|s| parse_log_file_name(&format!("{s}.log")));
            !(p.is_file() && base.is_some_and(|b| bases.binary_search(&b).is_ok()))
        })
        .collect();
    ignored.sort();
    Ok(Listing { bases, ignored })
}

/// Scans the frames in `[DATA_START, limit)` of `file` with the log's own
/// scanner and acceptance rule (no index is built), calling
/// `each(position, frame, max_timestamp_before)` for every valid one. Stops
/// at the first invalid frame or unexpected offset (in a sparse segment
/// whose range ends at `sparse_end`: an offset that does not increase or
/// passes that end).
fn scan_frames(
    src: &mut FileSource<'_>,
    format: FrameFormat,
    base: u64,
    sparse_end: Option<u64>,
    limit: u64,
    each: impl FnMut(usize, &Frame<'_>, i64) -> Result<()>,
) -> Result<Scan> {
    scan::scan(src, Scan::new(format, base, sparse_end, u32::MAX), limit as usize, each)
}

/// The header, checkpoint and footer of one segment file, as found on disk.
struct SegmentFile {
    path: PathBuf,
    file: File,
    len: u64,
    /// The decoded header, or why it is invalid.
    header: std::result::Result<SegmentHeader, String>,
    /// The header's flags (dense if the header is invalid).
    flags: SegmentFlags,
    /// The raw checkpoint field and whether its CRC is valid.
    checkpoint: Option<u64>,
    /// The footer if the segment is sealed, or why it is not.
    footer: std::result::Result<SegmentFooter, String>,
    /// The last 64 bytes start with the footer magic (a damaged footer if `footer` is an error).
    footer_magic: bool,
}

impl SegmentFile {
    fn open(dir: &Path, base: u64) -> Result<SegmentFile> {
        let path = log_path(dir, base);
        let file = File::open(&path).ctx("open segment", &path)?;
        let len = file.metadata().ctx("stat segment", &path)?.len();
        let mut seg = SegmentFile {
            path,
            file,
            len,
            header: Err(String::new()),
            flags: SegmentFlags::DENSE,
            checkpoint: None,
            footer: Err("no footer".into()),
            footer_magic: false,
        };
        if len < DATA_START as u64 {
            seg.header = Err(format!("file of {len} bytes is shorter than the segment header"));
            return Ok(seg);
        }
        let mut hbuf = [0u8; DATA_START];
        seg.file.read_exact_at(&mut hbuf, 0).ctx("read segment header", &seg.path)?;
        seg.header = SegmentHeader::decode_with_flags(&hbuf[..HEADER_LEN]).and_then(|(h, flags)| {
            seg.flags = flags;
            if h.base_offset == base {
                Ok(h)
            } else {
                Err(format!("header names base offset {} but the file name says {base}", h.base_offset))
            }
        });
        seg.checkpoint = decode_checkpoint(&hbuf);
        if len >= (DATA_START + FOOTER_LEN) as u64 {
            let mut fbuf = [0u8; FOOTER_LEN];
            seg.file.read_exact_at(&mut fbuf, len - FOOTER_LEN as u64).ctx("read segment footer", &seg.path)?;
            seg.footer_magic = fbuf.starts_with(b"ANNALEND");
            seg.footer = SegmentFooter::decode_with_flags(&fbuf, len, seg.flags).and_then(|f| {
                if f.base_offset == base {
                    Ok(f)
                } else {
                    Err(format!("footer names base offset {} but the file name says {base}", f.base_offset))
                }
            });
        } else {
            seg.footer = Err(format!("file of {len} bytes is too short for a footer"));
        }
        Ok(seg)
    }

    /// File position up to which records are scanned: the footer of a sealed
    /// segment; for an unsealed one, the bound recovery uses. The segment size
    /// a writer used is not stored, so this is the bound of a read-only open
    /// with the default configuration (what `annal read` uses).
    fn data_limit(&self) -> u64 {
        match &self.footer {
            Ok(f) => f.data_end,
            Err(_) => scan::scan_end(self.len, LogConfig::default().segment_bytes()) as u64,
        }
    }

    /// How the segment's records are framed (the current format if the
    /// header is invalid: nothing is read then).
    fn format(&self) -> FrameFormat {
        self.header.as_ref().map_or(FrameFormat::Batch, SegmentHeader::frame_format)
    }

    /// The durable checkpoint the log's recovery uses (`DATA_START` if invalid).
    fn effective_checkpoint(&self) -> u64 {
        self.checkpoint.unwrap_or(DATA_START as u64)
    }

    /// For a sealed sparse (compacted) segment, the end of its offset range.
    fn sparse_end(&self) -> Option<u64> {
        self.footer.as_ref().ok().filter(|_| self.flags.is_sparse()).map(|f| f.next_offset)
    }
}

/// The index files of a sealed segment, loaded and checked on their own.
struct StoredIndex {
    index: SegmentIndex,
    crc_matches_footer: bool,
    bytes: u64,
}

/// Loads a sealed segment's index files with the same bounds and checks as
/// the log (`segment::load_index`), except the check against the data.
fn load_stored_index(dir: &Path, footer: &SegmentFooter) -> std::result::Result<StoredIndex, (PathBuf, String)> {
    let base = footer.base_offset;
    let mut files = Vec::with_capacity(2);
    for path in [index_path(dir, base), timeindex_path(dir, base)] {
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err((path, "missing".into())),
            Err(e) => return Err((path, format!("cannot stat: {e}"))),
        };
        // Same bound as the log: never read an absurdly large index file.
        if meta.len() > footer.data_end * 2 + 64 {
            return Err((path, format!("file of {} bytes is too large for its segment", meta.len())));
        }
        match fs::read(&path) {
            Ok(bytes) => files.push((path, bytes)),
            Err(e) => return Err((path, format!("cannot read: {e}"))),
        }
    }
    let (ip, ob) = &files[0];
    let (tp, tb) = &files[1];
    // Decode each file against itself first, to say which one is bad.
    for (p, b) in [(ip, ob), (tp, tb)] {
        if b.len() < crate::index::INDEX_HEADER_LEN {
            return Err((p.clone(), format!("file of {} bytes is shorter than its header", b.len())));
        }
    }
    let index = SegmentIndex::decode(ob, tb, base, footer.data_end as usize, 1).map_err(|why| {
        let p = if why.starts_with("time index") { tp.clone() } else { ip.clone() };
        (p, format!("invalid index files: {why}"))
    })?;
    Ok(StoredIndex {
        index,
        crc_matches_footer: stored_crc(ob) == footer.index_crc && stored_crc(tb) == footer.timeindex_crc,
        bytes: (ob.len() + tb.len()) as u64,
    })
}

/// Checks every segment of the log in `dir` and returns what it found.
///
/// For each segment file: the header (magic, version, checksum, base offset
/// against the file name); the footer if the segment is sealed (every segment
/// but the last must be); every record's checksum and layout, and that offsets
/// are dense within and between segments; that a sealed segment's records
/// end exactly at its footer and agree with its record count, next offset and
/// largest timestamp; and that its `.index` and `.timeindex` files exist, are
/// valid, and that every entry points at the record it names (position and
/// largest earlier timestamp). In the last, unsealed segment, bad bytes after
/// the last valid record and after the durable checkpoint are reported as a
/// [`Severity::TornTail`] warning, bad bytes before the checkpoint as
/// corruption.
///
/// Fails with [`Error::NotALog`] where [`crate::Log::open_read_only`] would,
/// and with [`Error::Io`] if a file cannot be read; everything wrong with the
/// contents of the files is in the report instead.
///
/// ```
/// use annal::{Log, LogConfig, Record};
/// let dir = tempfile::tempdir()?;
/// let log = Log::open(dir.path(), LogConfig::default().with_segment_bytes(1 << 16))?;
/// log.append(&Record::new(b"hello"))?;
/// log.close()?;
/// let report = annal::inspect::verify(dir.path())?;
/// assert!(report.is_clean() && report.records == 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let listing = list_dir(dir)?;
    let mut report = VerifyReport { dir: dir.to_owned(), ignored: listing.ignored, ..VerifyReport::default() };
    let mut bases = listing.bases;
    let whole_file = |path: PathBuf, kind: CorruptionKind| Problem {
        severity: Severity::Corruption,
        path,
        offset: 0,
        position: 0,
        message: kind.to_string(),
    };
    // The start offset and the archive manifest, which recovery trusts: a
    // damaged one is damage to data (the log refuses to open).
    let start = match crate::log::read_start_offset(&OsIo, dir) {
        Ok(start) => start,
        Err(Error::Corruption { path, kind, .. }) => {
            report.problems.push(whole_file(path, kind));
            None
        }
        Err(e) => return Err(e),
    };
    report.recorded_start = start;
    let mut archived = match crate::log::read_manifest(&OsIo, dir) {
        Ok(entries) => entries,
        Err(Error::Corruption { path, kind, .. }) => {
            report.problems.push(whole_file(path, kind));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    if let Some(start) = start {
        // Left by a crash between moving the start and deleting: a writable
        // open removes them. Not part of the log.
        let below = bases.windows(2).take_while(|w| w[1] <= start).count();
        for &base in &bases[..below] {
            report.notes.push(format!(
                "{}: wholly below the start offset {start}; removed at the next writable open",
                log_path(dir, base).display()
            ));
        }
        bases.drain(..below);
        let listed = archived.len();
        archived.retain(|e| e.meta.footer.next_offset > start);
        if archived.len() != listed {
            report.notes.push(format!(
                "{} archive manifest entries wholly below the start offset {start}; dropped at the next writable open",
                listed - archived.len()
            ));
        }
    }
    let archive_end = archived.last().map(|e| e.meta.footer.next_offset);
    if let Some(end) = archive_end {
        let copies = bases.partition_point(|&b| b < end);
        for &base in &bases[..copies] {
            report.notes.push(format!(
                "{}: a local copy of an archived segment; removed at the next writable open",
                log_path(dir, base).display()
            ));
        }
        bases.drain(..copies);
    }
    report.archived_segments = archived.len();
    report.archived_records = archived.iter().map(|e| e.meta.footer.record_count).sum();
    report.segments = bases.len();
    let first_base = archived.first().map(|e| e.meta.footer.base_offset).or(bases.first().copied());
    report.first_offset = match (first_base, start) {
        (Some(b), Some(s)) => Some(b.max(s)),
        (b, s) => b.or(s),
    };
    // The offset the previous segment ends at, if it is known: the first
    // local segment starts where the archived ones end.
    let mut expected_base: Option<u64> = archive_end;
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        expected_base = verify_segment(dir, base, is_last, expected_base, &mut report)?;
    }
    report.next_offset = expected_base.or(start);
    if let (Some(start), Some(next)) = (start, report.next_offset)
        && start > next
    {
        // Retention syncs the records below a new start before recording
        // it: a start past the end means records that were durable are gone.
        let kind =
            CorruptionKind::BadHeader(format!("the recorded start offset {start} is past the end of the log ({next})"));
        report.problems.push(Problem {
            severity: Severity::Corruption,
            path: dir.join(crate::log::START_OFFSET_FILE_NAME),
            offset: start,
            position: 0,
            message: kind.to_string(),
        });
    }
    Ok(report)
}

/// Checks one segment; returns the offset it ends at, if it can be trusted.
fn verify_segment(
    dir: &Path,
    base: u64,
    is_last: bool,
    expected_base: Option<u64>,
    report: &mut VerifyReport,
) -> Result<Option<u64>> {
    let seg = SegmentFile::open(dir, base)?;
    let problem = |severity, offset, position, message: String| Problem {
        severity,
        path: seg.path.clone(),
        offset,
        position,
        message,
    };
    if let Some(expected) = expected_base
        && expected != base
    {
        let kind = CorruptionKind::Gap { expected, found: base };
        report.problems.push(problem(Severity::Corruption, expected, 0, kind.to_string()));
    }
    if let Err(why) = &seg.header {
        let kind = CorruptionKind::BadHeader(why.clone());
        report.problems.push(problem(Severity::Corruption, base, 0, kind.to_string()));
        report.bytes_checked += seg.len.min(DATA_START as u64);
        // Nothing in a file with a bad header is trusted; the log refuses to open.
        return Ok(seg.footer.as_ref().ok().map(|f| f.next_offset));
    }

    let mut reader = FileSource::new(&OsIo, &seg.file, &seg.path);
    let format = seg.format();
    match &seg.footer {
        Ok(footer) => {
            report.sealed_segments += 1;
            let stored = load_stored_index(dir, footer);
            let entries = stored.as_ref().ok().map(|s| (&s.index.offsets, &s.index.times));
            // Index entries are checked against the records during the scan.
            let mut next_entry = 0;
            let mut index_mismatch: Option<(PathBuf, u64, u64, String)> = None;
            let s = scan_frames(&mut reader, format, base, seg.sparse_end(), footer.data_end, |pos, f, max_before| {
                let Some((offsets, times)) = entries else { return Ok(()) };
                let pos = pos as u64;
                let rel = f.base_offset() - base;
                while next_entry < offsets.len() && u64::from(offsets[next_entry].rel_offset) <= rel {
                    let e = offsets[next_entry];
                    let t = times[next_entry];
                    if index_mismatch.is_none() {
                        if u64::from(e.rel_offset) != rel || u64::from(e.position) != pos {
                            index_mismatch = Some((
                                index_path(dir, base),
                                base + u64::from(e.rel_offset),
                                u64::from(e.position),
                                format!(
                                    "index entry says offset {} starts a frame at byte {}, but the frame there starts at offset {} at byte {pos}",
                                    base + u64::from(e.rel_offset),
                                    e.position,
                                    f.base_offset()
                                ),
                            ));
                        } else if t.max_timestamp_before != max_before {
                            index_mismatch = Some((
                                timeindex_path(dir, base),
                                f.base_offset(),
                                pos,
                                format!(
                                    "time index entry says the records before offset {} reach timestamp {}, they reach {max_before}",
                                    f.base_offset(),
                                    t.max_timestamp_before
                                ),
                            ));
                        }
                    }
                    next_entry += 1;
                }
                Ok(())
            })?;
            report.records += s.count;
            report.bytes_checked += seg.len;
            let mut data_ok = true;
            if let Some(kind) = s.bad {
                data_ok = false;
                report.problems.push(problem(Severity::Corruption, s.next_offset, s.end as u64, kind.to_string()));
            } else {
                let mismatch = s.footer_mismatches(footer);
                for m in mismatch {
                    data_ok = false;
                    let kind = CorruptionKind::BadFooter(m);
                    report.problems.push(problem(
                        Severity::Corruption,
                        s.next_offset,
                        footer.data_end,
                        kind.to_string(),
                    ));
                }
            }
            match stored {
                Err((path, why)) => report.problems.push(Problem {
                    severity: Severity::Index,
                    path,
                    offset: base,
                    position: 0,
                    message: why,
                }),
                Ok(stored) => {
                    report.bytes_checked += stored.bytes;
                    let entries = stored.index.offsets.len();
                    if data_ok && index_mismatch.is_none() && next_entry < entries {
                        let e = stored.index.offsets[next_entry];
                        index_mismatch = Some((
                            index_path(dir, base),
                            base + u64::from(e.rel_offset),
                            u64::from(e.position),
                            format!(
                                "index entry names offset {}, past the segment's last record",
                                base + u64::from(e.rel_offset)
                            ),
                        ));
                    }
                    match index_mismatch {
                        // Entries after damaged data cannot be judged; the data problem is what matters.
                        Some(_) if !data_ok => {}
                        Some((path, offset, position, message)) if stored.crc_matches_footer => {
                            // The log trusts index files whose checksum matches the footer
                            // and would not rebuild this one: reads through it can fail.
                            report.problems.push(Problem {
                                severity: Severity::Corruption,
                                path,
                                offset,
                                position,
                                message: format!(
                                    "{message} (the index checksum matches the footer, so the log uses it)"
                                ),
                            });
                        }
                        Some((path, offset, position, message)) => {
                            report.problems.push(Problem { severity: Severity::Index, path, offset, position, message });
                        }
                        None if !stored.crc_matches_footer && data_ok => report.notes.push(format!(
                            "{}: index files differ from the ones written at sealing (rebuilt with another \
                             index interval?), but every entry is valid, so the log uses them",
                            index_path(dir, base).display()
                        )),
                        None => {}
                    }
                }
            }
            Ok(Some(footer.next_offset))
        }
        Err(why) => {
            if seg.flags.is_sparse() {
                // Like the log: a compacted segment is never torn, only damaged.
                let kind =
                    CorruptionKind::BadFooter(format!("a compacted (sparse) segment without a valid footer: {why}"));
                let pos = seg.len.saturating_sub(FOOTER_LEN as u64);
                report.problems.push(problem(Severity::Corruption, base, pos, kind.to_string()));
                report.bytes_checked += seg.len;
                return Ok(None);
            }
            if !is_last {
                let kind = CorruptionKind::BadFooter(format!("a segment before the last one is not sealed: {why}"));
                let pos = seg.len.saturating_sub(FOOTER_LEN as u64);
                report.problems.push(problem(Severity::Corruption, base, pos, kind.to_string()));
            }
            for p in [index_path(dir, base), timeindex_path(dir, base)] {
                if p.exists() {
                    report.notes.push(format!(
                        "{}: stale index file of an unsealed segment (not used; replaced when the segment is sealed)",
                        p.display()
                    ));
                }
            }
            let limit = seg.data_limit();
            let s = scan_frames(&mut reader, format, base, None, limit, |_, _, _| Ok(()))?;
            report.records += s.count;
            report.bytes_checked += seg.len;
            let checkpoint = seg.effective_checkpoint();
            if seg.checkpoint.is_none() {
                report.notes.push(format!(
                    "{}: the checkpoint at byte {CHECKPOINT_POS} is invalid; recovery treats it as {DATA_START}",
                    seg.path.display()
                ));
            }
            // The log's own classification of what follows the records.
            match scan::examine_tail(&OsIo, &mut reader, &seg.file, &seg.path, &s, seg.len, checkpoint)?.0 {
                Tail::Clean => {}
                Tail::Damaged => {
                    let kind = s.bad.clone().unwrap_or(CorruptionKind::DamagedDurableData);
                    report.problems.push(problem(
                        Severity::Corruption,
                        s.next_offset,
                        s.end as u64,
                        format!("{kind} (before the durable checkpoint at byte {checkpoint})"),
                    ));
                }
                Tail::Torn { from, to } => {
                    let kind = s.bad.clone().unwrap_or(CorruptionKind::BadLength(0));
                    let (cut, last) = (to - from, to - 1);
                    let mut message = format!(
                        "{cut} bytes up to the non-zero byte at {last} follow the last valid frame, after the durable \
                         checkpoint at byte {checkpoint} (first invalid frame: {kind})"
                    );
                    if seg.footer_magic {
                        message.push_str(&format!("; the last {FOOTER_LEN} bytes look like a damaged footer ({why})"));
                    }
                    report.problems.push(problem(Severity::TornTail, s.next_offset, s.end as u64, message));
                }
            }
            Ok(Some(s.next_offset))
        }
    }
}

/// Writes a human-readable description of the segments of the log in `dir`
/// (all of them, or only the one whose base offset is `segment`) to `out`:
/// header fields, checkpoint, footer (or "unsealed"), the entries of both index
/// files, and every record (offset, position, length, timestamp, key, value
/// size, header names). Reading stops at the first invalid record of a
/// segment, which is described instead.
///
/// Fails with [`Error::NotALog`] where [`crate::Log::open_read_only`] would,
/// with an [`Error::Io`] of kind `NotFound` if there is no segment `segment`,
/// and with [`Error::Io`] if reading a file or writing to `out` fails.
pub fn dump(dir: &Path, segment: Option<u64>, out: &mut dyn Write) -> Result<()> {
    let listing = list_dir(dir)?;
    let bases: Vec<u64> = match segment {
        Some(base) if listing.bases.contains(&base) => vec![base],
        Some(base) => {
            return Err(Error::io(
                "find segment",
                log_path(dir, base),
                io::Error::new(io::ErrorKind::NotFound, format!("the log has no segment with base offset {base}")),
            ));
        }
        None => listing.bases.clone(),
    };
    let mut w = DumpOut { out, path: dir };
    w.line(format_args!("log {}: {} segment(s)", dir.display(), listing.bases.len()))?;
    for p in &listing.ignored {
        w.line(format_args!("ignored: {}", p.display()))?;
    }
    for base in bases {
        dump_segment(dir, base, &mut w)?;
    }
    Ok(())
}

/// `out` with errors mapped to [`Error::Io`].
struct DumpOut<'a> {
    out: &'a mut dyn Write,
    path: &'a Path,
}

impl DumpOut<'_> {
    fn line(&mut self, args: fmt::Arguments<'_>) -> Result<()> {
        self.out.write_fmt(args).and_then(|()| self.out.write_all(b"\n")).ctx("write dump of", self.path)
    }
}

fn dump_segment(dir: &Path, base: u64, w: &mut DumpOut<'_>) -> Result<()> {
    let seg = SegmentFile::open(dir, base)?;
    w.line(format_args!(""))?;
    w.line(format_args!("segment {} ({} bytes)", log_file_name(base), seg.len))?;
    match &seg.header {
        Ok(h) => w.line(format_args!(
            "  header: version {}, base_offset {}, created {} ({} ms){}",
            h.version,
            h.base_offset,
            format_timestamp(h.created_ms),
            h.created_ms,
            if seg.flags.is_sparse() { ", flags: sparse (compacted: offsets may have gaps)" } else { "" }
        ))?,
        Err(why) => w.line(format_args!("  header: INVALID: {why}"))?,
    }
    match seg.checkpoint {
        Some(c) => w.line(format_args!("  checkpoint: synced_end {c}"))?,
        None => w.line(format_args!("  checkpoint: invalid (recovery treats it as {DATA_START})"))?,
    }
    match &seg.footer {
        Ok(f) => {
            w.line(format_args!(
                "  footer: data_end {}, record_count {}, next_offset {}, max_timestamp {} ({}), index_crc {:#010x}, timeindex_crc {:#010x}",
                f.data_end,
                f.record_count,
                f.next_offset,
                f.max_timestamp,
                format_timestamp(f.max_timestamp),
                f.index_crc,
                f.timeindex_crc
            ))?;
            match load_stored_index(dir, f) {
                Ok(stored) => {
                    let crc = if stored.crc_matches_footer { "match the footer" } else { "DIFFER from the footer" };
                    w.line(format_args!("  index: {} entries (checksums {crc})", stored.index.offsets.len()))?;
                    for e in &stored.index.offsets {
                        w.line(format_args!(
                            "    offset {} (rel {}) at byte {}",
                            base + u64::from(e.rel_offset),
                            e.rel_offset,
                            e.position
                        ))?;
                    }
                    w.line(format_args!("  timeindex: {} entries", stored.index.times.len()))?;
                    for e in &stored.index.times {
                        w.line(format_args!(
                            "    offset {} (rel {}): earlier records up to timestamp {} ({})",
                            base + u64::from(e.rel_offset),
                            e.rel_offset,
                            e.max_timestamp_before,
                            format_timestamp(e.max_timestamp_before)
                        ))?;
                    }
                }
                Err((path, why)) => w.line(format_args!("  index: {}: {why}", path.display()))?,
            }
        }
        Err(why) => {
            let why = if seg.footer_magic { format!("damaged footer? {why}") } else { why.clone() };
            w.line(format_args!("  footer: unsealed ({why})"))?;
            w.line(format_args!("  index: none on disk (kept in memory by the writer)"))?;
        }
    }
    if seg.len < DATA_START as u64 {
        return Ok(());
    }
    let limit = seg.data_limit();
    w.line(format_args!("  records (bytes {DATA_START}..{limit}):"))?;
    let mut reader = FileSource::new(&OsIo, &seg.file, &seg.path);
    let s = scan_frames(&mut reader, seg.format(), base, seg.sparse_end(), limit, |pos, f, _| {
        if f.format() == FrameFormat::Batch {
            w.line(format_args!(
                "    batch at byte {pos} length {}: offsets {}..{}, {} record(s), max timestamp {}",
                f.len(),
                f.base_offset(),
                f.next_offset(),
                f.count(),
                f.max_timestamp()
            ))?;
        }
        let mut at = pos + f.records_start();
        for r in f.records() {
            let key = match r.key() {
                Some(k) => format!("\"{}\"", escape_bytes(k)),
                None => "-".into(),
            };
            let value = match r.value() {
                Some(v) => format!("{} bytes", v.len()),
                None => "null (tombstone)".into(),
            };
            let names: Vec<&str> = r.headers().map(|h| h.name).collect();
            let headers = if names.is_empty() { String::new() } else { format!(" headers [{}]", names.join(", ")) };
            w.line(format_args!(
                "    {}offset {} at byte {at} length {} timestamp {} ({}) key {key} value {value}{headers}",
                if f.format() == FrameFormat::Batch { "  " } else { "" },
                r.offset(),
                r.frame_len(),
                r.timestamp(),
                format_timestamp(r.timestamp())
            ))?;
            at += r.frame_len() as usize;
        }
        Ok(())
    })?;
    w.line(format_args!("  end: {} records, next offset {}, records end at byte {}", s.count, s.next_offset, s.end))?;
    if let Some(kind) = &s.bad {
        match &seg.footer {
            Ok(_) => w.line(format_args!("  stopped at byte {}: corruption: {kind}", s.end))?,
            Err(_) => match scan::examine_tail(&OsIo, &mut reader, &seg.file, &seg.path, &s, seg.len, seg.effective_checkpoint())?.0 {
                Tail::Clean => {}
                Tail::Damaged => w.line(format_args!(
                    "  stopped at byte {}: {kind} (corruption: before the durable checkpoint)",
                    s.end
                ))?,
                Tail::Torn { from, to } => w.line(format_args!(
                    "  stopped at byte {}: {kind}; {} non-zero bytes from byte {from} up to byte {} (torn tail: after the durable checkpoint, a writer would cut it)",
                    s.end,
                    to - from,
                    to - 1
                ))?,
            },
        }
    }
    Ok(())
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC time
/// (`2024-05-01T12:00:00.000Z`); `i64::MIN` (no timestamp) as `-`.
///
/// ```
/// assert_eq!(annal::inspect::format_timestamp(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(annal::inspect::format_timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
/// ```
pub fn format_timestamp(ms: i64) -> String {
    if ms == i64::MIN {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Shows bytes as text on one line: valid UTF-8 as is, except `\` as `\\`,
/// tab, newline and carriage return as `\t`, `\n`, `\r`, other control
/// characters, line and paragraph separators and bidirectional-text controls
/// as `\u{..}`, and bytes that are not UTF-8 as `\xNN`.
///
/// ```
/// assert_eq!(annal::inspect::escape_bytes(b"a\tb\xff\\"), "a\\tb\\xff\\\\");
/// assert_eq!(annal::inspect::escape_bytes("é\u{2028}".as_bytes()), "é\\u{2028}");
/// ```
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\t' => s.push_str("\\t"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                c if c.is_control() || is_invisible_format(c) => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Characters that break a line or reorder text on a terminal without being
/// control characters: line and paragraph separators, bidirectional marks,
/// embeddings, overrides and isolates, and the byte order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}
