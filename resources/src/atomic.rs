//! Replacing a file so that a reader sees the old content or the new, never
//! part of it: a temp file written beside the target, made durable, renamed
//! over it, then the directory made durable. Also the plain reads that go
//! with it, and the naming and sweeping of temp files a killed run left.
//!
//! Everything here goes straight to the disk. A resource's `apply` writes
//! through its [`crate::stage::Stager`] instead, which may hold the temp
//! files back and commit many at once with one sync.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::ResourceError;

/// Suffix of the temp files written beside their target. A run removes
/// leftovers of killed runs when it next writes in that directory.
pub const TEMP_MARK: &str = ".agent-tmp";

/// Content of a regular file on disk; `None` when it does not exist. Any
/// other kind of file (a FIFO, a device, a directory) is an error, found
/// without blocking: a FIFO as the hosts file would otherwise hang the run
/// in `open`, holding the run lock.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ResourceError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResourceError::io(path, e)),
    };
    let meta = f.metadata().map_err(|e| ResourceError::io(path, e))?;
    if !meta.is_file() {
        return Err(ResourceError::Invalid(format!(
            "{} is not a regular file; refusing to read or replace it",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.read_to_end(&mut bytes)
        .map_err(|e| ResourceError::io(path, e))?;
    Ok(Some(bytes))
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
pub(crate) fn write_with_mode(path: &Path, content: &[u8], mode: u32) -> io::Result<fs::File> {
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
pub(crate) fn own_temp_suffix() -> &'static str {
    static SUFFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SUFFIX.get_or_init(|| format!("{TEMP_MARK}.{}", std::process::id()))
}

/// Name of the temp file used to replace `path`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(own_temp_suffix());
    path.with_file_name(name)
}

/// Mode a replacement of `current` gets when none is asked for: the mode of
/// the file there, else 0644.
pub(crate) fn kept_mode(current: &Path) -> u32 {
    fs::metadata(current)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644)
}

/// Replaces `path` atomically with `content`: a temp file in the same
/// directory, fsync, rename over the target, fsync of the directory. A reader
/// sees the old or the new content, never a mix. `mode` applies to the new
/// file (else the old file's mode is kept, else 0644).
pub fn write_atomic(path: &Path, content: &[u8], mode: Option<u32>) -> Result<(), ResourceError> {
    write_atomic_owned(path, content, mode, None)
}

/// [`write_atomic`] with the new file owned by `owner` (uid, gid) from the
/// start: the temp is chowned before the rename, so no reader (and no kill
/// between two steps) ever finds the new content under the wrong owner — a
/// server reading its configuration as its own user would be locked out.
pub fn write_atomic_owned(
    path: &Path,
    content: &[u8],
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
) -> Result<(), ResourceError> {
    let mode = mode.unwrap_or_else(|| kept_mode(path));
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = temp_path(path);
    let result = (|| {
        let f = write_with_mode(&tmp, content, mode)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            // chown clears set-id bits: the mode once more.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
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

/// Removes temp files left in `dir` by killed runs (never this process's,
/// which may be staged and waiting for their commit).
pub fn clean_stale_temps(dir: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_optional_refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("hosts");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let e = read_optional(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert_eq!(read_optional(&dir.path().join("none")).unwrap(), None);
        std::fs::write(dir.path().join("f"), "x").unwrap();
        assert_eq!(
            read_optional(&dir.path().join("f")).unwrap(),
            Some(b"x".to_vec())
        );
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
}
