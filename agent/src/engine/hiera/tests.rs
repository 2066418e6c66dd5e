//! End-to-end tests of [`Hiera`] over real hiera.yaml and data trees in
//! temporary directories, seeded with the Stash deployment's data: a node
//! level, a role level, an OS level and common.yaml, each overriding some
//! keys, as the product ships them.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::{Found, Hiera, HieraError, Merge};

const HIERA_YAML: &str = r#"---
version: 5
defaults:
  datadir: data
  data_hash: yaml_data
hierarchy:
  - name: "Per-node data"
    path: "nodes/%{trusted.certname}.yaml"
  - name: "Per-role data"
    path: "roles/%{role}.yaml"
  - name: "Per-OS defaults"
    path: "os/%{facts.os.family}.yaml"
  - name: "Common data"
    path: "common.yaml"
"#;

const COMMON: &str = r#"---
lookup_options:
  pgsql_server::password:
    convert_to: Sensitive
  pgsql_server::settings:
    merge: deep
  base::packages:
    merge: unique
  "^stash::.*_hosts$":
    merge:
      strategy: unique
pgsql_server::db_name: 'stashdb'
pgsql_server::db_user: 'stash'
pgsql_server::port: 5432
pgsql_server::password: 'common-pw-e2e'
pgsql_server::settings:
  max_connections: 100
  shared_buffers: 128MB
  log: {level: warning, dest: stderr}
pgsql_server::hba:
  - {type: host, database: stashdb, address: 127.0.0.1/32}
base::packages: [curl, vim]
base::admin_hosts: [10.0.0.1, 10.0.0.2]
stash::allowed_hosts: "%{alias('base::admin_hosts')}"
stash::db_host: localhost
stash::jdbc_url: "jdbc:postgresql://%{lookup('stash::db_host')}:%{lookup('pgsql_server::port')}/%{hiera('pgsql_server::db_name')}"
stash::tier: common
motd: "Welcome to %{::hostname} (%{facts.os.family}, %{scope('role')}): 100%{literal('%')} managed%{nope}"
"#;

const OS_DEBIAN: &str = r#"
base::packages: [apt-transport-https, curl]
pgsql_server::bindir: /usr/lib/postgresql/15/bin
pgsql_server::settings:
  shared_buffers: 256MB
stash::tier: os
"#;

const ROLE_STASH: &str = r#"
pgsql_server::settings:
  max_connections: 200
  log: {level: info}
base::packages: [openjdk-17-jre]
stash::tier: role
"#;

const NODE_STASH: &str = r#"
pgsql_server::password: 'node-secret-e2e'
stash::db_host: db.example
pgsql_server::settings:
  log: {dest: syslog}
stash::tier: node
"#;

/// A hiera tree on disk.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn stash() -> Tree {
        Tree::new(HIERA_YAML)
            .write("data/common.yaml", COMMON)
            .write("data/os/Debian.yaml", OS_DEBIAN)
            .write("data/roles/stash_server.yaml", ROLE_STASH)
            .write("data/nodes/stash-server.yaml", NODE_STASH)
    }

    fn new(hiera_yaml: &str) -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        t.write("hiera.yaml", hiera_yaml)
    }

    fn write(self, rel: &str, text: &str) -> Tree {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn hiera(&self) -> Hiera {
        Hiera::load(&self.path("hiera.yaml")).unwrap()
    }
}

fn scope(certname: &str, role: &str, family: &str) -> Value {
    json!({
        "facts": {"os": {"family": family, "name": "Debian"}, "services": ["web", "db"]},
        "trusted": {"certname": certname},
        "role": role,
        "hostname": certname,
        "os": {"family": family},
    })
}

fn stash_scope() -> Value {
    scope("stash-server", "stash_server", "Debian")
}

fn value(h: &Hiera, key: &str, s: &Value, merge: Option<Merge>) -> Value {
    h.lookup(key, s, merge)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .value
}

#[test]
fn each_level_overrides_the_next() {
    let t = Tree::stash();
    let h = t.hiera();
    let tier = |s: Value| value(&h, "stash::tier", &s, None);
    assert_eq!(tier(stash_scope()), json!("node"));
    assert_eq!(
        tier(scope("other", "stash_server", "Debian")),
        json!("role")
    );
    assert_eq!(tier(scope("other", "db", "Debian")), json!("os"));
    assert_eq!(tier(scope("other", "db", "RedHat")), json!("common"));
    // Undefined scope variables read as "", so the level finds no file.
    assert_eq!(tier(json!({})), json!("common"));
    assert_eq!(
        value(&h, "pgsql_server::db_name", &stash_scope(), None),
        json!("stashdb")
    );
    assert_eq!(
        value(&h, "pgsql_server::port", &stash_scope(), None),
        json!(5432)
    );
}

#[test]
fn password_is_sensitive_and_registered() {
    let t = Tree::stash();
    let h = t.hiera();
    let f = h
        .lookup("pgsql_server::password", &stash_scope(), None)
        .unwrap();
    assert_eq!(
        f,
        Found {
            value: json!("node-secret-e2e"),
            sensitive: true
        }
    );
    assert!(resources::redact::contains_secret("pw=node-secret-e2e"));
    let name = h
        .lookup("pgsql_server::db_name", &stash_scope(), None)
        .unwrap();
    assert!(!name.sensitive);
}

#[test]
fn lookup_options_merges_and_explicit_merge_wins() {
    let t = Tree::stash();
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(
        value(&h, "pgsql_server::settings", &s, None),
        json!({"max_connections": 200, "shared_buffers": "256MB", "log": {"level": "info", "dest": "syslog"}})
    );
    assert_eq!(
        value(&h, "pgsql_server::settings", &s, Some(Merge::Hash)),
        json!({"max_connections": 200, "shared_buffers": "256MB", "log": {"dest": "syslog"}})
    );
    assert_eq!(
        value(&h, "pgsql_server::settings", &s, Some(Merge::First)),
        json!({"log": {"dest": "syslog"}})
    );
    assert_eq!(
        value(&h, "base::packages", &s, None),
        json!(["openjdk-17-jre", "apt-transport-https", "curl", "vim"])
    );
    assert_eq!(
        value(&h, "base::packages", &s, Some(Merge::First)),
        json!(["openjdk-17-jre"])
    );
    // A regex entry in lookup_options applies to matching keys.
    assert_eq!(
        value(&h, "stash::allowed_hosts", &s, None),
        json!(["10.0.0.1", "10.0.0.2"])
    );
}

#[test]
fn unique_and_deep_on_demand() {
    let t = Tree::stash().write(
        "data/nodes/stash-server.yaml",
        "extra: [a, [b, c]]\nmap: {x: {l: [1]}}\n",
    );
    let t = t.write(
        "data/common.yaml",
        "extra: [c, d, a]\nmap: {x: {l: [2, 1], k: v}, y: 1}\n",
    );
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(
        value(&h, "extra", &s, Some(Merge::Unique)),
        json!(["a", "b", "c", "d"])
    );
    assert_eq!(
        value(&h, "map", &s, Some(Merge::Deep)),
        json!({"x": {"l": [2, 1], "k": "v"}, "y": 1})
    );
    let e = h.lookup("map", &s, Some(Merge::Unique)).unwrap_err();
    assert!(matches!(e, HieraError::Lookup { .. }), "{e}");
}

#[test]
fn interpolation_in_values() {
    let t = Tree::stash();
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(
        value(&h, "stash::jdbc_url", &s, None),
        json!("jdbc:postgresql://db.example:5432/stashdb")
    );
    assert_eq!(
        value(&h, "motd", &s, None),
        json!("Welcome to stash-server (Debian, stash_server): 100% managed")
    );
}

#[test]
fn alias_keeps_type_and_sensitivity() {
    let t = Tree::stash().write(
        "data/roles/stash_server.yaml",
        "copy: \"%{alias('pgsql_server::password')}\"\nport_copy: \"%{alias('pgsql_server::port')}\"\nin_text: \"pw=%{lookup('pgsql_server::password')}\"\n",
    );
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(value(&h, "port_copy", &s, None), json!(5432));
    let f = h.lookup("copy", &s, None).unwrap();
    assert!(f.sensitive);
    assert_eq!(f.value, json!("node-secret-e2e"));
    // In a string, a Sensitive value reads as Puppet prints it.
    assert_eq!(
        value(&h, "in_text", &s, None),
        json!("pw=Sensitive [value redacted]")
    );
}

#[test]
fn dotted_keys_dig() {
    let t = Tree::stash();
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(
        value(&h, "pgsql_server::settings.log.level", &s, None),
        json!("info")
    );
    assert_eq!(
        value(&h, "pgsql_server::hba.0.database", &s, None),
        json!("stashdb")
    );
    let e = h
        .lookup("pgsql_server::settings.nope", &s, None)
        .unwrap_err();
    assert!(matches!(&e, HieraError::NotFound { key, .. } if key == "pgsql_server::settings.nope"));
    let e = h.lookup("pgsql_server::db_name.x", &s, None).unwrap_err();
    assert!(e.to_string().contains("type mismatch"), "{e}");
}

#[test]
fn missing_key_lists_every_file_searched() {
    let t = Tree::stash();
    let h = t.hiera();
    let e = h.lookup("no::such_key", &stash_scope(), None).unwrap_err();
    let HieraError::NotFound { key, searched } = &e else {
        panic!("{e}")
    };
    assert_eq!(key, "no::such_key");
    let want: Vec<String> = [
        "data/nodes/stash-server.yaml",
        "data/roles/stash_server.yaml",
        "data/os/Debian.yaml",
        "data/common.yaml",
    ]
    .iter()
    .map(|p| t.path(p).display().to_string())
    .collect();
    assert_eq!(searched, &want);
    let text = e.to_string();
    assert!(text.contains("\"no::such_key\""), "{text}");
    for p in &want {
        assert!(text.contains(p.as_str()), "{text}");
    }
    assert!(text.contains("hint:"), "{text}");
}

#[test]
fn malformed_data_is_an_error_with_file_and_line() {
    let t = Tree::stash().write("data/roles/stash_server.yaml", "ok: 1\nbad: [x, y\nz: 2\n");
    let h = t.hiera();
    // Even a key the node level answers fails: lookup_options are read from
    // every level first (as Puppet does), and a broken file must not pass.
    let e = h.lookup("stash::tier", &stash_scope(), None).unwrap_err();
    let HieraError::Data { file, line, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(file, &t.path("data/roles/stash_server.yaml"));
    assert!(line.is_some_and(|l| l >= 2), "{e}");
    assert!(
        e.to_string().starts_with(&format!("{}:", file.display())),
        "{e}"
    );
}

#[test]
fn interpolation_loop_names_the_chain() {
    let t = Tree::stash().write(
        "data/common.yaml",
        "a: \"x%{lookup('b')}\"\nb: \"%{alias('c')}\"\nc: \"%{lookup('a')}\"\nself: \"%{lookup('self')}\"\n",
    );
    let h = t.hiera();
    let e = h.lookup("a", &stash_scope(), None).unwrap_err();
    assert!(matches!(e, HieraError::Interpolation { .. }), "{e}");
    assert!(e.to_string().contains("a -> b -> c -> a"), "{e}");
    let e = h.lookup("self", &stash_scope(), None).unwrap_err();
    assert!(e.to_string().contains("self -> self"), "{e}");
}

#[test]
fn data_files_are_parsed_once() {
    let t = Tree::stash();
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(value(&h, "stash::db_host", &s, None), json!("db.example"));
    let after_first = h.cached_files();
    assert!(after_first >= 1);
    std::fs::write(
        t.path("data/nodes/stash-server.yaml"),
        "stash::db_host: changed\n",
    )
    .unwrap();
    assert_eq!(value(&h, "stash::db_host", &s, None), json!("db.example"));
    value(&h, "pgsql_server::db_name", &s, None);
    assert_eq!(h.cached_files(), 4);
    // A new Hiera (a new run) sees the change.
    assert_eq!(
        value(&t.hiera(), "stash::db_host", &s, None),
        json!("changed")
    );
}

#[test]
fn explain_walks_levels_and_redacts() {
    let t = Tree::stash();
    let h = t.hiera();
    let other = scope("web-1", "stash_server", "Debian");
    let (res, text) = h.explain("pgsql_server::password", &other, None, false);
    assert_eq!(res.unwrap().value, json!("common-pw-e2e"));
    assert!(
        text.starts_with("Searching for \"pgsql_server::password\"\n"),
        "{text}"
    );
    for want in [
        "Global Data Provider (hiera configuration version 5)",
        &format!("Using configuration \"{}\"", t.path("hiera.yaml").display()),
        "Hierarchy entry \"Per-node data\"",
        &format!("Path \"{}\"", t.path("data/nodes/web-1.yaml").display()),
        "Original path: \"nodes/%{trusted.certname}.yaml\"",
        "Path not found",
        "Hierarchy entry \"Per-role data\"",
        "No such key: \"pgsql_server::password\"",
        "Found key: \"pgsql_server::password\" value: Sensitive [value redacted]",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("common-pw-e2e"), "{text}");
    let (_, shown) = h.explain("pgsql_server::password", &other, None, true);
    assert!(shown.contains("value: \"common-pw-e2e\""), "{shown}");

    let (_, merged) = h.explain("pgsql_server::settings", &stash_scope(), None, false);
    for want in [
        "Using merge options from \"lookup_options\" hash",
        "Merge strategy deep",
        "Merged result: {",
    ] {
        assert!(merged.contains(want), "missing {want:?} in:\n{merged}");
    }
    let (_, interp) = h.explain("stash::jdbc_url", &stash_scope(), None, false);
    assert!(
        interp.contains("Interpolation on \"%{lookup('stash::db_host')}\""),
        "{interp}"
    );
    assert!(
        interp.contains("Searching for \"stash::db_host\""),
        "{interp}"
    );
    let (res, missing) = h.explain("nope", &stash_scope(), None, false);
    assert!(matches!(res, Err(HieraError::NotFound { .. })));
    assert_eq!(
        missing.matches("No such key: \"nope\"").count(),
        4,
        "{missing}"
    );
}

#[test]
fn json_glob_and_mapped_levels() {
    let t = Tree::new(
        r#"version: 5
defaults: {data_hash: yaml_data}
hierarchy:
  - name: services
    mapped_paths: [facts.services, svc, "services/%{svc}.yaml"]
  - name: json
    datadir: jdata
    data_hash: json_data
    path: "%{::role}.json"
  - name: extras
    glob: "extra/*.yaml"
"#,
    )
    .write("data/services/db.yaml", "svc_list: [db]\n")
    .write("data/services/web.yaml", "svc_list: [web]\nwho: web\n")
    .write(
        "jdata/stash_server.json",
        r#"{"who": "json", "svc_list": ["json"]}"#,
    )
    .write("data/extra/b.yaml", "svc_list: [b]\n")
    .write("data/extra/a.yaml", "svc_list: [a]\nonly_glob: true\n");
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(value(&h, "who", &s, None), json!("web"));
    assert_eq!(
        value(&h, "svc_list", &s, Some(Merge::Unique)),
        json!(["web", "db", "json", "a", "b"])
    );
    assert_eq!(value(&h, "only_glob", &s, None), json!(true));
}

#[test]
fn load_errors_name_the_config() {
    let t = Tree::new("version: 5\nhierarchy:\n  - name: vault\n    lookup_key: vault_lookup\n    uri: http://vault\n");
    let e = Hiera::load(&t.path("hiera.yaml")).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&t.path("hiera.yaml").display().to_string()),
        "{text}"
    );
    assert!(text.contains("lookup_key: vault_lookup"), "{text}");
    let e = Hiera::load(Path::new("/nonexistent/hiera.yaml")).unwrap_err();
    assert!(matches!(e, HieraError::Config { .. }));
    // The engine wraps it in anyhow.
    let any: anyhow::Error = e.into();
    assert!(format!("{any:#}").contains("/nonexistent/hiera.yaml"));
}

#[test]
fn deep_options_from_lookup_options() {
    let t = Tree::stash()
        .write(
            "data/os/Debian.yaml",
            "lookup_options:\n  users:\n    merge: {strategy: deep, merge_hash_arrays: true}\nusers: [{name: pg, uid: 5432}]\n",
        )
        .write("data/nodes/stash-server.yaml", "users: [{shell: /bin/bash}, {name: app}]\n");
    let h = t.hiera();
    let s = stash_scope();
    assert_eq!(
        value(&h, "users", &s, None),
        json!([{"name": "pg", "uid": 5432, "shell": "/bin/bash"}, {"name": "app"}])
    );
    // lookup_options from common.yaml still apply alongside the OS level's.
    assert!(
        h.lookup("pgsql_server::password", &s, None)
            .unwrap()
            .sensitive
    );
    let (_, text) = h.explain("users", &s, None, false);
    let want = "    Merge strategy deep\n      Options: {\n        \"merge_hash_arrays\" => true\n      }\n";
    assert!(text.contains(want), "{text}");
}
