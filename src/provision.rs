//! What the HAProxy head needs on disk before managed mode starts HAProxy, so that the binary
//! works alone on a machine with only `haproxy` installed.
//!
//! The built-in `HAPROXY_HEAD` (the original's, byte for byte) loads four Lua scripts from
//! `/marathon-lb/`, puts its stats socket in `/var/run/haproxy/` and its server state in
//! `/var/state/haproxy/`. The original's container image shipped all of these; a bare binary
//! does not, and HAProxy then refuses to start with five `[ALERT]`s. So the scripts are carried
//! inside the binary, and before HAProxy starts the head in force (built-in or a
//! `HAPROXY_HEAD` override) is read for the paths it names:
//!
//! - `lua-load PATH` whose file name is one of ours: the script is written to PATH when missing
//!   (a file already there is kept, so an operator's edited copy wins; a different one is
//!   logged);
//! - `stats socket PATH` and `server-state-base DIR`: the directory is created when missing;
//! - `log PATH` (a unix socket, `/dev/log` in the built-in head) where no syslog daemon
//!   listens: marathon-lb listens there itself and writes HAProxy's log lines to its stderr
//!   ([`syslog`]).
//!
//! Paths are read from the head rather than fixed, so a head that moves them (a non-root run,
//! the tests) is served the same way. A path that cannot be made is a start-up error that names
//! it and the fix, instead of HAProxy's alerts.

pub mod syslog;

use std::io::Write;
use std::path::{Path, PathBuf};

/// The Lua scripts of the built-in head, by file name, as the repo's `lua/` has them.
pub const LUA_SCRIPTS: [(&str, &str); 4] = [
    ("getpids.lua", include_str!("../lua/getpids.lua")),
    ("getconfig.lua", include_str!("../lua/getconfig.lua")),
    ("getmaps.lua", include_str!("../lua/getmaps.lua")),
    ("signalmlb.lua", include_str!("../lua/signalmlb.lua")),
];

/// Why the head's files could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory the head names could not be created.
    #[error(
        "cannot create {path}, which the HAProxy head needs for `{directive}`: {source}. \
         Create it (`mkdir -p {path}`, as root) or run marathon-lb as a user that may, or \
         set a HAPROXY_HEAD template that names a writable path"
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The head directive that names it.
        directive: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `log` socket nobody listens on could not be bound.
    #[error(transparent)]
    LogSocket(#[from] syslog::BindError),
    /// A Lua script the head loads could not be written.
    #[error(
        "cannot write {path}, a Lua script the HAProxy head loads (`lua-load`): {source}. \
         Make its directory writable by marathon-lb (`mkdir -p {dir}`, as root), or install \
         the scripts there yourself (the repo's lua/ directory), or set a HAPROXY_HEAD \
         template whose lua-load lines name a writable path"
    )]
    WriteLua {
        /// The script's path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What a head asks for on disk (pure: read from its text).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Our Lua scripts it loads: where, and the embedded text.
    pub lua: Vec<(PathBuf, &'static str)>,
    /// Directories it writes into, with the directive that names each.
    pub dirs: Vec<(PathBuf, &'static str)>,
    /// Unix datagram sockets it logs to (`log /dev/log ...`), each once.
    pub log_sockets: Vec<PathBuf>,
}

/// What [`provide`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Scripts written (they were missing).
    pub written: Vec<PathBuf>,
    /// Scripts found with other content than ours and kept.
    pub kept_different: Vec<PathBuf>,
    /// Directories created.
    pub created: Vec<PathBuf>,
}

/// The paths `head` (an `HAPROXY_HEAD` text) needs: our `lua-load` scripts, the stats socket's
/// directory and the server-state base. Relative paths and non-file addresses (`ipv4@...`) are
/// left alone: they are not ours to guess.
pub fn needs(head: &str) -> Needs {
    let mut out = Needs::default();
    for line in head.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["lua-load", path, ..] => {
                let path = Path::new(path);
                let name = path.file_name().and_then(|n| n.to_str());
                if let Some((_, text)) = LUA_SCRIPTS.iter().find(|(n, _)| Some(*n) == name) {
                    out.lua.push((path.to_path_buf(), text));
                }
            }
            ["stats", "socket", path, ..] if path.starts_with('/') => {
                if let Some(dir) = Path::new(path).parent() {
                    out.dirs.push((dir.to_path_buf(), "stats socket"));
                }
            }
            ["server-state-base", dir, ..] if dir.starts_with('/') => {
                out.dirs.push((PathBuf::from(dir), "server-state-base"));
            }
            ["log", path, ..] if path.starts_with('/') => {
                let path = PathBuf::from(path);
                if !out.log_sockets.contains(&path) {
                    out.log_sockets.push(path);
                }
            }
            _ => {}
        }
    }
    out
}

/// Provides what `head` needs (see the module doc): creates the missing directories and
/// writes the missing scripts (atomically: temp file + rename, mode 0644).
///
/// # Errors
/// [`Error::CreateDir`] or [`Error::WriteLua`], naming the path and the fix.
pub fn provide(head: &str) -> Result<Report, Error> {
    let needs = needs(head);
    let mut report = Report::default();
    for (dir, directive) in &needs.dirs {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.clone(),
                directive,
                source,
            })?;
            report.created.push(dir.clone());
        }
    }
    for (path, text) in &needs.lua {
        match std::fs::read(path) {
            Ok(existing) if existing == text.as_bytes() => {}
            Ok(_) => report.kept_different.push(path.clone()),
            Err(_) => {
                write_script(path, text)?;
                report.written.push(path.clone());
            }
        }
    }
    Ok(report)
}

/// Writes one script (and its directory) by temp file + rename.
fn write_script(path: &Path, text: &str) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |source| Error::WriteLua {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut file = tempfile::Builder::new()
        .prefix(".marathon-lb-lua")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// [`provide`] for managed mode's start, with what it did logged, and a stand-in listener on
/// each `log` socket no syslog daemon serves (needs a tokio runtime: the listeners are tasks).
///
/// # Errors
/// As [`provide`], and [`Error::LogSocket`].
pub fn provide_logged(head: &str) -> Result<(), Error> {
    let report = provide(head)?;
    for path in needs(head).log_sockets {
        if syslog::stand_in(&path)? {
            tracing::info!(
                path = %path.display(),
                "no syslog daemon listens on the HAProxy head's log socket: its log lines go to stderr"
            );
        }
    }
    for dir in &report.created {
        tracing::info!(path = %dir.display(), "created a directory the HAProxy head needs");
    }
    for path in &report.written {
        tracing::info!(path = %path.display(), "wrote a Lua script the HAProxy head loads");
    }
    for path in &report.kept_different {
        tracing::warn!(
            path = %path.display(),
            "kept a Lua script the HAProxy head loads that differs from this version's; \
             delete it to get this version's"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_head_needs_the_original_paths() {
        let needs = needs(&crate::templates::default_head(None));
        let lua: Vec<_> = needs.lua.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            lua,
            ["getpids", "getconfig", "getmaps", "signalmlb"]
                .map(|n| PathBuf::from(format!("/marathon-lb/{n}.lua")))
        );
        assert_eq!(
            needs.dirs,
            [
                (PathBuf::from("/var/run/haproxy"), "stats socket"),
                (PathBuf::from("/var/state/haproxy/"), "server-state-base"),
            ]
        );
        assert_eq!(needs.log_sockets, [PathBuf::from("/dev/log")]);
    }

    #[test]
    fn the_embedded_scripts_are_the_repo_lua_files() {
        let lua_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
        let mut on_disk: Vec<_> = std::fs::read_dir(&lua_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut ours: Vec<_> = LUA_SCRIPTS.iter().map(|(n, _)| n.to_string()).collect();
        ours.sort();
        assert_eq!(on_disk, ours, "a Lua file was added or removed: embed it");
    }

    #[test]
    fn writes_missing_keeps_present_and_names_the_path_it_cannot_make() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().display();
        let head = format!(
            "global\n  stats socket {base}/sock/s mode 600\n  server-state-base {base}/state/\n  \
             lua-load {base}/lua/getpids.lua\n  lua-load {base}/lua/getmaps.lua\n  \
             lua-load {base}/lua/other.lua\n  stats socket ipv4@127.0.0.1:1\n"
        );
        std::fs::create_dir(tmp.path().join("lua")).unwrap();
        std::fs::write(tmp.path().join("lua/getmaps.lua"), "-- mine").unwrap();
        let report = provide(&head).unwrap();
        assert_eq!(report.written, [tmp.path().join("lua/getpids.lua")]);
        assert_eq!(report.kept_different, [tmp.path().join("lua/getmaps.lua")]);
        assert_eq!(report.created.len(), 2);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("lua/getpids.lua")).unwrap(),
            LUA_SCRIPTS[0].1
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("lua/getmaps.lua")).unwrap(),
            "-- mine"
        );
        assert!(tmp.path().join("sock").is_dir() && tmp.path().join("state").is_dir());
        assert!(!tmp.path().join("lua/other.lua").exists());
        // Again: nothing left to do.
        assert_eq!(provide(&head).unwrap().written, Vec::<PathBuf>::new());

        // A directory that cannot exist (under a regular file).
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let bad = format!("  lua-load {base}/file/getconfig.lua\n");
        let err = provide(&bad).unwrap_err().to_string();
        assert!(err.contains(&format!("{base}/file/getconfig.lua")), "{err}");
        assert!(err.contains(&format!("mkdir -p {base}/file")), "{err}");
    }
}
