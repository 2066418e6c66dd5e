//! The agent as Patroni's watchdog: `agent fence --patroni-config PATH`.
//!
//! Patroni's own answer to a frozen or dead Patroni on the primary is the
//! kernel watchdog (`watchdog: mode: required`): when Patroni stops petting
//! it, the host is reset before the leader key expires, so the old primary
//! is gone before a replica is promoted. Without a watchdog device (VMs,
//! containers, this machine) a Patroni frozen past its lease keeps its
//! PostgreSQL a writable primary; and Patroni 3.0.2 (Debian bookworm), when
//! it wakes with a stale view of etcd, can even write the leader key over
//! the promoted node's (`etcd3._update_leader` puts it unconditionally; fixed
//! upstream in 3.0.3, patroni/patroni#2689): the promoted timeline's
//! acknowledged rows are then lost.
//!
//! The fence is a process outside Patroni doing what the watchdog does: it
//! asks Patroni's REST API every `interval`; when no answer came for `after`
//! while the local PostgreSQL is a primary (running, no `standby.signal`),
//! it kills Patroni (SIGKILL, which a stopped process receives too) and stops
//! PostgreSQL at once (SIGQUIT: immediate shutdown, then SIGKILL to what is
//! left). It must finish before the leader key can expire:
//! `after + stop + margin < ttl - loop_wait` (the key was renewed up to
//! `loop_wait` before Patroni froze), checked at start and printed.
//! A replica is never fenced: it cannot take writes. Nor is a primary while
//! the cluster is in maintenance mode (`pause`, as last read from
//! `/config`): Patroni leaves PostgreSQL alone then and disarms its own
//! watchdog, and an operator may stop Patroni on purpose (an upgrade).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::schedule::signals;

/// Time allowed for PostgreSQL to stop once fenced (SIGQUIT, then SIGKILL).
pub const STOP_TIME: Duration = Duration::from_secs(2);
/// Slack kept between the end of a fence and the leader key's expiry.
pub const MARGIN: Duration = Duration::from_secs(1);

/// What the fence watches, read from Patroni's own configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub config: PathBuf,
    /// `host:port` of Patroni's REST API (`restapi.connect_address`, else `listen`).
    pub rest: String,
    pub data_dir: PathBuf,
    /// `ttl` and `loop_wait` from `bootstrap.dcs` (Patroni's defaults: 30, 10);
    /// the running cluster's values (REST `/config`) replace them when known.
    pub ttl: Duration,
    pub loop_wait: Duration,
}

impl Target {
    pub fn from_config(path: &Path) -> Result<Target> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc = crate::yaml::parse(&text)
            .map_err(|e| anyhow!("{}: {}", path.display(), e.describe()))?
            .to_json();
        Self::from_doc(path, &doc, |k| std::env::var(k).ok())
    }

    /// As Patroni reads its configuration: `PATRONI_RESTAPI_CONNECT_ADDRESS`,
    /// `PATRONI_RESTAPI_LISTEN` and `PATRONI_POSTGRESQL_DATA_DIR` in `env`
    /// win over the file (the roles' command lines set the data dir so).
    pub fn from_doc(
        path: &Path,
        doc: &Value,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Target> {
        let config = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let rest = [
            ("PATRONI_RESTAPI_CONNECT_ADDRESS", "connect_address"),
            ("PATRONI_RESTAPI_LISTEN", "listen"),
        ]
        .iter()
        .find_map(|(var, k)| env(var).or_else(|| doc["restapi"][k].as_str().map(String::from)))
            .ok_or_else(|| {
                anyhow!(
                    "{}: no restapi.connect_address or restapi.listen\nhint: the fence asks Patroni's REST API whether Patroni is alive",
                    path.display()
                )
            })?;
        let data_dir = env("PATRONI_POSTGRESQL_DATA_DIR")
            .or_else(|| doc["postgresql"]["data_dir"].as_str().map(String::from))
            .ok_or_else(|| anyhow!("{}: no postgresql.data_dir", path.display()))?
            .into();
        let dcs = &doc["bootstrap"]["dcs"];
        let secs = |v: &Value, default: u64| Duration::from_secs(v.as_u64().unwrap_or(default));
        Ok(Target {
            config,
            rest,
            data_dir,
            ttl: secs(&dcs["ttl"], 30),
            loop_wait: secs(&dcs["loop_wait"], 10),
        })
    }

    /// Takes `ttl` and `loop_wait` from the running cluster (REST `/config`,
    /// the DCS's copy, which `patronictl edit-config` changes) when Patroni
    /// answers; keeps the file's otherwise. True when they were read.
    pub fn refresh_timing(&mut self) -> bool {
        let doc = ureq::get(&format!("http://{}/config", self.rest))
            .config()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .call()
            .ok()
            .and_then(|r| r.into_body().read_json::<Value>().ok());
        let Some(doc) = doc else { return false };
        if let Some(ttl) = doc["ttl"].as_u64() {
            self.ttl = Duration::from_secs(ttl);
        }
        if let Some(lw) = doc["loop_wait"].as_u64() {
            self.loop_wait = Duration::from_secs(lw);
        }
        true
    }

    /// The budget a fence must fit in: the leader key may expire `ttl -
    /// loop_wait` after Patroni froze.
    pub fn budget(&self) -> Duration {
        self.ttl.saturating_sub(self.loop_wait)
    }

    /// `after` when none is given: half the budget.
    pub fn default_after(&self) -> Duration {
        self.budget() / 2
    }

    /// Refuses an `after` that cannot fence before the key expires.
    pub fn check(&self, after: Duration, interval: Duration) -> Result<()> {
        let need = after + interval + STOP_TIME + MARGIN;
        if need >= self.budget() {
            bail!(
                "fence after {after:?} + probe interval {interval:?} + stop {STOP_TIME:?} + margin {MARGIN:?} = {need:?} is not below ttl {:?} - loop_wait {:?} = {:?}: the replica could be promoted before the old primary is fenced\nhint: a shorter --after (default: half of ttl - loop_wait), or a longer ttl in Patroni's DCS config",
                self.ttl,
                self.loop_wait,
                self.budget()
            );
        }
        Ok(())
    }

    /// The postmaster's pid while this data dir's PostgreSQL runs.
    /// A zombie postmaster (killed, not yet reaped) is not running.
    pub fn postmaster(&self) -> Option<i32> {
        resources::pg::postmaster_pid(&self.data_dir).filter(|pid| alive(*pid))
    }

    /// True while the local PostgreSQL runs as a primary.
    pub fn primary_running(&self) -> Option<i32> {
        let pm = self.postmaster()?;
        let standby = ["standby.signal", "recovery.signal"]
            .iter()
            .any(|f| self.data_dir.join(f).exists());
        (!standby).then_some(pm)
    }

    /// The Patroni processes started with this configuration file.
    pub fn patroni_pids(&self) -> Vec<i32> {
        let config = self.config.as_os_str().as_encoded_bytes();
        let Ok(entries) = fs::read_dir("/proc") else {
            return vec![];
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                    return false;
                };
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.iter().any(|a| a.ends_with(b"patroni")) && args.contains(&config)
            })
            .collect()
    }
}

/// What one fence did, for the log and the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Fenced {
    pub silent_for: Duration,
    pub patroni: Vec<i32>,
    pub postmaster: i32,
}

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fenced: Patroni's REST API did not answer for {:.1} s while PostgreSQL (postmaster {}) was a primary: killed Patroni {:?}, stopped PostgreSQL (immediate)",
            self.silent_for.as_secs_f64(),
            self.postmaster,
            self.patroni
        )
    }
}

/// What the fence tells its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A primary was fenced.
    Fenced(Fenced),
    /// Patroni is silent past `after` while its primary runs, but the
    /// cluster was in maintenance mode (`pause`) when last read: Patroni
    /// leaves PostgreSQL alone then (and disarms its own watchdog), so an
    /// operator may have stopped it on purpose. Told once per silence.
    HeldPaused { silent_for: Duration },
    /// The cluster's maintenance mode as read now, when it changed (the
    /// first read counts when it says paused).
    Paused(bool),
}

/// True when Patroni's `/config` document says the cluster is paused.
pub fn paused(config: &Value) -> bool {
    config["pause"].as_bool() == Some(true)
}

/// How many answered probes between two reads of `/config` (the pause flag).
const CONFIG_EVERY: u32 = 10;

/// Watches until a stop is requested; `on_event` hears of each fence (and
/// of a silence not fenced because the cluster is paused).
pub fn run(
    target: &Target,
    after: Duration,
    interval: Duration,
    mut on_event: impl FnMut(&Event),
) -> Result<()> {
    target.check(after, interval)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(interval.max(Duration::from_millis(200))))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{}/liveness", target.rest);
    let config_url = format!("http://{}/config", target.rest);
    let mut last_answer = Instant::now();
    let mut is_paused = false;
    let mut held = false;
    let mut answers: u32 = 0;
    while !signals::stop_requested() {
        let asked = Instant::now();
        // Any HTTP answer is a live Patroni: /liveness says 503 only after a
        // whole ttl without a loop, too late for a fence.
        if agent.get(&url).call().is_ok() {
            last_answer = Instant::now();
            held = false;
            if answers.is_multiple_of(CONFIG_EVERY) {
                if let Some(doc) = agent
                    .get(&config_url)
                    .call()
                    .ok()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.into_body().read_json::<Value>().ok())
                {
                    if paused(&doc) != is_paused {
                        is_paused = !is_paused;
                        on_event(&Event::Paused(is_paused));
                    }
                }
            }
            answers = answers.wrapping_add(1);
        } else if last_answer.elapsed() >= after {
            // A replica (or a stopped server) cannot take writes: nothing to
            // fence while Patroni is away.
            if let Some(pm) = target.primary_running() {
                if is_paused {
                    if !held {
                        on_event(&Event::HeldPaused {
                            silent_for: last_answer.elapsed(),
                        });
                        held = true;
                    }
                } else {
                    let f = fence(target, pm, last_answer.elapsed());
                    on_event(&Event::Fenced(f));
                    last_answer = Instant::now();
                }
            }
        }
        signals::sleep(interval.saturating_sub(asked.elapsed()));
    }
    Ok(())
}

/// Kills Patroni, then stops the postmaster: SIGQUIT (immediate shutdown,
/// backends end at once), SIGKILL to it and its children after `STOP_TIME`.
pub fn fence(target: &Target, postmaster: i32, silent_for: Duration) -> Fenced {
    let patroni = target.patroni_pids();
    for pid in &patroni {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let children = children_of(postmaster);
    let _ = kill(Pid::from_raw(postmaster), Signal::SIGQUIT);
    let deadline = Instant::now() + STOP_TIME;
    while alive(postmaster) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in std::iter::once(postmaster).chain(children) {
        if alive(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    Fenced {
        silent_for,
        patroni,
        postmaster,
    }
}

/// True while `pid` runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The pids whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                })
                == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(yaml: &str) -> Result<Target> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patroni.yml");
        fs::write(&path, yaml).unwrap();
        Target::from_config(&path)
    }

    const CONFIG: &str = "scope: stash\nrestapi:\n  listen: 0.0.0.0:8008\n  connect_address: 10.0.0.1:8008\npostgresql:\n  data_dir: /var/lib/postgresql/15/main\nbootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 2\n";

    #[test]
    fn reads_rest_data_dir_and_timing_from_patronis_config() {
        let t = target(CONFIG).unwrap();
        assert_eq!(t.rest, "10.0.0.1:8008");
        assert_eq!(t.data_dir, Path::new("/var/lib/postgresql/15/main"));
        assert_eq!(
            (t.ttl, t.loop_wait),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
        assert_eq!(t.default_after(), Duration::from_secs(4));
        // Patroni's defaults when bootstrap.dcs says nothing.
        let t = target("restapi: {listen: 127.0.0.1:8008}\npostgresql: {data_dir: /d}\n").unwrap();
        assert_eq!(
            (t.ttl, t.loop_wait),
            (Duration::from_secs(30), Duration::from_secs(10))
        );
        assert_eq!(t.rest, "127.0.0.1:8008");
    }

    #[test]
    fn patronis_environment_overrides_win_over_the_file() {
        let doc = crate::yaml::parse(CONFIG).unwrap().to_json();
        let env = |k: &str| match k {
            "PATRONI_POSTGRESQL_DATA_DIR" => Some("/root/sandbox/var/lib/pg".to_string()),
            "PATRONI_RESTAPI_LISTEN" => Some("127.0.0.9:8008".to_string()),
            _ => None,
        };
        let t = Target::from_doc(Path::new("/etc/patroni.yml"), &doc, env).unwrap();
        assert_eq!(t.data_dir, Path::new("/root/sandbox/var/lib/pg"));
        // connect_address (from the file) still comes before listen.
        assert_eq!(t.rest, "10.0.0.1:8008");
        let doc =
            crate::yaml::parse("restapi: {listen: 0.0.0.0:8008}\npostgresql: {data_dir: /d}\n")
                .unwrap()
                .to_json();
        let t = Target::from_doc(Path::new("/p.yml"), &doc, env).unwrap();
        assert_eq!(t.rest, "127.0.0.9:8008");
    }

    #[test]
    fn a_paused_cluster_is_read_from_patronis_config_document() {
        assert!(paused(&serde_json::json!({"ttl": 10, "pause": true})));
        assert!(!paused(&serde_json::json!({"ttl": 10, "pause": false})));
        assert!(!paused(&serde_json::json!({"ttl": 10})));
    }

    #[test]
    fn a_config_without_rest_api_or_data_dir_is_refused_naming_the_key() {
        let e = target("postgresql: {data_dir: /d}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("restapi.connect_address"), "{e}");
        let e = target("restapi: {listen: 127.0.0.1:8008}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgresql.data_dir"), "{e}");
    }

    #[test]
    fn a_fence_that_cannot_finish_before_the_key_expires_is_refused() {
        let t = target(CONFIG).unwrap();
        let i = Duration::from_millis(500);
        t.check(Duration::from_secs(4), i).unwrap();
        let e = t.check(Duration::from_secs(5), i).unwrap_err().to_string();
        assert!(e.contains("not below ttl 10s - loop_wait 2s = 8s"), "{e}");
    }

    #[test]
    fn a_standby_or_stopped_server_is_not_a_primary() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target {
            config: dir.path().join("p.yml"),
            rest: "127.0.0.1:1".into(),
            data_dir: dir.path().into(),
            ttl: Duration::from_secs(10),
            loop_wait: Duration::from_secs(2),
        };
        assert_eq!(t.primary_running(), None, "no postmaster.pid");
        // Our own pid stands for a running postmaster.
        let me = std::process::id() as i32;
        fs::write(dir.path().join("postmaster.pid"), format!("{me}\n/d\n")).unwrap();
        assert_eq!(t.primary_running(), Some(me));
        fs::write(dir.path().join("standby.signal"), "").unwrap();
        assert_eq!(t.primary_running(), None, "a standby");
    }
}
