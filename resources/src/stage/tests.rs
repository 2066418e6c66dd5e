//! Tests of the stager: staging, commit, failed commits, and one batch per
//! context.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::backup::BackupStore;

#[test]
fn batch_stages_then_commits_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("sub/b"));
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(&a, b"old a\n").unwrap();
    let st = Stager::default();
    st.begin();
    st.stage_for(Some(7));
    st.write_atomic(&a, b"new a\n", None).unwrap();
    st.write_atomic(&b, b"b1 first\n", Some(0o640)).unwrap();
    // A second write of a staged file builds on the staged content.
    assert_eq!(st.read_optional(&b).unwrap().unwrap(), b"b1 first\n");
    let first = fs::metadata(st.current_path(&b)).unwrap().ino();
    st.write_atomic(&b, b"b2 longer\n", None).unwrap();
    assert_eq!(st.read_optional(&b).unwrap().unwrap(), b"b2 longer\n");
    // Later ones swap the temp with a spare: two inodes, none freed
    // (and a shorter version than the spare held is cut to its length).
    st.write_atomic(&b, b"b2\n", None).unwrap();
    assert_eq!(fs::metadata(st.current_path(&b)).unwrap().ino(), first);
    st.stage_for(None);
    // Nothing visible yet: old content, no new file.
    assert_eq!(fs::read(&a).unwrap(), b"old a\n");
    assert!(!b.exists());
    assert!(st.owns_pending(7) && !st.owns_pending(8));
    assert!(st.touches(&b) && st.touches(&dir.path().join("sub")));
    assert_eq!(st.read_optional(&a).unwrap().unwrap(), b"new a\n");
    // Own staged temps survive the stale-temp sweep.
    st.clean_stale_temps(dir.path());
    atomic::clean_stale_temps(dir.path());
    assert!(st.current_path(&a).exists());
    assert!(st.end().is_empty());
    assert_eq!(fs::read(&a).unwrap(), b"new a\n");
    assert_eq!(fs::read(&b).unwrap(), b"b2\n");
    assert_eq!(
        fs::metadata(&b).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        fs::metadata(&a).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("b")], "no temp left");
    // Outside a batch, writes go straight through.
    st.write_atomic(&a, b"direct\n", None).unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"direct\n");
}

#[test]
fn a_batch_that_cannot_commit_names_its_owners_and_keeps_old_content() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    fs::write(&a, b"old\n").unwrap();
    let st = Stager::default();
    st.begin();
    st.stage_for(Some(3));
    st.write_atomic(&a, b"new\n", None).unwrap();
    st.stage_for(None);
    // The temp vanishes before the commit (a killed writer, a cleaner).
    fs::remove_file(st.current_path(&a)).unwrap();
    let failed = st.end();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, vec![3]);
    assert_eq!(fs::read(&a).unwrap(), b"old\n");
}

#[test]
fn each_context_stages_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::write(&a, b"old a\n").unwrap();
    let one = Context::new(dir.path(), BackupStore::new(state.path()));
    let two = Context::new(dir.path(), BackupStore::new(state.path()));
    one.stager().begin();
    one.stager().stage_for(Some(1));
    two.stager().begin();
    two.stager().stage_for(Some(2));
    replace_file(&one, &a, b"new a\n", None).unwrap();
    replace_file(&two, &b, b"new b\n", None).unwrap();
    // Each sees its own staged write, not the other's.
    assert_eq!(one.stager().read_optional(&a).unwrap().unwrap(), b"new a\n");
    assert_eq!(two.stager().read_optional(&a).unwrap().unwrap(), b"old a\n");
    assert!(one.stager().touches(&a) && !one.stager().touches(&b));
    assert!(two.stager().owns_pending(2) && !two.stager().owns_pending(1));
    // A third context, with no batch, writes straight through.
    let three = Context::new(dir.path(), BackupStore::new(state.path()));
    assert!(!three.stager().has_pending());
    replace_file(&three, &dir.path().join("c"), b"c\n", None).unwrap();
    assert_eq!(fs::read(dir.path().join("c")).unwrap(), b"c\n");
    // Committing one leaves the other staged.
    assert!(one.stager().end().is_empty());
    assert_eq!(fs::read(&a).unwrap(), b"new a\n");
    assert!(!b.exists() && two.stager().has_pending());
    assert!(two.stager().end().is_empty());
    assert_eq!(fs::read(&b).unwrap(), b"new b\n");
}
