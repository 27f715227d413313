//! The certificates a config serves (`crt` on its `bind` lines) and when they expire, for
//! `marathon_lb_certificate_expiry_timestamp_seconds`.

use std::path::{Path, PathBuf};

/// The `crt` paths of `config`'s `bind` lines (files or directories), each once.
pub fn served(config: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in config.lines().map(str::trim_start) {
        let Some(bind) = line.strip_prefix("bind ") else {
            continue;
        };
        let mut words = bind.split_whitespace();
        while let Some(word) = words.next() {
            if word == "crt" {
                if let Some(path) = words.next() {
                    let path = PathBuf::from(path);
                    if !out.contains(&path) {
                        out.push(path);
                    }
                }
            }
        }
    }
    out
}

/// Each certificate file under `paths` (a directory's files, one level, as HAProxy loads them)
/// with the Unix time its first certificate expires; unreadable files are skipped.
pub fn expiries(paths: &[PathBuf]) -> Vec<(PathBuf, i64)> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let Ok(entries) = std::fs::read_dir(path) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            out.extend(files.into_iter().filter_map(|f| expiry(&f).map(|t| (f, t))));
        } else if let Some(t) = expiry(path) {
            out.push((path.clone(), t));
        }
    }
    out
}

/// When the first certificate in the PEM file `path` expires (Unix seconds).
pub fn expiry(path: &Path) -> Option<i64> {
    let pem = std::fs::read(path).ok()?;
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let Ok(block) = block else {
            return None;
        };
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block.parse_x509().ok()?;
        return Some(cert.validity().not_after.timestamp());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crt_paths_of_bind_lines_and_their_expiry() {
        let config = "frontend a\n  bind *:443 ssl crt /x/a.pem crt /x/dir\nfrontend b\n  bind *:1 ssl crt /x/a.pem\n";
        assert_eq!(
            served(config),
            [PathBuf::from("/x/a.pem"), PathBuf::from("/x/dir")]
        );
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let file = dir.path().join("a.pem");
        std::fs::write(&file, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        // 2031-01-02T00:00:00Z
        assert_eq!(expiry(&file), Some(1_925_078_400));
        let found = expiries(&[dir.path().to_owned(), dir.path().join("missing.pem")]);
        assert_eq!(found, [(file, 1_925_078_400)]);
    }
}
