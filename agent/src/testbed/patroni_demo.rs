//! `agent demo patroni`: Patroni + etcd as the HA engine, with the Stash
//! stand-in following `db_master` through `agent watch` (etcd source), and
//! four faults injected in turn: the primary killed (Patroni and the
//! postmaster, as a host crash), a planned switchover, the primary's
//! Patroni frozen (SIGSTOP past the leader key's ttl), and the primary cut
//! off from etcd (iptables on loopback, which `use_proxies` makes possible).
//!
//! Per scenario it prints (and with `--json` emits as one object):
//! `promoted_s` (fault → another node accepts a write), `app_writing_s`
//! (fault → the stand-in's first acknowledged write on the new primary),
//! `acked_rows_lost` (rows acknowledged to the stand-in and missing on the
//! primary once the cluster is whole again) and `two_writable_samples`
//! (samples, every 100 ms, in which two nodes each committed a write).
//! Everything it started is stopped, also on Ctrl-C.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::json;

use super::packages;
use super::patroni::{Options, PatroniCluster};
use crate::engine::report;
use crate::schedule::signals;
use crate::settings::Settings;

/// Flags of `agent demo patroni`.
pub struct DemoOptions {
    pub json: bool,
    pub keep: bool,
    pub dir: Option<PathBuf>,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub promoted_s: Option<f64>,
    pub app_writing_s: Option<f64>,
    pub acked_rows_lost: i64,
    pub two_writable_samples: u64,
    /// The old primary was fenced by `agent fence` (its Patroni silent past
    /// the fence's `after` while its PostgreSQL was a primary).
    pub fenced: bool,
}

const APP: &str = "stash-app";

pub fn run(settings: &Settings, opts: DemoOptions) -> Result<u8> {
    signals::install();
    packages::ensure("iptables", "/usr/sbin/iptables")?;
    // A directory of ours is removed at the end (unless --keep); one given
    // with --dir keeps its files (not its processes).
    let (base, owned) = super::demo::work_dir(&opts.dir, "agent-demo-patroni");
    let remove = owned && !opts.keep;
    let say = |s: &str| {
        if !opts.json {
            report::print(s);
        }
    };
    say(&format!(
        "agent demo patroni: 3 etcd members, 3 Patroni nodes (PostgreSQL 15, synchronous_mode, ttl 10, loop_wait 2, retry_timeout 4) and the Stash stand-in, in {}",
        base.display()
    ));
    let cluster = PatroniCluster::start(
        &base.join("cluster"),
        Options {
            scope: "stash".into(),
            ..Options::default()
        },
        remove,
    )?;
    let mut demo = Demo {
        cluster,
        app: base.join("app"),
        watch: None,
        fences: vec![],
        rules: vec![],
        lost_so_far: 0,
    };
    let result = demo
        .start_fences()
        .and_then(|()| demo.scenarios(settings, &say));
    demo.stop();
    if remove {
        let _ = std::fs::remove_dir_all(&base);
    }
    let results = result?;
    if opts.json {
        report::print(&json!({ "scenarios": results }).to_string());
    } else {
        say("\nscenario     promoted_s  app_writing_s  acked_rows_lost  two_writable_samples  fenced");
        for r in &results {
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
            say(&format!(
                "{:<12} {:>10}  {:>13}  {:>15}  {:>20}  {}",
                r.name,
                f(r.promoted_s),
                f(r.app_writing_s),
                r.acked_rows_lost,
                r.two_writable_samples,
                if r.fenced { "yes" } else { "no" }
            ));
        }
        say("Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10, no synchronous_mode), measured by hand here: kill -> promoted 29.5 s; frozen Patroni -> two writable primaries for 15 s and 153 acknowledged rows lost.");
    }
    Ok(0)
}

struct Demo {
    cluster: PatroniCluster,
    app: PathBuf,
    watch: Option<Child>,
    /// `agent fence` on each database node (Patroni's watchdog here).
    fences: Vec<Child>,
    /// iptables rules in place (removed by stop).
    rules: Vec<Vec<String>>,
    lost_so_far: i64,
}

impl Demo {
    fn scenarios(&mut self, settings: &Settings, say: &dyn Fn(&str)) -> Result<Vec<Scenario>> {
        self.setup_app(settings)?;
        say(&format!(
            "stand-in Stash writing through agent watch (etcd source) to {}",
            self.leader_pg()?
        ));
        let mut out = vec![];
        for name in ["kill", "switchover", "freeze", "partition"] {
            if signals::stop_requested() {
                break;
            }
            let r = self.scenario(name)?;
            say(&format!(
                "  {name}: promoted {:?} s, app writing {:?} s, {} acked rows lost, {} samples with two writable{}",
                r.promoted_s, r.app_writing_s, r.acked_rows_lost, r.two_writable_samples,
                if r.fenced { ", old primary fenced by agent fence" } else { "" }
            ));
            out.push(r);
        }
        Ok(out)
    }

    /// One `agent fence` per node: no watchdog device here, the agent is one.
    fn start_fences(&mut self) -> Result<()> {
        let exe = std::env::current_exe()?;
        for n in &self.cluster.nodes {
            let log = std::fs::File::create(n.dir.join("fence.log"))?;
            let child = Command::new(&exe)
                .arg("fence")
                .arg("--patroni-config")
                .arg(n.config())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .context("starting agent fence")?;
            self.fences.push(child);
        }
        Ok(())
    }

    fn leader_pg(&self) -> Result<String> {
        let i = self.cluster.leader().context("no leader")?;
        Ok(self.cluster.nodes[i].pg())
    }

    /// The app node's site (the repository's stash profiles, a demo role and
    /// Hiera with the etcd source), its database, and `agent watch`.
    fn setup_app(&mut self, settings: &Settings) -> Result<()> {
        let c = &self.cluster;
        let password = format!("stash-{}", &c.password[..12]);
        let leader = c.leader().context("no leader")?;
        let mut db = pg(c, leader, "postgres")?;
        db.batch_execute(&format!(
            "CREATE ROLE stashuser LOGIN PASSWORD '{password}'"
        ))?;
        db.batch_execute("CREATE DATABASE stashdb OWNER stashuser")?;
        let manifests = self.app.join("manifests");
        copy_dir(&settings.manifests, &manifests)?;
        write(
            &manifests.join("site.yaml"),
            &format!("nodes:\n  {APP}: [roles/stash_app]\n"),
        )?;
        // A stand-in blocked in a commit on a frozen primary (its
        // synchronous standby gone) never sees SIGTERM's flag, as Stash would
        // hang: the demo's stop escalates to SIGKILL after a second, as
        // systemd's TimeoutStopSec does (after 90 s by default).
        let profile = manifests.join("profiles/stash_standin.yaml");
        let text = std::fs::read_to_string(&profile)?;
        let wait_loop = r#"while test -e "$p"; do sleep 0.05; done"#;
        if !text.contains(wait_loop) {
            bail!(
                "{}: its stop command changed; the demo cannot add its SIGKILL escalation",
                profile.display()
            );
        }
        write(
            &profile,
            &text.replace(
                wait_loop,
                r#"n=0; while test -e "$p"; do n=$((n+1)); if [ $n -gt 20 ]; then kill -9 "$(cat "$p")" 2>/dev/null; rm -f "$p"; fi; sleep 0.05; done"#,
            ),
        )?;
        write(
            &manifests.join("roles/stash_app.yaml"),
            "include: [profiles/stash, profiles/stash_standin]\n",
        )?;
        write(
            &self.app.join("hiera/hiera.yaml"),
            "version: 5\ndefaults:\n  datadir: data\n  data_hash: yaml_data\nhierarchy:\n  - name: common\n    path: common.yaml\n",
        )?;
        write(
            &self.app.join("hiera/data/common.yaml"),
            &format!(
                "lookup_options:\n  pgsql_server::password:\n    convert_to: Sensitive\nstash::home: /var/atlassian/application-data/stash\nstash::jdbc_multi_host: false\nstash::db_master_default: '{}'\npgsql_server::db_name: stashdb\npgsql_server::user: stashuser\npgsql_server::password: '{password}'\ndb_cluster::source: etcd\ndb_cluster::etcd: [{}]\ndb_cluster::scope: {}\n",
                c.nodes[leader].pg(),
                c.etcd_endpoints().join(", "),
                c.opts.scope
            ),
        )?;
        std::fs::create_dir_all(self.app.join("root"))?;
        let log = std::fs::File::create(self.app.join("watch.log"))?;
        let exe = std::env::current_exe()?;
        // The scenarios fail over one after another, a few seconds apart
        // (a kill's promotion, its node's rejoin, then the switchover): the
        // default `--flap-hold` (10 s) would hold the second as a flapping
        // primary. The demo measures how fast the application follows each
        // real failover; the debounce has its own test (tests/plusmoin.rs).
        let child = Command::new(exe)
            .args(["watch", "--flap-hold", "1s", "--node", APP, "--root"])
            .arg(self.app.join("root"))
            .arg("--state-dir")
            .arg(self.app.join("state"))
            .arg("--manifests")
            .arg(&manifests)
            .arg("--hiera-config")
            .arg(self.app.join("hiera/hiera.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting agent watch")?;
        self.watch = Some(child);
        let want = c.nodes[leader].pg();
        wait("the stand-in writing", Duration::from_secs(60), || {
            Ok(acked(&self.heartbeat_log()).iter().any(|w| w.to == want))
        })
    }

    fn heartbeat_log(&self) -> PathBuf {
        self.app.join("root/var/log/stash/heartbeat.log")
    }

    fn scenario(&mut self, name: &'static str) -> Result<Scenario> {
        self.cluster.wait_healthy(Duration::from_secs(120))?;
        let old = self.cluster.leader().context("no leader")?;
        let addrs: Vec<(String, u16)> = self
            .cluster
            .nodes
            .iter()
            .map(|n| (n.addr.to_string(), n.pg_port))
            .collect();
        let password = self.cluster.password.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let sampler = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let w = writable(&addrs, &password);
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((t, w));
                    std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
                }
            })
        };
        let t0 = Instant::now();
        let wall0 = SystemTime::now();
        match name {
            "kill" => self.cluster.kill_node(old),
            "switchover" => {
                let to = self.cluster.sync_standby().context("no sync standby")?;
                self.cluster.switchover(to)?;
            }
            "freeze" => self.cluster.freeze_node(old, true),
            _ => self.partition(old, true)?,
        }
        // Promoted: another node commits a write (which one is the new primary).
        let promoted = wait_for(Duration::from_secs(60), || {
            samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(t, _)| *t >= t0)
                .find_map(|(t, w)| {
                    let node = (0..w.len()).find(|i| *i != old && w[*i])?;
                    Some((*t - t0, node))
                })
        });
        let app_writing = promoted.and_then(|(_, new)| {
            let to = self.cluster.nodes[new].pg();
            let log = self.heartbeat_log();
            wait_for(Duration::from_secs(60), || {
                acked(&log)
                    .into_iter()
                    .find(|w| w.to == to && w.at >= wall0)
                    .and_then(|w| w.at.duration_since(wall0).ok())
            })
        });
        // Heal: the old primary back as a replica (restarted when fenced, as
        // a host reset by its watchdog reboots).
        match name {
            "kill" => self.cluster.start_node(old)?,
            "freeze" => self.cluster.freeze_node(old, false),
            "partition" => self.partition(old, false)?,
            _ => {}
        }
        let fenced = name != "kill" && self.cluster.node_exited(old);
        if fenced {
            self.cluster.start_node(old)?;
        }
        self.cluster.wait_healthy(Duration::from_secs(120))?;
        stop.store(true, Ordering::SeqCst);
        let _ = sampler.join();
        let two = samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, w)| w.iter().filter(|ok| **ok).count() >= 2)
            .count() as u64;
        // Lost: acknowledged to the stand-in, absent on the primary now. The
        // stand-in keeps writing: both sides are counted up to one instant
        // (a row's `at` is its transaction's start, before its ack was logged).
        let leader = self.cluster.leader().context("no leader")?;
        let cutoff = SystemTime::now();
        let acked_n = acked(&self.heartbeat_log())
            .iter()
            .filter(|w| w.at <= cutoff)
            .count() as i64;
        let cutoff_text = chrono::DateTime::<chrono::Utc>::from(cutoff).to_rfc3339();
        let rows: i64 = pg(&self.cluster, leader, "stashdb")?
            .query_one(
                "SELECT count(*) FROM heartbeat WHERE at <= $1::text::timestamptz",
                &[&cutoff_text],
            )?
            .get(0);
        let lost_total = (acked_n - rows).max(0);
        let lost = lost_total - self.lost_so_far;
        self.lost_so_far = lost_total;
        Ok(Scenario {
            name,
            promoted_s: promoted.map(|(d, _)| d.as_secs_f64()),
            app_writing_s: app_writing.map(|d| d.as_secs_f64()),
            acked_rows_lost: lost,
            two_writable_samples: two,
            fenced,
        })
    }

    /// Cuts node `i` off from etcd (packets to the address it reaches etcd
    /// through are dropped), or lets it through again.
    fn partition(&mut self, i: usize, cut: bool) -> Result<()> {
        if cut {
            let rule: Vec<String> = [
                "OUTPUT",
                "-d",
                &super::patroni::etcd_address(i),
                "-j",
                "DROP",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            iptables("-I", &rule)?;
            self.rules.push(rule);
        } else {
            for rule in std::mem::take(&mut self.rules) {
                iptables("-D", &rule)?;
            }
        }
        Ok(())
    }

    fn stop(&mut self) {
        for rule in std::mem::take(&mut self.rules) {
            let _ = iptables("-D", &rule);
        }
        for mut f in std::mem::take(&mut self.fences) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(f.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = f.wait();
        }
        if let Some(mut w) = self.watch.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(w.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = w.wait();
        }
        let pidfile = self.app.join("root/var/run/stash.pid");
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = wait("the stand-in to stop", Duration::from_secs(10), || {
                Ok(!pidfile.exists())
            });
        }
        self.cluster.cleanup();
    }
}

fn iptables(op: &str, rule: &[String]) -> Result<()> {
    let out = Command::new("iptables")
        .arg(op)
        .args(rule)
        .output()
        .context("running iptables")?;
    if !out.status.success() {
        bail!(
            "iptables {op} {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Which nodes commit a write within 300 ms (a primary whose synchronous
/// standby is gone waits, and does not count).
fn writable(addrs: &[(String, u16)], password: &str) -> Vec<bool> {
    std::thread::scope(|s| {
        let handles: Vec<_> = addrs
            .iter()
            .map(|(host, port)| {
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    let mut cfg = tokio_postgres::Config::new();
                    cfg.host(host)
                        .port(*port)
                        .user("postgres")
                        .password(password)
                        .dbname("postgres")
                        .connect_timeout(Duration::from_millis(300));
                    rt.block_on(async {
                        let work = async {
                            let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
                            tokio::spawn(conn);
                            client
                                .batch_execute(
                                    "CREATE TABLE IF NOT EXISTS demo_probe(at timestamptz); INSERT INTO demo_probe VALUES (now())",
                                )
                                .await
                                .ok()
                        };
                        tokio::time::timeout(Duration::from_millis(300), work)
                            .await
                            .ok()
                            .flatten()
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten().is_some())
            .collect()
    })
}

/// When a sample started, and which nodes committed its write.
type Sample = (Instant, Vec<bool>);

/// One acknowledged write of the stand-in's log.
struct Write {
    at: SystemTime,
    to: String,
}

/// The stand-in's acknowledged writes: `<time> wrote seq=N to host:port/db`.
fn acked(log: &Path) -> Vec<Write> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (time, rest) = l.split_once(' ')?;
            let to = rest.strip_prefix("wrote seq=")?.split_once(" to ")?.1;
            let at = chrono::DateTime::parse_from_rfc3339(time).ok()?;
            Some(Write {
                at: SystemTime::from(at),
                to: to.split('/').next()?.to_string(),
            })
        })
        .collect()
}

fn pg(c: &PatroniCluster, i: usize, db: &str) -> Result<postgres::Client> {
    let n = &c.nodes[i];
    postgres::Config::new()
        .host(n.addr)
        .port(n.pg_port)
        .user("postgres")
        .password(&c.password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres::NoTls)
        .with_context(|| format!("connecting to {} ({db})", n.pg()))
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if ok()? {
            return Ok(());
        }
        if signals::stop_requested() {
            bail!("interrupted");
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline || signals::stop_requested() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for e in walkdir::WalkDir::new(from) {
        let e = e?;
        let rel = e.path().strip_prefix(from)?;
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else if e.file_type().is_file() {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}
