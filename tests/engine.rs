//! End-to-end tests of the engine through the real binary: facts, lookups,
//! apply / idempotence / noop / drift on the bundled site, failure
//! propagation, secrets, locking.

mod common;

use std::fs;

use common::{Sandbox, HIERA_YAML};

#[test]
fn facts_core_json_overrides_and_external() {
    let sb = Sandbox::new();
    sb.agent(&["facts", "os.family"])
        .code(0)
        .stdout_has("Debian");
    let all = sb.agent(&["facts", "--json"]);
    all.code(0);
    let v: serde_json::Value = serde_json::from_str(&all.stdout).expect("valid JSON");
    assert!(v["processors"]["count"].as_u64().unwrap() >= 1);
    assert!(v["memory"]["system"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(v["networking"]["hostname"].is_string());
    let missing = sb.agent(&["facts", "no.such.fact"]);
    missing.code(1).stderr_has("no such fact: no.such.fact");

    fs::write(
        sb.path().join("facts.d/site.yaml"),
        "datacenter: dc1\nrack:\n  row: 7\n",
    )
    .unwrap();
    fs::write(sb.path().join("facts.d/env.txt"), "tier=gold\n").unwrap();
    let sb = sb
        .env("FACTER_os_family", "RedHat")
        .env("FACTER_mycustom", "yes");
    sb.agent(&["facts", "os.family"])
        .code(0)
        .stdout_has("RedHat");
    sb.agent(&["facts", "mycustom"]).code(0).stdout_has("yes");
    sb.agent(&["facts", "rack.row"]).code(0).stdout_has("7");
    sb.agent(&["facts", "tier"]).code(0).stdout_has("gold");
    sb.agent(&["facts", "datacenter"]).code(0).stdout_has("dc1");
}

#[test]
fn lookup_bundled_seed_data() {
    let sb = Sandbox::bundled();
    let run = sb.agent(&["lookup", "pgsql_server::db_name", "--node", "stash-server"]);
    run.code(0);
    assert_eq!(run.stdout.trim(), "stashdb");
    let explain = sb.agent(&[
        "lookup",
        "pgsql_server::db_name",
        "--node",
        "stash-server",
        "--explain",
    ]);
    explain
        .code(0)
        .stdout_has("nodes/stash-server.yaml")
        .stdout_has("roles/stash_server.yaml");
    explain
        .stdout_has("os/Debian.yaml")
        .stdout_has("common.yaml");
    let pw = sb.agent(&[
        "lookup",
        "pgsql_server::postgres_password",
        "--node",
        "stash-server",
    ]);
    pw.code(0);
    assert!(!pw.all().contains("supersecret"), "{}", pw.all());
    let shown = sb.agent(&[
        "lookup",
        "pgsql_server::postgres_password",
        "--node",
        "stash-server",
        "--show-sensitive",
    ]);
    shown.code(0).stdout_has("supersecret");
    let missing = sb.agent(&["lookup", "no::such", "--node", "stash-server"]);
    missing
        .code(1)
        .stderr_has("no::such")
        .stderr_has("common.yaml");
}

/// True when `ip` is inside the IPv4 `cidr` (`a.b.c.d/len`).
fn in_cidr(ip: std::net::Ipv4Addr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

#[test]
fn the_db_master_probe_may_log_in_from_every_cluster_node() {
    // Each node probes the others over the private network as the probe
    // user into the probe database: the first pg_hba rule that matches
    // (the agent's own rules, then pgsql_server::ipv4acls) must let it in
    // with a password, on both roles (on the VMs a rule for 127/8 only
    // would leave db_master without a value forever).
    let sb = Sandbox::bundled();
    let lookup = |node: &str, key: &str| {
        let run = sb.agent(&["lookup", key, "--node", node]);
        run.code(0);
        run.stdout
    };
    for node in ["stash-server", "production-db-standby"] {
        let user = lookup(node, "db_cluster::probe_user");
        let user = user.trim();
        let db = lookup(node, "db_cluster::probe_database");
        let db = db.trim();
        let mut rules = resources::pg_hba::default_rules("postgres");
        for line in lookup(node, "pgsql_server::ipv4acls").lines() {
            let line = line.trim_start_matches("- ").trim_matches(['\'', '"']);
            rules.push(resources::pg_hba::HbaRule::parse(line).unwrap());
        }
        let ips: Vec<std::net::Ipv4Addr> = lookup(node, "cluster::hosts")
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ip: "))
            .map(|ip| ip.trim_matches('"').parse().unwrap())
            .collect();
        assert_eq!(ips.len(), 2, "{node}: cluster::hosts");
        for ip in ips {
            let first = rules.iter().find(|r| {
                r.kind.starts_with("host")
                    && [db, "all"].contains(&r.database.as_str())
                    && [user, "all"].contains(&r.user.as_str())
                    && r.address.as_deref().is_some_and(|a| in_cidr(ip, a))
            });
            let method = first.map(|r| r.method.as_str());
            assert_eq!(
                method,
                Some("scram-sha-256"),
                "{node}: the probe ({user}@{db}) from {ip} meets {first:?}"
            );
        }
    }
}

#[test]
fn bundled_base_role_applies_then_is_idempotent_and_noop_shows_drift() {
    // A node matching no site.yaml entry gets `default: [roles/base]`.
    let sb = Sandbox::bundled();
    let first = sb.agent(&["apply", "--node", "web-1", "--detailed-exitcodes"]);
    first.code(2);
    let hosts = sb.read_root("etc/hosts");
    assert!(
        hosts.contains("172.16.254.11\tstash-server\tstash"),
        "{hosts}"
    );
    assert!(
        hosts.contains("172.16.254.12\tproduction-db-standby\tdb-standby"),
        "{hosts}"
    );
    let motd = sb.read_root("etc/motd");
    assert!(
        motd.contains("Managed by agent") && motd.contains("Node web-1"),
        "{motd}"
    );

    let second = sb.agent(&["apply", "--node", "web-1", "--detailed-exitcodes"]);
    second.code(0).stdout_has("0 changed, 0 failed");

    // Drift by hand, then a noop run: exit 2, a diff, nothing written.
    let hosts_path = sb.root().join("etc/hosts");
    fs::write(
        &hosts_path,
        "127.0.0.1 localhost\n172.16.254.11\tstash-server\twrong\n",
    )
    .unwrap();
    let before = sb.snapshot();
    let noop = sb.agent(&["apply", "--node", "web-1", "--noop", "--detailed-exitcodes"]);
    noop.code(2)
        .stdout_has("-172.16.254.11\tstash-server\twrong")
        .stdout_has("+172.16.254.11\tstash-server\tstash");
    assert_eq!(before, sb.snapshot(), "noop changed the sandbox");
    let fix = sb.agent(&["apply", "--node", "web-1", "--detailed-exitcodes"]);
    fix.code(2);
    let hosts = fs::read_to_string(&hosts_path).unwrap();
    assert!(
        hosts.starts_with("127.0.0.1 localhost\n"),
        "unmanaged line kept: {hosts}"
    );
    sb.agent(&["apply", "--node", "web-1", "--detailed-exitcodes"])
        .code(0);

    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sb.state().join("last_run_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["summary"]["changed"], 0);
    assert!(report["resources"].as_array().unwrap().len() > 5);
}

#[test]
fn bundled_stash_and_standby_roles_compile() {
    let sb = Sandbox::bundled();
    sb.agent(&["validate", "--node", "stash-server"])
        .code(0)
        .stdout_has("roles/stash_server");
    sb.agent(&["validate", "--node", "production-db-standby"])
        .code(0)
        .stdout_has("roles/db_standby");
    let dot = sb.agent(&["graph", "--node", "stash-server"]);
    dot.code(0)
        .stdout_has("digraph")
        .stdout_has("\"pg_cluster[/var/lib/postgresql/15/main]\" -> ");
}

fn fixture(manifest: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file(
            "hiera/data/common.yaml",
            "lookup_options:\n  app::password:\n    convert_to: Sensitive\napp::password: 'S3cr3t-Hunter2-xyz'\n",
        )
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file("manifests/roles/r.yaml", manifest);
    sb
}

#[test]
fn for_each_ranges_and_matrix() {
    let sb = fixture(
        r#"resources:
  - file: /etc
    ensure: directory
  - file: "/etc/n{{item}}"
    for_each: "1..{{lookup 'count'}}"
    content: "{{item}}\n"
    require: file[/etc]
  - file: "/etc/m-{{item.d}}-{{item.n}}"
    for_each: { d: [a, b], n: "0..2" }
    content: "{{item.d}}{{item.n}}\n"
    require: file[/etc]
"#,
    );
    sb.site_file("hiera/data/nodes/range-node.yaml", "count: 3\n");
    let run = sb.agent(&["apply", "--node", "range-node", "--detailed-exitcodes"]);
    run.code(2);
    for n in 1..=3 {
        assert_eq!(sb.read_root(&format!("etc/n{n}")), format!("{n}\n"));
    }
    assert!(!sb.root().join("etc/n0").exists() && !sb.root().join("etc/n4").exists());
    let mut made: Vec<String> = fs::read_dir(sb.root().join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("m-"))
        .collect();
    made.sort();
    assert_eq!(made, ["m-a-0", "m-a-1", "m-a-2", "m-b-0", "m-b-1", "m-b-2"]);
    assert_eq!(sb.read_root("etc/m-b-2"), "b2\n");
    // The first axis varies slowest: the report lists m-a-* before m-b-*.
    let report = fs::read_to_string(sb.state().join("last_run_report.json")).unwrap();
    let (a2, b0) = (report.find("m-a-2").unwrap(), report.find("m-b-0").unwrap());
    assert!(a2 < b0, "{report}");
    sb.agent(&["apply", "--node", "range-node", "--detailed-exitcodes"])
        .code(0);
}

/// Checks are done ahead on helper threads while the run has changed
/// nothing (`agent::engine::apply`); what a command changes must be seen by the
/// resources after it.
#[test]
fn checks_done_ahead_never_hide_what_the_run_changed() {
    let sb = fixture(
        r#"resources:
  - file: /etc
    ensure: directory
  - file: "/etc/filler-{{item}}"
    for_each: "1..200"
    content: "x\n"
    require: file[/etc]
  - exec: make-x
    command: "printf 'from exec\\n' > \"$AGENT_ROOT/etc/x\""
    creates: /etc/x
    require: file[/etc]
  - file: /etc/x
    content: "from file\n"
    require: exec[make-x]
"#,
    );
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(sb.read_root("etc/x"), "from file\n");
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);
    // The fillers are unchanged (checked ahead); the exec recreates x, and
    // the file must then find the exec's content, not "absent".
    fs::remove_file(sb.root().join("etc/x")).unwrap();
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    run.code(2);
    assert_eq!(sb.read_root("etc/x"), "from file\n");
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sb.state().join("last_run_report.json")).unwrap())
            .unwrap();
    let x = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "file[/etc/x]")
        .unwrap();
    let changes = x["changes"].to_string();
    assert!(changes.contains("content"), "{changes}");
    assert!(!changes.contains("ensure"), "{changes}");
    assert_eq!(report["summary"]["changed"], 2, "{report}");
}

#[test]
fn failing_exec_skips_exactly_its_dependents() {
    let sb = fixture(
        r#"resources:
  - file: /etc
    ensure: directory
  - exec: broken
    command: "echo it broke >&2; exit 3"
  - file: /etc/needs-broken
    content: "x\n"
    require: exec[broken]
  - file: /etc/needs-needs-broken
    content: "y\n"
    require: file[/etc/needs-broken]
  - file: /etc/independent
    content: "z\n"
"#,
    );
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    run.code(6).stderr_has("it broke");
    assert!(sb.root().join("etc/independent").exists());
    assert!(!sb.root().join("etc/needs-broken").exists());
    assert!(!sb.root().join("etc/needs-needs-broken").exists());
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sb.state().join("last_run_report.json")).unwrap())
            .unwrap();
    let status = |id: &str| {
        report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("exec[broken]"), "failed");
    assert_eq!(status("file[/etc/needs-broken]"), "skipped");
    assert_eq!(status("file[/etc/needs-needs-broken]"), "skipped");
    assert_eq!(status("file[/etc/independent]"), "changed");
    // A failed resource reports what failed, once, with the real exit code,
    // and no change: not on stdout, stderr or in the report.
    let broken = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "exec[broken]")
        .unwrap();
    assert_eq!(broken["changes"], serde_json::json!([]), "{broken}");
    assert!(!run.all().contains("notrun"), "{}", run.all());
    let error_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("exec[broken]"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{}", run.stderr);
    assert_eq!(
        error_lines[0].matches("exec[broken]").count(),
        1,
        "{}",
        error_lines[0]
    );
    assert!(
        error_lines[0].contains('3'),
        "the real exit code: {}",
        error_lines[0]
    );
    assert_eq!(report["summary"]["failed"], 1);
    assert_eq!(report["summary"]["skipped"], 2);
    // Without --detailed-exitcodes a failure is exit 1.
    sb.agent(&["apply"]).code(1);
}

/// A manifest in which /etc/app.conf, declared with `conf_attrs` (YAML
/// lines), notifies a refreshonly exec that appends a line to
/// etc/restarts under the root: the refresh tests count those lines.
fn notify_fixture(conf_attrs: &str) -> Sandbox {
    fixture(&format!(
        r#"resources:
  - file: /etc
    ensure: directory
  - file: /etc/app.conf
{conf_attrs}
    notify: exec[restart-app]
  - exec: restart-app
    command: "echo restarted >> $AGENT_ROOT/etc/restarts"
    refreshonly: true
"#
    ))
}

#[test]
fn notify_refreshes_once_and_noop_refreshes_nothing() {
    let sb = notify_fixture(r#"    content: "v={{lookup 'app::version' default='1'}}\n""#);
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(sb.read_root("etc/restarts"), "restarted\n");
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);
    assert_eq!(
        sb.read_root("etc/restarts"),
        "restarted\n",
        "no change, no refresh"
    );
    fs::write(sb.root().join("etc/app.conf"), "v=0\n").unwrap();
    sb.agent(&["apply", "--noop", "--detailed-exitcodes"])
        .code(2)
        .stdout_has("would refresh");
    assert_eq!(
        sb.read_root("etc/restarts"),
        "restarted\n",
        "noop ran nothing"
    );
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(sb.read_root("etc/restarts"), "restarted\nrestarted\n");
}

#[test]
fn a_noop_resource_does_not_refresh_for_real() {
    let sb = notify_fixture(
        r#"    content: "v=2\n"
    noop: "{{#if facts.kernel}}true{{else}}false{{/if}}""#,
    );
    sb.root_file("etc/app.conf", "v=1\n");
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    run.code(2).stdout_has("would refresh");
    assert_eq!(
        sb.read_root("etc/app.conf"),
        "v=1\n",
        "noop: true leaves the file"
    );
    assert!(
        !sb.root().join("etc/restarts").exists(),
        "and its notify triggers no real refresh"
    );
}

#[test]
fn sensitive_values_never_reach_output_report_or_diff() {
    let secret = "S3cr3t-Hunter2-xyz";
    let sb = fixture(
        r#"resources:
  - file: /etc
    ensure: directory
  - file: /etc/app.properties
    content: "user=app\npassword={{lookup 'app::password'}}\n"
  - properties: /etc/stash-config.properties
    values:
      jdbc.url: "jdbc:postgresql://db:5432/stash?ssl=true&x=1"
      jdbc.password: "{{lookup 'app::password'}}"
  - exec: uses-secret
    command: "echo {{lookup 'app::password'}} >&2; exit 1"
"#,
    );
    sb.root_file("etc/app.properties", "user=app\npassword=old-value\n");
    let run = sb.agent(&["-vvv", "apply", "--detailed-exitcodes"]);
    assert_eq!(run.code, 6, "{}", run.all());
    let report = fs::read_to_string(sb.state().join("last_run_report.json")).unwrap();
    for (name, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("report", &report),
    ] {
        assert!(!text.contains(secret), "{name} leaks the secret:\n{text}");
    }
    assert!(
        run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
        "trace logging was on"
    );
    assert!(report.contains("[redacted]"), "{report}");
    // The files themselves carry it, private to their owner.
    assert!(sb.read_root("etc/app.properties").contains(secret));
    let props = sb.read_root("etc/stash-config.properties");
    assert!(props.contains("&x=1"), "no HTML escaping: {props}");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(sb.root().join("etc/stash-config.properties"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Drift + noop diff stays redacted too.
    fs::write(
        sb.root().join("etc/app.properties"),
        "user=app\npassword=drifted\n",
    )
    .unwrap();
    let noop = sb.agent(&["apply", "--noop"]);
    assert!(!noop.all().contains(secret), "{}", noop.all());
    assert!(
        !noop.all().contains("drifted"),
        "the old content of a secret file is not shown either"
    );
}

#[test]
fn second_run_waits_for_the_lock_then_gives_up_clearly() {
    let sb = fixture("resources:\n  - exec: slow\n    command: \"sleep 2\"\n");
    let mut slow = sb.command(&["apply"]).spawn().unwrap();
    // Wait until the first run holds the lock (its pid is written in it).
    let lock = sb.state().join("agent.lock");
    for _ in 0..200 {
        if fs::read_to_string(&lock)
            .map(|s| s.trim() == slow.id().to_string())
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = sb.agent(&["apply", "--lock-wait", "0.2"]);
    second
        .code(1)
        .stderr_has("another agent run")
        .stderr_has(&slow.id().to_string());
    assert!(slow.wait().unwrap().success());
    sb.agent(&["apply"]).code(0);
}

/// A site whose Hiera names a DB node that accepts TCP and never answers
/// (a listener nobody accepts on: the kernel completes the handshake).
fn hanging_cluster(manifest: &str) -> (Sandbox, std::net::TcpListener) {
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    hung.set_nonblocking(true).unwrap();
    let port = hung.local_addr().unwrap().port();
    let sb = fixture(manifest);
    sb.site_file(
        "hiera/data/common.yaml",
        &format!("db_cluster::nodes: ['127.0.0.1:{port}']\ndb_cluster::probe_timeout_ms: 2000\n"),
    );
    (sb, hung)
}

#[test]
fn cluster_facts_are_probed_only_when_the_catalog_names_them() {
    // No cluster fact named: no connection to the hanging node at all, no
    // split-brain or db_master line, and nothing written in noop.
    let (sb, hung) = hanging_cluster(
        "resources:\n  - file: /motd\n    content: \"hello {{facts.kernel}}\\n\"\n",
    );
    let run = sb.agent(&["apply", "--noop", "--detailed-exitcodes"]);
    run.code(2);
    assert!(!run.all().contains("db_master"), "{}", run.all());
    assert!(
        matches!(hung.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the catalog names no cluster fact, yet the DB node was probed"
    );
    assert!(!sb.state().join("db_master.json").exists());

    // Named: the node is probed (and found stale: it never answers).
    let (sb, hung) = hanging_cluster(
        "resources:\n  - file: /motd\n    content: \"stale={{facts.db_master_stale}}\\n\"\n",
    );
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(sb.read_root("motd"), "stale=true\n");
    assert!(
        hung.accept().is_ok(),
        "db_master_stale named: the node must be probed"
    );
}

#[test]
fn read_only_commands_create_no_root() {
    let sb = fixture("resources:\n  - file: /motd\n    content: hi\n");
    let missing = sb.path().join("not-yet");
    for args in [
        &["validate"][..],
        &["facts", "kernel"],
        &["apply", "--noop"],
        &["apply"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(args)
            .arg("--root")
            .arg(&missing)
            .arg("--state-dir")
            .arg(sb.state())
            .arg("--manifests")
            .arg(sb.site().join("manifests"))
            .arg("--hiera-config")
            .arg(sb.site().join("hiera/hiera.yaml"))
            .arg("--facts-dir")
            .arg(sb.path().join("facts.d"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        if args == ["apply"] {
            // A real apply creates it, and converges under it.
            assert_eq!(fs::read_to_string(missing.join("motd")).unwrap(), "hi");
        } else {
            assert!(!missing.exists(), "{args:?} created the root");
        }
    }
}

#[test]
fn quiet_apply_says_nothing_only_when_nothing_changed() {
    let sb = fixture("resources:\n  - file: /motd\n    content: hi\n");
    let first = sb.agent(&["apply", "--quiet"]);
    first.code(0).stdout_has("1 changed");
    let second = sb.agent(&["apply", "--quiet"]);
    second.code(0);
    assert_eq!(second.all(), "", "a converged quiet run prints nothing");
    sb.agent(&["apply"]).code(0).stdout_has("0 changed");
}

#[test]
fn noop_of_the_bundled_db_roles_on_a_fresh_root_reports_changes_not_failures() {
    // What a dependency of this run would create (the data dir, the running
    // server) is not there yet in noop: a change to come, not a failure.
    for node in ["stash-server", "production-db-standby"] {
        let dir = tempfile::tempdir().unwrap();
        let mut out = std::process::Command::new(env!("CARGO_BIN_EXE_agent"));
        out.args(["apply", "--noop", "--detailed-exitcodes", "--node", node])
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--manifests")
            .arg(common::repo().join("manifests"))
            .arg("--hiera-config")
            .arg(common::repo().join("hiera/hiera.yaml"))
            .arg("--facts-dir")
            .arg(dir.path().join("facts.d"));
        let run = common::Run::of(&mut out);
        let text = run.all();
        assert_eq!(run.code, 2, "{node}: {text}");
        assert!(!text.contains("Error:"), "{node}: {text}");
        assert!(!dir.path().join("root").exists(), "{node}: noop wrote");
    }
}

#[test]
fn skip_if_leaves_a_resource_alone_with_its_reason() {
    let sb = fixture(
        r#"resources:
  - exec: needs-a-server
    command: "exit 3"
    skip_if: "{{#if true}}fenced: db2 is the primary{{/if}}"
  - file: /after
    content: "x\n"
    require: exec[needs-a-server]
  - file: /managed
    content: "y\n"
    skip_if: ""
"#,
    );
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    run.code(2)
        .stdout_has("Notice: exec[needs-a-server]: left alone: fenced: db2 is the primary");
    assert!(!run.all().contains("Error"), "{}", run.all());
    assert_eq!(sb.read_root("after"), "x\n", "its dependents go on");
    assert_eq!(sb.read_root("managed"), "y\n", "an empty reason: managed");
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);
}

#[test]
fn tags_select_what_a_run_manages() {
    let sb = fixture(
        r#"resources:
  - file: /base
    content: "base\n"
  - file: /web.conf
    content: "web\n"
    tags: [web]
    require: file[/base]
  - file: /db.conf
    content: "db\n"
    tags: [db]
"#,
    );
    // --tags web: the tagged file and what it requires, nothing else.
    sb.agent(&["apply", "--tags", "web", "--detailed-exitcodes"])
        .code(2);
    assert!(sb.root().join("web.conf").exists());
    assert!(
        sb.root().join("base").exists(),
        "required by a tagged resource"
    );
    assert!(!sb.root().join("db.conf").exists());
    // --skip_tags: everything but; a type name is a tag too.
    sb.agent(&["apply", "--skip_tags", "file", "--detailed-exitcodes"])
        .code(0);
    assert!(!sb.root().join("db.conf").exists());
    sb.agent(&["apply", "--skip_tags", "web", "--detailed-exitcodes"])
        .code(2);
    assert!(sb.root().join("db.conf").exists());
    // A usage error exits 1, never 2 ("changes") under --detailed-exitcodes.
    sb.agent(&["apply", "--detailed-exitcodes", "--no-such-flag"])
        .code(1);
}

/// `user` and `group` through the engine under `--root`: the group is
/// created before the user that names it (autorequire), a second run
/// changes nothing, and the state dir records what the agent created.
#[test]
fn users_and_groups_converge_under_a_root() {
    let sb = fixture(
        r#"resources:
  - user: app
    uid: 1600
    gid: appgrp
    groups: [staff]
    home: /home/app
    shell: /bin/sh
    managehome: true
  - group: appgrp
    gid: 1500
  - group: staff
    system: true
  - file: /home/app/.profile
    content: "umask 027\n"
    owner: app
    group: appgrp
"#,
    );
    sb.root_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        .root_file("etc/group", "root:x:0:\n")
        .root_file("etc/shadow", "root:*:19000:0:99999:7:::\n")
        .root_file("etc/gshadow", "root:*::\n");
    fs::create_dir_all(sb.root().join("home")).unwrap();
    // An ordinary user checks the plan; applying needs root (useradd -R).
    sb.agent(&["apply", "--noop", "--node", "n1", "--detailed-exitcodes"])
        .code(2)
        .stdout_has("user[app]: ensure would change");
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    sb.agent(&["apply", "--node", "n1", "--detailed-exitcodes"])
        .code(2);
    let passwd = sb.read_root("etc/passwd");
    assert!(
        passwd.contains("app:x:1600:1500::/home/app:/bin/sh"),
        "{passwd}"
    );
    let group = sb.read_root("etc/group");
    assert!(
        group.contains("appgrp:x:1500:") && group.contains(":app\n"),
        "{group}"
    );
    assert!(sb.root().join("home/app").is_dir());
    // A file owned by a user created in the sandbox: found in the root's
    // own passwd and group (autorequired, so created first).
    use std::os::unix::fs::MetadataExt;
    let profile = fs::metadata(sb.root().join("home/app/.profile")).unwrap();
    assert_eq!((profile.uid(), profile.gid()), (1600, 1500));
    let created = fs::read_to_string(sb.state().join("created_accounts")).unwrap();
    for line in ["user app", "group appgrp", "group staff"] {
        assert!(created.lines().any(|l| l == line), "{created}");
    }
    sb.agent(&["apply", "--node", "n1", "--detailed-exitcodes"])
        .code(0);
}

#[test]
fn a_warning_is_said_once_and_without_escape_codes_into_a_pipe() {
    let sb =
        fixture("resources:\n  - pg_hba: /data\n    rules: [\"host all all 0.0.0.0/0 trust\"]\n");
    let run = sb.agent(&["validate"]);
    run.code(0);
    let text = run.all();
    assert_eq!(
        text.matches("trusts non-local clients").count(),
        1,
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "escape codes in a pipe: {text:?}");
}

#[test]
fn apply_flags_of_puppet_test_debug_execute_summarize_evaltrace_logdest_color() {
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", common::HIERA_YAML)
        .site_file("hiera/data/common.yaml", "motd: from hiera\n")
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file("manifests/roles/r.yaml", "resources: []\n");
    let execute = "- file: /motd\n  content: \"{{lookup 'motd'}}\\n\"\n";
    // -t: --detailed-exitcodes (2: changes) and info logs; -e: the
    // resources given instead of the site's; --summarize, --evaltrace.
    let run = sb.agent(&["apply", "-t", "-e", execute, "--summarize", "--evaltrace"]);
    run.code(2)
        .stdout_has("Info: file[/motd]: Evaluated in ")
        .stdout_has("Resources:\n")
        .stdout_has("            Changed: 1\n")
        .stdout_has("Time:\n")
        .stdout_has("\n              File: 0.0");
    assert!(
        run.stderr.contains(" INFO "),
        "-t logs at info: {}",
        run.stderr
    );
    assert_eq!(sb.read_root("motd"), "from hiera\n");
    // A second run: in sync, exit 0 under -t.
    sb.agent(&["apply", "--test", "--execute", execute]).code(0);
    // Bad YAML in -e: file, line and hint; nothing changes.
    sb.agent(&["apply", "-e", "- file: [\n"])
        .code(1)
        .stderr_has("-e/--execute: line")
        .stderr_has("hint:");
    // -d: debug logs; into a file they carry no colour, even with --color
    // always asked of the console... and a .json file gets JSON lines.
    let log = sb.path().join("agent.log");
    let debug = sb.agent(&["apply", "-d", "--logdest", log.to_str().unwrap()]);
    debug.code(0);
    assert!(!debug.stderr.contains("DEBUG"), "logs went to the file");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG") && !text.contains('\u{1b}'), "{text}");
    let json_log = sb.path().join("agent.json");
    sb.agent(&["apply", "-d", "--logdest", json_log.to_str().unwrap()])
        .code(0);
    let first = std::fs::read_to_string(&json_log).unwrap();
    let levels: Vec<serde_json::Value> = first
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["level"].clone())
        .collect();
    assert!(levels.contains(&serde_json::json!("DEBUG")), "{first}");
    // --color: never by default into a pipe, always when asked.
    let plain = sb.agent(&["apply", "-d"]);
    assert!(!plain.stderr.contains('\u{1b}'), "{}", plain.stderr);
    let coloured = sb.agent(&["apply", "-d", "--color", "always"]);
    assert!(coloured.stderr.contains("\u{1b}["), "{}", coloured.stderr);
    assert!(!plain.stdout.contains('\u{1b}'), "{}", plain.stdout);
    // The report's lines too: a notice in cyan, only when asked (or on a
    // terminal).
    assert!(
        coloured
            .stdout
            .contains("\u{1b}[36mNotice: Applied catalog"),
        "{}",
        coloured.stdout
    );
    let never = sb.agent(&["apply", "--color", "false"]);
    assert!(!never.all().contains('\u{1b}'), "{}", never.all());
}

#[test]
fn metrics_file_for_the_textfile_collector() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", common::HIERA_YAML)
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            "resources:\n  - file: /motd\n    content: \"hi\\n\"\n  - exec: broken\n    command: \"exit 3\"\n",
        );
    let prom = sb.path().join("textfile/agent.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    sb.agent(&["apply", "--metrics-file", prom.to_str().unwrap()])
        .code(1);
    let samples = |text: &str| -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_string(), value.parse().unwrap())
            })
            .collect()
    };
    let m = samples(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(m["agent_resources{status=\"changed\"}"], 1.0);
    assert_eq!(m["agent_resources{status=\"failed\"}"], 1.0);
    assert_eq!(m["agent_events{status=\"failure\"}"], 1.0);
    assert_eq!(m["agent_last_run_noop"], 0.0);
    assert!(m["agent_last_run_timestamp_seconds"] > 1.7e9);
    assert!(m.contains_key("agent_time_seconds{type=\"exec\"}"));
    assert_eq!(
        std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // Without a path: in the state dir; a noop run says so.
    std::fs::write(sb.root().join("motd"), "edited\n").unwrap();
    sb.agent(&["apply", "--noop", "--metrics-file"]);
    let m = samples(&std::fs::read_to_string(sb.state().join("agent.prom")).unwrap());
    assert_eq!(m["agent_last_run_noop"], 1.0);
    // The edited file and the exec that would run again.
    assert_eq!(m["agent_resources{status=\"out_of_sync\"}"], 2.0);
    assert_eq!(m["agent_events{status=\"noop\"}"], 2.0);
}

#[test]
fn resource_prints_the_hosts_file_as_a_manifest_that_applied_changes_nothing() {
    let sb = Sandbox::new();
    let hosts = "# managed by hand\n127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\n10.0.0.1 db1 db  # the primary\n10.0.0.2\tdb2\n";
    sb.root_file("etc/hosts", hosts);
    let run = sb.agent(&["resource", "host"]);
    run.code(0)
        .stdout_has("- host: db1\n")
        .stdout_has("# line 2 not declared: localhost is on 2 lines");
    // Pasted into a manifest and applied: nothing to do, the file as it was.
    sb.site_file("hiera/hiera.yaml", common::HIERA_YAML)
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            &format!(
                "resources:\n{}",
                run.stdout
                    .lines()
                    .map(|l| format!("  {l}\n"))
                    .collect::<String>()
            ),
        );
    sb.agent(&["apply", "--noop", "--detailed-exitcodes"])
        .code(0);
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);
    assert_eq!(sb.read_root("etc/hosts"), hosts);
    // One name; one that is not there; a type it cannot read.
    let one = sb.agent(&["resource", "host", "DB2"]);
    one.code(0);
    assert_eq!(one.stdout, "- host: db2\n  ip: \"10.0.0.2\"\n");
    sb.agent(&["resource", "host", "nope"])
        .code(1)
        .stderr_has("no host[nope]");
    sb.agent(&["resource", "pg_cluster"])
        .code(1)
        .stderr_has("hint: it reads cron, file, group, host, package, pg_database, pg_role, user");
    // A file, read under the root, applies as in sync too.
    let file = sb.agent(&["resource", "file", "/etc/hosts"]);
    file.code(0).stdout_has("  ensure: file\n");
    sb.site_file(
        "manifests/roles/r.yaml",
        &format!(
            "resources:\n{}",
            file.stdout
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        ),
    );
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);
    // An installed package, at its version: in sync (checked in noop, as
    // packages are the host's).
    let pkg = sb.agent(&["resource", "package", "dpkg"]);
    pkg.code(0).stdout_has("- package: dpkg\n  ensure: ");
    sb.site_file(
        "manifests/roles/r.yaml",
        &format!(
            "resources:\n{}",
            pkg.stdout
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        ),
    );
    sb.agent(&["apply", "--noop", "--detailed-exitcodes"])
        .code(0);
}

#[test]
fn describe_lists_every_type_and_documents_one() {
    let sb = Sandbox::new();
    let all = sb.agent(&["describe"]);
    all.code(0);
    for t in [
        "file",
        "host",
        "cron",
        "user",
        "group",
        "pg_role",
        "pg_database",
    ] {
        assert!(
            all.stdout.lines().any(|l| l.starts_with(&format!("{t} "))),
            "{t}: {}",
            all.stdout
        );
    }
    sb.agent(&["describe", "pg_role"])
        .code(0)
        .stdout_has("- **password**: Sensitive");
    sb.agent(&["describe", "nope"])
        .code(1)
        .stderr_has("hint: the types are");
}

#[test]
fn version_completions_and_man_page() {
    let sb = Sandbox::new();
    let v = sb.agent(&["--version"]);
    v.code(0).stdout_has("(commit ").stdout_has(", built ");
    let bash = sb.agent(&["completions", "bash"]);
    bash.code(0).stdout_has("_agent()").stdout_has("lookup");
    // The script is valid bash.
    let script = sb.path().join("agent.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    common::Run::of(std::process::Command::new("bash").arg("-n").arg(&script)).code(0);
    sb.agent(&["completions", "fish"])
        .code(0)
        .stdout_has("complete -c agent");
    sb.agent(&["man"]).code(0).stdout_has(".TH agent 1");
    let dir = sb.path().join("man");
    std::fs::create_dir(&dir).unwrap();
    sb.agent(&["man", "--dir", dir.to_str().unwrap()]).code(0);
    assert!(dir.join("agent-lookup.1").is_file());
    sb.agent(&["completions", "tcsh"]).code(1);
}

#[test]
fn resource_cron_lists_the_agents_entries_and_they_apply_in_sync() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.root().join("var/spool/cron/crontabs")).unwrap();
    std::fs::create_dir_all(sb.root().join("etc/cron.d")).unwrap();
    sb.root_file(
        "var/spool/cron/crontabs/postgres",
        "# by hand\n15 3 * * * /usr/local/bin/mine\n",
    );
    sb.site_file("hiera/hiera.yaml", common::HIERA_YAML)
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            "resources:\n  - cron: vacuum\n    user: postgres\n    minute: [0, 30]\n    hour: 2\n    environment: [\"PGDATA=/srv/pg\"]\n    command: /usr/local/bin/vacuum.sh\n  - cron: backup\n    target: /etc/cron.d/agent-backup\n    user: root\n    schedule: \"@weekly\"\n    command: /usr/local/bin/backup --all\n",
        );
    sb.agent(&["apply"]).code(0);
    let run = sb.agent(&["resource", "cron"]);
    run.code(0)
        .stdout_has("- cron: vacuum\n")
        .stdout_has("  schedule: \"0,30 2 * * *\"\n")
        .stdout_has("- cron: backup\n")
        .stdout_has("  target: /etc/cron.d/agent-backup\n");
    assert!(!run.stdout.contains("mine"), "unmarked lines are not ours");
    let before = sb.snapshot();
    sb.site_file(
        "manifests/roles/r.yaml",
        &format!(
            "resources:\n{}",
            run.stdout
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        ),
    );
    sb.agent(&["apply", "--detailed-exitcodes"]).code(0);
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn demo_json_is_refused_where_no_scenario_prints_json() {
    // Only `demo patroni` prints JSON: elsewhere the flag would be ignored.
    let sb = Sandbox::new();
    sb.agent(&["demo", "--json"])
        .code(1)
        .stderr_has("--json is for `agent demo patroni`");
    sb.agent(&["demo", "plusmoin", "--json"])
        .code(1)
        .stderr_has("--json is for `agent demo patroni`");
}
