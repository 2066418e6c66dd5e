//! `agent demo`: the Stash seed's failover, end to end, on this machine.
//!
//! Builds a throw-away two-node cluster on loopback — `stash-server`
//! (primary PostgreSQL + the stand-in Stash) on 127.0.0.11 and
//! `production-db-standby` (hot standby) on 127.0.0.12, each its own
//! `--root` sandbox — by applying the real roles from `manifests/` and
//! `hiera/` (plus a demo Hiera level with loopback addresses, ports and
//! sandbox paths). Then it starts `agent watch` for the stash node, fails the
//! primary over as the seed does (stop it, touch the trigger file), and
//! prints a timeline until Stash writes on the new primary. Everything is
//! removed at the end, also on Ctrl-C.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use resources::pg::{bin_cmd, Conn, DEFAULT_BINDIR};
use resources::runner::Runner;

use crate::engine::report;
use crate::schedule::signals;
use crate::settings::Settings;

/// The superuser password of the site's data (`pgsql_server::postgres_password`).
const SITE_SUPERUSER_PASSWORD_KEY: &str = "pgsql_server::postgres_password";

/// One node of the demo cluster.
pub struct DemoNode {
    pub name: &'static str,
    pub addr: &'static str,
    pub port: u16,
    pub dir: PathBuf,
}

impl DemoNode {
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn datadir(&self) -> PathBuf {
        self.root().join("pg/data")
    }
    pub fn label(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }
    pub fn properties(&self) -> PathBuf {
        self.root()
            .join("var/atlassian/application-data/stash/shared/stash-config.properties")
    }
    pub fn stash_log(&self) -> PathBuf {
        self.root().join("var/log/stash/heartbeat.log")
    }
    pub fn stash_pidfile(&self) -> PathBuf {
        self.root().join("var/run/stash.pid")
    }
}

/// The demo cluster: two nodes, their site, and everything to clean up.
pub struct Cluster {
    pub base: PathBuf,
    pub primary: DemoNode,
    pub standby: DemoNode,
    pub manifests: PathBuf,
    pub hiera_config: PathBuf,
    pub password: String,
    pub hooks_dir: PathBuf,
    /// The agent binary the nodes run (this one, for the demo).
    pub agent_bin: PathBuf,
    /// Nodes added after the first two (the standby restored from the
    /// initial backup), stopped with the others.
    pub extra: Vec<DemoNode>,
    watch: Option<Child>,
    keep: bool,
    owns_base: bool,
}

impl Cluster {
    /// Lays out both nodes and the demo Hiera level under `base`.
    pub fn create(
        manifests: &Path,
        hiera: &Path,
        base: PathBuf,
        owns_base: bool,
        keep: bool,
    ) -> Result<Cluster> {
        std::fs::create_dir_all(&base)?;
        let base = std::fs::canonicalize(&base)?;
        // The postgres OS user (when we are root) must reach the data dirs.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755))?;
        let port = |addr: &str| -> Result<u16> {
            Ok(std::net::TcpListener::bind((addr, 0))
                .with_context(|| {
                    format!("cannot bind {addr}: the demo needs loopback addresses 127.0.0.11/12")
                })?
                .local_addr()?
                .port())
        };
        let primary = DemoNode {
            name: "stash-server",
            addr: "127.0.0.11",
            port: port("127.0.0.11")?,
            dir: base.join("stash-server"),
        };
        let standby = DemoNode {
            name: "production-db-standby",
            addr: "127.0.0.12",
            port: port("127.0.0.12")?,
            dir: base.join("production-db-standby"),
        };
        for n in [&primary, &standby] {
            std::fs::create_dir_all(n.root())?;
            for d in [&n.dir, &n.root()] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        let manifests = std::fs::canonicalize(manifests)
            .with_context(|| format!("manifests dir {}", manifests.display()))?;
        let repo_hiera = std::fs::canonicalize(hiera)
            .with_context(|| format!("hiera config {}", hiera.display()))?;
        let hiera_config = write_demo_hiera(&base, &repo_hiera, &primary, &standby)?;
        let hooks_dir = base.join("hooks.d");
        write_recorder_hooks(&hooks_dir, &base.join("events.jsonl"))?;
        let hiera = crate::engine::hiera::Hiera::load(&hiera_config)?;
        // The stash node's scope as its runs see it (role, os), so every
        // hierarchy level resolves: no warning about an empty variable.
        let facts = crate::engine::facts::Facts::new(crate::engine::facts::FactOptions {
            facts_dir: primary.dir.join("facts.d"),
            ..Default::default()
        });
        let os = facts.get("os").unwrap_or_default();
        let scope = serde_json::json!({
            "trusted": {"certname": primary.name},
            "role": "stash_server",
            "facts": {"os": os},
        });
        let password = match hiera
            .lookup(SITE_SUPERUSER_PASSWORD_KEY, &scope, None)?
            .value
        {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let agent_bin = std::env::current_exe().context("the agent binary's own path")?;
        Ok(Cluster {
            base,
            primary,
            standby,
            manifests,
            hiera_config,
            password,
            hooks_dir,
            agent_bin,
            extra: Vec::new(),
            watch: None,
            keep,
            owns_base,
        })
    }

    /// `agent ARGS` for a node, as a child process (as a user would run it).
    pub fn agent(&self, node: &DemoNode, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.agent_bin);
        cmd.args(args)
            .arg("--node")
            .arg(node.name)
            .arg("--root")
            .arg(node.root())
            .arg("--state-dir")
            .arg(node.state())
            .arg("--manifests")
            .arg(&self.manifests)
            .arg("--hiera-config")
            .arg(&self.hiera_config)
            .arg("--facts-dir")
            .arg(node.dir.join("facts.d"));
        cmd
    }

    /// Applies a node's role; returns (exit code, changed count).
    pub fn apply(&self, node: &DemoNode) -> Result<(i32, usize)> {
        let out = self
            .agent(node, &["apply", "--detailed-exitcodes"])
            .stdin(Stdio::null())
            .output()
            .context("running agent apply")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        std::fs::write(
            node.dir.join(format!("apply-{}.log", now_ms())),
            format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        )?;
        let code = out.status.code().unwrap_or(-1);
        if code != 0 && code != 2 {
            bail!(
                "agent apply on {} exited {code}:\n{}{}",
                node.name,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let changed = text
            .lines()
            .rev()
            .find_map(|l| {
                l.split(": ")
                    .nth(2)
                    .and_then(|s| s.split(' ').next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0);
        Ok((code, changed))
    }

    pub fn conn(&self, node: &DemoNode) -> Conn {
        let mut c = Conn::new(node.addr, node.port, "postgres", Some(&self.password));
        c.connect_timeout = Duration::from_millis(500);
        c
    }

    pub fn pg_ctl(&self, node: &DemoNode, args: &[&str]) -> Result<()> {
        let d = node.datadir().display().to_string();
        let mut a = vec!["-D", d.as_str()];
        a.extend(args);
        Runner::default().run(&bin_cmd(Path::new(DEFAULT_BINDIR), "pg_ctl", &a))?;
        Ok(())
    }

    /// Starts `agent watch` for the stash node in the background.
    pub fn start_watch(&mut self, interval: Duration) -> Result<()> {
        let log = std::fs::File::create(self.base.join("watch.log"))?;
        let interval = humantime::format_duration(interval).to_string();
        let hooks = self.hooks_dir.display().to_string();
        let child = self
            .agent(
                &self.primary,
                &[
                    "watch",
                    "--interval",
                    &interval,
                    "--hooks-dir",
                    &hooks,
                    "--hook-timeout",
                    "5s",
                ],
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting agent watch")?;
        self.watch = Some(child);
        // Its first apply converges at start; fail over only once it is done.
        let log = self.base.join("watch.log");
        wait_until("agent watch's first apply", Duration::from_secs(60), || {
            std::fs::read_to_string(&log)
                .is_ok_and(|t| t.contains("Applied catalog") || t.contains("Error"))
        })?;
        Ok(())
    }

    /// Stops everything the demo started: watch, the stand-in, both servers.
    pub fn stop_all(&mut self) {
        if let Some(mut w) = self.watch.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(w.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(w.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = w.kill();
            let _ = w.wait();
        }
        for node in [&self.primary, &self.standby]
            .into_iter()
            .chain(&self.extra)
        {
            if let Some(pid) = std::fs::read_to_string(node.stash_pidfile())
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if node.datadir().join("postmaster.pid").exists() {
                let _ = self.pg_ctl(node, &["-m", "immediate", "-w", "stop"]);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
        if self.owns_base && !self.keep {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// A Hiera config: the demo's per-node level first, then the site's own
/// hierarchy with its data dir made absolute.
fn write_demo_hiera(
    base: &Path,
    repo_hiera: &Path,
    primary: &DemoNode,
    standby: &DemoNode,
) -> Result<PathBuf> {
    let text = std::fs::read_to_string(repo_hiera)?;
    let mut doc = crate::yaml::parse(&text)?.to_json();
    let repo_dir = repo_hiera.parent().unwrap_or(Path::new("/"));
    let datadir = doc
        .get("defaults")
        .and_then(|d| d.get("datadir"))
        .and_then(|d| d.as_str())
        .unwrap_or("data")
        .to_string();
    let abs = repo_dir.join(datadir).display().to_string();
    if let Some(doc) = doc.as_object_mut() {
        let defaults = doc
            .entry("defaults")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(d) = defaults.as_object_mut() {
            d.insert("datadir".into(), serde_json::Value::String(abs));
        }
    }
    let demo_level = serde_json::json!({
        "name": "agent demo: loopback cluster",
        "datadir": base.join("hiera-demo").display().to_string(),
        "path": "nodes/%{trusted.certname}.yaml",
    });
    if let Some(levels) = doc.get_mut("hierarchy").and_then(|h| h.as_array_mut()) {
        levels.insert(0, demo_level);
    }
    let out = base.join("hiera.yaml");
    std::fs::write(&out, crate::yaml::to_string(&doc))?;
    let (nodes, hosts) = cluster_lists(primary, standby);
    for n in [primary, standby] {
        write_node_data(base, n, primary, &nodes, &hosts, "")?;
    }
    Ok(out)
}

/// `db_cluster::nodes` and `cluster::hosts` of the demo cluster, as YAML.
fn cluster_lists(primary: &DemoNode, standby: &DemoNode) -> (String, String) {
    let nodes = format!("['{}', '{}']", primary.label(), standby.label());
    let hosts = format!(
        "[{{name: {}, ip: {}, alias: stash}}, {{name: {}, ip: {}, alias: db-standby}}]",
        primary.name, primary.addr, standby.name, standby.addr
    );
    (nodes, hosts)
}

/// The demo Hiera level of node `n` (`extra`: more lines of data).
fn write_node_data(
    base: &Path,
    n: &DemoNode,
    primary: &DemoNode,
    nodes: &str,
    hosts: &str,
    extra: &str,
) -> Result<()> {
    let data = format!(
        r#"# agent demo: {name} on {addr}:{port}, sandbox {root}
pgsql_server::port: {port}
pgsql_server::connect_host: {addr}
pgsql_server::datadir: /pg/data
pgsql_server::parent_dirs: [/pg]
pgsql_server::socket_dir: {sock}
pgsql_server::trigger_file: {trigger}
pgsql_server::primary_host: {paddr}
pgsql_server::primary_port: {pport}
pgsql_server::settings:
  listen_addresses: {addr}
pgsql_server::ipv4acls:
  - 'host stashdb stashuser 127.0.0.0/8 scram-sha-256'
  - 'host replication replicator 127.0.0.0/8 scram-sha-256'
db_cluster::nodes: {nodes}
db_cluster::self: '{label}'
stash::db_master_default: '{plabel}'
cluster::hosts: {hosts}
{extra}"#,
        name = n.name,
        addr = n.addr,
        port = n.port,
        root = n.root().display(),
        sock = n.datadir().display(),
        trigger = n.datadir().join("trigger_failover.txt").display(),
        paddr = primary.addr,
        pport = primary.port,
        plabel = primary.label(),
        label = n.label(),
    );
    let p = base
        .join("hiera-demo/nodes")
        .join(format!("{}.yaml", n.name));
    std::fs::create_dir_all(p.parent().expect("has parent"))?;
    std::fs::write(p, data)?;
    Ok(())
}

/// Hooks that append every event to a JSON-lines file, to show them.
fn write_recorder_hooks(dir: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for trigger in [
        "agent_up",
        "master_down",
        "master_up",
        "slave_down",
        "slave_up",
    ] {
        let p = dir.join(format!("{trigger}.record"));
        std::fs::write(
            &p,
            format!("#!/bin/sh\n{{ cat; echo; }} >> '{}'\n", out.display()),
        )?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Polls `ok` every 20 ms until it holds; an error after `limit` or on Ctrl-C.
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<Instant> {
    let started = Instant::now();
    loop {
        if ok() {
            return Ok(Instant::now());
        }
        if signals::stop_requested() {
            bail!("interrupted while waiting for {what}");
        }
        if started.elapsed() > limit {
            bail!("timed out after {:?} waiting for {what}", limit);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Heartbeat writes the stand-in logged, as (time, target) pairs.
pub fn stash_writes(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" wrote seq="))
        .map(String::from)
        .collect()
}

/// The jdbc.url in a properties file.
pub fn jdbc_url(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let pairs = resources::properties::parse(&text);
    resources::properties::lookup(&pairs, "jdbc.url").map(String::from)
}

fn line(t0: Instant, at: Instant, text: &str) {
    report::print(&format!(
        "  T{:+7.3}s  {text}",
        at.saturating_duration_since(t0).as_secs_f64()
    ));
}

/// Figures of one failover, for the benchmark and the test.
#[derive(Debug, Clone)]
pub struct Failover {
    pub promoted: Duration,
    pub db_master_changed: Duration,
    pub url_converged: Duration,
    pub stash_writing: Duration,
    pub writes_before: usize,
    pub lost_rows: i64,
    /// Samples (one per wait step, every few ms) in which both nodes
    /// answered as writable primaries: must stay 0.
    pub two_writable_samples: usize,
}

/// Provisions both nodes, checks streaming and idempotence.
pub fn provision(c: &Cluster, verbose: bool) -> Result<()> {
    let t0 = Instant::now();
    let (_, n1) = c.apply(&c.primary)?;
    if verbose {
        line(
            t0,
            Instant::now(),
            &format!(
                "stash-server provisioned: primary PostgreSQL on {}, Stash started ({n1} changes)",
                c.primary.label()
            ),
        );
    }
    let (_, n2) = c.apply(&c.standby)?;
    if verbose {
        line(t0, Instant::now(), &format!("production-db-standby provisioned: basebackup from the primary, hot standby on {} ({n2} changes)", c.standby.label()));
    }
    let streaming = wait_until("the standby to stream", Duration::from_secs(30), || {
        c.conn(&c.primary)
            .connect()
            .ok()
            .and_then(|mut db| {
                db.query(
                    "select 1 from pg_stat_replication where state = 'streaming'",
                    &[],
                )
                .ok()
            })
            .is_some_and(|rows| rows.len() == 1)
    })?;
    if verbose {
        line(
            t0,
            streaming,
            "streaming replication: pg_stat_replication on the primary shows the standby",
        );
    }
    let (a, b) = (c.apply(&c.primary)?, c.apply(&c.standby)?);
    if a.0 != 0 || b.0 != 0 {
        bail!(
            "a second apply still changed something (exit codes {} and {}): see {}",
            a.0,
            b.0,
            c.base.display()
        );
    }
    if verbose {
        line(
            t0,
            Instant::now(),
            "second apply on both nodes: 0 changes (idempotent)",
        );
    }
    Ok(())
}

/// The seed's second way to build a standby: from the initial backup the
/// primary's first apply took into `/mnt/db_bkup` (a folder the nodes share
/// in the seed; here a copy lands in the new node's root). A third node,
/// `production-db-standby2` on 127.0.0.13 with `standby_method: restore`,
/// is applied, catches up by streaming, and is stopped again (the failover
/// that follows is the two-node one). Returns the backup it started from.
pub fn restore_from_initial_backup(c: &mut Cluster, verbose: bool) -> Result<PathBuf> {
    let t0 = Instant::now();
    let backups = c.primary.root().join("mnt/db_bkup");
    let initial = resources::pg_backup::newest_backup(&backups)?.with_context(|| {
        format!(
            "no backup in {}: the primary's first apply takes one",
            backups.display()
        )
    })?;
    let name = initial
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if verbose {
        line(
            t0,
            t0,
            &format!("initial backup by stash-server's first apply: /mnt/db_bkup/{name} (verified by pg_verifybackup)"),
        );
    }
    let addr = "127.0.0.13";
    let port = std::net::TcpListener::bind((addr, 0))
        .with_context(|| format!("cannot bind {addr}"))?
        .local_addr()?
        .port();
    let node = DemoNode {
        name: "production-db-standby2",
        addr,
        port,
        dir: c.base.join("production-db-standby2"),
    };
    std::fs::create_dir_all(node.root())?;
    for d in [&node.dir, &node.root()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    let (nodes, hosts) = cluster_lists(&c.primary, &c.standby);
    write_node_data(
        &c.base,
        &node,
        &c.primary,
        &nodes,
        &hosts,
        "pgsql_server::standby_method: restore\n",
    )?;
    copy_tree(&backups, &node.root().join("mnt/db_bkup"))?;
    c.extra.push(node);
    let node = c.extra.last().context("the node just added")?;
    c.apply(node)?;
    let label = node.label();
    let streaming = wait_until(
        "the restored standby to stream",
        Duration::from_secs(30),
        || {
            c.conn(&c.primary)
            .connect()
            .ok()
            .and_then(|mut db| {
                db.query(
                    "select 1 from pg_stat_replication where state = 'streaming' and application_name = 'production-db-standby2'",
                    &[],
                )
                .ok()
            })
            .is_some_and(|rows| rows.len() == 1)
        },
    )?;
    if verbose {
        line(
            t0,
            streaming,
            &format!("production-db-standby2 restored from /mnt/db_bkup/{name} (standby_method: restore), streaming on {label}"),
        );
    }
    let (code, _) = c.apply(node)?;
    if code != 0 {
        bail!("a second apply of production-db-standby2 still changed something");
    }
    c.pg_ctl(node, &["-m", "fast", "-w", "stop"])?;
    if verbose {
        line(
            t0,
            Instant::now(),
            "production-db-standby2 stopped: the failover below is the two-node one",
        );
    }
    Ok(initial)
}

/// Copies the tree `from` to `to` (the shared backup folder of the seed).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(from)?;
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Fails the primary over the seed's way and measures the convergence.
pub fn failover(c: &Cluster, verbose: bool) -> Result<Failover> {
    let before = wait_until("Stash to write heartbeats", Duration::from_secs(20), || {
        stash_writes(&c.primary.stash_log()).len() >= 5
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let old_url = jdbc_url(&c.primary.properties()).unwrap_or_default();
    let t = Instant::now();
    let wall_t = chrono::Utc::now();
    c.pg_ctl(&c.primary, &["-m", "immediate", "-w", "stop"])?;
    let writes_before = stash_writes(&c.primary.stash_log()).len();
    std::fs::write(c.standby.datadir().join("trigger_failover.txt"), "")?;
    if verbose {
        line(
            before,
            before,
            &format!("Stash writing a heartbeat row every 100 ms to {old_url}"),
        );
        line(
            t,
            t,
            &format!(
                "primary stopped (pg_ctl stop -m immediate); touched {}",
                c.standby.datadir().join("trigger_failover.txt").display()
            ),
        );
    }
    let writable = |node: &DemoNode| {
        c.conn(node)
            .connect()
            .ok()
            .and_then(|mut db| db.query_one("select pg_is_in_recovery()", &[]).ok())
            .is_some_and(|r| !r.get::<_, bool>(0))
    };
    // Every wait below also asks both nodes whether they take writes.
    let two_writable = std::cell::Cell::new(0usize);
    let sample = || {
        if writable(&c.primary) && writable(&c.standby) {
            two_writable.set(two_writable.get() + 1);
        }
    };
    let promoted = wait_until(
        "the standby to be promoted",
        Duration::from_secs(30),
        || {
            sample();
            writable(&c.standby)
        },
    )?;
    if verbose {
        line(
            t,
            promoted,
            &format!("standby promoted: {} accepts writes", c.standby.label()),
        );
    }
    let state_file = c.primary.state().join("db_master.json");
    let new_label = c.standby.label();
    let changed = wait_until("db_master to change", Duration::from_secs(30), || {
        sample();
        std::fs::read_to_string(&state_file).is_ok_and(|s| s.contains(&new_label))
    })?;
    if verbose {
        line(
            t,
            changed,
            &format!("db_master fact changed to {new_label} (agent watch)"),
        );
    }
    let converged = wait_until("jdbc.url to converge", Duration::from_secs(30), || {
        sample();
        jdbc_url(&c.primary.properties()).is_some_and(|u| u.contains(&new_label))
    })?;
    if verbose {
        line(
            t,
            converged,
            &format!(
                "jdbc.url converged: {}",
                jdbc_url(&c.primary.properties()).unwrap_or_default()
            ),
        );
    }
    let writing = wait_until(
        "Stash to write on the new primary",
        Duration::from_secs(30),
        || {
            sample();
            stash_writes(&c.primary.stash_log())
                .iter()
                .any(|l| l.contains(&new_label))
        },
    )?;
    let lost_rows = c
        .conn(&c.standby)
        .db("stashdb")
        .connect()
        .ok()
        .and_then(|mut db| {
            db.query_one(
                "select count(*) from heartbeat where at < $1::text::timestamptz",
                &[&wall_t.to_rfc3339()],
            )
            .ok()
        })
        .map(|r| writes_before as i64 - r.get::<_, i64>(0))
        .unwrap_or(-1);
    if verbose {
        line(
            t,
            writing,
            "Stash restarted by the agent and writing heartbeats on the new primary",
        );
        report::print(&format!(
            "  heartbeat rows lost: {lost_rows} of {writes_before} written before the stop (asynchronous replication: committed on the old primary, never streamed)"
        ));
        report::print(&format!(
            "  samples with two writable primaries: {} (both nodes asked at every step above)",
            two_writable.get()
        ));
    }
    Ok(Failover {
        promoted: promoted - t,
        db_master_changed: changed - t,
        url_converged: converged - t,
        stash_writing: writing - t,
        writes_before,
        lost_rows,
        two_writable_samples: two_writable.get(),
    })
}

/// What `agent demo` does.
pub struct Options {
    /// Watch interval of the stash node's `agent watch`.
    pub interval: Duration,
    /// Keep the cluster's files (not its processes) afterwards.
    pub keep: bool,
    /// Where to build it (default: a new temp dir).
    pub dir: Option<PathBuf>,
}

/// Where a demo builds its cluster: `--dir`, or a new temp dir named after
/// the scenario; true when the demo owns it (and removes it unless `--keep`).
pub fn work_dir(dir: &Option<PathBuf>, scenario: &str) -> (PathBuf, bool) {
    match dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("{scenario}-{}", std::process::id())),
            true,
        ),
    }
}

pub fn run(settings: &Settings, args: Options) -> Result<u8> {
    signals::install();
    let (base, owns) = work_dir(&args.dir, "agent-demo");
    report::print(&format!(
        "agent demo: the Stash + HA PostgreSQL seed on loopback, in {}",
        base.display()
    ));
    let mut c = Cluster::create(
        &settings.manifests,
        &settings.hiera_config,
        base,
        owns,
        args.keep,
    )?;
    report::print("Timeline:");
    provision(&c, true)?;
    restore_from_initial_backup(&mut c, true)?;
    c.start_watch(args.interval)?;
    report::print(&format!(
        "  agent watch started for stash-server (every {})",
        humantime::format_duration(args.interval)
    ));
    let f = failover(&c, true)?;
    std::thread::sleep(Duration::from_millis(300));
    let events = std::fs::read_to_string(c.base.join("events.jsonl")).unwrap_or_default();
    let triggers: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some(format!(
                "{} ({})",
                v["event"].as_str()?,
                v["reason"].as_str().unwrap_or("")
            ))
        })
        .collect();
    report::print(&format!(
        "\nFailover converged in {:.2} s (primary stopped → Stash writing on the new primary).\n\
         The seed's way: a human edits jdbc.url, fights Puppet's drift correction\n\
         (every 30 min by default) and restarts Stash by hand.\n\
         Hooks fired: {}",
        f.stash_writing.as_secs_f64(),
        if triggers.is_empty() {
            "none".to_string()
        } else {
            triggers.join("; ")
        }
    ));
    c.stop_all();
    report::print(&format!(
        "\nNext: run it on real nodes with vagrant/ (vagrant/README.md), read the site in manifests/ and hiera/,\n\
         `agent lookup KEY --explain`, `agent graph | dot -Tsvg`, and `agent watch --help`.{}",
        if args.keep { format!("\nFiles kept in {}", c.base.display()) } else { String::new() }
    ));
    Ok(0)
}
