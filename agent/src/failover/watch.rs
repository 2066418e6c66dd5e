//! `agent watch`: reactive convergence. Every `--interval` it asks every
//! node of every cluster where it stands (over connections kept open
//! between ticks), classifies the clusters as plusmoin does (master, slaves
//! and their lag, lost and clusterless nodes), fires hooks on what changed,
//! and applies at once when a watched fact (`db_master`, more with
//! `--fact`) changed; the `--schedule` fires a fallback run as `agent run`
//! would. On each cluster's master it writes the heartbeat row the slaves'
//! lag is measured with.
//!
//! With `db_cluster::source: etcd` or `patroni`, `db_master` comes from
//! Patroni's DCS (see [`crate::failover::dcs`]); with etcd the watcher
//! subscribes to the leader key and evaluates only when etcd reports a
//! change (or at a heartbeat, a scheduled run, the end of a flap hold):
//! an idle watch then polls nothing. Clusters of `db_clusters` /
//! `db_cluster::nodes`, when also set, are probed at those evaluations.
//!
//! What it saw is persisted in the state dir (`cluster_status.json`, with
//! the lag hysteresis): `agent cluster status` reads it while a watcher
//! runs, and a restarted watcher fires the events of what changed while it
//! was down. A change after a quiet `--flap-hold` is applied at once; one
//! that follows another within it (a flapping primary) waits until the
//! values have held still that long. Stops cleanly on SIGTERM/SIGINT.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::state::StateDir;
use crate::engine::{apply_once, RunOptions};
use crate::engine::{facts, report};
use crate::failover::clusters::{self, ClusterSettings};
use crate::failover::dbmaster::{self, LastKnown};
use crate::failover::dcs::{self, etcd::Subscription, etcd::Wake};
use crate::failover::hooks::{self, Hooks};
use crate::failover::probe::{NodeProbe, Prober};
use crate::failover::status::{self, Memory, Status};
use crate::schedule::{run as daemon, signals};
use crate::settings::Settings;

/// The watcher's view of the clusters, in the state dir.
pub const STATUS_FILE: &str = "cluster_status.json";
/// Held (flock) by the running watcher.
pub const WATCH_LOCK: &str = "watch.lock";

/// What the watcher persists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    pub status: Status,
    pub memory: Memory,
    /// Epoch seconds of the probe it describes.
    pub updated: f64,
}

/// The last persisted state, if any.
pub fn read_persisted(state: &StateDir) -> Option<Persisted> {
    serde_json::from_slice(&state.read(STATUS_FILE)?).ok()
}

/// True while an `agent watch` runs on this state dir (it holds the lock).
pub fn watcher_running(state: &StateDir) -> bool {
    let Ok(f) = std::fs::File::open(state.dir.join(WATCH_LOCK)) else {
        return false;
    };
    matches!(
        Flock::lock(f, FlockArg::LockSharedNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

fn take_lock(state: &StateDir) -> Result<Flock<std::fs::File>> {
    state.ensure()?;
    let path = state.dir.join(WATCH_LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "another agent watch holds {} ({e}): one watcher per state dir",
            path.display()
        )
    })
}

/// The clusters as the watcher follows them: settings from Hiera, a
/// connection per node, the hysteresis memory and when each master was
/// last given a heartbeat.
pub struct Monitor {
    pub node: String,
    pub clusters: Option<ClusterSettings>,
    prober: Option<Prober>,
    pub memory: Memory,
    beats: HashMap<String, Instant>,
}

/// One probe of every cluster.
pub struct Tick {
    pub status: Status,
    pub probes: Vec<Vec<NodeProbe>>,
}

impl Monitor {
    /// Reads the node's clusters from Hiera.
    pub fn load(settings: &Settings) -> Result<Monitor> {
        let mut m = Monitor {
            node: String::new(),
            clusters: None,
            prober: None,
            memory: Memory::default(),
            beats: HashMap::new(),
        };
        m.reload(settings)?;
        Ok(m)
    }

    /// Reads Hiera again (its data may have changed); keeps the
    /// connections when the probe settings are the same.
    pub fn reload(&mut self, settings: &Settings) -> Result<()> {
        let (node, clusters) = cluster_settings(settings)?;
        let same_probe = match (&self.clusters, &clusters) {
            (Some(a), Some(b)) => {
                a.probe.user == b.probe.user
                    && a.probe.password == b.probe.password
                    && a.probe.dbname == b.probe.dbname
                    && a.probe.timeout == b.probe.timeout
                    && a.heartbeat_table == b.heartbeat_table
            }
            _ => false,
        };
        if !same_probe {
            self.prober = match &clusters {
                Some(c) => Some(Prober::new(c.probe.clone(), &c.heartbeat_table)?),
                None => None,
            };
        }
        self.clusters = clusters;
        self.node = node;
        Ok(())
    }

    /// Probes every node, classifies, and writes the heartbeat row on each
    /// master whose heartbeat is due. `None` without clusters.
    pub fn tick(&mut self) -> Option<Tick> {
        let (clusters, prober) = (self.clusters.as_ref()?, self.prober.as_mut()?);
        let probes = prober.probe(&clusters.clusters);
        let status = status::classify_all(
            &clusters.clusters,
            &probes,
            &mut self.memory,
            status::now_epoch(),
        );
        for (cfg, c) in clusters.clusters.iter().zip(&status.clusters) {
            let Some(m) = &c.master else { continue };
            let due = self
                .beats
                .get(&cfg.name)
                .is_none_or(|t| t.elapsed() >= cfg.heartbeat);
            if !due {
                continue;
            }
            let Some(target) = cfg.nodes.iter().find(|n| n.label() == m.host_port) else {
                continue;
            };
            if let Err(e) = prober.beat(&cfg.name, target) {
                tracing::warn!(cluster = %cfg.name, "heartbeat on {}: {e}", m.host_port);
            }
            self.beats.insert(cfg.name.clone(), Instant::now());
        }
        Some(Tick { status, probes })
    }

    /// The facts of a tick (`db_master` & co), with `last` as the last
    /// known primary.
    pub fn facts(&self, tick: &Tick, last: Option<&LastKnown>) -> dbmaster::Outcome {
        match &self.clusters {
            Some(c) => dbmaster::outcome_of(c, &tick.status, &tick.probes, last),
            None => dbmaster::Outcome {
                facts: Default::default(),
                error: None,
                persist: None,
            },
        }
    }
}

/// The node's name and what `read` finds in Hiera as the node sees it.
pub(crate) fn from_node_hiera<T>(
    settings: &Settings,
    read: impl FnOnce(&crate::engine::hiera::Hiera, &dyn crate::engine::hiera::Scope) -> Result<T>,
) -> Result<(String, T)> {
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    let node = settings.node_name(&facts)?;
    let roles = settings.roles(&node)?;
    let hiera = settings.hiera()?;
    let scope = crate::engine::compile::NodeScope::new(facts, &node, &roles);
    let found = read(&hiera, &scope)?;
    Ok((node, found))
}

/// The node's name and its clusters, from Hiera as the node sees it.
pub fn cluster_settings(settings: &Settings) -> Result<(String, Option<ClusterSettings>)> {
    from_node_hiera(settings, clusters::load)
}

/// `db_master`'s source when it is Patroni's DCS (`None` for the probe),
/// and with etcd a subscription to the leader key.
fn dcs_source(settings: &Settings) -> Result<(Option<dcs::Source>, Option<Subscription>)> {
    let (_, source) = from_node_hiera(settings, dcs::source)?;
    Ok(match source {
        dcs::Source::Probe => (None, None),
        dcs::Source::Etcd(cfg) => (
            Some(dcs::Source::Etcd(cfg.clone())),
            Some(Subscription::start(cfg)),
        ),
        other => (Some(other), None),
    })
}

/// One evaluation: the clusters probed (when there are any) and the facts
/// of `db_master`, from the DCS when it is the source, else from the probe.
fn evaluate(
    mon: &mut Monitor,
    dcs: Option<&dcs::Source>,
    last: Option<&LastKnown>,
) -> (Option<Tick>, Option<dbmaster::Outcome>) {
    let tick = mon.tick();
    let out = match dcs {
        Some(src) => dcs::cluster_facts(src, last),
        None => tick.as_ref().map(|t| mon.facts(t, last)),
    };
    (tick, out)
}

fn show(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(none)".into(),
    }
}

/// What `agent watch` does, validated by the CLI.
pub struct Options {
    /// How often the watched facts are re-evaluated.
    pub interval: Duration,
    /// Facts watched besides `db_master` (dotted names).
    pub facts: Vec<String>,
    /// Fallback drift-correction schedule.
    pub schedule: cron::Schedule,
    /// The cluster-event hooks and their time limit.
    pub hooks: Hooks,
    /// How often the heartbeat hook runs (and Hiera is read again).
    pub heartbeat: Duration,
    /// A change within this long of the one before waits until the facts
    /// have held still this long (a flapping primary).
    pub flap_hold: Duration,
    /// Stop after this long.
    pub max_time: Option<Duration>,
}

/// The watched values of a tick: `db_master` from the probe, the other
/// `--fact`s from the facts (only those named are read; the Redis facts,
/// `redis_master` & co, asked of the sentinels now and the master they
/// agree on persisted as the last known, as a run would).
fn watched(
    settings: &Settings,
    names: &[String],
    cluster: &serde_json::Map<String, Value>,
) -> Vec<Option<Value>> {
    let top = |n: &str| n.split('.').next().unwrap_or(n).to_string();
    let all = if names.iter().any(|n| n != "db_master") {
        let f = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
        f.extend(cluster.clone());
        let wants_redis = names
            .iter()
            .any(|n| super::redis::FACT_NAMES.contains(&top(n).as_str()));
        let redis = if wants_redis {
            let attached = (|| -> Result<_> {
                let node = settings.node_name(&f)?;
                let roles = settings.roles(&node)?;
                let hiera = settings.hiera()?;
                Ok(super::redis::RedisSource::attach(
                    &f,
                    hiera,
                    &node,
                    &roles,
                    &settings.state,
                ))
            })();
            match attached {
                Ok(r) => Some(r),
                Err(e) => {
                    report::print_errors("watch", &[format!("{e:#}")]);
                    None
                }
            }
        } else {
            None
        };
        let mut demand = facts::Demand::none();
        for n in names {
            demand.add(&top(n));
        }
        let all = f.demand(&demand);
        if let Some(r) = redis {
            r.persist();
        }
        Some(all)
    } else {
        None
    };
    names
        .iter()
        .map(|n| match &all {
            Some(all) => facts::get_path(all, n).cloned(),
            None => facts::get_path(&Value::Object(cluster.clone()), n).cloned(),
        })
        .collect()
}

pub fn run(settings: &Settings, args: Options) -> Result<u8> {
    signals::install();
    let _lock = take_lock(&settings.state)?;
    let schedule = &args.schedule;
    let hooks = &args.hooks;
    let started = Instant::now();

    let mut mon = Monitor::load(settings)?;
    let (dcs, subscription) = dcs_source(settings)?;
    // db_master first, unless the node has no database cluster and other
    // facts are watched (`--fact redis_master` on a Redis node).
    let mut names = Vec::new();
    if mon.clusters.is_some() || dcs.is_some() || args.facts.is_empty() {
        names.push("db_master".to_string());
    }
    names.extend(args.facts.iter().cloned());
    let before = read_persisted(&settings.state);
    if let Some(p) = &before {
        mon.memory = p.memory.clone();
    }
    let mut last = dbmaster::last_known(&settings.state);
    let mut status = Status::default();
    let mut values = vec![None; names.len()];
    let (tick, out) = evaluate(&mut mon, dcs.as_ref(), last.as_ref());
    if let Some(out) = &out {
        remember(settings, out, &mut last);
    }
    // Without a database cluster, the other watched facts all the same.
    if out.is_some() || names.iter().any(|n| n != "db_master") {
        let cluster = out.map(|o| o.facts).unwrap_or_default();
        values = watched(settings, &names, &cluster);
    }
    if let Some(t) = tick {
        status = t.status;
    }
    let how = match &subscription {
        Some(sub) => format!("through an etcd watch on {}", sub.key()),
        None => format!("every {}", humantime::format_duration(args.interval)),
    };
    report::print(&format!(
        "Notice: watching {} {how} ({} is {})",
        names.join(", "),
        names[0],
        show(&values[0])
    ));
    let mut pending = Vec::new();
    for id in 0..status.clusters.len().max(1) {
        pending.extend(hooks.fire(&hooks::event(
            &status,
            id,
            &mon.node,
            "agent_up",
            None,
            "the agent started watching",
        )));
    }
    // What changed while no watcher ran, from the last persisted state.
    if let Some(p) = &before {
        let changes = events(&p.status, &status);
        fire_events(
            hooks,
            &mut pending,
            &status,
            &mon.node,
            changes,
            " (while the watcher was down)",
        );
    }
    let mut written = persist(settings, &mon, &status, None);
    converge(settings, "start");
    let mut next_scheduled = daemon::until_next(schedule).map(|(_, d)| Instant::now() + d);
    let mut next_heartbeat = Instant::now() + args.heartbeat;
    // When a watched value last changed, and whether a change waits for
    // the values to hold still (a flapping primary).
    let mut last_change: Option<Instant> = None;
    let mut held = false;

    loop {
        let woke = match &subscription {
            None if sleep_interval(args.interval) => Wake::Evaluate(String::new()),
            None => Wake::Stop,
            // Woken by etcd, or by the next thing due: a heartbeat, a
            // scheduled run, the end of a flap hold, the time limit.
            Some(sub) => sub.wait(
                [
                    next_scheduled,
                    Some(next_heartbeat),
                    args.max_time.map(|m| started + m),
                    last_change.filter(|_| held).map(|t| t + args.flap_hold),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_heartbeat),
            ),
        };
        if woke == Wake::Stop || args.max_time.is_some_and(|m| started.elapsed() >= m) {
            break;
        }
        pending.retain(|t| !t.is_finished());
        let mut changed = false;
        if let Wake::Evaluate(why) = &woke {
            if !why.is_empty() {
                tracing::debug!("watch woken: {why}");
            }
            let (tick, out) = evaluate(&mut mon, dcs.as_ref(), last.as_ref());
            if let Some(t) = tick {
                let changes = events(&status, &t.status);
                fire_events(hooks, &mut pending, &t.status, &mon.node, changes, "");
                status = t.status;
                written = persist(settings, &mon, &status, written);
            }
            if let Some(out) = &out {
                remember(settings, out, &mut last);
            }
            if out.is_some() || names.iter().any(|n| n != "db_master") {
                let cluster = out.map(|o| o.facts).unwrap_or_default();
                let now_values = watched(settings, &names, &cluster);
                if now_values != values {
                    for (i, n) in names.iter().enumerate() {
                        if now_values[i] != values[i] {
                            report::print(&format!(
                                "Notice: {n} changed from {} to {}",
                                show(&values[i]),
                                show(&now_values[i])
                            ));
                        }
                    }
                    values = now_values;
                    changed = true;
                }
            }
        }
        if changed {
            // Applied at once when the values had held still for the hold
            // before this change; else once they hold still that long.
            let quiet = last_change.is_none_or(|t| t.elapsed() >= args.flap_hold);
            last_change = Some(Instant::now());
            if quiet {
                held = false;
                converge(settings, "a watched fact changed");
            } else {
                if !held {
                    report::print(&format!(
                        "Notice: changed again within {}: applying once it holds still that long",
                        humantime::format_duration(args.flap_hold)
                    ));
                }
                held = true;
            }
        } else if held && last_change.is_some_and(|t| t.elapsed() >= args.flap_hold) {
            held = false;
            converge(settings, "a watched fact changed and held still");
        } else if next_scheduled.is_some_and(|t| Instant::now() >= t) {
            converge(settings, "schedule");
            next_scheduled = daemon::until_next(schedule).map(|(_, d)| Instant::now() + d);
        }
        if Instant::now() >= next_heartbeat {
            for id in 0..status.clusters.len() {
                pending.extend(hooks.fire(&hooks::event(
                    &status,
                    id,
                    &mon.node,
                    "heartbeat",
                    None,
                    "heartbeat",
                )));
            }
            // A standby site of two: its lag, and `dr_lag` past a bound.
            pending.extend(super::dr::watch_heartbeat(settings, hooks));
            reload(settings, &mut mon);
            next_heartbeat = Instant::now() + args.heartbeat;
        }
    }
    // Let hooks in flight finish (each is bounded by its timeout).
    for t in pending {
        let _ = t.join();
    }
    report::print("Notice: watch stopped");
    Ok(0)
}

/// The events of every cluster between two statuses (clusters known to both).
fn events(prev: &Status, now: &Status) -> Vec<(usize, String, String, String)> {
    let mut out = Vec::new();
    for (id, c) in now.clusters.iter().enumerate() {
        if let Some(p) = prev.cluster(&c.name) {
            for (trigger, about, reason) in hooks::diff(p, c, &now.clusterless) {
                out.push((id, trigger, about, reason));
            }
        }
    }
    out
}

fn fire_events(
    hooks: &Hooks,
    pending: &mut Vec<std::thread::JoinHandle<()>>,
    status: &Status,
    node: &str,
    changes: Vec<(usize, String, String, String)>,
    suffix: &str,
) {
    for (id, trigger, about, reason) in changes {
        let reason = format!("{reason}{suffix}");
        report::print(&format!(
            "Notice: cluster {} event {trigger}: {reason}",
            status.clusters[id].name
        ));
        pending.extend(hooks.fire(&hooks::event(
            status,
            id,
            node,
            &trigger,
            Some(&about),
            &reason,
        )));
    }
}

/// Persists the primary found, as a run would: the watcher is the only
/// process awake between runs to see a failover.
fn remember(settings: &Settings, out: &dbmaster::Outcome, last: &mut Option<LastKnown>) {
    let Some(value) = &out.persist else { return };
    if last.as_ref().is_some_and(|l| &l.db_master == value) {
        return;
    }
    match dbmaster::remember(&settings.state, value) {
        Ok(()) => *last = dbmaster::last_known(&settings.state),
        Err(e) => tracing::debug!("cannot persist db_master: {e:#}"),
    }
}

/// Writes the status when it changed: at once when a node changed place,
/// at most once a second when only lags moved. When it last wrote, and what.
fn persist(
    settings: &Settings,
    mon: &Monitor,
    status: &Status,
    written: Option<(Instant, Status)>,
) -> Option<(Instant, Status)> {
    let shape = |s: &Status| {
        let mut s = s.clone();
        for c in &mut s.clusters {
            for sl in &mut c.slaves {
                sl.lag_seconds = None;
                sl.lag_bytes = None;
            }
        }
        s
    };
    if let Some((at, prev)) = &written {
        if prev == status || (shape(prev) == shape(status) && at.elapsed() < Duration::from_secs(1))
        {
            return written;
        }
    }
    let doc = Persisted {
        status: status.clone(),
        memory: mon.memory.clone(),
        updated: status::now_epoch(),
    };
    let text = serde_json::to_vec(&doc).unwrap_or_default();
    if let Err(e) = settings.state.write(STATUS_FILE, &text) {
        tracing::warn!("cannot persist the cluster status: {e:#}");
    }
    Some((Instant::now(), status.clone()))
}

/// Sleeps `d` in one system call, woken early by SIGTERM/SIGINT (a
/// handler interrupts `nanosleep`, which is never restarted); false once a
/// stop was asked for. `signals::sleep`'s 50 ms steps were a fifth of an
/// idle watcher's CPU. A signal taken by a hook's thread is seen at the
/// end of the interval.
fn sleep_interval(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if signals::stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        let left = end - now;
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a valid timespec; the remainder pointer may be null.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    }
}

fn reload(settings: &Settings, mon: &mut Monitor) {
    if let Err(e) = mon.reload(settings) {
        report::print_errors("watch", &[format!("{e:#}")]);
    }
}

fn converge(settings: &Settings, why: &str) {
    report::print(&format!("Notice: applying ({why})"));
    if let Err(e) = apply_once(settings, RunOptions::real(Duration::from_secs(30))) {
        report::print_errors("watch", &[format!("{e:#}")]);
    }
}
