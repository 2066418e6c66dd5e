//! The contract between the engine and resource types: identifiers, the
//! declaration a type is built from, the context it runs in, the plan that
//! goes from `check` to `apply` (with the changes it shows people), and its
//! typed errors.

use std::any::Any;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::backup::BackupStore;
use crate::redact;
use crate::runner::Runner;
use crate::stage::Stager;

/// `type[title]`, the name every resource is known by in references,
/// the graph and the report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    pub type_name: String,
    pub title: String,
}

impl ResourceId {
    pub fn new(type_name: impl Into<String>, title: impl Into<String>) -> Self {
        ResourceId {
            type_name: type_name.into(),
            title: title.into(),
        }
    }

    /// Parses a reference written `type[title]`.
    pub fn parse(reference: &str) -> Option<Self> {
        let reference = reference.trim();
        let open = reference.find('[')?;
        if !reference.ends_with(']') || open == 0 {
            return None;
        }
        let type_name = reference[..open].trim().to_ascii_lowercase();
        let title = &reference[open + 1..reference.len() - 1];
        if title.is_empty()
            || !type_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return None;
        }
        Some(ResourceId::new(type_name, title))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.type_name, self.title)
    }
}

/// Where a declaration came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Shared by every resource of one manifest file.
    pub file: Arc<Path>,
    pub line: usize,
}

impl Default for Location {
    fn default() -> Self {
        Location {
            file: Path::new("").into(),
            line: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One compiled resource declaration: its type, title and rendered
/// attributes (metaparameters already removed by the engine).
#[derive(Debug, Clone)]
pub struct Decl {
    pub id: ResourceId,
    pub attrs: Map<String, Value>,
    /// Attributes whose value holds a Sensitive value: never printed.
    pub sensitive: BTreeSet<String>,
    pub location: Location,
}

impl Decl {
    /// Deserializes the attributes into a type's parameter struct (which
    /// should use `#[serde(deny_unknown_fields)]`), naming the resource on error.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, ResourceError> {
        T::deserialize(&self.attrs).map_err(|e| {
            ResourceError::Invalid(format!("{}: {}", self.id, redact::redact(&e.to_string())))
        })
    }

    /// True when the attribute carries a Sensitive value.
    pub fn is_sensitive(&self, attr: &str) -> bool {
        self.sensitive.contains(attr)
    }
}

/// Where a type reads the node's facts: the engine's facts, which may be
/// collected only when first read.
pub trait FactSource: Send + Sync {
    /// The top-level fact `name` (`os`), if the node has it.
    fn fact(&self, name: &str) -> Option<Value>;
}

impl FactSource for Value {
    fn fact(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }
}

/// Facts a type may need to choose a provider or a default; filled by the
/// engine from the node's facts.
#[derive(Clone)]
pub struct TypeEnv {
    facts: Arc<dyn FactSource>,
}

impl Default for TypeEnv {
    fn default() -> Self {
        TypeEnv::from_facts(Value::Object(Default::default()))
    }
}

impl fmt::Debug for TypeEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeEnv").finish_non_exhaustive()
    }
}

impl TypeEnv {
    pub fn new(facts: Arc<dyn FactSource>) -> Self {
        TypeEnv { facts }
    }

    /// Facts given as one JSON object.
    pub fn from_facts(facts: Value) -> Self {
        TypeEnv::new(Arc::new(facts))
    }

    /// A fact by dotted name (`os.family`), as text.
    pub fn fact_str(&self, dotted: &str) -> Option<String> {
        let mut parts = dotted.split('.');
        let top = self.facts.fact(parts.next()?)?;
        let mut v = &top;
        for part in parts {
            v = v.get(part)?;
        }
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// What a resource sees while it runs.
pub struct Context {
    /// Prefix of every managed path (`/` outside a sandbox).
    pub root: PathBuf,
    pub backup: BackupStore,
    pub runner: Runner,
    /// Directories under the root already found to be real directories
    /// (not symlinks) since the run last changed anything: see
    /// [`Context::forget_paths`].
    /// (Read-mostly, by the run and its helpers at once.)
    dirs_seen: RwLock<HashSet<std::ffi::OsString>>,
    /// Where the run's writes go: see [`Context::stager`].
    stager: Stager,
}

impl Context {
    pub fn new(root: impl Into<PathBuf>, backup: BackupStore) -> Self {
        Context {
            root: root.into(),
            backup,
            runner: Runner::default(),
            dirs_seen: RwLock::new(HashSet::new()),
            stager: Stager::default(),
        }
    }

    /// The stager a type writes files through (and reads the files it
    /// writes through): the engine may hold those writes back and commit
    /// them with others' later (see [`crate::stage`]). One per context, so
    /// two runs never see each other's staged files.
    pub fn stager(&self) -> &Stager {
        &self.stager
    }

    /// The on-disk path of a node path (`/etc/hosts` → `<root>/etc/hosts`),
    /// refusing anything that would leave the root. A directory checked
    /// once is not looked at again until [`Context::forget_paths`].
    pub fn path(&self, node_path: &str) -> Result<PathBuf, ResourceError> {
        crate::confine::confine_seen(&self.root, Path::new(node_path), &self.dirs_seen)
    }

    /// [`Context::path`] for a path whose last component is never followed
    /// (a `file` manages a link there rather than writing through it): only
    /// its parents are confined, so it may be a link pointing anywhere.
    pub fn unfollowed_path(&self, node_path: &str) -> Result<PathBuf, ResourceError> {
        let p = Path::new(node_path);
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => Ok(self.path(&parent.to_string_lossy())?.join(name)),
            _ => self.path(node_path),
        }
    }

    /// Forgets what [`Context::path`] learnt about directories: the engine
    /// calls it after anything that may have changed the tree (an apply, a
    /// refresh, a resource that runs commands), so a directory replaced by
    /// a symlink in the run is checked again.
    pub fn forget_paths(&self) {
        self.dirs_seen
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// One difference between the desired and the actual state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The property that differs: `ensure`, `content`, `mode`, `jdbc.url`...
    pub property: String,
    /// Current value, human readable (`None` = absent).
    pub from: Option<String>,
    /// Desired value, human readable (`None` = absent).
    pub to: Option<String>,
    /// A unified diff for content changes.
    pub diff: Option<String>,
    /// The values are secret: print `[redacted]` instead.
    pub sensitive: bool,
}

impl Change {
    pub fn new(property: impl Into<String>, from: Option<String>, to: Option<String>) -> Self {
        Change {
            property: property.into(),
            from,
            to,
            diff: None,
            sensitive: false,
        }
    }

    pub fn with_diff(mut self, diff: String) -> Self {
        self.diff = Some(diff);
        self
    }

    pub fn sensitive(mut self, sensitive: bool) -> Self {
        self.sensitive |= sensitive;
        self
    }

    /// The one-line description shown to users and stored in the report.
    pub fn line(&self) -> String {
        let show = |v: &Option<String>| match v {
            _ if self.sensitive => "[redacted]".to_string(),
            Some(v) => format!("'{}'", redact::redact(v)),
            None => "absent".to_string(),
        };
        format!(
            "{} changed {} to {}",
            self.property,
            show(&self.from),
            show(&self.to)
        )
    }

    /// The diff, if any, safe to print.
    pub fn printable_diff(&self) -> Option<String> {
        match &self.diff {
            Some(_) if self.sensitive => Some("[diff redacted: sensitive content]\n".into()),
            Some(d) => Some(redact::redact(d).into_owned()),
            None => None,
        }
    }
}

/// What `check` found to do, handed as is to `apply`.
///
/// It has two halves with two readers. The [`Change`]s are for people: the
/// engine prints them, counts them and stores them in the report, and an
/// empty list means "in sync". The *steps* are for the type alone: its own
/// typed value (an enum of actions, the new content it computed...) that
/// `apply` acts on, so nothing is ever decoded back from display strings.
///
/// The steps are a `Box<dyn Any + Send>` that the type downcasts with
/// [`Plan::steps`]. An associated type on [`Resource`] would check this at
/// compile time, but the engine holds resources as `dyn Resource`, so it
/// would need a second, erased trait mirroring every method; a plan only
/// ever goes back to the resource whose `check` made it, so one checked
/// downcast in `apply` is the whole cost. `Send`: a plan may be made by a
/// helper thread that checks ahead of the run.
pub struct Plan {
    changes: Vec<Change>,
    steps: Option<Box<dyn Any + Send>>,
}

impl Plan {
    /// Nothing to do.
    pub fn in_sync() -> Plan {
        Plan {
            changes: Vec::new(),
            steps: None,
        }
    }

    /// `changes` to show and the type's own `steps` to act on. No changes
    /// means in sync: the engine will not call `apply`.
    pub fn new<T: Any + Send>(changes: Vec<Change>, steps: T) -> Plan {
        Plan {
            changes,
            steps: Some(Box::new(steps)),
        }
    }

    /// The changes, for people (lines, diffs, the report).
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// True when the resource is in sync.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The typed steps, for the `apply` of the type that made the plan. A
    /// plan of another type (or none) is a programming error, reported as
    /// a failure of `id` rather than a panic.
    pub fn steps<T: Any>(self, id: &ResourceId) -> Result<T, ResourceError> {
        match self.steps.map(|s| s.downcast::<T>()) {
            Some(Ok(steps)) => Ok(*steps),
            _ => Err(ResourceError::Failed(format!(
                "{id}: apply was given a plan that its check did not make (expected {})",
                std::any::type_name::<T>()
            ))),
        }
    }
}

impl fmt::Debug for Plan {
    // The steps may hold secrets (content, passwords): never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("changes", &self.changes)
            .finish_non_exhaustive()
    }
}

/// Errors a resource reports; the engine marks the resource failed and
/// skips its dependents.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{cmd} exited with {status}: {stderr}")]
    CommandFailed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("path {path} resolves outside the root {root}")]
    OutsideRoot { path: PathBuf, root: PathBuf },
    #[error("{0}")]
    Failed(String),
}

impl ResourceError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ResourceError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A resource type instance. `check` never mutates; `apply` converges in one
/// call so that a following `check` returns no change.
pub trait Resource: Send + Sync {
    fn id(&self) -> &ResourceId;

    /// What differs from the desired state, and what `apply` will do about
    /// it; a plan without changes = in sync.
    fn check(&self, cx: &Context) -> Result<Plan, ResourceError>;

    /// Carries out the plan this resource's `check` made, acting on its
    /// typed steps (never on the display strings of its changes).
    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError>;

    /// Reacts to a change of something that notifies or is subscribed to
    /// (restart a service, run a refreshonly exec).
    fn refresh(&self, _cx: &Context) -> Result<(), ResourceError> {
        Ok(())
    }

    /// True when a change made by `apply` already does what a refresh would
    /// (a service started in this run needs no restart on top).
    fn apply_implies_refresh(&self) -> bool {
        false
    }

    /// Resources this one needs if they are in the catalog (parent
    /// directory, package of a service...). Missing ones are ignored.
    fn autorequires(&self) -> Vec<ResourceId> {
        vec![]
    }

    /// Node paths this resource writes (for root confinement checks before
    /// anything runs).
    fn paths(&self) -> Vec<String> {
        vec![]
    }

    /// True when `apply` can neither replace a directory nor make a
    /// symlink: the directories the run found real stay real, so what
    /// [`Context::path`] learnt about them still holds after a change.
    fn keeps_dirs(&self) -> bool {
        false
    }

    /// False when the type never follows the last component of its
    /// [`Resource::paths`] (it manages whatever is there, a link included):
    /// the preflight then confines only their parents.
    fn follows_paths(&self) -> bool {
        true
    }

    /// True when `apply` writes files only through [`Context::stager`],
    /// and `check` and `apply` read the files it writes through it too: the
    /// engine may then stage its writes and commit them with others' (one
    /// sync for many files). A type that says false finds everything
    /// committed when it runs, so it may read and write the disk directly.
    fn stages_writes(&self) -> bool {
        false
    }

    /// True when `check` only reads (files, metadata): it runs no command
    /// and changes nothing. The engine may then check it ahead on a helper
    /// thread, and an in-sync check leaves what the run learnt of the tree
    /// valid.
    fn check_only_reads(&self) -> bool {
        false
    }

    /// True when the type looks at its [`Resource::paths`] on the disk
    /// itself (their metadata, what a directory holds), where staged writes
    /// do not show yet: the engine commits what is staged on or below them
    /// before it runs.
    fn needs_paths_committed(&self) -> bool {
        false
    }

    /// Warnings about a declaration that is valid but risky (a world-readable
    /// secret, an exec that runs on every apply...), printed by
    /// `agent validate`. Static: computed from the declaration, no I/O.
    fn lints(&self) -> Vec<String> {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_hands_its_steps_only_to_their_own_type_and_never_prints_them() {
        #[derive(Debug, PartialEq)]
        struct Secret(&'static str);
        let id = ResourceId::new("t", "x");
        let change = || vec![Change::new("p", None, Some("v".into()))];
        let plan = Plan::new(change(), Secret("hunter2"));
        assert!(!plan.is_empty());
        let shown = format!("{plan:?}");
        assert!(
            shown.contains("changes") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(plan.steps::<Secret>(&id).unwrap(), Secret("hunter2"));
        let err = Plan::new(change(), 1u8).steps::<Secret>(&id).unwrap_err();
        assert!(matches!(err, ResourceError::Failed(_)) && err.to_string().contains("t[x]"));
        assert!(Plan::in_sync().is_empty());
        assert!(Plan::in_sync().steps::<Secret>(&id).is_err());
    }
}
