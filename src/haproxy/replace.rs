//! Put a file's new content into place atomically, reusing the file it replaced last time.
//!
//! A config is replaced by swapping in a complete file, so HAProxy reads the old one or the
//! new one, never a part. The new content is written into `.<name>.spare`, the file the last
//! swap moved out, and swapped with `<name>` in one `renameat2(RENAME_EXCHANGE)`. Writing
//! over pages the kernel already holds for that file skips allocating (and later freeing)
//! 10 MB of page cache on every pass: allocating them is what made a 10k-app write take
//! 10-17 ms instead of 2 on this VM, one pass in three.
//!
//! The spare is written over only when nobody else has it open: a write lease (`F_SETLEASE`)
//! is granted only then. A reload that is still reading the old config, or any reader, keeps
//! its file: the content goes to a new file instead, as does every write on a file system
//! without leases or `RENAME_EXCHANGE`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How the content got to disk, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Over the spare, whose pages were reused.
    OverSpare,
    /// Into a new file (no spare yet, or the spare was open elsewhere or not ours).
    NewFile,
}

/// The file that was put into place (to be flushed), what it replaced (held open so that
/// freeing it happens when the caller drops it, not in the rename), and how it was written.
pub struct Replaced {
    /// The new file, now at the path.
    pub file: File,
    /// The old file when a plain rename unlinked it.
    pub unlinked: Option<File>,
    /// How the content was written.
    pub written: Written,
    /// Whether no spare is left beside the path (the file was renamed in, not swapped): then
    /// [`prepare_spare`] makes one off the critical path, so the next write is not the one
    /// that allocates a new file's pages.
    pub no_spare: bool,
}

/// The spare file kept beside `path`.
pub fn spare_path(path: &Path) -> PathBuf {
    hidden_beside(path, "spare")
}

/// `.<name>.<suffix>` beside `path`: a hidden name that no `*.cfg` or `*.map` glob matches.
pub fn hidden_beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// Replaces `path` with `content` (see the module docs). The permissions of the file it
/// replaces are kept (0644 for a new one). Data is not flushed: the caller syncs
/// [`Replaced::file`].
///
/// # Errors
/// Creating, writing or renaming failed; `path` is then untouched.
pub fn replace(path: &Path, content: &[u8]) -> io::Result<Replaced> {
    let spare = spare_path(path);
    let (mut file, written) = match reusable(&spare) {
        Some(file) => (file, Written::OverSpare),
        None => (new_spare(&spare)?, Written::NewFile),
    };
    file.write_all(content)?;
    file.set_len(content.len() as u64)?;
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let (unlinked, no_spare) = swap_in(&spare, path)?;
    Ok(Replaced {
        file,
        unlinked,
        written,
        no_spare,
    })
}

/// Makes a spare beside `path` holding `content` (any content of about the config's size
/// will do: it is written over next time), when no file has the name. Never writes into a
/// file it did not create. Run after a write that left no spare (the first one in a new
/// directory), on the flush thread: a write into a new 10 MB file took 10-17 ms on this VM,
/// one over a spare's pages 1.3-2.3 ms.
///
/// # Errors
/// Creating or writing the file failed (a file already at the name is not an error).
pub fn prepare_spare(path: &Path, content: &[u8]) -> io::Result<()> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(spare_path(path));
    match created {
        Ok(mut file) => file.write_all(content),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The spare opened for writing, when it is a regular file of ours with no other name, and no
/// one else (process, mapping, or another descriptor of ours) has it open.
fn reusable(spare: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(spare)
        .ok()?;
    let meta = file.metadata().ok()?;
    let ours = meta.uid() == rustix::process::geteuid().as_raw();
    (meta.is_file() && meta.nlink() == 1 && ours && open_only_here(&file)).then_some(file)
}

/// `fcntl`'s "set the signal sent on a lease break" command (`<asm-generic/fcntl.h>`), which
/// the `libc` crate does not export.
const F_SETSIG: libc::c_int = 10;

/// Whether `file` is open nowhere else: a write lease is granted only then. It is released at
/// once; its break signal is set to `SIGURG`, ignored by default, so that an `open` racing
/// with the check cannot deliver the default `SIGIO`, which would end the process.
fn open_only_here(file: &File) -> bool {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    #[allow(unsafe_code)]
    unsafe {
        if libc::fcntl(fd, F_SETSIG, libc::SIGURG) != 0 {
            return false;
        }
        if libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) != 0 {
            return false;
        }
        libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) == 0
    }
}

/// A new spare: whatever held the name (a file open elsewhere, a symlink) is unlinked, never
/// written through.
fn new_spare(spare: &Path) -> io::Result<File> {
    match std::fs::remove_file(spare) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(spare)
}

/// Swaps the written spare with `path`, so the replaced file becomes the next spare. Where
/// the swap cannot be done (no `path` yet, a file system without `RENAME_EXCHANGE`), renames;
/// the replaced file, opened first, is returned so the caller decides when it is freed, with
/// `true`: no spare is left.
fn swap_in(spare: &Path, path: &Path) -> io::Result<(Option<File>, bool)> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, spare, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => Ok((None, false)),
        Err(_) => {
            let replaced = File::open(path).ok();
            std::fs::rename(spare, path)?;
            Ok((replaced, true))
        }
    }
}

#[cfg(test)]
mod tests;
