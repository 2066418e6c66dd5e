//! Staged writes: the [`Stager`] a [`Context`] hands to the types that
//! write files, so a run's writes can share one sync.
//!
//! A run that writes many files would spend most of its time in fsync (two
//! per file). So the engine may open a *batch* ([`Stager::begin`]) and let
//! the writes of chosen resources be staged ([`Stager::stage_for`]):
//! [`Stager::write_atomic`] then writes the temp file and stops;
//! [`Stager::commit`] syncs all temps at once (one `syncfs` per
//! filesystem), renames each over its target, then fsyncs each touched
//! directory once. The guarantee is unchanged: a reader sees the old or
//! the new content, never part of it, and after a crash each file is old
//! or new, because no rename happens before its data is on disk. While
//! staged, a target still shows its old content on disk;
//! [`Stager::read_optional`], [`Stager::current_path`] and
//! [`Stager::write_atomic`] see the staged content, so a later writer of
//! the same file (the `host` entries of one hosts file) builds on it. The
//! engine commits before anything that could look at the disk otherwise.
//!
//! The batch belongs to the `Context` (one per run), not to a thread: two
//! runs in one process (tests, a daemon) never see each other's staged
//! files, and the helper threads that check ahead for the run see its own.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::atomic::{self, own_temp_suffix, temp_path, write_with_mode};
use crate::core::{Context, ResourceError};

/// Writes that failed to commit: the resources (engine indices) whose
/// changes they carried, and why.
pub type Uncommitted = Vec<(Vec<usize>, ResourceError)>;

/// A staged write: `tmp` holds the new content of `target`.
struct Pending {
    /// Its temp is `temp_path(target)` (not kept: a first run stages
    /// thousands).
    target: PathBuf,
    /// The filesystem of the temp (one `syncfs` each).
    dev: u64,
    /// Resources (engine indices) whose changes it carries.
    owners: Vec<usize>,
}

/// A step run once the staged writes are committed.
type AfterCommit = Box<dyn FnOnce() + Send + Sync>;

/// The staged writes of one run.
#[derive(Default)]
struct Batch {
    /// The resource whose writes are being staged now, if any.
    owner: Option<usize>,
    pending: Vec<Pending>,
    /// target → index in `pending`.
    index: HashMap<PathBuf, usize>,
    /// Every ancestor directory of a pending target.
    dirs: HashSet<PathBuf>,
    owners: HashSet<usize>,
    /// Work that must follow the commit of the staged writes (the backup
    /// index line of a staged blob: the blob durable first, then its line).
    after_commit: Vec<AfterCommit>,
    /// Directories already cleaned of stale temps in this batch.
    cleaned: HashSet<PathBuf>,
}

/// Where the writes of a run's resources go: straight to the disk (atomic,
/// durable) unless a batch is open and the current resource's writes are
/// staged. Shared by the run and its helper threads, hence the lock; only
/// the run itself writes.
#[derive(Default)]
pub struct Stager {
    batch: RwLock<Option<Batch>>,
}

impl Stager {
    /// `f` on the open batch, if any.
    fn with_batch<T>(&self, f: impl FnOnce(&mut Batch) -> T) -> Option<T> {
        self.batch
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(f)
    }

    /// `f` on the open batch, if any, for a look only (helper threads read
    /// at the same time).
    fn peek<T>(&self, f: impl FnOnce(&Batch) -> T) -> Option<T> {
        self.batch
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }

    /// Opens a batch (writes are staged only inside
    /// [`Stager::stage_for`] `(Some(owner))`).
    pub fn begin(&self) {
        *self.batch.write().unwrap_or_else(|e| e.into_inner()) = Some(Batch::default());
    }

    /// Stages the writes of resource `owner` from now on (`None`: write
    /// through).
    pub fn stage_for(&self, owner: Option<usize>) {
        self.with_batch(|b| b.owner = owner);
    }

    /// True while the current resource's writes are staged (they reach
    /// the disk at [`Stager::commit`]).
    pub fn is_staging(&self) -> bool {
        self.peek(|b| b.owner.is_some()).unwrap_or(false)
    }

    fn is_staged(&self, path: &Path) -> bool {
        self.peek(|b| b.index.contains_key(path)).unwrap_or(false)
    }

    /// True when resource `owner` has writes waiting for
    /// [`Stager::commit`].
    pub fn owns_pending(&self, owner: usize) -> bool {
        self.peek(|b| b.owners.contains(&owner)).unwrap_or(false)
    }

    /// True when anything is staged.
    pub fn has_pending(&self) -> bool {
        self.peek(|b| !b.pending.is_empty()).unwrap_or(false)
    }

    /// True when `path` is a staged target or a directory holding one.
    pub fn touches(&self, path: &Path) -> bool {
        self.peek(|b| b.index.contains_key(path) || b.dirs.contains(path))
            .unwrap_or(false)
    }

    /// Where the current content of `path` is: its staged temp, else `path`.
    pub fn current_path(&self, path: &Path) -> PathBuf {
        self.peek(|b| b.index.get(path).map(|&i| temp_path(&b.pending[i].target)))
            .flatten()
            .unwrap_or_else(|| path.to_path_buf())
    }

    /// Current content of a file (staged content included); `None` when it
    /// does not exist.
    pub fn read_optional(&self, path: &Path) -> Result<Option<Vec<u8>>, ResourceError> {
        atomic::read_optional(&self.current_path(path))
    }

    /// [`atomic::write_atomic`], or, while the current resource's writes
    /// are staged, the temp file written and left for [`Stager::commit`].
    /// Without `mode` the current (maybe staged) file's mode is kept.
    pub fn write_atomic(
        &self,
        path: &Path,
        content: &[u8],
        mode: Option<u32>,
    ) -> Result<(), ResourceError> {
        let mode = mode.unwrap_or_else(|| atomic::kept_mode(&self.current_path(path)));
        if self.is_staging() {
            return self.stage(path, content, mode);
        }
        atomic::write_atomic(path, content, Some(mode))
    }

    /// [`atomic::clean_stale_temps`]; inside a batch each directory is
    /// cleaned once.
    pub fn clean_stale_temps(&self, dir: &Path) {
        let first = self
            .with_batch(|b| b.cleaned.insert(dir.to_path_buf()))
            .unwrap_or(true);
        if first {
            atomic::clean_stale_temps(dir);
        }
    }

    /// Writes the temp of `path` (no fsync) and records it.
    ///
    /// A second write of a staged target (the next `host` entry of one
    /// hosts file) goes to a spare beside the temp, which is then swapped
    /// with the temp by `renameat2(RENAME_EXCHANGE)`: a failed write leaves
    /// the previous staged content whole, and no inode is freed per write
    /// (a rename over the temp freed one each time, and this disk waits for
    /// the discard of its blocks: half a millisecond per `host` entry). The
    /// spare goes at the commit.
    fn stage(&self, path: &Path, content: &[u8], mode: u32) -> Result<(), ResourceError> {
        let tmp = temp_path(path);
        let again = self.is_staged(path);
        let result = if again {
            let spare = spare_path(path);
            (|| {
                let dev = atomic::overwrite_with(&spare, mode, |w| w.write_all(content))?
                    .metadata()?
                    .dev();
                atomic::swap_in(&spare, &tmp)?;
                Ok(dev)
            })()
            .inspect_err(|_| {
                let _ = fs::remove_file(&spare);
            })
        } else {
            write_with_mode(&tmp, content, mode)
                .and_then(|f| f.metadata())
                .map(|m| m.dev())
                .inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
        };
        let dev = result.map_err(|e| ResourceError::io(path, e))?;
        let recorded = self.with_batch(|b| {
            // `staging()` said there is an owner; only the run changes it.
            let Some(owner) = b.owner else {
                return false;
            };
            b.owners.insert(owner);
            match b.index.get(path) {
                Some(&i) => b.pending[i].owners.push(owner),
                None => {
                    b.index.insert(path.to_path_buf(), b.pending.len());
                    b.pending.push(Pending {
                        target: path.to_path_buf(),
                        dev,
                        owners: vec![owner],
                    });
                    let mut dir = path.parent();
                    while let Some(d) = dir {
                        if !b.dirs.insert(d.to_path_buf()) {
                            break;
                        }
                        dir = d.parent();
                    }
                }
            }
            true
        });
        if recorded == Some(true) {
            Ok(())
        } else {
            let _ = fs::remove_file(&tmp);
            Err(ResourceError::Failed(format!(
                "{}: the batch closed while its write was staged",
                path.display()
            )))
        }
    }

    /// Makes every staged write durable and visible: sync the temps, rename
    /// each over its target, fsync each touched directory. Returns the
    /// owners of the writes that failed, with the error; those targets keep
    /// their old content (or, for a directory fsync failure, have the new
    /// one but maybe not durably). The batch stays open.
    pub fn commit(&self) -> Uncommitted {
        let (pending, after) = self
            .with_batch(|b| {
                b.index.clear();
                b.dirs.clear();
                b.owners.clear();
                (
                    std::mem::take(&mut b.pending),
                    std::mem::take(&mut b.after_commit),
                )
            })
            .unwrap_or_default();
        let failed = commit_pending(pending);
        for step in after {
            step();
        }
        failed
    }

    /// Runs `step` once what is staged now is committed, when the current
    /// resource's writes are staged; else at once. (A kill in between
    /// leaves the step undone, never done before the writes it follows.)
    pub fn after_commit(&self, step: impl FnOnce() + Send + Sync + 'static) {
        let mut step: Option<AfterCommit> = Some(Box::new(step));
        self.with_batch(|b| {
            if b.owner.is_some() {
                if let Some(s) = step.take() {
                    b.after_commit.push(s);
                }
            }
        });
        if let Some(step) = step {
            step();
        }
    }

    /// Commits what is staged and closes the batch.
    pub fn end(&self) -> Uncommitted {
        let failed = self.commit();
        *self.batch.write().unwrap_or_else(|e| e.into_inner()) = None;
        failed
    }
}

/// Replaces a file's content (with a backup of the old content in the
/// state dir's store), as the `apply` of every content-managing type does,
/// through the context's stager.
pub fn replace_file(
    cx: &Context,
    path: &Path,
    content: &[u8],
    mode: Option<u32>,
) -> Result<(), ResourceError> {
    replace_file_owned(cx, path, content, mode, None)
}

/// [`replace_file`] with the new file owned by `owner` (uid, gid) before
/// it takes the place of the old one: the temp file is chowned, never the
/// live file after the rename (a kill in between would leave the content
/// under the wrong owner).
pub fn replace_file_owned(
    cx: &Context,
    path: &Path,
    content: &[u8],
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
) -> Result<(), ResourceError> {
    let stager = cx.stager();
    // Staged content is this run's own intermediate state: the content on
    // disk was saved when the run first replaced it.
    if !stager.is_staged(path) {
        if let Some(old) = stager.read_optional(path)? {
            cx.backup.save(stager, path, &old)?;
        }
    }
    // A run killed mid-write left its temp beside the target; the target is
    // then unchanged, so the next run comes back here and removes it.
    if let Some(dir) = path.parent() {
        stager.clean_stale_temps(dir);
    }
    let Some((uid, gid)) = owner else {
        return stager.write_atomic(path, content, mode);
    };
    if !stager.is_staging() {
        let mode = mode.unwrap_or_else(|| atomic::kept_mode(path));
        return atomic::write_atomic_owned(path, content, Some(mode), Some((uid, gid)));
    }
    // Staged: the temp waits for the commit's rename; own it now.
    let mode = mode.unwrap_or_else(|| atomic::kept_mode(&stager.current_path(path)));
    stager.write_atomic(path, content, Some(mode))?;
    let tmp = stager.current_path(path);
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .map_err(|e| ResourceError::io(path, e))
}

/// Name of the spare beside the temp of a target staged more than once:
/// `.<name>.next.agent-tmp.<pid>` (ends like the temp, so this process's
/// stale-temp sweep leaves it alone).
fn spare_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".next");
    name.push(own_temp_suffix());
    path.with_file_name(name)
}

/// Up to this many staged files are fsynced one by one: cheaper than a
/// `syncfs`, which also flushes everyone else's dirty data.
const FSYNC_EACH_MAX: usize = 4;

/// The work of [`Stager::commit`], on the writes taken out of the batch.
fn commit_pending(pending: Vec<Pending>) -> Uncommitted {
    if pending.is_empty() {
        return vec![];
    }
    let mut failed = Vec::new();
    let started = std::time::Instant::now();
    let files = pending.len();
    // 1. Data on disk before any rename.
    let mut bad_devs: HashMap<u64, io::Error> = HashMap::new();
    if pending.len() <= FSYNC_EACH_MAX {
        for p in &pending {
            if let Err(e) = fs::File::open(temp_path(&p.target)).and_then(|f| f.sync_all()) {
                bad_devs.insert(p.dev, e);
            }
        }
    } else {
        let mut seen = HashSet::new();
        for p in &pending {
            if seen.insert(p.dev) {
                if let Err(e) = syncfs(&temp_path(&p.target)) {
                    bad_devs.insert(p.dev, e);
                }
            }
        }
    }
    let synced = started.elapsed();
    // 2. Renames, in staging order; 3. each directory once.
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut dir_owners: HashMap<PathBuf, Vec<usize>> = HashMap::new();
    for p in pending {
        let result = match bad_devs.get(&p.dev) {
            Some(e) => Err(io::Error::new(e.kind(), format!("sync failed: {e}"))),
            None => fs::rename(temp_path(&p.target), &p.target),
        };
        if p.owners.len() > 1 {
            // Staged more than once: its spare (an earlier version) goes too.
            let _ = fs::remove_file(spare_path(&p.target));
        }
        match result {
            Ok(()) => {
                let dir = p.target.parent().unwrap_or(Path::new("/")).to_path_buf();
                let owners = dir_owners.entry(dir.clone()).or_insert_with(|| {
                    dirs.push(dir);
                    Vec::new()
                });
                owners.extend(p.owners);
            }
            Err(e) => {
                let _ = fs::remove_file(temp_path(&p.target));
                failed.push((p.owners, ResourceError::io(&p.target, e)));
            }
        }
    }
    let renamed = started.elapsed();
    let dir_count = dirs.len();
    for dir in dirs {
        if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
            let owners = dir_owners.remove(&dir).unwrap_or_default();
            failed.push((owners, ResourceError::io(&dir, e)));
        }
    }
    tracing::debug!(
        files,
        dirs = dir_count,
        ?synced,
        ?renamed,
        elapsed = ?started.elapsed(),
        "writes committed"
    );
    failed
}

/// `syncfs(2)` on the filesystem holding `path`.
fn syncfs(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path)?;
    // SAFETY: a valid open descriptor for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
