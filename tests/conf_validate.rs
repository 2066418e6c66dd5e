//! `conf` and `validate_cmd` through the real binary: a refused
//! validation fails its resource, skips its dependents and changes nothing
//! (the file, the backup store); several `conf` keys of one file apply in
//! one run and the next run changes nothing.

mod common;

use std::fs;

use common::{Sandbox, HIERA_YAML};

fn fixture(manifest: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("hiera/data/common.yaml", "{}\n")
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file("manifests/roles/r.yaml", manifest);
    sb
}

fn report(sb: &Sandbox) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(sb.state().join("last_run_report.json")).unwrap())
        .unwrap()
}

fn status(report: &serde_json::Value, id: &str) -> serde_json::Value {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {report}"))["status"]
        .clone()
}

#[test]
fn a_refused_validation_fails_skips_dependents_and_changes_nothing() {
    let sb = fixture(
        r#"resources:
  - file: /etc/app.cfg
    content: "broken\n"
    validate_cmd: "sh -c 'grep -qx good \"$1\" || { echo refused: not good >&2; exit 1; }' check %"
  - exec: reload-app
    command: "echo reloaded >> $AGENT_ROOT/etc/reloads"
    require: file[/etc/app.cfg]
  - conf: /etc/redis/redis.conf:maxmemory
    format: redis
    value: 100mb
    validate_cmd: "grep -q '^maxmemory 100mb$' %"
"#,
    );
    sb.root_file("etc/app.cfg", "good\n")
        .root_file("etc/redis/redis.conf", "# redis\nport 6379\n");
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    run.code(6).stderr_has("refused: not good");
    assert_eq!(sb.read_root("etc/app.cfg"), "good\n", "byte-identical");
    assert!(
        !sb.root().join("etc/reloads").exists(),
        "the dependent did not run"
    );
    assert_eq!(
        sb.read_root("etc/redis/redis.conf"),
        "# redis\nport 6379\nmaxmemory 100mb\n"
    );
    let r = report(&sb);
    assert_eq!(status(&r, "file[/etc/app.cfg]"), "failed");
    assert_eq!(status(&r, "exec[reload-app]"), "skipped");
    assert_eq!(
        status(&r, "conf[/etc/redis/redis.conf:maxmemory]"),
        "changed"
    );
    let failed = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "file[/etc/app.cfg]")
        .unwrap();
    assert_eq!(failed["changes"], serde_json::json!([]), "{failed}");
    // The backup store holds the redis.conf that changed, nothing of app.cfg.
    let backups = sb.agent(&["backup", "list"]);
    assert!(backups.all().contains("redis.conf"), "{}", backups.all());
    assert!(!backups.all().contains("app.cfg"), "{}", backups.all());
}

#[test]
fn conf_keys_of_one_file_converge_in_one_run_and_stay() {
    let sb = fixture(
        r#"resources:
  - conf: /etc/redis/sentinel.conf:port
    format: redis
    value: 26391
  - conf: /etc/redis/sentinel.conf:sentinel monitor mymaster
    format: redis
    value: 127.0.0.91 6391 2
    replace: false
  - conf: /etc/redis/sentinel.conf:sentinel down-after-milliseconds mymaster
    format: redis
    value: 1000
  - conf: /etc/pgpool2/pgpool.conf:listen_addresses
    format: pgpool
    value: 127.0.0.91
  - conf: /etc/app.ini:port
    format: ini
    section: server
    value: 8091
"#,
    );
    let sentinel = "# sentinel\nport 26379\n\nsentinel monitor mymaster 127.0.0.1 6379 2\n";
    sb.root_file("etc/redis/sentinel.conf", sentinel)
        .root_file(
            "etc/pgpool2/pgpool.conf",
            "# pgpool\nlisten_addresses = 'localhost'\n",
        )
        .root_file("etc/app.ini", "[server]\nport = 80\n\n[client]\nport = 1\n");
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(
        sb.read_root("etc/redis/sentinel.conf"),
        "# sentinel\nport 26391\n\nsentinel monitor mymaster 127.0.0.91 6391 2\nsentinel down-after-milliseconds mymaster 1000\n"
    );
    assert_eq!(
        sb.read_root("etc/pgpool2/pgpool.conf"),
        "# pgpool\nlisten_addresses = '127.0.0.91'\n"
    );
    assert_eq!(
        sb.read_root("etc/app.ini"),
        "[server]\nport = 8091\n\n[client]\nport = 1\n"
    );
    assert_eq!(report(&sb)["summary"]["changed"], 5);
    // The daemon moves its master: not drift.
    let moved = sb
        .read_root("etc/redis/sentinel.conf")
        .replace("127.0.0.91 6391", "127.0.0.92 6392");
    sb.root_file("etc/redis/sentinel.conf", &moved);
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);
    assert_eq!(sb.read_root("etc/redis/sentinel.conf"), moved);
    assert_eq!(report(&sb)["summary"]["changed"], 0);
}

#[test]
fn a_validate_cmd_without_its_marker_is_a_compile_error_naming_the_line() {
    let sb = fixture(
        r#"resources:
  - file: /etc/ok
    content: "x\n"
  - file: /etc/haproxy.cfg
    content: "x\n"
    validate_cmd: haproxy -c -f /etc/haproxy.cfg
"#,
    );
    sb.agent(&["apply"])
        .code(1)
        .stderr_has("roles/r.yaml:4")
        .stderr_has("no '%'")
        .stderr_has("hint: `haproxy -c -f %`");
    assert!(!sb.root().join("etc/ok").exists(), "nothing applied");
}
