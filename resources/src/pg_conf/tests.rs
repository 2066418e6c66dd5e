//! Tests of `pg_conf`: the postgresql.conf lexer, quoting and edits, and
//! reload / restart against a real server.

use super::*;
use crate::pg::live::{declared, Scene};
use crate::pg::testing::{context, decl, TestCluster};
use serde_json::json;
use std::path::Path;

fn s(v: &str) -> Setting {
    Setting::Str(v.into())
}

#[test]
fn lines_parse_like_the_server() {
    let l = parse_line("shared_buffers = 128MB\t\t\t# min 128kB").unwrap();
    assert_eq!(
        (l.name.as_str(), l.value.as_str()),
        ("shared_buffers", "128MB")
    );
    assert_eq!(l.span, (17, 22));
    let l = parse_line("  Listen_Addresses='a, b'  ").unwrap();
    assert_eq!(
        (l.name.as_str(), l.value.as_str()),
        ("listen_addresses", "a, b")
    );
    let l = parse_line("archive_command 'cp %p ''/x y''\\\\z' # c").unwrap();
    assert_eq!(l.value, "cp %p '/x y'\\z");
    assert_eq!(parse_line("x = 'a\\'b'").unwrap().value, "a'b");
    assert_eq!(parse_line("x = '\\101\\tB'").unwrap().value, "A\tB");
    assert_eq!(
        parse_line("pg_stat_statements.max = 10000").unwrap().name,
        "pg_stat_statements.max"
    );
    for not_setting in [
        "",
        "   ",
        "# x = 1",
        "#max_connections = 100\t# (change requires restart)",
        "include 'other.conf'",
        "x = 'open",
        "x = a b",
        "x =",
    ] {
        assert_eq!(parse_line(not_setting), None, "{not_setting:?}");
    }
}

#[test]
fn quoting_round_trips() {
    for v in [
        "replica",
        "128MB",
        "0.9",
        "*",
        "localhost,127.0.0.1",
        "it's",
        "C:\\dir",
        "",
        "/var/run/postgresql",
        "on",
    ] {
        let line = format!("x = {}", quote(v));
        assert_eq!(parse_line(&line).unwrap().value, v, "{line}");
    }
    assert_eq!(quote("128MB"), "128MB");
    assert_eq!(quote("pg_stat_statements"), "pg_stat_statements");
    assert_eq!(quote("*"), "'*'");
    assert_eq!(quote("it's"), "'it''s'");
    assert_eq!(quote("a\\b"), "'a\\\\b'");
    assert_eq!(Setting::Bool(true).render(), "on");
    assert_eq!(Setting::Num("-1".into()).render(), "-1");
}

#[test]
fn values_compare_normalized() {
    assert!(Setting::Bool(true).matches("true"));
    assert!(Setting::Bool(true).matches("ON"));
    assert!(Setting::Bool(false).matches("0"));
    assert!(!Setting::Bool(false).matches("yes"));
    assert!(Setting::Num("0.9".into()).matches("0.90"));
    assert!(!Setting::Num("100".into()).matches("101"));
    assert!(s("replica").matches("replica"));
    assert!(!s("Replica").matches("replica"));
}

#[test]
fn edit_replaces_the_last_active_line_and_appends_the_rest() {
    let old = "# comment\n#wal_level = minimal\nwal_level = minimal # first\nwal_level = archive   # wins\nmax_connections = 100\n";
    let want = vec![
        ("wal_level".to_string(), s("replica")),
        ("max_connections".to_string(), Setting::Num("100".into())),
        ("listen_addresses".to_string(), s("*")),
    ];
    let (new, edits) = edit(old, &want);
    assert_eq!(
        new,
        "# comment\n#wal_level = minimal\nwal_level = minimal # first\nwal_level = replica   # wins\nmax_connections = 100\nlisten_addresses = '*'\n"
    );
    assert_eq!(edits.len(), 2);
    assert_eq!(
        edits[0],
        Edit {
            name: "wal_level".into(),
            from: Some("archive".into()),
            to: "replica".into()
        }
    );
    assert_eq!(edits[1].from, None);
    let (again, none) = edit(&new, &want);
    assert!(none.is_empty());
    assert_eq!(again, new);
    // A file without a final newline gets one before the appended line.
    assert_eq!(edit("a = 1", &[("b".into(), s("x"))]).0, "a = 1\nb = x\n");
}

#[test]
fn build_validates() {
    let env = TypeEnv::default();
    let ok = json!({"datadir": "/d", "settings": {"work_mem": "4MB"}});
    assert!(build(&decl("pg_conf", "x", ok, &[]), &env).is_ok());
    for bad in [
        json!({"settings": {}}),
        json!({"datadir": "d", "settings": {}}),
        json!({"datadir": "/d", "settings": {"bad name": 1}}),
        json!({"datadir": "/d", "settings": {"include": "x"}}),
        json!({"datadir": "/d", "settings": {"x": [1]}}),
        json!({"datadir": "/d", "settings": {"x": "a\nb"}}),
        json!({"datadir": "/d", "settings": {"work_mem": 1, "WORK_MEM": 2}}),
        json!({"datadir": "/d", "settings": {}, "port": 0}),
    ] {
        assert!(
            build(&decl("pg_conf", "x", bad.clone(), &[]), &env).is_err(),
            "{bad}"
        );
    }
}

/// A pg_conf for the test cluster.
fn conf_for(c: &TestCluster, settings: serde_json::Value) -> Box<dyn Resource> {
    let attrs = json!({"datadir": c.datadir.display().to_string(), "settings": settings});
    declared(c, build, "pg_conf", "main", attrs, &["superuser_password"])
}

fn show(c: &TestCluster, name: &str) -> String {
    let mut client = c.conn().connect().unwrap();
    client
        .query_one(&format!("SHOW {name}"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn reload_and_restart_a_real_server() {
    let scene = Scene::primary();
    let (c, cx) = (&scene.c, &scene.cx);

    // A sighup setting: reload.
    let r = conf_for(
        c,
        json!({"work_mem": "8MB", "log_line_prefix": "%m [%p] it's "}),
    );
    let plan = r.check(cx).unwrap();
    let lines = crate::testing::lines(&plan);
    assert_eq!(
        lines,
        [
            "log_line_prefix (reload) changed absent to '%m [%p] it's '",
            "work_mem (reload) changed absent to '8MB'"
        ]
    );
    r.apply(cx, plan).unwrap();
    let pid_before = pg::postmaster_pid(&c.datadir).unwrap();
    // pg_reload_conf() only signals; give the backends a moment.
    let mut tries = 0;
    while show(c, "work_mem") != "8MB" && tries < 50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        tries += 1;
    }
    assert_eq!(show(c, "work_mem"), "8MB");
    assert_eq!(show(c, "log_line_prefix"), "%m [%p] it's ");
    assert!(r.check(cx).unwrap().is_empty(), "idempotent");
    assert!(cx.runner.history().iter().all(|h| !h.contains("restart")));
    assert_eq!(
        cx.backup
            .list(Some(&c.datadir.join("postgresql.conf")))
            .unwrap()
            .len(),
        1
    );

    // A postmaster setting: restart.
    let r = conf_for(c, json!({"max_connections": 42, "work_mem": "8MB"}));
    let plan = r.check(cx).unwrap();
    let changes = plan.changes().to_vec();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].line(),
        "max_connections (restart) changed '100' to '42'"
    );
    r.apply(cx, plan).unwrap();
    assert_eq!(show(c, "max_connections"), "42");
    assert_ne!(
        pg::postmaster_pid(&c.datadir).unwrap(),
        pid_before,
        "restarted"
    );
    assert!(r.check(cx).unwrap().is_empty(), "idempotent after restart");

    // Unknown names are refused while the server runs, accepted when not.
    let r = conf_for(c, json!({"work_mme": "8MB", "my_ext.flag": "on"}));
    let err = r.check(cx).unwrap_err().to_string();
    assert!(
        err.contains("unknown settings: work_mme") && !err.contains("my_ext"),
        "{err}"
    );
    c.stop();
    let r = conf_for(c, json!({"work_mem": "16MB"}));
    let plan = r.check(cx).unwrap();
    let changes = plan.changes().to_vec();
    assert_eq!(changes[0].line(), "work_mem changed '8MB' to '16MB'");
    r.apply(cx, plan).unwrap();
    assert!(r.check(cx).unwrap().is_empty());
    let text = std::fs::read_to_string(c.datadir.join("postgresql.conf")).unwrap();
    assert!(
        text.contains("work_mem = 16MB\n") && text.contains("#work_mem = 4MB"),
        "comments kept"
    );
}

#[test]
fn a_running_server_that_refuses_the_agent_is_an_error() {
    let scene = Scene::primary();
    let (c, cx) = (&scene.c, &scene.cx);
    let attrs = json!({
        "datadir": c.datadir.display().to_string(),
        "settings": {"work_mem": "8MB"},
        "port": c.port,
        "superuser_password": "wrong-password",
    });
    let r = build(&decl("pg_conf", "main", attrs, &[]), &TypeEnv::default()).unwrap();
    let err = r.check(cx).unwrap_err().to_string();
    assert!(err.contains("is running"), "{err}");
}

#[test]
fn sensitive_values_stay_hidden_and_new_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let cx = context(Path::new("/"), state.path());
    let datadir = dir.path().display().to_string();
    let file = dir.path().join("conf.d/agent.conf");
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    let attrs = json!({
        "datadir": datadir,
        "file": file.display().to_string(),
        "settings": {"ssl_key_passphrase_command": "echo pass-in-conf-9", "port": 5999},
        "port": pg::testing::free_port("127.0.0.1"),
    });
    let r = build(
        &decl(
            "pg_conf",
            "inc",
            attrs,
            &["settings.ssl_key_passphrase_command"],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    let plan = r.check(&cx).unwrap();
    let lines = crate::testing::lines(&plan);
    assert_eq!(
        lines,
        [
            "port changed absent to '5999'",
            "ssl_key_passphrase_command changed [redacted] to [redacted]"
        ]
    );
    r.apply(&cx, plan).unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "port = 5999\nssl_key_passphrase_command = 'echo pass-in-conf-9'\n"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(r.check(&cx).unwrap().is_empty());
}

#[test]
fn a_data_dir_run_by_patroni_is_left_to_patroni_with_the_keys_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let cx = context(Path::new("/"), state.path());
    let datadir = dir.path().display().to_string();
    std::fs::write(dir.path().join("postgresql.conf"), "port = 5432\n").unwrap();
    std::fs::write(dir.path().join("pg_hba.conf"), "local all all peer\n").unwrap();
    let conf = build(
        &decl(
            "pg_conf",
            "main",
            json!({"datadir": datadir, "settings": {"work_mem": "8MB"}}),
            &[],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    let hba = crate::pg_hba::build(
        &decl(
            "pg_hba",
            &datadir,
            json!({"rules": ["host all all 127.0.0.1/32 trust"]}),
            &[],
        ),
        &TypeEnv::default(),
    )
    .unwrap();
    // Not Patroni's (yet): both would edit.
    assert!(!conf.check(&cx).unwrap().is_empty());
    assert!(!hba.check(&cx).unwrap().is_empty());
    std::fs::write(dir.path().join("patroni.dynamic.json"), "{}").unwrap();
    for r in [&conf, &hba] {
        let err = r.check(&cx).unwrap_err().to_string();
        assert!(
            err.contains("Patroni runs the server")
                && err.contains("patroni::dcs")
                && err.contains("patroni::pg_hba"),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("postgresql.conf")).unwrap(),
        "port = 5432\n"
    );
}
