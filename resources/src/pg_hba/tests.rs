//! Tests of `pg_hba`: rule parsing, validation, lint and rendering, and the
//! guarded write against a real server.

use super::*;
use crate::pg::live::{declared, Scene};
use crate::pg::testing::{decl, TestCluster};
use serde_json::json;

#[test]
fn rules_parse_from_lines() {
    let r = HbaRule::parse("host stashdb stashuser all trust").unwrap();
    assert_eq!(
        (r.kind.as_str(), r.address.as_deref(), r.method.as_str()),
        ("host", Some("all"), "trust")
    );
    let r = HbaRule::parse("local   all   all   peer map=admins").unwrap();
    assert_eq!(
        (r.address, r.options),
        (None, vec!["map=admins".to_string()])
    );
    let r =
        HbaRule::parse("hostssl all all 10.0.0.0 255.0.0.0 cert clientcert=verify-full").unwrap();
    assert_eq!(r.address.as_deref(), Some("10.0.0.0 255.0.0.0"));
    assert_eq!(r.method, "cert");
    let r = HbaRule::parse("host \"my db\" all ::1/128 md5").unwrap();
    assert_eq!(r.database, "\"my db\"");
    for bad in [
        "",
        "hots all all all trust",
        "host all all 10.0.0.0/8 trusted",
        "host all all trust",
        "local all all 127.0.0.1/32 trust",
        "host all all 10.0.0.0/33 md5",
        "host all all not-an-ip/8 md5",
        "host all all 10.0.0.1 md5",
        "host all all all md5 clientcert",
        "host all all all md5 # comment",
        "host \"all all all md5",
    ] {
        assert!(HbaRule::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn lint_flags_trust_for_remote_clients_only() {
    let rules: Vec<HbaRule> = [
        "host stashdb stashuser all trust",
        "host all all 0.0.0.0/0 trust",
        "host all all 127.0.0.1/32 trust",
        "host all all 127.0.0.0 255.0.0.0 trust",
        "host all all ::1/128 trust",
        "host all all samehost trust",
        "local all all trust",
        "host all all 10.0.0.0/8 scram-sha-256",
        "host all all 126.0.0.0/7 trust",
    ]
    .iter()
    .map(|l| HbaRule::parse(l).unwrap())
    .collect();
    let warnings = lint(&rules);
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[0].contains("host stashdb stashuser all trust"),
        "{}",
        warnings[0]
    );
    assert!(warnings[1].contains("0.0.0.0/0"));
    assert!(warnings[2].contains("126.0.0.0/7"));
}

#[test]
fn the_file_is_aligned_with_a_header() {
    let mut rules = default_rules("postgres");
    rules.push(HbaRule::parse("host stashdb stashuser all trust").unwrap());
    let text = render("/data", &rules);
    let expected = "\
# Managed by agent (pg_hba[/data]). Local changes are reverted.
# TYPE DATABASE USER      ADDRESS     METHOD        OPTIONS
local  all      postgres              peer
host   all      postgres  127.0.0.0/8 scram-sha-256
host   all      postgres  ::1/128     scram-sha-256
host   stashdb  stashuser all         trust
";
    assert_eq!(text, expected);
    // Every line parses back to its rule.
    let back: Vec<HbaRule> = text
        .lines()
        .skip(2)
        .map(|l| HbaRule::parse(l).unwrap())
        .collect();
    assert_eq!(back, rules);
}

#[test]
fn maps_and_validation_at_build() {
    let env = TypeEnv::default();
    let d = decl(
        "pg_hba",
        "/data",
        json!({"rules": [
            {"type": "hostssl", "database": "app db", "user": "app", "address": "10.1.0.0/16", "method": "scram-sha-256", "options": {"clientcert": "verify-ca"}},
            "host replication repl 10.1.0.0/16 scram-sha-256"
        ]}),
        &[],
    );
    let rules = decl_rules(&d).unwrap();
    assert_eq!(
        rules[0].render(&[0; 5]),
        "hostssl \"app db\" app 10.1.0.0/16 scram-sha-256 clientcert=verify-ca"
    );
    assert!(build(&d, &env).is_ok());
    // The seed writes its ACLs as one string: a rule per line.
    let seed = decl(
        "pg_hba",
        "/data",
        json!({"rules": "host stashdb stashuser all trust\n\n  host replication repl 10.1.0.0/16 scram-sha-256\n"}),
        &[],
    );
    let rules = decl_rules(&seed).unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[1],
        HbaRule::parse("host replication repl 10.1.0.0/16 scram-sha-256").unwrap()
    );
    for bad in [
        json!({"rules": ["host all all all foo"]}),
        json!({"rules": [{"type": "local", "database": "all", "user": "all", "address": "x", "method": "peer"}]}),
        json!({"rules": [{"type": "host", "database": "all", "user": "all", "method": "md5"}]}),
        json!({"rules": [], "bogus": 1}),
    ] {
        assert!(
            build(&decl("pg_hba", "/data", bad.clone(), &[]), &env).is_err(),
            "{bad}"
        );
    }
    assert!(build(&decl("pg_hba", "data", json!({}), &[]), &env).is_err());
    let r = build(
        &decl("pg_hba", "/data", json!({"defaults": false}), &[]),
        &env,
    )
    .unwrap();
    assert_eq!(
        r.autorequires(),
        vec![ResourceId::new("pg_cluster", "/data")]
    );
    assert_eq!(r.paths(), ["/data/pg_hba.conf", "/data"]);
    assert!(r.lints().is_empty());
    let open = build(
        &decl(
            "pg_hba",
            "/data",
            json!({"rules": ["host all all 0.0.0.0/0 trust", "host all all ::1/128 trust"]}),
            &[],
        ),
        &env,
    )
    .unwrap();
    let lints = open.lints();
    assert_eq!(lints.len(), 1, "{lints:?}");
    assert!(lints[0].contains("0.0.0.0/0"), "{lints:?}");
}

fn hba_for(c: &TestCluster, rules: serde_json::Value) -> Box<dyn Resource> {
    let datadir = c.datadir.display().to_string();
    declared(c, build, "pg_hba", &datadir, json!({ "rules": rules }), &[])
}

#[test]
fn rules_reach_a_real_server_and_a_rejected_file_is_rolled_back() {
    let scene = Scene::primary();
    let (c, cx) = (&scene.c, &scene.cx);
    let path = c.datadir.join("pg_hba.conf");

    let r = hba_for(
        c,
        json!([
            "host stashdb stashuser all trust",
            "host replication repl 127.0.0.1/32 scram-sha-256"
        ]),
    );
    let plan = r.check(cx).unwrap();
    let changes = plan.changes().to_vec();
    assert_eq!(changes.len(), 1);
    assert!(
        changes[0]
            .diff
            .as_ref()
            .unwrap()
            .contains("+host   stashdb"),
        "{:?}",
        changes[0].diff
    );
    r.apply(cx, plan).unwrap();
    assert!(r.check(cx).unwrap().is_empty(), "idempotent");
    let mut client = c.conn().connect().unwrap();
    let rows = client
        .query("SELECT type, database, user_name, address, auth_method FROM pg_hba_file_rules ORDER BY line_number", &[])
        .unwrap();
    let seen: Vec<String> = rows
        .iter()
        .map(|r| {
            let db: Vec<String> = r.get(1);
            let users: Vec<String> = r.get(2);
            let addr: Option<String> = r.get(3);
            format!(
                "{} {} {} {} {}",
                r.get::<_, String>(0),
                db.join(","),
                users.join(","),
                addr.unwrap_or_default(),
                r.get::<_, String>(4)
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            "local all postgres  peer",
            "host all postgres 127.0.0.0 scram-sha-256",
            "host all postgres ::1 scram-sha-256",
            "host stashdb stashuser all trust",
            "host replication repl 127.0.0.1 scram-sha-256",
        ]
    );
    drop(client);

    // The server rejects what the build accepts: restored, not reloaded.
    let before = std::fs::read(&path).unwrap();
    let bad = hba_for(
        c,
        json!([{"type": "host", "database": "all", "user": "all", "address": "127.0.0.1/32", "method": "md5", "options": "clientcert=verify-full"}]),
    );
    let plan = bad.check(cx).unwrap();
    let err = bad.apply(cx, plan).unwrap_err().to_string();
    assert!(
        err.contains("clientcert") && err.contains("restored"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "old file back byte for byte"
    );
    let mut client = c.conn().connect().expect("server still answers");
    assert_eq!(
        client
            .query_one(
                "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
                &[]
            )
            .unwrap()
            .get::<_, i64>(0),
        0
    );

    // Not running: just written.
    drop(client);
    c.stop();
    let r2 = hba_for(c, json!(["host all all 127.0.0.1/32 scram-sha-256"]));
    let plan = r2.check(cx).unwrap();
    r2.apply(cx, plan).unwrap();
    assert!(r2.check(cx).unwrap().is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    let last: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(
        last,
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"]
    );
}

#[test]
fn a_run_killed_before_the_servers_verdict_is_validated_or_rolled_back_by_the_next() {
    let scene = Scene::primary();
    let (c, cx) = (&scene.c, &scene.cx);
    let path = c.datadir.join("pg_hba.conf");
    let good = hba_for(c, json!(["host all all 127.0.0.1/32 scram-sha-256"]));
    good.apply(cx, good.check(cx).unwrap()).unwrap();
    assert!(!Intent::marker(cx, &path).exists(), "cleared once accepted");
    let accepted = std::fs::read(&path).unwrap();

    // A run whose rules the server rejects, killed right after the swap:
    // its intent is on disk, the rejected file in place.
    let bad = hba_for(
        c,
        json!([{"type": "host", "database": "all", "user": "all", "address": "127.0.0.1/32", "method": "md5", "options": "clientcert=verify-full"}]),
    );
    let plan = bad.check(cx).unwrap();
    let Steps::Rewrite(rewrite) = plan.steps::<Steps>(&bad.id().clone()).unwrap() else {
        panic!("a rewrite");
    };
    cx.backup
        .save(&crate::stage::Stager::default(), &path, &accepted)
        .unwrap();
    Intent {
        path: path.clone(),
        previous: Some(crate::backup::sha256_hex(&accepted)),
    }
    .write(cx)
    .unwrap();
    std::fs::write(&path, &rewrite.new).unwrap();

    // The next run: same content as wanted, yet not converged.
    let plan = bad.check(cx).unwrap();
    assert_eq!(plan.changes().len(), 1, "{:?}", plan.changes());
    assert_eq!(plan.changes()[0].property, "validation");
    let err = bad.apply(cx, plan).unwrap_err().to_string();
    assert!(err.contains("rejects"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), accepted, "rolled back");
    assert!(!Intent::marker(cx, &path).exists());
    // And it stays refused, never called converged.
    assert!(!bad.check(cx).unwrap().is_empty());

    // An intent over a file the server accepts: validated, then in sync.
    Intent {
        path: path.clone(),
        previous: None,
    }
    .write(cx)
    .unwrap();
    let plan = good.check(cx).unwrap();
    assert_eq!(plan.changes()[0].property, "validation");
    good.apply(cx, plan).unwrap();
    assert!(good.check(cx).unwrap().is_empty());
}

#[test]
fn a_pending_intent_survives_the_backup_stores_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cx = crate::pg::testing::context(&dir.path().join("root"), &dir.path().join("state"));
    let path = dir.path().join("root/data/pg_hba.conf");
    Intent {
        path: path.clone(),
        previous: None,
    }
    .write(&cx)
    .unwrap();
    crate::backup::prune(&cx.backup, Some(1), None).unwrap();
    assert!(Intent::read(&cx, &path).unwrap().is_some());
}
