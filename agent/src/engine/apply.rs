//! Applying a catalog: the engine alone decides noop, refresh and skips.
//!
//! For each resource in graph order: skip it if something it depends on
//! failed or was skipped; `check`; if out of sync, `apply` unless noop; queue
//! refreshes for what it notifies; run its own queued refresh. A failure
//! never stops the run: it only skips the failed resource's dependents.
//!
//! The writes of resources whose type stages them
//! (`Resource::stages_writes`: `file`, `host`) go to the context's stager
//! (see `resources::stage`) and are committed together — one sync instead
//! of two fsyncs per file — before anything that could look at them: a
//! resource that does not stage, a dependent of a staged resource, a
//! resource that looks at its paths on the disk (`file`) on or above a
//! staged path, a refresh, and the end of the run. A write that fails to
//! commit marks its resource failed.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use resources::{Change, Context, Plan};
use serde::Serialize;

use crate::engine::catalog::{Catalog, Entry};

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Unchanged,
    Changed,
    /// Out of sync, not changed because of noop.
    Noop,
    Failed,
    Skipped,
}

/// The outcome of one resource.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Index of the resource in `Catalog::entries` (its id and location).
    pub entry: usize,
    pub status: Status,
    /// One line per change (redacted).
    pub changes: Vec<String>,
    /// Printed as the run goes, never in the report.
    pub diffs: Vec<String>,
    /// Failure or skip reason, refresh notes.
    pub message: Option<String>,
    pub refreshed: bool,
    pub duration_ms: f64,
}

/// Options of one apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub noop: bool,
    /// `--tags`/`--skip_tags`: the resources this run manages (by catalog
    /// index); the others are left as they are, silently. `None`: all.
    pub only: Option<&'a [bool]>,
}

/// Called after each resource (the report prints as the run goes).
pub trait Observer {
    fn resource_done(&mut self, entry: &Entry, outcome: &Outcome);
}

impl Observer for () {
    fn resource_done(&mut self, _: &Entry, _: &Outcome) {}
}

/// Checks every managed path against the root before anything runs, so a
/// catalog that would escape the sandbox changes nothing.
pub fn preflight(catalog: &Catalog, cx: &Context) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut looked_at = std::collections::HashSet::new();
    // What it learns about directories stays in `cx` for the checks.
    for e in &catalog.entries {
        let follows = e.resource.follows_paths();
        for p in e.resource.paths() {
            let confined = if follows {
                cx.path(&p)
            } else {
                cx.unfollowed_path(&p)
            };
            match confined {
                Err(err) => errors.push(format!("{}: {}: {err}", e.location, e.id)),
                // A FIFO, socket or device where a type reads or writes
                // through its path would block the run (under its lock) or
                // never end: refused before anything runs.
                Ok(disk) if follows && looked_at.insert(disk.clone()) => {
                    if let Some(kind) = blocking_kind(&disk) {
                        errors.push(format!(
                            "{}: {}: {} is a {kind}, not a regular file or directory",
                            e.location,
                            e.id,
                            disk.display()
                        ));
                    }
                }
                Ok(_) => {}
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What kind of special file `path` is, if it is one a read or write could
/// block on.
fn blocking_kind(path: &std::path::Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path).ok()?.file_type();
    if t.is_fifo() {
        Some("FIFO")
    } else if t.is_socket() {
        Some("socket")
    } else if t.is_char_device() || t.is_block_device() {
        Some("device")
    } else {
        None
    }
}

/// Applies the catalog and returns each resource's outcome, in run order.
/// The caller has run [`preflight`] and holds the run lock.
pub fn apply(
    catalog: &Catalog,
    cx: &Context,
    opts: Options<'_>,
    observer: &mut dyn Observer,
) -> Vec<Outcome> {
    let ahead = Ahead::new(catalog, cx);
    std::thread::scope(|s| {
        for _ in 0..ahead.helpers {
            s.spawn(|| ahead.work());
        }
        let outcomes = run(catalog, cx, opts, observer, &ahead);
        ahead.stop();
        outcomes
    })
}

/// The run itself, in graph order, on the calling thread.
fn run(
    catalog: &Catalog,
    cx: &Context,
    opts: Options<'_>,
    observer: &mut dyn Observer,
    ahead: &Ahead<'_>,
) -> Vec<Outcome> {
    let n = catalog.entries.len();
    let mut status: Vec<Option<Status>> = vec![None; n];
    // Per resource: who asked for a refresh, and whether that source really
    // changed (true) or only would have in noop (false: a "would refresh").
    // (Sparse: few resources are ever notified.)
    let mut refresh_from: HashMap<usize, Vec<(String, bool)>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(n);
    // outcome index of each entry, for commit failures found later
    let mut pos = vec![usize::MAX; n];
    let stager = cx.stager();
    stager.begin();
    for (k, &i) in catalog.order.iter().enumerate() {
        let entry = &catalog.entries[i];
        if stager.has_pending() && must_commit_before(catalog, cx, i) {
            let failed = stager.commit();
            mark_uncommitted(catalog, failed, &pos, &mut outcomes, &mut status, observer);
        }
        let started = Instant::now();
        let mut out = Outcome {
            entry: i,
            status: Status::Unchanged,
            changes: vec![],
            diffs: vec![],
            message: None,
            refreshed: false,
            duration_ms: 0.0,
        };
        let blocked = catalog
            .graph
            .predecessors(i)
            .find(|&p| matches!(status[p], Some(Status::Failed | Status::Skipped)));
        if crate::schedule::signals::stop_requested() {
            // A clean stop: the resource in hand finished; the rest waits.
            out.status = Status::Skipped;
            out.message = Some("skipped: the agent is stopping".into());
        } else if opts.only.is_some_and(|only| !only[i]) {
            // Not selected by --tags / --skip_tags: left as it is.
        } else if let Some(p) = blocked {
            out.status = Status::Skipped;
            let why = if status[p] == Some(Status::Failed) {
                "failed"
            } else {
                "was skipped"
            };
            out.message = Some(format!("skipped because {} {why}", catalog.entries[p].id));
        } else {
            let noop = opts.noop || entry.meta().noop;
            if entry.resource.stages_writes() {
                stager.stage_for(Some(i));
            }
            let checked = ahead.take(k);
            let mut changed = match &entry.meta().skip_if {
                // Deliberately left alone (a fenced server's roles): not
                // checked, not a failure, its dependents go on.
                Some(reason) => {
                    out.message = Some(format!("left alone: {reason}"));
                    false
                }
                None => converge(entry.resource.as_ref(), cx, noop, checked, &mut out),
            };
            stager.stage_for(None);
            // In noop, a check that fails because what a dependency would
            // create is not there (a service whose data dir a pg_cluster of
            // this run would make) is a change to come, not a failure, as
            // in Puppet's noop.
            if noop && out.status == Status::Failed {
                let pending = catalog
                    .graph
                    .predecessors(i)
                    .find(|&p| status[p] == Some(Status::Noop));
                if let Some(p) = pending {
                    out.status = Status::Noop;
                    out.message = Some(format!(
                        "would converge after {}, which would change first (checked now: {})",
                        catalog.entries[p].id,
                        out.message.take().unwrap_or_default()
                    ));
                    changed = true;
                }
            }
            // Only a check that only reads is known not to touch the tree;
            // what is applied voids the checks done ahead, and what they
            // learnt of directories too unless the type cannot replace one.
            let reads_only = entry.resource.check_only_reads();
            if !matches!(out.status, Status::Unchanged | Status::Noop) || !reads_only {
                if !reads_only || !entry.resource.keeps_dirs() {
                    cx.forget_paths();
                }
                ahead.touched();
            }
            if changed {
                let real = out.status == Status::Changed;
                for &t in &catalog.refresh[i] {
                    refresh_from
                        .entry(t as usize)
                        .or_default()
                        .push((entry.id.to_string(), real));
                }
            }
            let from = refresh_from.remove(&i).unwrap_or_default();
            let sources = from
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            // Only a source that really changed triggers a real refresh.
            let real_refresh = from.iter().any(|(_, real)| *real);
            let just_applied =
                out.status == Status::Changed && entry.resource.apply_implies_refresh();
            if just_applied && !from.is_empty() {
                out.message = Some(format!(
                    "refresh by {sources} not needed: changed in this run"
                ));
            } else if !from.is_empty() && out.status != Status::Failed {
                if noop || !real_refresh {
                    out.message = Some(format!("would refresh (triggered by {sources})"));
                    if out.status == Status::Unchanged {
                        out.status = Status::Noop;
                    }
                } else {
                    tracing::info!(resource = %entry.id, "refreshing (triggered by {sources})");
                    let mut failed = stager.commit();
                    for (owners, err) in &mut failed {
                        if let Some(k) = owners.iter().position(|&o| o == i) {
                            owners.remove(k);
                            out.status = Status::Failed;
                            out.message = Some(format!("write not committed: {err}"));
                        }
                    }
                    mark_uncommitted(catalog, failed, &pos, &mut outcomes, &mut status, observer);
                    if out.status == Status::Failed {
                        // its own change never landed: no refresh on top
                    } else {
                        cx.forget_paths();
                        ahead.touched();
                        match entry.resource.refresh(cx) {
                            Ok(()) => {
                                out.refreshed = true;
                                out.message = Some(format!("refreshed (triggered by {sources})"));
                                if out.status == Status::Unchanged {
                                    out.status = Status::Changed;
                                }
                            }
                            Err(e) => {
                                out.status = Status::Failed;
                                out.message = Some(format!("refresh failed: {e}"));
                            }
                        }
                    }
                }
            }
        }
        if out.refreshed {
            cx.forget_paths();
        }
        out.duration_ms = duration_ms(started.elapsed());
        status[i] = Some(out.status);
        observer.resource_done(entry, &out);
        // Diffs are for the eyes, as the run goes: a first run of 100k files
        // would otherwise hold every file's content a second time.
        out.diffs = Vec::new();
        pos[i] = outcomes.len();
        outcomes.push(out);
    }
    let failed = stager.end();
    mark_uncommitted(catalog, failed, &pos, &mut outcomes, &mut status, observer);
    outcomes
}

/// Whether what is staged must reach the disk before entry `i` runs: it
/// would not see it otherwise (it does not read through the stager, or
/// looks at the disk under its paths), or it depends on it.
fn must_commit_before(catalog: &Catalog, cx: &Context, i: usize) -> bool {
    let stager = cx.stager();
    let resource = &catalog.entries[i].resource;
    if !resource.stages_writes()
        || catalog
            .graph
            .predecessors(i)
            .any(|p| stager.owns_pending(p))
    {
        return true;
    }
    resource.needs_paths_committed()
        && resource.paths().iter().any(|p| {
            let disk = cx.root.join(Path::new(p.trim_start_matches('/')));
            stager.touches(&disk)
        })
}

/// Marks the owners of writes that failed to commit as failed (and says so).
fn mark_uncommitted(
    catalog: &Catalog,
    failed: Vec<(Vec<usize>, resources::ResourceError)>,
    pos: &[usize],
    outcomes: &mut [Outcome],
    status: &mut [Option<Status>],
    observer: &mut dyn Observer,
) {
    for (owners, err) in failed {
        for owner in owners {
            let Some(out) = outcomes.get_mut(pos[owner]) else {
                continue;
            };
            out.status = Status::Failed;
            out.message = Some(format!("write not committed: {err}"));
            status[owner] = Some(Status::Failed);
            let notice = Outcome {
                changes: vec![],
                diffs: vec![],
                ..out.clone()
            };
            observer.resource_done(&catalog.entries[owner], &notice);
        }
    }
}

/// check (unless done ahead) → apply; true when the resource changed (or
/// would have, in noop).
fn converge(
    r: &dyn resources::Resource,
    cx: &Context,
    noop: bool,
    checked: Option<Checked>,
    out: &mut Outcome,
) -> bool {
    let plan: Plan = match checked.unwrap_or_else(|| r.check(cx)) {
        Ok(p) => p,
        Err(e) => {
            out.status = Status::Failed;
            out.message = Some(format!("check failed: {e}"));
            return false;
        }
    };
    if plan.is_empty() {
        return false;
    }
    // The engine reads only the changes (for people); the plan's typed
    // steps are the resource's own business.
    out.changes = plan.changes().iter().map(Change::line).collect();
    out.diffs = plan
        .changes()
        .iter()
        .filter_map(Change::printable_diff)
        .collect();
    if noop {
        out.status = Status::Noop;
        return true;
    }
    match r.apply(cx, plan) {
        Ok(()) => {
            out.status = Status::Changed;
            true
        }
        Err(e) => {
            // A failed resource reports what failed, once, and no change:
            // the lines above were what it meant to do, not what it did.
            out.status = Status::Failed;
            out.changes.clear();
            out.diffs.clear();
            out.message = Some(format!("{e}"));
            false
        }
    }
}

fn duration_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

type Checked = Result<Plan, resources::ResourceError>;

/// Checks done ahead. A check that only reads (`file`, `host`: see
/// `Resource::check_only_reads`) changes nothing, so while the run itself has changed nothing, helper threads
/// (one per spare core) check resources ahead and the run uses their
/// answers when it gets there: a no-op run's reads proceed on every core. The first thing that may change the tree (an apply, a refresh, a
/// resource of another type) ends it: from then on each resource is
/// checked in its turn, as if there were no helpers.
struct Ahead<'a> {
    catalog: &'a Catalog,
    cx: &'a Context,
    /// Per run position: FREE, TAKEN (someone is checking it), IN_SYNC
    /// (checked: no change) or DONE (checked: the answer is in `results`).
    state: Vec<AtomicU8>,
    /// The answers other than "in sync" (few in a run that changes nothing).
    results: Mutex<HashMap<usize, Checked>>,
    /// Set when the run may have changed the tree, or has ended.
    over: AtomicBool,
    /// Helper threads to start.
    helpers: usize,
}

const FREE: u8 = 0;
const TAKEN: u8 = 1;
const IN_SYNC: u8 = 2;
const DONE: u8 = 3;

/// Fewer resources to check ahead than this are not worth a thread.
const AHEAD_MIN: usize = 64;
const AHEAD_MAX_HELPERS: usize = 3;

impl<'a> Ahead<'a> {
    fn new(catalog: &'a Catalog, cx: &'a Context) -> Self {
        let pure = catalog
            .entries
            .iter()
            .filter(|e| e.resource.check_only_reads())
            .count();
        let helpers = if pure < AHEAD_MIN {
            0
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .saturating_sub(1)
                .min(AHEAD_MAX_HELPERS)
        };
        Ahead {
            catalog,
            cx,
            // Nothing to record without helpers: `take` then always says no.
            state: if helpers > 0 {
                (0..catalog.order.len())
                    .map(|_| AtomicU8::new(FREE))
                    .collect()
            } else {
                Vec::new()
            },
            results: Mutex::new(HashMap::new()),
            over: AtomicBool::new(helpers == 0),
            helpers,
        }
    }

    /// A helper: checks the free resources whose check only reads, from
    /// the end of the run backwards (the run comes forwards: they meet
    /// once, so the run seldom waits for a check in progress), until the
    /// run has changed something or ended.
    fn work(&self) {
        for (k, &i) in self.catalog.order.iter().enumerate().rev() {
            if self.over.load(Ordering::Acquire) || crate::schedule::signals::stop_requested() {
                return;
            }
            if !self.catalog.entries[i].resource.check_only_reads()
                || self.state[k]
                    .compare_exchange(FREE, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                continue;
            }
            let resource = self.catalog.entries[i].resource.as_ref();
            let checked = std::panic::catch_unwind(AssertUnwindSafe(|| resource.check(self.cx)))
                .unwrap_or_else(|_| {
                    Err(resources::ResourceError::Failed(
                        "check panicked on a helper thread".into(),
                    ))
                });
            let done = match checked {
                Ok(plan) if plan.is_empty() => IN_SYNC,
                other => {
                    lock(&self.results).insert(k, other);
                    DONE
                }
            };
            self.state[k].store(done, Ordering::Release);
        }
    }

    /// The check of run position `k` if a helper did it and it is still
    /// valid; `None` tells the run to check it itself (and keeps helpers
    /// off it).
    fn take(&self, k: usize) -> Option<Checked> {
        if self.over.load(Ordering::Acquire) {
            return None;
        }
        if self.state[k]
            .compare_exchange(FREE, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return None;
        }
        // A helper has it: a check takes microseconds.
        loop {
            match self.state[k].load(Ordering::Acquire) {
                IN_SYNC => return Some(Ok(Plan::in_sync())),
                DONE => return lock(&self.results).remove(&k),
                _ => std::thread::yield_now(),
            }
        }
    }

    /// The run may have changed the tree: what was checked ahead is void.
    fn touched(&self) {
        self.over.store(true, Ordering::Release);
    }

    fn stop(&self) {
        self.over.store(true, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
