//! `agent watch`: reactive convergence. Every `--interval` it re-evaluates
//! the watched facts (`db_master` by default, more with `--fact`) and applies
//! at once when one changed; the `--schedule` fires a fallback run as `agent
//! run` would. Cluster events (from the `db_cluster` fact) fire hooks with a
//! JSON document on stdin (see `hooks`). Stops cleanly on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use crate::engine::{apply_once, RunOptions};
use crate::engine::{facts, report};
use crate::failover::hooks::{self, ClusterView, Hooks};
use crate::schedule::{run as daemon, signals};
use crate::settings::Settings;

/// Facts of this iteration: everything `apply` would see, db_master included.
fn evaluate(settings: &Settings) -> Result<(Arc<facts::Facts>, Value, String)> {
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    let node = settings.node_name(&facts)?;
    let hiera = settings.hiera()?;
    let cluster = settings.cluster_facts(&facts, &node, &settings.roles(&node)?, hiera);
    let all = (*facts.all()).clone();
    // The watcher remembers the primary it saw, as a run would: it is the
    // only process awake between runs to see a failover.
    cluster.persist();
    Ok((facts, all, node))
}

fn watched_values(all: &Value, names: &[String]) -> Vec<Option<Value>> {
    names
        .iter()
        .map(|n| facts::get_path(all, n).cloned())
        .collect()
}

fn show(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(none)".into(),
    }
}

/// What `agent watch` does, validated by the CLI.
pub struct Options {
    /// How often the watched facts are re-evaluated.
    pub interval: Duration,
    /// Facts watched besides `db_master` (dotted names).
    pub facts: Vec<String>,
    /// Fallback drift-correction schedule.
    pub schedule: cron::Schedule,
    /// The cluster-event hooks and their time limit.
    pub hooks: Hooks,
    /// How often the heartbeat hook runs.
    pub heartbeat: Duration,
    /// Stop after this long.
    pub max_time: Option<Duration>,
}

pub fn run(settings: &Settings, args: Options) -> Result<u8> {
    signals::install();
    let schedule = &args.schedule;
    let mut names = vec!["db_master".to_string()];
    names.extend(args.facts.iter().cloned());
    let hooks = &args.hooks;
    let started = Instant::now();

    let (facts, all, node) = evaluate(settings)?;
    let cluster_name = cluster_name(settings, facts, &node);
    let mut view = ClusterView::from_facts(&all).unwrap_or_default();
    let mut values = watched_values(&all, &names);
    report::print(&format!(
        "Notice: watching {} every {} (db_master is {})",
        names.join(", "),
        humantime::format_duration(args.interval),
        show(&values[0])
    ));
    let mut pending = hooks.fire(&hooks::event(
        &cluster_name,
        &node,
        "agent_up",
        None,
        "the agent started watching",
        &view,
    ));
    converge(settings, "start");
    let mut next_scheduled = daemon::until_next(schedule).map(|(_, d)| Instant::now() + d);
    let mut next_heartbeat = Instant::now() + args.heartbeat;

    while signals::sleep(args.interval) {
        if args.max_time.is_some_and(|m| started.elapsed() >= m) {
            break;
        }
        pending.retain(|t| !t.is_finished());
        let (_, all, _) = match evaluate(settings) {
            Ok(x) => x,
            Err(e) => {
                report::print_errors("watch", &[format!("{e:#}")]);
                continue;
            }
        };
        let now_view = ClusterView::from_facts(&all).unwrap_or_default();
        for (trigger, about, reason) in hooks::diff(&view, &now_view) {
            report::print(&format!("Notice: cluster event {trigger}: {reason}"));
            pending.extend(hooks.fire(&hooks::event(
                &cluster_name,
                &node,
                &trigger,
                Some(&about),
                &reason,
                &now_view,
            )));
        }
        view = now_view;
        let now_values = watched_values(&all, &names);
        if now_values != values {
            for (i, n) in names.iter().enumerate() {
                if now_values[i] != values[i] {
                    report::print(&format!(
                        "Notice: {n} changed from {} to {}",
                        show(&values[i]),
                        show(&now_values[i])
                    ));
                }
            }
            values = now_values;
            converge(settings, "a watched fact changed");
        } else if next_scheduled.is_some_and(|t| Instant::now() >= t) {
            converge(settings, "schedule");
            next_scheduled = daemon::until_next(schedule).map(|(_, d)| Instant::now() + d);
        }
        if Instant::now() >= next_heartbeat {
            pending.extend(hooks.fire(&hooks::event(
                &cluster_name,
                &node,
                "heartbeat",
                None,
                "heartbeat",
                &view,
            )));
            next_heartbeat = Instant::now() + args.heartbeat;
        }
    }
    // Let hooks in flight finish (each is bounded by its timeout).
    for t in pending {
        let _ = t.join();
    }
    report::print("Notice: watch stopped");
    Ok(0)
}

fn converge(settings: &Settings, why: &str) {
    report::print(&format!("Notice: applying ({why})"));
    if let Err(e) = apply_once(settings, RunOptions::real(Duration::from_secs(30))) {
        report::print_errors("watch", &[format!("{e:#}")]);
    }
}

fn cluster_name(settings: &Settings, facts: Arc<facts::Facts>, node: &str) -> String {
    let scope = crate::engine::compile::NodeScope::new(
        facts,
        node,
        &settings.roles(node).unwrap_or_default(),
    );
    settings
        .hiera()
        .ok()
        .and_then(|h| h.lookup("db_cluster::name", &scope, None).ok())
        .and_then(|f| f.value.as_str().map(String::from))
        .unwrap_or_else(|| "db".into())
}
