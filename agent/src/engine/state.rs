//! The state dir: where the run lock, the last report, last-known facts and
//! the backup store live. Created 0711 (not listable; every file in it is
//! 0600 but the run summary for monitoring, and the backup store is 0700).
//! The parents it needs are created 0755, as any system directory: under
//! `--root` they are the node's `/var` and `/var/lib`, which the postgres
//! OS user must be able to traverse.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

/// Paths inside a state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateDir { dir: dir.into() }
    }

    pub fn report_path(&self) -> PathBuf {
        self.dir.join("last_run_report.json")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("agent.lock")
    }

    /// Creates the state dir if needed, and its parents (0755). The dir is
    /// 0711: other users cannot list it, but a monitoring user can read
    /// the one file meant for it (`last_run_summary.yaml`, 0644); every
    /// other file in it is 0600 and the backup store 0700.
    pub fn ensure(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let meta = match fs::metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = self.dir.parent().filter(|p| !p.exists()) {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                fs::DirBuilder::new()
                    .mode(0o711)
                    .create(&self.dir)
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .with_context(|| format!("creating state dir {}", self.dir.display()))?;
                fs::metadata(&self.dir)?
            }
            Err(e) => return Err(e).with_context(|| format!("state dir {}", self.dir.display())),
        };
        // Ours and not a shared sticky dir (/tmp): exactly 0711, whatever
        // a package or the umask made of it. Others' dirs are left alone.
        let ours = meta.uid() == nix::unistd::geteuid().as_raw();
        if ours && meta.mode() & 0o1000 == 0 && meta.mode() & 0o777 != 0o711 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o711))
                .with_context(|| format!("state dir {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Takes the single-run lock, waiting up to `wait` for another run to
    /// finish. The lock is an flock: it dies with its process, so a killed
    /// run never leaves it stuck.
    pub fn lock(&self, wait: Duration) -> Result<RunLock> {
        self.ensure()?;
        let path = self.lock_path();
        let started = Instant::now();
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    // The holder's pid, padded to a fixed width and written
                    // in place: no truncation (a metadata update) per run.
                    use std::os::unix::fs::FileExt;
                    let pid = format!("{:<10}\n", std::process::id());
                    if lock.metadata()?.len() != pid.len() as u64 {
                        lock.set_len(0)?;
                    }
                    lock.write_all_at(pid.as_bytes(), 0)?;
                    return Ok(RunLock { _lock: lock });
                }
                Err((f, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                    file = f;
                    if started.elapsed() >= wait {
                        let mut holder = String::new();
                        let _ = file.read_to_string(&mut holder);
                        anyhow::bail!(
                            "another agent run (pid {}) holds the lock {}; waited {:.1}s. \
                             Try again when it has finished.",
                            holder.trim(),
                            path.display(),
                            wait.as_secs_f64()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, errno)) => anyhow::bail!("locking {}: {errno}", path.display()),
            }
        }
    }

    /// Writes a file in the state dir atomically, private to the owner.
    ///
    /// Replaced by rename (a reader never sees half a report) but not
    /// fsynced: these files are the agent's own notes (last report, last
    /// known db_master), rewritten every run, and two fsyncs per run were a
    /// fifth of a no-op run. After a power loss the previous version, or
    /// none, is what a reader finds.
    pub fn write(&self, name: &str, content: &[u8]) -> Result<()> {
        self.write_with(name, 0o600, |w| w.write_all(content))
    }

    /// [`StateDir::write`] with the content written by `fill`, buffered.
    pub fn write_with(
        &self,
        name: &str,
        mode: u32,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        self.ensure()?;
        let target = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(64 * 1024, f);
            fill(&mut w)?;
            w.flush()?;
            fs::rename(&tmp, &target)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", target.display()));
        }
        Ok(())
    }

    /// [`StateDir::write_with`] for a file rewritten at every run, under
    /// the run lock (which makes the fixed name below safe): the content
    /// is written over `.<name>.prev`, the version before the current one,
    /// and the two are swapped by one `renameat2(RENAME_EXCHANGE)`. A
    /// reader still sees a whole version at any time, and afterwards
    /// `.<name>.prev` holds the version just replaced. No inode is created
    /// or freed per run: on this project's ext4 VMs a rename over the old
    /// file evicted it and waited for the discard of its blocks, a tenth of
    /// a one-resource run. Where the exchange is unsupported (or at the
    /// first write, with no current version) it is a plain rename.
    pub fn replace_locked(
        &self,
        _held: &RunLock,
        name: &str,
        mode: u32,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<()> {
        use std::io::Write;
        let target = self.dir.join(name);
        let spare = self.dir.join(format!(".{name}.prev"));
        let written = resources::atomic::overwrite_with(&spare, mode, |w| {
            let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, w);
            fill(&mut buffered)?;
            buffered.flush()
        })
        .and_then(|_| resources::atomic::swap_in(&spare, &target));
        written.with_context(|| format!("writing {}", target.display()))
    }

    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.dir.join(name)).ok()
    }
}

/// Held for the duration of a run.
pub struct RunLock {
    _lock: Flock<fs::File>,
}

/// The default state dir: `<root>/var/lib/agent` in a sandbox, else
/// /var/lib/agent.
pub fn default_state_dir(root: Option<&Path>) -> PathBuf {
    match root {
        Some(r) => r.join("var/lib/agent"),
        None => PathBuf::from("/var/lib/agent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_then_fails_with_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let _held = state.lock(Duration::ZERO).unwrap();
        let err = state
            .lock(Duration::from_millis(120))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(err.contains("another agent run"), "{err}");
        drop(_held);
        state.lock(Duration::ZERO).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&state.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o711);
    }

    #[test]
    fn the_state_dirs_parents_stay_traversable() {
        // The default state dir under --root is <root>/var/lib/agent: the
        // node's /var and /var/lib must not come out 0700 (initdb, as the
        // postgres user, then cannot reach /var/lib/postgresql).
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(default_state_dir(Some(dir.path())));
        state.ensure().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for parent in ["var", "var/lib"] {
            let m = mode(&dir.path().join(parent));
            assert_eq!(m & 0o055, 0o055, "{parent} is {m:o}");
        }
        assert_eq!(mode(&state.dir), 0o711);
    }

    #[test]
    fn a_file_replaced_each_run_swaps_two_inodes_and_keeps_the_previous_version() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let held = state.lock(Duration::ZERO).unwrap();
        let put = |text: &str| {
            state
                .replace_locked(&held, "report.json", 0o600, |w| {
                    w.write_all(text.as_bytes())
                })
                .unwrap();
        };
        let current = || fs::read_to_string(state.dir.join("report.json")).unwrap();
        let previous = || fs::read_to_string(state.dir.join(".report.json.prev")).unwrap();
        put("first, and the longest of the three\n");
        assert_eq!(current(), "first, and the longest of the three\n");
        put("second\n");
        assert_eq!(current(), "second\n");
        assert_eq!(previous(), "first, and the longest of the three\n");
        let inode = |name: &str| fs::metadata(state.dir.join(name)).unwrap().ino();
        let pair = [inode("report.json"), inode(".report.json.prev")];
        // The third version is written over the first one: its tail is cut,
        // and no inode is created or freed.
        put("third\n");
        assert_eq!(current(), "third\n");
        assert_eq!(previous(), "second\n");
        assert_eq!([inode(".report.json.prev"), inode("report.json")], pair);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(state.dir.join("report.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(&state.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names.len(),
            3,
            "the lock, the report and its previous version: {names:?}"
        );
    }
}
