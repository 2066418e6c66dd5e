//! Filesystem helpers shared by every type that writes files: root
//! confinement, atomic replacement (temp file, fsync, rename, fsync of the
//! directory), reading current content, and content changes with diffs.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use similar::TextDiff;

use crate::core::{Change, Context, ResourceError};

/// Suffix of the temp files written beside their target. A run removes
/// leftovers of killed runs when it next writes in that directory.
pub const TEMP_MARK: &str = ".agent-tmp";

/// Joins a node path (absolute, as written in manifests) onto `root`,
/// refusing `..` components and symlinks (in existing parents) that would
/// leave the root.
pub fn confine(root: &Path, node_path: &Path) -> Result<PathBuf, ResourceError> {
    let outside = || ResourceError::OutsideRoot {
        path: node_path.to_path_buf(),
        root: root.to_path_buf(),
    };
    if !node_path.is_absolute() {
        return Err(ResourceError::Invalid(format!(
            "{}: paths must be absolute",
            node_path.display()
        )));
    }
    let mut joined = root.to_path_buf();
    for comp in node_path.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => joined.push(part),
            Component::ParentDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if root == Path::new("/") {
        return Ok(joined);
    }
    // Symlinked parents (or the target itself, for reads) must stay inside root.
    let mut probe = root.to_path_buf();
    let canon_root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    for comp in node_path.components().skip(1) {
        probe.push(comp);
        match fs::symlink_metadata(&probe) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&probe).map_err(|e| ResourceError::io(&probe, e))?;
                if target.is_absolute() {
                    return Err(outside());
                }
                let resolved = fs::canonicalize(&probe)
                    .unwrap_or_else(|_| probe.parent().unwrap_or(root).join(&target));
                if !normalize(&resolved).starts_with(&canon_root) {
                    return Err(outside());
                }
            }
            Ok(_) => {}
            Err(_) => break, // nothing below exists yet
        }
    }
    Ok(joined)
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in p.components() {
        match comp {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Current content of a file; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ResourceError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ResourceError::io(path, e)),
    }
}

/// A `content` change from `old` to `new`, with a unified diff when both are
/// text. `sensitive` hides values and diff.
pub fn content_change(path: &Path, old: Option<&[u8]>, new: &[u8], sensitive: bool) -> Change {
    let digest = |b: &[u8]| format!("{{sha256}}{}", crate::backup::sha256_hex(b));
    let from = old.map(digest);
    let to = Some(digest(new));
    let mut change = Change::new("content", from, to).sensitive(sensitive);
    let old_text = old.map(std::str::from_utf8).unwrap_or(Ok(""));
    if let (Ok(old_text), Ok(new_text)) = (old_text, std::str::from_utf8(new)) {
        let name = path.display().to_string();
        let diff = TextDiff::from_lines(old_text, new_text)
            .unified_diff()
            .context_radius(3)
            .header(&name, &name)
            .to_string();
        change = change.with_diff(diff);
    }
    change
}

/// Name of the temp file used to replace `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!("{}.{}", TEMP_MARK, std::process::id()));
    path.with_file_name(name)
}

/// Replaces `path` atomically with `content`: a temp file in the same
/// directory, fsync, rename over the target, fsync of the directory. A reader
/// sees the old or the new content, never a mix. `mode` applies to the new
/// file (else the old file's mode is kept, else 0644).
pub fn write_atomic(path: &Path, content: &[u8], mode: Option<u32>) -> Result<(), ResourceError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mode = match mode {
        Some(m) => m,
        None => fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644),
    };
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content)?;
        // The umask may have cut bits from the create mode.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ResourceError::io(path, e));
    }
    Ok(())
}

/// Replaces a file's content (with a backup of the old content in the
/// state dir's store), as the `apply` of every content-managing type does.
pub fn replace_file(
    cx: &Context,
    path: &Path,
    content: &[u8],
    mode: Option<u32>,
) -> Result<(), ResourceError> {
    if let Some(old) = read_optional(path)? {
        cx.backup.save(path, &old)?;
    }
    // A run killed mid-write left its temp beside the target; the target is
    // then unchanged, so the next run comes back here and removes it.
    if let Some(dir) = path.parent() {
        clean_stale_temps(dir);
    }
    write_atomic(path, content, mode)
}

/// Removes temp files left in `dir` by killed runs.
pub fn clean_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(TEMP_MARK) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Parses an octal mode written as a string (`"0644"`, `"644"`).
pub fn parse_mode(text: &str) -> Result<u32, ResourceError> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            ResourceError::Invalid(format!("invalid mode '{text}': expected octal like 0644"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(
            confine(root, Path::new("/etc/hosts")).unwrap(),
            root.join("etc/hosts")
        );
        assert!(matches!(
            confine(root, Path::new("/etc/../../x")),
            Err(ResourceError::OutsideRoot { .. })
        ));
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        assert!(confine(root, Path::new("/abs/passwd")).is_err());
        fs::create_dir(root.join("inside")).unwrap();
        std::os::unix::fs::symlink("inside", root.join("rel")).unwrap();
        assert!(confine(root, Path::new("/rel/x")).is_ok());
        std::os::unix::fs::symlink("../..", root.join("up")).unwrap();
        assert!(confine(root, Path::new("/up/x")).is_err());
        assert!(confine(root, Path::new("relative")).is_err());
    }

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one\n", Some(0o600)).unwrap();
        write_atomic(&p, b"two\n", None).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn diff_is_unified() {
        let c = content_change(Path::new("/x"), Some(b"a\nb\n"), b"a\nc\n", false);
        let d = c.diff.unwrap();
        assert!(d.contains("-b\n") && d.contains("+c\n"), "{d}");
        let s = content_change(Path::new("/x"), Some(b"a\n"), b"secret\n", true);
        assert!(!s.printable_diff().unwrap().contains("secret"));
    }
}
