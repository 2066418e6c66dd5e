//! Filling a data dir without ever leaving it half-filled: the copy (from
//! pg_basebackup or a backup directory) lands in a private temp dir beside
//! the data dir and is renamed into place only when complete, so a failed or
//! killed seeding leaves the data dir as it was (absent or empty) and the
//! next run starts over.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::ResourceError;
use crate::pg::os_user;

/// Infix of the temp dirs: `<datadir>.seeding-<pid>`.
const SEEDING: &str = ".seeding-";

/// The temp dir this process seeds `datadir` through.
pub fn temp_dir(datadir: &Path) -> PathBuf {
    let mut name = datadir.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{SEEDING}{}", std::process::id()));
    datadir.with_file_name(name)
}

/// Removes temp dirs of `datadir` left by killed runs (the run lock makes
/// sure no other agent is seeding it now).
pub fn remove_stale(datadir: &Path) {
    let (Some(parent), Some(name)) = (datadir.parent(), datadir.file_name()) else {
        return;
    };
    let prefix = format!("{}{SEEDING}", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(path = %entry.path().display(), "removing a seeding dir left by an earlier run");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Creates `dir` 0700 (as a data dir must be) and gives it to the
/// PostgreSQL OS user, who runs pg_basebackup into it.
pub fn create_private(dir: &Path) -> Result<(), ResourceError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| ResourceError::io(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| ResourceError::io(dir, e))?;
    crate::pg::chown_to_os_user(dir)
}

/// True when `dir` does not exist or has no entries.
pub fn is_absent_or_empty(dir: &Path) -> Result<bool, ResourceError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(ResourceError::io(dir, e)),
    }
}

/// Copies the tree `src` into the existing dir `dst`: directories, regular
/// files (with their permission bits) and symlinks (as links).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), ResourceError> {
    let entries = fs::read_dir(src).map_err(|e| ResourceError::io(src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ResourceError::io(src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(|e| ResourceError::io(&from, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&from).map_err(|e| ResourceError::io(&from, e))?;
            std::os::unix::fs::symlink(target, &to).map_err(|e| ResourceError::io(&to, e))?;
        } else if meta.is_dir() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&to)
                .map_err(|e| ResourceError::io(&to, e))?;
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(mode))
                .map_err(|e| ResourceError::io(&to, e))?;
        } else if meta.is_file() {
            fs::copy(&from, &to).map_err(|e| ResourceError::io(&from, e))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(mode))
                .map_err(|e| ResourceError::io(&to, e))?;
        } else {
            tracing::warn!(path = %from.display(), "skipping a special file while copying a backup");
        }
    }
    Ok(())
}

/// Gives `path` (and everything under it) to the PostgreSQL OS user; a
/// no-op when we are not root (then everything is ours already).
pub fn chown_tree(path: &Path) -> Result<(), ResourceError> {
    let Some(user) = os_user() else {
        return Ok(());
    };
    let pw = nix::unistd::User::from_name(&user)
        .map_err(|e| ResourceError::Failed(format!("looking up {user}: {e}")))?
        .ok_or_else(|| ResourceError::Invalid(format!("no OS user {user}")))?;
    chown_rec(path, pw.uid.as_raw(), pw.gid.as_raw())
}

fn chown_rec(path: &Path, uid: u32, gid: u32) -> Result<(), ResourceError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| ResourceError::io(path, e))?;
    let meta = fs::symlink_metadata(path).map_err(|e| ResourceError::io(path, e))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| ResourceError::io(path, e))? {
            let entry = entry.map_err(|e| ResourceError::io(path, e))?;
            chown_rec(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Moves the complete `tmp` to `datadir` (0700), replacing an empty
/// `datadir`, and syncs the parent so the rename survives a crash.
pub fn install(tmp: &Path, datadir: &Path) -> Result<(), ResourceError> {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o700))
        .map_err(|e| ResourceError::io(tmp, e))?;
    if datadir.exists() {
        // Only an empty dir gets here (checked before seeding); remove_dir
        // refuses anything else, which is what we want.
        fs::remove_dir(datadir).map_err(|e| ResourceError::io(datadir, e))?;
    }
    fs::rename(tmp, datadir).map_err(|e| ResourceError::io(datadir, e))?;
    if let Some(parent) = datadir.parent() {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| ResourceError::io(parent, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_install_and_stale_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("backup");
        fs::create_dir_all(src.join("base/1")).unwrap();
        fs::write(src.join("PG_VERSION"), "15\n").unwrap();
        fs::write(src.join("base/1/123"), "rel").unwrap();
        fs::set_permissions(src.join("base/1/123"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("base", src.join("link")).unwrap();

        let datadir = dir.path().join("data");
        fs::create_dir(&datadir).unwrap();
        assert!(is_absent_or_empty(&datadir).unwrap());
        let stale = dir.path().join("data.seeding-1");
        fs::create_dir(&stale).unwrap();
        remove_stale(&datadir);
        assert!(!stale.exists());

        let tmp = temp_dir(&datadir);
        assert!(tmp
            .to_string_lossy()
            .ends_with(&format!("data.seeding-{}", std::process::id())));
        create_private(&tmp).unwrap();
        copy_tree(&src, &tmp).unwrap();
        chown_tree(&tmp).unwrap();
        install(&tmp, &datadir).unwrap();
        assert!(!tmp.exists());
        assert_eq!(
            fs::read_to_string(datadir.join("base/1/123")).unwrap(),
            "rel"
        );
        assert_eq!(
            fs::read_link(datadir.join("link")).unwrap(),
            Path::new("base")
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&datadir), 0o700);
        assert_eq!(mode(&datadir.join("base/1/123")), 0o600);
        assert!(!is_absent_or_empty(&datadir).unwrap());
        assert!(is_absent_or_empty(&dir.path().join("nothing")).unwrap());

        // A non-empty data dir is never replaced.
        let tmp = temp_dir(&datadir);
        create_private(&tmp).unwrap();
        assert!(install(&tmp, &datadir).is_err());
        assert!(datadir.join("PG_VERSION").exists());
    }
}
