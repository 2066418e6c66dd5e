//! A Patroni cluster on loopback: three etcd members and three Patroni
//! nodes (PostgreSQL 15), for the DCS tests, the DCS bench and `agent demo
//! patroni`.
//!
//! The daemons are started directly (not through the roles): etcd members
//! on 127.0.0.1 with client and peer ports found free (each also listening on
//! one address per Patroni node, [`etcd_address`]); each Patroni node on
//! its own address (127.0.0.21, .22, .23 by default) with its PostgreSQL and
//! REST ports, `etcd3: {hosts, use_proxies: true}` (so a node talks to the
//! hosts it was given, which a partition needs), `synchronous_mode`, the
//! watchdog off, and the fast timing of the issue (ttl 10, loop_wait 2,
//! retry_timeout 4). Patroni runs as the `postgres` OS user when we are root
//! (uid/gid set in the child, supplementary groups dropped, not through
//! runuser, whose pid is not
//! Patroni's and which stops itself on SIGSTOP), so the pid we hold is
//! Patroni's; the postmaster's pid is read from its `postmaster.pid`.
//! Every process is killed and the directory removed by [`PatroniCluster::cleanup`]
//! (also on drop).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::packages;
use crate::failover::fence::{alive, children_of};

/// The packages a Patroni cluster needs, with a file each installs.
pub const PACKAGES: &[(&str, &str)] = &[
    ("etcd-server", "/usr/bin/etcd"),
    ("etcd-client", "/usr/bin/etcdctl"),
    ("patroni", "/usr/bin/patroni"),
    (
        "python3-psycopg2",
        "/usr/lib/python3/dist-packages/psycopg2/__init__.py",
    ),
];

/// PostgreSQL's binaries (the `postgresql-15` package).
pub const PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// How the cluster is laid out and timed.
#[derive(Debug, Clone)]
pub struct Options {
    /// Patroni's scope (the cluster's name in etcd).
    pub scope: String,
    /// One address per Patroni node.
    pub addrs: [&'static str; 3],
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub synchronous_mode: bool,
    /// PostgreSQL's `max_connections` (the bench's probes need more than 100).
    pub max_connections: u32,
    /// How many Patroni nodes (the first of `addrs`), 1 to 3.
    pub nodes: usize,
    /// How many etcd members to start (1 or 3).
    pub etcd_members: usize,
    /// Use these etcd members (client ports on 127.0.0.1) instead of
    /// starting any: a second cluster (another scope) in the same etcd.
    pub external_etcd: Vec<u16>,
    /// Each node reaches etcd through an address of its own
    /// ([`etcd_address`], 127.0.1.x: the partition scenario); false:
    /// through 127.0.0.1.
    pub per_node_etcd_address: bool,
    /// `bootstrap.dcs.standby_cluster`: this cluster is a standby cluster
    /// replicating from the one it names (`{host, port}`).
    pub standby_cluster: Option<Value>,
    /// PostgreSQL's passwords (superuser, replication, rewind); random when
    /// unset. A standby cluster needs its source's.
    pub password: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scope: "agent-testbed".into(),
            addrs: ["127.0.0.21", "127.0.0.22", "127.0.0.23"],
            ttl: 10,
            loop_wait: 2,
            retry_timeout: 4,
            synchronous_mode: true,
            max_connections: 100,
            nodes: 3,
            etcd_members: 3,
            external_etcd: vec![],
            per_node_etcd_address: true,
            standby_cluster: None,
            password: None,
        }
    }
}

/// One etcd member.
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

impl EtcdMember {
    /// `127.0.0.1:port`, as `db_cluster::etcd` takes it.
    pub fn client(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

/// One Patroni node and its PostgreSQL.
pub struct PatroniNode {
    pub name: String,
    pub addr: &'static str,
    pub pg_port: u16,
    pub rest_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl PatroniNode {
    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }
    /// `host:port` of its PostgreSQL, as `db_master` names it.
    pub fn pg(&self) -> String {
        format!("{}:{}", self.addr, self.pg_port)
    }
    /// `host:port` of its REST API, as `db_cluster::patroni` takes it.
    pub fn rest(&self) -> String {
        format!("{}:{}", self.addr, self.rest_port)
    }
    /// Patroni's own pid (not a wrapper's).
    pub fn patroni_pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
    /// The postmaster's pid, from its `postmaster.pid`, while it runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        resources::pg::postmaster_pid(&self.datadir()).filter(|pid| alive(*pid))
    }
}

/// Three etcd members and three Patroni nodes on loopback (by default;
/// see [`Options`]).
pub struct PatroniCluster {
    pub dir: PathBuf,
    pub opts: Options,
    pub etcd: Vec<EtcdMember>,
    pub nodes: Vec<PatroniNode>,
    /// PostgreSQL's superuser (`postgres`) password.
    pub password: String,
    remove_dir: bool,
}

/// The address through which Patroni node `i` reaches every etcd member
/// (127.0.1.1, .2, .3): packets to it dropped, that node alone is cut off
/// from etcd (`use_proxies: true` keeps Patroni on these hosts).
pub fn etcd_address(i: usize) -> String {
    format!("127.0.1.{}", i + 1)
}

fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// A port free on `addr` right now (daemons bind their own).
fn free_port(addr: &str) -> Result<std::net::TcpListener> {
    std::net::TcpListener::bind((addr, 0)).with_context(|| format!("cannot bind {addr}"))
}

fn random_hex() -> Result<String> {
    let mut buf = [0u8; 16];
    use std::io::Read;
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl PatroniCluster {
    /// Installs what is missing (as root), lays the cluster out under `dir`
    /// (removed by cleanup when `remove_dir`), starts etcd, then Patroni, and
    /// waits until there is a leader and both replicas stream.
    pub fn start(dir: &Path, opts: Options, remove_dir: bool) -> Result<PatroniCluster> {
        for (package, probe) in PACKAGES {
            packages::ensure(package, probe)?;
        }
        if !Path::new(PG_BINDIR).join("postgres").exists() {
            bail!(
                "this needs PostgreSQL 15 ({PG_BINDIR}); install it: apt-get install postgresql-15"
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = fs::canonicalize(dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        // Hold every port until all are chosen, so none is chosen twice.
        let mut held = vec![];
        let mut port = |addr: &str| -> Result<u16> {
            let l = free_port(addr)?;
            let p = l.local_addr()?.port();
            held.push(l);
            Ok(p)
        };
        if !(1..=3).contains(&opts.nodes) {
            bail!("nodes must be 1 to 3, got {}", opts.nodes);
        }
        let mut etcd = vec![];
        if opts.external_etcd.is_empty() {
            for i in 1..=opts.etcd_members {
                etcd.push(EtcdMember {
                    name: format!("e{i}"),
                    client_port: port("127.0.0.1")?,
                    peer_port: port("127.0.0.1")?,
                    child: None,
                });
            }
        } else {
            for (i, client_port) in opts.external_etcd.iter().enumerate() {
                etcd.push(EtcdMember {
                    name: format!("e{}", i + 1),
                    client_port: *client_port,
                    peer_port: 0,
                    child: None,
                });
            }
        }
        let mut nodes = vec![];
        for (i, addr) in opts.addrs.iter().take(opts.nodes).enumerate() {
            nodes.push(PatroniNode {
                name: format!("n{}", i + 1),
                addr,
                pg_port: port(addr)?,
                rest_port: port(addr)?,
                dir: dir.join(format!("n{}", i + 1)),
                child: None,
            });
        }
        drop(held);
        let password = match &opts.password {
            Some(p) => p.clone(),
            None => random_hex()?,
        };
        let mut cluster = PatroniCluster {
            dir,
            opts,
            etcd,
            nodes,
            password,
            remove_dir,
        };
        if cluster.opts.external_etcd.is_empty() {
            cluster.start_etcd()?;
        }
        for i in 0..cluster.nodes.len() {
            cluster.write_config(i)?;
            cluster.start_node(i)?;
        }
        cluster.wait_healthy(Duration::from_secs(120))?;
        Ok(cluster)
    }

    fn start_etcd(&mut self) -> Result<()> {
        let initial = self
            .etcd
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut self.etcd {
            let data = self.dir.join(&m.name);
            let log = fs::File::create(self.dir.join(format!("{}.log", m.name)))?;
            let client = format!("http://127.0.0.1:{}", m.client_port);
            // Each Patroni node reaches etcd through an address of its own
            // (see `etcd_address`), so one node can be cut off alone.
            let per_node = if self.opts.per_node_etcd_address {
                3
            } else {
                0
            };
            let listen = std::iter::once(client.clone())
                .chain(
                    (0..per_node).map(|k| format!("http://{}:{}", etcd_address(k), m.client_port)),
                )
                .collect::<Vec<_>>()
                .join(",");
            let peer = format!("http://127.0.0.1:{}", m.peer_port);
            let child = Command::new("etcd")
                .args(["--name", &m.name, "--data-dir"])
                .arg(&data)
                .args(["--listen-client-urls", &listen])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &self.opts.scope])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .context("starting etcd")?;
            m.child = Some(child);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in &self.etcd {
            let url = format!("http://{}/health", m.client());
            loop {
                let healthy = ureq::get(&url)
                    .call()
                    .ok()
                    .and_then(|r| r.into_body().read_json::<Value>().ok())
                    .is_some_and(|v| v["health"] == "true");
                if healthy {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "etcd {} not healthy within 30 s (see {}.log)",
                        m.name,
                        m.name
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// etcd's client addresses, `127.0.0.1:port` each.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd.iter().map(EtcdMember::client).collect()
    }

    fn write_config(&self, i: usize) -> Result<()> {
        let n = &self.nodes[i];
        fs::create_dir_all(&n.dir)?;
        let o = &self.opts;
        let etcd_host = if o.per_node_etcd_address {
            etcd_address(i)
        } else {
            "127.0.0.1".to_string()
        };
        // JSON is YAML: Patroni reads this as its patroni.yml.
        let mut config = json!({
            "scope": o.scope,
            "namespace": "/service/",
            "name": n.name,
            "restapi": {"listen": n.rest(), "connect_address": n.rest()},
            "etcd3": {"hosts": self.etcd.iter().map(|m| format!("{}:{}", etcd_host, m.client_port)).collect::<Vec<_>>().join(","), "use_proxies": true},
            "bootstrap": {
                "dcs": {
                    "ttl": o.ttl, "loop_wait": o.loop_wait, "retry_timeout": o.retry_timeout,
                    "synchronous_mode": o.synchronous_mode,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "parameters": {"wal_log_hints": "on", "max_connections": o.max_connections},
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            },
            "postgresql": {
                "listen": n.pg(), "connect_address": n.pg(),
                "data_dir": n.datadir(), "bin_dir": PG_BINDIR,
                "pgpass": n.dir.join("pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.password},
                    "replication": {"username": "replicator", "password": self.password},
                    "rewind": {"username": "rewinder", "password": self.password},
                },
                "parameters": {"unix_socket_directories": n.dir},
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.0/8 scram-sha-256",
                    "host replication replicator 127.0.0.0/8 scram-sha-256",
                ],
            },
            "watchdog": {"mode": "off"},
        });
        if let Some(standby) = &o.standby_cluster {
            config["bootstrap"]["dcs"]["standby_cluster"] = standby.clone();
        }
        let path = n.config();
        fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        if nix::unistd::geteuid().is_root() {
            let pg = postgres_user()?;
            for p in [&n.dir, &path] {
                nix::unistd::chown(p.as_path(), Some(pg.uid), Some(pg.gid))?;
            }
        }
        Ok(())
    }

    /// Starts (or restarts) node `i`'s Patroni.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("patroni.log"))?;
        let mut cmd = Command::new("patroni");
        cmd.arg(n.config())
            .current_dir(&n.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if nix::unistd::geteuid().is_root() {
            let pg = postgres_user()?;
            cmd.uid(pg.uid.as_raw())
                .gid(pg.gid.as_raw())
                .env("HOME", &pg.dir)
                .env("USER", "postgres");
        }
        n.child = Some(cmd.spawn().context("starting patroni")?);
        Ok(())
    }

    /// `/cluster` from the first node whose REST API answers.
    pub fn cluster_doc(&self) -> Option<Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        self.nodes.iter().find_map(|n| {
            agent
                .get(&format!("http://{}/cluster", n.rest()))
                .call()
                .ok()?
                .into_body()
                .read_json::<Value>()
                .ok()
        })
    }

    /// The index of the node Patroni names leader, if any.
    pub fn leader(&self) -> Option<usize> {
        let doc = self.cluster_doc()?;
        let members = doc["members"].as_array()?;
        // A standby cluster's leader is its `standby_leader`.
        let leaders: Vec<&str> = members
            .iter()
            .filter(|m| {
                (m["role"] == "leader" || m["role"] == "standby_leader")
                    && (m["state"] == "running" || m["state"] == "streaming")
            })
            .filter_map(|m| m["name"].as_str())
            .collect();
        match leaders.as_slice() {
            [one] => self.nodes.iter().position(|n| n.name == *one),
            _ => None,
        }
    }

    /// The index of the synchronous standby, if any.
    pub fn sync_standby(&self) -> Option<usize> {
        let doc = self.cluster_doc()?;
        let name = doc["members"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "sync_standby")?["name"]
            .as_str()?
            .to_string();
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Waits until a leader runs and every other member streams from it
    /// (one of them as the synchronous standby in synchronous mode).
    pub fn wait_healthy(&self, within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let (Some(leader), Some(doc)) = (self.leader(), self.cluster_doc()) {
                let members = doc["members"].as_array().cloned().unwrap_or_default();
                let replicas = members
                    .iter()
                    .filter(|m| {
                        m["role"] != "leader"
                            && m["role"] != "standby_leader"
                            && m["state"] == "running"
                            && m["lag"].is_number()
                    })
                    .count();
                let sync = members.iter().any(|m| m["role"] == "sync_standby");
                if replicas == members.len().saturating_sub(1)
                    && members.len() == self.nodes.len()
                    && (sync || !self.opts.synchronous_mode || self.nodes.len() == 1)
                {
                    return Ok(leader);
                }
            }
            if crate::schedule::signals::stop_requested() {
                bail!("interrupted");
            }
            if Instant::now() > deadline {
                bail!(
                    "the Patroni cluster is not healthy within {within:?}: {} (logs in {})",
                    self.cluster_doc().unwrap_or_default(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A planned switchover to `candidate` through the leader's REST API (in
    /// synchronous mode Patroni takes only the sync standby).
    pub fn switchover(&self, candidate: usize) -> Result<()> {
        let leader = self
            .leader()
            .ok_or_else(|| anyhow!("no leader to switch over from"))?;
        let url = format!("http://{}/switchover", self.nodes[leader].rest());
        let body =
            json!({"leader": self.nodes[leader].name, "candidate": self.nodes[candidate].name});
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .post(&url)
            .send_json(&body)
            .context("POST /switchover")?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            bail!("POST {url}: {status}: {text}");
        }
        Ok(())
    }

    /// A host crash of node `i`: SIGKILL to Patroni, then to the postmaster
    /// and its children (the postmaster outlives Patroni).
    pub fn kill_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let postmaster = n.postmaster_pid();
        if let Some(mut child) = n.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pm) = postmaster {
            for pid in children_of(pm) {
                signal(pid, Signal::SIGKILL);
            }
            signal(pm, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pm) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// True when node `i`'s Patroni is not running (it exited, or was
    /// killed by a fence); reaps it.
    pub fn node_exited(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGSTOP / SIGCONT of node `i`'s Patroni (its PostgreSQL keeps running).
    pub fn freeze_node(&self, i: usize, frozen: bool) {
        if let Some(pid) = self.nodes[i].patroni_pid() {
            signal(pid, stop_or_continue(frozen));
        }
    }

    /// SIGSTOP / SIGCONT of every etcd member: etcd unreachable (requests
    /// hang, as across a partition) and back.
    pub fn freeze_etcd(&self, frozen: bool) {
        for m in &self.etcd {
            if let Some(pid) = m.pid() {
                signal(pid, stop_or_continue(frozen));
            }
        }
    }

    /// Kills every process and removes the directory (when owned). Safe to
    /// call twice.
    pub fn cleanup(&mut self) {
        for i in 0..self.nodes.len() {
            self.freeze_node(i, false);
            self.kill_node(i);
        }
        self.freeze_etcd(false);
        for m in &mut self.etcd {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if self.remove_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn postgres_user() -> Result<nix::unistd::User> {
    nix::unistd::User::from_name("postgres")?
        .ok_or_else(|| anyhow!("no OS user postgres (the postgresql-15 package creates it)"))
}

/// SIGSTOP to freeze, SIGCONT to thaw.
fn stop_or_continue(frozen: bool) -> Signal {
    if frozen {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    }
}
