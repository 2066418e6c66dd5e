//! The loop shared by the types that edit one text file in place (`host`,
//! `cron`, `properties`, `pg_conf`, `pg_hba`): read the file, let the type
//! compute its new text, compare, show the content change, and in `apply`
//! write exactly what `check` computed.
//!
//! Only the edit itself is the type's: which lines it owns and how it
//! rewrites them. Reading (through [`stage::Stager::read_optional`], so a write
//! staged earlier in the run is seen), the refusal to edit what is not
//! text, the comparison, the diff and the write with its backup are here,
//! once.

use std::path::{Path, PathBuf};

use crate::core::{Change, Context, Plan, ResourceError, ResourceId};
use crate::{atomic, diff, stage};

/// What a file-editing type needs first, if the catalog declares it: a
/// `file` resource managing the file itself or its directory.
pub fn autorequires(node_path: &str) -> Vec<ResourceId> {
    let mut ids = vec![ResourceId::new("file", node_path)];
    if let Some(parent) = Path::new(node_path).parent() {
        ids.push(ResourceId::new("file", parent.to_string_lossy()));
    }
    ids
}

/// The check of a type that owns one entry of a shared file (`cron`,
/// `host`): `edit` makes the file's new text from its old one. `wanted` is
/// false when the entry is to be absent: a missing file then needs nothing.
pub fn check_entry(
    cx: &Context,
    id: &ResourceId,
    node_path: &str,
    wanted: bool,
    edit: impl FnOnce(&str) -> String,
) -> Result<Plan, ResourceError> {
    let file = Current::read(cx, node_path)?;
    if file.missing() && !wanted {
        return Ok(Plan::in_sync());
    }
    let new = edit(file.text(id)?);
    Ok(file.plan(new.into_bytes(), false))
}

/// A file as `check` found it.
#[derive(Debug)]
pub struct Current {
    /// The node path (`/etc/hosts`), for diffs and messages.
    pub node: String,
    /// Where it is on disk (under the root).
    pub path: PathBuf,
    /// Its bytes; `None` when there is no file.
    pub old: Option<Vec<u8>>,
}

impl Current {
    /// Reads the file at `node_path` (confined to the root).
    pub fn read(cx: &Context, node_path: &str) -> Result<Current, ResourceError> {
        let path = cx.path(node_path)?;
        let old = cx.stager().read_optional(&path)?;
        Ok(Current {
            node: node_path.to_string(),
            path,
            old,
        })
    }

    /// True when there is no file.
    pub fn missing(&self) -> bool {
        self.old.is_none()
    }

    /// Its text (empty when missing). A file that is not UTF-8 is refused:
    /// editing lines of what may be binary could only damage it.
    pub fn text(&self, id: &ResourceId) -> Result<&str, ResourceError> {
        match &self.old {
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| {
                ResourceError::Invalid(format!(
                    "{id}: {} is not UTF-8 text; refusing to edit it",
                    self.node
                ))
            }),
            None => Ok(""),
        }
    }

    /// The rewrite to `new`, or `None` when the file already holds it.
    pub fn into_rewrite(self, new: Vec<u8>) -> Option<Rewrite> {
        (self.old.as_deref() != Some(&new[..])).then_some(Rewrite {
            node: self.node,
            path: self.path,
            old: self.old,
            new,
        })
    }

    /// [`Current::into_rewrite`] with the `content` change that shows it
    /// (a diff, or for a new file its digest; redacted when `sensitive`).
    pub fn rewrite(self, new: Vec<u8>, sensitive: bool) -> Option<(Change, Rewrite)> {
        let rewrite = self.into_rewrite(new)?;
        Some((rewrite.change(sensitive), rewrite))
    }

    /// The plan of a type whose whole check is this one rewrite: its
    /// `content` change with the [`Rewrite`] as the step, or in sync.
    pub fn plan(self, new: Vec<u8>, sensitive: bool) -> Plan {
        match self.rewrite(new, sensitive) {
            Some((change, rewrite)) => Plan::new(vec![change], rewrite),
            None => Plan::in_sync(),
        }
    }
}

/// The new content of a file, computed by `check` and written by `apply`:
/// the typed step of every file-editing type.
#[derive(Debug)]
pub struct Rewrite {
    pub node: String,
    pub path: PathBuf,
    /// What the file held when checked (`None`: no file), for the diff and
    /// for a type that must put it back.
    pub old: Option<Vec<u8>>,
    pub new: Vec<u8>,
}

impl Rewrite {
    /// The `content` change it makes.
    pub fn change(&self, sensitive: bool) -> Change {
        diff::content_change(
            Path::new(&self.node),
            self.old.as_deref(),
            &self.new,
            sensitive,
        )
    }

    /// True when it creates the file.
    pub fn creates(&self) -> bool {
        self.old.is_none()
    }

    /// Whether it may be written now. Refuses to create the file when its
    /// directory is missing (these types edit files, they do not make
    /// directories; `hint` ends the message, empty for none), and to write
    /// over a file that changed since check: the new text was computed
    /// from the old one, and someone else's edit is not lost — the next
    /// run edits what is there then.
    pub fn ready(&self, cx: &Context, id: &ResourceId, hint: &str) -> Result<(), ResourceError> {
        if self.creates() {
            atomic::require_parent_dir(id, &self.node, &self.path, hint)?;
        }
        if cx.stager().read_optional(&self.path)? != self.old {
            return Err(ResourceError::Failed(format!(
                "{id}: {} changed since it was checked; not overwriting it",
                self.node
            )));
        }
        Ok(())
    }

    /// Writes the new content once [`Rewrite::ready`]: the old content goes
    /// to the backup store, the file is replaced atomically, with `mode`
    /// when given (else an existing file keeps its mode).
    pub fn write(
        &self,
        cx: &Context,
        id: &ResourceId,
        hint: &str,
        mode: Option<u32>,
    ) -> Result<(), ResourceError> {
        self.write_owned(cx, id, hint, mode, None)
    }

    /// [`Rewrite::write`], the new file owned by `owner` (uid, gid) from
    /// before its rename.
    pub fn write_owned(
        &self,
        cx: &Context,
        id: &ResourceId,
        hint: &str,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ResourceError> {
        self.ready(cx, id, hint)?;
        tracing::debug!(resource = %id, file = %self.node, "rewriting");
        stage::replace_file_owned(cx, &self.path, &self.new, mode, owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> (tempfile::TempDir, Context) {
        crate::testing::sandbox(&["etc"])
    }

    #[test]
    fn read_compare_show_and_write() {
        let (_dir, cx) = sandbox();
        let id = ResourceId::new("host", "x");
        let cur = Current::read(&cx, "/etc/f").unwrap();
        assert!(cur.missing());
        assert_eq!(cur.text(&id).unwrap(), "");
        let (change, rewrite) = cur.rewrite(b"a\n".to_vec(), false).unwrap();
        assert!(change.diff.is_none(), "a new file shows its digest only");
        assert!(rewrite.creates());
        rewrite.write(&cx, &id, "", None).unwrap();

        let cur = Current::read(&cx, "/etc/f").unwrap();
        assert_eq!(cur.text(&id).unwrap(), "a\n");
        let (change, rewrite) = cur.rewrite(b"b\n".to_vec(), false).unwrap();
        let diff = change.diff.unwrap();
        assert!(diff.contains("-a") && diff.contains("+b"), "{diff}");
        assert!(diff.contains("/etc/f"), "named by its node path: {diff}");
        rewrite.write(&cx, &id, "", Some(0o600)).unwrap();
        let path = cx.root.join("etc/f");
        assert_eq!(std::fs::read(&path).unwrap(), b"b\n");
        assert_eq!(cx.backup.list(Some(&path)).unwrap().len(), 1);

        let same = Current::read(&cx, "/etc/f").unwrap();
        assert!(same.rewrite(b"b\n".to_vec(), false).is_none(), "in sync");

        // Changed since read: not written over.
        let (_, stale) = Current::read(&cx, "/etc/f")
            .unwrap()
            .rewrite(b"c\n".to_vec(), false)
            .unwrap();
        std::fs::write(&path, "by hand\n").unwrap();
        assert!(stale.write(&cx, &id, "", None).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"by hand\n");
    }

    #[test]
    fn refuses_binary_and_missing_directories() {
        let (_dir, cx) = sandbox();
        let id = ResourceId::new("cron", "x");
        std::fs::write(cx.root.join("etc/bin"), [0xffu8, 0xfe]).unwrap();
        let err = Current::read(&cx, "/etc/bin")
            .unwrap()
            .text(&id)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not UTF-8") && err.contains("cron[x]"),
            "{err}"
        );
        let (_, rewrite) = Current::read(&cx, "/nodir/f")
            .unwrap()
            .rewrite(b"x".to_vec(), false)
            .unwrap();
        let err = rewrite
            .write(&cx, &id, " (is cron installed?)", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not exist") && err.ends_with("(is cron installed?)"),
            "{err}"
        );
        assert!(!cx.root.join("nodir").exists());
    }
}
