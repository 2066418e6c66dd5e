//! The HipChat stack's Redis from the bundled role, for real: three nodes
//! (`hipchat-redis1..3`, `roles/hipchat_redis`, each its own `--root` and
//! state dir, its own loopback address 127.0.0.111-113) applied at once.
//! Then: a master and two replicas replicating, three sentinels agreeing;
//! a second apply changes nothing on any node after Sentinel rewrote its
//! files; `agent facts redis_master` names the master, `redis.role` each
//! server's role. The master is killed (-9): the sentinels (quorum 2,
//! down-after 1000 ms) promote a replica and `redis_master` names it
//! within 10 s; an `agent watch --fact redis_master` on a stand-in client
//! node rewrites the client's file; the next apply restarts the dead
//! server and changes no file, the sentinels make it a replica of the new
//! master, and the run after changes nothing anywhere (Sentinel's and
//! CONFIG REWRITE's edits are not drift, the old master's `replicaof` is
//! not undone).
//!
//! Everything started is killed at the end, also when an assertion fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ensure_package, Run, Sandbox};
use resources::pg::testing::free_port;

struct Node {
    sb: Sandbox,
    name: String,
    ip: String,
    port: u16,
    sentinel_port: u16,
}

impl Node {
    fn new(n: usize) -> Node {
        let sb = Sandbox::bundled();
        // redis-server and Sentinel run as redis inside the root.
        for d in [sb.path().to_path_buf(), sb.root()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let ip = format!("127.0.0.{}", 110 + n);
        Node {
            sb,
            name: format!("hipchat-redis{n}"),
            port: free_port(&ip),
            sentinel_port: free_port(&ip),
            ip,
        }
    }

    fn agent(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--node", self.name.as_str()]);
        self.sb.agent(&all)
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.sb.root().join(format!("var/run/{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(&self.ip, port, args)
    }
}

fn cli(host: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The cluster's Hiera, shared by the nodes and the client.
fn cluster_hiera(nodes: &[Node]) -> String {
    let list: String = nodes
        .iter()
        .map(|n| {
            format!(
                "  - {{name: {}, ip: {}, port: {}, sentinel_port: {}}}\n",
                n.name, n.ip, n.port, n.sentinel_port
            )
        })
        .collect();
    format!(
        "redis::nodes:\n{list}redis::master_ip: {}\nredis::master_port: {}\n\
         redis::down_after_ms: 1000\nredis::failover_timeout_ms: 3000\ncluster::hosts: []\n",
        nodes[0].ip, nodes[0].port
    )
}

/// Stops every daemon the nodes started and the watcher, whatever happened.
struct Cluster {
    nodes: Vec<Node>,
    watcher: Option<Child>,
    watch_log: Option<std::path::PathBuf>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                for log in [
                    "var/log/redis/redis-server.log",
                    "var/log/redis/redis-sentinel.log",
                ] {
                    let text = std::fs::read_to_string(n.sb.root().join(log)).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(12).collect();
                    eprintln!("--- {} {log} (last lines)", n.name);
                    tail.iter().rev().for_each(|l| eprintln!("{l}"));
                }
            }
        }
        if let (true, Some(log)) = (std::thread::panicking(), &self.watch_log) {
            eprintln!(
                "--- agent watch\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Some(w) = &mut self.watcher {
            let _ = w.kill();
            let _ = w.wait();
        }
        for n in &self.nodes {
            for d in ["redis-sentinel", "redis-server"] {
                if let Some(pid) = n.pid(d) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::SIGKILL,
                    );
                }
            }
        }
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut ok: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The resources a run changed (`Notice: TYPE[TITLE]: ...` lines).
fn changed(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with("Notice: ") && l.contains("]: ") && !l.contains("left alone"))
        .map(str::to_string)
        .collect()
}

fn apply_all(nodes: &[Node]) -> Vec<Run> {
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| s.spawn(|| n.agent(&["apply", "--detailed-exitcodes"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn three_redis_nodes_with_sentinel_fail_over_and_the_agent_follows_without_fighting() {
    ensure_package("redis-server", "/usr/bin/redis-server");
    ensure_package("redis-sentinel", "/usr/bin/redis-sentinel");
    assert!(
        nix::unistd::geteuid().is_root(),
        "the Redis role runs redis-server and Sentinel as the redis user: run this test as root"
    );
    let test_started = Instant::now();
    let mut cluster = Cluster {
        nodes: (1..=3).map(Node::new).collect(),
        watcher: None,
        watch_log: None,
    };
    let shared = cluster_hiera(&cluster.nodes);
    for n in &cluster.nodes {
        n.sb.site_file(
            &format!("hiera/data/nodes/{}.yaml", n.name),
            &format!(
                "redis::ip: {}\nredis::port: {}\nredis::sentinel_port: {}\nredis::prefix: '{}'\n{shared}",
                n.ip,
                n.port,
                n.sentinel_port,
                n.sb.root().display()
            ),
        );
    }
    let nodes = &cluster.nodes;

    // Provisioned at once, as three hosts would be.
    for (n, run) in nodes.iter().zip(apply_all(nodes)) {
        run.code(2)
            .stdout_has("service[redis-server]: ensure changed 'stopped' to 'running'")
            .stdout_has("service[redis-sentinel]: ensure changed 'stopped' to 'running'");
        let conf = n.sb.read_root("etc/redis/redis.conf");
        assert!(conf.contains(&format!("bind {}\n", n.ip)), "{conf}");
        assert_eq!(
            conf.contains("replicaof"),
            n.name != "hipchat-redis1",
            "{}: {conf}",
            n.name
        );
    }
    let (master, replicas) = (&nodes[0], &nodes[1..]);

    // Replicating, and three sentinels that agree (and know each other).
    wait_for(
        "two replicas linked to the master",
        Duration::from_secs(20),
        || {
            let info = master.cli(master.port, &["INFO", "replication"]);
            let linked = replicas.iter().all(|r| {
                r.cli(r.port, &["INFO", "replication"])
                    .contains("master_link_status:up")
            });
            (info.contains("connected_slaves:2") && linked).then_some(())
        },
    );
    master.cli(master.port, &["SET", "hipchat", "before"]);
    wait_for("the key on the replicas", Duration::from_secs(10), || {
        replicas
            .iter()
            .all(|r| r.cli(r.port, &["GET", "hipchat"]) == "before")
            .then_some(())
    });
    wait_for("three sentinels agreeing", Duration::from_secs(20), || {
        nodes
            .iter()
            .all(|n| {
                n.cli(n.sentinel_port, &["SENTINEL", "ckquorum", "mymaster"])
                    .starts_with("OK 3 usable Sentinels")
                    && n.cli(
                        n.sentinel_port,
                        &["SENTINEL", "get-master-addr-by-name", "mymaster"],
                    )
                    .lines()
                    .collect::<Vec<_>>()
                        == [master.ip.as_str(), &master.port.to_string()]
            })
            .then_some(())
    });
    // Sentinel rewrote its file (its id, the replicas and sentinels it found).
    wait_for("each sentinel's rewrite", Duration::from_secs(20), || {
        nodes
            .iter()
            .all(|n| {
                let s = n.sb.read_root("etc/redis/sentinel.conf");
                s.contains("sentinel myid")
                    && s.matches("sentinel known-replica mymaster").count() == 2
                    && s.matches("sentinel known-sentinel mymaster").count() == 2
            })
            .then_some(())
    });

    // The facts: the master as the sentinels name it, each server's role.
    for n in nodes {
        n.agent(&["facts", "redis_master"])
            .code(0)
            .stdout_has(&master.addr());
        let role = n.agent(&["facts", "redis.role"]);
        role.code(0);
        assert_eq!(
            role.stdout.trim(),
            if n.name == master.name {
                "master"
            } else {
                "replica"
            }
        );
    }
    // Converged: nothing to do anywhere, Sentinel's rewrites included.
    for (n, run) in nodes.iter().zip(apply_all(nodes)) {
        assert_eq!(run.code, 0, "{}: {}\n{}", n.name, run.stdout, run.stderr);
    }

    // The stand-in client: its config names the master, rewritten by
    // `agent watch --fact redis_master` (its own sandbox, no daemon).
    let client = Sandbox::bundled();
    client.site_file(
        "manifests/site.yaml",
        "nodes:\n  hipchat-app1: [roles/redis_client]\n",
    );
    client.site_file(
        "manifests/roles/redis_client.yaml",
        "resources:\n  - file: /etc\n    ensure: directory\n  - file: /etc/hipchat\n    ensure: directory\n  \
         - file: /etc/hipchat/redis.properties\n    \
         content: \"redis.sentinel.master={{facts.redis_master}}\\n\"\n",
    );
    // No database cluster to probe on this stand-in (common.yaml's
    // example one is not on this machine).
    client.site_file(
        "hiera/data/nodes/hipchat-app1.yaml",
        &format!("{shared}db_cluster::nodes: []\n"),
    );
    let properties = client.root().join("etc/hipchat/redis.properties");
    let hooks = client.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let watch_log = client.path().join("watch.log");
    let log = std::fs::File::create(&watch_log).unwrap();
    cluster.watch_log = Some(watch_log.clone());
    cluster.watcher = Some(
        client
            .command(&[
                "watch",
                "--fact",
                "redis_master",
                "--interval",
                "250ms",
                "--flap-hold",
                "500ms",
                "--max-time",
                "120s",
                "--hooks-dir",
                hooks.to_str().unwrap(),
                "--node",
                "hipchat-app1",
            ])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("agent watch starts"),
    );
    let nodes = &cluster.nodes;
    let (master, replicas) = (&nodes[0], &nodes[1..]);
    wait_for("the watcher's first apply", Duration::from_secs(20), || {
        std::fs::read_to_string(&properties)
            .ok()
            .filter(|s| s == &format!("redis.sentinel.master={}\n", master.addr()))
    });

    // kill -9 the master: the sentinels promote a replica.
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master.pid("redis-server").unwrap()),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let new_master = wait_for(
        "redis_master to name a new master",
        Duration::from_secs(10),
        || {
            let run = replicas[0].agent(&["facts", "redis_master"]);
            let v = run.stdout.trim().to_string();
            (run.code == 0 && !v.is_empty() && v != master.addr()).then_some(v)
        },
    );
    let failover = killed.elapsed();
    println!(
        "redis_master named the new master {new_master} {:.2} s after kill -9 of the master",
        failover.as_secs_f64()
    );
    assert!(failover <= Duration::from_secs(10), "{failover:?}");
    let promoted = replicas
        .iter()
        .find(|r| r.addr() == new_master)
        .unwrap_or_else(|| panic!("{new_master} is none of the replicas"));
    assert!(promoted
        .cli(promoted.port, &["INFO", "replication"])
        .contains("role:master"));
    assert_eq!(
        promoted.cli(promoted.port, &["SET", "hipchat", "after"]),
        "OK"
    );
    let rewritten = wait_for(
        "the watcher to rewrite the client's file",
        Duration::from_secs(15),
        || {
            std::fs::read_to_string(&properties)
                .ok()
                .filter(|s| s == &format!("redis.sentinel.master={new_master}\n"))
                .map(|_| killed.elapsed())
        },
    );
    println!(
        "agent watch rewrote redis.properties {:.2} s after the kill",
        rewritten.as_secs_f64()
    );
    let watched = std::fs::read_to_string(&watch_log).unwrap();
    assert!(
        watched.contains(&format!("redis_master changed from {} to", master.addr())),
        "{watched}"
    );

    // The next apply: the dead server is started again, no file changes
    // (the promoted replica lost its replicaof line to CONFIG REWRITE, the
    // sentinels moved `sentinel monitor`: neither is put back).
    let runs = apply_all(nodes);
    for (n, run) in nodes.iter().zip(&runs) {
        if n.name == master.name {
            run.code(2);
            assert_eq!(
                changed(run),
                ["Notice: service[redis-server]: ensure changed 'stopped' to 'running'"],
                "{}",
                run.stdout
            );
        } else {
            assert_eq!(run.code, 0, "{}: {}\n{}", n.name, run.stdout, run.stderr);
        }
    }
    let promoted_conf = promoted.sb.read_root("etc/redis/redis.conf");
    assert!(!promoted_conf.contains("replicaof"), "{promoted_conf}");
    // The sentinels turn the old master into a replica of the master they
    // agree on (CONFIG REWRITE writes its replicaof) ...
    let current = wait_for(
        "the old master to follow the sentinels' master",
        Duration::from_secs(30),
        || {
            let said: Vec<String> = nodes
                .iter()
                .map(|n| {
                    n.cli(
                        n.sentinel_port,
                        &["SENTINEL", "get-master-addr-by-name", "mymaster"],
                    )
                    .replace('\n', ":")
                })
                .collect();
            if said.iter().any(|s| s != &said[0]) {
                return None;
            }
            let m = nodes.iter().find(|n| n.addr() == said[0])?;
            let followers_up = nodes.iter().filter(|n| n.name != m.name).all(|n| {
                let info = n.cli(n.port, &["INFO", "replication"]);
                info.contains("role:slave")
                    && info.contains(&format!("master_port:{}", m.port))
                    && info.contains("master_link_status:up")
            });
            let in_file = master
                .sb
                .read_root("etc/redis/redis.conf")
                .contains(&format!("replicaof {} {}", m.ip, m.port));
            (followers_up && in_file).then(|| said[0].clone())
        },
    );
    if current != new_master {
        println!("(the sentinels failed over once more, to {current})");
    }
    assert_eq!(master.cli(master.port, &["GET", "hipchat"]), "after");
    // ... and the agent leaves it so: nothing to do anywhere.
    for (n, run) in nodes.iter().zip(apply_all(nodes)) {
        assert_eq!(run.code, 0, "{}: {}\n{}", n.name, run.stdout, run.stderr);
    }
    for n in nodes {
        n.agent(&["facts", "redis_master"])
            .code(0)
            .stdout_has(&current);
    }
    // Sentinels that disagree (one told to watch a replica as the master):
    // no redis_master, the split named, the client's file left as it was.
    let other = nodes.iter().find(|n| n.addr() != current).unwrap();
    let rogue = &nodes[2];
    assert_eq!(
        rogue.cli(rogue.sentinel_port, &["SENTINEL", "REMOVE", "mymaster"]),
        "OK"
    );
    assert_eq!(
        rogue.cli(
            rogue.sentinel_port,
            &[
                "SENTINEL",
                "MONITOR",
                "mymaster",
                &other.ip,
                &other.port.to_string(),
                "2"
            ]
        ),
        "OK"
    );
    // One read for the value and the flags: the rogue sentinel may learn
    // the real master later, and two reads could see two moments.
    let split = nodes[0].agent(&[
        "facts",
        "--json",
        "redis_master",
        "redis_split_brain",
        "redis_master_error",
    ]);
    split
        .code(1)
        .stderr_has("redis_master has no value: the sentinels disagree on the master")
        .stderr_has(&format!(
            "{} (by {}:{})",
            other.addr(),
            rogue.ip,
            rogue.sentinel_port
        ));
    let v: serde_json::Value = serde_json::from_str(&split.stdout).unwrap();
    assert_eq!(v["redis_split_brain"], true, "{v}");
    assert!(
        v["redis_master_error"].as_str().unwrap().contains(&current),
        "{v}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read_to_string(&properties).unwrap(),
        format!("redis.sentinel.master={current}\n"),
        "the watcher pointed the client nowhere"
    );

    // No sentinel answering: the last known master (persisted by the runs
    // above), marked stale.
    for n in nodes {
        let pid = n.pid("redis-sentinel").unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    }
    let stale = nodes[1].agent(&["facts", "--json", "redis_master", "redis_master_stale"]);
    stale.code(0);
    let v: serde_json::Value = serde_json::from_str(&stale.stdout).unwrap();
    assert_eq!(v["redis_master"], current.as_str(), "{v}");
    assert_eq!(v["redis_master_stale"], true, "{v}");
    for n in nodes {
        let log = n.sb.read_root("var/log/redis/redis-sentinel.log");
        for l in log
            .lines()
            .filter(|l| l.contains("+switch-master") || l.contains("+elected-leader"))
        {
            println!("{}: {l}", n.name);
        }
    }
    println!("whole test: {:.1} s", test_started.elapsed().as_secs_f64());
}
