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
use clap::{Args, ValueEnum};

use crate::engine::report;

pub mod calendar;

pub use calendar::cron_to_oncalendar;

/// Marks the files this command writes (and may replace or remove).
pub const MARKER: &str = "# Managed by `agent install-timer`: local changes are overwritten.";
pub const SERVICE_PATH: &str = "/etc/systemd/system/agent.service";
pub const TIMER_PATH: &str = "/etc/systemd/system/agent.timer";
pub const CRON_PATH: &str = "/etc/cron.d/agent";

/// Which scheduler runs the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheduler {
    /// systemd when /run/systemd/system exists (PID 1 is systemd), else cron.
    Auto,
    Systemd,
    Cron,
}

/// Flags of `agent install-timer`.
#[derive(Debug, Args, Clone)]
pub struct InstallTimerArgs {
    /// When to run, in cron syntax: 5 fields (`*/30 * * * *`) or a
    /// shorthand (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`).
    #[arg(long, default_value = "*/30 * * * *")]
    pub schedule: String,
    /// Random delay before each run, so that nodes do not all run at once:
    /// seconds, or a number with s, m or h (`90`, `5m`, `1h`).
    #[arg(long, default_value = "0", value_parser = crate::settings::parse_duration)]
    pub splay: std::time::Duration,
    /// The agent binary the schedule runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub agent_path: Option<PathBuf>,
    /// systemd timer or cron.d entry.
    #[arg(long, value_enum, default_value_t = Scheduler::Auto)]
    pub scheduler: Scheduler,
}

/// What the install writes: node paths and their content, and the
/// scheduler chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub scheduler: Scheduler,
    pub files: Vec<(PathBuf, String)>,
}

/// Runs `agent install-timer`: installs, then prints what changed.
pub fn run(settings: &crate::settings::Settings, args: InstallTimerArgs) -> Result<u8> {
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
pub fn install(
    settings: &crate::settings::Settings,
    args: &InstallTimerArgs,
) -> Result<Vec<String>> {
    let plan = plan(settings, args)?;
    let root = settings.root_path();
    let cx = resources::Context::new(
        root.clone(),
        resources::backup::BackupStore::new(&settings.state.dir),
    );
    let mut changes = Vec::new();
    for (node_path, content) in &plan.files {
        changes.extend(write_if_changed(&cx, node_path, content)?);
    }
    // Two schedulers would run the agent twice: drop our cron entry when
    // installing the timer. (The reverse needs systemctl; say so instead.)
    if plan.scheduler == Scheduler::Systemd {
        changes.extend(remove_ours(&cx, Path::new(CRON_PATH))?);
    } else if is_ours(&cx.path(TIMER_PATH)?) {
        report::warn(&format!(
            "Warning: {TIMER_PATH} is installed too; disable it: systemctl disable --now agent.timer"
        ));
    }
    if plan.scheduler == Scheduler::Systemd && root == Path::new("/") {
        changes.extend(enable_timer(&cx.runner, !changes.is_empty())?);
    }
    Ok(changes)
}

/// The files for `args`, without touching anything.
pub fn plan(settings: &crate::settings::Settings, args: &InstallTimerArgs) -> Result<Plan> {
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
    let mut argv = vec![agent.display().to_string(), "apply".to_string()];
    argv.extend(apply_flags(settings)?);
    resources::cron::validate_schedule(&args.schedule)
        .map_err(|e| anyhow::anyhow!("bad --schedule '{}': {e}", args.schedule))?;
    let files = match scheduler {
        Scheduler::Systemd => {
            let on_calendar = cron_to_oncalendar(&args.schedule).map_err(|e| {
                anyhow::anyhow!(
                    "cannot convert --schedule '{}' for systemd: {e}",
                    args.schedule
                )
            })?;
            vec![
                (PathBuf::from(SERVICE_PATH), service_unit(&argv)),
                (
                    PathBuf::from(TIMER_PATH),
                    timer_unit(&args.schedule, &on_calendar, splay),
                ),
            ]
        }
        _ => {
            argv.extend(["--lock-wait".to_string(), "0".to_string()]);
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

/// The oneshot service running `agent apply`.
pub fn service_unit(argv: &[String]) -> String {
    let exec: Vec<String> = argv.iter().map(|a| systemd_quote(a)).collect();
    format!(
        "{MARKER}\n[Unit]\nDescription=agent apply: converge this node to its role\n\
         Wants=network-online.target\nAfter=network-online.target\n\n\
         [Service]\nType=oneshot\nExecStart={}\n",
        exec.join(" ")
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

/// `daemon-reload` after a unit changed; `enable --now` unless the timer is
/// already enabled and active. Returns what was done.
fn enable_timer(runner: &resources::runner::Runner, units_changed: bool) -> Result<Option<String>> {
    use resources::runner::Cmd;
    if units_changed {
        runner.run(&Cmd::new(&["systemctl", "daemon-reload"]))?;
    }
    let enabled = runner
        .output(&Cmd::new(&[
            "systemctl",
            "is-enabled",
            "--quiet",
            "agent.timer",
        ]))?
        .success();
    let active = runner
        .output(&Cmd::new(&[
            "systemctl",
            "is-active",
            "--quiet",
            "agent.timer",
        ]))?
        .success();
    if enabled && active && !units_changed {
        return Ok(None);
    }
    if !(enabled && active) {
        runner.run(&Cmd::new(&["systemctl", "enable", "--now", "agent.timer"]))?;
        Ok(Some("agent.timer: enabled and started".into()))
    } else {
        // A changed timer takes its new schedule on restart.
        runner.run(&Cmd::new(&["systemctl", "restart", "agent.timer"]))?;
        Ok(Some("agent.timer: restarted".into()))
    }
}

#[cfg(test)]
mod tests;
