//! Tests of `properties`: per-key edits, modes, owner and group, encodings,
//! redaction.

use super::*;
use serde_json::json;
use std::path::Path;

fn decl(path: &str, attrs: serde_json::Value, sensitive: &[&str]) -> Decl {
    Decl {
        id: ResourceId::new("properties", path),
        attrs: attrs.as_object().unwrap().clone(),
        sensitive: sensitive.iter().map(|s| s.to_string()).collect(),
        location: Default::default(),
    }
}

fn sandbox() -> (tempfile::TempDir, Context) {
    crate::testing::sandbox(&["stash/shared"])
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o777
}

#[test]
fn apply_is_idempotent_and_reports_per_key() {
    let (_dir, cx) = sandbox();
    let path = cx.root.join("stash/shared/stash-config.properties");
    let unmanaged = "#>>> Stash config\n#Mon Jan 01 00:00:00 UTC 2024\nsetup.displayName=Stash \\\n  Bench\r\n\njdbc.driver=org.postgresql.Driver\n";
    std::fs::write(
        &path,
        format!("{unmanaged}jdbc.url=jdbc\\:postgresql\\://old\\:5432/stash\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let attrs = json!({"values": {"jdbc.url": "jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2", "plugin.port": 7990, "ok": true}});
    let r = build(
        &decl("/stash/shared/stash-config.properties", attrs, &[]),
        &TypeEnv::default(),
    )
    .unwrap();
    let plan = r.check(&cx).unwrap();
    let changes = plan.changes().to_vec();
    let lines: Vec<String> = changes.iter().map(Change::line).collect();
    assert!(lines.contains(&"jdbc.url changed 'jdbc:postgresql://old:5432/stash' to 'jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2'".into()), "{lines:?}");
    assert!(
        lines.contains(&"plugin.port changed absent to '7990'".into()),
        "{lines:?}"
    );
    assert_eq!(changes.len(), 4, "three keys and the content");
    r.apply(&cx, plan).unwrap();
    assert!(
        r.check(&cx).unwrap().is_empty(),
        "second check finds nothing"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{unmanaged}jdbc.url=jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2\nok=true\nplugin.port=7990\n"));
    assert_eq!(mode_of(&path), 0o640, "existing mode kept");

    let moded = build(
        &decl(
            "/stash/shared/stash-config.properties",
            json!({"mode": "0600"}),
            &[],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    assert_eq!(
        moded.check(&cx).unwrap().changes()[0].line(),
        "mode changed '0640' to '0600'"
    );
    moded.apply(&cx, moded.check(&cx).unwrap()).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert!(moded.check(&cx).unwrap().is_empty());
}

#[test]
fn the_encoding_says_how_a_raw_non_ascii_line_reads() {
    let (_dir, cx) = sandbox();
    let path = cx.root.join("stash/shared/app.properties");
    std::fs::write(&path, "greeting=gr\u{fc}n\n").unwrap(); // raw UTF-8
    let with = |enc: Option<&str>| {
        let mut attrs = json!({"values": {"greeting": "gr\u{fc}n"}});
        if let Some(e) = enc {
            attrs["encoding"] = json!(e);
        }
        build(
            &decl("/stash/shared/app.properties", attrs, &[]),
            &TypeEnv::default(),
        )
        .unwrap()
    };
    // A UTF-8 reader (Stash) sees it in sync.
    assert!(with(None).check(&cx).unwrap().is_empty());
    assert!(with(Some("utf-8")).check(&cx).unwrap().is_empty());
    // Java's Properties.load(InputStream) reads ISO-8859-1: not in sync,
    // and the rewrite is ASCII both read alike.
    let latin = with(Some("iso-8859-1"));
    let plan = latin.check(&cx).unwrap();
    assert_eq!(
        plan.changes()[0].line(),
        "greeting changed 'gr\u{c3}\u{bc}n' to 'gr\u{fc}n'"
    );
    latin.apply(&cx, plan).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"greeting=gr\\u00FCn\n");
    assert!(latin.check(&cx).unwrap().is_empty());
    assert!(with(None).check(&cx).unwrap().is_empty());
    assert!(build(
        &decl("/x.properties", json!({"encoding": "ebcdic"}), &[]),
        &TypeEnv::default()
    )
    .is_err());
}

#[test]
fn sensitive_values_are_redacted_and_new_files_private() {
    let (_dir, cx) = sandbox();
    let attrs = json!({"values": {"jdbc.password": "s3cr3t-prop-test", "jdbc.user": "stash"}});
    let r = build(
        &decl(
            "/stash/shared/new.properties",
            attrs,
            &["values.jdbc.password"],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    let plan = r.check(&cx).unwrap();
    let changes = plan.changes().to_vec();
    let pw = changes
        .iter()
        .find(|c| c.property == "jdbc.password")
        .unwrap();
    assert!(
        pw.sensitive && !pw.line().contains("s3cr3t"),
        "{}",
        pw.line()
    );
    let user = changes.iter().find(|c| c.property == "jdbc.user").unwrap();
    assert!(!user.sensitive);
    let content = changes.iter().find(|c| c.property == "content").unwrap();
    assert!(content.printable_diff().is_none(), "a new file has no diff");
    r.apply(&cx, plan).unwrap();
    let path = cx.root.join("stash/shared/new.properties");
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "jdbc.password=s3cr3t-prop-test\njdbc.user=stash\n"
    );
    assert!(r.check(&cx).unwrap().is_empty());

    let plain = build(
        &decl(
            "/stash/shared/plain.properties",
            json!({"values": {"a": "1"}}),
            &[],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    plain.apply(&cx, plain.check(&cx).unwrap()).unwrap();
    assert_eq!(
        mode_of(&cx.root.join("stash/shared/plain.properties")),
        0o644
    );
    let nodir = build(
        &decl("/nodir/x.properties", json!({"values": {"a": "1"}}), &[]),
        &TypeEnv::default(),
    )
    .unwrap();
    assert!(nodir
        .apply(&cx, nodir.check(&cx).unwrap())
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
}

#[test]
fn remove_and_latin1_files_keep_other_bytes() {
    let (_dir, cx) = sandbox();
    let path = cx.root.join("stash/shared/l1.properties");
    let mut old = b"# caf\xe9\nname=caf\xe9\ngone=1\n".to_vec();
    std::fs::write(&path, &old).unwrap();
    let r = build(
        &decl(
            "/stash/shared/l1.properties",
            json!({"remove": ["gone"], "values": {"x": "é"}}),
            &[],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    r.apply(&cx, r.check(&cx).unwrap()).unwrap();
    assert!(r.check(&cx).unwrap().is_empty());
    old.truncate(old.len() - "gone=1\n".len());
    old.extend_from_slice(b"x=\\u00E9\n");
    assert_eq!(std::fs::read(&path).unwrap(), old);
    let only_remove = json!({"remove": ["gone"]});
    let r = build(
        &decl("/stash/shared/none.properties", only_remove, &[]),
        &TypeEnv::default(),
    )
    .unwrap();
    assert!(
        r.check(&cx).unwrap().is_empty(),
        "removing from a missing file is in sync"
    );
    let both = json!({"remove": ["a"], "values": {"a": "1"}});
    assert!(build(&decl("/x", both, &[]), &TypeEnv::default()).is_err());
    assert!(build(
        &decl("/x", json!({"ensure": "absent"}), &[]),
        &TypeEnv::default()
    )
    .is_err());
    assert!(build(
        &decl("/x", json!({"values": {"a": [1]}}), &[]),
        &TypeEnv::default()
    )
    .is_err());
}

#[test]
fn owner_and_group_are_checked_then_applied_with_the_content() {
    let (_dir, cx) = sandbox();
    let props = |attrs| {
        build(
            &decl("/stash/shared/stash-config.properties", attrs, &[]),
            &TypeEnv::default(),
        )
        .unwrap()
    };
    let path = cx.root.join("stash/shared/stash-config.properties");
    // An unknown owner or group fails the check: nothing is written.
    for (attrs, what) in [
        (
            json!({"values": {"a": "1"}, "owner": "no-such-user-xyz"}),
            "no such user: no-such-user-xyz",
        ),
        (
            json!({"values": {"a": "1"}, "group": "no-such-group-xyz"}),
            "no such group: no-such-group-xyz",
        ),
    ] {
        let err = props(attrs).check(&cx).unwrap_err().to_string();
        assert!(err.contains(what), "{err}");
        assert!(!path.exists(), "written before failing");
    }
    let r =
        props(json!({"values": {"a": "1"}, "owner": "nobody", "group": "nogroup", "mode": "0640"}));
    assert_eq!(
        r.autorequires(),
        [
            ResourceId::new("file", "/stash/shared/stash-config.properties"),
            ResourceId::new("file", "/stash/shared"),
            ResourceId::new("user", "nobody"),
            ResourceId::new("group", "nogroup")
        ]
    );
    if !nix::unistd::geteuid().is_root() {
        // Only root gives files away: the check said what it would do.
        return;
    }
    r.apply(&cx, r.check(&cx).unwrap()).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65534, 0o640),
        "a new file is the declared owner's"
    );
    assert!(r.check(&cx).unwrap().is_empty(), "idempotent");
    // Another owner declared: the ownership alone changes, said so.
    let root = props(json!({"values": {"a": "1"}, "owner": "root", "group": "root"}));
    let plan = root.check(&cx).unwrap();
    let lines: Vec<String> = plan.changes().iter().map(|c| c.line()).collect();
    assert_eq!(
        lines,
        [
            "owner changed 'nobody' to 'root'",
            "group changed 'nogroup' to 'root'"
        ]
    );
    root.apply(&cx, plan).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o640)
    );
    assert!(root.check(&cx).unwrap().is_empty());
    // A new value and an owner: the file is rewritten already owned.
    let both = props(json!({"values": {"a": "2"}, "owner": "nobody"}));
    let plan = both.check(&cx).unwrap();
    let names: Vec<&str> = plan.changes().iter().map(|c| c.property.as_str()).collect();
    assert_eq!(names, ["a", "owner", "content"]);
    both.apply(&cx, plan).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 0, 0o640)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a=2\n");
}

#[test]
fn replacing_keeps_the_owner() {
    if !nix::unistd::geteuid().is_root() {
        return; // only root can give a file away
    }
    let (_dir, cx) = sandbox();
    let path = cx.root.join("stash/shared/owned.properties");
    std::fs::write(&path, "a=1\n").unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let r = build(
        &decl(
            "/stash/shared/owned.properties",
            json!({"values": {"a": "2"}}),
            &[],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    r.apply(&cx, r.check(&cx).unwrap()).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (
            meta.uid(),
            meta.gid(),
            std::fs::read_to_string(&path).unwrap().as_str()
        ),
        (65534, 65534, "a=2\n")
    );
}
