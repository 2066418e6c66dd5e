//! Cluster event hooks, as plusmoin's triggers: executables in a hooks dir
//! run with a JSON event on stdin when the watched cluster changes. A hook
//! runs on its own thread with a timeout, so a slow or failing hook never
//! blocks convergence; its outcome is logged.
//!
//! A hook for trigger `T` is any executable file in the dir whose name is `T`
//! or starts with `T.` (`master_up`, `master_up.sh`, `master_up.10-page`...),
//! run in name order. Triggers: `agent_up`, `heartbeat`, `master_down`,
//! `master_up`, `slave_down`, `slave_up`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use resources::runner::{Cmd, Runner};
use serde::Serialize;
use serde_json::{json, Value};

/// A node as hooks see it (plusmoin's node entry).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeEntry {
    pub host: String,
    pub port: u16,
    pub is_slave: bool,
    /// The primary this node follows (the current `db_master`), if known.
    pub master_name: Option<String>,
}

/// One event, sent as JSON on the hook's stdin.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Cluster name (`db_cluster::name`, default `db`).
    pub cluster: String,
    pub trigger: String,
    /// The node the event is about (the master that went down...).
    pub node: Option<NodeEntry>,
    pub master: Option<NodeEntry>,
    pub slaves: Vec<NodeEntry>,
    /// Nodes that did not answer, with the reason.
    pub lost: Vec<Value>,
    /// Why the event fired, in words.
    pub reason: String,
    pub db_master: Option<String>,
    pub split_brain: bool,
    /// The node running the agent.
    pub agent_node: String,
    /// RFC 3339.
    pub time: String,
}

/// The cluster as the `db_cluster` fact describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    pub primaries: Vec<String>,
    pub standbys: Vec<String>,
    /// label → reason
    pub unreachable: Vec<(String, String)>,
}

impl ClusterView {
    /// Reads the `db_cluster` fact.
    pub fn from_facts(facts: &Value) -> Option<ClusterView> {
        let c = facts.get("db_cluster")?;
        let list = |k: &str| -> Vec<String> {
            c.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let unreachable = c
            .get("unreachable")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Some(ClusterView {
            primaries: list("primaries"),
            standbys: list("standbys"),
            unreachable,
        })
    }

    fn why_gone(&self, label: &str) -> String {
        match self.unreachable.iter().find(|(l, _)| l == label) {
            Some((_, why)) => format!("{label} is unreachable: {why}"),
            None if self.standbys.iter().any(|s| s == label) => format!("{label} is now a standby"),
            None => format!("{label} no longer answers as primary"),
        }
    }
}

fn entry(label: &str, is_slave: bool, master: Option<&str>) -> NodeEntry {
    let (host, port) = match label.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(5432)),
        None => (label.to_string(), 5432),
    };
    NodeEntry {
        host,
        port,
        is_slave,
        master_name: master.map(String::from),
    }
}

/// The events between two views of the cluster (pure).
pub fn diff(prev: &ClusterView, now: &ClusterView) -> Vec<(String, String, String)> {
    let mut events = Vec::new(); // (trigger, node label, reason)
    for p in &prev.primaries {
        if !now.primaries.contains(p) && now.primaries.is_empty() {
            events.push(("master_down".into(), p.clone(), now.why_gone(p)));
        }
    }
    for p in &now.primaries {
        if !prev.primaries.contains(p) {
            let reason = if now.primaries.len() > 1 {
                format!(
                    "split brain: {} all answer as primary; db_master is left unset and the application is not repointed",
                    now.primaries.join(" and ")
                )
            } else {
                format!("{p} is the new primary")
            };
            events.push(("master_up".into(), p.clone(), reason));
        }
    }
    for s in &prev.standbys {
        if !now.standbys.contains(s) && !now.primaries.contains(s) {
            events.push(("slave_down".into(), s.clone(), now.why_gone(s)));
        }
    }
    for s in &now.standbys {
        if !prev.standbys.contains(s) {
            events.push((
                "slave_up".into(),
                s.clone(),
                format!("{s} is a standby again"),
            ));
        }
    }
    events
}

/// Builds the event document.
pub fn event(
    cluster: &str,
    agent_node: &str,
    trigger: &str,
    about: Option<&str>,
    reason: &str,
    view: &ClusterView,
) -> Event {
    let master = if view.primaries.len() == 1 {
        Some(view.primaries[0].as_str())
    } else {
        None
    };
    Event {
        cluster: cluster.to_string(),
        trigger: trigger.to_string(),
        node: about.map(|l| entry(l, view.standbys.iter().any(|s| s == l), master)),
        master: master.map(|m| entry(m, false, None)),
        slaves: view
            .standbys
            .iter()
            .map(|s| entry(s, true, master))
            .collect(),
        lost: view
            .unreachable
            .iter()
            .map(|(l, why)| json!({"host_port": l, "reason": why}))
            .collect(),
        reason: reason.to_string(),
        db_master: master.map(String::from),
        split_brain: view.primaries.len() > 1,
        agent_node: agent_node.to_string(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// The hooks of a dir.
#[derive(Debug, Clone)]
pub struct Hooks {
    pub dir: PathBuf,
    pub timeout: Duration,
}

impl Hooks {
    /// Executables for `trigger`, in name order.
    pub fn scripts(&self, trigger: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name == trigger || name.starts_with(&format!("{trigger}."))
            })
            .filter(|e| {
                e.metadata()
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }

    /// Runs the hooks of `ev.trigger` in the background; returns their threads.
    pub fn fire(&self, ev: &Event) -> Vec<JoinHandle<()>> {
        let doc = serde_json::to_vec(ev).expect("event serializes");
        self.scripts(&ev.trigger)
            .into_iter()
            .map(|script| {
                let mut cmd = Cmd::new(&[script.display().to_string()]);
                cmd.stdin = Some(doc.clone());
                cmd.timeout = Some(self.timeout);
                cmd.env.push(("AGENT_TRIGGER".into(), ev.trigger.clone()));
                let trigger = ev.trigger.clone();
                std::thread::spawn(move || run_hook(&script, &trigger, &cmd))
            })
            .collect()
    }
}

fn run_hook(script: &Path, trigger: &str, cmd: &Cmd) {
    match Runner::default().run(cmd) {
        Ok(_) => tracing::info!(hook = %script.display(), trigger, "hook ran"),
        Err(e) => tracing::warn!(hook = %script.display(), trigger, "hook failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(p: &[&str], s: &[&str], u: &[&str]) -> ClusterView {
        ClusterView {
            primaries: p.iter().map(|x| x.to_string()).collect(),
            standbys: s.iter().map(|x| x.to_string()).collect(),
            unreachable: u
                .iter()
                .map(|x| (x.to_string(), "connection refused".to_string()))
                .collect(),
        }
    }

    #[test]
    fn events_of_a_failover_and_a_split_brain() {
        let start = view(&["a:1"], &["b:2"], &[]);
        let down = view(&[], &["b:2"], &["a:1"]);
        let e = diff(&start, &down);
        assert_eq!(
            e,
            vec![(
                "master_down".into(),
                "a:1".into(),
                "a:1 is unreachable: connection refused".into()
            )]
        );
        let promoted = view(&["b:2"], &[], &["a:1"]);
        let e = diff(&down, &promoted);
        assert_eq!(e[0].0, "master_up");
        assert_eq!(e[0].1, "b:2");
        let split = view(&["b:2", "a:1"], &[], &[]);
        let e = diff(&promoted, &split);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "master_up");
        assert!(e[0].2.contains("split brain"), "{}", e[0].2);
        let ev = event("db", "n", "master_up", Some("a:1"), &e[0].2, &split);
        assert!(ev.split_brain && ev.db_master.is_none() && ev.master.is_none());
    }

    #[test]
    fn hooks_get_the_json_and_a_slow_one_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got.json");
        let write = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write("master_up.record", &format!("cat > {}", out.display()));
        write("master_up.slow", "sleep 5");
        write("master_down", "exit 1");
        std::fs::write(dir.path().join("master_up.notexec"), "x").unwrap();
        let hooks = Hooks {
            dir: dir.path().to_path_buf(),
            timeout: Duration::from_millis(300),
        };
        assert_eq!(hooks.scripts("master_up").len(), 2);
        let v = view(&["b:2"], &[], &["a:1"]);
        let started = std::time::Instant::now();
        let threads = hooks.fire(&event(
            "db",
            "n",
            "master_up",
            Some("b:2"),
            "b:2 is the new primary",
            &v,
        ));
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "fire returns at once"
        );
        for t in threads {
            t.join().unwrap();
        }
        let got: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(got["trigger"], "master_up");
        assert_eq!(got["node"]["host"], "b");
        assert_eq!(got["node"]["port"], 2);
        assert_eq!(got["master"]["host"], "b");
        assert_eq!(got["lost"][0]["host_port"], "a:1");
        assert_eq!(got["cluster"], "db");
    }
}
