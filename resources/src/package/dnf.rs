//! The `dnf` and `yum` package providers (RedHat family): `rpm -q` says
//! what is installed, `dnf list` (or `yum list`) what the repositories
//! offer, `dnf install` / `dnf remove` change it. yum takes the same
//! commands, so one provider serves both, named by its binary.

use std::time::Duration;

use super::{Installed, Provider};
use crate::core::ResourceError;
use crate::runner::{Cmd, Runner};

fn cmd(argv: &[&str]) -> Cmd {
    let mut c = Cmd::new(argv);
    c.env.push(("LC_ALL".into(), "C".into()));
    c
}

const CHANGE_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug)]
pub struct Dnf {
    /// `dnf` or `yum`.
    pub bin: &'static str,
}

impl Provider for Dnf {
    fn name(&self) -> &'static str {
        self.bin
    }

    fn query(&self, runner: &Runner, name: &str) -> Result<Installed, ResourceError> {
        // One line per installed instance (kernels, multilib).
        let out = runner.output(&cmd(&[
            "rpm",
            "-q",
            "--qf",
            "%{VERSION}-%{RELEASE}\\n",
            name,
        ]))?;
        Ok(parse_rpm_query(out.status, &out.stdout))
    }

    fn candidate(&self, runner: &Runner, name: &str) -> Result<Option<String>, ResourceError> {
        let available = if self.bin == "dnf" {
            "--available"
        } else {
            "available"
        };
        // Exit 1 means "nothing available" (none newer than installed, or unknown).
        let out = runner.output(&cmd(&[self.bin, "-q", "list", available, name]))?;
        Ok(parse_list_available(name, &out.stdout))
    }

    fn install(
        &self,
        runner: &Runner,
        name: &str,
        version: Option<&str>,
    ) -> Result<(), ResourceError> {
        let target = match version {
            Some(v) => format!("{name}-{v}"),
            None => name.to_string(),
        };
        let mut c = cmd(&[self.bin, "install", "-y", &target]);
        c.timeout = Some(CHANGE_TIMEOUT);
        runner.run(&c).map(drop)
    }

    /// rpm keeps no configuration files of removed packages: purge = remove.
    fn remove(&self, runner: &Runner, name: &str, _purge: bool) -> Result<(), ResourceError> {
        let mut c = cmd(&[self.bin, "remove", "-y", name]);
        c.timeout = Some(CHANGE_TIMEOUT);
        runner.run(&c).map(drop)
    }

    /// `2.10` matches `2.10-8.fc38`; an epoch asked for (`1:2.10-8`) is
    /// compared without it, as `rpm -q` reports none.
    fn version_matches(&self, installed: &str, wanted: &str) -> bool {
        let wanted = wanted.split_once(':').map_or(wanted, |(_, v)| v);
        installed == wanted
            || installed
                .rsplit_once('-')
                .is_some_and(|(version, _release)| version == wanted)
    }
}

/// Reads `rpm -q --qf '%{VERSION}-%{RELEASE}\n'`: exit 1 is "not
/// installed"; several instances → the last listed (rpm lists in install
/// order).
pub fn parse_rpm_query(status: i32, stdout: &str) -> Installed {
    if status != 0 {
        return Installed::Absent;
    }
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.contains(' '))
        .map_or(Installed::Absent, |v| Installed::Version(v.to_string()))
}

/// The newest version in `dnf -q list --available NAME` output (columns:
/// `name.arch  [epoch:]version-release  repo`, the version possibly wrapped
/// onto the next line when the name is long). The epoch is dropped to
/// compare with `rpm -q`.
pub fn parse_list_available(name: &str, stdout: &str) -> Option<String> {
    let tokens: Vec<&str> = stdout.split_whitespace().collect();
    let prefix = format!("{name}.");
    tokens
        .windows(2)
        .filter(|w| w[0].starts_with(&prefix) && !w[0][prefix.len()..].contains('.'))
        .map(|w| w[1].split_once(':').map_or(w[1], |(_, v)| v).to_string())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_query() {
        let v = |s: &str| Installed::Version(s.to_string());
        assert_eq!(parse_rpm_query(0, "2.10-8.fc38\n"), v("2.10-8.fc38"));
        assert_eq!(
            parse_rpm_query(1, "package hello is not installed\n"),
            Installed::Absent
        );
        assert_eq!(
            parse_rpm_query(0, "5.14.0-1.el9\n5.14.0-2.el9\n"),
            v("5.14.0-2.el9")
        );
    }

    #[test]
    fn list_available() {
        let out =
            "Available Packages\nhello.x86_64                 2.10-8.fc38                 fedora\n";
        assert_eq!(
            parse_list_available("hello", out),
            Some("2.10-8.fc38".into())
        );
        let epoch = "Available Packages\nhello.x86_64   1:2.12-1.fc39   updates\n";
        assert_eq!(
            parse_list_available("hello", epoch),
            Some("2.12-1.fc39".into())
        );
        let wrapped = "Available Packages\nvery-long-package-name-here.noarch\n          3.1-2.el9          appstream\n";
        assert_eq!(
            parse_list_available("very-long-package-name-here", wrapped),
            Some("3.1-2.el9".into())
        );
        // Another package whose name starts like ours is not ours.
        let other = "Available Packages\nhello-devel.x86_64   2.10-8   fedora\n";
        assert_eq!(parse_list_available("hello", other), None);
        assert_eq!(parse_list_available("hello", ""), None);
    }

    #[test]
    fn versions() {
        let d = Dnf { bin: "dnf" };
        assert!(d.version_matches("2.10-8.fc38", "2.10-8.fc38"));
        assert!(d.version_matches("2.10-8.fc38", "2.10"));
        assert!(d.version_matches("2.10-8.fc38", "1:2.10-8.fc38"));
        assert!(!d.version_matches("2.10-8.fc38", "2.1"));
        assert!(!d.version_matches("2.10-8.fc38", "2.10-9.fc38"));
    }
}
