//! A real Redis Sentinel rewriting its own file (`myid`, epochs, known
//! replicas, and the master's address after a failover): the `conf`
//! resources that wrote it find nothing to do afterwards — the daemon's
//! rewrites are neither drift nor fought. On loopback 127.0.0.91-92.

use super::*;
use crate::testing::ensure_package;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Daemons started by the test, killed when it ends (pass or fail).
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(d: &mut Daemons, argv: &[&str], log: &Path) {
    let out = fs::File::create(log).unwrap();
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {argv:?}: {e}"));
    d.0.push(child);
}

fn cli(host: &str, port: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits for `what` to hold, up to `limit`; panics naming it otherwise.
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_real_sentinel_rewriting_its_file_is_not_drift() {
    ensure_package("redis-server", "/usr/bin/redis-server");
    ensure_package("redis-sentinel", "/usr/bin/redis-sentinel");
    let t = Sandbox::new(&["etc/redis", "data"]);
    let file = t.root.join("etc/redis/sentinel.conf");
    fs::write(&file, SENTINEL).unwrap();
    let path = "/etc/redis/sentinel.conf";
    let redis = |key: &str, value: serde_json::Value| {
        conf(
            &format!("{path}:{key}"),
            json!({"format": "redis", "value": value}),
        )
    };
    let monitor = |replace: bool| {
        conf(
            &format!("{path}:sentinel monitor mymaster"),
            json!({"format": "redis", "value": "127.0.0.91 6391 1", "replace": replace}),
        )
    };
    let rs = [
        redis("port", json!(26391)),
        redis("bind", json!("127.0.0.91")),
        redis("daemonize", json!(false)),
        conf(
            &format!("{path}:pidfile"),
            json!({"format": "redis", "ensure": "absent"}),
        ),
        monitor(false),
        redis("sentinel down-after-milliseconds mymaster", json!(1000)),
    ];
    // Each one changes something in Debian's file, the master's address
    // included (a packaged default: replaced once).
    for r in &rs {
        converge(&**r, &t.cx);
    }
    for r in &rs {
        assert!(r.check(&t.cx).unwrap().is_empty(), "{}", r.id());
    }
    let written = fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("sentinel monitor mymaster 127.0.0.91 6391 1\n"),
        "{written}"
    );

    let data = t.root.join("data");
    let d = data.display().to_string();
    let mut daemons = Daemons(vec![]);
    let server = |bind: &str, port: &str| -> Vec<String> {
        [
            "redis-server",
            "--bind",
            bind,
            "--port",
            port,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--dir".into(), d.clone(), "--daemonize".into(), "no".into()])
        .chain(["--dbfilename".into(), format!("{port}.rdb")])
        .collect()
    };
    let master = server("127.0.0.91", "6391");
    let mut replica = server("127.0.0.92", "6392");
    // Announced by its own address (it connects to the master from
    // 127.0.0.1, which Sentinel would otherwise record).
    replica.extend(
        [
            "--replicaof",
            "127.0.0.91",
            "6391",
            "--replica-announce-ip",
            "127.0.0.92",
        ]
        .map(String::from),
    );
    fn argv(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    start(&mut daemons, &argv(&master), &data.join("master.log"));
    start(&mut daemons, &argv(&replica), &data.join("replica.log"));
    wait_for(
        "the replica's link to the master",
        Duration::from_secs(20),
        || cli("127.0.0.92", "6392", &["INFO", "replication"]).contains("master_link_status:up"),
    );
    let conf_path = file.display().to_string();
    start(
        &mut daemons,
        &["redis-sentinel", &conf_path],
        &data.join("sentinel.log"),
    );

    // Sentinel writes its id, epochs and the replica it found.
    wait_for(
        "sentinel's rewrite with the known replica",
        Duration::from_secs(30),
        || {
            fs::read_to_string(&file).is_ok_and(|s| {
                s.contains("sentinel myid") && s.contains("known-replica mymaster 127.0.0.92 6392")
            })
        },
    );
    let rewritten = fs::read_to_string(&file).unwrap();
    assert_ne!(rewritten, written, "sentinel rewrote the file");
    assert!(
        rewritten.starts_with("# Example sentinel.conf\n"),
        "comments kept: {rewritten}"
    );
    for r in &rs {
        let plan = r.check(&t.cx).unwrap();
        assert!(
            plan.is_empty(),
            "{} after sentinel's rewrite: {:?}",
            r.id(),
            lines(&plan)
        );
    }

    // A failover: Sentinel moves the master to the replica in its file.
    wait_for(
        "SENTINEL FAILOVER accepted",
        Duration::from_secs(30),
        || cli("127.0.0.91", "26391", &["SENTINEL", "FAILOVER", "mymaster"]) == "OK",
    );
    wait_for(
        "the new master in sentinel.conf",
        Duration::from_secs(30),
        || {
            fs::read_to_string(&file)
                .is_ok_and(|s| s.contains("sentinel monitor mymaster 127.0.0.92 6392 1"))
        },
    );
    for r in &rs {
        let plan = r.check(&t.cx).unwrap();
        assert!(
            plan.is_empty(),
            "{} after the failover: {:?}",
            r.id(),
            lines(&plan)
        );
    }
    // Managed always (replace: true), the same key would fight Sentinel.
    assert_eq!(
        lines(&monitor(true).check(&t.cx).unwrap()),
        ["sentinel monitor mymaster changed '127.0.0.92 6392 1' to '127.0.0.91 6391 1'"]
    );
}
