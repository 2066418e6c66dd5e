//! The backup store (Puppet's filebucket): the old content of every file a
//! run replaces or removes, kept under its sha256 in the state dir, with an
//! index of which path had which content when.
//!
//! Crash safety: a blob is written atomically before its index line, so the
//! index never names a missing blob; a line torn by a kill is skipped when
//! read and never glued to the next one. Retention ([`prune`]) rewrites the
//! index atomically and then deletes the blobs no line names any more.
//! Secrets: blobs are 0600 in 0700 directories and the index holds only
//! metadata (path, sha256, time, size), never content.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::ResourceError;
use crate::stage::Stager;

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One saved version of a file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupEntry {
    pub path: PathBuf,
    pub sha256: String,
    /// Seconds since the epoch.
    pub time: u64,
    pub size: u64,
    /// Permission bits of the file when it was saved (restored with it when
    /// the file is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// Versions kept per path by the automatic retention at the end of a run.
pub const DEFAULT_KEEP_PER_PATH: usize = 10;

/// Days a version is kept by the automatic retention at the end of a run.
pub const DEFAULT_MAX_AGE_DAYS: u64 = 90;

/// What [`prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Index lines removed.
    pub entries_removed: usize,
    /// Index lines kept.
    pub entries_kept: usize,
    /// Blob files deleted (no remaining line names them, or none ever did).
    pub blobs_removed: usize,
    /// Bytes of the deleted blobs.
    pub bytes_freed: u64,
}

/// Content-addressed store under `<state>/backup`.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

impl BackupStore {
    pub fn new(state_dir: &Path) -> Self {
        BackupStore {
            dir: state_dir.join("backup"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, sha: &str) -> PathBuf {
        self.dir.join(&sha[..2]).join(sha)
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.jsonl")
    }

    /// Saves `content` as the old version of `path`; returns its sha256.
    /// The blob is written through `stager`: staged with the write that
    /// replaces `path`, it is on disk before that write's rename.
    pub fn save(
        &self,
        stager: &Stager,
        path: &Path,
        content: &[u8],
    ) -> Result<String, ResourceError> {
        let sha = sha256_hex(content);
        let blob = self.blob_path(&sha);
        if !blob.exists() {
            let parent = blob.parent().expect("blob has a parent");
            create_private_dir(parent)?;
            // A kill during an earlier save of this blob left a temp here.
            stager.clean_stale_temps(parent);
            stager.write_atomic(&blob, content, Some(0o600))?;
        }
        let entry = BackupEntry {
            path: path.to_path_buf(),
            sha256: sha.clone(),
            time: now_secs(),
            size: content.len() as u64,
            mode: fs::metadata(path)
                .ok()
                .map(|m| m.permissions().mode() & 0o7777),
        };
        let line = serde_json::to_string(&entry).expect("entry serializes") + "\n";
        let index = self.index_path();
        // The index names a blob only once the blob is on the disk: a staged
        // blob's line is appended after the batch commits (a kill in between
        // leaves the blob unnamed, which a prune removes, never a line
        // naming nothing).
        if !stager.is_staging() {
            append_index_line(&index, line).map_err(|e| ResourceError::io(&index, e))?;
            return Ok(sha);
        }
        stager.after_commit(move || {
            if !blob.exists() {
                return; // its write did not commit
            }
            if let Err(e) = append_index_line(&index, line) {
                tracing::warn!("backup index {}: {e}", index.display());
            }
        });
        Ok(sha)
    }

    /// Every saved version, oldest first, optionally only those of `path`.
    pub fn list(&self, path: Option<&Path>) -> Result<Vec<BackupEntry>, ResourceError> {
        let index = self.index_path();
        let text = match fs::read_to_string(&index) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(ResourceError::io(&index, e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<BackupEntry>(l).ok())
            .filter(|e| path.is_none_or(|p| e.path == p))
            .collect())
    }

    /// The content saved under `sha`.
    pub fn get(&self, sha: &str) -> Result<Vec<u8>, ResourceError> {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ResourceError::Invalid(format!("not a sha256: {sha}")));
        }
        let blob = self.blob_path(sha);
        fs::read(&blob).map_err(|e| ResourceError::io(&blob, e))
    }

    /// The saved version of `path` that `sha` names: the full sha256 or a
    /// unique prefix of at least 8 hex digits; `None` = the newest one.
    /// A sha that is not a version of `path` is refused.
    pub fn version_of(&self, path: &Path, sha: Option<&str>) -> Result<BackupEntry, ResourceError> {
        let versions = self.list(Some(path))?;
        let Some(sha) = sha else {
            return versions.into_iter().max_by_key(|e| e.time).ok_or_else(|| {
                ResourceError::Failed(format!("no saved version of {}", path.display()))
            });
        };
        let sha = sha.to_ascii_lowercase();
        if sha.len() < 8 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ResourceError::Invalid(format!(
                "'{sha}' is not a sha256 (give at least 8 hex digits)"
            )));
        }
        let matching: BTreeSet<&str> = versions
            .iter()
            .filter(|e| e.sha256.starts_with(&sha))
            .map(|e| e.sha256.as_str())
            .collect();
        match matching.len() {
            0 => Err(ResourceError::Failed(format!(
                "{sha} is not a saved version of {} (see `agent backup list {}`)",
                path.display(),
                path.display()
            ))),
            1 => Ok(versions
                .iter()
                .filter(|e| matching.contains(e.sha256.as_str()))
                .max_by_key(|e| e.time)
                .cloned()
                .expect("one match")),
            _ => Err(ResourceError::Invalid(format!(
                "{sha} is ambiguous for {}: give more digits",
                path.display()
            ))),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when the file is empty or its last byte is a newline.
fn ends_with_newline(f: &mut fs::File) -> std::io::Result<bool> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Retention: drops every saved version that is not among the newest
/// `keep_per_path` of its path, or is older than `max_age` (`None` turns a
/// rule off), then deletes the blobs no remaining version names, blobs no
/// version ever named (a run killed between blob and index) and temp files
/// of killed saves. The caller holds the run lock; never called in noop.
pub fn prune(
    store: &BackupStore,
    keep_per_path: Option<usize>,
    max_age: Option<Duration>,
) -> Result<PruneStats, ResourceError> {
    prune_at(store, keep_per_path, max_age, now_secs())
}

/// [`prune`] as if the time were `now` (seconds since the epoch).
pub fn prune_at(
    store: &BackupStore,
    keep_per_path: Option<usize>,
    max_age: Option<Duration>,
    now: u64,
) -> Result<PruneStats, ResourceError> {
    let mut stats = PruneStats::default();
    if !store.dir.is_dir() {
        return Ok(stats);
    }
    let all = store.list(None)?;
    let cutoff = max_age.map(|a| now.saturating_sub(a.as_secs()));
    // Newest first within each path; equal times keep index order (later = newer).
    let mut by_path: BTreeMap<&Path, Vec<(usize, &BackupEntry)>> = BTreeMap::new();
    for (i, e) in all.iter().enumerate() {
        by_path.entry(e.path.as_path()).or_default().push((i, e));
    }
    let mut keep = vec![false; all.len()];
    for versions in by_path.values_mut() {
        versions.sort_by_key(|&(i, e)| std::cmp::Reverse((e.time, i)));
        for (rank, (i, e)) in versions.iter().enumerate() {
            let too_many = keep_per_path.is_some_and(|k| rank >= k);
            let too_old = cutoff.is_some_and(|c| e.time < c);
            keep[*i] = !too_many && !too_old;
        }
    }
    let kept: Vec<&BackupEntry> = all
        .iter()
        .zip(&keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect();
    stats.entries_kept = kept.len();
    stats.entries_removed = all.len() - kept.len();
    let index = store.index_path();
    if stats.entries_removed > 0 || index_has_junk(&index, all.len()) {
        let text: String = kept
            .iter()
            .map(|e| serde_json::to_string(e).expect("entry serializes") + "\n")
            .collect();
        crate::atomic::write_atomic(&index, text.as_bytes(), Some(0o600))?;
    }
    let live: BTreeSet<&str> = kept.iter().map(|e| e.sha256.as_str()).collect();
    let subdirs = fs::read_dir(&store.dir).map_err(|e| ResourceError::io(&store.dir, e))?;
    for sub in subdirs.flatten() {
        let sub_path = sub.path();
        if !sub.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        crate::atomic::clean_stale_temps(&sub_path);
        let Ok(blobs) = fs::read_dir(&sub_path) else {
            continue;
        };
        for blob in blobs.flatten() {
            let name = blob.file_name().to_string_lossy().into_owned();
            if is_sha(&name) && !live.contains(name.as_str()) {
                let size = blob.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(blob.path()).is_ok() {
                    stats.blobs_removed += 1;
                    stats.bytes_freed += size;
                }
            }
        }
        // Empty fan-out dirs go too; a non-empty one is kept (remove_dir fails).
        let _ = fs::remove_dir(&sub_path);
    }
    crate::atomic::clean_stale_temps(&store.dir);
    Ok(stats)
}

fn is_sha(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Appends one entry line to the index, on a line of its own.
fn append_index_line(index: &Path, mut line: String) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(index)?;
    // A run killed mid-append left a line without its newline: start on
    // a fresh line so that this entry is not lost with the torn one.
    if !ends_with_newline(&mut f)? {
        line.insert(0, '\n');
    }
    f.write_all(line.as_bytes())
}

/// True when the index holds lines that do not parse (torn by a kill):
/// rewriting it drops them.
fn index_has_junk(index: &Path, parsed: usize) -> bool {
    fs::read_to_string(index)
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() != parsed)
        .unwrap_or(false)
}

/// Creates a directory (and parents) readable only by its owner. An
/// existing one that we own is tightened to 0700 (a state dir made by hand
/// or by a package with 0755 would show backups' names and sizes); a shared
/// sticky dir such as /tmp, or one owned by someone else, is left alone.
pub fn create_private_dir(dir: &Path) -> Result<(), ResourceError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let io = |e| ResourceError::io(dir, e);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let meta = fs::metadata(dir).map_err(io)?;
    let mode = meta.mode() & 0o7777;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw();
    if ours && mode & 0o077 != 0 && mode & 0o1000 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_blob_is_named_in_the_index_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        let stager = Stager::default();
        stager.begin();
        stager.stage_for(Some(0));
        let sha = store
            .save(&stager, Path::new("/etc/a"), b"first\n")
            .unwrap();
        stager.stage_for(None);
        // Killed here: the blob is only a temp, and no line names it.
        assert!(store.list(None).unwrap().is_empty());
        assert!(!store.blob_path(&sha).exists());
        stager.commit();
        assert!(store.blob_path(&sha).is_file());
        let all = store.list(None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].sha256, sha);
        // A batch that never commits (the kill) leaves no line behind.
        let abandoned = Stager::default();
        abandoned.begin();
        abandoned.stage_for(Some(1));
        store
            .save(&abandoned, Path::new("/etc/b"), b"second\n")
            .unwrap();
        drop(abandoned);
        assert_eq!(store.list(None).unwrap().len(), 1);
    }

    #[test]
    fn save_list_get() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        let sha = store
            .save(&Stager::default(), Path::new("/etc/hosts"), b"old\n")
            .unwrap();
        assert_eq!(store.get(&sha).unwrap(), b"old\n");
        let all = store.list(Some(Path::new("/etc/hosts"))).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].sha256, sha);
        assert!(store.list(Some(Path::new("/other"))).unwrap().is_empty());
    }

    fn blobs(store: &BackupStore) -> BTreeSet<String> {
        walk(store.dir())
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| is_sha(n))
            .collect()
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn prune_keeps_the_newest_per_path_and_deletes_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        let a = Path::new("/etc/a");
        let shas: Vec<String> = (0..5)
            .map(|i| {
                store
                    .save(&Stager::default(), a, format!("a{i}").as_bytes())
                    .unwrap()
            })
            .collect();
        // /etc/b once had the content a0: that blob must survive.
        store
            .save(&Stager::default(), Path::new("/etc/b"), b"a0")
            .unwrap();
        let stats = prune_at(&store, Some(2), None, now_secs()).unwrap();
        assert_eq!(stats.entries_removed, 3);
        assert_eq!(stats.entries_kept, 3);
        assert_eq!(stats.blobs_removed, 2, "a1 and a2 go, a0 is /etc/b's");
        let left: Vec<String> = store
            .list(Some(a))
            .unwrap()
            .into_iter()
            .map(|e| e.sha256)
            .collect();
        assert_eq!(left, [shas[3].clone(), shas[4].clone()]);
        let want: BTreeSet<String> = [&shas[0], &shas[3], &shas[4]]
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(blobs(&store), want);
        assert_eq!(store.get(&shas[0]).unwrap(), b"a0");
        // Nothing more to do: a second prune changes nothing.
        assert_eq!(
            prune_at(&store, Some(2), None, now_secs())
                .unwrap()
                .entries_removed,
            0
        );
    }

    #[test]
    fn prune_by_age_and_of_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        assert_eq!(prune(&store, Some(1), None).unwrap(), PruneStats::default());
        store
            .save(&Stager::default(), Path::new("/x"), b"old")
            .unwrap();
        store
            .save(&Stager::default(), Path::new("/x"), b"new")
            .unwrap();
        let day = Duration::from_secs(86_400);
        let now = now_secs();
        assert_eq!(
            prune_at(&store, None, Some(day), now)
                .unwrap()
                .entries_removed,
            0
        );
        let stats = prune_at(&store, None, Some(day), now + 2 * 86_400).unwrap();
        assert_eq!((stats.entries_removed, stats.blobs_removed), (2, 2));
        assert!(store.list(None).unwrap().is_empty());
        assert!(blobs(&store).is_empty());
    }

    #[test]
    fn a_torn_index_line_loses_nothing_else_and_prune_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        store
            .save(&Stager::default(), Path::new("/x"), b"1")
            .unwrap();
        let index = store.dir().join("index.jsonl");
        let mut f = fs::OpenOptions::new().append(true).open(&index).unwrap();
        f.write_all(br#"{"path":"/x","sha2"#).unwrap();
        store
            .save(&Stager::default(), Path::new("/x"), b"2")
            .unwrap();
        assert_eq!(
            store.list(None).unwrap().len(),
            2,
            "the entry after the torn line is read"
        );
        prune(&store, None, None).unwrap();
        let text = fs::read_to_string(&index).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(
            fs::metadata(&index).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn prune_removes_orphan_blobs_and_temps_of_killed_saves() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        let sha = store
            .save(&Stager::default(), Path::new("/x"), b"kept")
            .unwrap();
        let orphan = sha256_hex(b"orphan");
        let sub = store.dir().join(&orphan[..2]);
        create_private_dir(&sub).unwrap();
        fs::write(sub.join(&orphan), b"orphan").unwrap();
        let temp = sub.join(format!(".{orphan}{}.99", crate::atomic::TEMP_MARK));
        fs::write(&temp, b"half").unwrap();
        let stats = prune(&store, None, None).unwrap();
        assert_eq!(stats.blobs_removed, 1);
        assert_eq!(stats.bytes_freed, 6);
        assert!(!temp.exists());
        assert_eq!(store.get(&sha).unwrap(), b"kept");
    }

    #[test]
    fn version_of_picks_the_newest_or_a_named_sha_of_that_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        let x = Path::new("/etc/x");
        let one = store.save(&Stager::default(), x, b"one").unwrap();
        let two = store.save(&Stager::default(), x, b"two").unwrap();
        let other = store
            .save(&Stager::default(), Path::new("/etc/y"), b"y")
            .unwrap();
        assert_eq!(store.version_of(x, None).unwrap().sha256, two);
        assert_eq!(store.version_of(x, Some(&one[..10])).unwrap().sha256, one);
        assert_eq!(
            store
                .version_of(x, Some(&one.to_uppercase()))
                .unwrap()
                .sha256,
            one
        );
        let err = store.version_of(x, Some(&other)).unwrap_err().to_string();
        assert!(err.contains("not a saved version of /etc/x"), "{err}");
        assert!(store.version_of(x, Some("abc")).is_err());
        assert!(store.version_of(Path::new("/none"), None).is_err());
    }

    #[test]
    fn blobs_and_index_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(&dir.path().join("state"));
        let sha = store
            .save(&Stager::default(), Path::new("/s"), b"pw=secret")
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.blob_path(&sha)), 0o600);
        assert_eq!(mode(store.blob_path(&sha).parent().unwrap()), 0o700);
        assert_eq!(mode(store.dir()), 0o700);
        // A state dir that already existed with 0755 is tightened.
        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);
        let index = fs::read_to_string(store.dir().join("index.jsonl")).unwrap();
        assert!(!index.contains("secret"), "{index}");
    }
}
