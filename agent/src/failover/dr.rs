//! Two sites (issue 14): a GoldDR site runs a Patroni *standby cluster*
//! replicating from Gold (`patroni::standby_cluster`, rendered into
//! `bootstrap.dcs.standby_cluster` by the `patroni_node` role). This module
//! reads that site's settings from Hiera, measures its lag behind Gold (the
//! `dr` fact, `agent dr status`, the `dr_lag` hook) and promotes it by hand
//! (`agent dr promote`).
//!
//! Promotion is manual on purpose: from one site a dead Gold and a broken
//! link look the same, and Patroni's maintainers refuse automatic
//! standby-cluster promotion for that reason (patroni#1151). So
//! [`promote`] refuses while Gold's leader still answers — Gold's Patroni
//! `GET /primary` answering 200, or Gold's PostgreSQL (the
//! `standby_cluster` host/port) answering as writable — unless forced.
//! Then it removes `standby_cluster` from the cluster's dynamic
//! configuration (`PATCH /config {"standby_cluster": null}`), waits until
//! the standby leader is a writable leader, records a new epoch in the
//! state dir (`dr-epoch.json`, written atomically and fsynced) and fires
//! the `dr_promoted` hook with the whole story as JSON on stdin.
//!
//! Hiera (the GoldDR node's):
//! - `patroni::standby_cluster`: `{host, port}` of Gold's leader (or a
//!   `restore_command`): the Gold PostgreSQL asked for writability and lag;
//! - `dr::gold_patroni`: Gold's Patroni REST addresses (`host:port` list);
//! - `patroni::ip`, `patroni::rest_port`, `patroni::pg_port`,
//!   `patroni::rest_user`/`patroni::rest_password` (this node's Patroni),
//!   `pgsql_server::postgres_password` (the superuser both sites share);
//! - `dr::lag_alert_bytes`, `dr::lag_alert_s`: the `dr_lag` hook's bounds;
//! - `dr::promote_timeout` (s): how long to wait for the writable leader;
//! - `dr::switchover_max_lag_bytes`: `agent dr switchover`/`failback`
//!   refuse beyond this lag (`failover::switchover`; on Gold the other
//!   site's REST APIs are `dr::golddr_patroni`);
//! - `dr::probe_timeout_ms`: bounds each question to Gold.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::engine::hiera::{Hiera, HieraError, Scope};
use crate::engine::state::StateDir;
use crate::failover::hooks::Hooks;

/// The epoch file in the state dir.
pub const EPOCH_FILE: &str = "dr-epoch.json";
/// Whether the last lag check was over a bound (the hook fires on the edge).
const LAG_ALERT_FILE: &str = "dr-lag-alert";

/// A GoldDR site's settings, from its node's Hiera.
#[derive(Debug, Clone)]
pub struct DrSettings {
    /// Patroni's scope (the standby cluster's).
    pub scope: String,
    /// This node's Patroni REST API, `http://host:port`.
    pub api: String,
    /// `Basic …` for the unsafe endpoints, when Hiera has a REST user.
    pub(crate) auth: Option<String>,
    /// This node's PostgreSQL.
    pub pg: (String, u16),
    /// The superuser's password (both sites').
    password: Option<String>,
    /// Gold's Patroni REST APIs, `http://host:port` each.
    pub gold_patroni: Vec<String>,
    /// Gold's PostgreSQL (`standby_cluster` host/port), if it names one.
    pub gold_pg: Option<(String, u16)>,
    pub lag_alert_bytes: Option<u64>,
    pub lag_alert_s: Option<f64>,
    pub promote_timeout: Duration,
    pub probe_timeout: Duration,
    /// `agent dr switchover`/`failback` refuse when this site's replay is
    /// further behind the other site's leader (`dr::switchover_max_lag_bytes`).
    pub switchover_max_lag_bytes: u64,
}

fn lookup(hiera: &Hiera, scope: &dyn Scope, key: &str) -> Result<Option<Value>> {
    match hiera.lookup(key, scope, None) {
        Ok(f) => Ok(Some(f.value)),
        Err(HieraError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(key: &str, v: Option<Value>) -> Result<Option<f64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => text(&v)
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| *n >= 0.0)
            .map(Some)
            .ok_or_else(|| anyhow!("{key} must be a number ≥ 0, got {v}")),
    }
}

fn port(key: &str, v: &Value) -> Result<u16> {
    text(v)
        .trim()
        .parse()
        .map_err(|_| anyhow!("{key} must be a port number, got {v}"))
}

/// `host:port` or `http://host:port` → `http://host:port`.
pub(crate) fn base_url(key: &str, s: &str) -> Result<String> {
    let s = s.trim().trim_end_matches('/');
    let bare = s.strip_prefix("http://").unwrap_or(s);
    if bare.is_empty() || bare.contains('/') || !bare.contains(':') {
        bail!("{key}: '{s}' is not 'host:port' or 'http://host:port'");
    }
    Ok(format!("http://{bare}"))
}

impl DrSettings {
    /// The site's settings; `None` when this node is no standby site
    /// (neither `patroni::standby_cluster` nor `dr::gold_patroni` is set).
    pub fn load(hiera: &Hiera, scope: &dyn Scope) -> Result<Option<DrSettings>> {
        Self::load_with(hiera, scope, "dr::gold_patroni", false)
    }

    /// The settings with the other site's Patroni REST APIs read from
    /// `peer_key` (`dr::gold_patroni` on GoldDR, `dr::golddr_patroni` on
    /// Gold for `agent dr failback`); `any_node`: load them on a node
    /// whose Hiera names no standby site too (`None` only when neither
    /// `patroni::standby_cluster` nor `peer_key` is set and `any_node` is
    /// false).
    pub fn load_with(
        hiera: &Hiera,
        scope: &dyn Scope,
        peer_key: &str,
        any_node: bool,
    ) -> Result<Option<DrSettings>> {
        let standby = lookup(hiera, scope, "patroni::standby_cluster")?
            .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()));
        let gold_patroni: Vec<String> = match lookup(hiera, scope, peer_key)? {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| base_url(peer_key, &text(v)))
                .collect::<Result<_>>()?,
            Some(Value::String(s)) if s.trim().is_empty() => vec![],
            Some(Value::String(s)) => s
                .split(',')
                .map(|p| base_url(peer_key, p))
                .collect::<Result<_>>()?,
            Some(other) => bail!(
                "{peer_key} must be a list of 'host:port' (the other site's Patroni REST APIs), got {other}"
            ),
        };
        if standby.is_none() && gold_patroni.is_empty() && !any_node {
            return Ok(None);
        }
        let gold_pg = match &standby {
            Some(s) => match (s.get("host"), s.get("port")) {
                (Some(h), p) => Some((
                    text(h),
                    match p {
                        Some(p) => port("patroni::standby_cluster.port", p)?,
                        None => 5432,
                    },
                )),
                _ => None,
            },
            None => None,
        };
        let need = |key: &str| -> Result<Value> {
            lookup(hiera, scope, key)?.ok_or_else(|| {
                anyhow!("a standby site needs {key} in Hiera (see README: Two sites)")
            })
        };
        let ip = text(&need("patroni::ip")?);
        let rest_port = port("patroni::rest_port", &need("patroni::rest_port")?)?;
        let pg_port = port("patroni::pg_port", &need("patroni::pg_port")?)?;
        let auth = match (
            lookup(hiera, scope, "patroni::rest_user")?,
            lookup(hiera, scope, "patroni::rest_password")?,
        ) {
            (Some(u), Some(p)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    text(&u),
                    text(&p)
                ))
            )),
            _ => None,
        };
        if let Some(a) = &auth {
            resources::redact::register(a);
        }
        let password = lookup(hiera, scope, "pgsql_server::postgres_password")?.map(|v| text(&v));
        let secs = |key: &str, default: f64| -> Result<f64> {
            Ok(number(key, lookup(hiera, scope, key)?)?.unwrap_or(default))
        };
        Ok(Some(DrSettings {
            scope: lookup(hiera, scope, "patroni::scope")?
                .map(|v| text(&v))
                .unwrap_or_default(),
            api: format!("http://{ip}:{rest_port}"),
            auth,
            pg: (ip, pg_port),
            password,
            gold_patroni,
            gold_pg,
            lag_alert_bytes: number(
                "dr::lag_alert_bytes",
                lookup(hiera, scope, "dr::lag_alert_bytes")?,
            )?
            .map(|n| n as u64),
            lag_alert_s: number("dr::lag_alert_s", lookup(hiera, scope, "dr::lag_alert_s")?)?,
            promote_timeout: Duration::from_secs_f64(secs("dr::promote_timeout", 60.0)?),
            switchover_max_lag_bytes: secs("dr::switchover_max_lag_bytes", 16.0 * 1024.0 * 1024.0)?
                as u64,
            probe_timeout: Duration::from_millis(secs("dr::probe_timeout_ms", 2000.0)? as u64),
        }))
    }

    pub(crate) fn http(&self, timeout: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }

    pub(crate) fn conn(&self, host: &str, port: u16) -> resources::pg::Conn {
        let mut c = resources::pg::Conn::new(host, port, "postgres", self.password.as_deref());
        c.connect_timeout = self.probe_timeout;
        c
    }

    pub(crate) fn get(&self, url: &str, timeout: Duration) -> Result<(u16, Value)> {
        let mut resp = self.http(timeout).get(url).call()?;
        let code = resp.status().as_u16();
        let body = resp.body_mut().read_json::<Value>().unwrap_or(Value::Null);
        Ok((code, body))
    }
}

/// Why Gold's leader is taken to be alive, if it is: the first of its
/// Patroni REST APIs answering `/primary` with 200, else its PostgreSQL
/// answering as writable. `None`: nothing of Gold's leader answered.
pub fn gold_alive(s: &DrSettings) -> Option<String> {
    for api in &s.gold_patroni {
        if let Ok((200, body)) = s.get(&format!("{api}/primary"), s.probe_timeout) {
            // Name the leader: its member name and PostgreSQL from /cluster.
            let leader = s
                .get(&format!("{api}/cluster"), s.probe_timeout)
                .ok()
                .and_then(|(_, c)| {
                    c["members"]
                        .as_array()?
                        .iter()
                        .find(|m| m["role"] == "leader")
                        .map(|m| {
                            format!(
                                " {} ({}:{})",
                                text(&m["name"]),
                                text(&m["host"]),
                                text(&m["port"])
                            )
                        })
                });
            let name = leader
                .or_else(|| body["patroni"]["name"].as_str().map(|n| format!(" {n}")))
                .unwrap_or_default();
            let scope = body["patroni"]["scope"]
                .as_str()
                .map(|n| format!(" of cluster {n}"))
                .unwrap_or_default();
            return Some(format!(
                "Gold's Patroni at {api} answers /primary: its leader{name}{scope} is up"
            ));
        }
    }
    if let Some((host, port)) = &s.gold_pg {
        if let Ok(mut c) = s.conn(host, *port).connect() {
            if let Ok(row) = c.query_one("select pg_is_in_recovery()", &[]) {
                if !row.get::<_, bool>(0) {
                    return Some(format!(
                        "Gold's PostgreSQL at {host}:{port} answers as a writable primary"
                    ));
                }
            }
        }
    }
    None
}

/// The `dr` fact of a standby site: whether this site is still a standby
/// cluster, its lag behind Gold's leader (`lag_bytes`: Gold's current WAL
/// position minus what this node replayed; `lag_s`: 0 when caught up, else
/// the age of the last transaction replayed), the epoch, and what could not
/// be read.
pub fn facts(s: &DrSettings, state: &StateDir) -> Value {
    let mut doc = serde_json::Map::new();
    doc.insert("scope".into(), json!(s.scope));
    doc.insert(
        "gold".into(),
        json!(s.gold_pg.as_ref().map(|(h, p)| format!("{h}:{p}"))),
    );
    doc.insert("epoch".into(), json!(read_epoch(state).map(|e| e.epoch)));
    let gold_lsn: Result<String> = match &s.gold_pg {
        None => Err(anyhow!("patroni::standby_cluster names no host")),
        Some((h, p)) => s
            .conn(h, *p)
            .connect()
            .map_err(Into::into)
            .and_then(|mut c| {
                let row = c.query_one("select pg_current_wal_lsn()::text", &[])?;
                Ok(row.get::<_, String>(0))
            }),
    };
    let local = s.conn(&s.pg.0, s.pg.1).connect().map_err(anyhow::Error::from).and_then(|mut c| {
        let lsn = gold_lsn.as_ref().ok().cloned();
        let row = c.query_one(
            "select pg_is_in_recovery(), \
             (pg_wal_lsn_diff($1::text::pg_lsn, coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn())))::float8, \
             extract(epoch from now() - pg_last_xact_replay_timestamp())::float8",
            &[&lsn],
        )?;
        Ok((
            row.get::<_, bool>(0),
            row.get::<_, Option<f64>>(1),
            row.get::<_, Option<f64>>(2),
        ))
    });
    match local {
        Ok((standby, bytes, age)) => {
            doc.insert("standby".into(), json!(standby));
            let bytes = bytes.map(|b| b.max(0.0) as u64);
            doc.insert("lag_bytes".into(), json!(bytes));
            let secs = match bytes {
                Some(0) => Some(0.0),
                _ if standby => age.map(|a| a.max(0.0)),
                _ => None,
            };
            doc.insert("lag_s".into(), json!(secs));
        }
        Err(e) => {
            doc.insert("standby".into(), Value::Null);
            doc.insert("lag_bytes".into(), Value::Null);
            doc.insert("lag_s".into(), Value::Null);
            doc.insert(
                "error".into(),
                json!(format!("this node's PostgreSQL: {}", redact(&e))),
            );
        }
    }
    if let Err(e) = gold_lsn {
        doc.insert(
            "gold_error".into(),
            json!(format!("Gold's PostgreSQL: {}", redact(&e))),
        );
    }
    Value::Object(doc)
}

pub(crate) fn redact(e: &anyhow::Error) -> String {
    resources::redact::redact(&format!("{e:#}")).into_owned()
}

/// Over which bound the lag of `facts` is, in words; `None` within bounds
/// (or unknown: an unreadable lag is `error`/`gold_error`, not an alert).
pub fn lag_over(s: &DrSettings, facts: &Value) -> Option<String> {
    if facts["standby"] != true {
        return None;
    }
    if let (Some(max), Some(b)) = (s.lag_alert_bytes, facts["lag_bytes"].as_u64()) {
        if b > max {
            return Some(format!("lag {b} bytes > dr::lag_alert_bytes {max}"));
        }
    }
    if let (Some(max), Some(t)) = (s.lag_alert_s, facts["lag_s"].as_f64()) {
        if t > max {
            return Some(format!("lag {t:.1} s > dr::lag_alert_s {max}"));
        }
    }
    None
}

/// Fires `dr_lag` when the lag has just passed a bound (not again while it
/// stays over; once more after it came back within bounds) and waits for
/// its hooks. Returns why it is over, if it is.
pub fn check_lag(
    s: &DrSettings,
    state: &StateDir,
    facts: &Value,
    node: &str,
    hooks: &Hooks,
) -> Option<String> {
    let (over, threads) = check_lag_async(s, state, facts, node, hooks);
    for t in threads {
        let _ = t.join();
    }
    over
}

/// [`check_lag`] with the hooks left running (`agent watch`): why the lag
/// is over, if it is, and the hooks' threads.
pub fn check_lag_async(
    s: &DrSettings,
    state: &StateDir,
    facts: &Value,
    node: &str,
    hooks: &Hooks,
) -> (Option<String>, Vec<std::thread::JoinHandle<()>>) {
    let mut threads = vec![];
    let over = lag_over(s, facts);
    let was = state.read(LAG_ALERT_FILE).is_some();
    match &over {
        Some(why) if !was => {
            if let Err(e) = state.write(LAG_ALERT_FILE, why.as_bytes()) {
                tracing::warn!("cannot note the lag alert: {e:#}");
            }
            let doc = json!({
                "event": "dr_lag",
                "reason": why,
                "agent_node": node,
                "dr": facts,
                "lag_alert_bytes": s.lag_alert_bytes,
                "lag_alert_s": s.lag_alert_s,
                "time": now(),
            });
            threads = hooks.fire_doc("dr_lag", &doc);
        }
        None if was => {
            let _ = std::fs::remove_file(state.dir.join(LAG_ALERT_FILE));
        }
        _ => {}
    }
    (over, threads)
}

/// `agent watch`'s heartbeat on a standby site: the lag read and `dr_lag`
/// fired when it has just passed a bound. Nothing on other nodes.
pub fn watch_heartbeat(
    settings: &crate::settings::Settings,
    hooks: &Hooks,
) -> Vec<std::thread::JoinHandle<()>> {
    match crate::failover::watch::from_node_hiera(settings, DrSettings::load) {
        Ok((node, Some(s))) => {
            let facts = facts(&s, &settings.state);
            let (over, threads) = check_lag_async(&s, &settings.state, &facts, &node, hooks);
            if let Some(why) = over {
                tracing::warn!("{}: {why}", s.scope);
            }
            threads
        }
        Ok((_, None)) => vec![],
        Err(e) => {
            tracing::warn!("the standby site's settings: {e:#}");
            vec![]
        }
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The epoch file: the promotions of this site, the last one first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Epoch {
    pub epoch: u64,
    pub time: String,
    pub reason: String,
    pub forced: bool,
    /// The node that promoted, and the PostgreSQL now writable.
    pub node: String,
    pub leader: String,
    /// A planned switchover's (or failback's) demotion token: the other
    /// site's system identifier, timeline, checkpoint and end-of-WAL LSNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Value>,
    /// The earlier epochs, oldest first.
    #[serde(default)]
    pub history: Vec<Value>,
}

/// The history of the epoch after `previous`: its own, then it.
pub(crate) fn history_of(previous: Option<Epoch>) -> Result<Vec<Value>> {
    Ok(match previous {
        Some(p) => {
            let mut h = p.history.clone();
            let mut last = serde_json::to_value(&p)?;
            if let Some(m) = last.as_object_mut() {
                m.remove("history");
            }
            h.push(last);
            h
        }
        None => vec![],
    })
}

pub fn read_epoch(state: &StateDir) -> Option<Epoch> {
    serde_json::from_slice(&state.read(EPOCH_FILE)?).ok()
}

pub(crate) fn write_epoch(state: &StateDir, e: &Epoch) -> Result<()> {
    state.ensure()?;
    let path = state.dir.join(EPOCH_FILE);
    let mut text = serde_json::to_vec_pretty(e)?;
    text.push(b'\n');
    resources::atomic::write_atomic(&path, &text, Some(0o644))
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("recording the epoch in {}", path.display()))
}

/// What `agent dr promote` was asked.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    pub force: bool,
    pub reason: String,
    pub node: String,
    pub hooks: Hooks,
}

/// What a promotion did.
#[derive(Debug, Clone)]
pub enum Promoted {
    /// The site was promoted: the new epoch.
    Now(Epoch),
    /// Not a standby cluster (already promoted): nothing done.
    Already(Option<u64>),
}

/// Promotes the standby cluster of this site (see the module's doc).
pub fn promote(s: &DrSettings, state: &StateDir, req: &PromoteRequest) -> Result<Promoted> {
    let timeout = Duration::from_secs(5);
    let (code, config) = s
        .get(&format!("{}/config", s.api), timeout)
        .with_context(|| format!("this node's Patroni ({}/config) does not answer", s.api))?;
    if code != 200 {
        bail!(
            "GET {}/config answered {code}: is this cluster initialised?",
            s.api
        );
    }
    if config
        .get("standby_cluster")
        .is_none_or(|v| v.is_null() || v.as_object().is_some_and(|m| m.is_empty()))
    {
        return Ok(Promoted::Already(read_epoch(state).map(|e| e.epoch)));
    }
    let checkable = !s.gold_patroni.is_empty() || s.gold_pg.is_some();
    let alive = if checkable { gold_alive(s) } else { None };
    let forced_over = refusal(&s.scope, checkable, alive, req.force)?;
    let mut req_patch = s.http(timeout).patch(&format!("{}/config", s.api));
    if let Some(a) = &s.auth {
        req_patch = req_patch.header("Authorization", a);
    }
    let mut resp = req_patch
        .send_json(json!({"standby_cluster": null}))
        .with_context(|| format!("PATCH {}/config", s.api))?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        bail!(
            "PATCH {}/config answered {code}: {}{}",
            s.api,
            resources::redact::redact(body.trim()),
            if code == 401 {
                " (check patroni::rest_user and patroni::rest_password)"
            } else {
                ""
            }
        );
    }
    let leader = wait_writable(s)?;
    let previous = read_epoch(state);
    let epoch = Epoch {
        epoch: previous.as_ref().map_or(0, |e| e.epoch) + 1,
        time: now(),
        reason: match &forced_over {
            Some(why) => format!("{} (forced while {why})", req.reason),
            None => req.reason.clone(),
        },
        forced: forced_over.is_some(),
        node: req.node.clone(),
        leader: leader.clone(),
        token: None,
        history: history_of(previous)?,
    };
    write_epoch(state, &epoch)?;
    let doc = json!({
        "event": "dr_promoted",
        "reason": epoch.reason,
        "forced": epoch.forced,
        "gold_alive": forced_over,
        "epoch": epoch.epoch,
        "scope": s.scope,
        "leader": leader,
        "gold": s.gold_pg.as_ref().map(|(h, p)| format!("{h}:{p}")),
        "gold_patroni": s.gold_patroni,
        "agent_node": req.node,
        "time": epoch.time,
    });
    for t in req.hooks.fire_doc("dr_promoted", &doc) {
        let _ = t.join();
    }
    Ok(Promoted::Now(epoch))
}

/// Whether to go on: an error (nothing changed yet) while Gold's leader
/// answers (`alive`: why it seems to) or when nothing says how to ask
/// (`checkable` false), unless `force`; else why Gold looked alive when
/// forced over it.
fn refusal(
    scope: &str,
    checkable: bool,
    alive: Option<String>,
    force: bool,
) -> Result<Option<String>> {
    match (alive, checkable, force) {
        (Some(why), _, true) => Ok(Some(why)),
        (Some(why), _, false) => bail!(
            "refusing to promote {scope}: {why}. Promoting now would make two writable primaries (a split brain; \
             Gold's later writes would be lost to a rewind or re-clone). Nothing was changed.\n\
             hint: stop Gold's leader first (or make sure it is fenced), then run `agent dr promote` again; \
             `--force` promotes anyway"
        ),
        (None, false, false) => bail!(
            "refusing to promote {scope}: nothing says how to ask Gold whether its leader still answers \
             (no dr::gold_patroni, no host in patroni::standby_cluster). Nothing was changed.\n\
             hint: set dr::gold_patroni: ['<gold-node>:8008', …]; `--force` promotes without asking"
        ),
        (None, _, _) => Ok(None),
    }
}

/// Waits until this node's Patroni is the leader of a cluster with no
/// `standby_cluster` and its PostgreSQL takes writes; its `host:port`.
pub(crate) fn wait_writable(s: &DrSettings) -> Result<String> {
    let deadline = Instant::now() + s.promote_timeout;
    let mut last;
    loop {
        let role = s
            .get(&format!("{}/patroni", s.api), Duration::from_secs(2))
            .map(|(_, b)| text(&b["role"]))
            .unwrap_or_else(|e| format!("(no answer: {e})"));
        if role == "master" || role == "primary" {
            match s.conn(&s.pg.0, s.pg.1).connect() {
                Ok(mut c) => match c.query_one("select pg_is_in_recovery()", &[]) {
                    Ok(row) if !row.get::<_, bool>(0) => {
                        return Ok(format!("{}:{}", s.pg.0, s.pg.1))
                    }
                    Ok(_) => last = "PostgreSQL still in recovery".into(),
                    Err(e) => last = format!("PostgreSQL: {e}"),
                },
                Err(e) => last = format!("PostgreSQL: {e}"),
            }
        } else {
            last = format!("Patroni's role is {role}");
        }
        if Instant::now() > deadline {
            bail!(
                "standby_cluster was removed but {} is not a writable leader within {:?} ({last}); \
                 see Patroni's log; no epoch recorded",
                s.api,
                s.promote_timeout
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The hooks of `dir` with `timeout` each (as `agent watch` runs them).
pub fn hooks(dir: &Path, timeout: Duration) -> Hooks {
    Hooks {
        dir: dir.to_path_buf(),
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DrSettings {
        DrSettings {
            scope: "golddr".into(),
            api: "http://127.0.0.1:1".into(),
            auth: None,
            pg: ("127.0.0.1".into(), 1),
            password: None,
            gold_patroni: vec![],
            gold_pg: None,
            lag_alert_bytes: Some(1000),
            lag_alert_s: Some(30.0),
            promote_timeout: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(100),
            switchover_max_lag_bytes: 1 << 24,
        }
    }

    #[test]
    fn promotion_is_refused_while_gold_answers_or_cannot_be_asked() {
        let why = "Gold's Patroni at http://g:8008 answers /primary".to_string();
        let err = refusal("golddr", true, Some(why.clone()), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing to promote golddr: Gold's Patroni at http://g:8008"),
            "{err}"
        );
        assert!(
            err.contains("Nothing was changed") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(
            refusal("golddr", true, Some(why.clone()), true).unwrap(),
            Some(why)
        );
        assert_eq!(refusal("golddr", true, None, false).unwrap(), None);
        let err = refusal("golddr", false, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dr::gold_patroni"), "{err}");
        assert_eq!(refusal("golddr", false, None, true).unwrap(), None);
    }

    #[test]
    fn lag_bounds_and_the_edge_of_the_hook() {
        let s = settings();
        let ok = json!({"standby": true, "lag_bytes": 10, "lag_s": 0.0});
        let far = json!({"standby": true, "lag_bytes": 5000, "lag_s": 1.0});
        let old = json!({"standby": true, "lag_bytes": 10, "lag_s": 31.0});
        let promoted = json!({"standby": false, "lag_bytes": 5000, "lag_s": null});
        assert_eq!(lag_over(&s, &ok), None);
        assert!(lag_over(&s, &far)
            .unwrap()
            .contains("5000 bytes > dr::lag_alert_bytes 1000"));
        assert!(lag_over(&s, &old).unwrap().contains("dr::lag_alert_s 30"));
        assert_eq!(
            lag_over(&s, &promoted),
            None,
            "a promoted site lags nothing"
        );

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let hook = dir.path().join("dr_lag");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\ncat >> {}\necho >> {}\n",
                out.display(),
                out.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let h = hooks(dir.path(), Duration::from_secs(5));
        let fired = || {
            std::fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .count()
        };
        check_lag(&s, &state, &ok, "n", &h);
        assert_eq!(fired(), 0);
        check_lag(&s, &state, &far, "n", &h);
        assert_eq!(fired(), 1);
        check_lag(&s, &state, &far, "n", &h);
        assert_eq!(fired(), 1, "not again while it stays over");
        check_lag(&s, &state, &ok, "n", &h);
        check_lag(&s, &state, &old, "n", &h);
        assert_eq!(fired(), 2, "again after it came back");
        let last: Value = serde_json::from_str(
            std::fs::read_to_string(&out)
                .unwrap()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(last["event"], "dr_lag");
        assert_eq!(last["dr"]["lag_s"], 31.0);
    }
}
