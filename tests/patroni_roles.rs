//! Patroni + etcd from the bundled roles, for real: three nodes (`ha-db1..3`,
//! `roles/ha_db` = `roles/etcd_member` + `roles/patroni_node`, its own `--root` and
//! state dir, its own loopback address) applied at once as three hosts
//! would be provisioned. Then: etcd healthy on every member, one Patroni
//! leader and two streaming replicas (one synchronous); the next apply makes
//! the application's role and database on the leader alone, and the one
//! after changes nothing; `patroni_config` shows a changed setting in
//! `--noop` without sending it, changes it through the REST API, and finds
//! nothing to do after; `pg_conf`/`pg_hba` on Patroni's data dir fail and
//! change nothing; a mistyped setting fails the compile with a hint.
//!
//! The cluster is started once for this binary (one test); a guard stops
//! every process it started, also when an assertion fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ensure_package, Run, Sandbox};
use resources::pg::testing::{free_port, stop_now};
use resources::pg::DEFAULT_BINDIR;
use serde_json::Value;

const SECRETS: &[&str] = &["supersecret", "repl-Pa55-standby", "rest-Pa55-patroni"];

struct Node {
    sb: Sandbox,
    name: String,
    ip: String,
    client_port: u16,
    peer_port: u16,
    rest_port: u16,
    pg_port: u16,
}

impl Node {
    fn new(n: usize) -> Node {
        let sb = Sandbox::bundled();
        // Patroni (postgres) and etcd (etcd) read and write inside the root.
        for d in [sb.path().to_path_buf(), sb.root()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let ip = format!("127.0.0.{}", 70 + n);
        Node {
            sb,
            name: format!("ha-db{n}"),
            client_port: free_port(&ip),
            peer_port: free_port(&ip),
            rest_port: free_port(&ip),
            pg_port: free_port(&ip),
            ip,
        }
    }

    /// The node's Hiera: its address and ports, the three members, host
    /// paths the server reads (socket dir) inside its root, loopback ACLs;
    /// `extra` is appended (a test's change).
    fn hiera(&self, members: &str, extra: &str) {
        let data = format!(
            "patroni::ip: {ip}\npatroni::rest_port: {rest}\npatroni::pg_port: {pg}\n\
             patroni::parameters:\n  unix_socket_directories: '{sock}'\n  fsync: 'off'\n\
             patroni::pg_hba:\n  - local all postgres peer\n  - host all postgres 127.0.0.0/8 scram-sha-256\n  \
             - host replication replicator 127.0.0.0/8 scram-sha-256\n\
             patroni::config_timeout: 120\ncluster::hosts: []\ndb_cluster::probe_timeout_ms: 500\n\
             db_cluster::nodes:\n{db_nodes}etcd::members:\n{members}{extra}",
            ip = self.ip,
            rest = self.rest_port,
            pg = self.pg_port,
            sock = self.sb.root().join("var/lib/postgresql/15").display(),
            db_nodes = db_nodes(members),
        );
        self.sb
            .site_file(&format!("hiera/data/nodes/{}.yaml", self.name), &data);
    }

    fn agent(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--node", self.name.as_str()]);
        self.sb.agent(&all)
    }

    fn api(&self) -> String {
        format!("http://{}:{}", self.ip, self.rest_port)
    }

    fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.sb.root().join(format!("var/run/{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn datadir(&self) -> PathBuf {
        self.sb.root().join("var/lib/postgresql/15/main")
    }
}

/// Stops everything the nodes started, whatever happened: Patroni first
/// (SIGKILL: it would otherwise fail over as the others go), then the
/// postmasters it leaves behind, then etcd.
struct Cluster(Vec<Node>);

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.0 {
                for log in ["var/log/etcd/etcd.log", "var/log/patroni/patroni.log"] {
                    let text = std::fs::read_to_string(n.sb.root().join(log)).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    eprintln!("--- {} {log} (last lines)", n.name);
                    tail.iter().rev().for_each(|l| eprintln!("{l}"));
                }
            }
        }
        let kill = |pid: Option<i32>| {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        };
        // The fences first: they would fence the primaries as Patroni goes.
        for n in &self.0 {
            kill(n.pid("agent-fence"));
        }
        for n in &self.0 {
            kill(n.pid("patroni"));
        }
        for n in &self.0 {
            stop_now(Path::new(DEFAULT_BINDIR), &n.datadir());
        }
        for n in &self.0 {
            kill(n.pid("etcd"));
        }
    }
}

fn get_json(url: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(url).call().ok()?.into_body().read_json().ok()
}

fn wait_for<T>(what: &str, mut ok: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn no_secrets(run: &Run) {
    for s in SECRETS {
        assert!(!run.all().contains(s), "a password leaked:\n{}", run.all());
    }
}

#[test]
fn three_nodes_from_the_roles_elect_a_leader_converge_and_patroni_config_patches() {
    ensure_package("etcd-server", "/usr/bin/etcd");
    ensure_package("patroni", "/usr/bin/patroni");
    ensure_package(
        "python3-psycopg2",
        "/usr/lib/python3/dist-packages/psycopg2/__init__.py",
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "the Patroni roles run etcd and Patroni as their own users (etcd, postgres): run this test as root"
    );

    let cluster = Cluster((1..=3).map(Node::new).collect());
    let nodes = &cluster.0;
    for n in nodes {
        n.hiera(&members_yaml(nodes), "");
    }

    // Provisioned at once, as three hosts would be: etcd needs a quorum
    // and Patroni's first node bootstraps while the others clone it.
    let firsts: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| s.spawn(|| n.agent(&["apply", "--detailed-exitcodes"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, run) in nodes.iter().zip(&firsts) {
        run.code(2)
            .stdout_has("service[etcd]: ensure changed 'stopped' to 'running'")
            .stdout_has("service[patroni]: ensure changed 'stopped' to 'running'")
            .stdout_has("service[agent-fence]: ensure changed 'stopped' to 'running'");
        no_secrets(run);
        assert!(n
            .sb
            .read_root("etc/postgresql-common/createcluster.conf")
            .contains("create_main_cluster = false"));
        let config = n.sb.read_root("etc/patroni/config.yml");
        assert!(
            config.contains("use_proxies: true") && config.contains("\"synchronous_mode\":true"),
            "{config}"
        );
        let mode = std::fs::metadata(n.sb.root().join("etc/patroni/config.yml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "patroni.yml holds passwords");
    }

    // etcd: every member healthy.
    for n in nodes {
        let url = format!("http://{}:{}/health", n.ip, n.client_port);
        wait_for(&format!("etcd on {}", n.name), || {
            get_json(&url).filter(|h| h["health"] == "true")
        });
    }
    // Patroni: one leader, two replicas streaming, one of them synchronous.
    let members = wait_for("a leader and two streaming replicas", || {
        let c = get_json(&format!("{}/cluster", nodes[0].api()))?;
        let m = c["members"].as_array()?.clone();
        let running = |r: &str| {
            m.iter()
                .filter(|x| {
                    x["role"] == r && (x["state"] == "running" || x["state"] == "streaming")
                })
                .count()
        };
        (m.len() == 3
            && running("leader") == 1
            && running("sync_standby") == 1
            && running("replica") == 1)
            .then_some(m)
    });
    let leader = members
        .iter()
        .find(|m| m["role"] == "leader")
        .and_then(|m| m["name"].as_str())
        .unwrap()
        .to_string();
    assert!(nodes.iter().any(|n| n.name == leader), "{leader}");
    // Each node's fence runs and watches its own Patroni and data dir (the
    // roles' environment override puts it under --root), within the budget.
    for n in nodes {
        let pid = n.pid("agent-fence").expect("agent-fence.pid");
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "agent fence on {} exited: {}",
            n.name,
            n.sb.read_root("var/log/patroni/fence.log")
        );
        let log = n.sb.read_root("var/log/patroni/fence.log");
        let want = format!(
            "agent fence: Patroni at {}:{} (data dir {})",
            n.ip,
            n.rest_port,
            n.datadir().display()
        );
        assert!(log.contains(&want), "{want}\n{log}");
        assert!(log.contains("< ttl 10 s - loop_wait 2 s"), "{log}");
        assert!(!log.contains("fenced:"), "a healthy node fenced: {log}");
    }

    // The next run of the leader (db_master names it now) makes the
    // application's role and database; the replicas leave them alone and
    // receive them by replication.
    for n in nodes {
        let again = n.agent(&["apply", "--detailed-exitcodes"]);
        no_secrets(&again);
        if n.name == leader {
            again
                .code(2)
                .stdout_has("pg_role[stashuser]: ensure changed 'absent' to 'present'")
                .stdout_has("pg_database[stashdb]: ensure changed 'absent' to 'present'");
        } else {
            again
                .code(0)
                .stdout_has(&format!("not the leader: {}", leader_addr(nodes, &leader)));
        }
    }
    let replica = nodes.iter().find(|n| n.name != leader).unwrap();
    wait_for("the role and database on a replica", || {
        let mut c = resources::pg::Conn::new(
            &replica.ip,
            replica.pg_port,
            "postgres",
            Some("supersecret"),
        )
        .connect()
        .ok()?;
        let n: i64 = c
            .query_one(
                "select count(*) from pg_database d join pg_roles r on r.oid = d.datdba \
                 where d.datname = 'stashdb' and r.rolname = 'stashuser'",
                &[],
            )
            .ok()?
            .get(0);
        (n == 1).then_some(())
    });
    // Converged: the next apply of each node changes nothing.
    for n in nodes {
        n.agent(&["apply", "--detailed-exitcodes"]).code(0);
    }

    // patroni_config: a PostgreSQL parameter of the whole cluster, in every
    // node's data (one cluster, one configuration).
    let config_of = |n: &Node| get_json(&format!("{}/config", n.api())).unwrap();
    let work_mem = |n: &Node| config_of(n)["postgresql"]["parameters"]["work_mem"].clone();
    assert_eq!(
        config_of(&nodes[1])["loop_wait"],
        2,
        "bootstrap.dcs from Hiera"
    );
    assert_eq!(work_mem(&nodes[1]), Value::Null);
    let change = "patroni::dcs:\n  postgresql:\n    parameters:\n      work_mem: 8MB\n";
    for n in nodes {
        n.hiera(&members_yaml(nodes), change);
    }
    let noop = nodes[0].agent(&["apply", "--noop", "--detailed-exitcodes"]);
    noop.code(2).stdout_has(
        "patroni_config[stash-db]: postgresql.parameters.work_mem would change absent to '8MB'",
    );
    no_secrets(&noop);
    assert_eq!(work_mem(&nodes[1]), Value::Null, "noop sent nothing");

    // With every library's logs on: neither the passwords nor the REST
    // API's Basic credentials (base64 of user:password) show (ureq masks
    // the header's value in its trace).
    let changed = Run::of(
        nodes[0]
            .sb
            .command(&["apply", "--detailed-exitcodes", "--node", "ha-db1"])
            .env("AGENT_LOG", "trace"),
    );
    assert!(
        !changed.all().contains("cGF0cm9uaTpyZXN0LVBhNTUtcGF0cm9uaQ"),
        "{}",
        changed.all()
    );
    changed.code(2).stdout_has(
        "patroni_config[stash-db]: postgresql.parameters.work_mem changed absent to '8MB'",
    );
    no_secrets(&changed);
    // The cluster's configuration, read through another node (which sees
    // the DCS through its own watch: soon, not at once), and the leader's
    // PostgreSQL running with it (Patroni reloads it).
    wait_for("ha-db2 to see the new configuration", || {
        (work_mem(&nodes[1]) == "8MB").then_some(())
    });
    assert_eq!(config_of(&nodes[1])["ttl"], 10, "the rest left as it was");
    let leader_node = nodes.iter().find(|n| n.name == leader).unwrap();
    wait_for("the leader to run with work_mem 8MB", || {
        let mut c = resources::pg::Conn::new(
            &leader_node.ip,
            leader_node.pg_port,
            "postgres",
            Some("supersecret"),
        )
        .connect()
        .ok()?;
        let v: String = c.query_one("show work_mem", &[]).ok()?.get(0);
        (v == "8MB").then_some(())
    });
    nodes[0].agent(&["apply", "--detailed-exitcodes"]).code(0);
    // Another node with the same data: its patroni.yml follows (bootstrap
    // section), the cluster's configuration is already in sync.
    let other = nodes[1].agent(&["apply", "--detailed-exitcodes"]);
    assert!(
        !other.stdout.contains("patroni_config"),
        "already converged by ha-db1:\n{}",
        other.stdout
    );
    nodes[1].agent(&["apply", "--detailed-exitcodes"]).code(0);

    // pg_conf and pg_hba defer to Patroni: declared on its data dir, they
    // fail naming the keys to use, and the files stay Patroni's.
    let n3 = &nodes[2];
    n3.sb.site_file(
        "manifests/roles/hand_tuned.yaml",
        "resources:\n  - pg_conf: tuning\n    datadir: /var/lib/postgresql/15/main\n    \
         settings: {work_mem: 16MB}\n  - pg_hba: /var/lib/postgresql/15/main\n    \
         rules: ['host all all 127.0.0.1/32 trust']\n",
    );
    n3.sb.site_file(
        "manifests/site.yaml",
        "nodes:\n  ha-db3: [roles/ha_db, roles/hand_tuned]\n",
    );
    let conf_before = std::fs::read(n3.datadir().join("postgresql.conf")).unwrap();
    let fought = n3.agent(&["apply", "--detailed-exitcodes"]);
    // (6: its patroni.yml and motd follow the new data and roles.)
    fought.code(6);
    assert_eq!(
        fought.all().matches("Patroni runs the server").count(),
        2,
        "{}",
        fought.all()
    );
    assert!(fought.all().contains("patroni::pg_hba"), "{}", fought.all());
    assert_eq!(
        std::fs::read(n3.datadir().join("postgresql.conf")).unwrap(),
        conf_before
    );
    n3.sb
        .site_file("manifests/site.yaml", "nodes:\n  ha-db3: [roles/ha_db]\n");

    // A mistyped setting fails the compile, naming it and the fix; the
    // node is left as it was.
    nodes[2].hiera(&members_yaml(nodes), "patroni::dcs:\n  loop_wiat: 3\n");
    let managed =
        |n: &Node| ["etc/patroni/config.yml", "etc/default/etcd"].map(|f| n.sb.read_root(f));
    let before = managed(&nodes[2]);
    nodes[2]
        .agent(&["apply", "--detailed-exitcodes"])
        .code(1)
        .stderr_has("manifests/profiles/patroni.yaml:")
        .stderr_has("did you mean 'loop_wait'");
    assert!(
        before == managed(&nodes[2]),
        "a failed compile changed a file"
    );
    assert_eq!(work_mem(&nodes[1]), "8MB");
}

fn members_yaml(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "  - {{name: {}, ip: {}, client_port: {}, peer_port: {}, pg_port: {}}}\n",
                n.name, n.ip, n.client_port, n.peer_port, n.pg_port
            )
        })
        .collect()
}

/// `db_cluster::nodes` (the PostgreSQL of each node) from the members' YAML.
fn db_nodes(members: &str) -> String {
    members
        .lines()
        .map(|l| {
            let field = |k: &str| {
                let rest = &l[l.find(&format!("{k}: ")).unwrap() + k.len() + 2..];
                rest[..rest.find([',', '}']).unwrap()].to_string()
            };
            format!("  - '{}:{}'\n", field("ip"), field("pg_port"))
        })
        .collect()
}

fn leader_addr(nodes: &[Node], leader: &str) -> String {
    let n = nodes.iter().find(|n| n.name == leader).unwrap();
    format!("{}:{}", n.ip, n.pg_port)
}
