//! `agent install-timer`: schedules `agent apply` for drift correction, the
//! way Puppet's agent runs every 30 minutes. Where PID 1 is systemd it
//! writes `agent.service` (a oneshot `agent apply`) and `agent.timer`
//! (`OnCalendar` converted from the cron schedule, `RandomizedDelaySec` from
//! the splay, `Persistent=true` so a missed run happens at boot); elsewhere
//! an `/etc/cron.d/agent` entry.
//!
//! The files are written like the `file` type writes: atomically, only when
//! their content differs, the old content kept in the backup store; a
//! second run changes nothing. The run uses the same `--manifests`,
//! `--hiera-config`, `--state-dir` (and `--facts-dir`, `--node` when given)
//! as the install, as absolute node paths.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::engine::report;

pub mod calendar;

pub use calendar::cron_to_oncalendar;

/// Marks the files this command writes (and may replace or remove).
pub const MARKER: &str = "# Managed by `agent install-timer`: local changes are overwritten.";
pub const SERVICE_PATH: &str = "/etc/systemd/system/agent.service";
pub const TIMER_PATH: &str = "/etc/systemd/system/agent.timer";
pub const CRON_PATH: &str = "/etc/cron.d/agent";
pub const WATCH_SERVICE_PATH: &str = "/etc/systemd/system/agent-watch.service";
pub const WATCH_CRON_PATH: &str = "/etc/cron.d/agent-watch";
/// Every file an install may write: those a new install does not write
/// again are removed (one way of running the agent at a time).
const ALL_PATHS: [&str; 5] = [
    SERVICE_PATH,
    TIMER_PATH,
    CRON_PATH,
    WATCH_SERVICE_PATH,
    WATCH_CRON_PATH,
];

/// What `agent install-timer` installs, validated by the CLI.
#[derive(Debug, Clone)]
pub struct Options {
    /// When to run, in cron syntax (5 fields or a shorthand).
    pub schedule: String,
    /// Random delay before each run (whole seconds are written).
    pub splay: std::time::Duration,
    /// The agent binary the schedule runs (default: this one).
    pub agent_path: Option<PathBuf>,
    pub scheduler: Scheduler,
    /// Install `agent watch` as a supervised service (reacting to a
    /// failover within its interval, `schedule` as its fallback run)
    /// instead of a scheduled `agent apply`.
    pub watch: bool,
    /// The longest a scheduled run may take (systemd's TimeoutStartSec,
    /// Puppet's runtimeout).
    pub run_timeout: std::time::Duration,
}

/// Which scheduler runs the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// systemd when /run/systemd/system exists (PID 1 is systemd), else cron.
    Auto,
    Systemd,
    Cron,
}

/// What the install writes: node paths and their content, and the
/// scheduler chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub scheduler: Scheduler,
    pub files: Vec<(PathBuf, String)>,
}

/// Runs `agent install-timer`: installs, then prints what changed.
pub fn run(settings: &crate::settings::Settings, args: Options) -> Result<u8> {
    let changes = install(settings, &args)?;
    if changes.is_empty() {
        report::print("Notice: install-timer: already installed, nothing changed");
    }
    for c in &changes {
        report::print(&format!("Notice: {c}"));
    }
    Ok(0)
}

/// Writes (and, on a systemd host with root /, enables) the schedule;
/// returns one line per change, none when everything was in place.
pub fn install(settings: &crate::settings::Settings, args: &Options) -> Result<Vec<String>> {
    let plan = plan(settings, args)?;
    settings.ensure_root()?;
    let root = settings.root_path();
    let cx = resources::Context::new(
        root.clone(),
        resources::backup::BackupStore::new(&settings.state.dir),
    );
    let on_systemd = plan.scheduler == Scheduler::Systemd && root == Path::new("/");
    let mut changes = Vec::new();
    // One way of running the agent at a time: what this install does not
    // write again goes (a timer and a watcher would both apply).
    for stale in ALL_PATHS.map(Path::new) {
        if plan.files.iter().any(|(p, _)| p == stale)
            || !is_ours(&cx.path(&stale.display().to_string())?)
        {
            continue;
        }
        let unit = stale
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if stale.starts_with("/etc/systemd") {
            if on_systemd {
                if unit.ends_with(".timer") || unit == "agent-watch.service" {
                    disable_unit(&cx.runner, unit)?;
                }
            } else if plan.scheduler == Scheduler::Cron {
                // Without systemctl a unit cannot be stopped: say so.
                report::warn(&format!(
                    "Warning: {} is installed too; disable it: systemctl disable --now {}",
                    stale.display(),
                    if unit == "agent.service" {
                        "agent.timer"
                    } else {
                        unit
                    }
                ));
                continue;
            }
        }
        changes.extend(remove_ours(&cx, stale)?);
    }
    for (node_path, content) in &plan.files {
        changes.extend(write_if_changed(&cx, node_path, content)?);
    }
    if on_systemd {
        let unit = if args.watch {
            "agent-watch.service"
        } else {
            "agent.timer"
        };
        changes.extend(enable_unit(&cx.runner, unit, !changes.is_empty())?);
    }
    Ok(changes)
}

/// The files for `args`, without touching anything.
pub fn plan(settings: &crate::settings::Settings, args: &Options) -> Result<Plan> {
    let scheduler = match args.scheduler {
        Scheduler::Auto if Path::new("/run/systemd/system").is_dir() => Scheduler::Systemd,
        Scheduler::Auto => Scheduler::Cron,
        s => s,
    };
    let splay = args.splay.as_secs();
    let agent = match &args.agent_path {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().context("finding the agent binary")?,
    };
    resources::cron::validate_schedule(&args.schedule)
        .map_err(|e| anyhow::anyhow!("bad --schedule '{}': {e}", args.schedule))?;
    if args.watch {
        let mut argv = vec![
            agent.display().to_string(),
            "watch".to_string(),
            "--schedule".to_string(),
            args.schedule.clone(),
        ];
        argv.extend(apply_flags(settings)?);
        let files = match scheduler {
            Scheduler::Systemd => vec![(PathBuf::from(WATCH_SERVICE_PATH), watch_unit(&argv))],
            _ => vec![(PathBuf::from(WATCH_CRON_PATH), watch_cron_file(&argv))],
        };
        return Ok(Plan { scheduler, files });
    }
    let mut argv = vec![agent.display().to_string(), "apply".to_string()];
    argv.extend(apply_flags(settings)?);
    let files = match scheduler {
        Scheduler::Systemd => {
            let on_calendar = cron_to_oncalendar(&args.schedule).map_err(|e| {
                anyhow::anyhow!(
                    "cannot convert --schedule '{}' for systemd: {e}",
                    args.schedule
                )
            })?;
            vec![
                (
                    PathBuf::from(SERVICE_PATH),
                    service_unit(&argv, args.run_timeout.as_secs()),
                ),
                (
                    PathBuf::from(TIMER_PATH),
                    timer_unit(&args.schedule, &on_calendar, splay),
                ),
            ]
        }
        _ => {
            argv.extend(["--lock-wait", "0", "--quiet"].map(String::from));
            vec![(
                PathBuf::from(CRON_PATH),
                cron_file(&args.schedule, &argv, splay),
            )]
        }
    };
    Ok(Plan { scheduler, files })
}

/// The global flags the scheduled run needs to read what this install read.
fn apply_flags(settings: &crate::settings::Settings) -> Result<Vec<String>> {
    let root = settings.root.as_deref();
    let np = |p: &Path| -> Result<String> { Ok(node_path(root, &absolute(p)?)) };
    let mut flags = vec![
        "--manifests".to_string(),
        np(&settings.manifests)?,
        "--hiera-config".to_string(),
        np(&settings.hiera_config)?,
        "--state-dir".to_string(),
        np(&settings.state.dir)?,
    ];
    let default_facts = crate::engine::facts::FactOptions::default().facts_dir;
    if settings.fact_opts.facts_dir != default_facts {
        flags.extend([
            "--facts-dir".to_string(),
            np(&settings.fact_opts.facts_dir)?,
        ]);
    }
    if let Some(node) = &settings.node {
        flags.extend(["--node".to_string(), node.clone()]);
    }
    Ok(flags)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(std::fs::canonicalize(p).or_else(|_| std::path::absolute(p))?)
}

/// Under --root (building an image), paths inside the root are written as
/// the node will see them.
fn node_path(root: Option<&Path>, p: &Path) -> String {
    match root.and_then(|r| p.strip_prefix(r).ok()) {
        Some(rest) => Path::new("/").join(rest).display().to_string(),
        None => p.display().to_string(),
    }
}

/// The oneshot service running `agent apply`. KillMode=process: the
/// daemons a run starts (PostgreSQL, the application) outlive it; without
/// it systemd kills the unit's whole cgroup when the run ends. A run
/// longer than `timeout_secs` is stopped (Puppet's runtimeout).
pub fn service_unit(argv: &[String], timeout_secs: u64) -> String {
    let exec: Vec<String> = argv.iter().map(|a| systemd_quote(a)).collect();
    format!(
        "{MARKER}\n[Unit]\nDescription=agent apply: converge this node to its role\n\
         Wants=network-online.target\nAfter=network-online.target\n\n\
         [Service]\nType=oneshot\nExecStart={}\nKillMode=process\nTimeoutStartSec={timeout_secs}\n",
        exec.join(" ")
    )
}

/// `agent watch` as a service: restarted when it fails, its applies'
/// daemons left alone when it stops (KillMode=process).
pub fn watch_unit(argv: &[String]) -> String {
    let exec: Vec<String> = argv.iter().map(|a| systemd_quote(a)).collect();
    format!(
        "{MARKER}\n[Unit]\nDescription=agent watch: converge as soon as db_master changes\n\
         Wants=network-online.target\nAfter=network-online.target\n\n\
         [Service]\nType=simple\nExecStart={}\nRestart=on-failure\nRestartSec=5\nKillMode=process\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        exec.join(" ")
    )
}

/// Where PID 1 is not systemd, cron supervises the watcher: every minute
/// it starts one unless one runs (`flock -n` on a lock the running one
/// holds), so a watcher that died is back within a minute.
pub fn watch_cron_file(argv: &[String]) -> String {
    let run: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
    let command = format!(
        "flock -n /run/agent-watch.lock {} >>/var/log/agent-watch.log 2>&1",
        run.join(" ")
    )
    .replace('%', "\\%");
    format!(
        "{MARKER}\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         * * * * * root {command}\n"
    )
}

/// The timer starting `agent.service`.
pub fn timer_unit(schedule: &str, on_calendar: &str, splay_secs: u64) -> String {
    format!(
        "{MARKER}\n[Unit]\nDescription=agent apply on a schedule (cron: {})\n\n\
         [Timer]\nOnCalendar={on_calendar}\nRandomizedDelaySec={splay_secs}\nPersistent=true\n\n\
         [Install]\nWantedBy=timers.target\n",
        schedule.replace('%', "%%")
    )
}

/// `/etc/cron.d/agent`: one line with the user field; the splay is a
/// random sleep before the run.
pub fn cron_file(schedule: &str, argv: &[String], splay_secs: u64) -> String {
    let run: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
    let mut command = run.join(" ");
    if splay_secs > 0 {
        command = format!("sleep $(shuf -i 0-{splay_secs} -n 1) && {command}");
    }
    // cron turns an unescaped % into a newline.
    let command = command.replace('%', "\\%");
    format!(
        "{MARKER}\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         {schedule} root {command}\n"
    )
}

fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c))
}

/// One ExecStart argument: quoted when needed; `%` and `$` escaped (systemd
/// expands specifiers and variables in ExecStart).
fn systemd_quote(s: &str) -> String {
    if plain(s) {
        return s.to_string();
    }
    let inner = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    format!("\"{inner}\"")
}

/// One /bin/sh word.
fn sh_quote(s: &str) -> String {
    if plain(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(MARKER))
}

/// Writes `content` at the node path when it differs.
fn write_if_changed(
    cx: &resources::Context,
    node_path: &Path,
    content: &str,
) -> Result<Option<String>> {
    let path = cx.path(&node_path.display().to_string())?;
    let old = resources::atomic::read_optional(&path)?;
    if old.as_deref() == Some(content.as_bytes()) {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    resources::stage::replace_file(cx, &path, content.as_bytes(), Some(0o644))?;
    let verb = if old.is_some() { "updated" } else { "created" };
    Ok(Some(format!("{}: {verb}", node_path.display())))
}

/// Removes a file of ours (backed up).
fn remove_ours(cx: &resources::Context, node_path: &Path) -> Result<Option<String>> {
    let path = cx.path(&node_path.display().to_string())?;
    if !is_ours(&path) {
        return Ok(None);
    }
    if let Some(old) = resources::atomic::read_optional(&path)? {
        cx.backup.save(cx.stager(), &path, &old)?;
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(Some(format!("{}: removed", node_path.display())))
}

/// `daemon-reload` after a unit changed; `enable --now` unless `unit` is
/// already enabled and active (restarted when it changed). Returns what was
/// done.
fn enable_unit(
    runner: &resources::runner::Runner,
    unit: &str,
    units_changed: bool,
) -> Result<Option<String>> {
    use resources::runner::Cmd;
    if units_changed {
        runner.run(&Cmd::new(&["systemctl", "daemon-reload"]))?;
    }
    let enabled = runner
        .output(&Cmd::new(&["systemctl", "is-enabled", "--quiet", unit]))?
        .success();
    let active = runner
        .output(&Cmd::new(&["systemctl", "is-active", "--quiet", unit]))?
        .success();
    if enabled && active && !units_changed {
        return Ok(None);
    }
    if !(enabled && active) {
        runner.run(&Cmd::new(&["systemctl", "enable", "--now", unit]))?;
        Ok(Some(format!("{unit}: enabled and started")))
    } else {
        // A changed unit takes its new settings on restart.
        runner.run(&Cmd::new(&["systemctl", "restart", unit]))?;
        Ok(Some(format!("{unit}: restarted")))
    }
}

/// Stops and disables a unit of ours before its file goes.
fn disable_unit(runner: &resources::runner::Runner, unit: &str) -> Result<()> {
    use resources::runner::Cmd;
    runner.run(&Cmd::new(&["systemctl", "disable", "--now", unit]))?;
    Ok(())
}

#[cfg(test)]
mod tests;
