//! `agent backup list|restore|prune`: the user's side of the backup store
//! (Puppet's filebucket) that every run fills with the old content of the
//! files it replaces.
//!
//! Paths on the command line are node paths (`/etc/hosts`), mapped under
//! `--root` and confined like every managed path. Listing prints metadata
//! only (time, sha256, size, path), never content: a saved file may hold a
//! secret. A restore writes through `stage::replace_file` (atomic, with
//! the current content saved first, so a restore can itself be undone) and
//! holds the run lock, as does prune.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use resources::backup::{self, BackupEntry, BackupStore, PruneStats};
use resources::{atomic, confine, stage};

use crate::engine::report;
use crate::settings::Settings;

/// Seconds a restore or prune waits for a running apply to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// `agent backup ...`
#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// List saved versions, newest first: time, sha256, size, path.
    List {
        /// Only the versions of this node path (e.g. /etc/hosts).
        path: Option<PathBuf>,
    },
    /// Put a saved version back (default: the newest); the current content
    /// is saved first, so the restore can be undone the same way.
    Restore {
        /// Node path of the file (e.g. /etc/hosts).
        path: PathBuf,
        /// The version to restore: its sha256, or a unique prefix (8+ digits).
        #[arg(long)]
        sha: Option<String>,
    },
    /// Drop old versions and the blobs no version names any more.
    Prune {
        /// Versions kept per path (newest first).
        #[arg(long, value_name = "N", default_value_t = backup::DEFAULT_KEEP_PER_PATH)]
        keep: usize,
        /// Drop versions older than DAYS (0 = no age limit).
        #[arg(long, value_name = "DAYS", default_value_t = backup::DEFAULT_MAX_AGE_DAYS)]
        max_age: u64,
    },
}

/// Runs one `agent backup` subcommand; the exit code.
pub fn run(settings: &Settings, cmd: BackupCommand) -> Result<u8> {
    let store = BackupStore::new(&settings.state.dir);
    let root = settings.root_path();
    match cmd {
        BackupCommand::List { path } => {
            let lines = list(&store, &root, path.as_deref())?;
            if lines.is_empty() {
                let what = path.map_or("any file".to_string(), |p| p.display().to_string());
                report::warn(&format!("no saved versions of {what}"));
            }
            for line in lines {
                report::print(&line);
            }
            Ok(0)
        }
        BackupCommand::Restore { path, sha } => {
            let _lock = settings.state.lock(LOCK_WAIT)?;
            report::print(&restore(&store, &root, &path, sha.as_deref())?);
            Ok(0)
        }
        BackupCommand::Prune { keep, max_age } => {
            let _lock = settings.state.lock(LOCK_WAIT)?;
            let max_age = (max_age > 0).then(|| Duration::from_secs(max_age * 86_400));
            let stats = backup::prune(&store, Some(keep), max_age)?;
            report::print(&describe_prune(&stats));
            Ok(0)
        }
    }
}

/// The listing lines, newest first, of every version or those of `node_path`.
pub fn list(store: &BackupStore, root: &Path, node_path: Option<&Path>) -> Result<Vec<String>> {
    let disk = node_path.map(|p| disk_path(root, p)).transpose()?;
    let mut entries = store.list(disk.as_deref())?;
    // Newest first; equal seconds: the later index line is the newer.
    entries.reverse();
    entries.sort_by_key(|e| std::cmp::Reverse(e.time));
    Ok(entries.iter().map(|e| line(root, e)).collect())
}

fn line(root: &Path, e: &BackupEntry) -> String {
    format!(
        "{}  {}  {:>10}  {}",
        format_time(e.time),
        e.sha256,
        e.size,
        node_path(root, &e.path).display()
    )
}

/// Restores a saved version of `node_path` (the newest when `sha` is None);
/// returns the message to print.
pub fn restore(
    store: &BackupStore,
    root: &Path,
    node_path: &Path,
    sha: Option<&str>,
) -> Result<String> {
    let disk = disk_path(root, node_path)?;
    // The store knows on-disk paths; the user gave a node path.
    let entry = store.version_of(&disk, sha).map_err(|e| {
        let text = e.to_string();
        anyhow::anyhow!(
            "{}",
            text.replace(
                &disk.display().to_string(),
                &node_path.display().to_string()
            )
        )
    })?;
    let content = store.get(&entry.sha256)?;
    if backup::sha256_hex(&content) != entry.sha256 {
        anyhow::bail!(
            "the saved blob {} is damaged (its sha256 differs); nothing restored",
            entry.sha256
        );
    }
    let current = atomic::read_optional(&disk)?;
    let short = &entry.sha256[..12];
    if current.as_deref() == Some(content.as_slice()) {
        return Ok(format!(
            "{} already has version {short}; nothing to do",
            node_path.display()
        ));
    }
    let parent = disk.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        anyhow::bail!(
            "cannot restore {}: its directory does not exist",
            node_path.display()
        );
    }
    // An existing file keeps its mode; a removed one gets the saved mode, or
    // 0600 when unknown (it may hold a secret).
    let mode = match current {
        Some(_) => None,
        None => Some(entry.mode.unwrap_or(0o600)),
    };
    let cx = resources::Context::new(root, store.clone());
    stage::replace_file(&cx, &disk, &content, mode)
        .with_context(|| format!("restoring {}", node_path.display()))?;
    let undo = match &current {
        Some(old) => format!(
            "; the content it replaced is saved as {} (agent backup restore {} --sha {})",
            &backup::sha256_hex(old)[..12],
            node_path.display(),
            &backup::sha256_hex(old)[..12]
        ),
        None => String::new(),
    };
    Ok(format!(
        "restored {} to version {short} of {} ({} bytes){undo}",
        node_path.display(),
        format_time(entry.time),
        entry.size
    ))
}

fn describe_prune(s: &PruneStats) -> String {
    format!(
        "pruned {} saved versions ({} kept); deleted {} blobs, {} bytes freed",
        s.entries_removed, s.entries_kept, s.blobs_removed, s.bytes_freed
    )
}

/// Where the store knows a node path: the path under the root, confined.
fn disk_path(root: &Path, node_path: &Path) -> Result<PathBuf> {
    confine::confine(root, node_path)
        .with_context(|| format!("backup path {}", node_path.display()))
}

/// The node path of a stored (on-disk) path: the root prefix removed.
fn node_path(root: &Path, disk: &Path) -> PathBuf {
    match disk.strip_prefix(root) {
        Ok(rel) if root != Path::new("/") => Path::new("/").join(rel),
        _ => disk.to_path_buf(),
    }
}

/// `2024-05-01T12:00:00Z` (UTC) from seconds since the epoch.
pub fn format_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use resources::stage::Stager;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    struct T {
        _dir: tempfile::TempDir,
        root: PathBuf,
        store: BackupStore,
    }

    fn setup() -> T {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        let store = BackupStore::new(&dir.path().join("state"));
        T {
            _dir: dir,
            root,
            store,
        }
    }

    #[test]
    fn times_are_utc_iso8601() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn list_is_newest_first_with_node_paths_and_no_content() {
        let t = setup();
        let hosts = t.root.join("etc/hosts");
        t.store
            .save(&Stager::default(), &hosts, b"first-content\n")
            .unwrap();
        let second = t
            .store
            .save(&Stager::default(), &hosts, b"second-content\n")
            .unwrap();
        t.store
            .save(&Stager::default(), &t.root.join("etc/other"), b"o")
            .unwrap();
        let lines = list(&t.store, &t.root, Some(Path::new("/etc/hosts"))).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(&second), "newest first: {lines:?}");
        assert!(lines[0].ends_with("  /etc/hosts"), "{}", lines[0]);
        assert!(lines[0].contains(" 15  "), "size: {}", lines[0]);
        let all = list(&t.store, &t.root, None).unwrap().join("\n");
        assert!(all.contains("/etc/other") && !all.contains(t.root.to_str().unwrap()));
        assert!(!all.contains("content"), "listing shows no content: {all}");
        assert!(list(&t.store, &t.root, Some(Path::new("/../x"))).is_err());
    }

    #[test]
    fn restore_newest_saves_current_first_and_can_be_undone() {
        let t = setup();
        let p = t.root.join("etc/app.conf");
        fs::write(&p, "v1\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let cx = resources::Context::new(&t.root, t.store.clone());
        stage::replace_file(&cx, &p, b"v2\n", None).unwrap();
        let msg = restore(&t.store, &t.root, Path::new("/etc/app.conf"), None).unwrap();
        assert!(
            msg.starts_with("restored /etc/app.conf to version"),
            "{msg}"
        );
        assert_eq!(fs::read(&p).unwrap(), b"v1\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // The v2 that was replaced is now the newest version: restoring again undoes.
        restore(&t.store, &t.root, Path::new("/etc/app.conf"), None).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"v2\n");
        let v1 = backup::sha256_hex(b"v1\n");
        restore(
            &t.store,
            &t.root,
            Path::new("/etc/app.conf"),
            Some(&v1[..8]),
        )
        .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"v1\n");
        let again = restore(&t.store, &t.root, Path::new("/etc/app.conf"), Some(&v1)).unwrap();
        assert!(again.contains("nothing to do"), "{again}");
        let names: Vec<String> = fs::read_dir(t.root.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["app.conf"], "no temp file left");
    }

    #[test]
    fn restore_refuses_foreign_sha_escapes_and_damaged_blobs() {
        let t = setup();
        let a = t.root.join("etc/a");
        let b = t.root.join("etc/b");
        fs::write(&a, "a-now").unwrap();
        t.store.save(&Stager::default(), &a, b"a-old").unwrap();
        let b_sha = t.store.save(&Stager::default(), &b, b"b-old").unwrap();
        let err = restore(&t.store, &t.root, Path::new("/etc/a"), Some(&b_sha))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a saved version of /etc/a "), "{err}");
        assert!(!err.contains(t.root.to_str().unwrap()), "{err}");
        assert_eq!(fs::read(&a).unwrap(), b"a-now", "nothing written");
        assert!(restore(&t.store, &t.root, Path::new("/etc/../etc/a"), None).is_err());
        std::os::unix::fs::symlink("/etc", t.root.join("out")).unwrap();
        assert!(restore(&t.store, &t.root, Path::new("/out/passwd"), None).is_err());
        // A blob altered on disk is refused rather than written.
        let a_sha = backup::sha256_hex(b"a-old");
        let blob = t.store.dir().join(&a_sha[..2]).join(&a_sha);
        fs::write(&blob, "tampered").unwrap();
        let err = restore(&t.store, &t.root, Path::new("/etc/a"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("damaged"), "{err}");
        assert_eq!(fs::read(&a).unwrap(), b"a-now");
    }

    #[test]
    fn restore_of_a_removed_file_uses_the_saved_mode() {
        let t = setup();
        let p = t.root.join("etc/gone");
        fs::write(&p, "secret-ish").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        t.store.save(&Stager::default(), &p, b"secret-ish").unwrap();
        fs::remove_file(&p).unwrap();
        restore(&t.store, &t.root, Path::new("/etc/gone"), None).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"secret-ish");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
