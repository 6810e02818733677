//! Checking an event store's files without opening it for writing (`annal
//! verify` and `annal stats` of an event store directory): `events.meta`, the
//! index manifest and every block of every index run, and that every record
//! of the global log is an event. The global log's own files are checked by
//! the log's verification (`annal verify DIR/log`).

use std::path::{Path, PathBuf};

use super::meta::{EVENTS_META_FILE_NAME, EventsMeta, INDEX_MANIFEST_FILE_NAME, IndexManifest, RunRecord};
use super::run::{Run, RunKind};
use super::store::{INDEX_DIR_NAME, LOG_DIR_NAME};
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::io::OsIo;
use crate::log::Log;

/// What [`check_store`] found.
#[derive(Debug, Default)]
pub struct StoreCheck {
    /// Events in the global log (records read and decoded).
    pub events: u64,
    /// The position after the last event.
    pub head: u64,
    /// The index manifest's runs, and the position up to which they cover
    /// the log (none: no manifest yet).
    pub indexed_to: Option<u64>,
    /// Index runs checked, per kind: the stream, event-id, category and
    /// event-type indexes, in that order.
    pub runs: [usize; 4],
    /// Index entries read from them (every block checked).
    pub index_entries: u64,
    /// Bytes of the index runs.
    pub index_bytes: u64,
    /// What is wrong: each a file (or the log) and why. Damage to the index
    /// is repaired by the next open (it rebuilds the index from the log);
    /// damage to `events.meta` too (a new key, the index rebuilt); a record
    /// of the global log that is not an event is not.
    pub problems: Vec<(PathBuf, String, Repair)>,
}

/// Whether opening the store repairs a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The next open rebuilds what is damaged from the global log.
    ByOpening,
    /// Damage to the events themselves.
    No,
}

/// Whether `dir` holds an event store (its `events.meta`).
pub fn is_event_store(dir: &Path) -> bool {
    dir.join(EVENTS_META_FILE_NAME).is_file()
}

/// Checks the event store in `dir` read-only (a writer may be running): see
/// the module documentation. Fails only if the store cannot be read at all.
pub fn check_store(dir: &Path) -> Result<StoreCheck> {
    let mut check = StoreCheck::default();
    let meta_path = dir.join(EVENTS_META_FILE_NAME);
    match crate::durable::read_decoded::<EventsMeta>(&OsIo, &meta_path) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(Error::NotALog { path: dir.to_owned(), reason: format!("no {EVENTS_META_FILE_NAME}") }),
        Err(e) => check.problems.push((meta_path, e.to_string(), Repair::ByOpening)),
    }
    let log = Log::open_read_only(dir.join(LOG_DIR_NAME), LogConfig::default())?;
    check.head = log.next_offset();
    let mut reader = log.read_from(log.start_offset())?;
    while let Some(record) = reader.next_record()? {
        check.events += 1;
        if let Err(why) = super::event::decode(record.key(), record.value()) {
            let path = dir.join(LOG_DIR_NAME);
            check.problems.push((
                path,
                format!("position {}: not an event record: {why}", record.offset()),
                Repair::No,
            ));
        }
    }
    let index_dir = dir.join(INDEX_DIR_NAME);
    let manifest_path = index_dir.join(INDEX_MANIFEST_FILE_NAME);
    let manifest = match crate::durable::read_decoded::<IndexManifest>(&OsIo, &manifest_path) {
        Ok(m) => m,
        Err(e) => {
            check.problems.push((manifest_path.clone(), e.to_string(), Repair::ByOpening));
            None
        }
    };
    let Some(manifest) = manifest else { return Ok(check) };
    check.indexed_to = Some(manifest.indexed_to);
    if manifest.indexed_to > check.head {
        let why = format!("covers positions up to {}, but the global log ends at {}", manifest.indexed_to, check.head);
        check.problems.push((manifest_path, why, Repair::ByOpening));
    }
    for record in &manifest.runs {
        let path = index_dir.join(RunRecord::file_name(record.seq));
        match check_run(&path, record) {
            Ok((entries, bytes)) => {
                check.runs[record.header.kind as usize - 1] += 1;
                check.index_entries += entries;
                check.index_bytes += bytes;
            }
            Err(why) => check.problems.push((path, why, Repair::ByOpening)),
        }
    }
    Ok(check)
}

/// Reads every entry of the run at `path` (checking every block) and checks
/// it against the manifest's `record`: its header, and positions within the
/// range it covers. Returns its entries and bytes.
fn check_run(path: &Path, record: &RunRecord) -> std::result::Result<(u64, u64), String> {
    let run = Run::open(&OsIo, path).map_err(|e| e.to_string())?;
    let h = run.header();
    if *h != record.header {
        return Err("its header does not match its record in the index manifest".into());
    }
    let mut entries = 0;
    for e in run.iter().map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let position = match h.kind {
            RunKind::Stream => e.b,
            _ => e.a,
        };
        if position < h.from || position >= h.to {
            return Err(format!("an entry at position {position}, outside the run's {}..{}", h.from, h.to));
        }
        entries += 1;
    }
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok((entries, bytes))
}
