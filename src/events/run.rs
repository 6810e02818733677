//! Index runs: the immutable, sorted, checksummed files the event store's
//! indexes are made of (docs/FORMAT.md, "Index run"; docs/EVENTS.md, "The
//! indexes").
//!
//! A run holds entries of 32 bytes, `(key: u128, a: u64, b: u64)`, strictly
//! ascending by `(key, a)`, in blocks of 128 entries (4 KiB). After the blocks
//! comes a block table (per block: its first key and `a`, and the CRC of its
//! bytes), and the file starts with a header:
//!
//! ```text
//!  0   8  magic          "ANNALRUN"
//!  8   2  version        u16  1
//!  10  1  kind           u8   1 stream, 2 event id, 3 category, 4 event type
//!  11  1  reserved       0
//!  12  4  block_entries  u32  128
//!  16  8  entries        u64  N
//!  24  8  from           u64  first global position the run covers
//!  32  8  to             u64  end of what it covers (exclusive)
//!  40  4  table_crc      u32  CRC-32 of the block table
//!  44  4  filter_blocks  u32  F, 64-byte blocks of the Bloom filter (at least 1)
//!  48  4  filter_crc     u32  CRC-32 of the filter
//!  52  8  keys           u64  distinct keys
//!  60  4  header_crc     u32  CRC-32 of bytes [0, 60)
//!  64  32*N              entries
//!  ..  32 per block      table: first key u128, first a u64, block CRC u32, 0 u32
//!  ..  64*F              Bloom filter of the keys
//! ```
//!
//! The Bloom filter lets a lookup of a key the run does not hold (a stream
//! without metadata, an event id never appended) skip the run without
//! reading it: about 10 bits per key, 7 probes within one 64-byte block.
//!
//! Opening a run checks the header, the file's length, the table's CRC and
//! that the table's keys ascend; a block's CRC and order are checked the
//! first time the block is read (the run is immutable and mapped read-only;
//! a bit per block remembers it), so a run of any size opens in time
//! proportional to its table (0.8 % of it) and a damaged block is found when
//! it is first used.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::io::Io;
use crate::mmap::MapArea;

/// Bytes of a run's header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one entry.
pub const ENTRY_LEN: usize = 32;
/// Entries per block.
pub const BLOCK_ENTRIES: usize = 128;
/// Bytes of one block table entry.
pub const TABLE_ENTRY_LEN: usize = 32;

const MAGIC: [u8; 8] = *b"ANNALRUN";
const VERSION: u16 = 1;

/// Which index a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// (stream hash, version) → position.
    Stream = 1,
    /// (event id, position) → version.
    EventId = 2,
    /// (category hash, position) → 0.
    Category = 3,
    /// (event type hash, position) → 0.
    EventType = 4,
}

impl RunKind {
    /// Every kind, in the order of their byte.
    pub const ALL: [RunKind; 4] = [RunKind::Stream, RunKind::EventId, RunKind::Category, RunKind::EventType];

    /// The kind whose byte is `b`.
    pub fn of_byte(b: u8) -> Option<RunKind> {
        RunKind::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// One index entry, ordered by `(key, a)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The stream hash or the event id.
    pub key: u128,
    /// The version (stream index) or the position (event-id index).
    pub a: u64,
    /// The position (stream index) or the version (event-id index).
    pub b: u64,
}

impl Entry {
    fn encode(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.key.to_le_bytes());
        out[16..24].copy_from_slice(&self.a.to_le_bytes());
        out[24..32].copy_from_slice(&self.b.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Entry {
        Entry {
            key: u128::from_le_bytes(b[..16].try_into().expect("16 bytes")),
            a: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            b: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
        }
    }

    fn sort_key(&self) -> (u128, u64) {
        (self.key, self.a)
    }
}

/// What a run's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunHeader {
    /// Which index it belongs to.
    pub kind: RunKind,
    /// How many entries it holds.
    pub entries: u64,
    /// The first global position it covers.
    pub from: u64,
    /// The end (exclusive) of the positions it covers.
    pub to: u64,
    /// CRC-32 of its block table.
    pub table_crc: u32,
}

/// A run's Bloom filter, as its header describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FilterInfo {
    /// 64-byte blocks.
    blocks: u32,
    crc: u32,
    /// Distinct keys of the run.
    keys: u64,
}

/// Bits of Bloom filter per key.
const FILTER_BITS_PER_KEY: u64 = 10;
/// Bytes of one filter block.
const FILTER_BLOCK: usize = 64;
/// Probes per key, each in the key's block.
const FILTER_PROBES: u32 = 7;

/// The filter blocks for about `keys` distinct keys.
fn filter_blocks_for(keys: u64) -> u32 {
    let bits = keys.saturating_mul(FILTER_BITS_PER_KEY);
    u32::try_from(bits.div_ceil(FILTER_BLOCK as u64 * 8).max(1)).unwrap_or(u32::MAX)
}

/// The filter's hash of a key (splitmix64's finalizer over its two halves).
fn filter_hash(key: u128) -> u64 {
    let mut h = (key as u64) ^ ((key >> 64) as u64).rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// The block of a key's hash among `blocks`, and its probes (bit numbers in
/// the block).
fn filter_probes(h: u64, blocks: u32) -> (usize, impl Iterator<Item = usize>) {
    let block = ((u128::from(h) * u128::from(blocks)) >> 64) as usize;
    let g = filter_hash(u128::from(h));
    (block, (0..FILTER_PROBES).map(move |i| ((g >> (i * 9)) & 511) as usize))
}

/// Sets the bits of `key` in `filter`.
fn filter_add(filter: &mut [u8], key: u128) {
    let blocks = (filter.len() / FILTER_BLOCK) as u32;
    let (block, probes) = filter_probes(filter_hash(key), blocks);
    for bit in probes {
        filter[block * FILTER_BLOCK + bit / 8] |= 1 << (bit % 8);
    }
}

/// Whether `filter` may hold `key` (false: it certainly does not).
fn filter_may_contain(filter: &[u8], key: u128) -> bool {
    let blocks = (filter.len() / FILTER_BLOCK) as u32;
    if blocks == 0 {
        return true;
    }
    let (block, mut probes) = filter_probes(filter_hash(key), blocks);
    probes.all(|bit| filter[block * FILTER_BLOCK + bit / 8] & (1 << (bit % 8)) != 0)
}

impl RunHeader {
    fn encode(&self, filter: FilterInfo) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10] = self.kind as u8;
        h[12..16].copy_from_slice(&(BLOCK_ENTRIES as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.entries.to_le_bytes());
        h[24..32].copy_from_slice(&self.from.to_le_bytes());
        h[32..40].copy_from_slice(&self.to.to_le_bytes());
        h[40..44].copy_from_slice(&self.table_crc.to_le_bytes());
        h[44..48].copy_from_slice(&filter.blocks.to_le_bytes());
        h[48..52].copy_from_slice(&filter.crc.to_le_bytes());
        h[52..60].copy_from_slice(&filter.keys.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn decode(h: &[u8]) -> std::result::Result<(RunHeader, FilterInfo), String> {
        if h.len() < HEADER_LEN {
            return Err(format!("a run of {} bytes is shorter than its header", h.len()));
        }
        if h[..8] != MAGIC {
            return Err("not an index run (bad magic)".into());
        }
        let u32_at = |p: usize| u32::from_le_bytes(h[p..p + 4].try_into().expect("4 bytes"));
        let u64_at = |p: usize| u64::from_le_bytes(h[p..p + 8].try_into().expect("8 bytes"));
        if crc32fast::hash(&h[..60]) != u32_at(60) {
            return Err("the header's checksum does not match".into());
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(format!("run version {version} (this build reads {VERSION})"));
        }
        let kind = RunKind::of_byte(h[10]).ok_or_else(|| format!("unknown run kind {}", h[10]))?;
        if h[11] != 0 {
            return Err("reserved header bytes are not zero".into());
        }
        let filter = FilterInfo { blocks: u32_at(44), crc: u32_at(48), keys: u64_at(52) };
        if filter.keys == 0 || filter.keys > u64_at(16) || filter.blocks == 0 {
            return Err(format!("{} keys of {} entries, {} filter blocks", filter.keys, u64_at(16), filter.blocks));
        }
        if u32_at(12) as usize != BLOCK_ENTRIES {
            return Err(format!("{} entries per block (this build uses {BLOCK_ENTRIES})", u32_at(12)));
        }
        let (from, to) = (u64_at(24), u64_at(32));
        if from > to {
            return Err(format!("covers positions {from}..{to}"));
        }
        Ok((RunHeader { kind, entries: u64_at(16), from, to, table_crc: u32_at(40) }, filter))
    }

    fn blocks(&self) -> u64 {
        self.entries.div_ceil(BLOCK_ENTRIES as u64)
    }

    /// The file length a run of this header and filter has, if it fits in memory.
    fn file_len(&self, filter: FilterInfo) -> Option<usize> {
        let entries = usize::try_from(self.entries).ok()?;
        let blocks = usize::try_from(self.blocks()).ok()?;
        let filter = usize::try_from(filter.blocks).ok()?.checked_mul(FILTER_BLOCK)?;
        HEADER_LEN
            .checked_add(entries.checked_mul(ENTRY_LEN)?)?
            .checked_add(blocks.checked_mul(TABLE_ENTRY_LEN)?)?
            .checked_add(filter)
    }
}

/// Writes the sorted `entries` as a run of `kind` covering positions
/// `from..to` at `path`, durably: a temporary file, written, fsynced,
/// renamed into place, and the directory fsynced. Entries must ascend
/// strictly by `(key, a)`; a run with none is refused (there is nothing to
/// index). `keys` is about how many distinct keys they have (the Bloom
/// filter is sized for it; more only raises its false positives). Returns
/// the run's header.
pub fn write(
    io: &dyn Io,
    path: &Path,
    kind: RunKind,
    from: u64,
    to: u64,
    keys: u64,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<RunHeader> {
    let tmp = crate::durable::tmp_path(path);
    let file = io.create(&tmp).ctx("create", &tmp)?;
    let written = write_to(io, &file, &tmp, (kind, from, to, keys), entries.into_iter())
        .and_then(|h| io.sync_all(&file).ctx("fsync", &tmp).map(|()| h))
        .and_then(|h| io.rename(&tmp, path).ctx("rename", path).map(|()| h));
    drop(file);
    match written {
        Ok(h) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            io.sync_dir(dir).ctx("fsync directory", dir)?;
            Ok(h)
        }
        Err(e) => {
            let _ = io.remove_file(&tmp);
            Err(e)
        }
    }
}

/// The bytes of blocks buffered before each write.
const WRITE_BUFFER: usize = 64 * BLOCK_ENTRIES * ENTRY_LEN;

/// A run's kind, covered positions and distinct keys (about).
type RunShape = (RunKind, u64, u64, u64);

fn write_to(
    io: &dyn Io,
    file: &File,
    path: &Path,
    shape: RunShape,
    entries: impl Iterator<Item = Entry>,
) -> Result<RunHeader> {
    build(shape, entries, |pos, bytes| io.write_all_at(file, bytes, pos).ctx("write", path))
}

/// The bytes of the run of `entries` (see [`write`]), in memory: for tests
/// and the fuzz target.
pub fn encode_to_vec(
    kind: RunKind,
    from: u64,
    to: u64,
    keys: u64,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    build((kind, from, to, keys), entries.into_iter(), |pos, bytes| {
        let pos = pos as usize;
        if out.len() < pos + bytes.len() {
            out.resize(pos + bytes.len(), 0);
        }
        out[pos..pos + bytes.len()].copy_from_slice(bytes);
        Ok(())
    })?;
    Ok(out)
}

/// Lays out the run of `entries`, handing each piece to `emit` with its
/// position: the blocks in order (in pieces of [`WRITE_BUFFER`] bytes), the
/// block table, the filter, and the header last.
fn build(
    (kind, from, to, keys_hint): RunShape,
    entries: impl Iterator<Item = Entry>,
    mut emit: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<RunHeader> {
    let mut filter = vec![0u8; filter_blocks_for(keys_hint) as usize * FILTER_BLOCK];
    let mut keys = 0u64;
    if from > to {
        return Err(Error::InvalidConfig(format!("an index run cannot cover positions {from}..{to}")));
    }
    let mut table = Vec::new();
    let mut buf = Vec::with_capacity(WRITE_BUFFER);
    let mut pos = HEADER_LEN as u64;
    let mut count = 0u64;
    let mut last: Option<(u128, u64)> = None;
    let mut block_start = 0;
    let mut slot = [0u8; ENTRY_LEN];
    for e in entries {
        if last.is_some_and(|l| l >= e.sort_key()) {
            return Err(Error::InvalidConfig("index run entries must ascend strictly by (key, a)".into()));
        }
        if last.is_none_or(|(k, _)| k != e.key) {
            keys += 1;
            filter_add(&mut filter, e.key);
        }
        last = Some(e.sort_key());
        if count.is_multiple_of(BLOCK_ENTRIES as u64) {
            block_start = buf.len();
            table.extend_from_slice(&e.key.to_le_bytes());
            table.extend_from_slice(&e.a.to_le_bytes());
            table.extend_from_slice(&[0; 8]);
        }
        e.encode(&mut slot);
        buf.extend_from_slice(&slot);
        count += 1;
        if count.is_multiple_of(BLOCK_ENTRIES as u64) {
            seal_block(&mut table, &buf[block_start..]);
            if buf.len() >= WRITE_BUFFER {
                emit(pos, &buf)?;
                pos += buf.len() as u64;
                buf.clear();
            }
        }
    }
    if count == 0 {
        return Err(Error::InvalidConfig("an index run needs at least one entry".into()));
    }
    if !count.is_multiple_of(BLOCK_ENTRIES as u64) {
        seal_block(&mut table, &buf[block_start..]);
    }
    emit(pos, &buf)?;
    pos += buf.len() as u64;
    emit(pos, &table)?;
    pos += table.len() as u64;
    emit(pos, &filter)?;
    let header = RunHeader { kind, entries: count, from, to, table_crc: crc32fast::hash(&table) };
    let info = FilterInfo { blocks: (filter.len() / FILTER_BLOCK) as u32, crc: crc32fast::hash(&filter), keys };
    emit(0, &header.encode(info))?;
    Ok(header)
}

/// Writes the CRC of the block `block` into the last table entry.
fn seal_block(table: &mut [u8], block: &[u8]) {
    let at = table.len() - 8;
    table[at..at + 4].copy_from_slice(&crc32fast::hash(block).to_le_bytes());
}

/// An open run: its file mapped read-only.
#[derive(Debug)]
pub struct Run {
    path: PathBuf,
    header: RunHeader,
    filter: FilterInfo,
    bytes: RunBytes,
    /// One bit per block: checked already. A run is immutable and mapped
    /// read-only, so a block is checked the first time it is read, not at
    /// every lookup.
    checked: Box<[AtomicU64]>,
}

/// Where a run's bytes are: its file's map, or (for tests and fuzzing) memory.
#[derive(Debug)]
enum RunBytes {
    Map(Arc<MapArea>),
    Memory(Vec<u8>),
}

impl Run {
    /// Opens the run at `path`: maps it and checks its header, length, block
    /// table checksum and table order. Damage is [`Error::Corruption`] naming
    /// the file.
    pub fn open(io: &dyn Io, path: &Path) -> Result<Run> {
        let file = io.open_read(path).ctx("open index run", path)?;
        let len = io.file_len(&file).ctx("stat index run", path)?;
        let damaged = |why: String| corruption(path, 0, why);
        let len = usize::try_from(len).map_err(|_| damaged(format!("a run of {len} bytes")))?;
        if len < HEADER_LEN {
            return Err(damaged(format!("a run of {len} bytes is shorter than its header")));
        }
        let map = MapArea::read_only(&file, len, 0, len).ctx("map index run", path)?;
        Run::from_bytes(path, RunBytes::Map(map))
    }

    /// A run from bytes in memory, checked as [`Run::open`] checks a file;
    /// `path` names it in errors.
    pub fn from_memory(path: &Path, bytes: Vec<u8>) -> Result<Run> {
        Run::from_bytes(path, RunBytes::Memory(bytes))
    }

    fn from_bytes(path: &Path, source: RunBytes) -> Result<Run> {
        let bytes = match &source {
            RunBytes::Map(map) => map.published_data(),
            RunBytes::Memory(v) => v,
        };
        let (header, filter) = RunHeader::decode(bytes).map_err(|why| corruption(path, 0, why))?;
        if header.entries == 0 {
            return Err(corruption(path, 0, "a run without entries".into()));
        }
        let expected = header.file_len(filter);
        if expected != Some(bytes.len()) {
            let why = match expected {
                Some(n) => format!("a run of {} bytes where its header says {n}", bytes.len()),
                None => format!("a header of {} entries", header.entries),
            };
            return Err(corruption(path, 0, why));
        }
        let checked = (0..header.blocks().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let run = Run { path: path.to_owned(), header, filter, bytes: source, checked };
        let table = run.table();
        if crc32fast::hash(table) != header.table_crc {
            return Err(corruption(path, run.table_start() as u64, "the block table's checksum does not match".into()));
        }
        if crc32fast::hash(run.filter_bytes()) != filter.crc {
            return Err(corruption(
                path,
                run.filter_start() as u64,
                "the Bloom filter's checksum does not match".into(),
            ));
        }
        let mut prev = None;
        for i in 0..run.blocks() {
            let first = run.block_first(i);
            if prev.is_some_and(|p| p >= first) {
                return Err(corruption(path, run.table_start() as u64, format!("block {i} does not ascend")));
            }
            prev = Some(first);
        }
        Ok(run)
    }

    /// The run's header.
    pub fn header(&self) -> &RunHeader {
        &self.header
    }

    /// The run's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            RunBytes::Map(map) => map.published_data(),
            RunBytes::Memory(v) => v,
        }
    }

    fn blocks(&self) -> usize {
        // `from_bytes` checked that the file (and so this count) fits in memory.
        self.header.blocks() as usize
    }

    fn table_start(&self) -> usize {
        HEADER_LEN + self.header.entries as usize * ENTRY_LEN
    }

    fn table(&self) -> &[u8] {
        &self.bytes()[self.table_start()..self.filter_start()]
    }

    fn filter_start(&self) -> usize {
        self.table_start() + self.blocks() * TABLE_ENTRY_LEN
    }

    fn filter_bytes(&self) -> &[u8] {
        &self.bytes()[self.filter_start()..]
    }

    /// Whether the run may hold entries of `key`: false means it certainly
    /// does not (its Bloom filter says so), and a lookup can skip it.
    pub fn may_contain(&self, key: u128) -> bool {
        filter_may_contain(self.filter_bytes(), key)
    }

    /// Distinct keys in the run.
    pub fn keys(&self) -> u64 {
        self.filter.keys
    }

    fn table_entry(&self, i: usize) -> &[u8] {
        &self.table()[i * TABLE_ENTRY_LEN..(i + 1) * TABLE_ENTRY_LEN]
    }

    /// The `(key, a)` of block `i`'s first entry, as the table says.
    fn block_first(&self, i: usize) -> (u128, u64) {
        let t = self.table_entry(i);
        (
            u128::from_le_bytes(t[..16].try_into().expect("16 bytes")),
            u64::from_le_bytes(t[16..24].try_into().expect("8 bytes")),
        )
    }

    /// How many blocks begin at or before `target` (a binary search of the table).
    fn blocks_at_or_before(&self, target: (u128, u64)) -> usize {
        let (mut lo, mut hi) = (0, self.blocks());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.block_first(mid) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Block `i`'s entries, checked: its CRC, its first entry against the
    /// table, and its order.
    fn block(&self, i: usize) -> Result<&[u8]> {
        let start = HEADER_LEN + i * BLOCK_ENTRIES * ENTRY_LEN;
        let end = (start + BLOCK_ENTRIES * ENTRY_LEN).min(self.table_start());
        let block = &self.bytes()[start..end];
        let (word, bit) = (&self.checked[i / 64], 1u64 << (i % 64));
        if word.load(Ordering::Relaxed) & bit != 0 {
            return Ok(block);
        }
        self.check_block(i, start, block)?;
        word.fetch_or(bit, Ordering::Relaxed);
        Ok(block)
    }

    /// Checks block `i` (at `start`): its CRC, its first entry against the
    /// table, its order, and that it ends below the next block.
    fn check_block(&self, i: usize, start: usize, block: &[u8]) -> Result<()> {
        let t = self.table_entry(i);
        let crc = u32::from_le_bytes(t[24..28].try_into().expect("4 bytes"));
        if crc32fast::hash(block) != crc || t[28..32] != [0; 4] {
            return Err(corruption(&self.path, start as u64, format!("block {i}'s checksum does not match")));
        }
        let mut prev: Option<(u128, u64)> = None;
        for (j, chunk) in block.chunks_exact(ENTRY_LEN).enumerate() {
            let k = Entry::decode(chunk).sort_key();
            let ordered = match prev {
                None => k == self.block_first(i),
                Some(p) => p < k,
            };
            if !ordered {
                let at = (start + j * ENTRY_LEN) as u64;
                return Err(corruption(&self.path, at, format!("entry {j} of block {i} is out of order")));
            }
            prev = Some(k);
        }
        if i + 1 < self.blocks() && prev.is_some_and(|p| p >= self.block_first(i + 1)) {
            return Err(corruption(&self.path, start as u64, format!("block {i} overlaps block {}", i + 1)));
        }
        Ok(())
    }

    /// The entries from the first at or after `(key, a)`, in order.
    pub fn entries_from(&self, key: u128, a: u64) -> Result<RunIter<'_>> {
        let target = (key, a);
        // The last block whose first entry is at or before the target.
        let block = self.blocks_at_or_before(target).saturating_sub(1);
        let mut it = RunIter { run: self, block, entries: &[], next: 0 };
        it.load()?;
        let skip = it.entries.chunks_exact(ENTRY_LEN).take_while(|c| Entry::decode(c).sort_key() < target).count();
        it.next = skip;
        Ok(it)
    }

    /// The entries at or before `(key, a)`, last first.
    pub fn entries_back_from(&self, key: u128, a: u64) -> Result<RunRevIter<'_>> {
        let target = (key, a);
        let blocks = self.blocks_at_or_before(target);
        let mut it = RunRevIter { run: self, block: blocks, entries: &[], left: 0 };
        if blocks > 0 {
            it.block -= 1;
            it.entries = self.block(it.block)?;
            it.left = it.entries.chunks_exact(ENTRY_LEN).take_while(|c| Entry::decode(c).sort_key() <= target).count();
        }
        Ok(it)
    }

    /// Every entry, in order.
    pub fn iter(&self) -> Result<RunIter<'_>> {
        self.entries_from(0, 0)
    }

    /// The last entry with key `key` and `a` at most `a_max`, if any.
    pub fn last_at_or_below(&self, key: u128, a_max: u64) -> Result<Option<Entry>> {
        let target = (key, a_max);
        let i = self.blocks_at_or_before(target);
        if i == 0 {
            return Ok(None);
        }
        let block = self.block(i - 1)?;
        let found = block
            .chunks_exact(ENTRY_LEN)
            .map(Entry::decode)
            .take_while(|e| e.sort_key() <= target)
            .last()
            .filter(|e| e.key == key);
        Ok(found)
    }
}

/// The entries of a run from some point on.
#[derive(Debug)]
pub struct RunIter<'a> {
    run: &'a Run,
    block: usize,
    entries: &'a [u8],
    next: usize,
}

impl RunIter<'_> {
    /// Loads block `self.block` (none past the last).
    fn load(&mut self) -> Result<()> {
        self.entries = if self.block < self.run.blocks() { self.run.block(self.block)? } else { &[] };
        self.next = 0;
        Ok(())
    }
}

impl Iterator for RunIter<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(chunk) = self.entries.chunks_exact(ENTRY_LEN).nth(self.next) {
                self.next += 1;
                return Some(Ok(Entry::decode(chunk)));
            }
            if self.block >= self.run.blocks() {
                return None;
            }
            self.block += 1;
            if let Err(e) = self.load() {
                self.block = self.run.blocks();
                return Some(Err(e));
            }
        }
    }
}

/// The entries of a run up to some point, last first.
#[derive(Debug)]
pub struct RunRevIter<'a> {
    run: &'a Run,
    /// The block `entries` is (`left == 0` and `block == 0`: done).
    block: usize,
    entries: &'a [u8],
    /// Entries of `entries` not yielded yet (its first `left`).
    left: usize,
}

impl Iterator for RunRevIter<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        while self.left == 0 {
            if self.block == 0 {
                return None;
            }
            self.block -= 1;
            match self.run.block(self.block) {
                Ok(b) => {
                    self.entries = b;
                    self.left = b.len() / ENTRY_LEN;
                }
                Err(e) => {
                    self.block = 0;
                    return Some(Err(e));
                }
            }
        }
        self.left -= 1;
        let at = self.left * ENTRY_LEN;
        Some(Ok(Entry::decode(&self.entries[at..at + ENTRY_LEN])))
    }
}

fn corruption(path: &Path, position: u64, why: String) -> Error {
    Error::Corruption { path: path.to_owned(), offset: 0, position, kind: CorruptionKind::BadIndexRun(why) }
}

/// Makes the checksums of the run in `bytes` right (each block's in the
/// table, the table's and the header's), as far as its header's entry count
/// fits the length; for the fuzz target, so that mutations reach the checks
/// behind the checksums.
pub(crate) fn fix_checksums(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let entries = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let filter_blocks = u32::from_le_bytes(bytes[44..48].try_into().expect("4 bytes")) as usize;
    let Ok(entries) = usize::try_from(entries) else { return };
    let Some(table_start) = entries.checked_mul(ENTRY_LEN).and_then(|n| n.checked_add(HEADER_LEN)) else { return };
    let blocks = entries.div_ceil(BLOCK_ENTRIES);
    let Some(filter_start) = blocks.checked_mul(TABLE_ENTRY_LEN).and_then(|n| n.checked_add(table_start)) else {
        return;
    };
    if filter_blocks.checked_mul(FILTER_BLOCK).and_then(|n| n.checked_add(filter_start)) != Some(bytes.len()) {
        return;
    }
    for i in 0..blocks {
        let start = HEADER_LEN + i * BLOCK_ENTRIES * ENTRY_LEN;
        let end = (start + BLOCK_ENTRIES * ENTRY_LEN).min(table_start);
        let crc = crc32fast::hash(&bytes[start..end]);
        let at = table_start + i * TABLE_ENTRY_LEN + 24;
        bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let table_crc = crc32fast::hash(&bytes[table_start..filter_start]);
    bytes[40..44].copy_from_slice(&table_crc.to_le_bytes());
    let filter_crc = crc32fast::hash(&bytes[filter_start..]);
    bytes[48..52].copy_from_slice(&filter_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&header_crc.to_le_bytes());
}

/// Opens `bytes` as a run (for the fuzz target), reads every entry and looks
/// each one up; if the run is accepted, encodes its entries again, which
/// must give the same bytes (a run has one encoding). Returns whether it was
/// accepted. Panics if a check fails; never on bad input.
pub(crate) fn roundtrip_for_fuzzing(bytes: &[u8]) -> bool {
    let Ok(run) = Run::from_memory(Path::new("fuzz.run"), bytes.to_vec()) else { return false };
    let Ok(Ok(entries)) = run.iter().map(Iterator::collect::<Result<Vec<_>>>) else { return false };
    for e in &entries {
        assert_eq!(run.last_at_or_below(e.key, e.a).ok(), Some(Some(*e)), "a lookup finds every entry");
        let found = run.entries_from(e.key, e.a).ok().and_then(|mut it| it.next()).and_then(Result::ok);
        assert_eq!(found, Some(*e), "a seek lands on every entry");
        let back = run.entries_back_from(e.key, e.a).ok().and_then(|mut it| it.next()).and_then(Result::ok);
        assert_eq!(back, Some(*e), "a backward seek lands on every entry");
    }
    // A run whose filter or key count does not match its keys (with
    // checksums made right over them) is not one annal writes.
    if entries.iter().any(|e| !run.may_contain(e.key)) {
        return false;
    }
    let h = run.header();
    let Ok(again) = encode_to_vec(h.kind, h.from, h.to, run.keys(), entries) else { return false };
    again == bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u128, a: u64) -> Entry {
        Entry { key, a, b: a * 10 + 1 }
    }

    fn sample(n: u64) -> Vec<Entry> {
        // Keys 0, 0, 3, 3, 6, 6, ...: two entries per key, versions 0 and 1.
        (0..n).map(|i| entry(u128::from(i / 2) * 3, i % 2)).collect()
    }

    /// The bytes of a run, pinned (docs/FORMAT.md, "Index run").
    #[test]
    fn golden_run() {
        let entries = [Entry { key: 0x0102, a: 3, b: 40 }, Entry { key: 0x0102, a: 4, b: 41 }];
        let bytes = encode_to_vec(RunKind::Stream, 40, 42, 1, entries).unwrap();
        let mut block = Vec::new();
        for e in entries {
            block.extend_from_slice(&e.key.to_le_bytes());
            block.extend_from_slice(&e.a.to_le_bytes());
            block.extend_from_slice(&e.b.to_le_bytes());
        }
        let mut table = 0x0102u128.to_le_bytes().to_vec();
        table.extend_from_slice(&3u64.to_le_bytes());
        table.extend_from_slice(&crc32fast::hash(&block).to_le_bytes());
        table.extend_from_slice(&[0; 4]);
        // One filter block (10 bits for 1 key round up to 512); key 0x0102
        // hashes to 0x1e09f8a031519da4 (block 0 of 1), whose own hash gives
        // the probes 298, 153, 350, 90, 230, 269 and 377 (FORMAT.md).
        assert_eq!(filter_hash(0x0102), 0x1e09_f8a0_3151_9da4);
        let mut filter = vec![0u8; 64];
        for bit in [298usize, 153, 350, 90, 230, 269, 377] {
            filter[bit / 8] |= 1 << (bit % 8);
        }
        let mut header = b"ANNALRUN".to_vec();
        header.extend_from_slice(&1u16.to_le_bytes()); // version
        header.extend_from_slice(&[1, 0]); // kind: stream index, reserved
        header.extend_from_slice(&128u32.to_le_bytes()); // entries per block
        header.extend_from_slice(&2u64.to_le_bytes()); // entries
        header.extend_from_slice(&40u64.to_le_bytes()); // from
        header.extend_from_slice(&42u64.to_le_bytes()); // to
        header.extend_from_slice(&crc32fast::hash(&table).to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes()); // filter blocks
        header.extend_from_slice(&crc32fast::hash(&filter).to_le_bytes());
        header.extend_from_slice(&1u64.to_le_bytes()); // distinct keys
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, [header, block, table, filter].concat());
        assert!(roundtrip_for_fuzzing(&bytes));
    }

    #[test]
    fn a_written_run_reads_back_and_finds_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        for n in [1u64, 127, 128, 129, 1000] {
            let path = dir.path().join(format!("{n}.run"));
            let entries = sample(n);
            let keys = n.div_ceil(2);
            let header = write(&crate::io::OsIo, &path, RunKind::EventId, 5, 5 + n, keys, entries.clone()).unwrap();
            assert_eq!((header.entries, header.from, header.to, header.kind), (n, 5, 5 + n, RunKind::EventId));
            assert!(!crate::durable::tmp_path(&path).exists());
            let run = Run::open(&crate::io::OsIo, &path).unwrap();
            assert_eq!(run.header(), &header);
            assert_eq!(run.iter().unwrap().collect::<Result<Vec<_>>>().unwrap(), entries);
            let bytes = std::fs::read(&path).unwrap();
            assert!(roundtrip_for_fuzzing(&bytes), "{n} entries");
            for (i, e) in entries.iter().enumerate() {
                let from: Vec<Entry> = run.entries_from(e.key, e.a).unwrap().map(Result::unwrap).collect();
                assert_eq!(from, entries[i..], "from entry {i} of {n}");
                let last_of_key = entries.iter().rfind(|x| x.key == e.key).copied();
                assert_eq!(run.last_at_or_below(e.key, u64::MAX).unwrap(), last_of_key);
                assert_eq!(run.last_at_or_below(e.key, e.a).unwrap(), Some(*e));
                // Between keys: the next key's entries; no entry below a missing key.
                let next: Vec<Entry> = run.entries_from(e.key + 1, 0).unwrap().map(Result::unwrap).collect();
                assert_eq!(next, entries[entries.partition_point(|x| x.key <= e.key)..]);
                assert_eq!(run.last_at_or_below(e.key + 1, u64::MAX).unwrap(), None);
            }
            assert!(run.entries_from(u128::MAX, u64::MAX).unwrap().next().is_none());
            for (i, e) in entries.iter().enumerate() {
                let back: Vec<Entry> = run.entries_back_from(e.key, e.a).unwrap().map(Result::unwrap).collect();
                assert_eq!(back, entries[..=i].iter().rev().copied().collect::<Vec<_>>(), "back from entry {i} of {n}");
            }
            assert!(run.entries_back_from(0, 0).unwrap().nth(1).is_none());
            assert_eq!(run.entries_back_from(u128::MAX, u64::MAX).unwrap().count(), n as usize);
        }
    }

    #[test]
    fn entries_out_of_order_and_empty_runs_are_refused() {
        assert!(matches!(encode_to_vec(RunKind::Stream, 0, 1, 1, []), Err(Error::InvalidConfig(_))));
        assert!(matches!(
            encode_to_vec(RunKind::Stream, 0, 1, 1, [entry(1, 0), entry(1, 0)]),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            encode_to_vec(RunKind::Stream, 0, 1, 2, [entry(2, 0), entry(1, 5)]),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(encode_to_vec(RunKind::Stream, 2, 1, 1, [entry(1, 0)]), Err(Error::InvalidConfig(_))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.run");
        assert!(write(&crate::io::OsIo, &path, RunKind::Stream, 0, 1, 2, [entry(2, 0), entry(1, 0)]).is_err());
        assert!(!path.exists() && !crate::durable::tmp_path(&path).exists(), "nothing is left of a refused run");
    }

    /// Damage anywhere is found: in the header or the table when the run is
    /// opened, in a block when the block is read, with the position named.
    #[test]
    fn every_damaged_byte_of_a_run_is_found() {
        let bytes = encode_to_vec(RunKind::Stream, 0, 300, 150, sample(300)).unwrap();
        let table_start = HEADER_LEN + 300 * ENTRY_LEN;
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            let opened = Run::from_memory(Path::new("x.run"), damaged);
            if at < HEADER_LEN || at >= table_start {
                assert!(matches!(opened, Err(Error::Corruption { .. })), "byte {at}: the open fails");
                continue;
            }
            let run = opened.unwrap();
            let read: Result<Vec<Entry>> = run.iter().and_then(Iterator::collect);
            let block_start = HEADER_LEN + (at - HEADER_LEN) / (BLOCK_ENTRIES * ENTRY_LEN) * BLOCK_ENTRIES * ENTRY_LEN;
            match read {
                Err(Error::Corruption { position, .. }) => assert_eq!(position, block_start as u64, "byte {at}"),
                other => panic!("byte {at}: expected corruption, got {other:?}"),
            }
        }
        for len in [0, 10, HEADER_LEN, bytes.len() - 1] {
            assert!(Run::from_memory(Path::new("x.run"), bytes[..len].to_vec()).is_err(), "cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Run::from_memory(Path::new("x.run"), longer).is_err());
    }

    /// The Bloom filter holds every key, and answers no for most others
    /// (about 1 % false positives at 10 bits per key).
    #[test]
    fn the_filter_has_every_key_and_few_others() {
        let keys = 10_000u64;
        let entries: Vec<Entry> = (0..keys).map(|k| entry(u128::from(k) * 0x1_0000_0001, 0)).collect();
        let run =
            Run::from_memory(Path::new("x.run"), encode_to_vec(RunKind::EventId, 0, 1, keys, entries.clone()).unwrap())
                .unwrap();
        assert!(entries.iter().all(|e| run.may_contain(e.key)));
        let others = (keys..keys * 11).filter(|&k| run.may_contain(u128::from(k) * 0x1_0000_0001)).count();
        assert!(others < 3 * keys as usize / 10, "{others} false positives in {}", keys * 10);
        assert_eq!(run.keys(), keys);
    }

    /// Blocks that are each intact but overlap (possible only if checksums
    /// were made right over misordered entries) are refused when read.
    #[test]
    fn overlapping_blocks_are_refused() {
        let mut entries = sample(256);
        // Move block 0's last entry past block 1's first, fixing checksums after.
        entries[127] = entry(entries[128].key, entries[128].a + 5);
        let mut bytes = encode_to_vec(RunKind::Stream, 0, 1, 128, sample(256)).unwrap();
        let at = HEADER_LEN + 127 * ENTRY_LEN;
        entries[127].encode(&mut bytes[at..at + ENTRY_LEN]);
        fix_checksums(&mut bytes);
        let run = Run::from_memory(Path::new("x.run"), bytes.clone()).unwrap();
        let err = run.iter().and_then(Iterator::collect::<Result<Vec<_>>>).expect_err("the overlap is found");
        assert!(err.to_string().contains("overlaps"), "{err}");
        assert!(!roundtrip_for_fuzzing(&bytes));
    }
}
