//! The engine: facts → Hiera → manifest compile → catalog → apply → report.
//!
//! Its API is two calls, which every command, the daemon loops and the
//! demo use: [`compile`] (pure: it reads the node's facts, data and
//! manifests and writes nothing) and [`apply`] (converges the node to a
//! compiled catalog, under the run lock, and writes the report);
//! [`apply_once`] is both in a row. The modules below are in the order a
//! run goes through them.

pub mod apply;
pub mod catalog;
pub mod compile;
pub mod compile_error;
pub mod data_type;
pub mod facts;
pub mod hiera;
pub mod lint;
pub mod manifest;
pub mod metrics;
pub mod render;
pub mod report;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::failover::dbmaster::ClusterSource;
use crate::settings::Settings;
use compile::Compiled;
use report::{Printer, Report, Summary};

/// Puppet's run summary, for monitoring, in the state dir.
pub const SUMMARY: &str = "last_run_summary.yaml";

/// A node's compiled catalog and the name it was compiled for.
pub struct Node {
    pub name: String,
    pub compiled: Compiled,
    /// The cluster facts, if the compile asked for them: what they found
    /// is persisted by [`apply`], under the lock.
    pub cluster: Arc<ClusterSource>,
    /// The facts the compile read (no more are collected after it).
    pub facts: Arc<facts::Facts>,
}

/// facts → Hiera → compile, in one pass: the manifests are read once, a
/// fact (the cluster's included) is collected only when something names
/// it, and nothing is written anywhere.
pub fn compile(settings: &Settings) -> Result<Node> {
    // Facts are collected as the node name, Hiera and the manifests ask.
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    let node = settings.node_name(&facts)?;
    let context = || format!("compiling the catalog for {node}");
    let loaded = manifest::load(&settings.manifests, &node)
        .map_err(|e| anyhow::Error::new(e).context(context()))?;
    let hiera = settings.hiera()?;
    let cluster = settings.cluster_facts(&facts, &node, &loaded.roles, hiera.clone());
    let compiled = compile::compile(compile::Input {
        manifests_dir: &settings.manifests,
        node: &node,
        loaded,
        facts: &facts,
        hiera,
    });
    // A split brain leaves db_master unset: said whether or not the
    // catalog compiles (it will not, if it names db_master).
    if let Some(e) = cluster.error() {
        report::print_errors("db_master", &[e]);
    }
    if let Some(e) = cluster.redis_error() {
        report::print_errors("redis_master", &[e]);
    }
    let compiled = compiled.map_err(|e| anyhow::Error::new(e).context(context()))?;
    Ok(Node {
        name: node,
        compiled,
        cluster,
        facts,
    })
}

/// What one apply did.
pub struct ApplyResult {
    pub node: String,
    pub summary: Summary,
    /// The run summary in Puppet's schema (`last_run_summary.yaml`): what
    /// `--summarize` prints and `--metrics-file` exports.
    pub run_summary: serde_json::Value,
    /// Each resource evaluated, in order: its id (redacted), status and
    /// seconds (`--evaltrace`).
    pub evaluated: Vec<(String, apply::Status, f64)>,
    /// The cluster facts (`db_master`, `db_master_stale`, `db_split_brain`)
    /// and the `pgbackrest` health when the compile asked for them; never
    /// probed for the result's sake.
    pub cluster_facts: serde_json::Map<String, serde_json::Value>,
}

impl ApplyResult {
    pub fn exit_code(&self, detailed: bool) -> u8 {
        self.summary.exit_code(detailed)
    }
}

/// How one apply runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--tags`: manage only resources with one of these tags (and what
    /// they require); empty: all.
    pub tags: Vec<String>,
    /// `--skip_tags`: leave resources with one of these tags alone.
    pub skip_tags: Vec<String>,
    /// Report what would change; change nothing anywhere.
    pub noop: bool,
    /// How long to wait for another run's lock.
    pub lock_wait: Duration,
    /// No summary line when nothing changed and nothing failed (a cron
    /// job that mails its output stays silent then).
    pub quiet: bool,
}

impl RunOptions {
    /// A real, reported run that waits `lock_wait` for the lock.
    pub fn real(lock_wait: Duration) -> RunOptions {
        RunOptions {
            noop: false,
            lock_wait,
            quiet: false,
            tags: vec![],
            skip_tags: vec![],
        }
    }
}

/// One whole run: [`compile`] then [`apply`]. Used by `agent apply` and by
/// the long-running modes (`run`, `watch`).
pub fn apply_once(settings: &Settings, opts: RunOptions) -> Result<ApplyResult> {
    let started = Instant::now();
    let node = compile(settings)?;
    tracing::debug!(elapsed = ?started.elapsed(), "compiled");
    apply(settings, &node, opts, started)
}

/// Preflight, lock, apply, report: converges the node to `node`'s catalog.
/// `started` is when the run began (the summary's time counts from it).
pub fn apply(
    settings: &Settings,
    node: &Node,
    opts: RunOptions,
    started: Instant,
) -> Result<ApplyResult> {
    let RunOptions {
        noop,
        lock_wait,
        quiet,
        tags,
        skip_tags,
    } = opts;
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let compiled = &node.compiled;
    if !noop {
        settings.ensure_root()?;
    }
    let cx = resources::Context::new(
        settings.root_path(),
        resources::backup::BackupStore::new(&settings.state.dir),
    );
    if let Err(errors) = apply::preflight(&compiled.catalog, &cx) {
        anyhow::bail!(
            "refusing to apply, nothing was changed:\n{}",
            errors.join("\n")
        );
    }
    // noop writes nothing but the run summary (below).
    let lock = if noop {
        None
    } else {
        Some(settings.state.lock(lock_wait)?)
    };
    let outcomes = apply::apply(
        &compiled.catalog,
        &cx,
        apply::Options {
            noop,
            only: catalog::select(&compiled.catalog, &tags, &skip_tags).as_deref(),
        },
        &mut Printer::new(true),
    );
    tracing::debug!(elapsed = ?started.elapsed(), "applied");
    let summary = Summary::of(&outcomes, started.elapsed().as_secs_f64());
    let report = Report {
        node: &node.name,
        roles: &compiled.roles,
        noop,
        started_at,
        summary: &summary,
        entries: &compiled.catalog.entries,
        resources: &outcomes,
    };
    // Monitoring reads every run, noop ones too (as Puppet records them);
    // a noop on a node the agent never ran on leaves no trace at all.
    let run_summary_value = report::run_summary(&report);
    let run_summary = crate::yaml::to_string(&run_summary_value);
    let write_summary = |w: &mut dyn std::io::Write| w.write_all(run_summary.as_bytes());
    if let Some(lock) = &lock {
        settings
            .state
            .replace_locked(lock, SUMMARY, 0o644, write_summary)?;
        settings
            .state
            .replace_locked(lock, "last_run_report.json", 0o600, |w| {
                report.write_json(w)
            })?;
        node.cluster.persist();
        // Retention of the backup store, under the run lock; never in noop.
        let max_age = Duration::from_secs(resources::backup::DEFAULT_MAX_AGE_DAYS * 86_400);
        let keep = Some(resources::backup::DEFAULT_KEEP_PER_PATH);
        match resources::backup::prune(&cx.backup, keep, Some(max_age)) {
            Ok(s) if s.entries_removed + s.blobs_removed > 0 => tracing::info!(
                "backup retention: {} versions and {} blobs removed",
                s.entries_removed,
                s.blobs_removed
            ),
            Ok(_) => {}
            Err(e) => report::warn(&format!("Warning: backup retention failed: {e}")),
        }
    } else if settings.state.dir.is_dir() {
        settings.state.write_with(SUMMARY, 0o644, write_summary)?;
    }
    if !(quiet && summary.exit_code(true) == 0) {
        report::print_summary(&node.name, &summary, noop);
    }
    let evaluated = outcomes
        .iter()
        .map(|o| {
            let id = &compiled.catalog.entries[o.entry].id;
            let id = resources::redact::redact(&id.to_string()).into_owned();
            (id, o.status, o.duration_ms / 1000.0)
        })
        .collect();
    // Only what is already collected: `none` reads no new source.
    let collected = node.facts.demand(&facts::Demand::none());
    let cluster_facts = [
        "db_master",
        "db_master_stale",
        "db_split_brain",
        "pgbackrest",
    ]
    .iter()
    .filter_map(|n| Some((n.to_string(), collected.get(*n)?.clone())))
    .collect();
    Ok(ApplyResult {
        node: node.name.clone(),
        summary,
        run_summary: run_summary_value,
        evaluated,
        cluster_facts,
    })
}
