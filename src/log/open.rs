//! Opening a log: find segments, check their headers and footers, recover the
//! last segment after a crash, and prepare the active segment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::writer::WriterState;
use super::{LOCK_FILE_NAME, RecoveryReport, SegmentSet, Shared, now_ms};
use crate::config::LogConfig;
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::segment::{
    self, ActiveSegment, OnDisk, RECORD_ROOM, SealedMeta, inspect_file, log_path, open_unsealed_read_only,
    parse_log_file_name,
};

pub(crate) fn open(dir: &Path, config: LogConfig, read_only: bool) -> Result<Shared> {
    config.validate()?;
    let lock = if read_only {
        if let Some(reason) = crate::log::not_a_directory(dir) {
            return Err(Error::NotALog { path: dir.to_owned(), reason });
        }
        None
    } else {
        if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::NotALog { path: dir.to_owned(), reason: "it is a file, not a directory".into() });
        }
        let created = !dir.exists();
        config.io.create_dir_all(dir).ctx("create log directory", dir)?;
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = crate::io::open_rw(&lock_path, true).ctx("open lock file", &lock_path)?;
        if config.own_lock
            && let Err(pid) = crate::io::lock_exclusive(&lock).ctx("lock", &lock_path)?
        {
            return Err(Error::Locked { path: dir.to_owned(), pid });
        }
        if created && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            config.io.sync_dir(parent).ctx("fsync directory", parent)?;
        }
        // A partition of a store keeps no descriptor: the store's lock covers it.
        config.own_lock.then_some(lock)
    };

    let mut report = RecoveryReport::default();
    let mut bases = Vec::new();
    for entry in config.io.read_dir(dir).ctx("list log directory", dir)? {
        let Some(name) = entry.name.to_str() else { continue };
        if let Some(base) = parse_log_file_name(name) {
            bases.push(base);
        } else if !read_only && name.ends_with(".tmp") && is_our_temp(name) {
            let path = dir.join(name);
            config.io.remove_file(&path).ctx("remove temporary file", &path)?;
            report.removed_temp_files.push(path);
        }
    }
    bases.sort_unstable();
    // Segments wholly below the recorded start offset were deleted by
    // retention, or were about to be when a crash came: delete them now (a
    // read-only open just skips them). A segment is wholly below the start if
    // the next one begins at or before it.
    let recorded_start = super::start::read(config.io.as_ref(), dir)?;
    if let Some(start) = recorded_start {
        let below = bases.windows(2).take_while(|w| w[1] <= start).count();
        if !read_only {
            let why = "delete segment below the start offset";
            remove_segments(dir, &config, &bases[..below], why, &mut report.removed_below_start)?;
        }
        bases.drain(..below);
    }
    // Archived segments: those wholly below the start were dropped by
    // retention (a crash came before the manifest was rewritten); a local copy
    // of an archived one was left by a crash before its deletion.
    let mut archived = super::manifest::read(config.io.as_ref(), dir)?;
    let listed = archived.len();
    if let Some(start) = recorded_start {
        archived.retain(|e| e.meta.footer.next_offset > start);
    }
    if !read_only && archived.len() != listed {
        super::manifest::write(config.io.as_ref(), dir, &archived)?;
    }
    if let Some(last) = archived.last().map(|e| e.meta.footer.next_offset) {
        let local_copies = bases.partition_point(|&b| b < last);
        if !read_only {
            let why = "delete the local copy of an archived segment";
            remove_segments(dir, &config, &bases[..local_copies], why, &mut report.removed_archived_copies)?;
        }
        bases.drain(..local_copies);
    }
    report.segments = bases.len();
    if read_only && bases.is_empty() && !dir.join(LOCK_FILE_NAME).exists() {
        return Err(Error::NotALog { path: dir.to_owned(), reason: crate::log::no_log_files(dir) });
    }
    if !report.removed_temp_files.is_empty() {
        config.io.sync_dir(dir).ctx("fsync directory", dir)?;
    }

    let mut sealed: Vec<SealedMeta> = Vec::with_capacity(archived.len() + bases.len());
    sealed.extend(archived.iter().map(|e| e.meta));
    let mut unsealed_last = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = log_path(dir, base);
        if let Some(prev) = sealed.last()
            && prev.footer.next_offset != base
        {
            let kind = CorruptionKind::Gap { expected: prev.footer.next_offset, found: base };
            return Err(Error::Corruption { path, offset: prev.footer.next_offset, position: 0, kind });
        }
        match inspect_file(config.io.as_ref(), &path, base)? {
            OnDisk::Sealed(meta, _) => sealed.push(meta),
            OnDisk::Unsealed { len, .. } if i + 1 == bases.len() => unsealed_last = Some((base, len)),
            OnDisk::Unsealed { len, .. } => {
                let kind = CorruptionKind::BadFooter("a segment before the last one is not sealed".into());
                return Err(Error::Corruption { path, offset: base, position: len.saturating_sub(64), kind });
            }
        }
    }

    let mut writer = WriterState::default();
    let indexes_rebuilt = 0;
    let mut active_seg = None;
    let mut read_only_next = None;
    let mut read_only_durable = None;
    let now = now_ms();
    if read_only {
        if let Some((base, len)) = unsealed_last {
            let (seg, found) = open_unsealed_read_only(dir, base, len, &config)?;
            report.scanned_segment = Some(base);
            report.truncated_bytes = found.would_cut;
            report.records_scanned = found.records;
            read_only_next = Some(found.next_offset);
            read_only_durable = Some(found.durable_next);
            active_seg = Some(seg);
        }
    } else {
        // Only a segment left unsealed by a crash is taken up now (recovery
        // must cut what it has to before anything else); otherwise the first
        // append reopens the last segment or starts one (see
        // `WriterState::activate`), so that an idle log holds no file open.
        if let Some((base, _)) = unsealed_last {
            let (active, recovered) = ActiveSegment::recover(dir, base, &config, None)?;
            report.scanned_segment = Some(base);
            report.truncated_bytes = recovered.truncated_bytes;
            report.records_scanned = recovered.records;
            active_seg = Some(Arc::clone(&active.seg));
            writer.active = Some(active);
        }
    }

    let next_offset = match (&writer.active, read_only_next) {
        (Some(a), _) => a.next_offset(),
        (None, Some(next)) => next,
        (None, None) => sealed.last().map_or(recorded_start.unwrap_or(0), |m| m.footer.next_offset),
    };
    let first_base = sealed.first().map(|m| m.footer.base_offset).or(active_seg.as_ref().map(|s| s.base_offset));
    let start_offset = first_base.unwrap_or(next_offset).max(recorded_start.unwrap_or(0));
    if start_offset > next_offset {
        // Retention syncs the records below a new start before recording it,
        // so a start past the end means records that were durable are gone.
        let path = super::start::path(dir);
        let kind = CorruptionKind::BadHeader(format!(
            "the recorded start offset {start_offset} is past the end of the log ({next_offset})"
        ));
        return Err(Error::Corruption { path, offset: start_offset, position: 0, kind });
    }
    // What a writer finds at open is made durable before the log is used
    // (`Log::open` syncs a recovered segment); a read-only log's last segment
    // is durable up to its checkpoint.
    let durable = match (&writer.active, report.scanned_segment) {
        (Some(a), Some(_)) => a.base_offset(),
        _ => read_only_durable.unwrap_or(next_offset),
    };
    let capacity = config.max_open_segments;
    let limits = config.shared_limits.clone();
    let (cache_dir, cache_tmp) = if read_only {
        if archived.is_empty() {
            (dir.join(super::ARCHIVE_CACHE_DIR_NAME), None)
        } else {
            // Nothing in a read-only log's directory changes: fetch elsewhere.
            let tmp = tempfile::Builder::new()
                .prefix("annal-archive-cache")
                .tempdir()
                .map_err(|e| Error::io("create a temporary archive cache", std::env::temp_dir(), e))?;
            (tmp.path().to_owned(), Some(tmp))
        }
    } else {
        let cache_dir = dir.join(super::ARCHIVE_CACHE_DIR_NAME);
        super::archived::clear_cache_dir(config.io.as_ref(), &cache_dir)?;
        (cache_dir, None)
    };
    let archived = archived.into_iter().map(|e| (e.meta.footer.base_offset, e)).collect();
    Ok(Shared {
        dir: dir.to_owned(),
        config,
        read_only,
        writer: Mutex::new(writer),
        segments: RwLock::new(SegmentSet { sealed, active: active_seg, archived, parked: None }),
        cache: Mutex::new(super::cache::SegmentCache::new(capacity, limits.clone())),
        next_offset: AtomicU64::new(next_offset),
        start_offset: AtomicU64::new(start_offset),
        commit: super::commit::GroupCommit::new(durable),
        limits,
        active_open: AtomicBool::new(false),
        last_use: AtomicU64::new(now.max(0) as u64),
        compaction: Mutex::default(),
        failed: AtomicBool::new(false),
        failure: Mutex::new(None),
        closed: AtomicBool::new(false),
        tail: super::tailing::Tailing::default(),
        indexes_rebuilt: AtomicU64::new(indexes_rebuilt),
        report,
        archive: super::archived::ArchiveTier::new(cache_dir, cache_tmp),
        _lock: lock,
    })
}

/// Deletes the files of the segments at `bases`, which a crash left behind,
/// recording each in `removed`, then fsyncs the directory (if there were any).
fn remove_segments(
    dir: &Path,
    config: &LogConfig,
    bases: &[u64],
    why: &'static str,
    removed: &mut Vec<PathBuf>,
) -> Result<()> {
    if bases.is_empty() {
        return Ok(());
    }
    for &base in bases {
        let path = segment::log_path(dir, base);
        segment::remove_segment_files(config.io.as_ref(), dir, base).map_err(|e| Error::io(why, path.clone(), e))?;
        removed.push(path);
    }
    config.io.sync_dir(dir).ctx("fsync directory", dir)
}

/// Temporary files annal itself writes: `<segment or index file name>.tmp`.
fn is_our_temp(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tmp") else { return false };
    if stem == super::start::START_OFFSET_FILE_NAME || stem == super::manifest::ARCHIVE_MANIFEST_FILE_NAME {
        return true;
    }
    let digits = stem.split('.').next().unwrap_or("");
    digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a cleanly sealed last segment of format `version` can take more
/// records. A compacted one never does: appends always go to a dense segment;
/// nor does one of an older format (batches go to a segment of this format).
pub(crate) fn reusable(meta: &SealedMeta, version: u16, config: &LogConfig, now: i64) -> bool {
    if meta.sparse || version != segment::header::FORMAT_VERSION {
        return false;
    }
    let young =
        config.segment_max_age.is_none_or(|age: Duration| now.saturating_sub(meta.created_ms) < age.as_millis() as i64);
    young && meta.footer.data_end + RECORD_ROOM < config.segment_bytes
}
