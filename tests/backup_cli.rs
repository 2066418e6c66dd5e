//! `agent backup list|restore|prune` through the real binary, and the
//! automatic retention at the end of `apply` (never in noop).

mod common;

use std::fs;
use std::path::Path;

use common::{Sandbox, HIERA_YAML};
use resources::backup::{sha256_hex, BackupStore, DEFAULT_KEEP_PER_PATH};

fn sandbox(content: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("hiera/data/common.yaml", &format!("conf: \"{content}\"\n"))
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            "resources:\n  - file: /etc/app.conf\n    content: \"conf={{lookup 'conf'}}\\n\"\n",
        )
        .root_file("etc/app.conf", "v0\n")
        .root_file("etc/other", "other\n");
    sb
}

fn set_content(sb: &Sandbox, content: &str) {
    sb.site_file("hiera/data/common.yaml", &format!("conf: \"{content}\"\n"));
}

#[test]
fn list_restore_and_undo_through_the_binary() {
    let sb = sandbox("v1");
    sb.agent(&["backup", "list"])
        .code(0)
        .stderr_has("no saved versions");
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    set_content(&sb, "v2");
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    let list = sb.agent(&["backup", "list", "/etc/app.conf"]);
    list.code(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", list.stdout);
    assert!(
        lines[0].contains(&sha256_hex(b"conf=v1\n")),
        "newest first: {}",
        list.stdout
    );
    assert!(lines[1].contains(&sha256_hex(b"v0\n")), "{}", list.stdout);
    assert!(
        lines.iter().all(|l| l.ends_with("  /etc/app.conf")),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains("v0\n") && !list.stdout.contains(sb.root().to_str().unwrap()));

    // A sha that is not a version of that path is refused; nothing written.
    let before = sb.snapshot();
    let foreign = sha256_hex(b"other\n");
    sb.agent(&["backup", "restore", "/etc/app.conf", "--sha", &foreign])
        .code(1)
        .stderr_has("not a saved version of /etc/app.conf");
    sb.agent(&["backup", "restore", "/etc/../../etc/app.conf"])
        .code(1);
    assert_eq!(before, sb.snapshot());

    // The oldest version by sha prefix; then undo with the newest.
    let v0 = sha256_hex(b"v0\n");
    sb.agent(&["backup", "restore", "/etc/app.conf", "--sha", &v0[..8]])
        .code(0)
        .stdout_has("restored /etc/app.conf");
    assert_eq!(sb.read_root("etc/app.conf"), "v0\n");
    sb.agent(&["backup", "restore", "/etc/app.conf"]).code(0);
    assert_eq!(
        sb.read_root("etc/app.conf"),
        "conf=v2\n",
        "the restore was undone"
    );
    // The agent converges it back anyway: nothing to do now.
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);

    sb.agent(&["backup", "prune", "--keep", "1"])
        .code(0)
        .stdout_has("pruned");
    let list = sb.agent(&["backup", "list", "/etc/app.conf"]);
    assert_eq!(list.stdout.lines().count(), 1, "{}", list.stdout);
}

#[test]
fn apply_prunes_old_versions_but_noop_never_does() {
    let sb = sandbox("final");
    let store = BackupStore::new(&sb.state());
    let path = sb.root().join("etc/app.conf");
    for i in 0..DEFAULT_KEEP_PER_PATH + 5 {
        store
            .save(
                &resources::stage::Stager::default(),
                &path,
                format!("old {i}\n").as_bytes(),
            )
            .unwrap();
    }
    let count = || store.list(Some(Path::new(&path))).unwrap().len();
    let index = fs::read(store.dir().join("index.jsonl")).unwrap();
    sb.agent(&["apply", "--noop", "--detailed-exitcodes"])
        .code(2);
    assert_eq!(count(), DEFAULT_KEEP_PER_PATH + 5, "noop pruned");
    assert_eq!(index, fs::read(store.dir().join("index.jsonl")).unwrap());
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(count(), DEFAULT_KEEP_PER_PATH, "retention after apply");
    let newest = store.list(Some(Path::new(&path))).unwrap().pop().unwrap();
    assert_eq!(
        newest.sha256,
        sha256_hex(b"v0\n"),
        "the version this run saved is kept"
    );
}
