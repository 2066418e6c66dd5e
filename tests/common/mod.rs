//! Test harness: a sandbox (root, state dir, site, facts dir in one temp
//! dir) and a fluent way to run the real `agent` binary against it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's top directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One finished agent run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to its end and keeps what it said.
    pub fn of(cmd: &mut Command) -> Run {
        let out = cmd.output().expect("the command runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A throw-away node: `root/` (the managed sandbox), `state/`, `site/`
/// (manifests + hiera) and `facts.d/`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    /// An empty sandbox with an empty site.
    pub fn new() -> Self {
        Sandbox::in_dir(tempfile::tempdir().expect("tempdir"))
    }

    /// [`Sandbox::new`] laid out in `dir`, for a test that chooses where
    /// its temp dir lives (tmpfs).
    pub fn in_dir(dir: tempfile::TempDir) -> Self {
        for d in [
            "root",
            "state",
            "site/manifests/templates",
            "site/hiera/data",
            "facts.d",
        ] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Sandbox { dir, env: vec![] }
    }

    /// A sandbox whose site is a copy of the repository's manifests/ and hiera/.
    pub fn bundled() -> Self {
        let sb = Sandbox::new();
        copy_dir(&repo().join("manifests"), &sb.site().join("manifests"));
        copy_dir(&repo().join("hiera"), &sb.site().join("hiera"));
        sb
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn root(&self) -> PathBuf {
        self.path().join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }
    pub fn site(&self) -> PathBuf {
        self.path().join("site")
    }

    /// Writes a site file (`manifests/site.yaml`, `hiera/data/common.yaml`...).
    pub fn site_file(&self, rel: &str, text: &str) -> &Self {
        write(&self.site().join(rel), text);
        self
    }

    /// Writes a file inside the managed root (`etc/hosts`...).
    pub fn root_file(&self, rel: &str, text: &str) -> &Self {
        write(&self.root().join(rel), text);
        self
    }

    pub fn read_root(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Runs `agent ARGS` with the sandbox's root, state, site and facts dir.
    pub fn agent(&self, args: &[&str]) -> Run {
        Run::of(&mut self.command(args))
    }

    /// The agent with `args` and this sandbox's root, state, site and
    /// facts (for tests that start it in the background).
    pub fn command(&self, args: &[&str]) -> Command {
        let hiera = self.site().join("hiera/hiera.yaml");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent"));
        cmd.args(args)
            .arg("--root")
            .arg(self.root())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--manifests")
            .arg(self.site().join("manifests"))
            .arg("--hiera-config")
            .arg(hiera)
            .arg("--facts-dir")
            .arg(self.path().join("facts.d"))
            .current_dir(self.path())
            .env_remove("AGENT_LOG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Every entry under the root: path → (mode, content or link target).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
        snapshot(&self.root())
    }
}

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let content = if meta.file_type().is_symlink() {
            fs::read_link(e.path())
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if meta.is_file() {
            fs::read(e.path()).unwrap()
        } else {
            vec![]
        };
        out.insert(
            e.path().strip_prefix(root).unwrap().to_path_buf(),
            (meta.permissions().mode(), content),
        );
    }
    out
}

pub fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A minimal hiera.yaml (nodes/, common) for fixture sites.
pub const HIERA_YAML: &str = "version: 5\ndefaults:\n  datadir: data\n  data_hash: yaml_data\nhierarchy:\n  - name: node\n    path: \"nodes/%{trusted.certname}.yaml\"\n  - name: common\n    path: common.yaml\n";

/// Makes sure the Debian package `package` is installed (its `binary`
/// exists), installing it when missing: as root with apt-get, once across
/// test processes (an flock), `apt-get update` first. Not root and
/// missing: the test fails naming the package (it never skips and passes).
#[allow(dead_code)]
pub fn ensure_package(package: &str, binary: &str) {
    if Path::new(binary).exists() {
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs the Debian package {package} ({binary}); install it: apt-get install {package}"
    );
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/agent-tests-apt.lock")
        .unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    if Path::new(binary).exists() {
        return;
    }
    let apt = |args: &[&str]| {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("apt-get runs");
        assert!(
            out.status.success(),
            "apt-get {args:?} for {package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    apt(&["update", "-qq"]);
    apt(&["install", "-y", "-qq", "--no-install-recommends", package]);
    assert!(
        Path::new(binary).exists(),
        "{package} installed no {binary}"
    );
}
