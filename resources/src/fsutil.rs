//! Filesystem helpers shared by every type that writes files: root
//! confinement, atomic replacement (temp file, fsync, rename, fsync of the
//! directory), reading current content, and content changes with diffs.
//!
//! A run that writes many files would spend most of its time in fsync (two
//! per file). So the engine may open a *batch* on its thread
//! ([`batch_begin`]) and let the writes of chosen resources be staged
//! ([`batch_stage`]): [`write_atomic`] then writes the temp file and stops;
//! [`batch_commit`] syncs all temps at once (one `syncfs` per filesystem),
//! renames each over its target, then fsyncs each touched directory once.
//! The guarantee is unchanged: a reader sees the old or the new content,
//! never part of it, and after a crash each file is old or new, because no
//! rename happens before its data is on disk. While staged, a target still
//! shows its old content on disk; [`read_optional`], [`current_path`] and
//! [`write_atomic`] see the staged content, so a later writer of the same
//! file (the `host` entries of one hosts file) builds on it. The engine
//! commits before anything that could look at the disk otherwise.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;

use similar::TextDiff;

use crate::core::{Change, Context, ResourceError};

/// Suffix of the temp files written beside their target. A run removes
/// leftovers of killed runs when it next writes in that directory.
pub const TEMP_MARK: &str = ".agent-tmp";

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

/// Current content of a file (staged content included); `None` when it
/// does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ResourceError> {
    let path = &current_path(path);
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ResourceError::io(path, e)),
    }
}

/// At most `limit` bytes of the regular file `path`, from its start: a
/// file whose size is already known is read without another stat, and
/// usually with one `read` (a regular file reads short only at its end; a
/// short read elsewhere would only make the content look different).
pub fn read_at_most(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; usize::try_from(limit).unwrap_or(usize::MAX)];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// A `content` change from `old` to `new`, with a unified diff when both are
/// text. `sensitive` hides values and diff.
///
/// A file that did not exist gets no diff, as in Puppet: the change line
/// names the new content's digest, and a first run of a thousand files
/// does not print each of them whole.
pub fn content_change(path: &Path, old: Option<&[u8]>, new: &[u8], sensitive: bool) -> Change {
    let digest = |b: &[u8]| format!("{{sha256}}{}", crate::backup::sha256_hex(b));
    let from = old.map(digest);
    let to = Some(digest(new));
    let mut change = Change::new("content", from, to).sensitive(sensitive);
    let Some(old) = old else {
        return change;
    };
    if let (Ok(old_text), Ok(new_text)) = (std::str::from_utf8(old), std::str::from_utf8(new)) {
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

/// The `content` change of a file a line-editing type (host, cron...)
/// rewrites: one change when `new` is `Some`, none otherwise.
pub fn edited_content(node_path: &str, old: Option<&[u8]>, new: Option<&str>) -> Vec<Change> {
    new.map(|new| content_change(Path::new(node_path), old, new.as_bytes(), false))
        .into_iter()
        .collect()
}

/// Refuses to create `path` (the node path `node_path` of resource `id`)
/// when its directory is missing: the type edits files, it does not make
/// directories. `hint` ends the message (empty for none).
pub fn require_parent_dir(
    id: &crate::core::ResourceId,
    node_path: &str,
    path: &Path,
    hint: &str,
) -> Result<(), ResourceError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if parent.is_dir() {
        return Ok(());
    }
    Err(ResourceError::Failed(format!(
        "{id}: cannot create {node_path}: directory {} does not exist{hint}",
        parent.display()
    )))
}

/// Creates (or truncates) `path` holding `content` with exactly `mode`
/// (the umask may have cut bits from the create mode).
fn write_with_mode(path: &Path, content: &[u8], mode: u32) -> io::Result<fs::File> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(content)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// The end of this process's temp file names: `.agent-tmp.<pid>` (made
/// once: a first run names thousands).
fn own_temp_suffix() -> &'static str {
    static SUFFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SUFFIX.get_or_init(|| format!("{TEMP_MARK}.{}", std::process::id()))
}

/// Name of the temp file used to replace `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(own_temp_suffix());
    path.with_file_name(name)
}

/// Replaces `path` atomically with `content`: a temp file in the same
/// directory, fsync, rename over the target, fsync of the directory. A reader
/// sees the old or the new content, never a mix. `mode` applies to the new
/// file (else the old file's mode is kept, else 0644).
///
/// While the current resource's writes are staged (see the module doc), the
/// temp file is written and left for [`batch_commit`].
pub fn write_atomic(path: &Path, content: &[u8], mode: Option<u32>) -> Result<(), ResourceError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mode = match mode {
        Some(m) => m,
        None => fs::metadata(current_path(path))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644),
    };
    if staging() {
        return stage(path, content, mode);
    }
    let tmp = temp_path(path);
    let result = (|| {
        write_with_mode(&tmp, content, mode)?.sync_all()?;
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
    // Staged content is this run's own intermediate state: the content on
    // disk was saved when the run first replaced it.
    if !is_staged(path) {
        if let Some(old) = read_optional(path)? {
            cx.backup.save(path, &old)?;
        }
    }
    // A run killed mid-write left its temp beside the target; the target is
    // then unchanged, so the next run comes back here and removes it.
    if let Some(dir) = path.parent() {
        clean_stale_temps(dir);
    }
    write_atomic(path, content, mode)
}

/// Removes temp files left in `dir` by killed runs (never this process's
/// staged ones). Inside a batch each directory is cleaned once.
pub fn clean_stale_temps(dir: &Path) {
    let first = with_batch(|b| b.cleaned.insert(dir.to_path_buf())).unwrap_or(true);
    if !first {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let own = own_temp_suffix();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(TEMP_MARK) && !name.ends_with(own) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

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

/// The staged writes of this thread's run.
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
    /// Directories already cleaned of stale temps in this batch.
    cleaned: HashSet<PathBuf>,
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

fn with_batch<T>(f: impl FnOnce(&mut Batch) -> T) -> Option<T> {
    BATCH.with(|b| b.borrow_mut().as_mut().map(f))
}

fn staging() -> bool {
    with_batch(|b| b.owner.is_some()).unwrap_or(false)
}

fn is_staged(path: &Path) -> bool {
    with_batch(|b| b.index.contains_key(path)).unwrap_or(false)
}

/// Opens a batch on this thread (writes are staged only inside
/// [`batch_stage`] `(Some(owner))`).
pub fn batch_begin() {
    BATCH.with(|b| *b.borrow_mut() = Some(Batch::default()));
}

/// Stages the writes of resource `owner` from now on (`None`: write through).
pub fn batch_stage(owner: Option<usize>) {
    with_batch(|b| b.owner = owner);
}

/// True when resource `owner` has writes waiting for [`batch_commit`].
pub fn batch_owns_pending(owner: usize) -> bool {
    with_batch(|b| b.owners.contains(&owner)).unwrap_or(false)
}

/// True when anything is staged.
pub fn batch_has_pending() -> bool {
    with_batch(|b| !b.pending.is_empty()).unwrap_or(false)
}

/// True when `path` is a staged target or a directory holding one.
pub fn batch_touches(path: &Path) -> bool {
    with_batch(|b| b.index.contains_key(path) || b.dirs.contains(path)).unwrap_or(false)
}

/// Where the current content of `path` is: its staged temp, else `path`.
pub fn current_path(path: &Path) -> PathBuf {
    with_batch(|b| b.index.get(path).map(|&i| temp_path(&b.pending[i].target)))
        .flatten()
        .unwrap_or_else(|| path.to_path_buf())
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

/// Puts `spare` in the place of `target` and `target` in the place of
/// `spare`, in one step (`renameat2(RENAME_EXCHANGE)`): a reader of
/// `target` sees the old or the new file, and no inode is freed. Where
/// `target` does not exist yet, or the filesystem cannot exchange, it is a
/// plain rename (and `spare` is gone).
pub fn swap_in(spare: &Path, target: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, spare, None, target, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            fs::rename(spare, target)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes what `fill` gives over whatever `path` holds (created with `mode`
/// when missing, never through a link), without truncating first: only a
/// longer old tail is cut, so no block is freed while the new content is
/// as long as the old. `fill` writes straight to the file: a caller with a
/// lot to say buffers it.
pub fn overwrite_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut w = CountingWriter {
        inner: f,
        written: 0,
    };
    fill(&mut w)?;
    let (f, written) = (w.inner, w.written);
    let meta = f.metadata()?;
    if meta.len() > written {
        f.set_len(written)?;
    }
    if meta.permissions().mode() & 0o7777 != mode {
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(f)
}

/// A writer that counts the bytes it passed on.
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the temp of `path` (no fsync) and records it.
///
/// A second write of a staged target (the next `host` entry of one hosts
/// file) goes to a spare beside the temp, which is then swapped with the
/// temp by `renameat2(RENAME_EXCHANGE)`: a failed write leaves the previous
/// staged content whole, and no inode is freed per write (a rename over
/// the temp freed one each time, and this disk waits for the discard of
/// its blocks: half a millisecond per `host` entry). The spare goes at the
/// commit.
fn stage(path: &Path, content: &[u8], mode: u32) -> Result<(), ResourceError> {
    let tmp = temp_path(path);
    let again = is_staged(path);
    let result = if again {
        let spare = spare_path(path);
        (|| {
            let dev = overwrite_with(&spare, mode, |w| w.write_all(content))?
                .metadata()?
                .dev();
            swap_in(&spare, &tmp)?;
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
    with_batch(|b| {
        let owner = b.owner.expect("staging has an owner");
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
    });
    Ok(())
}

/// Up to this many staged files are fsynced one by one: cheaper than a
/// `syncfs`, which also flushes everyone else's dirty data.
const FSYNC_EACH_MAX: usize = 4;

/// Makes every staged write durable and visible: sync the temps, rename
/// each over its target, fsync each touched directory. Returns the owners
/// of the writes that failed, with the error; those targets keep their old
/// content (or, for a directory fsync failure, have the new one but maybe
/// not durably). The batch stays open.
pub fn batch_commit() -> Vec<(Vec<usize>, ResourceError)> {
    let pending = with_batch(|b| {
        b.index.clear();
        b.dirs.clear();
        b.owners.clear();
        std::mem::take(&mut b.pending)
    })
    .unwrap_or_default();
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

/// Commits what is staged and closes the batch.
pub fn batch_end() -> Vec<(Vec<usize>, ResourceError)> {
    let failed = batch_commit();
    BATCH.with(|b| *b.borrow_mut() = None);
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
    fn batch_stages_then_commits_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("sub/b"));
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(&a, b"old a\n").unwrap();
        batch_begin();
        batch_stage(Some(7));
        write_atomic(&a, b"new a\n", None).unwrap();
        write_atomic(&b, b"b1 first\n", Some(0o640)).unwrap();
        // A second write of a staged file builds on the staged content.
        assert_eq!(read_optional(&b).unwrap().unwrap(), b"b1 first\n");
        let first = fs::metadata(current_path(&b)).unwrap().ino();
        write_atomic(&b, b"b2 longer\n", None).unwrap();
        assert_eq!(read_optional(&b).unwrap().unwrap(), b"b2 longer\n");
        // Later ones swap the temp with a spare: two inodes, none freed
        // (and a shorter version than the spare held is cut to its length).
        write_atomic(&b, b"b2\n", None).unwrap();
        assert_eq!(fs::metadata(current_path(&b)).unwrap().ino(), first);
        batch_stage(None);
        // Nothing visible yet: old content, no new file.
        assert_eq!(fs::read(&a).unwrap(), b"old a\n");
        assert!(!b.exists());
        assert!(batch_owns_pending(7) && !batch_owns_pending(8));
        assert!(batch_touches(&b) && batch_touches(&dir.path().join("sub")));
        assert_eq!(read_optional(&a).unwrap().unwrap(), b"new a\n");
        // Own staged temps survive the stale-temp sweep.
        clean_stale_temps(dir.path());
        assert!(current_path(&a).exists());
        assert!(batch_end().is_empty());
        assert_eq!(fs::read(&a).unwrap(), b"new a\n");
        assert_eq!(fs::read(&b).unwrap(), b"b2\n");
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("b")], "no temp left");
        // Outside a batch, writes go straight through.
        write_atomic(&a, b"direct\n", None).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"direct\n");
    }

    #[test]
    fn a_batch_that_cannot_commit_names_its_owners_and_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, b"old\n").unwrap();
        batch_begin();
        batch_stage(Some(3));
        write_atomic(&a, b"new\n", None).unwrap();
        batch_stage(None);
        // The temp vanishes before the commit (a killed writer, a cleaner).
        fs::remove_file(current_path(&a)).unwrap();
        let failed = batch_end();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, vec![3]);
        assert_eq!(fs::read(&a).unwrap(), b"old\n");
    }

    #[test]
    fn diff_is_unified() {
        let c = content_change(Path::new("/x"), Some(b"a\nb\n"), b"a\nc\n", false);
        let d = c.diff.unwrap();
        assert!(d.contains("-b\n") && d.contains("+c\n"), "{d}");
        let s = content_change(Path::new("/x"), Some(b"a\n"), b"secret\n", true);
        assert!(!s.printable_diff().unwrap().contains("secret"));
        // A new file: its digest, no diff (Puppet's "defined content").
        let n = content_change(Path::new("/x"), None, b"a\nb\n", false);
        assert!(n.diff.is_none());
        assert!(
            n.line().starts_with("content changed absent to '{sha256}"),
            "{}",
            n.line()
        );
    }
}
