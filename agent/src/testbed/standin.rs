//! `agent stash-standin`: a small, real service that stands in for
//! Atlassian Stash in tests and in `agent demo`, where downloading and
//! running Stash is not an option.
//!
//! It behaves like Stash towards its database, which is what the site is
//! about: it reads `stash-config.properties` once at start (a changed
//! `jdbc.url` needs a restart, as with Stash), connects with the url's
//! rules (a multi-host url with `targetServerType=primary` goes to the
//! server that is not in recovery, as pgJDBC does), creates its table, and
//! writes a heartbeat row every interval, logging each write:
//!
//! ```text
//! 2026-11-27T10:17:03.123Z wrote seq=42 to 127.0.0.11:5432/stashdb
//! ```
//!
//! On errors it logs `… error: …` and reconnects: every 100 ms for the first
//! 3 s of an outage (a promotion in progress), then backing off to 2 s (a
//! reconnection picks its server again, from the url read at start).
//! SIGTERM/SIGINT stop it cleanly and remove its pidfile. `--daemonize`
//! lets a `service` resource with the `command` provider start it:
//!
//! ```yaml
//! - service: stash
//!   provider: command
//!   start: "/usr/local/bin/agent stash-standin --config /var/atlassian/application-data/stash/shared/stash-config.properties --daemonize --pidfile /run/stash-standin.pid --log /var/log/stash-standin.log"
//!   status: "kill -0 $(cat /run/stash-standin.pid)"
//!   stop: "kill $(cat /run/stash-standin.pid) && while [ -e /run/stash-standin.pid ]; do sleep 0.05; done"
//! ```
//!
//! (The stop line waits for the pidfile to go, which the stand-in removes
//! last, so a `status` right after it sees the service stopped.)

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};

pub mod jdbc;

pub use jdbc::{load_config, parse_url, JdbcUrl, StandinConfig, TargetServerType};

/// Backoff between reconnection attempts: doubles from MIN up to MAX.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// For this long after its first error the stand-in retries every
/// `MIN_BACKOFF` (a promotion in progress: the new primary turns writable
/// within a second); only a longer outage backs off, doubling to `MAX_BACKOFF`.
const FAST_RETRIES_FOR: Duration = Duration::from_secs(3);

/// The wait before the next attempt of an outage that began at `since`.
fn next_backoff(backoff: Duration, since: Instant) -> Duration {
    if since.elapsed() < FAST_RETRIES_FOR {
        MIN_BACKOFF
    } else {
        (backoff * 2).min(MAX_BACKOFF)
    }
}
/// Short, so that a dead host in a multi-host url costs little.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const CREATE_TABLE: &str = "create table if not exists heartbeat(\
     id bigserial primary key, at timestamptz default now(), writer text, seq bigint)";

/// Set by SIGTERM/SIGINT; the loops poll it.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// What `agent stash-standin` does (see its flags in the CLI).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Options {
    /// Stash's `stash-config.properties`; under --root an absolute path is
    /// a node path.
    pub config: PathBuf,
    /// Append the log here (default: stdout).
    pub log: Option<PathBuf>,
    /// Write the pid here; removed on a clean exit.
    pub pidfile: Option<PathBuf>,
    /// Between two heartbeat writes.
    pub interval: Duration,
    /// Detach once the config is read and the pidfile written.
    pub daemonize: bool,
}

/// Runs `agent stash-standin`. Returns when stopped by a signal (0), or at
/// once with an error when the config cannot be used.
pub fn run(settings: &crate::settings::Settings, args: Options) -> Result<u8> {
    let config_path = node_path(settings, &args.config)?;
    let log_path = args
        .log
        .as_deref()
        .map(|p| node_path(settings, p))
        .transpose()?;
    let pidfile = args
        .pidfile
        .as_deref()
        .map(|p| node_path(settings, p))
        .transpose()?;
    // Errors in the config surface here, in the foreground, before any fork.
    let cfg = load_config(&config_path)?;
    let interval = args.interval;
    if args.daemonize {
        return daemonize(&cfg, log_path.as_deref(), pidfile.as_deref(), interval);
    }
    let mut sink = LogSink::open(log_path.as_deref())?;
    install_signal_handlers()?;
    if let Some(p) = &pidfile {
        claim_pidfile(p)?;
    }
    serve(&cfg, &mut sink, interval, &STOP);
    if let Some(p) = &pidfile {
        release_pidfile(p);
    }
    Ok(0)
}

/// A path flag: under --root an absolute path is a node path; a relative
/// one is made absolute (a daemon changes its directory to /).
fn node_path(settings: &crate::settings::Settings, p: &Path) -> Result<PathBuf> {
    match &settings.root {
        Some(root) if p.is_absolute() => Ok(resources::confine::confine(root, p)?),
        _ if p.is_absolute() => Ok(p.to_path_buf()),
        _ => Ok(std::env::current_dir()?.join(p)),
    }
}

/// fork → setsid → fork: the grandchild runs the service with stdio on
/// /dev/null; the foreground process waits on a pipe until the grandchild
/// has opened its log and written its pidfile (or failed to), so that a
/// `status` right after `start` already sees it.
fn daemonize(
    cfg: &StandinConfig,
    log: Option<&Path>,
    pidfile: Option<&Path>,
    interval: Duration,
) -> Result<u8> {
    use nix::unistd::{fork, setsid, ForkResult};
    let (read_end, write_end) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: the agent is single-threaded when it gets here (nothing before
    // this point starts threads), so the child has a consistent heap.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut msg = String::new();
            let _ = File::from(read_end).read_to_string(&mut msg);
            let _ = nix::sys::wait::waitpid(child, None);
            match msg.strip_prefix("ok ") {
                Some(pid) => {
                    tracing::info!(pid = pid.trim(), "stash-standin started");
                    Ok(0)
                }
                None if msg.is_empty() => bail!("stash-standin exited before it was ready"),
                None => bail!("stash-standin did not start: {}", msg.trim()),
            }
        }
        ForkResult::Child => {
            drop(read_end);
            let mut ready = File::from(write_end);
            let _ = setsid();
            // SAFETY: as above; the intermediate child only forks and exits.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {}
                Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
                Err(e) => {
                    let _ = write!(ready, "second fork: {e}");
                    unsafe { libc::_exit(1) }
                }
            }
            let started = (|| -> Result<LogSink> {
                std::env::set_current_dir("/")?;
                detach_stdio()?;
                let sink = LogSink::open(log)?;
                install_signal_handlers()?;
                if let Some(p) = pidfile {
                    claim_pidfile(p)?;
                }
                Ok(sink)
            })();
            let mut sink = match started {
                Ok(s) => s,
                Err(e) => {
                    let _ = write!(ready, "{e:#}");
                    std::process::exit(1);
                }
            };
            let _ = write!(ready, "ok {}", std::process::id());
            drop(ready);
            serve(cfg, &mut sink, interval, &STOP);
            if let Some(p) = pidfile {
                release_pidfile(p);
            }
            // Never return into the caller's frames: this process is the daemon.
            std::process::exit(0);
        }
    }
}

fn detach_stdio() -> Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        nix::unistd::dup2(null.as_raw_fd(), fd)?;
    }
    Ok(())
}

fn install_signal_handlers() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("installing {sig} handler"))?;
    }
    Ok(())
}

/// True when `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => true,
    }
}

/// Writes our pid, refusing when the pidfile names another live process.
fn claim_pidfile(path: &Path) -> Result<()> {
    let me = std::process::id() as i32;
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            if pid != me && pid > 0 && alive(pid) {
                bail!(
                    "stash-standin already runs as pid {pid} (pidfile {})",
                    path.display()
                );
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    resources::atomic::write_atomic(path, format!("{me}\n").as_bytes(), Some(0o644))?;
    Ok(())
}

/// Removes the pidfile if it is still ours.
fn release_pidfile(path: &Path) {
    let me = std::process::id().to_string();
    if std::fs::read_to_string(path).is_ok_and(|t| t.trim() == me) {
        let _ = std::fs::remove_file(path);
    }
}

/// Where log lines go: appended to a file, or stdout. Every line is
/// timestamped and redacted; write errors are ignored (a full disk must not
/// stop the heartbeat).
pub struct LogSink {
    file: Option<File>,
}

impl LogSink {
    pub fn open(path: Option<&Path>) -> Result<LogSink> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .with_context(|| format!("opening log {}", p.display()))?,
                )
            }
            None => None,
        };
        Ok(LogSink { file })
    }

    /// `<RFC3339 time> <text>`.
    pub fn line(&mut self, text: &str) {
        let line = format!(
            "{} {}\n",
            rfc3339(SystemTime::now()),
            resources::redact::redact(text)
        );
        // One write per line: O_APPEND keeps concurrent writers' lines whole.
        let _ = match &mut self.file {
            Some(f) => f.write_all(line.as_bytes()),
            // The service's own output (its log), not a report: stdout is
            // where a foreground service logs.
            None => std::io::stdout().lock().write_all(line.as_bytes()),
        };
    }

    fn error(&mut self, text: &str) {
        self.line(&format!("error: {text}"));
    }
}

/// The heartbeat loop: connect, create the table, write a row every
/// `interval`; on any error log it, back off and reconnect. Returns when
/// `stop` is set.
pub fn serve(cfg: &StandinConfig, sink: &mut LogSink, interval: Duration, stop: &AtomicBool) {
    let writer = format!(
        "stash-standin pid {} on {}",
        std::process::id(),
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    sink.line(&format!(
        "started: jdbc url hosts {} database {} as {}",
        cfg.url.hosts_text(),
        cfg.url.database,
        cfg.user
    ));
    let mut seq: i64 = 0;
    let mut backoff = MIN_BACKOFF;
    // When the current outage began (None while writing).
    let mut outage: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let (mut client, at) = match connect(cfg) {
            Ok(c) => c,
            Err(e) => {
                sink.error(&format!("{e:#}"));
                sleep_unless_stopped(backoff, stop);
                backoff = next_backoff(backoff, *outage.get_or_insert_with(Instant::now));
                continue;
            }
        };
        sink.line(&format!("connected to {at}"));
        if let Err(e) = client.batch_execute(CREATE_TABLE) {
            sink.error(&format!(
                "creating table heartbeat on {at}: {}",
                pg_error(&e)
            ));
            sleep_unless_stopped(backoff, stop);
            backoff = next_backoff(backoff, *outage.get_or_insert_with(Instant::now));
            continue;
        }
        backoff = MIN_BACKOFF;
        outage = None;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let next = seq + 1;
            match client.execute(
                "insert into heartbeat(writer, seq) values ($1, $2)",
                &[&writer, &next],
            ) {
                Ok(_) => {
                    seq = next;
                    sink.line(&format!("wrote seq={seq} to {at}"));
                }
                Err(e) => {
                    sink.error(&format!("writing seq={next} to {at}: {}", pg_error(&e)));
                    outage.get_or_insert_with(Instant::now);
                    break;
                }
            }
            sleep_unless_stopped(interval.saturating_sub(started.elapsed()), stop);
        }
        sleep_unless_stopped(backoff, stop);
    }
    sink.line("stopped");
}

/// Opens a connection the way pgJDBC picks a host of the url; returns it
/// with the `host:port/db` it reached.
fn connect(cfg: &StandinConfig) -> Result<(postgres::Client, String)> {
    let mut refused = Vec::new();
    let mut fallback = None;
    for host in &cfg.url.hosts {
        let at = cfg.url.describe(host);
        let mut conn =
            resources::pg::Conn::new(&host.0, host.1, &cfg.user, cfg.password.as_deref())
                .db(&cfg.url.database);
        conn.connect_timeout = CONNECT_TIMEOUT;
        let mut client = match conn.connect() {
            Ok(c) => c,
            Err(e) => {
                refused.push(format!("{at}: {e}"));
                continue;
            }
        };
        if cfg.url.target == TargetServerType::Any {
            return Ok((client, at));
        }
        match client.query_one("select pg_is_in_recovery()", &[]) {
            Ok(row) if !row.get::<_, bool>(0) => return Ok((client, at)),
            Ok(_) => {
                refused.push(format!("{at}: in recovery (a standby)"));
                if fallback.is_none() {
                    fallback = Some((client, at));
                }
            }
            Err(e) => refused.push(format!("{at}: {}", pg_error(&e))),
        }
    }
    if cfg.url.target == TargetServerType::PreferPrimary {
        if let Some(found) = fallback {
            return Ok(found);
        }
    }
    let wanted = if cfg.url.target == TargetServerType::Any {
        "no server"
    } else {
        "no primary"
    };
    bail!(
        "{wanted} reachable among {}: {}",
        cfg.url.hosts_text(),
        refused.join("; ")
    )
}

fn pg_error(e: &postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    resources::redact::redact(&text).into_owned()
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// `2026-11-27T10:17:03.123Z` (UTC, milliseconds).
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
