//! `cron`: one entry of a crontab (a user's spool file, `/etc/crontab` or a
//! file under `/etc/cron.d/`).
//!
//! Like Puppet's `# Puppet Name:` lines, every entry this type writes sits
//! under a marker comment `# agent: <title>`; only marked blocks are ever
//! changed or removed, so entries written by people or packages — even with
//! the same command — are left alone byte for byte. Schedules are validated
//! with the `cron` crate at build time, so a typo fails before anything runs.

use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::attr::{Ensure, OneOrMany};
use crate::core::{Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::edited::{self, Rewrite};

/// Attributes of `- cron: <entry name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `present` (default) writes the entry; `absent` removes our marked
    /// block (and nothing else).
    #[serde(default)]
    ensure: Ensure,
    /// The command line, run by the user's shell. Required when present.
    /// A `%` means newline to cron: write `\%` for a literal one.
    command: Option<String>,
    /// Whose entry this is (default `root`): picks the spool file, or fills
    /// the user field in `/etc/cron.d/` files.
    user: Option<String>,
    /// The whole schedule: five fields (`*/5 * * * *`) or one of `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`, `@annually`, `@reboot`.
    /// Not combinable with the separate fields below.
    schedule: Option<String>,
    /// Minute field (default `*`); a string, an integer or a list (joined by `,`).
    minute: Option<FieldValue>,
    /// Hour field (default `*`).
    hour: Option<FieldValue>,
    /// Day-of-month field (default `*`).
    monthday: Option<FieldValue>,
    /// Month field (default `*`).
    month: Option<FieldValue>,
    /// Day-of-week field (default `*`), 0–7 (0 and 7 are Sunday) or names.
    weekday: Option<FieldValue>,
    /// `NAME=value` lines written just above the entry. Cron applies them to
    /// every later line of the file too, as with Puppet's `environment`.
    environment: Option<OneOrMany>,
    /// The crontab file. Default: the user's spool file
    /// (`/var/spool/cron/crontabs/<user>` on Debian, `/var/spool/cron/<user>`
    /// on RedHat). Under `/etc/cron.d/` (and for `/etc/crontab`) the entry
    /// gets the user field, as cron(8) reads those files.
    target: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Num(u64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Num(n) => n.to_string(),
            Scalar::Text(s) => s.trim().to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FieldValue {
    One(Scalar),
    Many(Vec<Scalar>),
}

impl FieldValue {
    fn text(&self) -> String {
        match self {
            FieldValue::One(s) => s.text(),
            FieldValue::Many(v) => v.iter().map(Scalar::text).collect::<Vec<_>>().join(","),
        }
    }
}

/// The `@` shorthands cron(8) understands.
const MACROS: &[&str] = &[
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@reboot",
];

/// Checks a schedule (`@macro` or five fields) with the `cron` crate, which
/// wants a seconds field and numbers weekdays 1–7 from Sunday.
pub fn validate_schedule(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return match expr {
            "@reboot" => Ok(()), // not a time; nothing for the crate to check
            "@annually" => crate_parse("@yearly"),
            m if MACROS.contains(&m) => crate_parse(m),
            other => Err(format!(
                "unknown shorthand '{other}' (expected one of {})",
                MACROS.join(", ")
            )),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour monthday month weekday), got {}",
            fields.len()
        ));
    }
    check_ranges(&fields)?;
    let dow = crate_weekdays(fields[4]);
    // The crate reads six fields (seconds first): its own message would
    // show that form, so only its last line (the reason) is kept.
    crate_parse(&format!(
        "0 {} {} {} {} {dow}",
        fields[0], fields[1], fields[2], fields[3]
    ))
    .map_err(|e| e.lines().last().unwrap_or_default().trim().to_string())
}

/// cron(8)'s numeric bounds per field, checked on what the user wrote
/// (`25` in the hour field: "hour 25 is out of range 0-23").
fn check_ranges(fields: &[&str]) -> Result<(), String> {
    const FIELDS: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    for (field, (name, lo, hi)) in fields.iter().zip(FIELDS) {
        for part in field.split(',') {
            let (span, step) = match part.split_once('/') {
                Some((span, step)) => (span, Some(step)),
                None => (part, None),
            };
            if let Some(step) = step {
                if step.parse::<u32>().map_or(true, |n| n == 0) {
                    return Err(format!("{name} step '/{step}' must be a number above 0"));
                }
            }
            for bound in span.split('-') {
                if let Ok(n) = bound.parse::<u32>() {
                    if n < lo || n > hi {
                        return Err(format!(
                            "{name} {n} is out of range {lo}-{hi} (fields: minute hour \
                             day-of-month month day-of-week)"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A schedule (`@macro` or five cron(8) fields) as a `cron::Schedule`, to
/// compute fire times (`agent run --schedule`). Sunday written `7` (alone or
/// ending a range, `5-7`) is rewritten as `0` first, since the crate's
/// numbering has no eighth day.
pub fn schedule(expr: &str) -> Result<cron::Schedule, String> {
    validate_schedule(expr)?;
    let expr = expr.trim();
    let text = if expr.starts_with('@') {
        match expr {
            "@reboot" => return Err("@reboot is not a time of day".into()),
            "@annually" => "@yearly".to_string(),
            m => m.to_string(),
        }
    } else {
        let f: Vec<&str> = expr.split_whitespace().collect();
        let dow: Vec<String> = f[4]
            .split(',')
            .map(|part| match part {
                "7" => "0".to_string(),
                p if p.ends_with("-7") => format!("{}-6,0", &p[..p.len() - 2]),
                p => p.to_string(),
            })
            .collect();
        format!(
            "0 {} {} {} {} {}",
            f[0],
            f[1],
            f[2],
            f[3],
            crate_weekdays(&dow.join(","))
        )
    };
    cron::Schedule::from_str(&text).map_err(|e| e.to_string())
}

fn crate_parse(expr: &str) -> Result<(), String> {
    cron::Schedule::from_str(expr)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Maps a cron(8) weekday field (0–7, Sunday = 0 or 7) onto the crate's
/// numbering (1–7, Sunday = 1) for validation only. The map is monotonic
/// (0→1 … 6→7, 7→7, n>7 stays out of range), so ranges keep their order and
/// exactly the valid cron(8) fields stay valid; step values after `/` are
/// left alone.
fn crate_weekdays(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut in_step = false;
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' => in_step = true,
            ',' => in_step = false,
            _ => {}
        }
        if c.is_ascii_digit() && !in_step {
            let mut digits = c.to_string();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            match digits.parse::<u64>() {
                Ok(7) => out.push('7'),
                Ok(n) => out.push_str(&(n + 1).to_string()),
                Err(_) => out.push_str(&digits),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `NAME=value`, as cron(8) reads environment settings.
fn is_env_line(line: &str) -> bool {
    let line = line.trim_start();
    let name_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(line.len());
    name_len > 0
        && !line.starts_with(|c: char| c.is_ascii_digit())
        && line[name_len..].trim_start().starts_with('=')
}

/// The marker comment above every entry this type manages.
pub fn marker(title: &str) -> String {
    format!("# agent: {title}")
}

/// The marked entries of a crontab as `cron` declarations (`agent resource
/// cron`): title and attributes (`schedule`, `command`, `environment`;
/// `user` from a system crontab's user field, which `system` says the file
/// has). Unmarked lines are not the agent's and are never listed. Each
/// block reads back as the one the type writes for it.
#[allow(clippy::type_complexity)]
pub fn instances(
    text: &str,
    system: bool,
) -> Vec<(String, serde_json::Map<String, serde_json::Value>)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<(String, serde_json::Map<String, serde_json::Value>)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(title) = lines[i].trim_end().strip_prefix("# agent: ") else {
            i += 1;
            continue;
        };
        i += 1;
        let mut environment = Vec::new();
        while i < lines.len() && is_env_line(lines[i]) {
            environment.push(lines[i].trim().to_string());
            i += 1;
        }
        let Some(entry) = lines
            .get(i)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        else {
            continue;
        };
        i += 1;
        // `@weekly cmd` or five fields, then the user in a system crontab.
        let n_fields = if entry.starts_with('@') { 1 } else { 5 };
        let mut rest = entry;
        let mut fields = Vec::new();
        for _ in 0..n_fields + usize::from(system) {
            let Some((field, after)) = rest.split_once(char::is_whitespace) else {
                break;
            };
            fields.push(field);
            rest = after.trim_start();
        }
        if fields.len() != n_fields + usize::from(system) || rest.is_empty() {
            continue;
        }
        // A title marked twice is one resource: the type keeps the first.
        if out.iter().any(|(t, _)| t == title) {
            continue;
        }
        let mut attrs = serde_json::Map::new();
        attrs.insert("command".into(), serde_json::json!(rest));
        if !environment.is_empty() {
            attrs.insert("environment".into(), serde_json::json!(environment));
        }
        attrs.insert(
            "schedule".into(),
            serde_json::json!(fields[..n_fields].join(" ")),
        );
        if system {
            attrs.insert("user".into(), serde_json::json!(fields[n_fields]));
        }
        out.push((title.to_string(), attrs));
    }
    out
}

/// A typed `cron` resource.
#[derive(Debug)]
pub struct Cron {
    id: ResourceId,
    user: String,
    target: String,
    /// A user's spool file: written 0600 and owned by the user.
    spool: bool,
    debian: bool,
    /// The block to write (marker, environment, entry), `None` = absent.
    block: Option<String>,
}

fn single_line(s: &str) -> bool {
    !s.contains(['\n', '\r'])
}

pub fn build(decl: &Decl, env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let title = id.title.trim();
    if title.is_empty() || !single_line(title) {
        return Err(invalid("the title must be one non-empty line".into()));
    }
    let user = p.user.unwrap_or_else(|| "root".into());
    if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(invalid(format!("'{user}' is not a valid user name")));
    }
    let family = env.fact_str("os.family").unwrap_or_default();
    let debian = family == "Debian";
    let target = match p.target {
        Some(t) if !t.starts_with('/') => {
            return Err(invalid(format!("target '{t}' must be an absolute path")))
        }
        Some(t) => t,
        None if debian => format!("/var/spool/cron/crontabs/{user}"),
        None if family == "Suse" => format!("/var/spool/cron/tabs/{user}"),
        None => format!("/var/spool/cron/{user}"),
    };
    let system = target.starts_with("/etc/cron.d/") || target == "/etc/crontab";
    let spool = target.starts_with("/var/spool/cron/");
    if target.starts_with("/etc/cron.d/") {
        let name = Path::new(&target)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            tracing::warn!(resource = %id, "cron(8) on Debian ignores /etc/cron.d files named like '{name}'");
        }
    }

    let fields = [&p.minute, &p.hour, &p.monthday, &p.month, &p.weekday];
    let schedule = match &p.schedule {
        Some(_) if fields.iter().any(|f| f.is_some()) => {
            return Err(invalid(
                "give either schedule or minute/hour/monthday/month/weekday, not both".into(),
            ))
        }
        Some(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        None => fields
            .iter()
            .map(|f| f.as_ref().map_or_else(|| "*".to_string(), FieldValue::text))
            .collect::<Vec<_>>()
            .join(" "),
    };
    validate_schedule(&schedule)
        .map_err(|e| invalid(format!("invalid cron schedule '{schedule}': {e}")))?;

    let block = match p.ensure {
        Ensure::Absent => None,
        Ensure::Present => {
            let command = p.command.map(|c| c.trim().to_string()).unwrap_or_default();
            if command.is_empty() {
                return Err(invalid("command is required when ensure is present".into()));
            }
            if !single_line(&command) {
                return Err(invalid("command must be a single line".into()));
            }
            let environment = match p.environment {
                None => vec![],
                Some(OneOrMany::One(s)) => vec![s],
                Some(OneOrMany::Many(v)) => v,
            };
            if let Some(bad) = environment
                .iter()
                .find(|e| !single_line(e) || !is_env_line(e))
            {
                return Err(invalid(format!(
                    "environment '{bad}' is not a NAME=value line"
                )));
            }
            let mut block = marker(title) + "\n";
            for line in &environment {
                block.push_str(line.trim());
                block.push('\n');
            }
            block.push_str(&schedule);
            block.push(' ');
            if system {
                block.push_str(&user);
                block.push(' ');
            }
            block.push_str(&command);
            block.push('\n');
            Some(block)
        }
    };
    Ok(Box::new(Cron {
        id: id.clone(),
        user,
        target,
        spool,
        debian,
        block,
    }))
}

/// The crontab `old` with the block marked `title` made equal to `block`
/// (`None` = removed). A marked block is the marker line, the environment
/// lines under it and the entry line after them. The first block is replaced
/// in place, later ones dropped, a missing one appended; unmarked lines are
/// never touched.
pub fn edit(old: &str, title: &str, block: Option<&str>) -> String {
    let marker = marker(title);
    let lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::with_capacity(old.len() + block.map_or(0, str::len));
    let mut seen = false;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != marker {
            out.push_str(lines[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < lines.len() && is_env_line(lines[i]) {
            i += 1;
        }
        let entry = lines.get(i).map(|l| l.trim());
        if entry.is_some_and(|l| !l.is_empty() && !l.starts_with('#')) {
            i += 1;
        }
        let current = lines[start..i].concat();
        if !seen {
            // Equal or not, the block we write is `b`; `current` only tells the log.
            if let Some(b) = block {
                if current != b {
                    tracing::debug!(title, "cron block differs");
                }
                out.push_str(b);
            }
        }
        seen = true;
    }
    if let (false, Some(b)) = (seen, block) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(b);
    }
    out
}

impl Cron {
    /// Spool files belong to their user (cron(8) skips them otherwise) and,
    /// on Debian, to group `crontab`. Only root can hand files over, and
    /// only for the real root: under `--root` the host's user database is
    /// not the node's.
    fn chown_spool(&self, cx: &Context, path: &Path) -> Result<(), ResourceError> {
        if !nix::unistd::geteuid().is_root() || cx.root != Path::new("/") {
            tracing::debug!(resource = %self.id, "leaving spool file ownership as is");
            return Ok(());
        }
        let user = nix::unistd::User::from_name(&self.user)
            .ok()
            .flatten()
            .ok_or_else(|| {
                ResourceError::Failed(format!("{}: user '{}' does not exist", self.id, self.user))
            })?;
        let group = if self.debian {
            nix::unistd::Group::from_name("crontab")
                .ok()
                .flatten()
                .map(|g| g.gid)
        } else {
            None
        };
        let gid = group.unwrap_or(user.gid);
        std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(gid.as_raw()))
            .map_err(|e| ResourceError::io(path, e))
    }
}

impl Resource for Cron {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let wanted = self.block.is_some();
        edited::check_entry(cx, &self.id, &self.target, wanted, |text| {
            edit(text, &self.id.title, self.block.as_deref())
        })
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let rewrite: Rewrite = plan.steps(&self.id)?;
        let mode = self.spool.then_some(0o600);
        rewrite.write(cx, &self.id, " (is cron installed?)", mode)?;
        if self.spool {
            self.chown_spool(cx, &rewrite.path)?;
        }
        Ok(())
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = edited::autorequires(&self.target);
        // The spool file must belong to an existing user.
        ids.push(ResourceId::new("user", &self.user));
        ids
    }

    fn paths(&self) -> Vec<String> {
        vec![self.target.clone()]
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike};

    #[test]
    fn fire_times_follow_cron8_numbering() {
        let from = chrono::Utc
            .with_ymd_and_hms(2026, 11, 27, 10, 7, 0)
            .unwrap(); // a Friday
        let next = |e: &str| schedule(e).unwrap().after(&from).next().unwrap();
        let n = next("*/15 * * * *");
        assert_eq!((n.hour(), n.minute()), (10, 15));
        assert_eq!(next("0 3 * * 0").weekday(), chrono::Weekday::Sun);
        assert_eq!(next("0 3 * * 7").weekday(), chrono::Weekday::Sun);
        assert_eq!(next("0 3 * * 1").weekday(), chrono::Weekday::Mon);
        assert_eq!(next("0 12 * * 5-7").weekday(), chrono::Weekday::Fri);
        assert_eq!(next("@weekly").weekday(), chrono::Weekday::Sun);
        assert!(schedule("@reboot").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn decl(title: &str, attrs: serde_json::Value) -> Decl {
        crate::testing::decl("cron", title, attrs)
    }

    fn debian() -> TypeEnv {
        TypeEnv::from_facts(json!({"os": {"family": "Debian"}}))
    }

    fn sandbox() -> (tempfile::TempDir, Context) {
        crate::testing::sandbox(&["etc/cron.d", "var/spool/cron/crontabs"])
    }

    fn converge(r: &dyn Resource, cx: &Context) {
        let plan = r.check(cx).unwrap();
        r.apply(cx, plan).unwrap();
        assert!(r.check(cx).unwrap().is_empty(), "{} not idempotent", r.id());
    }

    #[test]
    fn schedules_are_validated() {
        for ok in [
            "* * * * *",
            "*/5 0-23/2 1,15 jan-jun mon-fri",
            "0 3 * * 0",
            "0 3 * * 7",
            "5 4 * * 0-6",
            "@daily",
            "@annually",
            "@reboot",
        ] {
            assert_eq!(validate_schedule(ok), Ok(()), "{ok}");
        }
        for bad in [
            "61 * * * *",
            "* 24 * * *",
            "* * * * 8",
            "* * * *",
            "* * * * * *",
            "@often",
            "x * * * *",
        ] {
            assert!(validate_schedule(bad).is_err(), "{bad}");
        }
        assert_eq!(crate_weekdays("0-6/2,7"), "1-7/2,7");
        let err = build(&decl("t", json!({"command": "x", "minute": 99})), &debian())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid cron schedule '99 * * * *'"), "{err}");
        let both = json!({"command": "x", "schedule": "@daily", "hour": 3});
        assert!(build(&decl("t", both), &debian()).is_err());
        assert!(
            build(&decl("t", json!({"schedule": "@daily"})), &debian()).is_err(),
            "command required"
        );
        assert!(build(
            &decl("t", json!({"command": "x", "environment": ["not env"]})),
            &debian()
        )
        .is_err());
    }

    #[test]
    fn edit_replaces_only_the_marked_block() {
        let block = "# agent: backup\nPATH=/bin\n0 3 * * * /usr/bin/backup\n";
        let old = "MAILTO=ops\n0 1 * * * /usr/bin/other\n# agent: backup\n0 2 * * * /usr/bin/backup\n# trailing\n";
        let new = edit(old, "backup", Some(block));
        assert_eq!(
            new,
            format!("MAILTO=ops\n0 1 * * * /usr/bin/other\n{block}# trailing\n")
        );
        assert_eq!(edit(&new, "backup", Some(block)), new);
        assert_eq!(
            edit(&new, "backup", None),
            "MAILTO=ops\n0 1 * * * /usr/bin/other\n# trailing\n"
        );
        // Duplicated blocks collapse to one; a missing final newline is added before appending.
        let dup = format!("{block}{block}");
        assert_eq!(edit(&dup, "backup", Some(block)), block);
        assert_eq!(edit("x y", "backup", Some(block)), format!("x y\n{block}"));
        // Another title's marker is not ours.
        let other = "# agent: backup2\n0 2 * * * b\n";
        assert_eq!(edit(other, "backup", None), other);
    }

    #[test]
    fn spool_entry_is_idempotent_private_and_leaves_unmanaged_lines() {
        let (_dir, cx) = sandbox();
        let path = cx.root.join("var/spool/cron/crontabs/postgres");
        // An unmanaged line with the very same command, and odd spacing.
        let unmanaged = "# m h  dom mon dow   command\nSHELL=/bin/sh\n*/10  *  * * *  /usr/local/bin/vacuum.sh\n";
        std::fs::write(&path, unmanaged).unwrap();
        let attrs = json!({"command": "/usr/local/bin/vacuum.sh", "user": "postgres", "minute": [0, 30], "hour": "2", "environment": "PGDATA=/srv/pg"});
        let r = build(&decl("vacuum", attrs), &debian()).unwrap();
        assert_eq!(
            r.paths(),
            vec!["/var/spool/cron/crontabs/postgres".to_string()]
        );
        assert!(r
            .autorequires()
            .contains(&ResourceId::new("file", "/var/spool/cron/crontabs")));
        converge(r.as_ref(), &cx);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{unmanaged}# agent: vacuum\nPGDATA=/srv/pg\n0,30 2 * * * /usr/local/bin/vacuum.sh\n"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let gone = build(
            &decl("vacuum", json!({"ensure": "absent", "user": "postgres"})),
            &debian(),
        )
        .unwrap();
        converge(gone.as_ref(), &cx);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            unmanaged,
            "unmanaged line with the same command kept"
        );
    }

    #[test]
    fn redhat_spool_path_and_missing_dir_error() {
        let (_dir, cx) = sandbox();
        let env = TypeEnv::from_facts(json!({"os": {"family": "RedHat"}}));
        let r = build(
            &decl("t", json!({"command": "true", "schedule": "@hourly"})),
            &env,
        )
        .unwrap();
        assert_eq!(r.paths(), vec!["/var/spool/cron/root".to_string()]);
        converge(r.as_ref(), &cx);
        let r = build(
            &decl("t", json!({"command": "true", "target": "/etc/nocron.d/x"})),
            &env,
        )
        .unwrap();
        assert!(r
            .apply(&cx, r.check(&cx).unwrap())
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let absent = build(
            &decl(
                "t",
                json!({"ensure": "absent", "target": "/etc/cron.d/none"}),
            ),
            &env,
        )
        .unwrap();
        assert!(
            absent.check(&cx).unwrap().is_empty(),
            "absent on a missing file is in sync"
        );
    }

    #[test]
    fn every_written_line_parses_back() {
        let (_dir, cx) = sandbox();
        let cases = [
            json!({"command": "/usr/bin/a --x", "schedule": "*/5  1-5 * * mon-fri"}),
            json!({"command": "b", "minute": 15, "hour": [1, 13], "monthday": "1", "month": "jan", "weekday": "2-6"}),
            json!({"command": "c", "schedule": "@weekly", "user": "postgres"}),
            json!({"command": "d", "schedule": "0 4 * * 0", "environment": ["MAILTO=\"\"", "X=1"]}),
        ];
        let path = cx.root.join("etc/cron.d/agent");
        std::fs::write(&path, "# pre-existing\n").unwrap();
        for (n, attrs) in cases.iter().enumerate() {
            let mut attrs = attrs.clone();
            attrs["target"] = json!("/etc/cron.d/agent");
            converge(
                build(&decl(&format!("job{n}"), attrs), &debian())
                    .unwrap()
                    .as_ref(),
                &cx,
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let lines: Vec<&str> = text.lines().collect();
        let mut entries = 0;
        for (i, line) in lines.iter().enumerate() {
            let Some(title) = line.strip_prefix("# agent: ") else {
                continue;
            };
            let entry = lines[i + 1..].iter().find(|l| !is_env_line(l)).unwrap();
            let (schedule, rest) = if entry.starts_with('@') {
                entry.split_once(' ').unwrap()
            } else {
                let fields: Vec<&str> = entry.splitn(6, ' ').collect();
                assert_eq!(fields.len(), 6, "{entry}");
                (&entry[..entry.len() - fields[5].len() - 1], fields[5])
            };
            validate_schedule(schedule).unwrap_or_else(|e| panic!("{title}: {schedule}: {e}"));
            if !schedule.starts_with('@') && !schedule.ends_with(" 0") {
                cron::Schedule::from_str(&format!("0 {schedule}")).unwrap();
            }
            let (user, command) = rest.split_once(' ').unwrap();
            assert!(user == "root" || user == "postgres", "{entry}");
            assert!(!command.is_empty());
            entries += 1;
        }
        assert_eq!(entries, cases.len());
        assert!(
            text.starts_with(
                "# pre-existing\n# agent: job0\n*/5 1-5 * * mon-fri root /usr/bin/a --x\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# agent: job3\nMAILTO=\"\"\nX=1\n0 4 * * 0 root d\n"),
            "{text}"
        );
    }
}
