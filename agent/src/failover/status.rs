//! The state of the clusters as plusmoin tracks it: per cluster its master,
//! its slaves in sync (with their lag), its lost nodes (down, or too far
//! behind, with the reason) and whether two primaries split it; and the
//! clusterless nodes (they answer but follow no node of their cluster).
//! [`classify`] is pure: probes + memory in, status out. The memory holds
//! what one probe cannot tell: the hysteresis of each slave's lag and the
//! node each slave last streamed from.
//!
//! The JSON of [`Status`] is `agent cluster status --json`'s schema, field
//! for field.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::failover::clusters::ClusterConfig;
use crate::failover::dbmaster::Target;
use crate::failover::probe::NodeProbe;

/// Every cluster and the nodes that belong to none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub clusters: Vec<ClusterStatus>,
    pub clusterless: Vec<Lost>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    pub master: Option<Master>,
    pub slaves: Vec<Slave>,
    pub lost: Vec<Lost>,
    pub split_brain: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Master {
    pub host_port: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slave {
    pub host_port: String,
    /// The master's heartbeat minus this slave's copy (null: no heartbeat
    /// to compare yet).
    pub lag_seconds: Option<f64>,
    /// The master's WAL position minus this slave's replayed one.
    pub lag_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lost {
    pub host_port: String,
    pub reason: String,
}

impl Status {
    /// Every cluster has a master (`agent cluster status` exits 0).
    pub fn all_have_a_master(&self) -> bool {
        self.clusters.iter().all(|c| c.master.is_some())
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterStatus> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The table `agent cluster status` prints for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:<11} {:<24} {:>9} {:>12}  reason",
            "cluster", "role", "node", "lag (s)", "lag (bytes)"
        );
        let num = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        for c in &self.clusters {
            match &c.master {
                Some(m) => {
                    let _ = writeln!(
                        s,
                        "{:<12} {:<11} {:<24} {:>9} {:>12}",
                        c.name, "master", m.host_port, "", ""
                    );
                }
                None => {
                    let why = if c.split_brain {
                        "split brain: two primaries"
                    } else {
                        "no master"
                    };
                    let _ = writeln!(
                        s,
                        "{:<12} {:<11} {:<24} {:>9} {:>12}  {why}",
                        c.name, "master", "-", "", ""
                    );
                }
            }
            for sl in &c.slaves {
                let bytes = sl
                    .lag_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    s,
                    "{:<12} {:<11} {:<24} {:>9} {:>12}",
                    c.name,
                    "slave",
                    sl.host_port,
                    num(sl.lag_seconds),
                    bytes
                );
            }
            for l in &c.lost {
                let _ = writeln!(
                    s,
                    "{:<12} {:<11} {:<24} {:>9} {:>12}  {}",
                    c.name, "lost", l.host_port, "", "", l.reason
                );
            }
        }
        for l in &self.clusterless {
            let _ = writeln!(
                s,
                "{:<12} {:<11} {:<24} {:>9} {:>12}  {}",
                "-", "clusterless", l.host_port, "", "", l.reason
            );
        }
        s
    }
}

/// What the watcher remembers between probes (persisted with the status).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// `cluster/host:port` → the hysteresis of that slave's lag.
    #[serde(default)]
    pub lag: BTreeMap<String, LagState>,
    /// `cluster/host:port` → the node of the cluster it last streamed from.
    #[serde(default)]
    pub follows: BTreeMap<String, String>,
    /// cluster → the first heartbeat seen on its master (epoch seconds): a
    /// slave that has not replayed any heartbeat yet is behind by at least
    /// the time since.
    #[serde(default)]
    pub first_beat: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagState {
    /// Lost for its lag.
    pub lost: bool,
    /// Since when (epoch seconds) its lag has been under recover_sync_delay.
    pub under_since: Option<f64>,
}

/// `2`, `0.5`, `120` (seconds, as people read them).
fn secs(d: f64) -> String {
    let t = format!("{d:.1}");
    t.strip_suffix(".0").map(str::to_string).unwrap_or(t)
}

fn same_node(t: &Target, host: &str, port: u16) -> bool {
    t.port == port && t.host.eq_ignore_ascii_case(host)
}

/// The status of one cluster from its probes (in the order of its nodes),
/// `now` in epoch seconds; its clusterless nodes go to `clusterless`.
pub fn classify(
    cfg: &ClusterConfig,
    probes: &[NodeProbe],
    mem: &mut Memory,
    now: f64,
    clusterless: &mut Vec<Lost>,
) -> ClusterStatus {
    let mut st = ClusterStatus {
        name: cfg.name.clone(),
        ..Default::default()
    };
    let primaries: Vec<usize> = probes
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Ok(i) if !i.in_recovery))
        .map(|(i, _)| i)
        .collect();
    let master = match primaries.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    st.split_brain = primaries.len() > 1;
    let split_reason = format!(
        "split brain: {} all answer as primary",
        primaries
            .iter()
            .map(|&i| cfg.nodes[i].label())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    st.master = master.map(|i| Master {
        host_port: cfg.nodes[i].label(),
    });
    let master_info = master.and_then(|i| probes[i].as_ref().ok());
    let master_beat = master_info.and_then(|m| m.heartbeat);
    let first_beat = master_beat.map(|b| *mem.first_beat.entry(cfg.name.clone()).or_insert(b));
    for (t, p) in cfg.nodes.iter().zip(probes) {
        let label = t.label();
        let key = format!("{}/{label}", cfg.name);
        let info = match p {
            Err(why) => {
                st.lost.push(Lost {
                    host_port: label,
                    reason: why.clone(),
                });
                continue;
            }
            Ok(info) => info,
        };
        if !info.in_recovery {
            if st.split_brain {
                st.lost.push(Lost {
                    host_port: label,
                    reason: split_reason.clone(),
                });
            }
            mem.lag.remove(&key);
            mem.follows.remove(&key);
            continue;
        }
        // A standby: which node of the cluster does it stream from?
        let follows = match &info.sender {
            Some((h, port)) => match cfg.nodes.iter().find(|n| same_node(n, h, *port)) {
                Some(n) if n.label() != label => Some(n.label()),
                _ => {
                    mem.follows.remove(&key);
                    clusterless.push(Lost {
                        host_port: label,
                        reason: format!(
                            "follows {h}:{port}, which is not a node of cluster {}",
                            cfg.name
                        ),
                    });
                    continue;
                }
            },
            // Not streaming right now (its master is gone, or restarting):
            // a slave leaves its cluster only when it follows another.
            None => mem.follows.get(&key).cloned(),
        };
        let Some(follows) = follows else {
            clusterless.push(Lost {
                host_port: label,
                reason: format!("follows no node of cluster {} (no WAL receiver)", cfg.name),
            });
            continue;
        };
        mem.follows.insert(key.clone(), follows);
        let lag_seconds = match (master_beat, info.heartbeat, first_beat) {
            (Some(m), Some(s), _) => Some(((m - s).max(0.0) * 1000.0).round() / 1000.0),
            // No heartbeat replayed here yet, while the master has had one
            // since `first`: behind by at least that much.
            (Some(m), None, Some(first)) if m > first => {
                Some(((m - first) * 1000.0).round() / 1000.0)
            }
            _ => None,
        };
        let lag_bytes = match (master_info.and_then(|m| m.lsn), info.lsn) {
            (Some(m), Some(s)) => Some(m.saturating_sub(s)),
            _ => None,
        };
        let lag = lag_seconds.unwrap_or(0.0);
        let (max, recover, beat) = (
            cfg.max_sync_delay.as_secs_f64(),
            cfg.recover_sync_delay.as_secs_f64(),
            cfg.heartbeat.as_secs_f64(),
        );
        let state = mem.lag.entry(key).or_default();
        if !state.lost && lag > max {
            state.lost = true;
            state.under_since = None;
        } else if state.lost {
            if lag <= recover {
                let since = *state.under_since.get_or_insert(now);
                if now - since >= beat {
                    state.lost = false;
                    state.under_since = None;
                }
            } else {
                state.under_since = None;
            }
        }
        if state.lost {
            let reason = if lag > max {
                format!(
                    "lag {} s > {} s",
                    secs((lag * 10.0).ceil() / 10.0),
                    secs(max)
                )
            } else {
                format!(
                    "lag {} s: back once under {} s for a heartbeat ({} s)",
                    secs(lag),
                    secs(recover),
                    secs(beat)
                )
            };
            st.lost.push(Lost {
                host_port: label,
                reason,
            });
        } else {
            st.slaves.push(Slave {
                host_port: label,
                lag_seconds,
                lag_bytes,
            });
        }
    }
    st
}

/// The status of every cluster.
pub fn classify_all(
    clusters: &[ClusterConfig],
    probes: &[Vec<NodeProbe>],
    mem: &mut Memory,
    now: f64,
) -> Status {
    let mut clusterless = Vec::new();
    let clusters = clusters
        .iter()
        .zip(probes)
        .map(|(c, p)| classify(c, p, mem, now, &mut clusterless))
        .collect();
    Status {
        clusters,
        clusterless,
    }
}

/// Seconds since the epoch, now.
pub fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::probe::NodeInfo;
    use serde_json::json;
    use std::time::Duration;

    fn cfg() -> ClusterConfig {
        let nodes = ["m:1", "s:2", "t:3"]
            .iter()
            .map(|s| Target::parse(&json!(s)).unwrap())
            .collect();
        let mut c = ClusterConfig::new("db", nodes);
        c.max_sync_delay = Duration::from_secs(10);
        c.recover_sync_delay = Duration::from_secs(5);
        c.heartbeat = Duration::from_secs(2);
        c
    }

    fn master(hb: f64) -> NodeProbe {
        Ok(NodeInfo {
            in_recovery: false,
            sender: None,
            lsn: Some(1000),
            heartbeat: Some(hb),
        })
    }

    fn slave(of: &str, hb: f64) -> NodeProbe {
        let (h, p) = of.split_once(':').unwrap();
        Ok(NodeInfo {
            in_recovery: true,
            sender: Some((h.into(), p.parse().unwrap())),
            lsn: Some(900),
            heartbeat: Some(hb),
        })
    }

    fn run(c: &ClusterConfig, p: &[NodeProbe], mem: &mut Memory, now: f64) -> Status {
        classify_all(std::slice::from_ref(c), &[p.to_vec()], mem, now)
    }

    #[test]
    fn lag_hysteresis_does_not_flap_at_the_limit() {
        let c = cfg();
        let mut mem = Memory::default();
        let s = run(
            &c,
            &[master(100.0), slave("m:1", 100.0), slave("m:1", 100.0)],
            &mut mem,
            100.0,
        );
        assert_eq!(s.cluster("db").unwrap().slaves.len(), 2);
        assert_eq!(s.cluster("db").unwrap().slaves[0].lag_bytes, Some(100));
        // Past max_sync_delay: lost, with the reason.
        let s = run(
            &c,
            &[master(113.0), slave("m:1", 100.0), slave("m:1", 113.0)],
            &mut mem,
            113.0,
        );
        let db = s.cluster("db").unwrap();
        assert_eq!(
            db.lost,
            vec![Lost {
                host_port: "s:2".into(),
                reason: "lag 13 s > 10 s".into()
            }]
        );
        // Hovering between the two limits: still lost.
        for now in [114.0, 115.0, 116.0] {
            let s = run(
                &c,
                &[master(now), slave("m:1", now - 9.0), slave("m:1", now)],
                &mut mem,
                now,
            );
            assert_eq!(s.cluster("db").unwrap().lost.len(), 1, "at {now}");
        }
        // Under recover_sync_delay, but not for a heartbeat yet.
        let s = run(
            &c,
            &[master(120.0), slave("m:1", 119.0), slave("m:1", 120.0)],
            &mut mem,
            120.0,
        );
        assert!(s.cluster("db").unwrap().lost[0]
            .reason
            .contains("back once under 5 s"));
        let s = run(
            &c,
            &[master(122.0), slave("m:1", 121.0), slave("m:1", 122.0)],
            &mut mem,
            122.0,
        );
        assert!(s.cluster("db").unwrap().lost.is_empty(), "{s:?}");
        assert_eq!(s.cluster("db").unwrap().slaves.len(), 2);
    }

    #[test]
    fn a_slave_that_replayed_no_heartbeat_yet_is_behind_since_the_first() {
        let c = cfg();
        let mut mem = Memory::default();
        let none = |of: &str| {
            let mut s = slave(of, 0.0);
            if let Ok(i) = &mut s {
                i.heartbeat = None;
            }
            s
        };
        let s = run(
            &c,
            &[master(10.0), none("m:1"), slave("m:1", 10.0)],
            &mut mem,
            10.0,
        );
        assert_eq!(
            s.clusters[0].slaves[0].lag_seconds, None,
            "nothing to compare yet"
        );
        let s = run(
            &c,
            &[master(21.0), none("m:1"), slave("m:1", 21.0)],
            &mut mem,
            21.0,
        );
        assert_eq!(s.clusters[0].lost[0].reason, "lag 11 s > 10 s");
    }

    #[test]
    fn clusterless_split_brain_and_a_master_going_down() {
        let c = cfg();
        let mut mem = Memory::default();
        let s = run(
            &c,
            &[master(1.0), slave("m:1", 1.0), slave("elsewhere:9", 1.0)],
            &mut mem,
            1.0,
        );
        assert_eq!(s.clusterless.len(), 1);
        assert!(
            s.clusterless[0].reason.contains("follows elsewhere:9"),
            "{s:?}"
        );
        // The master goes down: its slave stays in the cluster (no receiver now).
        let gone = Ok(NodeInfo {
            in_recovery: true,
            sender: None,
            lsn: None,
            heartbeat: Some(1.0),
        });
        let s = run(
            &c,
            &[Err("connection refused".into()), gone.clone(), gone.clone()],
            &mut mem,
            2.0,
        );
        let db = s.cluster("db").unwrap();
        assert!(db.master.is_none() && !db.split_brain);
        assert_eq!(db.slaves.len(), 1);
        assert_eq!(db.slaves[0].lag_seconds, None);
        assert!(s.clusterless[0].reason.contains("no WAL receiver"));
        assert!(!s.all_have_a_master());
        let s = run(&c, &[master(3.0), master(3.0), gone], &mut mem, 3.0);
        let db = s.cluster("db").unwrap();
        assert!(db.split_brain && db.master.is_none());
        assert_eq!(db.lost.len(), 2);
        assert!(db.lost[0].reason.contains("m:1 and s:2"));
        let text = serde_json::to_value(&s).unwrap();
        assert_eq!(text["clusters"][0]["master"], serde_json::Value::Null);
        assert!(s.table().contains("split brain"));
    }
}
