//! What the unit tests of the resource types share: declarations, and a
//! sandboxed context (a temp root with the directories a type expects, and
//! a backup store beside it). Compiled for tests only.

use std::path::PathBuf;

use crate::backup::BackupStore;
use crate::core::{Change, Context, Decl, Plan, ResourceId};

/// The declaration `- <type_name>: <title>` with `attrs` (a JSON object),
/// nothing Sensitive.
pub fn decl(type_name: &str, title: &str, attrs: serde_json::Value) -> Decl {
    Decl {
        id: ResourceId::new(type_name, title),
        attrs: attrs.as_object().cloned().unwrap_or_default(),
        sensitive: Default::default(),
        location: Default::default(),
    }
}

/// A context rooted in `<tmp>/root`, with `dirs` (relative to the root)
/// made under it and the backup store in `<tmp>/state`. Keep the `TempDir`
/// alive as long as the context.
pub fn sandbox(dirs: &[&str]) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("root");
    for d in dirs.iter().copied().chain([""]) {
        std::fs::create_dir_all(root.join(d)).expect("a sandbox directory");
    }
    let cx = Context::new(root, BackupStore::new(&dir.path().join("state")));
    (dir, cx)
}

/// A [`sandbox`] kept whole, for tests that also want the root's path on
/// disk: the temp dir lives as long as the sandbox.
pub struct Sandbox {
    /// `<tmp>/root`, the root the context confines paths to.
    pub root: PathBuf,
    pub cx: Context,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// A sandbox with `dirs` (relative to the root) made under its root.
    pub fn new(dirs: &[&str]) -> Sandbox {
        let (dir, cx) = sandbox(dirs);
        Sandbox {
            root: dir.path().join("root"),
            cx,
            _dir: dir,
        }
    }
}

/// The change lines a plan would print, as the tests compare them.
pub fn lines(plan: &Plan) -> Vec<String> {
    plan.changes().iter().map(Change::line).collect()
}

/// Makes sure the Debian package `package` is installed (its file `probe`
/// exists): installed with apt-get as root when missing, one apt-get at a
/// time across test processes (the lock the agent's test bed takes too).
/// Panics naming the package otherwise: a test that needs it fails, never
/// skips.
pub fn ensure_package(package: &str, probe: &str) {
    use std::path::Path;
    if Path::new(probe).exists() {
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs the Debian package {package} ({probe} is missing): apt-get install {package}"
    );
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/agent-tests-apt.lock")
        .expect("the apt lock file");
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("locking the apt lock");
    if Path::new(probe).exists() {
        return;
    }
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "--no-install-recommends", package][..],
    ] {
        let out = std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("running apt-get");
        assert!(
            out.status.success(),
            "apt-get {} for the package {package} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        Path::new(probe).exists(),
        "the package {package} installed no {probe}"
    );
}
