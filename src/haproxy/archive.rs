//! Archived copies of the configs written (`--archive-versions N`): `hap_cfg.1` (the newest)
//! to `hap_cfg.N`, in a directory of marathon-lb's own, `$TMPDIR/marathon-lb-archive-<uid>/`.
//!
//! Why a directory of our own: `$TMPDIR` is usually `/tmp`, where anyone may create files. A
//! symlink planted at `/tmp/hap_cfg.1` made a root marathon-lb write through it, creating or
//! overwriting its target. Here the directory is created with mode `0700` and used only when
//! `lstat` shows a real directory owned by our uid and closed to others; inside it, files are
//! written to a fresh temp file (`O_EXCL`) and renamed into place, and rotated by renames: a
//! rename replaces a symlink at the destination instead of following it, so no write ever
//! goes through a link. Nobody else can rename our directory away: `/tmp` is sticky.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the config could not be archived (the config itself is written already).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The archive directory did not exist and could not be created.
    #[error("cannot create the archive directory {path}: {error}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Something is at the archive directory's path that marathon-lb must not write into.
    #[error("refusing the archive directory {path}: {reason}")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it (a symlink, another owner, open to others).
        reason: String,
    },
    /// Writing or rotating an archived copy failed.
    #[error("cannot write the archived config {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// The archive directory: `$TMPDIR/marathon-lb-archive-<uid>` (the uid keeps two users'
/// instances apart).
pub fn dir() -> PathBuf {
    let uid = rustix::process::getuid().as_raw();
    std::env::temp_dir().join(format!("marathon-lb-archive-{uid}"))
}

/// Keeps `content` as `<dir()>/<name>.1`, shifting older copies up to `<name>.<versions>`.
/// `versions == 0` archives nothing. Returns the file written.
///
/// # Errors
/// [`Error`]: the archive is skipped; callers warn (an archive only costs history).
pub fn archive(content: &str, name: &str, versions: usize) -> Result<Option<PathBuf>, Error> {
    if versions == 0 {
        return Ok(None);
    }
    archive_in(&dir(), content, name, versions).map(Some)
}

/// [`archive`] into `dir` (which must pass the same checks).
///
/// # Errors
/// [`Error`].
pub fn archive_in(
    dir: &Path,
    content: &str,
    name: &str,
    versions: usize,
) -> Result<PathBuf, Error> {
    owned_dir(dir)?;
    let write_err = |path: PathBuf| move |error| Error::Write { path, error };
    for n in (1..versions).rev() {
        let from = dir.join(format!("{name}.{n}"));
        // `lstat`: whatever is there (a symlink too) is moved, never followed.
        if std::fs::symlink_metadata(&from).is_ok() {
            let to = dir.join(format!("{name}.{}", n + 1));
            match std::fs::rename(&from, &to) {
                // Moved meanwhile by another instance of ours archiving at the same time.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.map_err(write_err(to))?,
            }
        }
    }
    let path = dir.join(format!("{name}.1"));
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .map_err(write_err(path.clone()))?;
    temp.write_all(content.as_bytes())
        .map_err(write_err(path.clone()))?;
    temp.persist(&path).map_err(|e| Error::Write {
        path: path.clone(),
        error: e.error,
    })?;
    Ok(path)
}

/// Creates `dir` (mode `0700`, parent must exist) unless present, then checks with `lstat`
/// that it is a directory, not a symlink, owned by our uid and closed to group and others.
fn owned_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // `mkdir` never follows a symlink: one planted here is caught just below.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            return Err(Error::Create {
                path: dir.to_owned(),
                error,
            })
        }
    }
    let unsafe_dir = |reason: String| Error::Unsafe {
        path: dir.to_owned(),
        reason,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|error| Error::Create {
        path: dir.to_owned(),
        error,
    })?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symlink".to_owned()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".to_owned()));
    }
    let uid = rustix::process::getuid().as_raw();
    if meta.uid() != uid {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not by marathon-lb's uid {uid}",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "its mode {mode:o} lets others in (want 700)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn copies_rotate_and_the_directory_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("archive");
        for text in ["one", "two", "three", "four"] {
            archive_in(&dir, text, "hap_cfg", 3).unwrap();
        }
        assert_eq!(read(&dir.join("hap_cfg.1")), "four");
        assert_eq!(read(&dir.join("hap_cfg.2")), "three");
        assert_eq!(read(&dir.join("hap_cfg.3")), "two");
        assert!(!dir.join("hap_cfg.4").exists());
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let mode = std::fs::metadata(dir.join("hap_cfg.1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "archived configs are private too");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 3, "no temp file left behind");
    }

    #[test]
    fn planted_symlinks_inside_are_replaced_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("archive");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let target1 = tmp.path().join("target1");
        let target2 = tmp.path().join("target2");
        symlink(&target1, dir.join("hap_cfg.1")).unwrap();
        symlink(&target2, dir.join("hap_cfg.2")).unwrap();
        archive_in(&dir, "new", "hap_cfg", 3).unwrap();
        assert!(
            !target1.exists() && !target2.exists(),
            "a link was followed"
        );
        let newest = dir.join("hap_cfg.1");
        assert!(std::fs::symlink_metadata(&newest).unwrap().is_file());
        assert_eq!(read(&newest), "new");
    }

    #[test]
    fn a_symlinked_directory_is_refused_and_its_target_not_created() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        let dir = tmp.path().join("archive");
        symlink(&target, &dir).unwrap();
        let err = archive_in(&dir, "x", "hap_cfg", 2).unwrap_err();
        assert!(err.to_string().contains("it is a symlink"), "{err}");
        assert!(!target.exists());
        // Also when the target exists and is ours: a link is never used.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&target)
            .unwrap();
        let err = archive_in(&dir, "x", "hap_cfg", 2).unwrap_err();
        assert!(err.to_string().contains("it is a symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_open_to_others_or_not_ours_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("archive");
        std::fs::DirBuilder::new().mode(0o777).create(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = archive_in(&dir, "x", "hap_cfg", 2).unwrap_err();
        assert!(err.to_string().contains("lets others in"), "{err}");
        if rustix::process::getuid().is_root() {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let err = archive_in(&dir, "x", "hap_cfg", 2).unwrap_err();
            assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = archive_in(&file, "x", "hap_cfg", 2).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn zero_versions_archive_nothing() {
        assert!(archive("x", "hap_cfg_test_zero", 0).unwrap().is_none());
    }
}
