//! Following a log that another process appends to, for `annal tail`.
//!
//! A read-only [`annal::Log`] is a snapshot, so following needs either a
//! reopen whenever something changed or reading the files directly. Reopening
//! is costly (it scans the whole preallocated last segment, 1 GiB by default)
//! and unsafe while a writer seals that segment: the read-only open maps the
//! file at the length it saw and touches all of it, so a writer trimming the
//! file at that moment kills the reader with SIGBUS. This module reads new
//! records with positioned reads instead, applying the same checks as the
//! library's reader: every record is decoded and CRC-checked and must carry
//! the expected offset; a bad record before the segment's durable checkpoint,
//! or before a sealed segment's footer, is corruption; a bad or partly written
//! record after the checkpoint of the last segment is a write in progress (or
//! a torn tail that the next writer cuts), so it is waited on.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use annal::record::{self, Frame, FrameFormat};
use annal::segment::header::decode_checkpoint;
use annal::segment::{
    DATA_START, FOOTER_LEN, HEADER_LEN, SegmentFlags, SegmentFooter, SegmentHeader, Tail, classify_tail, log_file_name,
};
use annal::{CorruptionKind, Error};

use super::{CliResult, Failure};

/// Reads the records that follow a position in a log directory as they appear.
pub(crate) struct Follower {
    dir: PathBuf,
    /// The segment being read: its path, and the open file once it exists.
    path: PathBuf,
    base: u64,
    file: Option<File>,
    /// The segment's header flags (sparse: written by compaction, offsets may have gaps).
    flags: SegmentFlags,
    /// How the segment's records are framed.
    format: FrameFormat,
    /// File position of the next frame.
    pos: u64,
    /// Offset of the next record (at least this in a sparse segment).
    next: u64,
    buf: Vec<u8>,
}

/// The result of one attempt to read a frame at the current position.
enum Attempt {
    /// A valid frame with the expected offsets is in `buf`.
    Frame,
    /// No valid frame (yet); the reason if there are bytes that are not one.
    Nothing(Option<CorruptionKind>),
}

impl Follower {
    /// A follower whose next record is `next`, at file position `pos` of the
    /// segment with base offset `base` (which need not exist yet).
    pub(crate) fn new(dir: &Path, base: u64, pos: u64, next: u64) -> Follower {
        Follower {
            dir: dir.to_owned(),
            path: dir.join(log_file_name(base)),
            base,
            file: None,
            flags: SegmentFlags::DENSE,
            format: FrameFormat::Batch,
            pos,
            next,
            buf: Vec::new(),
        }
    }

    /// The next frame (a batch of records) if a complete one is there now,
    /// `None` if there is none yet. Moves on to the next segment when the
    /// writer has rolled.
    pub(crate) fn next_frame(&mut self) -> CliResult<Option<Frame<'_>>> {
        loop {
            if self.file.is_none() && !self.open_segment()? {
                return Ok(None);
            }
            let kind = match self.attempt()? {
                Attempt::Frame => {
                    let f = record::decode_frame_as(&self.buf, self.format).expect("checked by attempt");
                    self.pos += f.len() as u64;
                    self.next = f.next_offset();
                    return Ok(Some(f));
                }
                Attempt::Nothing(kind) => kind,
            };
            if !self.unstick(kind)? {
                return Ok(None);
            }
        }
    }

    /// Opens the current segment file if it exists; checks its header.
    fn open_segment(&mut self) -> CliResult<bool> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_failure("open segment", &self.path, e)),
        };
        let mut header = [0u8; HEADER_LEN];
        if !read_at(&file, &mut header, 0).map_err(|e| io_failure("read segment header", &self.path, e))? {
            // Segment files appear by rename with their header written: a short one is damaged.
            return Err(self.corruption(0, CorruptionKind::BadHeader("file shorter than a segment header".into())));
        }
        match SegmentHeader::decode_with_flags(&header) {
            Ok((h, flags)) if h.base_offset == self.base => {
                self.flags = flags;
                self.format = h.frame_format();
            }
            Ok((h, _)) => {
                let why = format!("header names base offset {} but the file name says {}", h.base_offset, self.base);
                return Err(self.corruption(0, CorruptionKind::BadHeader(why)));
            }
            Err(why) => return Err(self.corruption(0, CorruptionKind::BadHeader(why))),
        }
        self.file = Some(file);
        Ok(true)
    }

    /// Tries to decode a frame with the expected offsets at the current position into `buf`.
    fn attempt(&mut self) -> CliResult<Attempt> {
        let file = self.file.as_ref().expect("an open segment");
        let io_err = |e| io_failure("read segment", &self.path, e);
        let mut len = [0u8; 4];
        if !read_at(file, &mut len, self.pos).map_err(io_err)? {
            return Ok(Attempt::Nothing(None));
        }
        let len = u32::from_le_bytes(len);
        if len == 0 {
            return Ok(Attempt::Nothing(None));
        }
        if (len as usize) < self.format.min_len() {
            return Ok(Attempt::Nothing(Some(CorruptionKind::BadLength(len))));
        }
        let file_len = file.metadata().map_err(io_err)?.len();
        if self.pos + u64::from(len) > file_len {
            return Ok(Attempt::Nothing(Some(CorruptionKind::BadLength(len))));
        }
        self.buf.resize(len as usize, 0);
        if !read_at(file, &mut self.buf, self.pos).map_err(io_err)? {
            return Ok(Attempt::Nothing(Some(CorruptionKind::BadLength(len))));
        }
        Ok(match record::decode_frame_as(&self.buf, self.format) {
            Ok(f) if f.base_offset() == self.next || (self.flags.is_sparse() && f.base_offset() > self.next) => {
                Attempt::Frame
            }
            Ok(f) => {
                Attempt::Nothing(Some(CorruptionKind::UnexpectedOffset { expected: self.next, found: f.base_offset() }))
            }
            Err(kind) => Attempt::Nothing(Some(kind)),
        })
    }

    /// There is no valid record at the current position. Returns `true` if the
    /// caller should try again now (the writer rolled to a new segment, or the
    /// record became complete), `false` to wait, and an error for corruption.
    fn unstick(&mut self, kind: Option<CorruptionKind>) -> CliResult<bool> {
        let file = self.file.as_ref().expect("an open segment");
        let io_err = |e| io_failure("read segment", &self.path, e);
        // The next segment first: it appears (by rename) only after this one was
        // sealed, so if it exists, this segment's footer is final. A segment
        // that holds no record yet (a writer has just rolled to it or reopened
        // the log, and has not appended) is its own "next" file name: that is
        // this segment, not a later one.
        let base = self.base;
        let next_exists = |dir: &Path, next: u64| next != base && dir.join(log_file_name(next)).exists();
        let mut rolled = next_exists(&self.dir, self.next);
        let footer = read_footer(file, self.base, self.flags).map_err(io_err)?;
        if let Some(f) = footer {
            if f.data_end > self.pos {
                return Err(self.corruption(self.pos, kind.unwrap_or(CorruptionKind::BadLength(0))));
            }
            let sparse = self.flags.is_sparse();
            let offsets_ok = if sparse { f.next_offset >= self.next } else { f.next_offset == self.next };
            if f.data_end < self.pos || !offsets_ok {
                let why = format!(
                    "footer says the segment ends at byte {} and offset {}, its records end at byte {} and offset {}",
                    f.data_end, f.next_offset, self.pos, self.next
                );
                return Err(self.corruption(self.pos, CorruptionKind::BadFooter(why)));
            }
            if sparse {
                // A compacted segment is sealed for good; the rest of its
                // offset range holds no record, and the next segment starts
                // where the range ends.
                self.next = f.next_offset;
                rolled = next_exists(&self.dir, self.next);
            }
            if rolled {
                self.base = self.next;
                self.path = self.dir.join(log_file_name(self.next));
                self.file = None;
                self.pos = DATA_START as u64;
                return Ok(true);
            }
            // The last segment, sealed: a writer may reopen it and append here.
            return Ok(false);
        }
        if self.flags.is_sparse() {
            let why = "a compacted (sparse) segment without a valid footer".to_owned();
            return Err(self.corruption(self.pos, CorruptionKind::BadFooter(why)));
        }
        if rolled {
            let why = "a segment before the last one is not sealed".to_owned();
            return Err(self.corruption(self.pos, CorruptionKind::BadFooter(why)));
        }
        // The checkpoint before a second look at the record: bytes below the
        // checkpoint were completely written before it was.
        let mut header = [0u8; DATA_START];
        read_at(file, &mut header, 0).map_err(io_err)?;
        let checkpoint = decode_checkpoint(&header).unwrap_or(DATA_START as u64);
        if let Attempt::Frame = self.attempt()? {
            return Ok(true);
        }
        // The log's own rule for what follows the valid frames of an
        // unsealed segment; anything but damage to durable data is a frame
        // being written, or a torn tail the next writer will cut.
        match classify_tail(self.pos, checkpoint, None, None) {
            Tail::Damaged => Err(self.corruption(self.pos, kind.unwrap_or(CorruptionKind::DamagedDurableData))),
            Tail::Clean | Tail::Torn { .. } => Ok(false),
        }
    }

    fn corruption(&self, position: u64, kind: CorruptionKind) -> Failure {
        Failure::from(Error::Corruption { path: self.path.clone(), offset: self.next, position, kind })
    }
}

/// The footer of a sealed segment file, `None` if it is not sealed.
fn read_footer(file: &File, base: u64, flags: SegmentFlags) -> io::Result<Option<SegmentFooter>> {
    let len = file.metadata()?.len();
    if len < (DATA_START + FOOTER_LEN) as u64 {
        return Ok(None);
    }
    let mut buf = [0u8; FOOTER_LEN];
    if !read_at(file, &mut buf, len - FOOTER_LEN as u64)? {
        return Ok(None);
    }
    Ok(SegmentFooter::decode_with_flags(&buf, len, flags).ok().filter(|f| f.base_offset == base))
}

/// Fills `buf` from `pos`; `false` if the file ends first.
fn read_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, pos) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn io_failure(op: &str, path: &Path, e: io::Error) -> Failure {
    Failure::Error(format!("{op} {}: {e}", path.display()))
}
