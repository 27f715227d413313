use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::*;
use crate::haproxy::replace::replace;

/// Writes `text` as the live loop does, then flushes and records it.
fn write_recorded(path: &Path, text: &str) {
    let replaced = replace(path, text.as_bytes()).unwrap();
    flush_and_record(path, &replaced.file, Sum::of(text.as_bytes())).unwrap();
}

fn check_file(path: &Path) -> Check {
    check(path, &std::fs::read(path).unwrap())
}

#[test]
fn a_flushed_write_is_recorded_and_checks_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    write_recorded(&path, "global\n  first\n");
    assert_eq!(check_file(&path), Check::Whole);
    write_recorded(&path, "global\n  second, longer\n");
    write_recorded(&path, "global\n  third\n");
    assert_eq!(check_file(&path), Check::Whole);
    let record = std::fs::read_to_string(record_path(&path)).unwrap();
    assert_eq!(record, Sum::of(b"global\n  third\n").line());
}

#[test]
fn a_file_written_over_in_place_after_its_record_differs() {
    // A power loss while the spare was written over: some pages new, the rest old.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    let old = "backend a\n  server s1 10.0.0.1:80\n".repeat(300);
    write_recorded(&path, &old);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"backend b\n  server s9 10.0.0.9:80\n", 4096)
        .unwrap();
    let torn = std::fs::read(&path).unwrap();
    assert_eq!(torn.len(), old.len());
    assert_eq!(
        check(&path, &torn),
        Check::Differs {
            recorded: Sum::of(old.as_bytes()),
            found: Sum::of(&torn),
        }
    );
    // A file cut short differs as well, even when its first bytes are right.
    let mut file = file;
    file.set_len(100).unwrap();
    file.seek(SeekFrom::End(0)).unwrap();
    assert!(matches!(check_file(&path), Check::Differs { .. }));
}

#[test]
fn a_missing_or_unreadable_record_is_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, "global\n").unwrap();
    assert_eq!(check_file(&path), Check::NoRecord);
    std::fs::write(record_path(&path), "not a sum\n").unwrap();
    assert_eq!(check_file(&path), Check::NoRecord);
}

#[test]
fn an_older_write_finishing_last_does_not_record_over_the_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    write_recorded(&path, "zero\n");
    let first = replace(&path, b"first\n").unwrap();
    write_recorded(&path, "second\n");
    // The first write's flush thread runs late: its file is no longer at the path.
    flush_and_record(&path, &first.file, Sum::of(b"first\n")).unwrap();
    assert_eq!(check_file(&path), Check::Whole);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
}

#[test]
fn apply_records_the_config_and_maps_once_they_are_on_disk() {
    use crate::haproxy::{apply, Paths, Validated};
    use crate::render::Rendered;
    keep_records();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haproxy.cfg");
    let paths = Paths::new(config.to_str().unwrap());
    for n in 0..3 {
        let rendered = Rendered {
            config: std::sync::Arc::new(format!("global\n# config {n}\n")),
            domain_map: format!("example{n}.com backend_{n}\n"),
            app_map: format!("/app{n} backend_{n}\n"),
            incremental: None,
        };
        apply(&Validated::unchecked(rendered), &paths, true, 0).unwrap();
    }
    // The records are written by the flush thread, after the write returned.
    let deadline = Instant::now() + Duration::from_secs(10);
    for path in [config, paths.domain_map(), paths.app_map()] {
        while check_file(&path) != Check::Whole {
            assert!(
                Instant::now() < deadline,
                "{} was not recorded whole: {:?}",
                path.display(),
                check_file(&path)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let config = std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap();
    assert_eq!(config, "global\n# config 2\n");
}
