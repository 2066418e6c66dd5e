//! The `db_master` fact: which PostgreSQL node is the primary right now.
//!
//! The clusters come from Hiera (`failover::clusters`: `db_clusters`, and
//! today's `db_cluster::nodes` as the cluster `db`). The `probe` source
//! ([`probe_source`]) asks every node of every cluster in parallel, each
//! probe bounded as a whole (connect, auth and query) by a short timeout,
//! so a node that accepts TCP and never answers costs one timeout, not a
//! hang. For the node's cluster (`db_cluster::name`) the rules of
//! [`decide`]:
//! - exactly one primary → `db_master: "host:port"` (and a run that applies
//!   persists it in the state dir as the last known value);
//! - none reachable, or no primary → the last known value and
//!   `db_master_stale: true`;
//! - two or more primaries (split brain) → no `db_master`,
//!   `db_split_brain: true`, and an error naming them: the application must
//!   never be pointed at either.
//!
//! `db_cluster` holds the details: `{primaries, standbys, unreachable,
//! nodes}`; `db_clusters.NAME.{master, slaves, lag_seconds, lost,
//! split_brain}` every cluster as plusmoin sees it (`failover::status`),
//! `db_clusterless` the nodes that follow no node of their cluster.
//!
//! The probe runs only when something names these facts ([`ClusterSource`]
//! is a late fact source): a catalog that never mentions them pays nothing,
//! even when a node of the cluster hangs.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::compile::NodeScope;
use crate::engine::facts::{Facts, LateSource};
use crate::engine::hiera::Hiera;
use crate::engine::state::StateDir;
use crate::failover::clusters::{self, ClusterSettings};
use crate::failover::probe::{NodeProbe, Prober};
use crate::failover::status::{self, Memory, Status};

/// One node to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:port` (port default 5432) or `{host, port}`.
    pub fn parse(v: &Value) -> Result<Target, String> {
        match v {
            Value::String(s) => {
                let (host, port) = match s.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                        h.trim_matches(|c| c == '[' || c == ']'),
                        p.parse().map_err(|_| format!("bad port in '{s}'"))?,
                    ),
                    _ => (s.as_str(), 5432),
                };
                Ok(Target {
                    host: host.to_string(),
                    port,
                })
            }
            Value::Object(o) => {
                let host = o
                    .get("host")
                    .and_then(Value::as_str)
                    .ok_or("a node needs a host")?;
                let port = match o.get("port") {
                    None => 5432,
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or("bad port")?,
                    Some(Value::String(s)) => s.parse().map_err(|_| format!("bad port '{s}'"))?,
                    Some(other) => return Err(format!("bad port {other}")),
                };
                Ok(Target {
                    host: host.to_string(),
                    port,
                })
            }
            other => Err(format!(
                "a node is 'host:port' or {{host, port}}, got {other}"
            )),
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Primary,
    Standby,
    Unreachable(String),
}

/// Probe settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub timeout: Duration,
}

/// Probes every target at once; each result is bounded by `cfg.timeout`
/// (the `probe` source's [`Prober`] over fresh connections).
pub fn probe_all(targets: &[Target], cfg: &ProbeConfig) -> Vec<Probe> {
    let cluster = clusters::ClusterConfig::new("db", targets.to_vec());
    let answers = match Prober::new(cfg.clone(), "agent_heartbeat") {
        Ok(mut p) => p.probe(std::slice::from_ref(&cluster)).remove(0),
        Err(e) => targets
            .iter()
            .map(|_| Err(format!("no runtime: {e}")))
            .collect(),
    };
    answers.iter().map(Probe::of).collect()
}

impl Probe {
    /// Primary, standby or unreachable, from a node's answer.
    pub fn of(p: &NodeProbe) -> Probe {
        match p {
            Ok(i) if i.in_recovery => Probe::Standby,
            Ok(_) => Probe::Primary,
            Err(why) => Probe::Unreachable(why.clone()),
        }
    }
}

/// Last known primary, persisted between runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastKnown {
    pub db_master: String,
    /// Seconds since the epoch when it was last seen as the only primary.
    pub seen_at: u64,
}

const STATE_FILE: &str = "db_master.json";

/// The facts derived from the probes.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub facts: serde_json::Map<String, Value>,
    /// Split brain: the error to report.
    pub error: Option<String>,
    /// The value to persist as last known, if any.
    pub persist: Option<String>,
}

/// Pure decision from probe results and the last known value.
pub fn decide(targets: &[Target], probes: &[Probe], last: Option<&LastKnown>) -> Outcome {
    let mut primaries = vec![];
    let mut standbys = vec![];
    let mut unreachable = serde_json::Map::new();
    for (t, p) in targets.iter().zip(probes) {
        match p {
            Probe::Primary => primaries.push(t.label()),
            Probe::Standby => standbys.push(t.label()),
            Probe::Unreachable(why) => {
                unreachable.insert(t.label(), json!(why));
            }
        }
    }
    let mut facts = serde_json::Map::new();
    let mut error = None;
    let mut persist = None;
    match primaries.len() {
        1 => {
            facts.insert("db_master".into(), json!(primaries[0]));
            facts.insert("db_master_stale".into(), json!(false));
            facts.insert("db_split_brain".into(), json!(false));
            persist = Some(primaries[0].clone());
        }
        0 => {
            if let Some(l) = last {
                facts.insert("db_master".into(), json!(l.db_master));
            }
            facts.insert("db_master_stale".into(), json!(true));
            facts.insert("db_split_brain".into(), json!(false));
        }
        _ => {
            facts.insert("db_master_stale".into(), json!(false));
            facts.insert("db_split_brain".into(), json!(true));
            error = Some(format!(
                "split brain: {} all answer as primary; db_master is left unset so nothing is pointed at either",
                primaries.join(" and ")
            ));
        }
    }
    facts.insert(
        "db_cluster".into(),
        json!({
            "primaries": primaries,
            "standbys": standbys,
            "unreachable": unreachable,
            "nodes": targets.iter().map(Target::label).collect::<Vec<_>>(),
        }),
    );
    Outcome {
        facts,
        error,
        persist,
    }
}

/// Reads the last known primary from the state dir.
pub fn last_known(state: &StateDir) -> Option<LastKnown> {
    serde_json::from_slice(&state.read(STATE_FILE)?).ok()
}

/// Persists a newly seen primary (only when it changed). Called after a
/// run took its lock, never by a compile (which writes nothing) nor in
/// noop.
pub fn remember(state: &StateDir, value: &str) -> anyhow::Result<()> {
    if last_known(state).is_some_and(|l| l.db_master == value) {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = serde_json::to_vec_pretty(&LastKnown {
        db_master: value.to_string(),
        seen_at: now,
    })?;
    state.write(STATE_FILE, &text)
}

/// The cluster facts as a late fact source: the probe runs only when a
/// consumer names `db_master` & co (or all facts), at most once per run.
/// What it found that is worth keeping, the run persists after taking its
/// lock ([`ClusterSource::persist`]).
pub struct ClusterSource {
    hiera: Arc<Hiera>,
    facts: Weak<Facts>,
    node: String,
    roles: Vec<String>,
    state: StateDir,
    found: Mutex<Found>,
    /// The Redis facts, a late source of their own beside this one.
    redis: Arc<super::redis::RedisSource>,
}

#[derive(Default)]
struct Found {
    /// The split brain, or a Hiera error in the cluster's settings.
    error: Option<String>,
    persist: Option<String>,
}

/// The top-level facts [`cluster_facts`] produces.
pub const FACT_NAMES: &[&str] = &[
    "db_master",
    "db_master_stale",
    "db_split_brain",
    "db_cluster",
    "db_clusters",
    "db_clusterless",
    "dr",
];

impl ClusterSource {
    /// Registers the cluster facts of `node` as `facts`' late source.
    pub fn attach(
        facts: &Arc<Facts>,
        hiera: Arc<Hiera>,
        node: &str,
        roles: &[String],
        state: &StateDir,
    ) -> Arc<ClusterSource> {
        let redis = super::redis::RedisSource::attach(facts, hiera.clone(), node, roles, state);
        let source = Arc::new(ClusterSource {
            redis,
            hiera,
            facts: Arc::downgrade(facts),
            node: node.to_string(),
            roles: roles.to_vec(),
            state: state.clone(),
            found: Mutex::new(Found::default()),
        });
        facts.set_late(source.clone());
        source
    }

    fn found(&self) -> std::sync::MutexGuard<'_, Found> {
        self.found.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why `db_master` has no value (split brain, bad settings), if the
    /// probe ran and found so.
    pub fn error(&self) -> Option<String> {
        self.found().error.clone()
    }

    /// Why `redis_master` has no value (the sentinels disagree), if the
    /// Redis facts were asked for and found so.
    pub fn redis_error(&self) -> Option<String> {
        self.redis.error()
    }

    /// Remembers the primary the probe found as the last known one (for
    /// the run after, should no node answer then), and the master the
    /// sentinels agreed on. Only under the run lock, never in noop.
    pub fn persist(&self) {
        self.redis.persist();
        let value = self.found().persist.clone();
        if let Some(value) = value {
            if let Err(e) = remember(&self.state, &value) {
                tracing::debug!("cannot persist db_master: {e:#}");
            }
        }
    }
}

impl LateSource for ClusterSource {
    fn names(&self) -> &'static [&'static str] {
        FACT_NAMES
    }

    fn collect(&self) -> serde_json::Map<String, Value> {
        let Some(facts) = self.facts.upgrade() else {
            return Default::default();
        };
        let scope = NodeScope::new(facts, &self.node, &self.roles);
        // The standby site of two (patroni::standby_cluster): its lag
        // behind the other site, as the `dr` fact.
        let dr = match super::dr::DrSettings::load(&self.hiera, &scope) {
            Ok(Some(s)) => Some(super::dr::facts(&s, &self.state)),
            Ok(None) => None,
            Err(e) => Some(json!({"error": format!("{e:#}")})),
        };
        match cluster_facts(&self.hiera, &scope, &self.state) {
            Ok(mut outcome) => {
                let mut found = self.found();
                found.error = outcome.error;
                found.persist = outcome.persist;
                if let Some(dr) = dr {
                    outcome.facts.insert("dr".into(), dr);
                }
                outcome.facts
            }
            Err(e) => {
                self.found().error = Some(format!("{e:#}"));
                Default::default()
            }
        }
    }
}

/// The cluster facts from the clusters of Hiera (`db_clusters`, and
/// `db_cluster::nodes` as the cluster `db`), probed now: `db_master`,
/// `db_master_stale`, `db_split_brain` and `db_cluster` for the node's
/// cluster (`db_cluster::name`), `db_clusters` (every cluster: master,
/// slaves, lost with the reason, split brain) and `db_clusterless`; none
/// without clusters. The split-brain error, if any.
///
/// Probe settings come from Hiera too: `db_cluster::probe_user` (postgres),
/// `db_cluster::probe_password` (default `pgsql_server::postgres_password`),
/// `db_cluster::probe_database` (postgres), `db_cluster::probe_timeout_ms` (1000).
pub fn cluster_facts(
    hiera: &Hiera,
    scope: &dyn crate::engine::hiera::Scope,
    state: &StateDir,
) -> anyhow::Result<Outcome> {
    // `db_cluster::source`: the probe below, or Patroni's DCS (etcd, REST).
    let source = super::dcs::source(hiera, scope)?;
    if let Some(outcome) = super::dcs::cluster_facts(&source, last_known(state).as_ref()) {
        return Ok(outcome);
    }
    let Some(settings) = clusters::load(hiera, scope)? else {
        return Ok(Outcome {
            facts: Default::default(),
            error: None,
            persist: None,
        });
    };
    let (status, probes) = probe_source(&settings)?;
    Ok(outcome_of(
        &settings,
        &status,
        &probes,
        last_known(state).as_ref(),
    ))
}

/// The `probe` source: every node of every cluster asked now, in
/// parallel, over fresh connections; the status and the raw answers.
pub fn probe_source(settings: &ClusterSettings) -> anyhow::Result<(Status, Vec<Vec<NodeProbe>>)> {
    let mut prober = Prober::new(settings.probe.clone(), &settings.heartbeat_table)?;
    let probes = prober.probe(&settings.clusters);
    let status = status::classify_all(
        &settings.clusters,
        &probes,
        &mut Memory::default(),
        status::now_epoch(),
    );
    Ok((status, probes))
}

/// The facts of a status: `db_master` & co from the node's cluster (the
/// rules of [`decide`]), `db_clusters` and `db_clusterless`.
pub fn outcome_of(
    settings: &ClusterSettings,
    status: &Status,
    probes: &[Vec<NodeProbe>],
    last: Option<&LastKnown>,
) -> Outcome {
    let main = settings
        .clusters
        .iter()
        .position(|c| c.name == settings.main)
        .unwrap_or(0);
    let legacy: Vec<Probe> = probes[main].iter().map(Probe::of).collect();
    let mut out = decide(&settings.clusters[main].nodes, &legacy, last);
    let per_cluster: serde_json::Map<String, Value> = status
        .clusters
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({
                    "master": c.master.as_ref().map(|m| m.host_port.clone()),
                    "slaves": c.slaves.iter().map(|s| s.host_port.clone()).collect::<Vec<_>>(),
                    "lag_seconds": c.slaves.iter()
                        .map(|s| (s.host_port.clone(), json!(s.lag_seconds)))
                        .collect::<serde_json::Map<_, _>>(),
                    "lost": c.lost.iter()
                        .map(|l| (l.host_port.clone(), json!(l.reason)))
                        .collect::<serde_json::Map<_, _>>(),
                    "split_brain": c.split_brain,
                }),
            )
        })
        .collect();
    out.facts
        .insert("db_clusters".into(), Value::Object(per_cluster));
    out.facts.insert(
        "db_clusterless".into(),
        Value::Object(
            status
                .clusterless
                .iter()
                .map(|l| (l.host_port.clone(), json!(l.reason)))
                .collect(),
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(&json!(s)).unwrap()
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            t("db1:5433"),
            Target {
                host: "db1".into(),
                port: 5433
            }
        );
        assert_eq!(
            t("db1"),
            Target {
                host: "db1".into(),
                port: 5432
            }
        );
        assert_eq!(
            Target::parse(&json!({"host": "h", "port": "6000"}))
                .unwrap()
                .port,
            6000
        );
        assert!(Target::parse(&json!("h:notaport")).is_err());
    }

    #[test]
    fn decides_primary_stale_and_split_brain() {
        let ts = [t("a:1"), t("b:2")];
        let one = decide(&ts, &[Probe::Primary, Probe::Standby], None);
        assert_eq!(one.facts["db_master"], "a:1");
        assert_eq!(one.persist.as_deref(), Some("a:1"));
        let last = LastKnown {
            db_master: "a:1".into(),
            seen_at: 1,
        };
        let none = decide(
            &ts,
            &[Probe::Unreachable("x".into()), Probe::Standby],
            Some(&last),
        );
        assert_eq!(none.facts["db_master"], "a:1");
        assert_eq!(none.facts["db_master_stale"], true);
        assert!(none.persist.is_none());
        let split = decide(&ts, &[Probe::Primary, Probe::Primary], Some(&last));
        assert!(!split.facts.contains_key("db_master"));
        assert_eq!(split.facts["db_split_brain"], true);
        let err = split.error.unwrap();
        assert!(err.contains("a:1") && err.contains("b:2"), "{err}");
    }

    #[test]
    fn probes_a_real_primary_a_closed_port_and_a_silent_listener() {
        let dir = tempfile::tempdir().unwrap();
        let pg = resources::pg::testing::TestCluster::primary(dir.path(), "127.0.0.1");
        let closed = resources::pg::testing::free_port("127.0.0.1");
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let targets = [
            Target {
                host: "127.0.0.1".into(),
                port: pg.port,
            },
            Target {
                host: "127.0.0.1".into(),
                port: closed,
            },
            Target {
                host: "127.0.0.1".into(),
                port: silent_port,
            },
        ];
        let cfg = ProbeConfig {
            user: "postgres".into(),
            password: Some(resources::pg::testing::PASSWORD.into()),
            dbname: "postgres".into(),
            timeout: Duration::from_millis(500),
        };
        let started = std::time::Instant::now();
        let probes = probe_all(&targets, &cfg);
        assert_eq!(probes[0], Probe::Primary);
        assert!(matches!(probes[1], Probe::Unreachable(_)));
        assert!(
            matches!(&probes[2], Probe::Unreachable(why) if why.contains("no answer")),
            "{:?}",
            probes[2]
        );
        // Parallel: one timeout in all, not one per node (generous bound, not a benchmark).
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
