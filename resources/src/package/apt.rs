//! The `apt` package provider (Debian family): `dpkg-query` says what is
//! installed, `apt-cache policy` what would be installed, `apt-get` changes
//! it, non-interactively and keeping locally changed configuration files.
//! Before an install, package lists older than a day (a fresh VM box has
//! none, or stale ones) are refreshed with `apt-get update`, at most once a
//! day per process.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::{Installed, Provider};
use crate::core::ResourceError;
use crate::runner::{Cmd, Runner};

/// dpkg and apt talk to us in the C locale, so their output can be parsed.
fn cmd(argv: &[&str]) -> Cmd {
    let mut c = Cmd::new(argv);
    c.env.push(("LC_ALL".into(), "C".into()));
    c.env
        .push(("DEBIAN_FRONTEND".into(), "noninteractive".into()));
    c
}

/// apt-get may download for a while; it still must not hang a run forever.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Options every changing apt-get gets: answer yes, quiet, keep changed
/// configuration files without asking, and wait for the dpkg lock (held by
/// unattended-upgrades, say) instead of failing at once.
const APT_OPTS: &[&str] = &[
    "-y",
    "-q",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
    "-o",
    "DPkg::Lock::Timeout=300",
];

/// Where apt keeps its package lists.
const LISTS_DIR: &str = "/var/lib/apt/lists";

/// Lists older than this are refreshed before an install.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// When this process last ran `apt-get update` (an update that finds
/// nothing new leaves the lists' times alone, so they cannot tell).
static UPDATED_AT: Mutex<Option<Instant>> = Mutex::new(None);

/// True when the package lists in `dir` are missing, or the newest of them
/// is older than `max_age` at `now`.
pub fn lists_stale(dir: &Path, now: SystemTime, max_age: Duration) -> bool {
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !matches!(name.as_ref(), "lock" | "partial" | "auxfiles") && !name.starts_with('.')
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    match newest {
        None => true,
        Some(t) => now.duration_since(t).is_ok_and(|age| age > max_age),
    }
}

/// `apt-get update` when the lists are stale, unless this process ran one
/// in the last day.
fn update_if_stale(runner: &Runner) -> Result<(), ResourceError> {
    let mut last = UPDATED_AT.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| t.elapsed() < LISTS_MAX_AGE)
        || !lists_stale(Path::new(LISTS_DIR), SystemTime::now(), LISTS_MAX_AGE)
    {
        return Ok(());
    }
    let mut c = cmd(&["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"]);
    c.timeout = Some(CHANGE_TIMEOUT);
    runner.run(&c)?;
    *last = Some(Instant::now());
    Ok(())
}

#[derive(Debug)]
pub struct Apt;

impl Provider for Apt {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn query(&self, runner: &Runner, name: &str) -> Result<Installed, ResourceError> {
        let c = cmd(&["dpkg-query", "-W", "-f=${Status}\\t${Version}\\n", name]);
        let out = runner.output(&c)?;
        if !out.success() {
            // dpkg-query exits 1 for a package it has never heard of.
            if out.stderr.contains("no packages found") {
                return Ok(Installed::Absent);
            }
            return Err(ResourceError::CommandFailed {
                cmd: c.display(),
                status: format!("exit status {}", out.status),
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(parse_dpkg_query(&out.stdout))
    }

    fn candidate(&self, runner: &Runner, name: &str) -> Result<Option<String>, ResourceError> {
        let out = runner.run(&cmd(&["apt-cache", "policy", name]))?;
        Ok(parse_policy_candidate(&out.stdout))
    }

    fn install(
        &self,
        runner: &Runner,
        name: &str,
        version: Option<&str>,
    ) -> Result<(), ResourceError> {
        let target = match version {
            Some(v) => format!("{name}={v}"),
            None => name.to_string(),
        };
        update_if_stale(runner)?;
        let mut argv = vec!["apt-get", "install"];
        argv.extend_from_slice(APT_OPTS);
        // A pinned version may be older than the installed one.
        if version.is_some() {
            argv.push("--allow-downgrades");
        }
        argv.push(&target);
        let mut c = cmd(&argv);
        c.timeout = Some(CHANGE_TIMEOUT);
        runner.run(&c).map(drop)
    }

    fn remove(&self, runner: &Runner, name: &str, purge: bool) -> Result<(), ResourceError> {
        let action = if purge { "purge" } else { "remove" };
        let mut argv = vec!["apt-get", action];
        argv.extend_from_slice(APT_OPTS);
        argv.push(name);
        let mut c = cmd(&argv);
        c.timeout = Some(CHANGE_TIMEOUT);
        runner.run(&c).map(drop)
    }

    /// dpkg reports the epoch (`1:2.3-4`); a manifest may leave it out.
    fn version_matches(&self, installed: &str, wanted: &str) -> bool {
        installed == wanted || (!wanted.contains(':') && strip_epoch(installed) == wanted)
    }
}

fn strip_epoch(v: &str) -> &str {
    v.split_once(':').map_or(v, |(_, rest)| rest)
}

/// Reads `dpkg-query -W -f='${Status}\t${Version}\n'` output. The status is
/// `want flag state`; what counts is the state (a held package is
/// `hold ok installed`). Half-installed or unpacked packages read as absent
/// so that ensuring them present reinstalls them.
pub fn parse_dpkg_query(stdout: &str) -> Installed {
    let mut result = Installed::Absent;
    // Several lines when several architectures are known: installed wins.
    for line in stdout.lines() {
        let (status, version) = line.split_once('\t').unwrap_or((line, ""));
        match status.split_whitespace().nth(2) {
            Some("installed" | "triggers-awaited" | "triggers-pending")
                if !version.trim().is_empty() =>
            {
                return Installed::Version(version.trim().to_string())
            }
            Some("config-files") => result = Installed::ConfigFiles,
            _ => {}
        }
    }
    result
}

/// The `Candidate:` of `apt-cache policy NAME` (`None` for `(none)` or an
/// unknown package).
pub fn parse_policy_candidate(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_query_states() {
        let v = |s: &str| Installed::Version(s.to_string());
        assert_eq!(
            parse_dpkg_query("install ok installed\t2.10-3\n"),
            v("2.10-3")
        );
        assert_eq!(parse_dpkg_query("hold ok installed\t1:2.3-4"), v("1:2.3-4"));
        assert_eq!(
            parse_dpkg_query("deinstall ok config-files\t2.10-3\n"),
            Installed::ConfigFiles
        );
        assert_eq!(
            parse_dpkg_query("unknown ok not-installed\t\n"),
            Installed::Absent
        );
        assert_eq!(
            parse_dpkg_query("install reinstreq half-installed\t2.10-3\n"),
            Installed::Absent
        );
        assert_eq!(parse_dpkg_query(""), Installed::Absent);
        // Multiarch: one line per architecture.
        assert_eq!(
            parse_dpkg_query("unknown ok not-installed\t\ninstall ok installed\t2.36-9\n"),
            v("2.36-9")
        );
    }

    #[test]
    fn policy_candidate() {
        let policy = "hello:\n  Installed: (none)\n  Candidate: 2.10-3\n  Version table:\n     2.10-3 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n";
        assert_eq!(parse_policy_candidate(policy), Some("2.10-3".into()));
        let none = "hello:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n";
        assert_eq!(parse_policy_candidate(none), None);
        assert_eq!(
            parse_policy_candidate(""),
            None,
            "unknown package prints nothing"
        );
    }

    #[test]
    fn lists_are_stale_when_missing_or_older_than_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        assert!(lists_stale(&dir.path().join("none"), now, day), "no dir");
        // Only apt's lock and partial dir: no lists yet (a fresh box).
        std::fs::write(dir.path().join("lock"), "").unwrap();
        std::fs::create_dir(dir.path().join("partial")).unwrap();
        assert!(lists_stale(dir.path(), now, day), "no lists");
        let list = dir
            .path()
            .join("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages");
        let f = std::fs::File::create(&list).unwrap();
        f.set_modified(now - 2 * day).unwrap();
        assert!(lists_stale(dir.path(), now, day), "two days old");
        let fresh = dir
            .path()
            .join("deb.debian.org_debian_dists_bookworm_InRelease");
        std::fs::File::create(&fresh)
            .unwrap()
            .set_modified(now - day / 2)
            .unwrap();
        assert!(!lists_stale(dir.path(), now, day), "the newest list counts");
    }

    #[test]
    fn epochs() {
        assert!(Apt.version_matches("1:2.3-4", "2.3-4"));
        assert!(Apt.version_matches("1:2.3-4", "1:2.3-4"));
        assert!(!Apt.version_matches("1:2.3-4", "2:2.3-4"));
        assert!(!Apt.version_matches("2.3-4", "2.3-5"));
    }
}
