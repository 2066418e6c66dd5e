//! `patroni_config`: the dynamic configuration of a Patroni cluster (what
//! Patroni keeps in its DCS and applies on every node: `ttl`, `loop_wait`,
//! `synchronous_mode`, `postgresql.parameters`...), converged through
//! Patroni's REST API.
//!
//! `check` reads `GET /config` and compares each declared setting with
//! what the cluster has; `apply` sends `PATCH /config` with the differing
//! settings only (a JSON merge patch: Patroni merges it into the stored
//! configuration, so undeclared settings are left as they are), then waits
//! until the node's `/config` shows them (it answers from its view of the
//! DCS, which follows a watch). A second run finds nothing to do, and
//! `--noop` shows the differences.
//!
//! The settings are validated when the catalog is built, against the keys
//! Patroni 3.0 reads from the dynamic configuration (an unknown key or a
//! value of the wrong type is an error with a hint), so a typo never
//! reaches the cluster, where Patroni would keep it and ignore it.
//!
//! `standby_cluster` (a standby cluster's source: the GoldDR site of two)
//! is converged only while the cluster *is* a standby cluster: its keys
//! (host, port...) follow Hiera, but it is never added to a cluster that
//! has none — that would demote a site promoted by `agent dr promote`.
//! A new standby cluster gets it from `bootstrap.dcs`.
//!
//! Patroni answers `GET /config` only once the cluster exists in the DCS,
//! so `check` waits for the API (a node just started) and the
//! configuration (a cluster still bootstrapping) up to `timeout` seconds.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::pg::attr::Number;

/// Attributes of `- patroni_config: <scope>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Patroni's REST API, `http://host:port` (any node of the cluster:
    /// the configuration is the cluster's). Required.
    api: String,
    /// The dynamic settings to converge (a map, nested as Patroni's
    /// `bootstrap.dcs`). Only these keys are managed. Required.
    settings: Map<String, Value>,
    /// User of the REST API's unsafe endpoints (`restapi.authentication`),
    /// if it has one.
    username: Option<String>,
    /// Its password (Sensitive: never printed).
    password: Option<String>,
    /// Longest wait, in seconds, for the API to answer and the cluster's
    /// configuration to exist (default 30).
    timeout: Option<Number>,
    /// The standby cluster's source (`host`, `port`, `restore_command`...),
    /// converged only while the cluster has a `standby_cluster` (never
    /// added). Empty or absent: not managed.
    standby_cluster: Option<Map<String, Value>>,
}

/// What a setting holds, as Patroni reads it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A whole number (seconds, bytes, a count).
    Int,
    Bool,
    /// PostgreSQL parameters: name → scalar.
    Params,
    /// A list of lines (`pg_hba`, `pg_ident`).
    Lines,
    /// A map with these keys only.
    Keys(&'static [(&'static str, Kind)]),
    /// A free-form map (`standby_cluster`, `slots`), compared key by key.
    Object,
    /// A free-form list (`ignore_slots`), compared whole.
    List,
    /// A string (or a number, kept as given).
    Text,
}

/// The keys of `standby_cluster` Patroni 3.0 reads.
const STANDBY: &[(&str, Kind)] = &[
    ("host", Kind::Text),
    ("port", Kind::Int),
    ("primary_slot_name", Kind::Text),
    ("create_replica_methods", Kind::List),
    ("restore_command", Kind::Text),
    ("archive_cleanup_command", Kind::Text),
    ("recovery_min_apply_delay", Kind::Text),
];

const POSTGRESQL: &[(&str, Kind)] = &[
    ("use_pg_rewind", Kind::Bool),
    ("use_slots", Kind::Bool),
    ("parameters", Kind::Params),
    ("recovery_conf", Kind::Params),
    ("pg_hba", Kind::Lines),
    ("pg_ident", Kind::Lines),
];

/// Patroni 3.0's dynamic configuration keys.
const DYNAMIC: &[(&str, Kind)] = &[
    ("ttl", Kind::Int),
    ("loop_wait", Kind::Int),
    ("retry_timeout", Kind::Int),
    ("maximum_lag_on_failover", Kind::Int),
    ("maximum_lag_on_syncnode", Kind::Int),
    ("max_timelines_history", Kind::Int),
    ("primary_start_timeout", Kind::Int),
    ("primary_stop_timeout", Kind::Int),
    ("master_start_timeout", Kind::Int),
    ("master_stop_timeout", Kind::Int),
    ("synchronous_node_count", Kind::Int),
    ("synchronous_mode", Kind::Bool),
    ("synchronous_mode_strict", Kind::Bool),
    ("failsafe_mode", Kind::Bool),
    ("check_timeline", Kind::Bool),
    ("postgresql", Kind::Keys(POSTGRESQL)),
    ("standby_cluster", Kind::Object),
    ("slots", Kind::Object),
    ("ignore_slots", Kind::List),
];

/// A typed `patroni_config` resource.
#[derive(Debug)]
pub struct PatroniConfig {
    id: ResourceId,
    /// `http://host:port`, no trailing slash.
    api: String,
    /// The validated settings, values normalised (`"10"` → 10).
    settings: Map<String, Value>,
    /// `Basic …` for the unsafe endpoints.
    auth: Option<String>,
    timeout: Duration,
    /// Settings holding a secret, as paths (`standby_cluster`); `""`: all.
    sensitive: Vec<String>,
    /// `standby_cluster`, validated; empty: not managed.
    standby: Map<String, Value>,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    Ok(Box::new(build_typed(decl)?))
}

fn build_typed(decl: &Decl) -> Result<PatroniConfig, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let api = p.api.trim().trim_end_matches('/').to_string();
    let Some(hostport) = api.strip_prefix("http://") else {
        return Err(invalid(format!(
            "api '{api}' must be http://host:port (Patroni's restapi.connect_address; https is not supported)"
        )));
    };
    if hostport.is_empty() || hostport.contains(['/', ' ', '\n']) {
        return Err(invalid(format!("api '{api}' must be http://host:port")));
    }
    if p.settings.is_empty() {
        return Err(invalid("settings is empty: name at least one".into()));
    }
    let settings = validate_keys(&p.settings, DYNAMIC, "").map_err(invalid)?;
    timings_fit(&settings).map_err(invalid)?;
    let standby = match p.standby_cluster {
        None => Map::new(),
        Some(m) if settings.contains_key("standby_cluster") && !m.is_empty() => {
            return Err(invalid(format!(
                "standby_cluster is given twice (settings.standby_cluster and the attribute, {} keys): keep the attribute",
                m.len()
            )))
        }
        Some(m) => validate_keys(&m, STANDBY, "standby_cluster.")
            .map_err(|e| invalid(e.replacen("settings: ", "", 1)))?,
    };
    let auth = match (p.username, p.password) {
        (Some(u), Some(pw)) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
        )),
        (None, None) => None,
        _ => return Err(invalid("username and password go together".into())),
    };
    let timeout = match &p.timeout {
        None => 30,
        Some(t) => t.value().map_err(|e| invalid(format!("timeout: {e}")))?,
    };
    Ok(PatroniConfig {
        id: id.clone(),
        api,
        settings,
        auth,
        timeout: Duration::from_secs(timeout),
        standby,
        sensitive: decl
            .sensitive
            .iter()
            .filter_map(|a| match a.as_str() {
                "settings" => Some(String::new()),
                // The attribute's changes are named `standby_cluster.<key>`.
                other if other == "standby_cluster" || other.starts_with("standby_cluster.") => {
                    Some(other.to_string())
                }
                other => other.strip_prefix("settings.").map(str::to_string),
            })
            .collect(),
    })
}

/// Checks a map against its keys, returning it with normalised values.
fn validate_keys(
    map: &Map<String, Value>,
    keys: &[(&'static str, Kind)],
    at: &str,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, value) in map {
        let path = format!("{at}{name}");
        let Some((_, kind)) = keys.iter().find(|(k, _)| k == name) else {
            let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            let near = known
                .iter()
                .map(|k| (strsim::levenshtein(k, name), *k))
                .min()
                .filter(|(d, _)| *d <= 3)
                .map(|(_, k)| format!("did you mean '{at}{k}'? "))
                .unwrap_or_default();
            return Err(format!(
                "settings: '{path}' is not a setting of Patroni's dynamic configuration; {near}known here: {}",
                known.join(", ")
            ));
        };
        out.insert(name.clone(), validate(value, *kind, &path)?);
    }
    Ok(out)
}

fn validate(value: &Value, kind: Kind, path: &str) -> Result<Value, String> {
    let wrong = |what: &str| {
        Err(format!(
            "settings: '{path}' must be {what}, not {}",
            crate::redact::redact(&value.to_string())
        ))
    };
    match kind {
        Kind::Int => match value {
            Value::Number(n) if n.is_u64() => Ok(value.clone()),
            // A rendered string ("{{lookup 'x'}} " or text around it).
            Value::String(s) => s
                .trim()
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| wrong("a whole number")),
            _ => wrong("a whole number"),
        },
        Kind::Bool => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "on" => Ok(Value::Bool(true)),
                "false" | "off" => Ok(Value::Bool(false)),
                _ => wrong("true or false"),
            },
            _ => wrong("true or false"),
        },
        Kind::Params => {
            let Value::Object(map) = value else {
                return wrong("a map of PostgreSQL parameters");
            };
            for (name, v) in map {
                let ok_name = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
                    });
                if !ok_name {
                    return Err(format!(
                        "settings: '{path}.{name}' is not a PostgreSQL parameter name (lower case letters, digits, '_', '.')"
                    ));
                }
                if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    return Err(format!(
                        "settings: '{path}.{name}' must be a string, number or boolean"
                    ));
                }
            }
            Ok(value.clone())
        }
        Kind::Lines => match value {
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(value.clone()),
            _ => wrong("a list of lines"),
        },
        Kind::Keys(keys) => match value {
            Value::Object(map) => Ok(Value::Object(validate_keys(
                map,
                keys,
                &format!("{path}."),
            )?)),
            _ => wrong("a map"),
        },
        Kind::Object => match value {
            Value::Object(_) => Ok(value.clone()),
            _ => wrong("a map"),
        },
        Kind::List => match value {
            Value::Array(_) => Ok(value.clone()),
            _ => wrong("a list"),
        },
        Kind::Text => match value {
            Value::String(_) | Value::Number(_) => Ok(value.clone()),
            _ => wrong("a string"),
        },
    }
}

/// Patroni's own rule for its timings: a leader must be able to renew its
/// key (loop_wait) and retry (twice retry_timeout) within the ttl.
fn timings_fit(settings: &Map<String, Value>) -> Result<(), String> {
    let get = |k: &str| settings.get(k).and_then(Value::as_u64);
    if let (Some(ttl), Some(lw), Some(rt)) = (get("ttl"), get("loop_wait"), get("retry_timeout")) {
        if lw + 2 * rt > ttl {
            return Err(format!(
                "settings: loop_wait ({lw}) + 2 × retry_timeout ({rt}) must not exceed ttl ({ttl}), or a healthy leader can lose its key"
            ));
        }
    }
    Ok(())
}

/// A scalar as PostgreSQL and Patroni compare it: `true`, `"on"` and
/// `"true"` are one value; `10` and `"10"` too.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Bool(true) => Some("on".into()),
        Value::Bool(false) => Some("off".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" => "on".into(),
            "false" | "off" => "off".into(),
            _ => s.clone(),
        }),
        _ => None,
    }
}

fn same(want: &Value, have: Option<&Value>) -> bool {
    match (have, scalar_text(want)) {
        (None, _) => false,
        (Some(h), Some(w)) => scalar_text(h).as_deref() == Some(w.as_str()),
        (Some(h), None) => h == want,
    }
}

fn shown(v: Option<&Value>) -> Option<String> {
    v.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// One differing setting: its path, the cluster's value (if any), ours.
type Changed = (String, Option<String>, String);

/// Compares the wanted settings with the cluster's, one change per
/// differing leaf, and builds the merge patch that makes them equal.
fn diff(
    want: &Map<String, Value>,
    have: Option<&Map<String, Value>>,
    at: &str,
    changes: &mut Vec<Changed>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (name, w) in want {
        let h = have.and_then(|m| m.get(name));
        let path = format!("{at}{name}");
        match w {
            // Maps are merged by Patroni: compare and patch key by key.
            Value::Object(wm) => {
                let sub = diff(
                    wm,
                    h.and_then(Value::as_object),
                    &format!("{path}."),
                    changes,
                );
                if !sub.is_empty() {
                    patch.insert(name.clone(), Value::Object(sub));
                }
            }
            _ if same(w, h) => {}
            _ => {
                changes.push((path, shown(h), shown(Some(w)).unwrap_or_default()));
                patch.insert(name.clone(), w.clone());
            }
        }
    }
    patch
}

/// Why a GET gave no configuration, and whether waiting may help.
enum GetError {
    /// Not up yet, or the cluster not initialised yet.
    NotYet(String),
    Fatal(String),
}

impl PatroniConfig {
    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(Duration::from_secs(10)))
            // Patroni's error answers carry a body worth reporting.
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn url(&self) -> String {
        format!("{}/config", self.api)
    }

    fn get_once(&self) -> Result<Map<String, Value>, GetError> {
        let mut resp = match self.agent().get(&self.url()).call() {
            Ok(resp) => resp,
            Err(e) => {
                return Err(GetError::NotYet(format!(
                    "Patroni's REST API does not answer: {e}"
                )))
            }
        };
        let code = resp.status().as_u16();
        match code {
            200..=299 => match resp.body_mut().read_json::<Value>() {
                Ok(Value::Object(m)) => Ok(m),
                Ok(other) => Err(GetError::Fatal(format!(
                    "GET {} answered {} instead of a map",
                    self.url(),
                    crate::redact::redact(&other.to_string())
                ))),
                Err(e) => Err(GetError::Fatal(format!(
                    "GET {}: unreadable answer: {e}",
                    self.url()
                ))),
            },
            // 502/503: Patroni runs, the cluster has no configuration yet.
            502 | 503 => Err(GetError::NotYet(format!(
                "GET {} answered {code} (the cluster is not initialised yet)",
                self.url()
            ))),
            _ => Err(GetError::Fatal(format!(
                "GET {} answered {code}: {}",
                self.url(),
                crate::redact::redact(body_text(&mut resp).trim())
            ))),
        }
    }

    /// The cluster's configuration, waiting up to the timeout for it.
    fn current(&self) -> Result<Map<String, Value>, ResourceError> {
        let started = Instant::now();
        loop {
            match self.get_once() {
                Ok(m) => return Ok(m),
                Err(GetError::Fatal(why)) => return Err(self.failed(&why)),
                Err(GetError::NotYet(why)) if started.elapsed() >= self.timeout => {
                    return Err(self.failed(&format!(
                        "no configuration after {} s: {why}",
                        self.timeout.as_secs()
                    )))
                }
                Err(GetError::NotYet(why)) => {
                    tracing::debug!(resource = %self.id, %why, "waiting for Patroni");
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    /// True when the setting at `path` (`standby_cluster.host`) holds, or
    /// sits in, a Sensitive value.
    fn is_sensitive(&self, path: &str) -> bool {
        self.sensitive.iter().any(|s| {
            s.is_empty()
                || path == s
                || path
                    .strip_prefix(s.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        })
    }

    /// The merge patch that makes `have` what is declared, and the changes
    /// (path, from, to). `standby_cluster` only where `have` has one.
    fn plan(&self, have: &Map<String, Value>) -> (Map<String, Value>, Vec<Changed>) {
        let mut changes = Vec::new();
        let mut patch = diff(&self.settings, Some(have), "", &mut changes);
        let standby_now = have
            .get("standby_cluster")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty());
        match standby_now {
            Some(now) if !self.standby.is_empty() => {
                let sub = diff(&self.standby, Some(now), "standby_cluster.", &mut changes);
                if !sub.is_empty() {
                    patch.insert("standby_cluster".into(), Value::Object(sub));
                }
            }
            None if !self.standby.is_empty() => tracing::debug!(
                resource = %self.id,
                "not a standby cluster (promoted, or a cluster of its own): standby_cluster is left absent"
            ),
            _ => {}
        }
        (patch, changes)
    }

    /// Waits (up to the timeout) until `GET /config` shows every setting.
    fn await_converged(&self) -> Result<(), ResourceError> {
        let started = Instant::now();
        loop {
            let current = self.current()?;
            if self.plan(&current).0.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                return Err(self.failed(&format!(
                    "Patroni accepted the patch, but {} does not show it after {} s",
                    self.url(),
                    self.timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn failed(&self, why: &str) -> ResourceError {
        ResourceError::Failed(format!("{}: {why}", self.id))
    }
}

/// What `apply` sends: the merge patch of the differing settings.
#[derive(Debug)]
struct Steps {
    patch: Value,
}

impl Resource for PatroniConfig {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, _cx: &Context) -> Result<Plan, ResourceError> {
        let have = self.current()?;
        let (patch, found) = self.plan(&have);
        let changes = found
            .into_iter()
            .map(|(path, from, to)| {
                let secret = self.is_sensitive(&path);
                Change::new(path, from, Some(to)).sensitive(secret)
            })
            .collect();
        Ok(Plan::new(
            changes,
            Steps {
                patch: Value::Object(patch),
            },
        ))
    }

    fn apply(&self, _cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let steps: Steps = plan.steps(&self.id)?;
        let mut req = self.agent().patch(&self.url());
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        match req.send_json(steps.patch) {
            // Patroni answers /config from its view of the DCS, which follows
            // an etcd watch: wait until it shows the patch, so the next check
            // (this run's or the next one's) finds nothing to do.
            Ok(resp) if resp.status().is_success() => self.await_converged(),
            Ok(mut resp) => {
                let code = resp.status().as_u16();
                Err(self.failed(&format!(
                    "PATCH {} answered {code}: {}{}",
                    self.url(),
                    crate::redact::redact(body_text(&mut resp).trim()),
                    if code == 401 {
                        " (check username and password: restapi.authentication)"
                    } else {
                        ""
                    }
                )))
            }
            Err(e) => Err(self.failed(&format!("PATCH {}: {e}", self.url()))),
        }
    }
}

/// An error answer's body, for the report (redacted by the caller).
fn body_text(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    resp.body_mut().read_to_string().unwrap_or_default()
}

#[cfg(test)]
mod tests;
