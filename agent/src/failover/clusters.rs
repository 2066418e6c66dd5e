//! The clusters a node knows of, from Hiera: `db_clusters` (plusmoin's
//! several clusters, one entry per name) and today's single
//! `db_cluster::nodes` (the cluster `db`, or alone the one
//! `db_cluster::name` names), with the probe settings
//! they share. Validated once here; nothing downstream reads raw Hiera
//! values.
//!
//! ```yaml
//! db_clusters:
//!   db:    {nodes: ['10.0.0.1:5432', '10.0.0.2:5432'], max_sync_delay: 120s,
//!           recover_sync_delay: 60s, heartbeat: 10s}
//!   audit: {nodes: ['10.0.1.1:5432', '10.0.1.2:5432']}
//! db_cluster::name: db     # the cluster whose primary is `db_master`
//! ```

use std::time::Duration;

use serde_json::Value;

use crate::engine::hiera::{Hiera, HieraError, Scope};
use crate::failover::dbmaster::{ProbeConfig, Target};

/// The cluster name `db_cluster::nodes` is read as.
pub const LEGACY_NAME: &str = "db";

/// One cluster: its nodes and its lag limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub nodes: Vec<Target>,
    /// A slave whose lag exceeds this is lost (`slave_down`).
    pub max_sync_delay: Duration,
    /// A lost slave comes back once its lag stays under this for one heartbeat.
    pub recover_sync_delay: Duration,
    /// How often the watching agent writes the heartbeat row on the master.
    pub heartbeat: Duration,
}

impl ClusterConfig {
    /// A cluster with plusmoin's defaults (lag limits 120 s / 60 s, heartbeat 10 s).
    pub fn new(name: &str, nodes: Vec<Target>) -> ClusterConfig {
        ClusterConfig {
            name: name.to_string(),
            nodes,
            max_sync_delay: Duration::from_secs(120),
            recover_sync_delay: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// Every cluster of the node and how to reach them.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// In name order (the legacy `db` among them).
    pub clusters: Vec<ClusterConfig>,
    /// The cluster whose master is `db_master` (`db_cluster::name`).
    pub main: String,
    pub probe: ProbeConfig,
    /// The heartbeat table (`db_cluster::heartbeat_table`, default `agent_heartbeat`).
    pub heartbeat_table: String,
}

impl ClusterSettings {
    pub fn main_cluster(&self) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == self.main)
    }
}

fn hint() -> &'static str {
    "hint: `agent lookup db_clusters --explain` shows where it is set; a cluster is \
     {nodes: ['host:port', ...], max_sync_delay: 120s, recover_sync_delay: 60s, heartbeat: 10s}"
}

fn duration(v: &Value, what: &str) -> anyhow::Result<Duration> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => anyhow::bail!(
            "{what}: a duration (120s, 2m, or seconds), got {other}\n{}",
            hint()
        ),
    };
    crate::settings::parse_duration(&text).map_err(|e| anyhow::anyhow!("{what}: {e}\n{}", hint()))
}

fn nodes(v: &Value, what: &str) -> anyhow::Result<Vec<Target>> {
    let list = v
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{what} must be a list of 'host:port'\n{}", hint()))?;
    list.iter()
        .map(Target::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{what}: {e}\n{}", hint()))
}

/// Reads one `db_clusters` entry.
fn cluster(name: &str, v: &Value) -> anyhow::Result<ClusterConfig> {
    let map = v.as_object().ok_or_else(|| {
        anyhow::anyhow!("db_clusters.{name} must be a hash with `nodes`\n{}", hint())
    })?;
    let mut c = ClusterConfig::new(name, vec![]);
    let mut seen_nodes = false;
    for (k, v) in map {
        let what = format!("db_clusters.{name}.{k}");
        match k.as_str() {
            "nodes" => {
                c.nodes = nodes(v, &what)?;
                seen_nodes = true;
            }
            "max_sync_delay" => c.max_sync_delay = duration(v, &what)?,
            "recover_sync_delay" => c.recover_sync_delay = duration(v, &what)?,
            "heartbeat" => c.heartbeat = duration(v, &what)?,
            other => anyhow::bail!(
                "db_clusters.{name}: unknown setting '{other}' (nodes, max_sync_delay, \
                 recover_sync_delay, heartbeat)\n{}",
                hint()
            ),
        }
    }
    if !seen_nodes {
        anyhow::bail!("db_clusters.{name} has no `nodes`\n{}", hint());
    }
    check(&c)?;
    Ok(c)
}

/// Limits that make sense together.
fn check(c: &ClusterConfig) -> anyhow::Result<()> {
    let name = &c.name;
    if c.recover_sync_delay > c.max_sync_delay {
        anyhow::bail!(
            "cluster {name}: recover_sync_delay ({}) is above max_sync_delay ({}): a lost \
             slave would come back while still too far behind\n{}",
            humantime::format_duration(c.recover_sync_delay),
            humantime::format_duration(c.max_sync_delay),
            hint()
        );
    }
    if c.heartbeat.is_zero() {
        anyhow::bail!("cluster {name}: heartbeat must be above zero\n{}", hint());
    }
    Ok(())
}

/// Reads the clusters of the node from Hiera: `None` when neither
/// `db_clusters` nor `db_cluster::nodes` is set (no cluster facts then).
pub fn load(hiera: &Hiera, scope: &dyn Scope) -> anyhow::Result<Option<ClusterSettings>> {
    let lookup = |key: &str| -> anyhow::Result<Option<Value>> {
        match hiera.lookup(key, scope, None) {
            Ok(f) => Ok(Some(f.value)),
            Err(HieraError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let text = |key: &str| -> anyhow::Result<Option<String>> {
        Ok(lookup(key)?.map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    };
    let named = text("db_cluster::name")?;
    let mut clusters = Vec::new();
    let several = lookup("db_clusters")?;
    if let Some(v) = &several {
        let map = v
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("db_clusters must be a hash of clusters\n{}", hint()))?;
        for (name, c) in map {
            clusters.push(cluster(name, c)?);
        }
    }
    if let Some(v) = lookup("db_cluster::nodes")? {
        // Alone, it is the node's cluster, under the name the role gives
        // it (as before db_clusters); beside db_clusters, the cluster `db`.
        let name = match (&several, &named) {
            (None, Some(n)) => n.clone(),
            _ => LEGACY_NAME.to_string(),
        };
        if clusters.iter().any(|c| c.name == name) {
            anyhow::bail!(
                "db_cluster::nodes and db_clusters.{name} both define the cluster \
                 '{name}': keep one\n{}",
                hint()
            );
        }
        let mut c = ClusterConfig::new(&name, nodes(&v, "db_cluster::nodes")?);
        // Its limits, as db_clusters has them per cluster.
        if let Some(d) = lookup("db_cluster::max_sync_delay")? {
            c.max_sync_delay = duration(&d, "db_cluster::max_sync_delay")?;
        }
        if let Some(d) = lookup("db_cluster::recover_sync_delay")? {
            c.recover_sync_delay = duration(&d, "db_cluster::recover_sync_delay")?;
        }
        if let Some(d) = lookup("db_cluster::heartbeat")? {
            c.heartbeat = duration(&d, "db_cluster::heartbeat")?;
        }
        check(&c)?;
        clusters.push(c);
    }
    if clusters.is_empty() {
        return Ok(None);
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let main = match named {
        Some(n) => n,
        None if clusters.len() == 1 => clusters[0].name.clone(),
        None => LEGACY_NAME.to_string(),
    };
    if !clusters.iter().any(|c| c.name == main) {
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "db_cluster::name is '{main}', which is none of the clusters ({})\n\
             hint: set db_cluster::name (at the role's level) to the cluster whose primary \
             is db_master",
            names.join(", ")
        );
    }
    let password = match text("db_cluster::probe_password")? {
        Some(p) => Some(p),
        None => text("pgsql_server::postgres_password")?,
    };
    let timeout_ms: u64 = text("db_cluster::probe_timeout_ms")?
        .unwrap_or_else(|| "1000".into())
        .parse()
        .map_err(|_| anyhow::anyhow!("db_cluster::probe_timeout_ms must be a number"))?;
    let heartbeat_table =
        text("db_cluster::heartbeat_table")?.unwrap_or_else(|| "agent_heartbeat".into());
    if heartbeat_table.is_empty()
        || !heartbeat_table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        anyhow::bail!(
            "db_cluster::heartbeat_table '{heartbeat_table}': a plain lowercase table name \
             ([a-z0-9_])"
        );
    }
    Ok(Some(ClusterSettings {
        clusters,
        main,
        probe: ProbeConfig {
            user: text("db_cluster::probe_user")?.unwrap_or_else(|| "postgres".into()),
            password,
            dbname: text("db_cluster::probe_database")?.unwrap_or_else(|| "postgres".into()),
            timeout: Duration::from_millis(timeout_ms),
        },
        heartbeat_table,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_cluster_with_its_limits_and_refuses_bad_ones() {
        let c = cluster(
            "audit",
            &json!({"nodes": ["a:1", "b"], "max_sync_delay": "2s", "recover_sync_delay": 1,
                    "heartbeat": "500ms"}),
        )
        .unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].port, 5432);
        assert_eq!(c.max_sync_delay, Duration::from_secs(2));
        assert_eq!(c.recover_sync_delay, Duration::from_secs(1));
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        let d = cluster("x", &json!({"nodes": []})).unwrap();
        assert_eq!(d.max_sync_delay, Duration::from_secs(120));
        for (bad, says) in [
            (
                json!({"nodes": ["a"], "max_sync_dealy": "2s"}),
                "unknown setting",
            ),
            (json!({"max_sync_delay": "2s"}), "no `nodes`"),
            (json!({"nodes": ["a"], "heartbeat": "soon"}), "heartbeat"),
            (
                json!({"nodes": ["a"], "max_sync_delay": "1s", "recover_sync_delay": "5s"}),
                "above max_sync_delay",
            ),
            (json!({"nodes": "a"}), "must be a list"),
        ] {
            let e = format!("{:#}", cluster("x", &bad).unwrap_err());
            assert!(e.contains(says) && e.contains("hint:"), "{e}");
        }
    }
}
