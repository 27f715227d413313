use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

fn put(path: &Path, text: &str) -> Written {
    replace(path, text.as_bytes()).unwrap().written
}

/// The first write in a new directory leaves no spare; the one prepared after it is written
/// over by the next write, and a file already at the name is never written into.
#[test]
fn a_prepared_spare_makes_the_second_write_one_over_a_spare() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    let first = replace(&path, b"one\n").unwrap();
    assert!(first.no_spare);
    prepare_spare(&path, b"one\n").unwrap();
    let prepared = ino(&spare_path(&path));
    let second = replace(&path, b"two\n").unwrap();
    assert_eq!(second.written, Written::OverSpare);
    assert!(!second.no_spare);
    assert_eq!(ino(&path), prepared);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");

    let spare_before = std::fs::read_to_string(spare_path(&path)).unwrap();
    prepare_spare(&path, b"never written\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(spare_path(&path)).unwrap(),
        spare_before
    );
}

#[test]
fn the_replaced_file_is_the_next_spare_and_is_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    assert_eq!(put(&path, "one, the first and longest\n"), Written::NewFile);
    assert!(!spare_path(&path).exists(), "a rename leaves no spare");
    let first = ino(&path);
    assert_eq!(put(&path, "two\n"), Written::NewFile);
    assert_eq!(ino(&spare_path(&path)), first, "the replaced file is kept");
    let second = ino(&path);
    assert_eq!(put(&path, "three\n"), Written::OverSpare);
    assert_eq!(ino(&path), first, "the spare was swapped in");
    assert_eq!(ino(&spare_path(&path)), second);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    assert_eq!(std::fs::read_to_string(spare_path(&path)).unwrap(), "two\n");
}

#[test]
fn a_reader_of_a_replaced_config_keeps_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    put(&path, "zero\n");
    put(&path, "first generation\n");
    // A slow reload opens the live config, then two more configs are written.
    let mut reader = File::open(&path).unwrap();
    assert_eq!(put(&path, "second\n"), Written::OverSpare);
    assert_eq!(
        put(&path, "third\n"),
        Written::NewFile,
        "the open file is not reused"
    );
    let mut text = String::new();
    reader.read_to_string(&mut text).unwrap();
    assert_eq!(text, "first generation\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "third\n");
    drop(reader);
    assert_eq!(
        put(&path, "fourth\n"),
        Written::OverSpare,
        "reused once closed"
    );
}

#[test]
fn a_symlink_or_a_second_name_at_the_spare_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    put(&path, "one\n");
    std::os::unix::fs::symlink(&victim, spare_path(&path)).unwrap();
    assert_eq!(put(&path, "two\n"), Written::NewFile);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");

    let linked = dir.path().join("linked");
    std::fs::hard_link(spare_path(&path), &linked).unwrap();
    assert_eq!(put(&path, "three\n"), Written::NewFile);
    assert_eq!(std::fs::read_to_string(&linked).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
}

#[test]
fn the_replaced_files_permissions_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    put(&path, "one\n");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    for text in ["two\n", "three\n", "four\n"] {
        put(&path, text);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    }
}

#[test]
fn a_longer_then_shorter_content_leaves_no_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    let long = "x".repeat(100_000);
    for text in ["a\n", &long, "b\n", "c\n", &long[..10], "d\n"] {
        put(&path, text);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
