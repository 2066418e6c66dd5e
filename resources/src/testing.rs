//! What the unit tests of the resource types share: declarations, and a
//! sandboxed context (a temp root with the directories a type expects, and
//! a backup store beside it). Compiled for tests only.

use std::path::PathBuf;

use crate::backup::BackupStore;
use crate::core::{Change, Context, Decl, Plan, ResourceId};

/// The declaration `- <type_name>: <title>` with `attrs` (a JSON object),
/// nothing Sensitive.
pub fn decl(type_name: &str, title: &str, attrs: serde_json::Value) -> Decl {
    Decl {
        id: ResourceId::new(type_name, title),
        attrs: attrs.as_object().cloned().unwrap_or_default(),
        sensitive: Default::default(),
        location: Default::default(),
    }
}

/// A context rooted in `<tmp>/root`, with `dirs` (relative to the root)
/// made under it and the backup store in `<tmp>/state`. Keep the `TempDir`
/// alive as long as the context.
pub fn sandbox(dirs: &[&str]) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("root");
    for d in dirs.iter().copied().chain([""]) {
        std::fs::create_dir_all(root.join(d)).expect("a sandbox directory");
    }
    let cx = Context::new(root, BackupStore::new(&dir.path().join("state")));
    (dir, cx)
}

/// A [`sandbox`] kept whole, for tests that also want the root's path on
/// disk: the temp dir lives as long as the sandbox.
pub struct Sandbox {
    /// `<tmp>/root`, the root the context confines paths to.
    pub root: PathBuf,
    pub cx: Context,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// A sandbox with `dirs` (relative to the root) made under its root.
    pub fn new(dirs: &[&str]) -> Sandbox {
        let (dir, cx) = sandbox(dirs);
        Sandbox {
            root: dir.path().join("root"),
            cx,
            _dir: dir,
        }
    }
}

/// The change lines a plan would print, as the tests compare them.
pub fn lines(plan: &Plan) -> Vec<String> {
    plan.changes().iter().map(Change::line).collect()
}
