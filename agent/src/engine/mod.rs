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
pub mod facts;
pub mod hiera;
pub mod lint;
pub mod manifest;
pub mod render;
pub mod report;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::settings::Settings;
use compile::Compiled;
use report::{Printer, Report, Summary};

/// A node's compiled catalog and the name it was compiled for.
pub struct Node {
    pub name: String,
    pub compiled: Compiled,
}

/// facts → Hiera → compile. `persist` lets the cluster facts remember the
/// last `db_master` seen (never in noop).
pub fn compile(settings: &Settings, persist: bool) -> Result<Node> {
    // Facts are collected as the node name, Hiera and the manifests ask.
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    let node = settings.node_name(&facts)?;
    let hiera = settings.hiera()?;
    if let Some(e) = settings.add_cluster_facts(&facts, &node, &hiera, persist)? {
        report::print_errors("db_master", &[e]);
    }
    let compiled = compile::compile(compile::Input {
        manifests_dir: &settings.manifests,
        node: &node,
        facts: &facts,
        hiera,
    })
    .map_err(|e| anyhow::Error::new(e).context(format!("compiling the catalog for {node}")))?;
    Ok(Node {
        name: node,
        compiled,
    })
}

/// What one apply did.
pub struct ApplyResult {
    pub node: String,
    pub summary: Summary,
}

impl ApplyResult {
    pub fn exit_code(&self, detailed: bool) -> u8 {
        self.summary.exit_code(detailed)
    }
}

/// One whole run: [`compile`] then [`apply`]. Used by `agent apply` and by
/// the long-running modes (`run`, `watch`).
pub fn apply_once(settings: &Settings, noop: bool, lock_wait: Duration) -> Result<ApplyResult> {
    let started = Instant::now();
    let node = compile(settings, !noop)?;
    tracing::debug!(elapsed = ?started.elapsed(), "compiled");
    apply(settings, &node, noop, lock_wait, started)
}

/// Preflight, lock, apply, report: converges the node to `node`'s catalog.
/// `started` is when the run began (the summary's time counts from it).
pub fn apply(
    settings: &Settings,
    node: &Node,
    noop: bool,
    lock_wait: Duration,
    started: Instant,
) -> Result<ApplyResult> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let compiled = &node.compiled;
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
    // noop writes nothing, not even the state dir.
    let lock = if noop {
        None
    } else {
        Some(settings.state.lock(lock_wait)?)
    };
    let outcomes = apply::apply(
        &compiled.catalog,
        &cx,
        apply::Options { noop },
        &mut Printer::new(true),
    );
    tracing::debug!(elapsed = ?started.elapsed(), "applied");
    let summary = Summary::of(&outcomes, started.elapsed().as_secs_f64());
    if let Some(lock) = &lock {
        let report = Report {
            node: &node.name,
            roles: &compiled.roles,
            noop,
            started_at,
            summary: &summary,
            entries: &compiled.catalog.entries,
            resources: &outcomes,
        };
        settings
            .state
            .replace_locked(lock, "last_run_report.json", |w| report.write_json(w))?;
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
    }
    report::print_summary(&node.name, &summary, noop);
    Ok(ApplyResult {
        node: node.name.clone(),
        summary,
    })
}
