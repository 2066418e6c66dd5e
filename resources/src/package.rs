//! `package`: one OS package, installed, at a version, at the newest
//! version, removed or purged.
//!
//! The type owns the *what*: the `ensure` values, their validation, and the
//! in-sync comparison of the installed state with the desired one. The *how*
//! (querying and changing the package database) belongs to a provider in
//! `package/`: `apt` (dpkg/apt-get) or `dnf`/`yum` (rpm/dnf), chosen by an
//! explicit `provider:` or by the `os.family` fact.
//!
//! Packages are **host-global**: the package database is that of the host the
//! agent runs on, so a package is checked and changed on the host even when a
//! run is confined with `--root` (a root prefixes file paths; it cannot
//! sandbox dpkg or rpm). Manifests tested under `--root` should therefore not
//! declare packages, or run with `--noop`.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::runner::Runner;

pub mod apt;
mod dnf;

/// Attributes of `- package: <name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `present` (default; also `installed`): installed at any version.
    /// `latest`: installed at the repositories' newest version. A version
    /// string (`2.10-3`; rpm: `VERSION` or `VERSION-RELEASE`): exactly that
    /// version. `absent`: removed (configuration files may stay). `purged`:
    /// removed with its configuration files (apt; rpm has no difference).
    ensure: Option<String>,
    /// `apt`, `dnf` or `yum`. Default from `os.family`: Debian → apt,
    /// RedHat → dnf (yum when there is no dnf binary).
    provider: Option<String>,
}

/// The validated desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensure {
    Present,
    Latest,
    Version(String),
    Absent,
    Purged,
}

impl Ensure {
    fn parse(text: &str) -> Result<Ensure, String> {
        Ok(match text.trim() {
            "present" | "installed" => Ensure::Present,
            "latest" => Ensure::Latest,
            "absent" => Ensure::Absent,
            "purged" => Ensure::Purged,
            v if valid_token(v) => Ensure::Version(v.to_string()),
            v => {
                return Err(format!(
                "ensure '{v}' is neither present, installed, latest, absent, purged nor a version"
            ))
            }
        })
    }
}

/// What the package database says about a package now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Not installed, nothing left behind.
    Absent,
    /// Removed, but its configuration files are still there (dpkg's
    /// `deinstall ok config-files`): absent, but not purged.
    ConfigFiles,
    /// Installed at this version.
    Version(String),
}

impl Installed {
    /// How the state reads in a change line.
    fn describe(&self) -> String {
        match self {
            Installed::Absent => "absent".into(),
            Installed::ConfigFiles => "config-files".into(),
            Installed::Version(v) => v.clone(),
        }
    }
}

/// How to query and change one kind of package database. Every command
/// goes through the given runner.
pub(crate) trait Provider: Send + Sync + fmt::Debug {
    fn name(&self) -> &'static str;
    /// The installed state of `name`.
    fn query(&self, runner: &Runner, name: &str) -> Result<Installed, ResourceError>;
    /// The version the repositories would install now (`None`: unknown or
    /// nothing newer to offer).
    fn candidate(&self, runner: &Runner, name: &str) -> Result<Option<String>, ResourceError>;
    /// Installs `name`, at `version` when given (upgrading or downgrading).
    fn install(
        &self,
        runner: &Runner,
        name: &str,
        version: Option<&str>,
    ) -> Result<(), ResourceError>;
    /// Removes `name`; `purge` also removes its configuration files.
    fn remove(&self, runner: &Runner, name: &str, purge: bool) -> Result<(), ResourceError>;
    /// True when the `installed` version is what `wanted` asks for.
    fn version_matches(&self, installed: &str, wanted: &str) -> bool {
        installed == wanted
    }
}

/// The provider kinds a manifest can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Apt,
    Dnf,
    Yum,
}

/// Chooses the provider: the explicit one, else by `os.family`; with no
/// usable family, by which tool is installed (`has_binary`).
pub fn choose_provider(
    explicit: Option<&str>,
    os_family: Option<&str>,
    has_binary: impl Fn(&str) -> bool,
) -> Result<ProviderKind, String> {
    if let Some(p) = explicit {
        return match p.trim() {
            "apt" => Ok(ProviderKind::Apt),
            "dnf" => Ok(ProviderKind::Dnf),
            "yum" => Ok(ProviderKind::Yum),
            other => Err(format!(
                "unknown provider '{other}' (expected apt, dnf or yum)"
            )),
        };
    }
    let redhat = || {
        if has_binary("dnf") {
            ProviderKind::Dnf
        } else {
            ProviderKind::Yum
        }
    };
    match os_family.map(str::to_ascii_lowercase).as_deref() {
        Some("debian") => Ok(ProviderKind::Apt),
        Some("redhat") => Ok(redhat()),
        _ => {
            if has_binary("apt-get") && has_binary("dpkg-query") {
                Ok(ProviderKind::Apt)
            } else if has_binary("dnf") || has_binary("yum") {
                Ok(redhat())
            } else {
                Err(format!(
                    "no package provider for os.family {}: set provider (apt, dnf or yum)",
                    os_family.unwrap_or("(unknown)")
                ))
            }
        }
    }
}

/// True when `name` is an executable found on `PATH`.
pub(crate) fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(Path::new(&dir).join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A package name or version must be one argument that cannot be read as an
/// option: no whitespace, no leading `-`, only the characters dpkg and rpm use.
fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-:~^".contains(c))
}

/// What `apply` does, as `check` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Install, at this version when given (else whatever the provider
    /// picks): for `latest`, the candidate `check` saw, so the next check
    /// agrees with what was installed.
    Install(Option<String>),
    /// Remove; `purge` also removes the configuration files.
    Remove { purge: bool },
}

/// A typed `package` resource.
#[derive(Debug)]
pub struct Package {
    id: ResourceId,
    name: String,
    ensure: Ensure,
    provider: Box<dyn Provider>,
}

pub fn build(decl: &Decl, env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let name = id.title.trim().to_string();
    if !valid_token(&name) {
        return Err(invalid(format!("'{name}' is not a valid package name")));
    }
    let ensure = Ensure::parse(p.ensure.as_deref().unwrap_or("present")).map_err(invalid)?;
    let family = env.fact_str("os.family");
    let kind =
        choose_provider(p.provider.as_deref(), family.as_deref(), on_path).map_err(invalid)?;
    Ok(Box::new(Package::new(id.clone(), name, ensure, kind)))
}

impl Package {
    fn new(id: ResourceId, name: String, ensure: Ensure, kind: ProviderKind) -> Package {
        let provider: Box<dyn Provider> = match kind {
            ProviderKind::Apt => Box::new(apt::Apt),
            ProviderKind::Dnf => Box::new(dnf::Dnf { bin: "dnf" }),
            ProviderKind::Yum => Box::new(dnf::Dnf { bin: "yum" }),
        };
        Package {
            id,
            name,
            ensure,
            provider,
        }
    }

    /// The step that brings `current` to the desired state, if any, and
    /// the change it shows. `candidate` is only consulted for `latest`.
    fn compare(
        &self,
        current: &Installed,
        candidate: impl FnOnce() -> Result<Option<String>, ResourceError>,
    ) -> Result<Option<(Change, Step)>, ResourceError> {
        let step = |to: &str, step: Step| {
            let change = Change::new("ensure", Some(current.describe()), Some(to.to_string()));
            Some((change, step))
        };
        let install = |v: Option<&String>| Step::Install(v.cloned());
        Ok(match (&self.ensure, current) {
            (Ensure::Present, Installed::Version(_)) => None,
            (Ensure::Present, _) => step("present", install(None)),
            (Ensure::Version(v), Installed::Version(cur))
                if self.provider.version_matches(cur, v) =>
            {
                None
            }
            (Ensure::Version(v), _) => step(v, install(Some(v))),
            (Ensure::Latest, installed) => match (candidate()?, installed) {
                (Some(c), Installed::Version(cur)) if self.provider.version_matches(cur, &c) => {
                    None
                }
                // Installed and nothing newer on offer.
                (None, Installed::Version(_)) => None,
                (Some(c), _) => step(&c, install(Some(&c))),
                (None, _) => step("latest", install(None)),
            },
            (Ensure::Absent, Installed::Absent | Installed::ConfigFiles) => None,
            (Ensure::Absent, _) => step("absent", Step::Remove { purge: false }),
            (Ensure::Purged, Installed::Absent) => None,
            (Ensure::Purged, _) => step("purged", Step::Remove { purge: true }),
        })
    }
}

impl Resource for Package {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let current = self.provider.query(&cx.runner, &self.name)?;
        let planned = self.compare(&current, || self.provider.candidate(&cx.runner, &self.name))?;
        Ok(match planned {
            Some((change, step)) => Plan::new(vec![change], step),
            None => Plan::in_sync(),
        })
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let step: Step = plan.steps(&self.id)?;
        let (runner, name) = (&cx.runner, self.name.as_str());
        tracing::debug!(
            package = name,
            provider = self.provider.name(),
            ?step,
            "changing package"
        );
        match step {
            Step::Install(version) => self.provider.install(runner, name, version.as_deref()),
            Step::Remove { purge } => self.provider.remove(runner, name, purge),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::BackupStore;
    use serde_json::json;

    fn decl(title: &str, attrs: serde_json::Value) -> Decl {
        crate::testing::decl("package", title, attrs)
    }

    fn env(family: &str) -> TypeEnv {
        TypeEnv::from_facts(json!({"os": {"family": family}}))
    }

    #[test]
    fn provider_choice() {
        let none = |_: &str| false;
        let only_yum = |b: &str| b == "yum";
        let all = |_: &str| true;
        assert_eq!(
            choose_provider(None, Some("Debian"), none),
            Ok(ProviderKind::Apt)
        );
        assert_eq!(
            choose_provider(None, Some("RedHat"), all),
            Ok(ProviderKind::Dnf)
        );
        assert_eq!(
            choose_provider(None, Some("RedHat"), only_yum),
            Ok(ProviderKind::Yum)
        );
        assert_eq!(
            choose_provider(Some("dnf"), Some("Debian"), none),
            Ok(ProviderKind::Dnf)
        );
        assert!(choose_provider(Some("zypper"), Some("Suse"), all).is_err());
        // No family fact: whichever tool the host has.
        assert_eq!(
            choose_provider(None, None, |b: &str| b == "apt-get" || b == "dpkg-query"),
            Ok(ProviderKind::Apt)
        );
        assert_eq!(
            choose_provider(None, Some("Suse"), only_yum),
            Ok(ProviderKind::Yum)
        );
        let err = choose_provider(None, Some("Suse"), none).unwrap_err();
        assert!(err.contains("Suse") && err.contains("provider"), "{err}");
    }

    #[test]
    fn build_validates() {
        let deb = env("Debian");
        assert!(build(&decl("hello", json!({})), &deb).is_ok());
        assert!(build(&decl("hello", json!({"ensure": "installed"})), &deb).is_ok());
        assert!(build(&decl("hello", json!({"ensure": "2.10-3"})), &deb).is_ok());
        assert!(
            build(&decl("-rf", json!({})), &deb).is_err(),
            "option-like name"
        );
        assert!(build(&decl("a b", json!({})), &deb).is_err());
        assert!(build(&decl("hello", json!({"ensure": "1.0; rm"})), &deb).is_err());
        assert!(build(&decl("hello", json!({"ensure": "--force"})), &deb).is_err());
        assert!(
            build(&decl("hello", json!({"version": "1"})), &deb).is_err(),
            "unknown attribute"
        );
        assert!(build(&decl("hello", json!({"provider": "pkg"})), &deb).is_err());
        assert!(build(&decl("hello", json!({"provider": "yum"})), &env("Other")).is_ok());
    }

    fn pkg(ensure: Ensure, kind: ProviderKind) -> Package {
        Package::new(ResourceId::new("package", "p"), "p".into(), ensure, kind)
    }

    fn cmp(p: &Package, cur: Installed, cand: Option<&str>) -> Option<(String, String)> {
        let cand = cand.map(str::to_string);
        p.compare(&cur, || Ok(cand))
            .unwrap()
            .map(|(c, _)| (c.from.unwrap(), c.to.unwrap()))
    }

    fn step(p: &Package, cur: Installed, cand: Option<&str>) -> Option<Step> {
        let cand = cand.map(str::to_string);
        p.compare(&cur, || Ok(cand)).unwrap().map(|(_, s)| s)
    }

    #[test]
    fn steps_say_what_to_do_without_the_change_lines() {
        use Installed::*;
        let v = |s: &str| Version(s.to_string());
        let apt = ProviderKind::Apt;
        let install = |v: Option<&str>| Some(Step::Install(v.map(str::to_string)));
        assert_eq!(
            step(&pkg(Ensure::Present, apt), Absent, None),
            install(None)
        );
        assert_eq!(
            step(&pkg(Ensure::Version("2.0-1".into()), apt), v("1.0-1"), None),
            install(Some("2.0-1"))
        );
        // latest: the candidate check saw is what apply installs.
        assert_eq!(
            step(&pkg(Ensure::Latest, apt), v("1.0-1"), Some("2.0-1")),
            install(Some("2.0-1"))
        );
        assert_eq!(step(&pkg(Ensure::Latest, apt), Absent, None), install(None));
        assert_eq!(
            step(&pkg(Ensure::Absent, apt), v("1.0-1"), None),
            Some(Step::Remove { purge: false })
        );
        assert_eq!(
            step(&pkg(Ensure::Purged, apt), ConfigFiles, None),
            Some(Step::Remove { purge: true })
        );
        assert_eq!(step(&pkg(Ensure::Present, apt), v("1.0-1"), None), None);
    }

    /// A package database in memory: what it holds, what it would offer,
    /// and the changes asked of it.
    #[derive(Debug, Default)]
    struct Fake {
        installed: std::sync::Mutex<Option<String>>,
        candidate: std::sync::Mutex<Option<String>>,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl Provider for std::sync::Arc<Fake> {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn query(&self, _: &Runner, _: &str) -> Result<Installed, ResourceError> {
            let v = self.installed.lock().unwrap().clone();
            Ok(v.map_or(Installed::Absent, Installed::Version))
        }
        fn candidate(&self, _: &Runner, _: &str) -> Result<Option<String>, ResourceError> {
            Ok(self.candidate.lock().unwrap().clone())
        }
        fn install(&self, _: &Runner, name: &str, v: Option<&str>) -> Result<(), ResourceError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("install {name} {v:?}"));
            *self.installed.lock().unwrap() = v.map(str::to_string);
            Ok(())
        }
        fn remove(&self, _: &Runner, name: &str, purge: bool) -> Result<(), ResourceError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("remove {name} purge={purge}"));
            *self.installed.lock().unwrap() = None;
            Ok(())
        }
    }

    #[test]
    fn apply_installs_the_version_check_planned() {
        let cx = Context::new(
            "/nonexistent-root",
            BackupStore::new(&std::env::temp_dir().join("agent-pkg-plan-test")),
        );
        let fake = std::sync::Arc::new(Fake::default());
        *fake.installed.lock().unwrap() = Some("1.0".into());
        *fake.candidate.lock().unwrap() = Some("2.0".into());
        let mut p = pkg(Ensure::Latest, ProviderKind::Apt);
        p.provider = Box::new(fake.clone());
        let plan = p.check(&cx).unwrap();
        // The repositories move on between check and apply: apply installs
        // the candidate check showed, carried in its step.
        *fake.candidate.lock().unwrap() = Some("3.0".into());
        p.apply(&cx, plan).unwrap();
        assert_eq!(*fake.calls.lock().unwrap(), ["install p Some(\"2.0\")"]);
        let mut gone = pkg(Ensure::Purged, ProviderKind::Apt);
        gone.provider = Box::new(fake.clone());
        gone.apply(&cx, gone.check(&cx).unwrap()).unwrap();
        assert_eq!(fake.calls.lock().unwrap()[1], "remove p purge=true");
        assert!(gone.check(&cx).unwrap().is_empty());
    }

    #[test]
    fn apply_refuses_a_plan_it_did_not_make() {
        let cx = Context::new(
            "/nonexistent-root",
            BackupStore::new(&std::env::temp_dir().join("agent-pkg-plan-test")),
        );
        let p = pkg(Ensure::Present, ProviderKind::Apt);
        let foreign = Plan::new(vec![Change::new("ensure", None, Some("x".into()))], 42u8);
        let err = p.apply(&cx, foreign).unwrap_err();
        assert!(matches!(err, ResourceError::Failed(_)), "{err}");
        assert!(err.to_string().contains("package[p]"), "{err}");
        assert!(cx.runner.history().is_empty(), "nothing ran");
    }

    #[test]
    fn in_sync_comparison() {
        use Installed::*;
        let v = |s: &str| Version(s.to_string());
        let ch = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        let apt = ProviderKind::Apt;
        let present = pkg(Ensure::Present, apt);
        assert_eq!(cmp(&present, v("1.0-1"), None), None);
        assert_eq!(cmp(&present, Absent, None), ch("absent", "present"));
        assert_eq!(
            cmp(&present, ConfigFiles, None),
            ch("config-files", "present")
        );
        let pinned = pkg(Ensure::Version("2.0-1".into()), apt);
        assert_eq!(cmp(&pinned, v("2.0-1"), None), None);
        assert_eq!(
            cmp(&pinned, v("1:2.0-1"), None),
            None,
            "epoch not asked for"
        );
        assert_eq!(cmp(&pinned, v("1.0-1"), None), ch("1.0-1", "2.0-1"));
        let latest = pkg(Ensure::Latest, apt);
        assert_eq!(cmp(&latest, v("2.0-1"), Some("2.0-1")), None);
        assert_eq!(
            cmp(&latest, v("1.0-1"), Some("2.0-1")),
            ch("1.0-1", "2.0-1")
        );
        assert_eq!(cmp(&latest, v("1.0-1"), None), None);
        assert_eq!(cmp(&latest, Absent, Some("2.0-1")), ch("absent", "2.0-1"));
        let absent = pkg(Ensure::Absent, apt);
        assert_eq!(cmp(&absent, ConfigFiles, None), None);
        assert_eq!(cmp(&absent, Absent, None), None);
        assert_eq!(cmp(&absent, v("1.0-1"), None), ch("1.0-1", "absent"));
        let purged = pkg(Ensure::Purged, apt);
        assert_eq!(
            cmp(&purged, ConfigFiles, None),
            ch("config-files", "purged")
        );
        assert_eq!(cmp(&purged, Absent, None), None);
        // rpm: a version without release matches any release of it.
        let rpm_pinned = pkg(Ensure::Version("2.10".into()), ProviderKind::Dnf);
        assert_eq!(cmp(&rpm_pinned, v("2.10-8.fc38"), None), None);
        assert_eq!(
            cmp(&rpm_pinned, v("2.1-8.fc38"), None),
            ch("2.1-8.fc38", "2.10")
        );
    }

    /// The downloaded `.deb`s of `pkg` in apt's cache.
    fn debs(pkg: &str) -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/var/cache/apt/archives")
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().contains(&format!("/{pkg}_")))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Installs and removes a small package for real with apt, leaving the
    /// host as it found it (it picks one that is not installed). Not root,
    /// it checks what can be checked: the read-only queries answer, and an
    /// install fails with apt's own error instead of pretending to work.
    #[test]
    fn real_apt_install_and_remove() {
        assert!(
            on_path("apt-get") && on_path("dpkg-query"),
            "this test needs apt-get and dpkg-query (a Debian host)"
        );
        let provider = apt::Apt;
        let runner = crate::runner::Runner::default();
        let pkg = ["hello", "sl", "cowsay"]
            .into_iter()
            .find(|p| provider.query(&runner, p).ok() == Some(Installed::Absent))
            .expect("one of hello, sl, cowsay is not installed");
        let env = env("Debian");
        let present = build(&decl(pkg, json!({"ensure": "present"})), &env).unwrap();
        if !nix::unistd::geteuid().is_root() {
            let dir = tempfile::tempdir().unwrap();
            let cx = Context::new("/", BackupStore::new(dir.path()));
            let plan = present.check(&cx).unwrap();
            assert_eq!(plan.changes().len(), 1, "{:?}", plan.changes());
            let e = present.apply(&cx, plan).unwrap_err().to_string();
            assert!(e.contains("apt-get install"), "{e}");
            return;
        }
        let cx = Context::new(
            "/",
            BackupStore::new(&std::env::temp_dir().join("agent-pkg-test-state")),
        );
        if provider.candidate(&cx.runner, pkg).unwrap().is_none() {
            cx.runner
                .run(&crate::runner::Cmd::new(&["apt-get", "update", "-q"]))
                .expect("apt-get update");
        }
        let debs_before = debs(pkg);
        let absent = build(&decl(pkg, json!({"ensure": "absent"})), &env).unwrap();

        let plan = present.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].from.as_deref(), Some("absent"));
        let installed = present.apply(&cx, plan);
        // Whatever happened, try to leave the host as found before asserting.
        let cleanup = || {
            let _ = cx.runner.output(&crate::runner::Cmd::new(&[
                "apt-get", "purge", "-y", "-q", pkg,
            ]));
            for deb in debs(pkg) {
                if !debs_before.contains(&deb) {
                    let _ = std::fs::remove_file(deb);
                }
            }
        };
        if let Err(e) = installed {
            cleanup();
            panic!("install failed: {e}");
        }
        let state = provider.query(&cx.runner, pkg).unwrap();
        let second = present.check(&cx).unwrap();
        let removal_plan = absent.check(&cx).unwrap();
        let removal = removal_plan.changes().to_vec();
        let removed = absent.apply(&cx, removal_plan);
        let after = provider.query(&cx.runner, pkg).unwrap();
        let absent_again = absent.check(&cx).unwrap();
        cleanup();
        assert!(matches!(state, Installed::Version(_)), "{state:?}");
        assert!(second.is_empty(), "idempotent: {second:?}");
        assert_eq!(removal.len(), 1, "{removal:?}");
        assert_eq!(removal[0].to.as_deref(), Some("absent"));
        removed.unwrap();
        assert!(
            matches!(after, Installed::Absent | Installed::ConfigFiles),
            "{after:?}"
        );
        assert!(absent_again.is_empty(), "{absent_again:?}");
        let history = cx.runner.history().join("\n");
        assert!(history.contains("dpkg-query -W"), "{history}");
        assert!(history.contains("apt-get install -y -q"), "{history}");
        assert!(history.contains("apt-get remove -y -q"), "{history}");
        assert_eq!(
            provider.query(&cx.runner, pkg).unwrap(),
            Installed::Absent,
            "purged by cleanup"
        );
    }
}
