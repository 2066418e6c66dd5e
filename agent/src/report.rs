//! Everything the user sees: per-resource notices and diffs as the run goes,
//! the one-line summary, the JSON report in the state dir, exit codes, and
//! the output of `facts` / `lookup` / `validate`. The only module that prints.
//! Every line goes through the redactor first.

use std::io::Write;

use resources::redact;
use serde::Serialize;

use crate::apply::{Observer, Outcome, Status};

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
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub node: &'a str,
    pub roles: &'a [String],
    pub noop: bool,
    /// Seconds since the epoch at the start of the run.
    pub started_at: u64,
    pub summary: &'a Summary,
    pub resources: &'a [Outcome],
}

impl Report<'_> {
    /// The report as JSON, redacted.
    pub fn to_json(&self) -> String {
        let text = serde_json::to_string_pretty(self).expect("report serializes");
        redact::redact(&text).into_owned() + "\n"
    }
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", redact::redact(line));
}

fn err(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", redact::redact(line));
}

/// Prints notices as resources finish (changes, diffs, failures, skips).
pub struct Printer {
    pub show_diffs: bool,
}

impl Observer for Printer {
    fn resource_done(&mut self, o: &Outcome) {
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
            out(&format!("{prefix}: {}: {c}", o.id));
        }
        if self.show_diffs {
            for d in &o.diffs {
                out(d.trim_end_matches('\n'));
            }
        }
        if let Some(m) = &o.message {
            let line = format!("{prefix}: {}: {m}", o.id);
            if o.status == Status::Failed {
                err(&line)
            } else {
                out(&line)
            }
        }
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
}
