//! Tests of `conf`: the three syntaxes, edits that keep every other byte,
//! idempotence, one staged write for several keys of a file, the kept
//! owner, `replace: false`, and a real Redis Sentinel rewriting its file.

use super::*;
use crate::testing::{decl, lines, Sandbox};
use serde_json::json;
use std::fs;
use std::path::Path;

fn conf(title: &str, attrs: serde_json::Value) -> Box<dyn Resource> {
    build(&decl("conf", title, attrs), &TypeEnv::default()).unwrap()
}

fn key(format: Format, name: &str) -> Key {
    Key::new(format, name, None).unwrap()
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

/// check → apply → check again finds nothing; returns the change lines.
fn converge(r: &dyn Resource, cx: &Context) -> Vec<String> {
    let plan = r.check(cx).unwrap();
    let shown = lines(&plan);
    assert!(!shown.is_empty(), "expected changes");
    r.apply(cx, plan).unwrap();
    let again = r.check(cx).unwrap();
    assert!(again.is_empty(), "not idempotent: {again:?}");
    shown
}

#[test]
fn redis_lines_split_as_redis_splits_them() {
    let args = |l: &str| -> Option<Vec<String>> {
        split_args(l).map(|v| v.into_iter().map(|(a, _)| a).collect())
    };
    assert_eq!(
        args("  sentinel monitor mymaster 127.0.0.1 6379 2").unwrap(),
        ["sentinel", "monitor", "mymaster", "127.0.0.1", "6379", "2"]
    );
    assert_eq!(
        args(r#"requirepass "a b\"c\x41\n" 'it\'s'"#).unwrap(),
        ["requirepass", "a b\"cA\n", "it's"]
    );
    assert_eq!(args(r#"save """#).unwrap(), ["save", ""]);
    assert_eq!(args("").unwrap(), Vec::<String>::new());
    for refused in [r#"x "open"#, r#"x "a"b"#, "x 'open"] {
        assert_eq!(args(refused), None, "{refused}");
    }
    for v in [
        "plain",
        "",
        "a b",
        "it's",
        "q\"q",
        "back\\slash",
        "tab\there",
        "ünï",
    ] {
        let line = format!("k {}", redis_quote(v));
        assert_eq!(args(&line).unwrap(), ["k", v], "{line}");
    }
    assert_eq!(redis_quote("127.0.0.1"), "127.0.0.1");
    assert_eq!(redis_quote("a b"), "\"a b\"");
}

#[test]
fn redis_edits_the_last_line_of_a_key_and_keeps_every_other_byte() {
    let old = "# Redis config\r\n\r\nbind 127.0.0.1 -::1\nMAXMEMORY 10mb\n# maxmemory 1gb\n  maxmemory   20mb  \nsave 900 1\nsave 300 10\n";
    let k = key(Format::Redis, "maxmemory");
    let (new, outcome) = edit(old, &k, Some(&s("100mb")), true);
    assert_eq!(
        new,
        "# Redis config\r\n\r\nbind 127.0.0.1 -::1\nMAXMEMORY 10mb\n# maxmemory 1gb\n  maxmemory 100mb  \nsave 900 1\nsave 300 10\n"
    );
    assert_eq!(
        outcome,
        Outcome::Set {
            from: Some("20mb".into())
        }
    );
    assert_eq!(edit(&new, &k, Some(&s("100mb")), true).1, Outcome::InSync);
    // Several words of value, compared as arguments whatever the quoting.
    let bind = key(Format::Redis, "bind");
    assert_eq!(
        edit(old, &bind, Some(&s("127.0.0.1   \"-::1\"")), true).1,
        Outcome::InSync
    );
    // A multi-word key; a missing key is appended (newline added first).
    let down = key(Format::Redis, "sentinel down-after-milliseconds mymaster");
    let (new, outcome) = edit("port 26379", &down, Some(&Value::Num("1000".into())), true);
    assert_eq!(
        new,
        "port 26379\nsentinel down-after-milliseconds mymaster 1000\n"
    );
    assert_eq!(outcome, Outcome::Set { from: None });
    // Directive names and Sentinel sub-commands are case-blind, the master
    // name is not.
    let (_, o) = edit(
        "SENTINEL Down-After-Milliseconds mymaster 1000\n",
        &down,
        Some(&Value::Num("1000".into())),
        true,
    );
    assert_eq!(o, Outcome::InSync);
    let (_, o) = edit(
        "sentinel down-after-milliseconds MyMaster 1000\n",
        &down,
        Some(&Value::Num("1000".into())),
        true,
    );
    assert_eq!(o, Outcome::Set { from: None });
    // Booleans are yes/no; absent removes every line of the key.
    let (new, o) = edit(old, &key(Format::Redis, "save"), None, true);
    assert_eq!(
        o,
        Outcome::Removed {
            from: "300 10".into()
        }
    );
    assert!(!new.contains("save") && new.starts_with("# Redis config\r\n\r\nbind"));
    let ao = key(Format::Redis, "appendonly");
    assert_eq!(
        edit("appendonly YES\n", &ao, Some(&Value::Bool(true)), true).1,
        Outcome::InSync
    );
    assert_eq!(
        edit("appendonly no\n", &ao, Some(&Value::Bool(true)), true).0,
        "appendonly yes\n"
    );
}

#[test]
fn replace_false_writes_a_missing_key_only() {
    let k = key(Format::Redis, "sentinel monitor mymaster");
    let want = s("127.0.0.91 6391 2");
    let moved = "sentinel monitor mymaster 127.0.0.92 6391 2\n";
    assert_eq!(
        edit(moved, &k, Some(&want), false),
        (moved.to_string(), Outcome::InSync)
    );
    assert!(matches!(
        edit(moved, &k, Some(&want), true).1,
        Outcome::Set { .. }
    ));
    let (new, o) = edit("port 26391\n", &k, Some(&want), false);
    assert_eq!(
        new,
        "port 26391\nsentinel monitor mymaster 127.0.0.91 6391 2\n"
    );
    assert_eq!(o, Outcome::Set { from: None });
}

#[test]
fn managed_once_replaces_a_packaged_value_once_then_leaves_the_daemons() {
    let t = Sandbox::new(&["etc/redis"]);
    let file = t.root.join("etc/redis/sentinel.conf");
    fs::write(&file, SENTINEL).unwrap();
    let r = conf(
        "/etc/redis/sentinel.conf:sentinel monitor mymaster",
        json!({"format": "redis", "value": "127.0.0.91 6391 2", "replace": false}),
    );
    assert_eq!(
        converge(&*r, &t.cx),
        ["sentinel monitor mymaster changed '127.0.0.1 6379 2' to '127.0.0.91 6391 2'"]
    );
    // The daemon moves it: not drift, not undone.
    let moved = fs::read_to_string(&file)
        .unwrap()
        .replace("127.0.0.91 6391 2", "127.0.0.92 6392 2");
    fs::write(&file, &moved).unwrap();
    assert!(r.check(&t.cx).unwrap().is_empty());
    // Gone altogether: written again.
    fs::write(&file, "port 26391\n").unwrap();
    assert_eq!(converge(&*r, &t.cx).len(), 1);
    // Another key of the file is not "written" by that record.
    let other = conf(
        "/etc/redis/sentinel.conf:sentinel monitor other",
        json!({"format": "redis", "value": "127.0.0.93 6393 2", "replace": false}),
    );
    fs::write(&file, "sentinel monitor other 127.0.0.1 6379 2\n").unwrap();
    assert_eq!(converge(&*other, &t.cx).len(), 1);
}

#[test]
fn pgpool_lines_are_read_like_postgresql_conf_and_strings_written_quoted() {
    let old = "# pgpool\nlisten_addresses = 'localhost'\t# what to listen on\nport = 9999\n#num_init_children = 32\nBackend_Hostname0 = 'db1'\n";
    let k = key(Format::Pgpool, "listen_addresses");
    let (new, o) = edit(old, &k, Some(&s("127.0.0.91")), true);
    assert_eq!(
        new,
        "# pgpool\nlisten_addresses = '127.0.0.91'\t# what to listen on\nport = 9999\n#num_init_children = 32\nBackend_Hostname0 = 'db1'\n"
    );
    assert_eq!(
        o,
        Outcome::Set {
            from: Some("localhost".into())
        }
    );
    let port = key(Format::Pgpool, "port");
    assert_eq!(
        edit(old, &port, Some(&Value::Num("9999".into())), true).1,
        Outcome::InSync
    );
    assert_eq!(edit(old, &port, Some(&s("9999")), true).1, Outcome::InSync);
    let host = key(Format::Pgpool, "backend_hostname0");
    assert_eq!(edit(old, &host, Some(&s("db1")), true).1, Outcome::InSync);
    let n = key(Format::Pgpool, "num_init_children");
    let (new, _) = edit(old, &n, Some(&Value::Num("4".into())), true);
    assert!(
        new.ends_with("Backend_Hostname0 = 'db1'\nnum_init_children = 4\n"),
        "{new}"
    );
    let fc = key(Format::Pgpool, "failover_command");
    let (new, _) = edit(
        "",
        &fc,
        Some(&s("/etc/pgpool2/failover.sh %d %h 'x'")),
        true,
    );
    assert_eq!(
        new,
        "failover_command = '/etc/pgpool2/failover.sh %d %h ''x'''\n"
    );
    assert_eq!(
        edit(
            &new,
            &fc,
            Some(&s("/etc/pgpool2/failover.sh %d %h 'x'")),
            true
        )
        .1,
        Outcome::InSync
    );
    let b = key(Format::Pgpool, "enable_consensus_with_half_votes");
    assert_eq!(
        edit(
            "enable_consensus_with_half_votes = true\n",
            &b,
            Some(&Value::Bool(true)),
            true
        )
        .1,
        Outcome::InSync
    );
    assert_eq!(
        edit("", &b, Some(&Value::Bool(true)), true).0,
        "enable_consensus_with_half_votes = on\n"
    );
}

#[test]
fn ini_keys_live_in_their_section() {
    let old = "; global\nname=x\n\n[server]\nhost = a   \nport=1\n\n[client]\nport = 2\n";
    let port = Key::new(Format::Ini, "port", Some("server")).unwrap();
    let (new, o) = edit(old, &port, Some(&Value::Num("3".into())), true);
    assert_eq!(
        new,
        "; global\nname=x\n\n[server]\nhost = a   \nport=3\n\n[client]\nport = 2\n"
    );
    assert_eq!(
        o,
        Outcome::Set {
            from: Some("1".into())
        }
    );
    // A new key goes at the end of its section, before the blank line.
    let user = Key::new(Format::Ini, "user", Some("server")).unwrap();
    let (new, _) = edit(old, &user, Some(&s("me")), true);
    assert_eq!(
        new,
        "; global\nname=x\n\n[server]\nhost = a   \nport=1\nuser = me\n\n[client]\nport = 2\n"
    );
    // A new section is appended; a global key goes before the first header.
    let k = Key::new(Format::Ini, "k", Some("new")).unwrap();
    assert!(edit(old, &k, Some(&s("v")), true)
        .0
        .ends_with("port = 2\n\n[new]\nk = v\n"));
    let g = Key::new(Format::Ini, "debug", None).unwrap();
    assert_eq!(
        edit(old, &g, Some(&Value::Bool(false)), true).0,
        "; global\nname=x\ndebug = false\n\n[server]\nhost = a   \nport=1\n\n[client]\nport = 2\n"
    );
    let host = Key::new(Format::Ini, "host", Some("server")).unwrap();
    assert_eq!(edit(old, &host, Some(&s("a")), true).1, Outcome::InSync);
    let (new, o) = edit(
        old,
        &Key::new(Format::Ini, "port", Some("client")).unwrap(),
        None,
        true,
    );
    assert_eq!(o, Outcome::Removed { from: "2".into() });
    assert!(new.ends_with("[client]\n"));
}

#[test]
fn build_validates_with_hints() {
    let ok = |title: &str, attrs: serde_json::Value| {
        build(&decl("conf", title, attrs), &TypeEnv::default()).map(|_| ())
    };
    let err = |title: &str, attrs: serde_json::Value| {
        ok(title, attrs.clone())
            .expect_err(&format!("{title} {attrs}"))
            .to_string()
    };
    ok(
        "/etc/redis/redis.conf:maxmemory",
        json!({"format": "redis", "value": "1gb"}),
    )
    .unwrap();
    ok(
        "maxmemory",
        json!({"path": "/etc/r.conf", "format": "redis", "value": "1gb"}),
    )
    .unwrap();
    ok(
        "any",
        json!({"path": "/etc/r.conf", "key": "port", "format": "pgpool", "value": 9999}),
    )
    .unwrap();
    ok(
        "/etc/a.ini:k",
        json!({"format": "ini", "section": "s", "ensure": "absent"}),
    )
    .unwrap();
    assert!(err("maxmemory", json!({"format": "redis", "value": "1"})).contains("<path>:<key>"));
    assert!(
        err("x", json!({"key": "k", "format": "redis", "value": "1"})).contains("without path")
    );
    assert!(err("r.conf:k", json!({"format": "redis", "value": "1"})).contains("absolute"));
    assert!(err("/r:k", json!({"format": "redis"})).contains("value is required"));
    assert!(err(
        "/r:k",
        json!({"format": "redis", "value": "1", "ensure": "absent"})
    )
    .contains("absent"));
    assert!(err("/r:k", json!({"format": "toml", "value": "1"}))
        .contains("expected one of `redis`, `pgpool`, `ini`"));
    assert!(err("/r:k", json!({"format": "redis", "value": "\"open"})).contains("unbalanced"));
    assert!(err("/r:k", json!({"format": "redis", "value": "a\nb"})).contains("one line"));
    assert!(
        err("/r:k", json!({"format": "redis", "value": [1]})).contains("string, number or boolean")
    );
    assert!(err(
        "/r:k",
        json!({"format": "redis", "value": "1", "section": "s"})
    )
    .contains("ini only"));
    assert!(
        err("/r:bad name", json!({"format": "pgpool", "value": "1"})).contains("parameter name")
    );
    assert!(err("/r:a=b", json!({"format": "ini", "value": "1"})).contains("ini key"));
    assert!(err(
        "/r:k",
        json!({"format": "redis", "value": "1", "validate_cmd": "true"})
    )
    .contains("no '%'"));
    assert!(err(
        "/r:k",
        json!({"format": "redis", "value": "1", "colour": "red"})
    )
    .contains("unknown field"));
}

/// A sentinel.conf as Debian ships it, in short: comments, blank lines, a
/// line without a final newline.
const SENTINEL: &str = "# Example sentinel.conf\n\n# port <sentinel-port>\nport 26379\n\n# daemonize yes\ndaemonize yes\npidfile \"/run/sentinel/redis-sentinel.pid\"\n\n# sentinel monitor <master-name> <ip> <redis-port> <quorum>\nsentinel monitor mymaster 127.0.0.1 6379 2\nsentinel down-after-milliseconds mymaster 30000\nacllog-max-len 128";

#[test]
fn converges_once_and_keeps_the_rest_of_the_file_byte_for_byte() {
    let t = Sandbox::new(&["etc/redis"]);
    let file = t.root.join("etc/redis/sentinel.conf");
    fs::write(&file, SENTINEL).unwrap();
    let r = conf(
        "/etc/redis/sentinel.conf:sentinel down-after-milliseconds mymaster",
        json!({"format": "redis", "value": 1000}),
    );
    assert_eq!(
        converge(&*r, &t.cx),
        ["sentinel down-after-milliseconds mymaster changed '30000' to '1000'"]
    );
    let after = fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        SENTINEL.replace("mymaster 30000", "mymaster 1000"),
        "only the value changed"
    );
    assert_eq!(t.cx.backup.list(Some(&file)).unwrap().len(), 1);
    // Absent: the line goes, the rest stays.
    let gone = conf(
        "/etc/redis/sentinel.conf:acllog-max-len",
        json!({"format": "redis", "ensure": "absent"}),
    );
    assert_eq!(
        converge(&*gone, &t.cx),
        ["acllog-max-len changed '128' to absent"]
    );
    assert!(fs::read_to_string(&file)
        .unwrap()
        .ends_with("mymaster 1000\n"));
    // A missing file with an absent key needs nothing.
    let none = conf(
        "/etc/redis/none.conf:x",
        json!({"format": "redis", "ensure": "absent"}),
    );
    assert!(none.check(&t.cx).unwrap().is_empty());
}

#[test]
fn several_keys_of_one_file_are_one_staged_write_and_the_owner_is_kept() {
    let t = Sandbox::new(&["etc/pgpool2"]);
    let file = t.root.join("etc/pgpool2/pgpool.conf");
    let old = "# pgpool.conf\nport = 9999\nlisten_addresses = 'localhost'\n";
    fs::write(&file, old).unwrap();
    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let rs = [
        conf(
            "/etc/pgpool2/pgpool.conf:port",
            json!({"format": "pgpool", "value": 9991}),
        ),
        conf(
            "/etc/pgpool2/pgpool.conf:listen_addresses",
            json!({"format": "pgpool", "value": "127.0.0.91"}),
        ),
        conf(
            "/etc/pgpool2/pgpool.conf:pid_file_name",
            json!({"format": "pgpool", "value": "/run/pgpool/pgpool.pid"}),
        ),
    ];
    let stager = t.cx.stager();
    stager.begin();
    for (i, r) in rs.iter().enumerate() {
        stager.stage_for(Some(i));
        let plan = r.check(&t.cx).unwrap();
        assert_eq!(plan.changes().len(), 1, "{i}");
        r.apply(&t.cx, plan).unwrap();
    }
    stager.stage_for(None);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        old,
        "nothing on disk before the commit"
    );
    assert!(stager.end().is_empty());
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "# pgpool.conf\nport = 9991\nlisten_addresses = '127.0.0.91'\npid_file_name = '/run/pgpool/pgpool.pid'\n"
    );
    assert_eq!(
        t.cx.backup.list(Some(&file)).unwrap().len(),
        1,
        "one write, one backup"
    );
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65534, 0o640)
    );
    for r in &rs {
        assert!(r.check(&t.cx).unwrap().is_empty());
    }
}

#[test]
fn sensitive_values_never_show() {
    let t = Sandbox::new(&["etc/redis"]);
    let mut d = decl(
        "conf",
        "/etc/redis/redis.conf:requirepass",
        json!({"format": "redis", "value": "s3cr3t-conf-pass"}),
    );
    d.sensitive.insert("value".into());
    let r = build(&d, &TypeEnv::default()).unwrap();
    let plan = r.check(&t.cx).unwrap();
    assert_eq!(
        lines(&plan),
        ["requirepass changed [redacted] to [redacted]"]
    );
    r.apply(&t.cx, plan).unwrap();
    let file = t.root.join("etc/redis/redis.conf");
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "requirepass s3cr3t-conf-pass\n"
    );
    assert_eq!(
        fs::metadata(&file).unwrap().mode() & 0o777,
        0o600,
        "a new file with a secret"
    );
    assert_eq!(
        crate::redact::redact("x s3cr3t-conf-pass y"),
        "x [redacted] y"
    );
}

#[test]
fn a_refused_validation_changes_nothing() {
    let t = Sandbox::new(&["etc/redis"]);
    let file = t.root.join("etc/redis/redis.conf");
    fs::write(&file, "port 6379\n").unwrap();
    let r = conf(
        "/etc/redis/redis.conf:port",
        json!({"format": "redis", "value": 0, "validate_cmd": "grep -q '^port [1-9]' % || { echo 'port must not be 0' >&2; exit 1; }"}),
    );
    let plan = r.check(&t.cx).unwrap();
    let err = r.apply(&t.cx, plan).unwrap_err().to_string();
    assert!(
        err.contains("port must not be 0") && err.contains("exit 1"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "port 6379\n");
    assert!(
        t.cx.backup.list(Some(&file)).unwrap().is_empty(),
        "no backup claims a change"
    );
    let names: Vec<_> = fs::read_dir(file.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["redis.conf"], "no temp left beside the file");
    let r = conf(
        "/etc/redis/redis.conf:port",
        json!({"format": "redis", "value": 6391, "validate_cmd": "grep -q '^port [1-9]' %"}),
    );
    converge(&*r, &t.cx);
    assert_eq!(fs::read_to_string(&file).unwrap(), "port 6391\n");
}

mod sentinel;
