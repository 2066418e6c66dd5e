//! Everything the user sees: per-resource notices and diffs as the run goes,
//! the one-line summary, the JSON report in the state dir, exit codes, and
//! the output of `facts` / `lookup` / `validate`. The only module that prints.
//! Every line goes through the redactor first.

use std::borrow::Cow;
use std::io::Write;

use resources::redact;
use serde::Serialize;

use crate::engine::apply::{Observer, Outcome, Status};
use crate::engine::catalog::Entry;

/// Counts of one run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub total: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Out of sync but left alone (noop).
    pub out_of_sync: usize,
    pub unchanged: usize,
    pub seconds: f64,
}

impl Summary {
    pub fn of(outcomes: &[Outcome], seconds: f64) -> Self {
        let count = |s| outcomes.iter().filter(|o| o.status == s).count();
        Summary {
            total: outcomes.len(),
            changed: count(Status::Changed),
            failed: count(Status::Failed),
            skipped: count(Status::Skipped),
            out_of_sync: count(Status::Noop),
            unchanged: count(Status::Unchanged),
            seconds,
        }
    }

    /// Puppet's exit codes: with `--detailed-exitcodes` 0 no change, 2
    /// changes (or would-be changes in noop), 4 failures, 6 both; without it
    /// 0 unless something failed, then 1.
    pub fn exit_code(&self, detailed: bool) -> u8 {
        let failed = self.failed > 0 || self.skipped > 0;
        if !detailed {
            return u8::from(failed);
        }
        let mut code = 0;
        if self.changed > 0 || self.out_of_sync > 0 {
            code |= 2;
        }
        if failed {
            code |= 4;
        }
        code
    }
}

/// The JSON report written to `<state>/last_run_report.json`.
pub struct Report<'a> {
    pub node: &'a str,
    pub roles: &'a [String],
    pub noop: bool,
    /// Seconds since the epoch at the start of the run.
    pub started_at: u64,
    pub summary: &'a Summary,
    /// The catalog's entries, which the outcomes point into.
    pub entries: &'a [Entry],
    pub resources: &'a [Outcome],
}

impl Report<'_> {
    /// Writes the report as JSON: the run's fields, then one resource per
    /// line, so that a run of 100k resources never holds the whole text.
    /// Every string is redacted before it is escaped, so a secret holding a
    /// quote or a backslash is caught as well.
    pub fn write_json(&self, w: &mut dyn Write) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Head<'a> {
            node: &'a str,
            roles: Vec<Cow<'a, str>>,
            noop: bool,
            started_at: u64,
            summary: &'a Summary,
        }
        let head = serde_json::to_string(&Head {
            node: &redact::redact(self.node),
            roles: self.roles.iter().map(|r| redact::redact(r)).collect(),
            noop: self.noop,
            started_at: self.started_at,
            summary: self.summary,
        })?;
        let head = head.strip_suffix('}').expect("an object");
        write!(w, "{head},\"resources\":[")?;
        for (i, o) in self.resources.iter().enumerate() {
            w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
            serde_json::to_writer(&mut *w, &RedactedOutcome(&self.entries[o.entry], o))?;
        }
        w.write_all(b"\n]}\n")
    }
}

/// Puppet's `last_run_summary.yaml` for this run, in Puppet's schema, so a
/// monitoring check written for Puppet (`time.last_run`,
/// `events.failure`, `resources.failed`...) reads it unchanged. Counts and
/// times only: no name, path or value, so nothing secret.
pub fn run_summary(report: &Report<'_>) -> serde_json::Value {
    use serde_json::json;
    let s = report.summary;
    let mut times = serde_json::Map::new();
    for o in report.resources {
        let t = &report.entries[o.entry].id.type_name;
        let slot = times.entry(t.clone()).or_insert(json!(0.0));
        *slot = json!(slot.as_f64().unwrap_or(0.0) + o.duration_ms / 1000.0);
    }
    let per_type: f64 = times.values().filter_map(serde_json::Value::as_f64).sum();
    times.insert(
        "config_retrieval".into(),
        json!((s.seconds - per_type).max(0.0)),
    );
    times.insert("total".into(), json!(s.seconds));
    times.insert("last_run".into(), json!(report.started_at));
    let restarted = report.resources.iter().filter(|o| o.refreshed).count();
    let failed_to_restart = report
        .resources
        .iter()
        .filter(|o| o.refreshed && o.status == Status::Failed)
        .count();
    json!({
        "version": {"config": report.started_at, "puppet": format!("agent {}", env!("CARGO_PKG_VERSION"))},
        "application": {"run_mode": "user", "noop": report.noop},
        "resources": {
            "changed": s.changed,
            "corrective_change": 0,
            "failed": s.failed,
            "failed_to_restart": failed_to_restart,
            "out_of_sync": s.changed + s.out_of_sync,
            "restarted": restarted,
            "scheduled": 0,
            "skipped": s.skipped,
            "total": s.total,
        },
        "time": times,
        "changes": {"total": s.changed},
        "events": {
            "failure": s.failed,
            "noop": s.out_of_sync,
            "success": s.changed,
            "total": s.failed + s.out_of_sync + s.changed,
        },
    })
}

/// An outcome (and its resource) serialized with its strings redacted.
struct RedactedOutcome<'a>(&'a Entry, &'a Outcome);

impl Serialize for RedactedOutcome<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (e, o) = (self.0, self.1);
        let mut st = s.serialize_struct("Outcome", 8)?;
        st.serialize_field("id", &RedactedText(&e.id))?;
        st.serialize_field("file", &RedactedText(e.location.file.display()))?;
        st.serialize_field("line", &e.location.line)?;
        st.serialize_field("status", &o.status)?;
        let changes: Vec<Cow<'_, str>> = o.changes.iter().map(|c| redact::redact(c)).collect();
        st.serialize_field("changes", &changes)?;
        match &o.message {
            Some(m) => st.serialize_field("message", &redact::redact(m))?,
            None => st.skip_field("message")?,
        }
        st.serialize_field("refreshed", &o.refreshed)?;
        st.serialize_field("duration_ms", &o.duration_ms)?;
        st.end()
    }
}

/// Text serialized redacted; written straight into the JSON, without a
/// `String` of its own, while no secret is registered.
struct RedactedText<T>(T);

impl<T: std::fmt::Display> Serialize for RedactedText<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if redact::none_registered() {
            s.collect_str(&self.0)
        } else {
            s.serialize_str(&redact::redact(&self.0.to_string()))
        }
    }
}

/// Whether stdout / stderr get colours (`--color`: on a terminal by
/// default, never into a file or a pipe unless asked).
static COLOUR_OUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static COLOUR_ERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets whether stdout and stderr lines are coloured.
pub fn set_colour(stdout: bool, stderr: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    COLOUR_OUT.store(stdout, Relaxed);
    COLOUR_ERR.store(stderr, Relaxed);
}

/// `line` in Puppet's colours when `on`: errors red, warnings yellow,
/// notices cyan, noop notices magenta, a diff's added lines green and
/// removed lines red.
fn paint(line: &str, on: bool) -> std::borrow::Cow<'_, str> {
    if !on {
        return line.into();
    }
    let code = if line.starts_with("Error") {
        "31"
    } else if line.starts_with("Warning") {
        "33"
    } else if line.starts_with("Notice (noop)") {
        "35"
    } else if line.starts_with("Notice") || line.starts_with("@@") {
        "36"
    } else if line.starts_with('+') && !line.starts_with("+++") {
        "32"
    } else if line.starts_with('-') && !line.starts_with("---") {
        "31"
    } else {
        return line.into();
    };
    format!("\x1b[{code}m{line}\x1b[0m").into()
}

fn out(line: &str) {
    let on = COLOUR_OUT.load(std::sync::atomic::Ordering::Relaxed);
    let mut stdout = std::io::stdout().lock();
    for l in redact::redact(line).split('\n') {
        let _ = writeln!(stdout, "{}", paint(l, on));
    }
}

fn err(line: &str) {
    let on = COLOUR_ERR.load(std::sync::atomic::Ordering::Relaxed);
    let mut stderr = std::io::stderr().lock();
    for l in redact::redact(line).split('\n') {
        let _ = writeln!(stderr, "{}", paint(l, on));
    }
}

/// Prints notices as resources finish (changes, diffs, failures, skips):
/// the lines of one resource in one write.
pub struct Printer {
    pub show_diffs: bool,
    lines: String,
}

impl Printer {
    pub fn new(show_diffs: bool) -> Self {
        Printer {
            show_diffs,
            lines: String::new(),
        }
    }

    fn line(&mut self, line: &str) {
        let on = COLOUR_OUT.load(std::sync::atomic::Ordering::Relaxed);
        for l in redact::redact(line).split('\n') {
            self.lines.push_str(&paint(l, on));
            self.lines.push('\n');
        }
    }

    fn flush(&mut self) {
        if !self.lines.is_empty() {
            let _ = std::io::stdout().lock().write_all(self.lines.as_bytes());
            self.lines.clear();
        }
    }
}

impl Observer for Printer {
    fn resource_done(&mut self, e: &Entry, o: &Outcome) {
        let prefix = match o.status {
            Status::Noop => "Notice (noop)",
            Status::Failed => "Error",
            Status::Skipped => "Warning",
            _ => "Notice",
        };
        for c in &o.changes {
            let c = if o.status == Status::Noop {
                c.replace(" changed ", " would change ")
            } else {
                c.clone()
            };
            self.line(&format!("{prefix}: {}: {c}", e.id));
        }
        if self.show_diffs {
            for d in &o.diffs {
                self.line(d.trim_end_matches('\n'));
            }
        }
        if let Some(m) = &o.message {
            // Types name themselves in their errors: the id once.
            let id = e.id.to_string();
            let m = m
                .strip_prefix(id.as_str())
                .and_then(|r| r.strip_prefix(": "))
                .unwrap_or(m);
            let line = format!("{prefix}: {id}: {m}");
            if o.status == Status::Failed {
                self.flush();
                err(&line)
            } else {
                self.line(&line)
            }
        }
        self.flush();
    }
}

/// `Notice: Applied catalog for N: 3 changed, 0 failed, 1 skipped, 12 total in 0.02 s`
pub fn print_summary(node: &str, s: &Summary, noop: bool) {
    let verb = if noop { "Noop run" } else { "Applied catalog" };
    let pending = if noop {
        format!(", {} out of sync", s.out_of_sync)
    } else {
        String::new()
    };
    out(&format!(
        "Notice: {verb} for {node}: {} changed, {} failed, {} skipped{pending}, {} total in {:.3} s",
        s.changed, s.failed, s.skipped, s.total, s.seconds
    ));
}

/// Prints errors (compile or run) to stderr, one block each.
pub fn print_errors(header: &str, errors: &[String]) {
    for e in errors {
        err(&format!("Error: {header}: {e}"));
    }
}

/// Prints a plain line to stdout (facts, lookups, graphs).
pub fn print(text: &str) {
    let text = text.strip_suffix('\n').unwrap_or(text);
    out(text);
}

/// Prints without redaction: only for values the user asked to see in
/// clear (`lookup --show-sensitive`).
pub fn print_raw(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", text.strip_suffix('\n').unwrap_or(text));
}

/// Prints a line to stderr.
pub fn warn(text: &str) {
    err(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_puppet() {
        let s = |changed, failed| Summary {
            changed,
            failed,
            ..Default::default()
        };
        assert_eq!(s(0, 0).exit_code(true), 0);
        assert_eq!(s(1, 0).exit_code(true), 2);
        assert_eq!(s(0, 1).exit_code(true), 4);
        assert_eq!(s(1, 1).exit_code(true), 6);
        assert_eq!(s(1, 0).exit_code(false), 0);
        assert_eq!(s(0, 1).exit_code(false), 1);
    }

    #[test]
    fn report_is_json_one_resource_per_line_and_redacts_before_escaping() {
        use crate::engine::catalog::Meta;
        use resources::{registry, Decl, Location, ResourceId};
        let secret = r#"Qu"ote\Back-report-secret"#;
        redact::register(secret);
        let entry = |type_name: &str, title: &str, attrs: serde_json::Value| {
            let decl = Decl {
                id: ResourceId::new(type_name, title),
                attrs: attrs.as_object().cloned().unwrap_or_default(),
                sensitive: Default::default(),
                location: Location {
                    file: std::path::Path::new("roles/r.yaml").into(),
                    line: 3,
                },
            };
            let build = registry::lookup(type_name).expect("registered type");
            Entry::new(
                decl.id.clone(),
                build(&decl, &Default::default()).expect("valid declaration"),
                Meta::default(),
                decl.location,
            )
        };
        let entries = [
            entry("exec", "a", serde_json::json!({"command": "true"})),
            entry("file", "/b", serde_json::json!({"content": "x"})),
        ];
        let outcome = |entry: usize, message: Option<String>| Outcome {
            entry,
            status: Status::Failed,
            changes: vec![format!("content changed to {secret}")],
            diffs: vec![],
            message,
            refreshed: false,
            duration_ms: 1.5,
        };
        let outcomes = [
            outcome(0, Some(format!("exit 1: {secret}"))),
            outcome(1, None),
        ];
        let summary = Summary::of(&outcomes, 0.25);
        let roles = ["roles/r".to_string()];
        let report = Report {
            node: "n1",
            roles: &roles,
            noop: false,
            started_at: 7,
            summary: &summary,
            entries: &entries,
            resources: &outcomes,
        };
        let mut out = Vec::new();
        report.write_json(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let escaped = serde_json::to_string(secret).unwrap();
        assert!(!text.contains(&escaped[1..escaped.len() - 1]), "{text}");
        assert!(!text.contains("Back-report-secret"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["summary"]["failed"], 2);
        assert_eq!(v["resources"][0]["id"], "exec[a]");
        assert_eq!(v["resources"][1]["file"], "roles/r.yaml");
        assert_eq!(v["resources"][1]["line"], 3);
        assert_eq!(v["resources"][0]["message"], "exit 1: [redacted]");
        assert!(v["resources"][1].get("message").is_none());
        assert_eq!(text.lines().count(), 4, "head, one line per resource, end");
    }
}
