//! `pg_conf`: settings in `postgresql.conf` (or a file it includes).
//!
//! The type owns only the values of the settings it names. For each one it
//! rewrites the value of the *last* active `name = value` line (the one the
//! server obeys) in place, keeping the line's trailing comment, or appends
//! `name = value` at the end. Comments, commented-out defaults and every other
//! line stay byte for byte. The parser follows the server's own lexer
//! (`guc-file.l`): names are case-insensitive, `=` is optional, values are a
//! quoted string (`''` and backslash escapes) or one bare token.
//!
//! After writing, a running server is told: `pg_reload_conf()`, or, when a
//! changed setting has `context = 'postmaster'`, a `pg_ctl restart` (after a
//! reload, so that `pending_restart` remembers it if the restart fails and
//! the next run can finish the job).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::edited::{Current, Rewrite};
use crate::pg;
use crate::pg::attr;

/// Attributes of `- pg_conf: <any name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Data directory of the cluster (node path). Required.
    datadir: String,
    /// The file to edit (default `<datadir>/postgresql.conf`); may be a file
    /// the main one includes.
    file: Option<String>,
    /// Settings, name → value. Strings, numbers (written bare) and booleans
    /// (written `on`/`off`). Mark the map or `settings.<name>` Sensitive to
    /// hide values.
    settings: Map<String, Value>,
    /// Directory of `pg_ctl`, used for restarts (default
    /// `/usr/lib/postgresql/15/bin`).
    bindir: Option<String>,
    /// Where `pg_ctl restart` sends the server's output (node path, default
    /// `<datadir>/server.log`).
    restart_log: Option<String>,
    /// Server address or socket directory (default `127.0.0.1`).
    host: Option<String>,
    /// Server port (default 5432).
    port: Option<u16>,
    /// Role the agent connects as (default `postgres`).
    superuser: Option<String>,
    /// Its password (Sensitive).
    superuser_password: Option<String>,
}

/// A desired value.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    Str(String),
    /// A JSON number, kept as written.
    Num(String),
    Bool(bool),
}

impl Setting {
    fn from_json(name: &str, v: &Value) -> Result<Setting, String> {
        match v {
            Value::String(s) if s.contains(['\n', '\r', '\0']) => {
                Err(format!("{name}: value must be one line"))
            }
            Value::String(s) => Ok(Setting::Str(s.clone())),
            Value::Number(n) => Ok(Setting::Num(n.to_string())),
            Value::Bool(b) => Ok(Setting::Bool(*b)),
            other => Err(format!(
                "{name}: value must be a string, number or boolean, not {other}"
            )),
        }
    }

    /// The value as written in the file.
    pub fn render(&self) -> String {
        match self {
            Setting::Bool(true) => "on".into(),
            Setting::Bool(false) => "off".into(),
            Setting::Num(n) => n.clone(),
            Setting::Str(s) => quote(s),
        }
    }

    /// The value as a person reads it (for change lines).
    fn text(&self) -> String {
        match self {
            Setting::Str(s) | Setting::Num(s) => s.clone(),
            Setting::Bool(b) => if *b { "on" } else { "off" }.into(),
        }
    }

    /// True when `current` (unquoted file value) already means this value.
    pub fn matches(&self, current: &str) -> bool {
        match self {
            Setting::Bool(b) => parse_bool(current) == Some(*b),
            Setting::Num(n) => {
                current == n
                    || matches!((current.parse::<f64>(), n.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
            }
            Setting::Str(s) => current == s,
        }
    }
}

/// PostgreSQL's boolean spellings (`parse_bool`): on/off, true/false,
/// yes/no, 1/0, unique prefixes, any case.
fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim().to_ascii_lowercase();
    let is = |word: &str, min: usize| s.len() >= min && word.starts_with(s.as_str());
    match s.as_str() {
        "1" | "on" => Some(true),
        "0" | "of" | "off" => Some(false),
        _ if is("true", 1) || is("yes", 1) => Some(true),
        _ if is("false", 1) || is("no", 1) => Some(false),
        _ => None,
    }
}

/// A value written bare when the server's lexer reads it back unchanged:
/// a plain word (`replica`, `pg_stat_statements`) or a number with an
/// optional unit (`128MB`, `0.9`); anything else is quoted.
fn bare_ok(s: &str) -> bool {
    let word = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number = !digits.is_empty()
        && digits
            .split_once('.')
            .map_or(digits.chars().all(|c| c.is_ascii_digit()), |(a, b)| {
                !a.is_empty()
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.chars().all(|c| c.is_ascii_digit())
            });
    word || number
}

/// Quotes a string for postgresql.conf when needed: `'` doubled, `\`
/// doubled (the server processes backslash escapes in quoted values).
pub fn quote(s: &str) -> String {
    if bare_ok(s) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The inside of a quoted value, unescaped the way the server does
/// (`GUC_scanstr`).
fn unescape(inner: &str) -> String {
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(d @ '0'..='7') => {
                    let mut v = d.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(x) => {
                                v = v * 8 + x;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                Some(other) => out.push(other),
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// One active setting line.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfLine {
    /// Lower-cased name.
    pub name: String,
    /// The value, unquoted.
    pub value: String,
    /// Byte range of the value as written (quotes included).
    pub span: (usize, usize),
}

/// Parses a line (without terminator); `None` for blanks, comments,
/// `include*` directives and lines the server would reject.
pub fn parse_line(line: &str) -> Option<ConfLine> {
    let b = line.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    let start = i;
    while i < b.len()
        && (b[i].is_ascii_alphanumeric()
            || b[i] == b'_'
            || b[i] == b'.'
            || b[i] == b'$'
            || b[i] >= 0x80)
    {
        i += 1;
    }
    if i == start || b[start].is_ascii_digit() {
        return None;
    }
    let name = line[start..i].to_ascii_lowercase();
    if name.starts_with("include")
        && matches!(
            name.as_str(),
            "include" | "include_dir" | "include_if_exists"
        )
    {
        return None;
    }
    skip_ws(&mut i);
    if i < b.len() && b[i] == b'=' {
        i += 1;
        skip_ws(&mut i);
    }
    let vstart = i;
    let value = if i < b.len() && b[i] == b'\'' {
        i += 1;
        let inner_start = i;
        loop {
            if i >= b.len() {
                return None; // unterminated
            }
            match b[i] {
                b'\\' => i += 2,
                b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                b'\'' => break,
                _ => i += 1,
            }
        }
        let inner = &line[inner_start..i.min(b.len())];
        i += 1;
        unescape(inner)
    } else {
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'#') {
            i += 1;
        }
        if i == vstart {
            return None;
        }
        line[vstart..i].to_string()
    };
    let vend = i;
    skip_ws(&mut i);
    if i < b.len() && b[i] != b'#' {
        return None;
    }
    Some(ConfLine {
        name,
        value,
        span: (vstart, vend),
    })
}

/// One setting the edit changes: name, current value (if any), new value.
#[derive(Debug, PartialEq, Eq)]
pub struct Edit {
    pub name: String,
    pub from: Option<String>,
    pub to: String,
}

/// The file `old` with every setting made to match; returns the new text
/// and what changed (empty = in sync, and the text is `old`).
pub fn edit(old: &str, settings: &[(String, Setting)]) -> (String, Vec<Edit>) {
    let mut lines: Vec<String> = old.split_inclusive('\n').map(str::to_string).collect();
    let mut edits = Vec::new();
    for (name, want) in settings {
        let last = lines.iter().enumerate().rev().find_map(|(n, l)| {
            let body = l.trim_end_matches(['\n', '\r']);
            parse_line(body).filter(|p| &p.name == name).map(|p| (n, p))
        });
        match last {
            Some((_, cur)) if want.matches(&cur.value) => {}
            Some((n, cur)) => {
                let line = &lines[n];
                lines[n] = format!(
                    "{}{}{}",
                    &line[..cur.span.0],
                    want.render(),
                    &line[cur.span.1..]
                );
                edits.push(Edit {
                    name: name.clone(),
                    from: Some(cur.value),
                    to: want.text(),
                });
            }
            None => {
                if lines.last().is_some_and(|l| !l.ends_with('\n')) {
                    if let Some(l) = lines.last_mut() {
                        l.push('\n');
                    }
                }
                lines.push(format!("{name} = {}\n", want.render()));
                edits.push(Edit {
                    name: name.clone(),
                    from: None,
                    to: want.text(),
                });
            }
        }
    }
    if edits.is_empty() {
        return (old.to_string(), edits);
    }
    (lines.concat(), edits)
}

/// A typed `pg_conf` resource.
#[derive(Debug)]
pub struct PgConf {
    id: ResourceId,
    datadir: String,
    file: String,
    settings: Vec<(String, Setting)>,
    sensitive: BTreeSet<String>,
    bindir: PathBuf,
    restart_log: String,
    conn: pg::Conn,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    for (what, path) in [
        ("datadir", Some(&p.datadir)),
        ("file", p.file.as_ref()),
        ("restart_log", p.restart_log.as_ref()),
    ] {
        if path.is_some_and(|p| !p.starts_with('/')) {
            return Err(invalid(format!("{what} must be an absolute path")));
        }
    }
    let datadir = p.datadir.trim_end_matches('/').to_string();
    let mut settings = Vec::new();
    let mut sensitive = BTreeSet::new();
    for (k, v) in &p.settings {
        let name = k.to_ascii_lowercase();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid
            || matches!(
                name.as_str(),
                "include" | "include_dir" | "include_if_exists"
            )
        {
            return Err(invalid(format!("'{k}' is not a setting name")));
        }
        let value = Setting::from_json(k, v).map_err(invalid)?;
        if decl.is_sensitive("settings") || decl.is_sensitive(&format!("settings.{k}")) {
            if let Setting::Str(s) = &value {
                crate::redact::register(s);
            }
            sensitive.insert(name.clone());
        }
        if settings.iter().any(|(n, _)| n == &name) {
            return Err(invalid(format!("setting '{name}' is given twice")));
        }
        settings.push((name, value));
    }
    let conn = attr::conn(id, &p.host, p.port, &p.superuser, &p.superuser_password)?;
    Ok(Box::new(PgConf {
        id: id.clone(),
        file: p
            .file
            .unwrap_or_else(|| format!("{datadir}/postgresql.conf")),
        restart_log: p
            .restart_log
            .unwrap_or_else(|| format!("{datadir}/server.log")),
        datadir,
        settings,
        sensitive,
        bindir: PathBuf::from(p.bindir.unwrap_or_else(|| pg::DEFAULT_BINDIR.into())),
        conn,
    }))
}

/// What the server says about the managed settings.
#[derive(Debug, Default)]
struct ServerView {
    /// name → context (`postmaster`, `sighup`, ...).
    context: Vec<(String, String)>,
    /// Managed settings waiting for a restart.
    pending: Vec<String>,
}

impl ServerView {
    fn context_of(&self, name: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
    }
}

/// What `apply` does, as `check` decided.
#[derive(Debug)]
struct Steps {
    /// The new content, when it differs.
    rewrite: Option<Rewrite>,
    /// A changed (or pending) setting needs the server restarted, not only
    /// reloaded.
    restart: bool,
}

impl PgConf {
    /// Reads contexts and pending restarts; refuses unknown names (custom
    /// `prefix.name` settings are the server's placeholders: accepted).
    fn server_view(&self, client: &mut postgres::Client) -> Result<ServerView, ResourceError> {
        let names: Vec<String> = self.settings.iter().map(|(n, _)| n.clone()).collect();
        let rows = client
            .query(
                "SELECT name, context, pending_restart FROM pg_settings WHERE name = ANY($1)",
                &[&names],
            )
            .map_err(|e| pg::sql_error(&format!("{}: reading pg_settings", self.id), e))?;
        let mut view = ServerView::default();
        for row in rows {
            let name: String = row.get(0);
            if row.get::<_, bool>(2) {
                view.pending.push(name.clone());
            }
            view.context.push((name, row.get(1)));
        }
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !n.contains('.') && view.context_of(n).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ResourceError::Invalid(format!(
                "{}: unknown settings: {}",
                self.id,
                unknown.join(", ")
            )));
        }
        if let Some((n, _)) = view.context.iter().find(|(_, c)| c == "internal") {
            return Err(ResourceError::Invalid(format!(
                "{}: {n} is fixed when the server is built or initialised",
                self.id
            )));
        }
        Ok(view)
    }

    fn needs_restart(&self, view: &ServerView, edits: &[Edit]) -> bool {
        !view.pending.is_empty()
            || edits
                .iter()
                .any(|e| view.context_of(&e.name) == Some("postmaster"))
    }

    fn datadir_path(&self, cx: &Context) -> Result<PathBuf, ResourceError> {
        cx.path(&self.datadir)
    }
}

impl Resource for PgConf {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        pg::refuse_if_patroni(&self.id, &self.datadir_path(cx)?)?;
        let file = Current::read(cx, &self.file)?;
        let (new, edits) = edit(file.text(&self.id)?, &self.settings);
        let view = match pg::connect_if_running(&self.conn, &self.datadir_path(cx)?)? {
            Some(mut client) => Some(self.server_view(&mut client)?),
            None => None,
        };
        let restart = view.as_ref().is_some_and(|v| self.needs_restart(v, &edits));
        let suffix = match (&view, restart) {
            (None, _) => "",
            (Some(_), true) => " (restart)",
            (Some(_), false) => " (reload)",
        };
        let mut changes: Vec<Change> = edits
            .iter()
            .map(|e| {
                Change::new(
                    format!("{}{suffix}", e.name),
                    e.from.clone(),
                    Some(e.to.clone()),
                )
                .sensitive(self.sensitive.contains(&e.name))
            })
            .collect();
        if let Some(v) = view.filter(|v| !v.pending.is_empty()) {
            changes.push(Change::new(
                "server (restart)",
                Some(format!("pending restart for {}", v.pending.join(", "))),
                Some("restarted".into()),
            ));
        }
        if changes.is_empty() {
            return Ok(Plan::in_sync());
        }
        let steps = Steps {
            rewrite: file.into_rewrite(new.into_bytes()),
            restart,
        };
        Ok(Plan::new(changes, steps))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let steps: Steps = plan.steps(&self.id)?;
        let datadir = self.datadir_path(cx)?;
        // Connect before writing: whether the server runs decides what follows.
        let client = pg::connect_if_running(&self.conn, &datadir)?;
        if let Some(rewrite) = &steps.rewrite {
            rewrite.ready(cx, &self.id, "")?;
            tracing::debug!(resource = %self.id, file = %self.file, "writing settings");
            // Not `Rewrite::write`: the server's files keep their owner.
            pg::write_config(cx, &rewrite.path, &rewrite.new, true)?;
        }
        let Some(mut client) = client else {
            tracing::debug!(resource = %self.id, "server not running: file written only");
            return Ok(());
        };
        // A reload first, also before a restart: the server then marks
        // postmaster settings pending_restart, which survives a failed restart.
        client
            .execute("SELECT pg_reload_conf()", &[])
            .map_err(|e| pg::sql_error(&format!("{}: reloading", self.id), e))?;
        if !steps.restart {
            return Ok(());
        }
        drop(client);
        tracing::info!(resource = %self.id, "restarting the server for postmaster settings");
        let d = datadir.display().to_string();
        let log = cx.path(&self.restart_log)?.display().to_string();
        let mut cmd = pg::bin_cmd(
            &self.bindir,
            "pg_ctl",
            &["-D", &d, "-l", &log, "-m", "fast", "-w", "restart"],
        );
        cmd.timeout = Some(std::time::Duration::from_secs(300));
        cx.runner
            .run(&cmd)
            .map(|_| ())
            .map_err(|e| ResourceError::Failed(format!("{}: restart failed: {e}", self.id)))
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        vec![ResourceId::new("pg_cluster", &self.datadir)]
    }

    fn paths(&self) -> Vec<String> {
        // The data dir (pid file, pg_ctl -D) and the log pg_ctl writes on a
        // restart are under the root too.
        vec![
            self.file.clone(),
            self.datadir.clone(),
            self.restart_log.clone(),
        ]
    }
}

#[cfg(test)]
mod tests;
