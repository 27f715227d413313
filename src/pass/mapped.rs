//! An apps file mapped into memory (one-shot `--apps-file`), and handing back the pages the
//! parser has passed.
//!
//! A mapped 27.7 MB body of 10,000 apps is 27.7 MB of resident pages until it is unmapped,
//! while the services built from it grow to about as much: together they made the one-shot
//! peak. The parsed part of the body is rarely read again (only apps held back, such as
//! deployment groups), so the modeling loop tells the kernel it no longer needs those pages.
//! For a private read-only file mapping that is always safe: a page touched again is read
//! back from the file (the page cache) with the same bytes.

use std::sync::Mutex;

use bytes::Bytes;

/// Address ranges (start, length) of the apps files mapped now: only these are released.
static MAPPED: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// Releases at least this much at once: one `madvise` per megabyte, not per batch of apps.
const RELEASE_STEP: usize = 1 << 20;

/// Owns a mapping while [`Bytes`] views it; known to [`release`] until dropped.
struct Mapped(memmap2::Mmap);

impl Mapped {
    fn new(map: memmap2::Mmap) -> Self {
        let range = (map.as_ptr() as usize, map.len());
        lock().push(range);
        Self(map)
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // Before the map field is unmapped: `release` never advises a range being unmapped.
        let start = self.0.as_ptr() as usize;
        lock().retain(|(s, _)| *s != start);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(usize, usize)>> {
    MAPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Maps `file` (`len` bytes, more than 0) read-only, its pages read in at once.
pub(super) fn map(file: &std::fs::File) -> std::io::Result<Bytes> {
    // SAFETY: the map is only read. A file truncated by another process while mapped would
    // fault; `--apps-file` without `--watch` reads a file that is not being rewritten (the
    // watch mode reads a copy instead).
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::MmapOptions::new().populate().map(file) }?;
    Ok(Bytes::from_owner(Mapped::new(map)))
}

/// Tracks how far [`release`] has gone in one body.
#[derive(Debug, Default)]
pub struct Released(usize);

/// Hands the pages of `body[..upto]` back to the kernel when `body` is a mapped apps file
/// (no-op otherwise: a heap body must keep its bytes), a megabyte or more at a time.
pub fn release(body: &[u8], upto: usize, released: &mut Released) {
    let page = rustix::param::page_size();
    let start = body.as_ptr() as usize;
    let end = (start + upto.min(body.len())) / page * page;
    let from = (start + released.0).div_ceil(page) * page;
    if end < from + RELEASE_STEP {
        return;
    }
    let map = lock();
    let inside = map
        .iter()
        .any(|&(s, len)| s <= start && start + body.len() <= s + len);
    if !inside {
        released.0 = body.len(); // not ours: never look again
        return;
    }
    // SAFETY: [from, end) is page-aligned and inside a live private read-only file mapping
    // (registered above, and kept registered while the lock is held). Dropping its pages
    // loses nothing: the next read of them faults the file's same bytes back in.
    #[allow(unsafe_code)]
    let advised = unsafe {
        rustix::mm::madvise(
            from as *mut std::ffi::c_void,
            end - from,
            rustix::mm::Advice::LinuxDontNeed,
        )
    };
    if let Err(error) = advised {
        tracing::debug!(%error, "could not release the parsed part of the apps file");
    }
    released.0 = end - start;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident kilobytes of the mapping that starts at `body` (`/proc/self/smaps`).
    fn resident_kb(body: &[u8]) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{:x}-", body.as_ptr() as usize);
        let entry = smaps.split_once(&format!("\n{head}")).unwrap().1;
        let rss = entry.lines().find(|l| l.starts_with("Rss:")).unwrap();
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn released_pages_of_a_mapped_file_leave_memory_and_read_back_the_same() {
        let text: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let body = map(file.as_file()).unwrap();
        assert_eq!(resident_kb(&body), 8 << 10, "populated");
        let mut released = Released::default();
        release(&body, 6 << 20, &mut released);
        assert_eq!(resident_kb(&body), 2 << 10, "the first 6 MB released");
        assert_eq!(
            &body[..],
            &text[..],
            "released pages read back the file's bytes"
        );
    }

    #[test]
    fn a_body_on_the_heap_is_never_released() {
        let text: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let body = Bytes::from(text.clone());
        let mut released = Released::default();
        release(&body, 4 << 20, &mut released);
        assert_eq!(&body[..], &text[..]);
    }
}
