//! Cluster event hooks, as plusmoin's triggers: executables in a hooks dir
//! run with a JSON event on stdin when the watched cluster changes. A hook
//! runs on its own thread with a timeout, so a slow or failing hook never
//! blocks convergence; its outcome is logged.
//!
//! A hook for trigger `T` is any executable file in the dir whose name is `T`
//! or starts with `T.` (`master_up`, `master_up.sh`, `master_up.10-page`...),
//! run in name order. Triggers: `agent_up`, `heartbeat`, `master_down`,
//! `master_up`, `slave_down`, `slave_up`; on a two-site standby cluster
//! also `dr_lag` and `dr_promoted` (documents of their own: see
//! [`super::dr`]).
//!
//! The document is plusmoin's (`cluster_id`, `trigger` — the node the event
//! is about —, `master`, `slaves`, `lost`, `clusterless`, node entries of
//! `host`, `port`, `cluster_id`, `is_slave`, `master_name`) with the agent's
//! fields beside it (`event` — the trigger's name —, `cluster`, `reason`,
//! `db_master`, `split_brain`...).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use resources::runner::{Cmd, Runner};
use serde::Serialize;

use crate::failover::status::{ClusterStatus, Lost, Status};

/// A node as hooks see it: plusmoin's node entry (`host`, `port`,
/// `cluster_id`, `is_slave`, `master_name`) and ours (`host_port`, and the
/// `reason` of a lost or clusterless node, the lag of a slave).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeEntry {
    pub host: String,
    pub port: u16,
    pub cluster_id: usize,
    pub is_slave: bool,
    /// The master of its cluster (`host:port`), if known.
    pub master_name: Option<String>,
    pub host_port: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
}

/// One event, sent as JSON on the hook's stdin: plusmoin's trigger
/// document (`cluster_id`, `trigger`, `master`, `slaves`, `lost`,
/// `clusterless`), so a trigger written for plusmoin reads it unchanged,
/// and the agent's fields beside it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The cluster's position among the clusters (by name), from 0.
    pub cluster_id: usize,
    /// plusmoin's `trigger`: the node the event is about (the master that
    /// went down...), or null.
    pub trigger: Option<NodeEntry>,
    pub master: Option<NodeEntry>,
    pub slaves: Vec<NodeEntry>,
    /// Nodes of the cluster that are down or too far behind, with the reason.
    pub lost: Vec<NodeEntry>,
    /// Nodes that answer but follow no node of their cluster.
    pub clusterless: Vec<NodeEntry>,
    /// Cluster name.
    pub cluster: String,
    /// The trigger's name: agent_up, heartbeat, master_down, master_up,
    /// slave_down, slave_up.
    pub event: String,
    /// The same node as `trigger`.
    pub node: Option<NodeEntry>,
    /// Why the event fired, in words.
    pub reason: String,
    pub db_master: Option<String>,
    pub split_brain: bool,
    /// The node running the agent.
    pub agent_node: String,
    /// RFC 3339.
    pub time: String,
}

fn split(label: &str) -> (String, u16) {
    match label.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(5432)),
        None => (label.to_string(), 5432),
    }
}

fn entry(label: &str, id: usize, is_slave: bool, master: Option<&str>) -> NodeEntry {
    let (host, port) = split(label);
    NodeEntry {
        host,
        port,
        cluster_id: id,
        is_slave,
        master_name: master.map(String::from),
        host_port: label.to_string(),
        reason: None,
        lag_seconds: None,
        lag_bytes: None,
    }
}

fn lost_entry(l: &Lost, id: usize, master: Option<&str>) -> NodeEntry {
    NodeEntry {
        reason: Some(l.reason.clone()),
        ..entry(&l.host_port, id, false, master)
    }
}

fn why_gone(now: &ClusterStatus, clusterless: &[Lost], label: &str) -> String {
    if let Some(l) = now
        .lost
        .iter()
        .chain(clusterless)
        .find(|l| l.host_port == label)
    {
        return format!("{label}: {}", l.reason);
    }
    if now.slaves.iter().any(|s| s.host_port == label) {
        return format!("{label} is now a standby");
    }
    format!("{label} no longer answers as primary")
}

/// The events of one cluster between two of its states (pure):
/// (trigger, node, reason).
pub fn diff(
    prev: &ClusterStatus,
    now: &ClusterStatus,
    clusterless: &[Lost],
) -> Vec<(String, String, String)> {
    let mut events = Vec::new();
    let prev_master = prev.master.as_ref().map(|m| m.host_port.as_str());
    let now_master = now.master.as_ref().map(|m| m.host_port.as_str());
    if let (Some(p), None) = (prev_master, now_master) {
        if !now.split_brain {
            events.push((
                "master_down".into(),
                p.to_string(),
                why_gone(now, clusterless, p),
            ));
        }
    }
    if let Some(m) = now_master {
        if prev_master != Some(m) {
            events.push((
                "master_up".into(),
                m.to_string(),
                format!("{m} is the new primary"),
            ));
        }
    }
    if now.split_brain && !prev.split_brain {
        let mut newcomers: Vec<&Lost> = now
            .lost
            .iter()
            .filter(|l| {
                l.reason.starts_with("split brain") && Some(l.host_port.as_str()) != prev_master
            })
            .collect();
        if newcomers.is_empty() {
            newcomers = now
                .lost
                .iter()
                .filter(|l| l.reason.starts_with("split brain"))
                .collect();
        }
        for l in newcomers {
            events.push((
                "master_up".into(),
                l.host_port.clone(),
                format!(
                    "{}; db_master is left unset and the application is not repointed",
                    l.reason
                ),
            ));
        }
    }
    for s in &prev.slaves {
        let label = s.host_port.as_str();
        if !now.slaves.iter().any(|x| x.host_port == label) && now_master != Some(label) {
            events.push((
                "slave_down".into(),
                label.to_string(),
                why_gone(now, clusterless, label),
            ));
        }
    }
    for s in &now.slaves {
        if !prev.slaves.iter().any(|x| x.host_port == s.host_port) {
            let lag = s
                .lag_seconds
                .map(|l| format!(" (lag {l:.1} s)"))
                .unwrap_or_default();
            events.push((
                "slave_up".into(),
                s.host_port.clone(),
                format!("{} is a slave in sync again{lag}", s.host_port),
            ));
        }
    }
    events
}

/// Builds the event document of cluster number `id` of `status`.
pub fn event(
    status: &Status,
    id: usize,
    agent_node: &str,
    trigger: &str,
    about: Option<&str>,
    reason: &str,
) -> Event {
    let empty = ClusterStatus::default();
    let c = status.clusters.get(id).unwrap_or(&empty);
    let master = c.master.as_ref().map(|m| m.host_port.as_str());
    let slaves: Vec<NodeEntry> = c
        .slaves
        .iter()
        .map(|s| NodeEntry {
            lag_seconds: s.lag_seconds,
            lag_bytes: s.lag_bytes,
            ..entry(&s.host_port, id, true, master)
        })
        .collect();
    let lost: Vec<NodeEntry> = c.lost.iter().map(|l| lost_entry(l, id, master)).collect();
    let clusterless: Vec<NodeEntry> = status
        .clusterless
        .iter()
        .map(|l| lost_entry(l, id, None))
        .collect();
    let about = about.map(|label| {
        slaves
            .iter()
            .chain(&lost)
            .chain(&clusterless)
            .find(|e| e.host_port == label)
            .cloned()
            .unwrap_or_else(|| entry(label, id, false, master))
    });
    Event {
        cluster_id: id,
        trigger: about.clone(),
        master: master.map(|m| entry(m, id, false, Some(m))),
        slaves,
        lost,
        clusterless,
        cluster: c.name.clone(),
        event: trigger.to_string(),
        node: about,
        reason: reason.to_string(),
        db_master: master.map(String::from),
        split_brain: c.split_brain,
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

    /// Runs the hooks of `ev.event` in the background; returns their threads.
    pub fn fire(&self, ev: &Event) -> Vec<JoinHandle<()>> {
        self.fire_doc(
            &ev.event,
            &serde_json::to_value(ev).expect("event serializes"),
        )
    }

    /// Runs the hooks of `trigger` with `doc` on their stdin, in the
    /// background (the two-site triggers, `dr_lag` and `dr_promoted`, have
    /// documents of their own); returns their threads.
    pub fn fire_doc(&self, trigger: &str, doc: &serde_json::Value) -> Vec<JoinHandle<()>> {
        let doc = serde_json::to_vec(doc).expect("a JSON value serializes");
        self.scripts(trigger)
            .into_iter()
            .map(|script| {
                let mut cmd = Cmd::new(&[script.display().to_string()]);
                cmd.stdin = Some(doc.clone());
                cmd.timeout = Some(self.timeout);
                cmd.env.push(("AGENT_TRIGGER".into(), trigger.to_string()));
                let trigger = trigger.to_string();
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
    use crate::failover::status::{Master, Slave};
    use serde_json::Value;

    fn cluster(m: Option<&str>, s: &[&str], lost: &[(&str, &str)]) -> ClusterStatus {
        ClusterStatus {
            name: "db".into(),
            master: m.map(|m| Master {
                host_port: m.into(),
            }),
            slaves: s
                .iter()
                .map(|x| Slave {
                    host_port: x.to_string(),
                    lag_seconds: Some(0.0),
                    lag_bytes: Some(0),
                })
                .collect(),
            lost: lost
                .iter()
                .map(|(h, r)| Lost {
                    host_port: h.to_string(),
                    reason: r.to_string(),
                })
                .collect(),
            split_brain: lost
                .iter()
                .filter(|(_, r)| r.starts_with("split brain"))
                .count()
                > 1,
        }
    }

    #[test]
    fn events_of_a_failover_and_a_split_brain() {
        let start = cluster(Some("a:1"), &["b:2"], &[]);
        let down = cluster(None, &["b:2"], &[("a:1", "connection refused")]);
        let e = diff(&start, &down, &[]);
        assert_eq!(
            e,
            vec![(
                "master_down".into(),
                "a:1".into(),
                "a:1: connection refused".into()
            )]
        );
        let promoted = cluster(Some("b:2"), &[], &[("a:1", "connection refused")]);
        let e = diff(&down, &promoted, &[]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "master_up");
        assert_eq!(e[0].1, "b:2");
        let why = "split brain: b:2 and a:1 all answer as primary";
        let split = cluster(None, &[], &[("a:1", why), ("b:2", why)]);
        let e = diff(&promoted, &split, &[]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0.as_str(), e[0].1.as_str()), ("master_up", "a:1"));
        assert!(e[0].2.contains("split brain"), "{}", e[0].2);
        let status = Status {
            clusters: vec![split],
            clusterless: vec![],
        };
        let ev = event(&status, 0, "n", "master_up", Some("a:1"), &e[0].2);
        assert!(ev.split_brain && ev.db_master.is_none() && ev.master.is_none());
        // A slave lost for its lag, and back.
        let lagging = cluster(Some("a:1"), &[], &[("b:2", "lag 3 s > 2 s")]);
        let e = diff(&start, &lagging, &[]);
        assert_eq!(
            e,
            vec![(
                "slave_down".into(),
                "b:2".into(),
                "b:2: lag 3 s > 2 s".into()
            )]
        );
        let e = diff(&lagging, &start, &[]);
        assert_eq!(e[0].0, "slave_up");
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
        let status = Status {
            clusters: vec![cluster(
                Some("b:2"),
                &["c:3"],
                &[("a:1", "connection refused")],
            )],
            clusterless: vec![Lost {
                host_port: "d:4".into(),
                reason: "follows x:9".into(),
            }],
        };
        let started = std::time::Instant::now();
        let threads = hooks.fire(&event(
            &status,
            0,
            "n",
            "master_up",
            Some("b:2"),
            "b:2 is the new primary",
        ));
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "fire returns at once"
        );
        for t in threads {
            t.join().unwrap();
        }
        let got: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(got["event"], "master_up");
        assert_eq!(got["trigger"]["host"], "b");
        assert_eq!(got["trigger"]["port"], 2);
        assert_eq!(got["node"]["host"], "b");
        assert_eq!(got["master"]["host"], "b");
        assert_eq!(got["master"]["master_name"], "b:2");
        assert_eq!(got["slaves"][0]["is_slave"], true);
        assert_eq!(got["slaves"][0]["master_name"], "b:2");
        assert_eq!(got["lost"][0]["host_port"], "a:1");
        assert_eq!(got["lost"][0]["host"], "a");
        assert_eq!(got["lost"][0]["reason"], "connection refused");
        assert_eq!(got["clusterless"][0]["port"], 4);
        assert_eq!(got["cluster"], "db");
        assert_eq!(got["cluster_id"], 0);
    }
}
