//! Where the agent's logs go and how they look, with Puppet's flags:
//! `--logdest console|syslog|json|FILE` (a FILE ending in `.json` gets JSON
//! lines, as Puppet's) and `--color auto|always|never` (Puppet's
//! `true`/`false`/`ansi` too). Every destination writes through the
//! redactor: a Sensitive value never reaches a log.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// `--logdest`.
#[derive(Debug, Clone, PartialEq)]
pub enum LogDest {
    /// stderr (the default).
    Console,
    /// The system log (syslog(3), facility user, tagged `agent`).
    Syslog,
    /// JSON lines on stderr.
    Json,
    /// Appended to a file; JSON lines when its name ends in `.json`.
    File(PathBuf),
}

impl std::str::FromStr for LogDest {
    type Err = String;
    fn from_str(s: &str) -> Result<LogDest, String> {
        Ok(match s {
            "console" => LogDest::Console,
            "syslog" => LogDest::Syslog,
            "json" => LogDest::Json,
            "" => return Err("empty log destination".into()),
            path => LogDest::File(PathBuf::from(path)),
        })
    }
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// On a terminal only.
    Auto,
    /// Always (Puppet's `true`, `ansi`).
    #[value(alias = "true", alias = "ansi")]
    Always,
    /// Never (Puppet's `false`).
    #[value(alias = "false")]
    Never,
}

impl Color {
    /// Whether a stream gets colours: `terminal` says whether it is one.
    pub fn on(self, terminal: bool) -> bool {
        match self {
            Color::Auto => terminal,
            Color::Always => true,
            Color::Never => false,
        }
    }
}

/// Colours of the report's lines on stdout and stderr (`--color`).
pub fn init_report(color: Color) {
    use std::io::IsTerminal;
    crate::engine::report::set_colour(
        color.on(std::io::stdout().is_terminal()),
        color.on(std::io::stderr().is_terminal()),
    );
}

/// Installs the subscriber: `verbose` is -v's count (or what -t/-d imply),
/// `AGENT_LOG` directives override it.
pub fn init(verbose: u8, dest: &LogDest, color: Color) -> anyhow::Result<()> {
    let (writer, json, terminal) = match dest {
        LogDest::Console => (Dest::Stderr, false, stderr_is_terminal()),
        LogDest::Json => (Dest::Stderr, true, false),
        LogDest::Syslog => (Dest::Syslog, false, false),
        LogDest::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("--logdest {}: {e}", path.display()))?;
            let json = path.extension().is_some_and(|e| e == "json");
            (Dest::File(Arc::new(Mutex::new(file))), json, false)
        }
    };
    // Colour only where a person reads: a terminal (auto), or when asked.
    let ansi = match color {
        Color::Auto => terminal,
        Color::Always => !json && !matches!(writer, Dest::Syslog),
        Color::Never => false,
    };
    if matches!(writer, Dest::Syslog) {
        // SAFETY: the identity is a static C string, kept for the process.
        unsafe { libc::openlog(c"agent".as_ptr(), libc::LOG_PID, libc::LOG_USER) };
    }
    let make = MakeDest(writer);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(make)
        .with_target(false)
        .with_ansi(ansi);
    let layer = if json {
        layer.json().boxed()
    } else if *dest == LogDest::Syslog {
        // syslog stamps its own time.
        layer.without_time().boxed()
    } else {
        layer.boxed()
    };
    // AGENT_LOG directives need EnvFilter, whose parser compiles regexes
    // (a third of a millisecond); without them a plain per-crate level
    // does. As before, AGENT_LOG that does not parse falls back to -v.
    let directives = std::env::var("AGENT_LOG")
        .ok()
        .and_then(|d| EnvFilter::try_new(d).ok());
    let registry = tracing_subscriber::registry().with(layer);
    let _ = match directives {
        Some(filter) => registry.with(filter).try_init(),
        None => {
            let level = match verbose {
                0 => LevelFilter::WARN,
                1 => LevelFilter::INFO,
                2 => LevelFilter::DEBUG,
                _ => LevelFilter::TRACE,
            };
            // -v levels are the agent's own: libraries stay at warnings
            // (handlebars alone logs a debug line per rendered expression).
            let targets = Targets::new()
                .with_target("agent", level)
                .with_target("resources", level)
                .with_default(LevelFilter::WARN);
            registry.with(targets).try_init()
        }
    };
    Ok(())
}

fn stderr_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

#[derive(Clone)]
enum Dest {
    Stderr,
    Syslog,
    File(Arc<Mutex<std::fs::File>>),
}

struct MakeDest(Dest);

impl<'a> MakeWriter<'a> for MakeDest {
    type Writer = Redacting;

    fn make_writer(&'a self) -> Redacting {
        Redacting {
            dest: self.0.clone(),
            priority: libc::LOG_INFO,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Redacting {
        let priority = match *meta.level() {
            tracing::Level::ERROR => libc::LOG_ERR,
            tracing::Level::WARN => libc::LOG_WARNING,
            tracing::Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        Redacting {
            dest: self.0.clone(),
            priority,
        }
    }
}

/// One log event's writer: redacts, then hands the text to its place.
pub struct Redacting {
    dest: Dest,
    priority: libc::c_int,
}

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = resources::redact::redact(&text);
        match &self.dest {
            Dest::Stderr => std::io::stderr().write_all(text.as_bytes())?,
            Dest::File(f) => f
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(text.as_bytes())?,
            Dest::Syslog => {
                for line in text.lines().filter(|l| !l.is_empty()) {
                    let Ok(c) = std::ffi::CString::new(line.replace('\0', " ")) else {
                        continue;
                    };
                    // SAFETY: "%s" with one NUL-terminated string argument.
                    unsafe { libc::syslog(self.priority, c"%s".as_ptr(), c.as_ptr()) };
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
