//! `db_master` from Patroni's DCS on a real cluster: three etcd members,
//! three Patroni 3.0.2 nodes and PostgreSQL 15 on loopback (the test bed's
//! `PatroniCluster`, started once for this binary; the tests take turns on
//! it). The etcd source names the leader and follows a planned switchover;
//! two members claiming leadership without a leader key are a split brain;
//! etcd unreachable keeps the last value as stale; the REST source names the
//! leader too; `agent watch` follows a switchover through its etcd watch,
//! reading etcd only when the leader key changes.
//!
//! Needs the Debian packages etcd-server, etcd-client, patroni and
//! python3-psycopg2: installed when missing as root, else the test fails
//! naming them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use agent::testbed::patroni::{Options, PatroniCluster};
use common::Sandbox;
use serde_json::Value;

const SCOPE: &str = "dcs-test";

static CLUSTER: OnceLock<Mutex<PatroniCluster>> = OnceLock::new();

extern "C" fn stop_cluster_at_exit() {
    if let Some(c) = CLUSTER.get() {
        c.lock().unwrap_or_else(|e| e.into_inner()).cleanup();
    }
}

/// The shared cluster, healthy (a leader, both replicas streaming), held by
/// this test until the guard drops.
fn cluster() -> MutexGuard<'static, PatroniCluster> {
    let c = CLUSTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("agent-patroni-dcs-{}", std::process::id()));
        let opts = Options {
            scope: SCOPE.into(),
            addrs: ["127.0.0.41", "127.0.0.42", "127.0.0.43"],
            ..Options::default()
        };
        let c = PatroniCluster::start(&dir, opts, true).expect("the Patroni cluster starts");
        // Statics are never dropped: stop the daemons when the binary exits.
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::atexit(stop_cluster_at_exit) };
        Mutex::new(c)
    });
    let guard = c.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .wait_healthy(Duration::from_secs(90))
        .expect("the cluster is healthy");
    guard
}

/// A node whose Hiera reads db_master from `source`.
fn sandbox(c: &PatroniCluster, extra: &str) -> Sandbox {
    let etcd = c.etcd_endpoints();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.root().join("etc")).unwrap();
    sb.site_file("hiera/hiera.yaml", common::HIERA_YAML)
        .site_file(
            "hiera/data/common.yaml",
            &format!(
                "db_cluster::source: etcd\n\
                 db_cluster::etcd: [\"{}\", \"http://{}\", \"{}\"]\n\
                 db_cluster::scope: {SCOPE}\n\
                 db_cluster::patroni: [{}]\n\
                 {extra}",
                etcd[0],
                etcd[1],
                etcd[2],
                c.nodes
                    .iter()
                    .map(|n| format!("\"{}\"", n.rest()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .site_file("manifests/site.yaml", "nodes: {}\ndefault: [app]\n")
        .site_file(
            "manifests/app.yaml",
            "resources:\n  - file: /etc/db_master\n    content: \"{{facts.db_master}}\\n\"\n",
        );
    sb
}

fn facts(sb: &Sandbox) -> (i32, Value, String) {
    let run = sb.agent(&[
        "facts",
        "--json",
        "db_master",
        "db_master_stale",
        "db_split_brain",
        "db_cluster",
    ]);
    let v = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    (run.code, v, run.stderr)
}

/// Waits for `what` to hold, up to a deadline (the event, not a time).
fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn etcd_source_names_the_leader_and_follows_a_switchover() {
    let c = cluster();
    let leader = c.leader().expect("a leader");
    let sb = sandbox(&c, "");
    let (code, v, err) = facts(&sb);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["db_master"], c.nodes[leader].pg(), "{v}");
    assert_eq!(v["db_master_stale"], false);
    assert_eq!(v["db_split_brain"], false);
    assert_eq!(v["db_cluster"]["source"], "etcd");
    assert_eq!(
        v["db_cluster"]["standbys"].as_array().unwrap().len(),
        2,
        "{v}"
    );

    // In synchronous mode Patroni switches over to the sync standby only.
    let target = c.sync_standby().expect("a sync standby");
    c.switchover(target).expect("switchover accepted");
    wait_for("the new leader in etcd", Duration::from_secs(60), || {
        facts(&sb).1["db_master"] == c.nodes[target].pg()
    });
    let (_, v, _) = facts(&sb);
    assert_eq!(v["db_master_stale"], false, "{v}");
}

#[test]
fn patroni_rest_source_names_the_leader() {
    let c = cluster();
    let leader = c.leader().expect("a leader");
    let sb = sandbox(&c, "");
    sb.site_file(
        "hiera/data/nodes/rest.yaml",
        "db_cluster::source: patroni\n",
    );
    let run = sb.agent(&[
        "facts",
        "--json",
        "db_master",
        "db_cluster",
        "--node",
        "rest",
    ]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(v["db_master"], c.nodes[leader].pg(), "{v}");
    assert_eq!(v["db_cluster"]["source"], "patroni");
}

#[test]
fn two_members_claiming_leadership_without_a_leader_key_is_a_split_brain() {
    let c = cluster();
    // Written keys under a scope no Patroni runs: the live cluster is not
    // disturbed, the agent reads the same etcd.
    let fake = "split-test";
    let etcd = c.etcd_endpoints().join(",");
    let put = |key: &str, value: &str| {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd, "put", key, value])
            .output()
            .expect("etcdctl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (name, addr) in [("a", "127.0.0.51:5432"), ("b", "127.0.0.52:5432")] {
        put(
            &format!("/service/{fake}/members/{name}"),
            &format!(
                r#"{{"conn_url":"postgres://{addr}/postgres","role":"master","state":"running"}}"#
            ),
        );
    }
    let sb = sandbox(&c, "");
    // The node level names the fake scope.
    sb.site_file(
        "hiera/data/nodes/split.yaml",
        &format!("db_cluster::scope: {fake}\n"),
    );
    let run = sb.agent(&[
        "facts",
        "--json",
        "db_master",
        "db_split_brain",
        "--node",
        "split",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(v.get("db_master").is_none(), "{v}");
    assert_eq!(v["db_split_brain"], true);
    assert!(run.stderr.contains("split brain"), "{}", run.stderr);
    assert!(run.stderr.contains("127.0.0.51:5432") && run.stderr.contains("127.0.0.52:5432"));
    // A leader key settles it.
    put(&format!("/service/{fake}/leader"), "b");
    let run = sb.agent(&["facts", "db_master", "--node", "split"]);
    assert_eq!(run.stdout.trim(), "127.0.0.52:5432", "{run:?}");
}

#[test]
fn etcd_unreachable_keeps_the_last_value_as_stale() {
    let c = cluster();
    let leader = c.leader().expect("a leader");
    let sb = sandbox(&c, "db_cluster::probe_timeout_ms: 500\n");
    // A run persists the primary it saw as the last known value.
    sb.agent(&["apply"]).code(0);
    assert_eq!(sb.read_root("etc/db_master").trim(), c.nodes[leader].pg());
    c.freeze_etcd(true);
    let (code, v, err) = facts(&sb);
    c.freeze_etcd(false);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["db_master"], c.nodes[leader].pg(), "{v}");
    assert_eq!(v["db_master_stale"], true, "{v}");
    assert!(
        v["db_cluster"]["dcs_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{v}"
    );
}

/// `agent watch` in the background, stopped (SIGTERM) when done, also
/// when the test fails half way.
struct Watch(std::process::Child);

impl Watch {
    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn watch_follows_a_switchover_through_its_etcd_watch() {
    let c = cluster();
    let leader = c.leader().expect("a leader");
    let sb = sandbox(&c, "");
    let mut watch = Watch(
        sb.command(&["watch", "--interval", "100ms", "-vv"])
            .env("AGENT_LOG", "agent=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent watch starts"),
    );
    let stderr = watch.0.stderr.take().unwrap();
    let log = std::sync::Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let reads = || log.lock().unwrap().matches("read from etcd").count();
    let file = sb.root().join("etc/db_master");
    let content = || std::fs::read_to_string(&file).unwrap_or_default();
    wait_for("the first convergence", Duration::from_secs(30), || {
        content().trim() == c.nodes[leader].pg()
    });
    wait_for("the watch established", Duration::from_secs(30), || {
        log.lock().unwrap().contains("watching /service/")
    });
    let before = reads();

    let target = c.sync_standby().expect("a sync standby");
    c.switchover(target).expect("switchover accepted");
    wait_for(
        "the file to name the new leader",
        Duration::from_secs(60),
        || content().trim() == c.nodes[target].pg(),
    );
    let during = reads() - before;
    println!("{during} reads of etcd during the switchover");
    watch.stop();
    let log = log.lock().unwrap().clone();
    assert!(log.contains("changed"), "{log}");
    // A poller at --interval 100ms reads etcd ten times a second through
    // the whole switchover (seconds); the watch reads once per change of the
    // leader key (deleted, then put) and once per apply it starts.
    assert!(
        during <= 6,
        "{during} reads of etcd during the switchover:\n{log}"
    );
}

#[test]
fn bad_dcs_settings_are_refused_naming_the_key() {
    // No cluster needed: the settings are checked before anything is read.
    for (data, needle) in [
        (
            "db_cluster::source: etc\n",
            "db_cluster::source is 'etc'; it must be probe, etcd or patroni",
        ),
        (
            "db_cluster::source: etcd\ndb_cluster::scope: s\n",
            "db_cluster::source needs db_cluster::etcd",
        ),
        (
            "db_cluster::source: etcd\ndb_cluster::etcd: [\"h:1\"]\n",
            "db_cluster::scope (Patroni's scope) is not set",
        ),
        (
            "db_cluster::source: etcd\ndb_cluster::etcd: [\"https://h:1\"]\ndb_cluster::scope: s\n",
            "TLS is not supported yet",
        ),
    ] {
        let sb = Sandbox::new();
        sb.site_file("hiera/hiera.yaml", common::HIERA_YAML)
            .site_file("hiera/data/common.yaml", data);
        let before = (sb.snapshot(), common::snapshot(&sb.state()));
        let run = sb.agent(&["facts", "db_master"]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
        assert_eq!(
            (sb.snapshot(), common::snapshot(&sb.state())),
            before,
            "nothing changes on disk"
        );
    }
}

/// `agent fence` leaves a primary alone while the cluster is in maintenance
/// mode (Patroni then leaves PostgreSQL alone and disarms its own watchdog:
/// an operator may stop Patroni on purpose), saying so once. Fencing itself
/// is `agent demo patroni`'s freeze scenario (tests/demo_patroni.rs).
#[test]
fn fence_leaves_a_paused_clusters_primary_alone() {
    let c = cluster();
    let leader = c.leader().expect("a leader");
    let node = &c.nodes[leader];
    let config = |body: &str| {
        ureq::patch(&format!("http://{}/config", node.rest()))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("PATCH /config");
    };
    config(r#"{"pause": true}"#);
    // Resumes even when an assertion fails.
    struct Resume<'a>(&'a dyn Fn(&str));
    impl Drop for Resume<'_> {
        fn drop(&mut self) {
            (self.0)(r#"{"pause": false}"#);
        }
    }
    let _resume = Resume(&config);
    wait_for("the cluster paused", Duration::from_secs(20), || {
        ureq::get(&format!("http://{}/config", node.rest()))
            .call()
            .ok()
            .and_then(|r| r.into_body().read_json::<Value>().ok())
            .is_some_and(|v| v["pause"] == true)
    });
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut fence = Watch(
        std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
            .args([
                "fence",
                "--after",
                "2s",
                "--interval",
                "200ms",
                "--patroni-config",
            ])
            .arg(node.config())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("agent fence starts"),
    );
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();
    wait_for(
        "the fence to see the pause",
        Duration::from_secs(10),
        || log_text().contains("the cluster is paused (maintenance mode)"),
    );
    let postmaster = node.postmaster_pid().expect("the leader's postmaster");
    c.freeze_node(leader, true);
    let waited = wait_for_result(Duration::from_secs(8), || {
        log_text().contains("not fenced: Patroni silent")
    });
    let alive = std::path::Path::new(&format!("/proc/{postmaster}")).exists();
    c.freeze_node(leader, false);
    fence.stop();
    assert!(waited, "no 'not fenced' notice: {}", log_text());
    assert!(
        alive,
        "the paused cluster's primary was fenced: {}",
        log_text()
    );
    assert!(
        !log_text().contains("fenced: Patroni's REST API"),
        "{}",
        log_text()
    );
    assert_eq!(
        log_text().matches("not fenced").count(),
        1,
        "told once per silence: {}",
        log_text()
    );
}

fn wait_for_result(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}
