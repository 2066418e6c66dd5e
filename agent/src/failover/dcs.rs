//! `db_master` from Patroni's DCS: the sources besides the probe.
//!
//! Hiera's `db_cluster::source` names where the primary is read from:
//! - `probe` (the default): every node of `db_cluster::nodes` is asked
//!   `pg_is_in_recovery()` (see [`super::dbmaster`]);
//! - `etcd`: Patroni's leader key `<namespace><scope>/leader` in etcd and
//!   the members' `conn_url`s (`<namespace><scope>/members/<name>`), read
//!   from `db_cluster::etcd` (client URLs, `host:port` or `http://host:port`)
//!   with `db_cluster::scope` and `db_cluster::namespace` (`/service/`);
//! - `patroni`: Patroni's REST API, `GET /cluster` on the first of
//!   `db_cluster::patroni` (`host:port` list) that answers.
//!
//! The outcomes keep the probe's meaning: a leader → `db_master` is its
//! PostgreSQL `host:port`; no leader key and two or more members claiming to
//! be primary → split brain, no value and an error; no leader (a failover in
//! progress) or the DCS unreachable → the last known value and
//! `db_master_stale: true`. No database connection is made.
//!
//! With the etcd source `agent watch` subscribes to the leader key
//! ([`etcd::Subscription`]) instead of polling.

pub mod etcd;
mod patroni;

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use super::dbmaster::{LastKnown, Outcome};
use crate::engine::hiera::{Hiera, HieraError, Scope};

/// Where `db_master` comes from (`db_cluster::source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Probe,
    Etcd(EtcdSettings),
    Patroni(PatroniSettings),
}

/// How to read Patroni's keys in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs, each `http://host:port`.
    pub endpoints: Vec<String>,
    /// `<namespace><scope>/`: the cluster's keys.
    pub prefix: String,
    /// Bounds one read (connect and range together).
    pub timeout: Duration,
}

impl EtcdSettings {
    /// Patroni's leader key.
    pub fn leader_key(&self) -> String {
        format!("{}leader", self.prefix)
    }
}

/// How to ask Patroni's REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatroniSettings {
    /// Base URLs, each `http://host:port`.
    pub urls: Vec<String>,
    /// Bounds each request.
    pub timeout: Duration,
}

/// One member of the cluster as the DCS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Its PostgreSQL as `host:port`, when its data says.
    pub conn: Option<String>,
    /// Patroni's role: master/primary/leader, replica, sync_standby, ...
    pub role: String,
    /// Patroni's state: running, starting, stopped, ...
    pub state: String,
}

impl Member {
    fn claims_primary(&self) -> bool {
        matches!(self.role.as_str(), "master" | "primary" | "leader")
    }
    fn label(&self) -> String {
        self.conn.clone().unwrap_or_else(|| self.name.clone())
    }
}

/// What one read of the DCS found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// The member holding the leader key, if the key exists.
    pub leader: Option<String>,
    pub members: Vec<Member>,
}

/// The JSON body of an HTTP answer, or why there is none.
fn json_of(answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, String> {
    answer.map_err(|e| e.to_string()).and_then(|r| {
        r.into_body()
            .read_json::<Value>()
            .map_err(|e| e.to_string())
    })
}

/// Reads `db_cluster::source` and the settings of the source it names.
pub fn source(hiera: &Hiera, scope: &dyn Scope) -> Result<Source> {
    let name = match text(hiera, scope, "db_cluster::source")? {
        None => return Ok(Source::Probe),
        Some(s) => s,
    };
    let timeout = timeout(hiera, scope)?;
    match name.as_str() {
        "probe" => Ok(Source::Probe),
        "etcd" => {
            let endpoints = addresses(hiera, scope, "db_cluster::etcd")?;
            let scope_name = text(hiera, scope, "db_cluster::scope")?.ok_or_else(|| {
                anyhow!("db_cluster::source is etcd but db_cluster::scope (Patroni's scope) is not set")
            })?;
            if scope_name.is_empty() || scope_name.contains('/') {
                bail!("db_cluster::scope must be Patroni's scope, a name without '/', got '{scope_name}'");
            }
            let mut namespace =
                text(hiera, scope, "db_cluster::namespace")?.unwrap_or_else(|| "/service/".into());
            if !namespace.starts_with('/') {
                namespace.insert(0, '/');
            }
            if !namespace.ends_with('/') {
                namespace.push('/');
            }
            Ok(Source::Etcd(EtcdSettings {
                endpoints,
                prefix: format!("{namespace}{scope_name}/"),
                timeout,
            }))
        }
        "patroni" => Ok(Source::Patroni(PatroniSettings {
            urls: addresses(hiera, scope, "db_cluster::patroni")?,
            timeout,
        })),
        other => bail!(
            "db_cluster::source is '{other}'; it must be probe, etcd or patroni (hint: probe asks every node of db_cluster::nodes, etcd and patroni read Patroni's DCS)"
        ),
    }
}

/// The cluster facts from a DCS source; `None` for the probe, which is
/// [`super::dbmaster`]'s.
pub fn cluster_facts(source: &Source, last: Option<&LastKnown>) -> Option<Outcome> {
    let (kind, read) = match source {
        Source::Probe => return None,
        Source::Etcd(cfg) => ("etcd", etcd::read(cfg)),
        Source::Patroni(cfg) => ("patroni", patroni::read(cfg)),
    };
    if let Err(e) = &read {
        tracing::debug!("db_master from {kind}: {e}");
    }
    Some(decide(kind, read, last))
}

/// Pure decision from what the DCS said (or why it could not be read) and
/// the last known value.
pub fn decide(kind: &str, read: Result<View, String>, last: Option<&LastKnown>) -> Outcome {
    let mut facts = serde_json::Map::new();
    let stale = |facts: &mut serde_json::Map<String, Value>| {
        if let Some(l) = last {
            facts.insert("db_master".into(), json!(l.db_master));
        }
        facts.insert("db_master_stale".into(), json!(true));
        facts.insert("db_split_brain".into(), json!(false));
    };
    let view = match read {
        Ok(v) => v,
        Err(why) => {
            stale(&mut facts);
            facts.insert(
                "db_cluster".into(),
                json!({
                    "source": kind,
                    "primaries": [],
                    "standbys": [],
                    "unreachable": {},
                    "nodes": [],
                    "dcs_error": why,
                }),
            );
            return Outcome {
                facts,
                error: None,
                persist: None,
            };
        }
    };
    let leader = view
        .leader
        .as_ref()
        .and_then(|l| view.members.iter().find(|m| &m.name == l));
    let claimers: Vec<String> = view
        .members
        .iter()
        .filter(|m| m.claims_primary())
        .map(Member::label)
        .collect();
    let mut error = None;
    let mut persist = None;
    let primaries: Vec<String> = match (&view.leader, leader.and_then(|m| m.conn.clone())) {
        (Some(_), Some(conn)) => {
            facts.insert("db_master".into(), json!(conn));
            facts.insert("db_master_stale".into(), json!(false));
            facts.insert("db_split_brain".into(), json!(false));
            persist = Some(conn.clone());
            vec![conn]
        }
        (None, _) if claimers.len() >= 2 => {
            facts.insert("db_master_stale".into(), json!(false));
            facts.insert("db_split_brain".into(), json!(true));
            error = Some(format!(
                "split brain: {kind} holds no leader key while {} all claim to be primary; db_master is left unset so nothing is pointed at either",
                claimers.join(" and ")
            ));
            claimers.clone()
        }
        // No leader (a failover in progress), or a leader whose member
        // data names no PostgreSQL: keep the last value, say it is stale.
        _ => {
            stale(&mut facts);
            vec![]
        }
    };
    let mut standbys = vec![];
    let mut unreachable = serde_json::Map::new();
    for m in &view.members {
        let label = m.label();
        if primaries.contains(&label) {
            continue;
        }
        if m.state == "running" || m.state == "streaming" {
            if !m.claims_primary() {
                standbys.push(label);
            }
        } else {
            unreachable.insert(label, json!(format!("patroni says {}", m.state)));
        }
    }
    facts.insert(
        "db_cluster".into(),
        json!({
            "source": kind,
            "leader": view.leader,
            "primaries": primaries,
            "standbys": standbys,
            "unreachable": unreachable,
            "nodes": view.members.iter().map(Member::label).collect::<Vec<_>>(),
        }),
    );
    Outcome {
        facts,
        error,
        persist,
    }
}

/// `host:port` of a libpq URL (`postgres://host:port/db`), default port 5432.
pub fn conn_host_port(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return None;
    }
    let has_port = match hostport.rsplit_once(':') {
        Some((h, p)) => (!h.contains(':') || h.ends_with(']')) && p.parse::<u16>().is_ok(),
        None => false,
    };
    Some(if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    })
}

/// `host:port` or `http://host:port` → `http://host:port`.
fn base_url(key: &str, s: &str) -> Result<String> {
    let s = s.trim().trim_end_matches('/');
    if s.starts_with("https://") {
        bail!("{key}: '{s}': TLS is not supported yet; use an http:// client URL");
    }
    let bare = s.strip_prefix("http://").unwrap_or(s);
    if bare.is_empty() || bare.contains('/') || bare.contains("://") {
        bail!("{key}: '{s}' is not 'host:port' or 'http://host:port'");
    }
    Ok(format!("http://{bare}"))
}

fn addresses(hiera: &Hiera, scope: &dyn Scope, key: &str) -> Result<Vec<String>> {
    let value = match hiera.lookup(key, scope, None) {
        Ok(f) => f.value,
        Err(HieraError::NotFound { .. }) => {
            bail!("db_cluster::source needs {key}: a list of 'host:port'")
        }
        Err(e) => return Err(e.into()),
    };
    let list: Vec<Value> = match value {
        Value::Array(a) => a,
        Value::String(s) => s.split(',').map(|p| json!(p.trim())).collect(),
        other => bail!("{key} must be a list of 'host:port', got {other}"),
    };
    if list.is_empty() {
        bail!("{key} is empty: name at least one 'host:port'");
    }
    list.iter()
        .map(|v| match v {
            Value::String(s) => base_url(key, s),
            other => bail!("{key}: an address is 'host:port', got {other}"),
        })
        .collect()
}

fn text(hiera: &Hiera, scope: &dyn Scope, key: &str) -> Result<Option<String>> {
    match hiera.lookup(key, scope, None) {
        Ok(f) => Ok(Some(match f.value {
            Value::String(s) => s,
            other => other.to_string(),
        })),
        Err(HieraError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn timeout(hiera: &Hiera, scope: &dyn Scope) -> Result<Duration> {
    let ms: u64 = text(hiera, scope, "db_cluster::probe_timeout_ms")?
        .unwrap_or_else(|| "1000".into())
        .parse()
        .map_err(|_| anyhow!("db_cluster::probe_timeout_ms must be a number"))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, conn: &str, role: &str) -> Member {
        Member {
            name: name.into(),
            conn: Some(conn.into()),
            role: role.into(),
            state: "running".into(),
        }
    }

    #[test]
    fn parses_conn_urls() {
        let c = |u| conn_host_port(u);
        assert_eq!(
            c("postgres://127.0.0.22:5433/postgres").as_deref(),
            Some("127.0.0.22:5433")
        );
        assert_eq!(c("postgresql://u@db1/x").as_deref(), Some("db1:5432"));
        assert_eq!(c("postgres://[::1]:6000").as_deref(), Some("[::1]:6000"));
        assert_eq!(c("http://db1:5432"), None);
        assert_eq!(c("postgres:///x"), None);
    }

    #[test]
    fn base_urls() {
        assert_eq!(base_url("k", "h:2379").unwrap(), "http://h:2379");
        assert_eq!(base_url("k", "http://h:2379/").unwrap(), "http://h:2379");
        assert!(base_url("k", "https://h:2379").is_err());
        assert!(base_url("k", "h:2379/x").is_err());
    }

    #[test]
    fn leader_stale_and_split_brain() {
        let members = vec![m("a", "a:1", "master"), m("b", "b:2", "replica")];
        let ok = decide(
            "etcd",
            Ok(View {
                leader: Some("a".into()),
                members: members.clone(),
            }),
            None,
        );
        assert_eq!(ok.facts["db_master"], "a:1");
        assert_eq!(ok.facts["db_cluster"]["standbys"], json!(["b:2"]));
        assert_eq!(ok.persist.as_deref(), Some("a:1"));

        let last = LastKnown {
            db_master: "a:1".into(),
            seen_at: 1,
        };
        let down = decide("etcd", Err("connection refused".into()), Some(&last));
        assert_eq!(down.facts["db_master"], "a:1");
        assert_eq!(down.facts["db_master_stale"], true);
        assert!(down.persist.is_none() && down.error.is_none());

        let failover = decide(
            "etcd",
            Ok(View {
                leader: None,
                members: members.clone(),
            }),
            Some(&last),
        );
        assert_eq!(failover.facts["db_master_stale"], true);
        assert_eq!(failover.facts["db_split_brain"], false);

        let split = decide(
            "etcd",
            Ok(View {
                leader: None,
                members: vec![m("a", "a:1", "master"), m("b", "b:2", "primary")],
            }),
            Some(&last),
        );
        assert!(!split.facts.contains_key("db_master"));
        assert_eq!(split.facts["db_split_brain"], true);
        let err = split.error.unwrap();
        assert!(err.contains("a:1") && err.contains("b:2"), "{err}");
    }
}
