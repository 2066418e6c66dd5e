//! `agent demo plusmoin`: plusmoin's view of the demo's cluster. The two
//! nodes of `agent demo` (a primary and a streaming standby on loopback),
//! watched with test-speed lag limits (max_sync_delay 3s, recover 1s,
//! heartbeat 500ms); the standby's replay is paused until it is lost for its
//! lag, resumed until it is back, then the standby is stopped and started:
//! each event with its time and reason, and `agent cluster status` after
//! each step.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::engine::report;
use crate::settings::Settings;
use crate::testbed::demo::{self, Cluster, Options};

/// The hooks' events about `node` so far: (event, reason).
fn events_about(c: &Cluster, node: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(c.base.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["node"]["host_port"] == node)
        .map(|v| {
            (
                v["event"].as_str().unwrap_or_default().to_string(),
                v["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Waits for the next `event` about `node` and prints it.
fn next_event(c: &Cluster, node: &str, event: &str, t0: Instant) -> Result<()> {
    let seen = events_about(c, node)
        .iter()
        .filter(|(e, _)| e == event)
        .count();
    demo::wait_until(
        &format!("{event} for {node}"),
        Duration::from_secs(60),
        || {
            events_about(c, node)
                .iter()
                .filter(|(e, _)| e == event)
                .count()
                > seen
        },
    )?;
    let (_, reason) = events_about(c, node)
        .into_iter()
        .rfind(|(e, _)| e == event)
        .unwrap_or_default();
    report::print(&format!(
        "  T{:+7.3}s  hook {event}: {reason}",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn status(c: &Cluster) -> Result<()> {
    let out = c
        .agent(&c.primary, &["cluster", "status"])
        .output()
        .context("agent cluster status")?;
    let text = String::from_utf8_lossy(&out.stdout);
    report::print(&format!(
        "  $ agent cluster status   (exit {})\n{}",
        out.status.code().unwrap_or(-1),
        text.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    Ok(())
}

pub fn run(settings: &Settings, args: Options) -> Result<u8> {
    crate::schedule::signals::install();
    let (base, owns) = super::demo::work_dir(&args.dir, "agent-demo-plusmoin");
    report::print(&format!(
        "agent demo plusmoin: a primary and a standby on loopback, watched as plusmoin would, in {}",
        base.display()
    ));
    let mut c = Cluster::create(
        &settings.manifests,
        &settings.hiera_config,
        base,
        owns,
        args.keep,
    )?;
    // Test-speed limits for the cluster (db_cluster::nodes) of the watching node.
    let node_data = c.base.join("hiera-demo/nodes/stash-server.yaml");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&node_data)?
        .write_all(
            b"db_cluster::max_sync_delay: 3s\ndb_cluster::recover_sync_delay: 1s\ndb_cluster::heartbeat: 500ms\n",
        )?;
    let result = scenario(&mut c, args.interval);
    c.stop_all();
    result?;
    Ok(0)
}

fn scenario(c: &mut Cluster, interval: Duration) -> Result<()> {
    report::print("Timeline:");
    demo::provision(c, true)?;
    c.start_watch(interval)?;
    report::print(&format!(
        "  agent watch started for stash-server (every {}; max_sync_delay 3s, recover_sync_delay 1s, heartbeat 500ms)",
        humantime::format_duration(interval)
    ));
    let standby = c.standby.label();
    demo::wait_until(
        "the standby's lag measured",
        Duration::from_secs(30),
        || {
            let out = c
                .agent(&c.primary, &["cluster", "status", "--json"])
                .output();
            out.ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .is_some_and(|d| {
                    d["clusters"][0]["slaves"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|x| x["lag_seconds"].is_number()))
                })
        },
    )?;
    status(c)?;
    let t0 = Instant::now();
    let mut standby_sql = c.conn(&c.standby).connect()?;
    standby_sql.batch_execute("SELECT pg_wal_replay_pause()")?;
    report::print(&format!(
        "  T{:+7.3}s  replay paused on {standby} (pg_wal_replay_pause()): its copy of the heartbeat stops",
        t0.elapsed().as_secs_f64()
    ));
    next_event(c, &standby, "slave_down", t0)?;
    status(c)?;
    standby_sql.batch_execute("SELECT pg_wal_replay_resume()")?;
    drop(standby_sql);
    report::print(&format!(
        "  T{:+7.3}s  replay resumed",
        t0.elapsed().as_secs_f64()
    ));
    next_event(c, &standby, "slave_up", t0)?;
    c.pg_ctl(&c.standby, &["-m", "fast", "-w", "stop"])?;
    report::print(&format!(
        "  T{:+7.3}s  standby stopped (pg_ctl stop -m fast)",
        t0.elapsed().as_secs_f64()
    ));
    next_event(c, &standby, "slave_down", t0)?;
    status(c)?;
    c.pg_ctl(&c.standby, &["-l", "/dev/null", "-w", "start"])?;
    report::print(&format!(
        "  T{:+7.3}s  standby started again",
        t0.elapsed().as_secs_f64()
    ));
    next_event(c, &standby, "slave_up", t0)?;
    status(c)?;
    report::print(
        "\nplusmoin's triggers get the same document (cluster_id, trigger, master, slaves, lost,\n\
         clusterless); `agent cluster status --json` is `plusmoin status`. See README, Coming from plusmoin.",
    );
    Ok(())
}
