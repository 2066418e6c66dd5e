//! What the unit tests of the resource types share: declarations, and a
//! sandboxed context (a temp root with the directories a type expects, and
//! a backup store beside it). Compiled for tests only.

use crate::backup::BackupStore;
use crate::core::{Context, Decl, ResourceId};

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
