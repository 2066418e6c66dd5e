//! Facts: everything the agent knows about this node, as one JSON object
//! with Facter-compatible names so manifests and Hiera data written for
//! Puppet port unchanged (`os.family`, `networking.ip`, ...).
//!
//! Sources, lowest precedence first:
//! 1. core facts (`core.rs` and its submodules): read straight from `/proc`, `/sys`,
//!    `/etc` and a few syscalls — no commands, so the whole set takes a few
//!    milliseconds;
//! 2. domain facts (e.g. PostgreSQL) — merged in [`collect`], one line each;
//! 3. external facts ([`external`]) from `--facts-dir`: `*.yaml`/`*.yml`,
//!    `*.json`, `*.txt` (`key=value`) and executables; a fact there replaces
//!    the core fact of the same top-level name;
//! 4. environment overrides, as Facter: `FACTER_<name>=value` sets the
//!    top-level fact `<name>` (lower-cased) and wins over everything. In
//!    addition, when `<name>` with `_` read as `.` names a fact that already
//!    exists (`FACTER_os_family` → `os.family`,
//!    `FACTER_memory_system_total_bytes` → `memory.system.total_bytes`:
//!    underscores inside real key names are matched too), that nested value
//!    is replaced as well, so `{{facts.os.family}}` and `%{facts.os_family}`
//!    agree. The value always stays a string, as Facter keeps it.
//!
//! Dotted names (`os.release.major`) address nested facts; a key that
//! itself contains a dot (a VLAN interface `eth0.100`) still resolves, and a
//! number indexes an array (`processors.models.0`).

mod core;
pub mod external;
pub mod legacy;
pub mod postgresql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Where and how facts are gathered.
#[derive(Debug, Clone)]
pub struct FactOptions {
    /// External facts directory (`--facts-dir`, default /etc/agent/facts.d).
    pub facts_dir: PathBuf,
    /// Time limit for one executable external fact.
    pub exec_timeout: Duration,
    /// Read the facts directory at all (`--no-external-facts` says no).
    pub external: bool,
    /// `--root`: where the node's configuration files are read (the
    /// `pgbackrest` facts read `<root>/etc/pgbackrest/pgbackrest.conf`).
    pub root: Option<PathBuf>,
}

impl Default for FactOptions {
    fn default() -> Self {
        FactOptions {
            facts_dir: PathBuf::from("/etc/agent/facts.d"),
            exec_timeout: Duration::from_secs(10),
            external: true,
            root: None,
        }
    }
}

/// The bytes of a small file (`/proc`, `/sys`, `/etc`), read with plain
/// `read` calls: `fs::read` first stats the file to size its buffer, a
/// syscall that costs more than the read itself for these files (and
/// `/proc` reports size 0 anyway).
pub(crate) fn read_small(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Gathers every fact of this node as one JSON object.
///
/// Never fails on a missing or unreadable source: a fact that cannot be
/// read is absent, and a broken external facts file is a logged warning.
pub fn collect(opts: &FactOptions) -> anyhow::Result<Value> {
    Ok((*Facts::new(opts.clone()).all()).clone())
}

/// A source of facts collected as one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Core(self::core::Part),
    /// The agent itself (Facter has facterversion): manifests use its path
    /// to run the binary's own helpers, such as the stand-in Stash.
    Agent,
    /// Domain facts, after the core ones: `postgresql`.
    Postgresql,
    /// `pgbackrest`: the repository's health (`pgbackrest info` and
    /// `repo-ls`, a second or so), read only when named.
    Pgbackrest,
}

impl Group {
    /// In precedence order, lowest first (a later group's top-level fact
    /// replaces an earlier one's).
    const ALL: [Group; 10] = [
        Group::Core(self::core::Part::System),
        Group::Core(self::core::Part::Networking),
        Group::Core(self::core::Part::Hardware),
        Group::Core(self::core::Part::Identity),
        Group::Core(self::core::Part::Storage),
        Group::Core(self::core::Part::Load),
        Group::Core(self::core::Part::Augeas),
        Group::Agent,
        Group::Postgresql,
        Group::Pgbackrest,
    ];

    /// What `--timing` calls the source.
    fn label(self) -> String {
        match self {
            Group::Core(part) => format!("{part:?}").to_lowercase(),
            Group::Agent => "agent".into(),
            Group::Postgresql => "postgresql".into(),
            Group::Pgbackrest => "pgbackrest".into(),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Group::Core(part) => part.names(),
            Group::Agent => &["agent"],
            Group::Postgresql => &["postgresql"],
            Group::Pgbackrest => &["pgbackrest"],
        }
    }

    /// The group that produces the top-level fact `name`, if any (others
    /// come from facts.d, `FACTER_` variables or the agent's cluster facts).
    fn of(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.names().contains(&name))
    }

    fn collect(self, opts: &FactOptions) -> Map<String, Value> {
        match self {
            Group::Core(part) => self::core::collect_part(part),
            Group::Agent => {
                let exe = std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                Map::from_iter([(
                    "agent".to_string(),
                    serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "path": exe}),
                )])
            }
            Group::Postgresql => postgresql::collect().unwrap_or_default(),
            Group::Pgbackrest => crate::pgbackrest::facts(opts.root.as_deref()),
        }
    }
}

/// Which top-level facts a consumer may read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Demand {
    /// Names, possibly none.
    Names(BTreeSet<String>),
    /// Anything (a template that walks the whole `facts` object, say).
    #[default]
    All,
}

impl Demand {
    pub fn none() -> Demand {
        Demand::Names(Default::default())
    }

    pub fn add(&mut self, name: &str) {
        if let Demand::Names(names) = self {
            names.insert(name.to_string());
        }
    }

    pub fn merge(&mut self, other: Demand) {
        match (&mut *self, other) {
            (Demand::All, _) => {}
            (_, Demand::All) => *self = Demand::All,
            (Demand::Names(mine), Demand::Names(theirs)) => mine.extend(theirs),
        }
    }
}

/// Facts computed by the agent itself on top of every source, only when a
/// consumer names one of them: `db_master` & co, whose probe of the
/// cluster costs a network round trip (seconds, when a node hangs) that a
/// catalog which never names them must not pay.
pub trait LateSource: Send + Sync {
    /// The top-level facts it produces.
    fn names(&self) -> &'static [&'static str];
    /// Computes them. Called at most once per [`Facts`], without its lock
    /// held: the source may read other facts (its Hiera scope does).
    fn collect(&self) -> Map<String, Value>;
}

/// The facts of one run, collected a group at a time when first asked for
/// (Facter's slowness is its users' first complaint, and a run whose
/// manifests and Hiera data name no fact should not read /proc for
/// postmasters or ask NSS who it runs as). Asking for a top-level name
/// collects the group that produces it; a name no group produces (an
/// external or cluster fact) collects none. External facts and `FACTER_`
/// overrides are read at the first question and always apply, so what a
/// name resolves to is what [`collect`] would give for it.
pub struct Facts {
    opts: FactOptions,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    groups: BTreeMap<Group, Map<String, Value>>,
    /// facts.d, read at the first question.
    external: Option<Map<String, Value>>,
    /// The facts.d files that failed (bad YAML, a script's exit 3), each
    /// naming its file.
    external_errors: Vec<String>,
    /// How long each source took, in the order they were read.
    timings: Vec<(String, Duration)>,
    /// Facts the agent adds on top (`db_master` & co).
    extra: Map<String, Value>,
    /// Sources asked only when one of their names is (the cluster facts,
    /// the Redis facts: each costs a network probe); each is taken when it
    /// runs, so it runs once.
    late: Vec<Arc<dyn LateSource>>,
    /// Everything above merged; rebuilt when a source is added.
    view: Arc<Value>,
}

impl Facts {
    pub fn new(opts: FactOptions) -> Facts {
        Facts {
            opts,
            inner: Mutex::new(Inner {
                view: Arc::new(Value::Object(Map::new())),
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the facts `demand` names are collected; returns every
    /// fact collected so far.
    pub fn demand(&self, demand: &Demand) -> Arc<Value> {
        let late: Vec<Arc<dyn LateSource>> = {
            let mut inner = self.lock();
            self.collect_groups(&mut inner, demand);
            let wants = |l: &Arc<dyn LateSource>| match demand {
                Demand::All => true,
                Demand::Names(names) => l.names().iter().any(|n| names.contains(*n)),
            };
            if !inner.late.iter().any(wants) {
                return inner.view.clone();
            }
            let (take, keep) = std::mem::take(&mut inner.late)
                .into_iter()
                .partition(|l| wants(l));
            inner.late = keep;
            take
        };
        // Unlocked: the sources read facts through this same object.
        for late in late {
            let started = Instant::now();
            let facts = late.collect();
            tracing::debug!(elapsed = ?started.elapsed(), "late facts collected");
            let label = late.names().join(", ");
            self.lock().timings.push((label, started.elapsed()));
            self.extend(facts);
        }
        self.lock().view.clone()
    }

    /// Collects the groups `demand` names that are not yet collected (and
    /// the external facts at the first question).
    fn collect_groups(&self, inner: &mut Inner, demand: &Demand) {
        let wanted: Vec<Group> = match demand {
            Demand::All => Group::ALL.to_vec(),
            Demand::Names(names) if names.is_empty() => vec![],
            // A legacy name (`ipaddress_eth0`) collects the group of the
            // structured fact it is read from.
            Demand::Names(names) => names
                .iter()
                .filter_map(|n| Group::of(n).or_else(|| legacy::source(n).and_then(Group::of)))
                .collect(),
        };
        let missing: Vec<Group> = wanted
            .into_iter()
            .filter(|g| !inner.groups.contains_key(g))
            .collect();
        let first = inner.external.is_none() && *demand != Demand::none();
        if !missing.is_empty() || first {
            let started = Instant::now();
            for g in missing {
                let t = Instant::now();
                let facts = g.collect(&self.opts);
                inner.timings.push((g.label(), t.elapsed()));
                inner.groups.insert(g, facts);
            }
            if inner.external.is_none() {
                if self.opts.external {
                    let t = Instant::now();
                    let runner = resources::runner::Runner::default();
                    let ext = external::load(&self.opts.facts_dir, self.opts.exec_timeout, &runner);
                    let label = format!("external ({})", self.opts.facts_dir.display());
                    inner.timings.push((label, t.elapsed()));
                    inner.external = Some(ext.facts);
                    inner.external_errors = ext.warnings;
                } else {
                    inner.external = Some(Map::new());
                }
            }
            rebuild(inner);
            tracing::debug!(elapsed = ?started.elapsed(), groups = inner.groups.len(), "facts collected");
        }
    }

    /// The external facts files that failed to load, each line naming its
    /// file (empty until the facts directory is read).
    pub fn external_errors(&self) -> Vec<String> {
        self.lock().external_errors.clone()
    }

    /// Each source read so far and how long it took (`agent facts
    /// --timing`).
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.lock().timings.clone()
    }

    /// Registers a source of late facts (see [`LateSource`]), beside any
    /// registered before.
    pub fn set_late(&self, source: Arc<dyn LateSource>) {
        self.lock().late.push(source);
    }

    /// Every fact.
    pub fn all(&self) -> Arc<Value> {
        self.demand(&Demand::All)
    }

    /// The top-level fact `name` (collecting its group if need be).
    pub fn get(&self, name: &str) -> Option<Value> {
        let mut d = Demand::none();
        d.add(name);
        self.demand(&d).get(name).cloned()
    }

    /// Adds facts on top of every source (the cluster facts).
    pub fn extend(&self, facts: Map<String, Value>) {
        let mut inner = self.lock();
        inner.extra.extend(facts);
        rebuild(&mut inner);
    }
}

impl resources::core::FactSource for Facts {
    fn fact(&self, name: &str) -> Option<Value> {
        self.get(name)
    }
}

/// Merges the sources in precedence order: groups, facts.d, `FACTER_`
/// variables, then the agent's own additions.
fn rebuild(inner: &mut Inner) {
    let mut facts = Value::Object(Map::new());
    for source in inner.groups.values() {
        merge_top_level(&mut facts, source.clone());
    }
    // Legacy names from the structured facts collected so far (a name a
    // group already produced is kept as it is).
    let derived = legacy::derive(as_object_mut(&mut facts));
    let map = as_object_mut(&mut facts);
    for (name, value) in derived {
        map.entry(name).or_insert(value);
    }
    if let Some(ext) = &inner.external {
        merge_top_level(&mut facts, ext.clone());
    }
    apply_env_overrides(&mut facts, env_pairs());
    merge_top_level(&mut facts, inner.extra.clone());
    inner.view = Arc::new(facts);
}

/// The process environment as UTF-8 pairs (non-UTF-8 variables cannot name
/// a fact and are skipped rather than panicking like `std::env::vars`).
fn env_pairs() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// Puts every entry of `source` into `facts`, replacing whole top-level
/// facts of the same name (Facter does not deep-merge fact sources).
pub fn merge_top_level(facts: &mut Value, source: Map<String, Value>) {
    let map = as_object_mut(facts);
    for (name, value) in source {
        map.insert(name, value);
    }
}

/// Applies Facter's `FACTER_<name>` overrides from `vars` (see the module
/// doc). Pure in its inputs so tests need not touch the process environment.
pub fn apply_env_overrides<I, K, V>(facts: &mut Value, vars: I)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    const PREFIX: &str = "FACTER_";
    for (key, value) in vars {
        let key = key.as_ref();
        let Some(prefix) = key.get(..PREFIX.len()) else {
            continue;
        };
        if !prefix.eq_ignore_ascii_case(PREFIX) || key.len() == PREFIX.len() {
            continue;
        }
        let name = key[PREFIX.len()..].to_lowercase();
        let value = Value::String(value.as_ref().to_string());
        // Resolve before inserting the flat name, so the lookup sees the
        // facts as they were and cannot match the fact we are about to add.
        let parts: Vec<&str> = name.split('_').collect();
        let nested = resolve(facts, &parts, "_").filter(|keys| keys.len() > 1);
        as_object_mut(facts).insert(name.clone(), value.clone());
        if let Some(keys) = nested {
            if let Some(slot) = walk_mut(facts, &keys) {
                *slot = value;
            }
        }
    }
}

/// A fact by dotted name (`os.release.major`).
pub fn get_path<'a>(facts: &'a Value, dotted: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = dotted.split('.').collect();
    let keys = resolve(facts, &parts, ".")?;
    keys.iter().try_fold(facts, |node, key| child(node, key))
}

/// Sets a fact by dotted name: the longest part of the name that already
/// exists is found as [`get_path`] finds it (so `eth0.100` stays one key),
/// and the missing objects below it are created.
pub fn set_path(facts: &mut Value, dotted: &str, value: Value) {
    let parts: Vec<&str> = dotted.split('.').collect();
    let (keys, rest) = (0..=parts.len())
        .rev()
        .find_map(|n| Some((resolve(facts, &parts[..n], ".")?, &parts[n..])))
        .expect("the empty prefix always resolves");
    let Some(mut node) = walk_mut(facts, &keys) else {
        return;
    };
    let Some((last, parents)) = rest.split_last() else {
        *node = value;
        return;
    };
    for part in parents {
        node = as_object_mut(node)
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    as_object_mut(node).insert(last.to_string(), value);
}

/// Every leaf fact with its dotted name, in name order. Arrays and empty
/// objects are leaves (their elements are not facts of their own).
pub fn flatten(facts: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, child, out);
                }
            }
            _ if prefix.is_empty() => {}
            _ => out.push((prefix.to_string(), value.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", facts, &mut out);
    out
}

/// The real keys that `parts` (a name split on `sep`) names below `node`.
/// A key may itself contain `sep` (`total_bytes` when `sep` is `_`, an
/// interface `eth0.100` when it is `.`): shorter keys are tried first.
fn resolve(node: &Value, parts: &[&str], sep: &str) -> Option<Vec<String>> {
    let Some(first) = parts.first() else {
        return Some(Vec::new());
    };
    match node {
        Value::Object(map) => (1..=parts.len()).find_map(|n| {
            let key = parts[..n].join(sep);
            let mut rest = resolve(map.get(&key)?, &parts[n..], sep)?;
            rest.insert(0, key);
            Some(rest)
        }),
        Value::Array(items) => {
            let mut rest = resolve(items.get(first.parse::<usize>().ok()?)?, &parts[1..], sep)?;
            rest.insert(0, first.to_string());
            Some(rest)
        }
        _ => None,
    }
}

fn child<'a>(node: &'a Value, key: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(key),
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    }
}

fn walk_mut<'a>(node: &'a mut Value, keys: &[String]) -> Option<&'a mut Value> {
    keys.iter().try_fold(node, |node, key| match node {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => items.get_mut(key.parse::<usize>().ok()?),
        _ => None,
    })
}

/// `node` as an object, turning any other value into an empty object first
/// (a fact path being created through a scalar replaces that scalar).
fn as_object_mut(node: &mut Value) -> &mut Map<String, Value> {
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    match node {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "os": {"family": "Debian", "release": {"major": "12", "full": "12.7"}},
            "memory": {"system": {"total_bytes": 1024}},
            "system_uptime": {"seconds": 5},
            "networking": {"interfaces": {"eth0.100": {"ip": "10.0.0.1"}, "eth0": {"ip": "10.0.0.2"}}},
            "processors": {"models": ["a", "b"]},
            "empty": {},
        })
    }

    /// A late source that counts how often it was asked.
    struct Counting {
        names: &'static [&'static str],
        asked: std::sync::atomic::AtomicUsize,
    }

    impl LateSource for Counting {
        fn names(&self) -> &'static [&'static str] {
            self.names
        }
        fn collect(&self) -> Map<String, Value> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Map::from_iter([(self.names[0].to_string(), json!("x"))])
        }
    }

    #[test]
    fn late_sources_run_only_when_one_of_their_names_is_asked_and_once() {
        let f = Facts::new(FactOptions {
            external: false,
            ..FactOptions::default()
        });
        let counting = |names| {
            Arc::new(Counting {
                names,
                asked: Default::default(),
            })
        };
        let (db, redis) = (counting(&["db_master"]), counting(&["redis_master"]));
        f.set_late(db.clone());
        f.set_late(redis.clone());
        let asked = |c: &Counting| c.asked.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(f.get("redis_master"), Some(json!("x")));
        assert_eq!((asked(&db), asked(&redis)), (0, 1), "only the one named");
        assert_eq!(f.get("redis_master"), Some(json!("x")));
        assert_eq!(f.get("db_master"), Some(json!("x")));
        assert_eq!((asked(&db), asked(&redis)), (1, 1), "each once");
    }

    #[test]
    fn get_path_handles_nesting_dots_in_keys_and_indexes() {
        let f = sample();
        assert_eq!(get_path(&f, "os.release.major"), Some(&json!("12")));
        assert_eq!(
            get_path(&f, "networking.interfaces.eth0.100.ip"),
            Some(&json!("10.0.0.1"))
        );
        assert_eq!(
            get_path(&f, "networking.interfaces.eth0.ip"),
            Some(&json!("10.0.0.2"))
        );
        assert_eq!(get_path(&f, "processors.models.1"), Some(&json!("b")));
        assert_eq!(get_path(&f, "processors.models.2"), None);
        assert_eq!(get_path(&f, "os.release.major.x"), None);
        assert_eq!(get_path(&f, "nope"), None);
        assert_eq!(get_path(&f, "os"), f.get("os"));
    }

    #[test]
    fn set_path_replaces_or_creates() {
        let mut f = sample();
        set_path(&mut f, "os.release.major", json!("13"));
        assert_eq!(get_path(&f, "os.release.major"), Some(&json!("13")));
        assert_eq!(
            get_path(&f, "os.release.full"),
            Some(&json!("12.7")),
            "siblings kept"
        );
        set_path(&mut f, "networking.interfaces.eth0.100.mtu", json!(1500));
        assert_eq!(
            f["networking"]["interfaces"]["eth0.100"]["mtu"],
            json!(1500)
        );
        set_path(&mut f, "a.b.c", json!(true));
        assert_eq!(f["a"]["b"]["c"], json!(true));
        set_path(&mut f, "os.family.sub", json!("x"));
        assert_eq!(
            f["os"]["family"],
            json!({"sub": "x"}),
            "a scalar on the way becomes an object"
        );
    }

    #[test]
    fn flatten_lists_leaves_in_order() {
        let flat = flatten(&sample());
        let names: Vec<&str> = flat.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "empty",
                "memory.system.total_bytes",
                "networking.interfaces.eth0.ip",
                "networking.interfaces.eth0.100.ip",
                "os.family",
                "os.release.full",
                "os.release.major",
                "processors.models",
                "system_uptime.seconds",
            ]
        );
        assert_eq!(flat[1].1, json!(1024));
        assert_eq!(flat[7].1, json!(["a", "b"]));
        for (name, value) in &flat {
            assert_eq!(get_path(&sample(), name), Some(value), "{name} round-trips");
        }
    }

    #[test]
    fn env_overrides_set_flat_and_nested_facts_as_strings() {
        let mut f = sample();
        let vars = [
            ("FACTER_os_family", "RedHat"),
            ("facter_Role", "db"),
            ("FACTER_memory_system_total_bytes", "2048"),
            ("FACTER_system_uptime_seconds", "true"),
            ("FACTER_", "ignored"),
            ("PATH", "/bin"),
            ("FACTERX_y", "no"),
        ];
        apply_env_overrides(&mut f, vars);
        assert_eq!(f["os_family"], json!("RedHat"));
        assert_eq!(f["os"]["family"], json!("RedHat"));
        assert_eq!(
            f["os"]["release"]["major"],
            json!("12"),
            "siblings untouched"
        );
        assert_eq!(
            f["role"],
            json!("db"),
            "name lower-cased, prefix case-insensitive"
        );
        assert_eq!(f["memory_system_total_bytes"], json!("2048"));
        assert_eq!(
            f["memory"]["system"]["total_bytes"],
            json!("2048"),
            "stays a string"
        );
        assert_eq!(f["system_uptime"]["seconds"], json!("true"));
        assert_eq!(f.get(""), None);
        assert_eq!(f.get("path"), None);
        assert_eq!(f.get("y"), None);
    }

    #[test]
    fn env_override_replaces_a_whole_top_level_fact() {
        let mut f = sample();
        apply_env_overrides(&mut f, [("FACTER_os", "custom")]);
        assert_eq!(f["os"], json!("custom"));
    }

    #[test]
    fn merge_replaces_top_level_facts_whole() {
        let mut f = sample();
        let mut ext = Map::new();
        ext.insert("os".into(), json!({"family": "Custom"}));
        ext.insert("role".into(), json!("db"));
        merge_top_level(&mut f, ext);
        assert_eq!(f["os"], json!({"family": "Custom"}));
        assert_eq!(f["role"], json!("db"));
    }

    #[test]
    fn each_group_produces_only_the_names_it_lists() {
        // A name missing from its group's list would never be collected
        // on demand: the run would see it absent where `collect` has it.
        for g in Group::ALL {
            for name in g.collect(&FactOptions::default()).keys() {
                assert_eq!(Group::of(name), Some(g), "{name} is produced by {g:?}");
            }
        }
        assert_eq!(Group::of("db_master"), None);
    }

    #[test]
    fn facts_are_collected_by_group_when_asked_for_and_agree_with_collect() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("site.yaml"), "site: dc1\nkernel: Custom\n").unwrap();
        let opts = FactOptions {
            facts_dir: dir.path().into(),
            exec_timeout: Duration::from_secs(1),
            external: true,
            root: None,
        };
        let all = collect(&opts).unwrap();
        let facts = Facts::new(opts);
        // Nothing asked: nothing read.
        let view0 = facts.demand(&Demand::none());
        assert_eq!(*view0, json!({}));
        // One name: its group, facts.d and nothing else.
        assert_eq!(facts.get("os"), all.get("os").cloned());
        let view = facts.demand(&Demand::none());
        assert!(!Arc::ptr_eq(&view, &view0), "rebuilt");
        assert_eq!(view["site"], json!("dc1"));
        assert_eq!(view["kernel"], json!("Custom"), "facts.d beats the core");
        assert!(view.get("networking").is_none() && view.get("identity").is_none());
        // A name no group produces collects nothing more.
        assert_eq!(facts.get("site"), Some(json!("dc1")));
        assert!(
            Arc::ptr_eq(&facts.demand(&Demand::none()), &view),
            "not rebuilt"
        );
        // Everything: the same as collect, and the agent's own facts on top.
        facts.extend(Map::from_iter([("db_master".to_string(), json!("a:1"))]));
        let mut want = all.clone();
        want["db_master"] = json!("a:1");
        let got = (*facts.all()).clone();
        // Only the clock-driven facts may differ between two collections.
        let strip = |mut v: Value| {
            for k in [
                "system_uptime",
                "memory",
                "memoryfree",
                "memoryfree_mb",
                "load_averages",
                "mountpoints",
            ] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        };
        assert_eq!(strip(got), strip(want));
    }

    #[test]
    fn collect_combines_core_and_external_facts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("role.yaml"), "role: db\nkernel: Custom\n").unwrap();
        let opts = FactOptions {
            facts_dir: dir.path().into(),
            exec_timeout: Duration::from_secs(1),
            external: true,
            root: None,
        };
        let facts = collect(&opts).unwrap();
        assert_eq!(facts["role"], json!("db"));
        assert_eq!(facts["kernel"], json!("Custom"), "external beats core");
        assert!(get_path(&facts, "os.family").is_some_and(Value::is_string));
        assert!(get_path(&facts, "memory.system.total_bytes").is_some_and(Value::is_u64));
    }
}
