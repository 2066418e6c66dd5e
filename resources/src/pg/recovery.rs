//! Recovery settings of a standby, in the form its server version reads.
//!
//! PostgreSQL ≤ 11 reads them from `recovery.conf` (`standby_mode`,
//! `primary_conninfo`, `trigger_file`). 12 moved them into the ordinary
//! configuration (`postgresql.auto.conf`) plus an empty `standby.signal`, and
//! refuses to start while a `recovery.conf` exists; 16 dropped
//! `promote_trigger_file`. Everything here is pure so that both forms are
//! tested without a server of each version.

/// The settings file of PostgreSQL ≤ 11.
pub const RECOVERY_CONF: &str = "recovery.conf";
/// Where 12+ keeps the settings we own (ALTER SYSTEM's file: the server reads
/// it last, so our values win over postgresql.conf).
pub const AUTO_CONF: &str = "postgresql.auto.conf";
/// The empty file that makes a 12+ server start as a standby.
pub const STANDBY_SIGNAL: &str = "standby.signal";

/// The first version that uses `standby.signal` + `postgresql.auto.conf`.
pub const SIGNAL_VERSION: u32 = 12;

/// A configuration line `name = value` (PostgreSQL's syntax; the `=` is
/// optional there, we require it): the setting name, lower-cased as the
/// server compares names. Blank lines and comments give `None`.
pub fn setting_name(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    rest.trim_start()
        .starts_with('=')
        .then(|| name.to_ascii_lowercase())
}

/// True for blank lines and comments.
fn is_blank_or_comment(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with('#')
}

/// The settings of `content` as `(name, line)`, a later line of the same
/// name replacing an earlier one (the server keeps the last value too).
fn settings(content: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in content.lines() {
        let Some(name) = setting_name(line) else {
            continue;
        };
        let line = line.trim().to_string();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = line,
            None => out.push((name, line)),
        }
    }
    out
}

/// Checks `content` before it is written: every line must be a setting, a
/// comment or blank (the server refuses a file with anything else), and the
/// settings must exist in `version` — an unknown one stops the server at
/// startup, which on a standby means no standby at all.
pub fn validate(version: u32, content: &str) -> Result<(), String> {
    if let Some(bad) = content
        .lines()
        .find(|l| !is_blank_or_comment(l) && setting_name(l).is_none())
    {
        return Err(format!(
            "recovery settings line '{}' is not `name = 'value'`",
            bad.trim()
        ));
    }
    let names: Vec<String> = settings(content).into_iter().map(|(n, _)| n).collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    let refuse = |n: &str, why: &str| -> Result<(), String> {
        if has(n) {
            Err(format!(
                "PostgreSQL {version} does not know '{n}' ({why}); use the template for this version"
            ))
        } else {
            Ok(())
        }
    };
    if version < SIGNAL_VERSION {
        refuse("promote_trigger_file", "it is trigger_file before 12")?;
        if !content_sets_on(content, "standby_mode") {
            return Err(format!(
                "recovery.conf for PostgreSQL {version} needs standby_mode = 'on' \
                 (without it the server recovers and then promotes itself)"
            ));
        }
    } else {
        refuse("standby_mode", "standby.signal replaced it in 12")?;
        refuse("trigger_file", "it is promote_trigger_file from 12")?;
        if version >= 16 {
            refuse(
                "promote_trigger_file",
                "removed in 16: promote with pg_ctl promote or pg_promote()",
            )?;
        }
    }
    if !has("primary_conninfo") {
        return Err("recovery settings lack primary_conninfo".into());
    }
    Ok(())
}

/// True when the last `name` line of `content` sets it to on/true/yes/1.
fn content_sets_on(content: &str, name: &str) -> bool {
    settings(content)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, line)| {
            line.split_once('=').map(|(_, v)| {
                let v = v.split('#').next().unwrap_or("").trim();
                let v = v.trim_matches('\'').to_ascii_lowercase();
                matches!(v.as_str(), "on" | "true" | "yes" | "1")
            })
        })
        .unwrap_or(false)
}

/// The files (name inside the data dir, full new content) that make a data
/// dir of `version` a standby with the settings in `content`.
///
/// ≤ 11: `recovery.conf` holding `content` as given. 12+: `content`'s
/// settings set in `postgresql.auto.conf` (the first existing line of each
/// name replaced in place, later duplicates dropped, every other line kept,
/// new names appended), and an empty `standby.signal`.
pub fn recovery_files(
    version: u32,
    content: &str,
    existing_auto_conf: &str,
) -> Vec<(String, String)> {
    if version < SIGNAL_VERSION {
        return vec![(RECOVERY_CONF.to_string(), with_newline(content))];
    }
    let wanted = settings(content);
    let mut written: Vec<&str> = Vec::new();
    let mut out = String::with_capacity(existing_auto_conf.len() + content.len());
    for line in existing_auto_conf.lines() {
        let ours = setting_name(line).and_then(|n| wanted.iter().find(|(w, _)| *w == n));
        match ours {
            Some((name, _)) if written.contains(&name.as_str()) => {}
            Some((name, new)) => {
                out.push_str(new);
                out.push('\n');
                written.push(name);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (name, line) in &wanted {
        if !written.contains(&name.as_str()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    vec![
        (AUTO_CONF.to_string(), out),
        (STANDBY_SIGNAL.to_string(), String::new()),
    ]
}

fn with_newline(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTO: &str = "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = '8MB'\nprimary_conninfo = 'host=old'\nPRIMARY_CONNINFO = 'host=older'\n";

    #[test]
    fn setting_names() {
        assert_eq!(
            setting_name("  Primary_Conninfo = 'x'"),
            Some("primary_conninfo".into())
        );
        assert_eq!(setting_name("a.b=1"), Some("a.b".into()));
        assert_eq!(setting_name("# primary_conninfo = 'x'"), None);
        assert_eq!(setting_name("standby_mode on"), None);
        assert_eq!(setting_name(""), None);
    }

    #[test]
    fn version_11_writes_recovery_conf_as_given() {
        let content = "standby_mode = 'on'\nprimary_conninfo = 'host=db1 password=s3'\ntrigger_file = '/var/lib/pgsql/data/trigger_failover.txt'";
        validate(11, content).unwrap();
        let files = recovery_files(11, content, AUTO);
        assert_eq!(
            files,
            vec![("recovery.conf".to_string(), format!("{content}\n"))]
        );
        assert!(validate(11, "primary_conninfo = 'h'\n")
            .unwrap_err()
            .contains("standby_mode"));
        assert!(validate(9, "standby_mode = off\nprimary_conninfo = 'h'\n").is_err());
        assert!(validate(
            11,
            "standby_mode = on\nprimary_conninfo = 'h'\npromote_trigger_file = 'x'\n"
        )
        .is_err());
    }

    #[test]
    fn version_15_sets_auto_conf_and_signal() {
        let content = "# managed\nprimary_conninfo = 'host=db1 port=5432'\npromote_trigger_file = '/data/trigger_failover.txt'\n";
        validate(15, content).unwrap();
        let files = recovery_files(15, content, AUTO);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "postgresql.auto.conf");
        assert_eq!(
            files[0].1,
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = '8MB'\nprimary_conninfo = 'host=db1 port=5432'\npromote_trigger_file = '/data/trigger_failover.txt'\n"
        );
        assert_eq!(files[1], ("standby.signal".to_string(), String::new()));
        // Applying to its own output changes nothing.
        assert_eq!(recovery_files(15, content, &files[0].1)[0].1, files[0].1);
        // From an empty file: just the settings.
        assert_eq!(
            recovery_files(12, content, "")[0].1,
            "primary_conninfo = 'host=db1 port=5432'\npromote_trigger_file = '/data/trigger_failover.txt'\n"
        );
        assert!(validate(15, "standby_mode = 'on'\nprimary_conninfo = 'h'\n").is_err());
        assert!(validate(15, "primary_conninfo = 'h'\ntrigger_file = 'x'\n").is_err());
        assert!(validate(15, "promote_trigger_file = 'x'\n")
            .unwrap_err()
            .contains("primary_conninfo"));
        assert!(validate(15, "primary_conninfo 'h'\n").is_err());
    }

    #[test]
    fn version_16_uses_content_as_given_and_refuses_trigger_files() {
        let content = "primary_conninfo = 'host=db1'\napplication_name = 'standby'\nprimary_conninfo = 'host=db2'\n";
        validate(16, content).unwrap();
        let files = recovery_files(16, content, "");
        // The last value of a repeated name wins, as in the server.
        assert_eq!(
            files[0].1,
            "primary_conninfo = 'host=db2'\napplication_name = 'standby'\n"
        );
        assert!(
            validate(16, "primary_conninfo = 'h'\npromote_trigger_file = '/t'\n")
                .unwrap_err()
                .contains("removed in 16")
        );
    }
}
