//! Root confinement: a node path (absolute, as written in manifests) joined
//! onto `--root`, refusing `..` components and symlinks in existing parents
//! that would lead out of the root. Every path a resource touches comes
//! through here (via [`crate::Context::path`]), so a sandboxed run cannot
//! write outside its sandbox.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;

use crate::core::ResourceError;

/// Joins a node path (absolute, as written in manifests) onto `root`,
/// refusing `..` components and symlinks (in existing parents) that would
/// leave the root.
pub fn confine(root: &Path, node_path: &Path) -> Result<PathBuf, ResourceError> {
    confine_with(root, node_path, None)
}

/// [`confine`] for many paths while the tree does not change: `seen`
/// remembers the directories already found to be real directories (not
/// symlinks), so each is looked at once, not once per path below it. The
/// caller clears it when the tree may have changed.
pub fn confine_seen(
    root: &Path,
    node_path: &Path,
    seen: &RwLock<HashSet<OsString>>,
) -> Result<PathBuf, ResourceError> {
    confine_with(root, node_path, Some(seen))
}

fn confine_with(
    root: &Path,
    node_path: &Path,
    seen: Option<&RwLock<HashSet<OsString>>>,
) -> Result<PathBuf, ResourceError> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
    // The joined path, built once; `ends` marks where each component ends.
    let node = node_path.as_os_str().as_bytes();
    let mut joined = Vec::with_capacity(root.as_os_str().len() + node.len() + 1);
    joined.extend_from_slice(root.as_os_str().as_bytes());
    let mut ends = Vec::new();
    for part in node.split(|&b| b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => return Err(outside()),
            _ => {}
        }
        if joined.last() != Some(&b'/') {
            joined.push(b'/');
        }
        joined.extend_from_slice(part);
        ends.push(joined.len());
    }
    if root == Path::new("/") {
        return Ok(PathBuf::from(OsString::from_vec(joined)));
    }
    // Symlinked parents (or the target itself, for reads) must stay inside root.
    for end in ends {
        let probe = Path::new(std::ffi::OsStr::from_bytes(&joined[..end]));
        if seen.is_some_and(|s| {
            s.read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(probe.as_os_str())
        }) {
            continue;
        }
        match fs::symlink_metadata(probe) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(probe).map_err(|e| ResourceError::io(probe, e))?;
                if target.is_absolute() {
                    return Err(outside());
                }
                let resolved = fs::canonicalize(probe)
                    .unwrap_or_else(|_| probe.parent().unwrap_or(root).join(&target));
                if !normalize(&resolved).starts_with(canonical_root(root)) {
                    return Err(outside());
                }
            }
            Ok(meta) => {
                if let Some(seen) = seen.filter(|_| meta.is_dir()) {
                    seen.write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(probe.as_os_str().to_owned());
                }
            }
            Err(_) => break, // nothing below exists yet
        }
    }
    Ok(PathBuf::from(OsString::from_vec(joined)))
}

/// `root` canonicalized, remembered for the last root asked about: a run
/// confines thousands of paths under one root, and realpath costs a
/// readlink per component each time.
fn canonical_root(root: &Path) -> PathBuf {
    static LAST: std::sync::Mutex<Option<(PathBuf, PathBuf)>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((r, canon)) = last.as_ref() {
        if r == root {
            return canon.clone();
        }
    }
    match fs::canonicalize(root) {
        Ok(canon) => {
            *last = Some((root.to_path_buf(), canon.clone()));
            canon
        }
        // Not there yet: nothing to remember.
        Err(_) => root.to_path_buf(),
    }
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
}
