//! The Redis facts: `redis` (the local redis-server as `INFO replication`
//! reports it: `role` master or replica, its master and link when a
//! replica) and `redis_master` (the master as the sentinels report it,
//! `SENTINEL get-master-addr-by-name <name>` asked of every sentinel of
//! Hiera's `redis::nodes` at once, each bounded by a short timeout).
//!
//! `redis_master` follows `db_master`'s rules ([`super::dbmaster`]):
//! - every sentinel that answers names the same master → `redis_master:
//!   "ip:port"` (a run that applies persists it in the state dir as the
//!   last known value);
//! - no sentinel answers, or none knows the master → the last known value
//!   and `redis_master_stale: true`;
//! - sentinels that answer name different masters (a failover half seen,
//!   or a partition) → no `redis_master`, `redis_split_brain: true` and
//!   `redis_master_error` naming who said what: a client must not be
//!   pointed at either.
//!
//! `redis_sentinels` holds what each sentinel said. Like the cluster
//! facts, a late source: nothing is asked unless a consumer names one of
//! these facts. Hiera: `redis::nodes` (`[{name, ip, port,
//! sentinel_port}]`), `redis::master_name` (mymaster), `redis::ip` and
//! `redis::port` (the local server), `redis::probe_timeout_ms` (500).
//! Spoken with the `redis` crate (blocking connections).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::engine::compile::NodeScope;
use crate::engine::facts::{Facts, LateSource};
use crate::engine::hiera::{Hiera, HieraError, Scope};
use crate::engine::state::StateDir;
use crate::failover::dbmaster::Target;

/// The top-level facts of [`RedisSource`].
pub const FACT_NAMES: &[&str] = &[
    "redis",
    "redis_master",
    "redis_master_stale",
    "redis_split_brain",
    "redis_master_error",
    "redis_sentinels",
];

const STATE_FILE: &str = "redis_master.json";

/// What the facts need from Hiera.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    /// Every sentinel to ask (`ip:sentinel_port` of `redis::nodes`).
    pub sentinels: Vec<Target>,
    /// `redis::master_name`.
    pub master_name: String,
    /// The local redis-server (`redis::ip`, `redis::port`), if set.
    pub local: Option<Target>,
    /// Each question's bound (connect and answer).
    pub timeout: Duration,
}

fn hint() -> &'static str {
    "hint: `agent lookup redis::nodes --explain` shows where it is set; a node is \
     {name: hipchat-redis1, ip: 10.0.0.1, port: 6379, sentinel_port: 26379}"
}

/// Reads the node's Redis settings: `None` without `redis::nodes`.
pub fn load(hiera: &Hiera, scope: &dyn Scope) -> anyhow::Result<Option<RedisSettings>> {
    let lookup = |key: &str| -> anyhow::Result<Option<Value>> {
        match hiera.lookup(key, scope, None) {
            Ok(f) => Ok(Some(f.value)),
            Err(HieraError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let Some(nodes) = lookup("redis::nodes")? else {
        return Ok(None);
    };
    let list = nodes
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("redis::nodes must be a list of nodes\n{}", hint()))?;
    let port_of = |v: Option<&Value>, what: &str| -> anyhow::Result<u16> {
        let n = match v {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        n.and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| anyhow::anyhow!("{what}: a port number, got {v:?}\n{}", hint()))
    };
    let mut sentinels = Vec::new();
    for (i, n) in list.iter().enumerate() {
        let ip = n
            .get("ip")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("redis::nodes[{i}] has no `ip`\n{}", hint()))?;
        let port = port_of(
            n.get("sentinel_port"),
            &format!("redis::nodes[{i}].sentinel_port"),
        )?;
        sentinels.push(Target {
            host: ip.to_string(),
            port,
        });
    }
    let text = |v: Value| match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let master_name = lookup("redis::master_name")?
        .map(text)
        .unwrap_or_else(|| "mymaster".into());
    let local = match (lookup("redis::ip")?, lookup("redis::port")?) {
        (Some(ip), port) => Some(Target {
            host: text(ip),
            port: match port {
                Some(p) => port_of(Some(&p), "redis::port")?,
                None => 6379,
            },
        }),
        _ => None,
    };
    let timeout = match lookup("redis::probe_timeout_ms")? {
        None => Duration::from_millis(500),
        Some(v) => Duration::from_millis(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| anyhow::anyhow!("redis::probe_timeout_ms: milliseconds, got {v}"))?,
        ),
    };
    Ok(Some(RedisSettings {
        sentinels,
        master_name,
        local,
        timeout,
    }))
}

fn connect(t: &Target, timeout: Duration) -> Result<redis::Connection, String> {
    let client = redis::Client::open((t.host.as_str(), t.port)).map_err(|e| e.to_string())?;
    let con = client
        .get_connection_with_timeout(timeout)
        .map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(timeout))
        .and_then(|()| con.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    Ok(con)
}

/// What one sentinel said about the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `ip:port`.
    Master(String),
    /// It does not monitor a master of that name.
    Unknown,
    Unreachable(String),
}

/// Asks one sentinel.
pub fn ask_sentinel(t: &Target, name: &str, timeout: Duration) -> Answer {
    let mut con = match connect(t, timeout) {
        Ok(c) => c,
        Err(e) => return Answer::Unreachable(e),
    };
    let got: redis::RedisResult<Option<(String, String)>> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(name)
        .query(&mut con);
    match got {
        Ok(Some((ip, port))) => Answer::Master(format!("{ip}:{port}")),
        Ok(None) => Answer::Unknown,
        Err(e) => Answer::Unreachable(e.to_string()),
    }
}

/// Asks every sentinel at once.
pub fn ask_all(sentinels: &[Target], name: &str, timeout: Duration) -> Vec<Answer> {
    std::thread::scope(|s| {
        let handles: Vec<_> = sentinels
            .iter()
            .map(|t| s.spawn(move || ask_sentinel(t, name, timeout)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Answer::Unreachable("the probe panicked".into()))
            })
            .collect()
    })
}

/// The local server's `INFO replication`, as the `redis` fact.
pub fn local_role(t: &Target, timeout: Duration) -> Value {
    let info = connect(t, timeout).and_then(|mut con| {
        redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut con)
            .map_err(|e| e.to_string())
    });
    match info {
        Ok(text) => parse_info(&text, t),
        Err(e) => json!({"address": t.label(), "error": e}),
    }
}

/// `role` (master or replica), and for a replica its master and link.
pub fn parse_info(text: &str, t: &Target) -> Value {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.trim_end().strip_prefix(&format!("{k}:")))
            .map(str::to_string)
    };
    let mut out = Map::new();
    out.insert("address".into(), json!(t.label()));
    match field("role").as_deref() {
        Some("master") => {
            out.insert("role".into(), json!("master"));
            let n: u64 = field("connected_slaves")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            out.insert("connected_replicas".into(), json!(n));
        }
        Some("slave") => {
            out.insert("role".into(), json!("replica"));
            if let (Some(h), Some(p)) = (field("master_host"), field("master_port")) {
                out.insert("master".into(), json!(format!("{h}:{p}")));
            }
            if let Some(l) = field("master_link_status") {
                out.insert("link".into(), json!(l));
            }
        }
        other => {
            out.insert(
                "error".into(),
                json!(format!("INFO replication has no role ({other:?})")),
            );
        }
    }
    Value::Object(out)
}

/// Last known master, persisted between runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastKnown {
    pub redis_master: String,
    /// Seconds since the epoch when every answering sentinel last named it.
    pub seen_at: u64,
}

pub fn last_known(state: &StateDir) -> Option<LastKnown> {
    serde_json::from_slice(&state.read(STATE_FILE)?).ok()
}

/// Persists a newly seen master (only when it changed).
pub fn remember(state: &StateDir, value: &str) -> anyhow::Result<()> {
    if last_known(state).is_some_and(|l| l.redis_master == value) {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = serde_json::to_vec_pretty(&LastKnown {
        redis_master: value.to_string(),
        seen_at: now,
    })?;
    state.write(STATE_FILE, &text)
}

/// The facts of the sentinels' answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub facts: Map<String, Value>,
    /// Sentinels that disagree: the error to report.
    pub error: Option<String>,
    /// The value to persist as last known.
    pub persist: Option<String>,
}

/// Pure decision from the answers and the last known value.
pub fn decide(sentinels: &[Target], answers: &[Answer], last: Option<&LastKnown>) -> Outcome {
    let mut said = Map::new();
    let mut masters: Vec<String> = Vec::new();
    for (t, a) in sentinels.iter().zip(answers) {
        let v = match a {
            Answer::Master(m) => {
                if !masters.contains(m) {
                    masters.push(m.clone());
                }
                json!(m)
            }
            Answer::Unknown => json!({"error": "monitors no master of that name"}),
            Answer::Unreachable(why) => json!({"error": why}),
        };
        said.insert(t.label(), v);
    }
    let mut facts = Map::new();
    let (mut error, mut persist) = (None, None);
    match masters.len() {
        1 => {
            facts.insert("redis_master".into(), json!(masters[0]));
            facts.insert("redis_master_stale".into(), json!(false));
            facts.insert("redis_split_brain".into(), json!(false));
            persist = Some(masters[0].clone());
        }
        0 => {
            if let Some(l) = last {
                facts.insert("redis_master".into(), json!(l.redis_master));
            }
            facts.insert("redis_master_stale".into(), json!(true));
            facts.insert("redis_split_brain".into(), json!(false));
        }
        _ => {
            let who: Vec<String> = masters
                .iter()
                .map(|m| {
                    let by: Vec<String> = sentinels
                        .iter()
                        .zip(answers)
                        .filter(|(_, a)| matches!(a, Answer::Master(x) if x == m))
                        .map(|(t, _)| t.label())
                        .collect();
                    format!("{m} (by {})", by.join(", "))
                })
                .collect();
            let e = format!(
                "the sentinels disagree on the master: {}; redis_master is left unset so nothing is pointed at either",
                who.join(" vs ")
            );
            facts.insert("redis_master_stale".into(), json!(false));
            facts.insert("redis_split_brain".into(), json!(true));
            facts.insert("redis_master_error".into(), json!(e));
            error = Some(e);
        }
    }
    facts.insert("redis_sentinels".into(), Value::Object(said));
    Outcome {
        facts,
        error,
        persist,
    }
}

/// Every Redis fact of `settings`, asked now.
pub fn redis_facts(settings: &RedisSettings, state: &StateDir) -> Outcome {
    let (answers, local) = std::thread::scope(|s| {
        let local = settings
            .local
            .as_ref()
            .map(|t| s.spawn(|| local_role(t, settings.timeout)));
        let answers = ask_all(&settings.sentinels, &settings.master_name, settings.timeout);
        (answers, local.and_then(|h| h.join().ok()))
    });
    let mut out = decide(&settings.sentinels, &answers, last_known(state).as_ref());
    if let Some(local) = local {
        out.facts.insert("redis".into(), local);
    }
    out
}

/// The Redis facts as a late source: asked only when something names
/// one of them; what it found worth keeping is persisted by the run,
/// under its lock ([`RedisSource::persist`]).
pub struct RedisSource {
    hiera: Arc<Hiera>,
    facts: Weak<Facts>,
    node: String,
    roles: Vec<String>,
    state: StateDir,
    found: Mutex<(Option<String>, Option<String>)>,
}

impl RedisSource {
    /// Registers the Redis facts of `node` as a late source of `facts`.
    pub fn attach(
        facts: &Arc<Facts>,
        hiera: Arc<Hiera>,
        node: &str,
        roles: &[String],
        state: &StateDir,
    ) -> Arc<RedisSource> {
        let source = Arc::new(RedisSource {
            hiera,
            facts: Arc::downgrade(facts),
            node: node.to_string(),
            roles: roles.to_vec(),
            state: state.clone(),
            found: Mutex::new((None, None)),
        });
        facts.set_late(source.clone());
        source
    }

    fn found(&self) -> std::sync::MutexGuard<'_, (Option<String>, Option<String>)> {
        self.found.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why `redis_master` has no value (sentinels disagree, bad settings).
    pub fn error(&self) -> Option<String> {
        self.found().0.clone()
    }

    /// Remembers the master the sentinels agreed on as the last known one.
    /// Only under the run lock (or by the watcher), never in noop.
    pub fn persist(&self) {
        let value = self.found().1.clone();
        if let Some(value) = value {
            if let Err(e) = remember(&self.state, &value) {
                tracing::debug!("cannot persist redis_master: {e:#}");
            }
        }
    }
}

impl LateSource for RedisSource {
    fn names(&self) -> &'static [&'static str] {
        FACT_NAMES
    }

    fn collect(&self) -> Map<String, Value> {
        let Some(facts) = self.facts.upgrade() else {
            return Default::default();
        };
        let scope = NodeScope::new(facts, &self.node, &self.roles);
        match load(&self.hiera, &scope) {
            Ok(None) => Default::default(),
            Ok(Some(settings)) => {
                let out = redis_facts(&settings, &self.state);
                *self.found() = (out.error, out.persist);
                out.facts
            }
            Err(e) => {
                self.found().0 = Some(format!("{e:#}"));
                Default::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(&json!(s)).unwrap()
    }

    #[test]
    fn decides_agreement_stale_and_disagreement() {
        let ts = [t("a:1"), t("b:2"), t("c:3")];
        let m = |s: &str| Answer::Master(s.into());
        let agree = decide(
            &ts,
            &[
                m("r1:6379"),
                m("r1:6379"),
                Answer::Unreachable("refused".into()),
            ],
            None,
        );
        assert_eq!(agree.facts["redis_master"], "r1:6379");
        assert_eq!(agree.facts["redis_split_brain"], false);
        assert_eq!(agree.persist.as_deref(), Some("r1:6379"));
        assert_eq!(agree.facts["redis_sentinels"]["c:3"]["error"], "refused");
        let last = LastKnown {
            redis_master: "r1:6379".into(),
            seen_at: 1,
        };
        let none = decide(
            &ts,
            &[
                Answer::Unreachable("x".into()),
                Answer::Unknown,
                Answer::Unreachable("y".into()),
            ],
            Some(&last),
        );
        assert_eq!(none.facts["redis_master"], "r1:6379");
        assert_eq!(none.facts["redis_master_stale"], true);
        assert!(none.persist.is_none() && none.error.is_none());
        let split = decide(
            &ts,
            &[m("r1:6379"), m("r2:6380"), m("r2:6380")],
            Some(&last),
        );
        assert!(!split.facts.contains_key("redis_master"));
        assert_eq!(split.facts["redis_split_brain"], true);
        let e = split.error.unwrap();
        assert!(
            e.contains("r1:6379 (by a:1)") && e.contains("r2:6380 (by b:2, c:3)"),
            "{e}"
        );
        assert_eq!(split.facts["redis_master_error"], json!(e));
    }

    #[test]
    fn reads_the_role_from_info_replication() {
        let me = t("127.0.0.1:6379");
        let master = parse_info(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=x\r\n",
            &me,
        );
        assert_eq!(master["role"], "master");
        assert_eq!(master["connected_replicas"], 2);
        let replica = parse_info(
            "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\n",
            &me,
        );
        assert_eq!(replica["role"], "replica");
        assert_eq!(replica["master"], "10.0.0.1:6379");
        assert_eq!(replica["link"], "up");
    }

    #[test]
    fn a_closed_port_is_unreachable_within_the_timeout() {
        let closed = resources::pg::testing::free_port("127.0.0.1");
        let started = std::time::Instant::now();
        let a = ask_all(
            &[Target {
                host: "127.0.0.1".into(),
                port: closed,
            }],
            "mymaster",
            Duration::from_millis(300),
        );
        assert!(matches!(a[0], Answer::Unreachable(_)), "{a:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
