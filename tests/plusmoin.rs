//! plusmoin parity against real PostgreSQL 15: two clusters in one Hiera
//! (`db`: a primary and two streaming standbys; `audit`: two independent
//! primaries, one of them stopped, and a node that streams from `db`),
//! watched by `agent watch`. A standby's replay is paused
//! (`pg_wal_replay_pause()`): its heartbeat lag rises, `slave_down` fires
//! once past `max_sync_delay` with the lag in its reason, `slave_up` once
//! after the replay resumes; the idle standby beside it never looks
//! lagging. `agent cluster status --json` is read in each state (exit 0
//! while every cluster has a master, 1 in a split brain); a trigger written
//! for plusmoin's document runs unchanged; a restarted watcher fires what
//! changed while it was down. A second test flaps a primary and counts the
//! application's restarts.
//!
//! Test-speed settings (max_sync_delay 2s, heartbeat 250ms); every wait
//! is for the event asserted, with a deadline.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Sandbox, HIERA_YAML};
use resources::pg::standby_testing::{poll as poll_quietly, Running};
use resources::pg::testing::{stop_now, TestCluster, PASSWORD};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

/// Waits for `what` (see `poll_quietly`), saying how long it took: where a
/// slow run spent its time.
fn poll<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    let got = poll_quietly(what, limit, f);
    eprintln!("{what}: {:.2} s", started.elapsed().as_secs_f64());
    got
}

fn label(c: &TestCluster) -> String {
    format!("127.0.0.1:{}", c.port)
}

/// An `agent watch` in the background, stopped (SIGTERM) on drop.
struct Watcher {
    child: Option<Child>,
    log: PathBuf,
}

impl Watcher {
    fn start(sb: &Sandbox, extra: &[&str]) -> Watcher {
        let log = sb.path().join(format!("watch-{}.log", now_ms()));
        let hooks = sb.path().join("hooks.d").display().to_string();
        let mut args = vec![
            "watch",
            "--node",
            "app",
            "--interval",
            "100ms",
            "--heartbeat",
            "1s",
            "--hooks-dir",
            &hooks,
            "--max-time",
            "10m",
        ];
        args.extend_from_slice(extra);
        let out = std::fs::File::create(&log).unwrap();
        let child = sb
            .command(&args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Watcher {
            child: Some(child),
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit.
    fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let status = c.wait().unwrap();
            assert!(
                status.success(),
                "watch exited {status}:\n{}",
                self.output()
            );
        }
        self.output()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("agent watch said:\n{}", self.output());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Hooks that append each event (one JSON line) to `events.jsonl`.
fn recorder_hooks(sb: &Sandbox) {
    let dir = sb.path().join("hooks.d");
    std::fs::create_dir_all(&dir).unwrap();
    let out = sb.path().join("events.jsonl");
    for t in [
        "agent_up",
        "master_down",
        "master_up",
        "slave_down",
        "slave_up",
    ] {
        let p = dir.join(format!("{t}.record"));
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\ndoc=$(cat)\nprintf '%s\\n' \"$doc\" >> '{}'\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn events(sb: &Sandbox) -> Vec<Value> {
    std::fs::read_to_string(sb.path().join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The events `event` about `node`.
fn about(sb: &Sandbox, event: &str, node: &str) -> Vec<Value> {
    events(sb)
        .into_iter()
        .filter(|e| e["event"] == event && e["node"]["host_port"] == node)
        .collect()
}

/// `agent cluster status --json [--fresh]`: exit code and document.
fn status(sb: &Sandbox, fresh: bool) -> (i32, Value) {
    let mut args = vec!["cluster", "status", "--json", "--node", "app"];
    if fresh {
        args.push("--fresh");
    }
    let r = sb.agent(&args);
    let doc =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    (r.code, doc)
}

/// The issue's schema, key for key.
fn assert_schema(doc: &Value) {
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(doc), ["clusterless", "clusters"]);
    for c in doc["clusters"].as_array().unwrap() {
        assert_eq!(keys(c), ["lost", "master", "name", "slaves", "split_brain"]);
        if !c["master"].is_null() {
            assert_eq!(keys(&c["master"]), ["host_port"]);
        }
        for s in c["slaves"].as_array().unwrap() {
            assert_eq!(keys(s), ["host_port", "lag_bytes", "lag_seconds"]);
        }
        for l in c["lost"].as_array().unwrap() {
            assert_eq!(keys(l), ["host_port", "reason"]);
        }
    }
    for l in doc["clusterless"].as_array().unwrap() {
        assert_eq!(keys(l), ["host_port", "reason"]);
    }
}

fn cluster<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {doc}"))
}

fn hosts(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["host_port"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn site(sb: &Sandbox, hiera: &str, resources: &str) {
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("hiera/data/common.yaml", hiera)
        .site_file("manifests/site.yaml", "default: [roles/app]\n")
        .site_file(
            "manifests/roles/app.yaml",
            &format!("resources:\n{resources}"),
        );
}

#[test]
fn lag_hysteresis_clusterless_split_brain_status_and_plusmoin_triggers() {
    common::ensure_package("jq", "/usr/bin/jq");
    let dir = tempfile::tempdir().unwrap();
    let p = TestCluster::primary(&dir.path().join("p"), "127.0.0.1");
    let s1 = Running::streaming_standby(dir.path(), "s1", p.port);
    let s2 = Running::streaming_standby(dir.path(), "s2", p.port);
    let b1 = TestCluster::primary(&dir.path().join("b1"), "127.0.0.1");
    let b2 = TestCluster::primary(&dir.path().join("b2"), "127.0.0.1");
    b2.stop();
    let (pl, s1l, s2l, b1l, b2l) = (label(&p), s1.label(), s2.label(), label(&b1), label(&b2));

    let sb = Sandbox::new();
    site(
        &sb,
        &format!(
            "db_clusters:\n\
             \x20 db:\n    nodes: ['{pl}', '{s1l}', '{s2l}']\n    max_sync_delay: 2s\n    recover_sync_delay: 1s\n    heartbeat: 250ms\n\
             \x20 audit:\n    nodes: ['{b1l}', '{b2l}', '{s2l}']\n\
             db_cluster::name: db\n\
             db_cluster::probe_password: '{PASSWORD}'\n\
             db_cluster::probe_timeout_ms: 5000\n"
        ),
        "  - file: /etc\n    ensure: directory\n  - file: /etc/db_master\n    content: \"{{facts.db_master}}\\n\"\n",
    );
    recorder_hooks(&sb);
    // A trigger written for plusmoin's document (its README: JSON on stdin, read with jq).
    let plusmoin_out = sb.path().join("plusmoin-trigger.out");
    let trigger = sb.path().join("hooks.d/slave_down.plusmoin");
    std::fs::write(
        &trigger,
        format!(
            "#!/bin/sh\nset -e\njq -r '\"cluster \\(.cluster_id): \\(.trigger.host):\\(.trigger.port) down; \
             master \\(.master.host):\\(.master.port) (\\(.master.master_name)); \
             slaves \\([.slaves[] | \"\\(.host):\\(.port) of \\(.master_name)\"] | join(\",\")); \
             lost \\([.lost[] | \"\\(.host):\\(.port)\"] | join(\",\")); \
             clusterless \\([.clusterless[] | \"\\(.host):\\(.port)\"] | join(\",\"))\"' >> '{}'\n",
            plusmoin_out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&trigger, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Facts, probed now: per cluster, and db_master from the node's cluster.
    let r = sb.agent(&[
        "facts",
        "db_master",
        "db_clusters.db.master",
        "db_clusters.audit.lost",
        "--node",
        "app",
    ]);
    r.code(0)
        .stdout_has(&format!("db_master => {pl}"))
        .stdout_has(&format!("db_clusters.db.master => {pl}"))
        .stdout_has(&b2l);
    // Fresh, before any watcher: the idle primary's slaves are not lagging.
    let (code, doc) = status(&sb, true);
    assert_eq!(code, 0, "{doc}");
    assert_schema(&doc);

    let mut w = Watcher::start(&sb, &[]);
    // Healthy: db has its master and two slaves; audit its master, b2 lost
    // (stopped), and s2 — streaming from db's primary — is clusterless there.
    let doc = poll("the watcher's status", LONG, || {
        let (code, doc) = status(&sb, false);
        let db = cluster(&doc, "db");
        (code == 0
            && db["slaves"].as_array().unwrap().len() == 2
            && sb.state().join("cluster_status.json").exists())
        .then_some(doc)
    });
    assert_schema(&doc);
    let db = cluster(&doc, "db");
    assert_eq!(db["master"]["host_port"], pl.as_str());
    assert_eq!(hosts(&db["slaves"]), sorted(vec![s1l.clone(), s2l.clone()]));
    assert_eq!(db["lost"], serde_json::json!([]));
    assert_eq!(db["split_brain"], false);
    let audit = cluster(&doc, "audit");
    assert_eq!(audit["master"]["host_port"], b1l.as_str());
    assert_eq!(hosts(&audit["lost"]), vec![b2l.clone()]);
    assert_eq!(hosts(&doc["clusterless"]), vec![s2l.clone()]);
    let why = doc["clusterless"][0]["reason"].as_str().unwrap();
    assert!(
        why.contains(&format!("follows 127.0.0.1:{}", p.port)) && why.contains("audit"),
        "{why}"
    );
    let text = sb.agent(&["cluster", "status", "--node", "app"]);
    text.code(0)
        .stdout_has("as agent watch saw it")
        .stdout_has("clusterless")
        .stdout_has(&s2l);

    // s1's replay paused: its lag rises past max_sync_delay, slave_down once.
    s1.sql("SELECT pg_wal_replay_pause()");
    let down = poll("slave_down for s1", LONG, || {
        about(&sb, "slave_down", &s1l).into_iter().next()
    });
    let reason = down["reason"].as_str().unwrap();
    let re = regex::Regex::new(r"lag (\d+(?:\.\d)?) s > 2 s$").unwrap();
    let lag: f64 = re.captures(reason).unwrap_or_else(|| panic!("{reason}"))[1]
        .parse()
        .unwrap();
    assert!(lag > 2.0, "{reason}");
    assert_eq!(down["cluster"], "db");
    assert_eq!(down["cluster_id"], 1, "audit is 0, db 1");
    // A lost slave leaves the cluster its master: exit 0.
    let doc = poll("s1 lost in the watcher's status", LONG, || {
        let (code, doc) = status(&sb, false);
        (code == 0 && hosts(&cluster(&doc, "db")["lost"]) == vec![s1l.clone()]).then_some(doc)
    });
    assert_schema(&doc);
    let db = cluster(&doc, "db");
    assert!(
        db["lost"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("lag "),
        "{db}"
    );
    // The idle standby beside it, as long as s1 has been paused: in sync.
    assert_eq!(hosts(&db["slaves"]), vec![s2l.clone()]);
    let s2_lag = db["slaves"][0]["lag_seconds"].as_f64().unwrap();
    assert!(
        s2_lag < 2.0,
        "an idle primary's standby does not look lagging: {db}"
    );
    // The plusmoin trigger ran on the same document.
    let line = poll("the plusmoin trigger's output", LONG, || {
        std::fs::read_to_string(&plusmoin_out)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert!(
        line.starts_with(&format!("cluster 1: {s1l} down; master {pl} ({pl}); slaves {s2l} of {pl}; lost {s1l}; clusterless {s2l}")),
        "{line}"
    );

    // Replay resumed: back under recover_sync_delay for a heartbeat, slave_up once.
    s1.sql("SELECT pg_wal_replay_resume()");
    poll("slave_up for s1", LONG, || {
        about(&sb, "slave_up", &s1l).into_iter().next()
    });
    let (_, doc) = status(&sb, false);
    assert_eq!(
        hosts(&cluster(&doc, "db")["slaves"]),
        sorted(vec![s1l.clone(), s2l.clone()])
    );
    assert_eq!(
        about(&sb, "slave_down", &s1l).len(),
        1,
        "slave_down fired once"
    );
    assert_eq!(about(&sb, "slave_up", &s1l).len(), 1, "slave_up fired once");

    // Split brain in audit: b2 starts as a second primary.
    b2.start();
    let doc = poll("a split brain in audit", LONG, || {
        let (code, doc) = status(&sb, false);
        (code == 1 && cluster(&doc, "audit")["split_brain"] == true).then_some(doc)
    });
    assert_schema(&doc);
    let audit = cluster(&doc, "audit");
    assert!(audit["master"].is_null());
    assert_eq!(
        hosts(&audit["lost"]),
        sorted(vec![b1l.clone(), b2l.clone()])
    );
    assert_eq!(
        cluster(&doc, "db")["master"]["host_port"],
        pl.as_str(),
        "db is not affected"
    );
    let split = poll("master_up for the split brain", LONG, || {
        about(&sb, "master_up", &b2l).into_iter().next()
    });
    assert_eq!(split["split_brain"], true);
    assert!(
        split["reason"].as_str().unwrap().contains("split brain"),
        "{split}"
    );
    let r = sb.agent(&[
        "facts",
        "db_master",
        "db_clusters.audit.split_brain",
        "--node",
        "app",
    ]);
    r.code(0)
        .stdout_has(&format!("db_master => {pl}"))
        .stdout_has("split_brain => true");
    b2.stop();
    poll("audit has its master again", LONG, || {
        (status(&sb, false).0 == 0).then_some(())
    });

    // Events persisted: s2 stops while no watcher runs; the next one says so.
    w.stop();
    s2.stop();
    // No watcher: the status is probed now, not read from the persisted state.
    let (code, doc) = status(&sb, false);
    assert_eq!(code, 0);
    assert!(hosts(&cluster(&doc, "db")["lost"]).contains(&s2l), "{doc}");
    let mut w = Watcher::start(&sb, &[]);
    let gone = poll("slave_down for s2 from the persisted state", LONG, || {
        about(&sb, "slave_down", &s2l).into_iter().next()
    });
    assert!(
        gone["reason"]
            .as_str()
            .unwrap()
            .ends_with("(while the watcher was down)"),
        "{gone}"
    );
    let out = w.stop();
    assert!(out.contains("event slave_down"), "{out}");
}

/// Stops a test server at once (a crash) and starts another: the primary
/// moves from one to the other.
fn swap(from: &TestCluster, to: &TestCluster) {
    stop_now(&from.bindir, &from.datadir);
    to.start();
}

#[test]
fn a_flapping_primary_restarts_the_application_at_most_twice() {
    let dir = tempfile::tempdir().unwrap();
    let f1 = TestCluster::primary(&dir.path().join("f1"), "127.0.0.1");
    let f2 = TestCluster::primary(&dir.path().join("f2"), "127.0.0.1");
    f2.stop();
    let (l1, l2) = (label(&f1), label(&f2));
    let sb = Sandbox::new();
    site(
        &sb,
        &format!(
            "db_clusters:\n  app:\n    nodes: ['{l1}', '{l2}']\n\
             db_cluster::name: app\ndb_cluster::probe_password: '{PASSWORD}'\n\
             db_cluster::probe_timeout_ms: 5000\n"
        ),
        "  - file: /etc\n    ensure: directory\n\
         \x20 - file: /etc/app.conf\n    content: \"{{facts.db_master}}\\n\"\n    notify: exec[restart app]\n\
         \x20 - exec: restart app\n    command: \"echo restart >> \\\"$AGENT_ROOT/restarts\\\"\"\n    refreshonly: true\n",
    );
    recorder_hooks(&sb);
    let restarts = || {
        std::fs::read_to_string(sb.root().join("restarts"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let conf = || std::fs::read_to_string(sb.root().join("etc/app.conf")).unwrap_or_default();
    sb.agent(&["apply", "--node", "app"]).code(0);
    assert_eq!(conf(), format!("{l1}\n"));
    assert_eq!(restarts(), 1);

    let mut w = Watcher::start(&sb, &["--flap-hold", "3s"]);
    poll("the watcher's first probe", LONG, || {
        sb.state()
            .join("cluster_status.json")
            .exists()
            .then_some(())
    });
    // A real failover is followed at once.
    swap(&f1, &f2);
    poll("the application on the new primary", LONG, || {
        (conf() == format!("{l2}\n")).then_some(())
    });
    poll("its restart", LONG, || (restarts() == 2).then_some(()));
    assert!(
        w.output().contains("applying (a watched fact changed)"),
        "{}",
        w.output()
    );

    // Then the primary flaps between the two, each swap within the hold of
    // the one before, for longer than the hold in all.
    let before = restarts();
    for i in 0..12 {
        if i % 2 == 0 {
            swap(&f2, &f1);
        } else {
            swap(&f1, &f2);
        }
        // Each primary is seen by the watcher before the next swap.
        poll("the watcher seeing the swap", LONG, || {
            (w.output().matches("Notice: db_master changed").count() >= i + 2).then_some(())
        });
    }
    // It ends on f2: the application converges there once it holds still.
    poll("the application on the last primary", LONG, || {
        let out = w.output();
        let last_change = out.rfind("db_master changed")?;
        (out[last_change..].contains("Notice: applying") && conf() == format!("{l2}\n"))
            .then_some(())
    });
    let out = w.stop();
    let during = restarts() - before;
    assert!(during <= 2, "{during} restarts while flapping:\n{out}");
    eprintln!("12 swaps of the primary: {during} restart(s) of the application");
    assert!(out.contains("applying once it holds still"), "{out}");
    assert_eq!(conf(), format!("{l2}\n"));
}

#[test]
fn the_plusmoin_demo_shows_lag_a_lost_slave_and_its_return() {
    let dir = tempfile::tempdir().unwrap();
    let r = common::Run::of(
        std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["demo", "plusmoin", "--dir"])
            .arg(dir.path().join("demo"))
            .current_dir(common::repo())
            .env_remove("AGENT_LOG"),
    );
    r.code(0);
    let out = &r.stdout;
    let lag =
        regex::Regex::new(r"hook slave_down: 127\.0\.0\.12:\d+: lag \d+(\.\d)? s > 3 s").unwrap();
    assert!(lag.is_match(out), "{out}");
    assert_eq!(out.matches("hook slave_up").count(), 2, "{out}");
    assert_eq!(out.matches("hook slave_down").count(), 2, "{out}");
    assert!(out.contains("lost        127.0.0.12"), "{out}");
}
