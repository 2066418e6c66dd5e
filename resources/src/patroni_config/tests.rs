//! Tests of `patroni_config`: settings validation, the diff and its merge
//! patch, redaction, and an API that does not answer (the real REST API:
//! tests/patroni_roles.rs).

use super::*;
use serde_json::json;

fn built(attrs: Value) -> Result<Box<dyn Resource>, ResourceError> {
    build(
        &crate::testing::decl("patroni_config", "stash-db", attrs),
        &TypeEnv::default(),
    )
}

fn settings(v: Value) -> Result<Map<String, Value>, String> {
    validate_keys(v.as_object().unwrap(), DYNAMIC, "")
}

#[test]
fn settings_are_typed_and_unknown_keys_refused_with_a_hint() {
    let ok = settings(json!({"ttl": "10", "loop_wait": 2, "synchronous_mode": "on",
        "postgresql": {"use_slots": true, "parameters": {"work_mem": "8MB", "max_connections": 100, "auto_explain.log_min_duration": 5}}}))
    .unwrap();
    assert_eq!(ok["ttl"], json!(10));
    assert_eq!(ok["synchronous_mode"], json!(true));
    let err = settings(json!({"loop_wiat": 2})).unwrap_err();
    assert!(
        err.contains("'loop_wiat' is not a setting") && err.contains("did you mean 'loop_wait'"),
        "{err}"
    );
    let err = settings(json!({"postgresql": {"parameter": {}}})).unwrap_err();
    assert!(
        err.contains("did you mean 'postgresql.parameters'"),
        "{err}"
    );
    let err = settings(json!({"loop_wait": "fast"})).unwrap_err();
    assert!(err.contains("'loop_wait' must be a whole number"), "{err}");
    let err = settings(json!({"synchronous_mode": 3})).unwrap_err();
    assert!(err.contains("true or false"), "{err}");
    let err = settings(json!({"postgresql": {"parameters": {"Work-Mem": "1"}}})).unwrap_err();
    assert!(err.contains("not a PostgreSQL parameter name"), "{err}");
    let err = settings(json!({"postgresql": {"parameters": {"a": [1]}}})).unwrap_err();
    assert!(err.contains("string, number or boolean"), "{err}");
    assert!(settings(json!({"postgresql": {"pg_hba": "host all"}})).is_err());
}

#[test]
fn build_checks_the_api_the_auth_pair_and_the_timings() {
    let base = json!({"api": "http://127.0.0.1:8008/", "settings": {"loop_wait": 2}});
    assert!(built(base.clone()).is_ok());
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        built(b).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(with("api", json!("https://h:8008")).contains("https is not supported"));
    assert!(with("api", json!("h:8008")).contains("http://host:port"));
    assert!(with("settings", json!({})).contains("empty"));
    assert!(with("username", json!("patroni")).contains("go together"));
    assert!(with("timeout", json!("soon")).contains("timeout"));
    let err = with(
        "settings",
        json!({"ttl": 10, "loop_wait": 5, "retry_timeout": 4}),
    );
    assert!(err.contains("must not exceed ttl"), "{err}");
    assert!(with(
        "settings",
        json!({"ttl": 10, "loop_wait": 2, "retry_timeout": 4})
    )
    .is_empty());
    assert!(with("bogus", json!(1)).contains("unknown field"));
}

#[test]
fn the_patch_holds_only_what_differs() {
    let want = settings(json!({"ttl": 10, "loop_wait": 3, "synchronous_mode": true,
        "postgresql": {"use_pg_rewind": true, "parameters": {"hot_standby": "on", "max_wal_senders": 10, "work_mem": "8MB"}}}))
    .unwrap();
    let have = json!({"ttl": 10, "loop_wait": 2, "retry_timeout": 4, "synchronous_mode": true,
        "postgresql": {"use_pg_rewind": true, "parameters": {"hot_standby": true, "max_wal_senders": "10", "wal_level": "replica"}}});
    let mut changes = Vec::new();
    let patch = diff(&want, have.as_object(), "", &mut changes);
    assert_eq!(
        Value::Object(patch),
        json!({"loop_wait": 3, "postgresql": {"parameters": {"work_mem": "8MB"}}})
    );
    assert_eq!(
        changes,
        vec![
            (
                "loop_wait".to_string(),
                Some("2".to_string()),
                "3".to_string()
            ),
            (
                "postgresql.parameters.work_mem".to_string(),
                None,
                "8MB".to_string()
            ),
        ]
    );
    // Converged: nothing differs, nothing to send.
    let mut again = Vec::new();
    let mut have2 = have.clone();
    have2["loop_wait"] = json!(3);
    have2["postgresql"]["parameters"]["work_mem"] = json!("8MB");
    assert!(diff(&want, have2.as_object(), "", &mut again).is_empty() && again.is_empty());
}

#[test]
fn standby_cluster_is_checked_and_converged_only_on_a_standby_cluster() {
    let base = json!({"api": "http://127.0.0.1:8008", "settings": {"loop_wait": 2}});
    let with = |v: Value| {
        let mut b = base.clone();
        b["standby_cluster"] = v;
        build_typed(&crate::testing::decl("patroni_config", "golddr", b))
    };
    let err = with(json!({"hots": "gold"})).unwrap_err().to_string();
    assert!(
        err.contains("'standby_cluster.hots' is not a setting")
            && err.contains("did you mean 'standby_cluster.host'"),
        "{err}"
    );
    let err = with(json!({"port": "fivefourthreetwo"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'standby_cluster.port' must be a whole number"),
        "{err}"
    );
    let mut twice = base.clone();
    twice["settings"]["standby_cluster"] = json!({"host": "a"});
    twice["standby_cluster"] = json!({"host": "b"});
    let err = build_typed(&crate::testing::decl("patroni_config", "golddr", twice))
        .unwrap_err()
        .to_string();
    assert!(err.contains("given twice"), "{err}");

    let p = with(json!({"host": "gold", "port": "5432", "create_replica_methods": ["basebackup"]}))
        .unwrap();
    // A standby cluster: the differing keys only, under standby_cluster.
    let have = json!({"loop_wait": 2, "standby_cluster": {"host": "old-gold", "port": 5432}});
    let (patch, changes) = p.plan(have.as_object().unwrap());
    assert_eq!(
        Value::Object(patch),
        json!({"standby_cluster": {"host": "gold", "create_replica_methods": ["basebackup"]}})
    );
    let host = changes
        .iter()
        .find(|c| c.0 == "standby_cluster.host")
        .unwrap();
    assert_eq!(host.1.as_deref(), Some("old-gold"));
    assert_eq!(changes.len(), 2, "{changes:?}");
    // Promoted (no standby_cluster, or null): never added back.
    for have in [
        json!({"loop_wait": 2}),
        json!({"loop_wait": 2, "standby_cluster": null}),
    ] {
        let (patch, changes) = p.plan(have.as_object().unwrap());
        assert!(patch.is_empty() && changes.is_empty(), "{patch:?}");
    }
    // Empty: not managed.
    let p = with(json!({})).unwrap();
    let (patch, _) = p.plan(
        json!({"loop_wait": 2, "standby_cluster": {"host": "x"}})
            .as_object()
            .unwrap(),
    );
    assert!(patch.is_empty());
}

#[test]
fn changes_of_sensitive_settings_are_redacted() {
    let mut decl = crate::testing::decl(
        "patroni_config",
        "stash-db",
        json!({"api": "http://127.0.0.1:8008", "settings": {"loop_wait": 2,
            "standby_cluster": {"host": "h", "primary_conninfo_password": "s3cret-standby"}}}),
    );
    decl.sensitive.insert("settings.standby_cluster".into());
    decl.sensitive.insert("password".into());
    let p = build_typed(&decl).unwrap();
    assert!(p.is_sensitive("standby_cluster.host") && p.is_sensitive("standby_cluster"));
    assert!(!p.is_sensitive("loop_wait") && !p.is_sensitive("standby_clusterx"));
    decl.sensitive.insert("settings".into());
    assert!(build_typed(&decl).unwrap().is_sensitive("loop_wait"));
}

#[test]
fn an_unreachable_api_fails_after_the_timeout_naming_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let r = built(json!({"api": format!("http://127.0.0.1:{port}"), "settings": {"loop_wait": 2}, "timeout": 0}))
        .unwrap();
    let (_dir, cx) = crate::testing::sandbox(&[]);
    let err = r.check(&cx).unwrap_err().to_string();
    assert!(
        err.contains("patroni_config[stash-db]") && err.contains("does not answer"),
        "{err}"
    );
}
