//! A record of each file's last complete write, so that a start can tell a whole config from
//! one cut short by a power loss.
//!
//! [`super::replace`] writes a new config over the spare file in place and flushes it right
//! after the swap: a power loss in those milliseconds can leave `haproxy.cfg` with some pages
//! of the new content and some of an older one. So in live mode, once the content is flushed,
//! its CRC-32 and length go into `.<name>.sum` beside it (itself replaced by rename, and
//! flushed). A managed start serves the file on disk only when it matches its record.
//!
//! A record only ever holds the sum of a complete content that reached the disk, so a match
//! means the file is such a content. Every race (a record not yet written, a newer write not
//! yet recorded, records of two writes finishing out of order) gives a mismatch, which only
//! costs the start its head start: it waits for the first pass, as without a config on disk.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The sum of one content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    /// CRC-32 (IEEE) of the bytes.
    pub crc32: u32,
    /// Number of bytes.
    pub len: u64,
}

impl Sum {
    /// The sum of `content`.
    pub fn of(content: &[u8]) -> Self {
        Self {
            crc32: crc32fast::hash(content),
            len: content.len() as u64,
        }
    }

    fn line(self) -> String {
        format!("crc32 {:08x} {}\n", self.crc32, self.len)
    }

    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        (words.next()? == "crc32").then_some(())?;
        let crc32 = u32::from_str_radix(words.next()?, 16).ok()?;
        let len = words.next()?.parse().ok()?;
        Some(Self { crc32, len })
    }
}

/// What the record says of a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The content is the last one recorded as complete on disk.
    Whole,
    /// The content is not what was last recorded (a write cut short, or not yet recorded).
    Differs {
        /// The recorded sum.
        recorded: Sum,
        /// The content's sum.
        found: Sum,
    },
    /// No readable record: the file was not written by this version of marathon-lb, or its
    /// record was removed.
    NoRecord,
}

/// The record kept beside `path`.
pub fn record_path(path: &Path) -> PathBuf {
    super::replace::hidden_beside(path, "sum")
}

/// Checks `content`, read from `path`, against the record of `path`.
pub fn check(path: &Path, content: &[u8]) -> Check {
    let recorded = std::fs::read_to_string(record_path(path))
        .ok()
        .and_then(|text| Sum::parse(&text));
    let Some(recorded) = recorded else {
        return Check::NoRecord;
    };
    let found = Sum::of(content);
    match found == recorded {
        true => Check::Whole,
        false => Check::Differs { recorded, found },
    }
}

/// Whether writes are recorded: in live mode (see [`keep_records`]).
static KEEP: AtomicBool = AtomicBool::new(false);

/// Records every write from now on. Live mode calls it at start; a one-shot run writes no
/// record, as the original wrote nothing beside its files (a record left by an earlier live
/// run then no longer matches, so a managed start waits for its first pass).
pub fn keep_records() {
    KEEP.store(true, Ordering::Relaxed);
}

/// Whether [`keep_records`] was called.
pub fn kept() -> bool {
    KEEP.load(Ordering::Relaxed)
}

/// Flushes and records are made one at a time, so that an older write's record cannot be
/// renamed over a newer one's between its check and its rename.
static RECORDING: Mutex<()> = Mutex::new(());

/// Flushes `file` (the content just swapped in at `path`, whose sum is `sum`) to disk, then
/// records the sum, if `path` still names `file` (a newer write records its own).
///
/// # Errors
/// The flush or the record's write failed; the old record then stays (and no longer matches,
/// which is safe: see the module docs).
pub fn flush_and_record(path: &Path, file: &File, sum: Sum) -> io::Result<()> {
    let _one_at_a_time = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    file.sync_all()?;
    let ours = file.metadata()?;
    let named = std::fs::metadata(path)?;
    if (ours.dev(), ours.ino()) != (named.dev(), named.ino()) {
        return Ok(());
    }
    let record = record_path(path);
    let temporary = record.with_extension("sum.tmp");
    let mut out = File::create(&temporary)?;
    out.write_all(sum.line().as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, &record)
}

#[cfg(test)]
mod tests;
