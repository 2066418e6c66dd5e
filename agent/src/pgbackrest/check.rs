//! `agent pgbackrest check`'s checks: a stanza's [`StanzaHealth`] held to
//! [`Limits`], one [`CheckLine`] per check (Barman's `check`: OK/FAILED,
//! the value, the limit). Pure: reading the health is the parent module's
//! job. Its tests are the parent's (they start from `info` JSON).

use std::time::Duration;

use serde::Serialize;

use super::StanzaHealth;

/// The limits `agent pgbackrest check` holds a stanza to.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_full_age: Duration,
    pub max_wal_age: Duration,
    pub min_redundancy: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_full_age: Duration::from_secs(8 * 86400),
            max_wal_age: Duration::from_secs(300),
            min_redundancy: 1,
        }
    }
}

/// One line of the check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckLine {
    pub stanza: String,
    pub check: String,
    pub ok: bool,
    /// What was found (`3d 2h`, `none`).
    pub value: String,
    /// What it is held to (`<= 8d`).
    pub limit: String,
}

impl std::fmt::Display for CheckLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {} ({}, limit {})",
            self.stanza,
            self.check,
            if self.ok { "OK" } else { "FAILED" },
            self.value,
            self.limit
        )
    }
}

fn age(s: Option<i64>) -> String {
    match s {
        Some(s) => humantime::format_duration(Duration::from_secs(s.max(0) as u64)).to_string(),
        None => "none".into(),
    }
}

/// The checks of one stanza, in a fixed order: status, last full backup's
/// age, newest archived WAL's age, redundancy.
pub fn check(stanza: &str, h: &StanzaHealth, limits: &Limits) -> Vec<CheckLine> {
    let line = |check: &str, ok: bool, value: String, limit: String| CheckLine {
        stanza: stanza.to_string(),
        check: check.to_string(),
        ok,
        value,
        limit,
    };
    let within = |v: Option<i64>, max: Duration| v.is_some_and(|v| v as u64 <= max.as_secs());
    vec![
        line("status", h.status_code == 0, h.status.clone(), "ok".into()),
        line(
            "last full backup age",
            within(h.last_full_age_s, limits.max_full_age),
            age(h.last_full_age_s),
            format!("<= {}", humantime::format_duration(limits.max_full_age)),
        ),
        line(
            "last archived WAL age",
            within(h.last_wal_archived_age_s, limits.max_wal_age),
            age(h.last_wal_archived_age_s),
            format!("<= {}", humantime::format_duration(limits.max_wal_age)),
        ),
        line(
            "redundancy",
            h.redundancy >= limits.min_redundancy,
            format!("{} full backup(s)", h.redundancy),
            format!(">= {}", limits.min_redundancy),
        ),
    ]
}
