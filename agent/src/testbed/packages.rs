//! Debian packages the test bed's stacks need (etcd, Patroni, ...):
//! installed when missing, as root with apt-get, once across processes
//! (an flock shared with the tests' own helper), else an error naming the
//! package. Never a silent skip.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// The lock the tests' `ensure_package` takes too: one apt-get at a time.
const LOCK: &str = "/tmp/agent-tests-apt.lock";

/// Makes sure `package` is installed (its file `probe` exists).
pub fn ensure(package: &str, probe: &str) -> Result<()> {
    if Path::new(probe).exists() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("this needs the Debian package {package} ({probe} is missing); install it: apt-get install {package}");
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .with_context(|| format!("opening {LOCK}"))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {LOCK}"))?;
    if Path::new(probe).exists() {
        return Ok(());
    }
    tracing::info!("installing the Debian package {package}");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "--no-install-recommends", package][..],
    ] {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .with_context(|| format!("running apt-get for {package}"))?;
        if !out.status.success() {
            bail!(
                "apt-get {} for the package {package} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    if !Path::new(probe).exists() {
        bail!("the package {package} installed no {probe}");
    }
    Ok(())
}
