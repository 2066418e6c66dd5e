//! `pg_hba`: the whole `pg_hba.conf` of a cluster, from an ordered list of
//! rules.
//!
//! The file is managed whole (order is meaning in pg_hba: the first
//! matching rule wins), with a header saying so. By default the rules the
//! agent itself needs come first: the agent runs as root and talks to the
//! server as its superuser over loopback TCP with the superuser's password
//! (peer authentication would see root), so a manifest can never lock the
//! agent out of the cluster it manages. The loopback *source* address is
//! 127.0.0.1 even when the server listens on another 127/8 address (such as
//! 127.0.0.11), hence the whole 127.0.0.0/8.
//!
//! Writing is guarded by the server itself: after the atomic write, the
//! server parses the file (`pg_hba_file_rules`, which reads the file on
//! disk); any error restores the previous content byte for byte before the
//! server is ever told to reload, so a running server never sees a broken
//! file and keeps answering.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::edited::{Current, Rewrite};
use crate::pg;
use crate::pg::attr;

/// Attributes of `- pg_hba: <data dir>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The file (node path, default `<datadir>/pg_hba.conf`).
    file: Option<String>,
    /// The rules, in order. Each is a line as written in pg_hba.conf
    /// (`host stashdb stashuser all trust`, the seed's
    /// `pgsql_server::ipv4acls` format) or a map
    /// `{type, database, user, address, method, options}`. A single string
    /// is read as lines, one rule each (the seed writes `ipv4acls` so).
    #[serde(default)]
    rules: Rules,
    /// Put the agent's own admin rules first (default true): `local all
    /// <superuser> peer` and `host all <superuser> 127.0.0.0/8|::1/128
    /// scram-sha-256`.
    #[serde(default = "yes")]
    defaults: bool,
    /// Server address or socket directory (default `127.0.0.1`).
    host: Option<String>,
    /// Server port (default 5432).
    port: Option<u16>,
    /// Role the agent connects as (default `postgres`).
    superuser: Option<String>,
    /// Its password (Sensitive).
    superuser_password: Option<String>,
}

fn yes() -> bool {
    true
}

/// `rules:` as a list, or as one string of lines.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Rules {
    List(Vec<RuleSpec>),
    Lines(String),
}

impl Default for Rules {
    fn default() -> Self {
        Rules::List(vec![])
    }
}

impl Rules {
    fn specs(self) -> Vec<RuleSpec> {
        match self {
            Rules::List(l) => l,
            Rules::Lines(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| RuleSpec::Line(l.to_string()))
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RuleSpec {
    Line(String),
    Map(RuleMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleMap {
    #[serde(rename = "type")]
    kind: String,
    database: String,
    user: String,
    address: Option<String>,
    method: String,
    options: Option<Options>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Options {
    Line(String),
    Map(std::collections::BTreeMap<String, String>),
}

const TYPES: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];
const METHODS: &[&str] = &[
    "trust",
    "reject",
    "scram-sha-256",
    "md5",
    "password",
    "gss",
    "sspi",
    "ident",
    "peer",
    "pam",
    "ldap",
    "radius",
    "cert",
];

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    pub kind: String,
    pub database: String,
    pub user: String,
    /// `None` for local rules; `addr/len`, `addr mask`, a host name or a
    /// keyword (`all`, `samehost`, `samenet`).
    pub address: Option<String>,
    pub method: String,
    /// `name=value` items.
    pub options: Vec<String>,
}

/// Splits a line into fields; double quotes keep spaces inside one field.
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '#' if !quoted => return Err("comments are not rules".into()),
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A database/user field from a map: quoted when it holds spaces.
fn field(s: &str) -> String {
    if s.contains(char::is_whitespace) && !s.starts_with('"') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

impl HbaRule {
    /// Parses a rule written as a pg_hba.conf line.
    pub fn parse(line: &str) -> Result<HbaRule, String> {
        let f = fields(line)?;
        let kind = f.first().ok_or("empty rule")?.clone();
        let (address, rest) = if kind == "local" {
            (None, f.get(3..))
        } else if f.get(4).is_some_and(|m| m.parse::<IpAddr>().is_ok()) {
            (Some(format!("{} {}", f[3], f[4])), f.get(5..))
        } else {
            (f.get(3).cloned(), f.get(4..))
        };
        let rest = rest.filter(|r| !r.is_empty()).ok_or_else(|| {
            format!("'{line}': missing fields (type database user [address] method [options])")
        })?;
        HbaRule {
            kind,
            database: f[1].clone(),
            user: f[2].clone(),
            address,
            method: rest[0].clone(),
            options: rest[1..].to_vec(),
        }
        .validated()
    }

    fn from_map(m: RuleMap) -> Result<HbaRule, String> {
        let options = match m.options {
            None => vec![],
            Some(Options::Line(s)) => fields(&s)?,
            Some(Options::Map(map)) => map
                .iter()
                .map(|(k, v)| format!("{k}={}", field(v)))
                .collect(),
        };
        HbaRule {
            kind: m.kind,
            database: field(&m.database),
            user: field(&m.user),
            address: m.address.filter(|a| !a.is_empty()),
            method: m.method,
            options,
        }
        .validated()
    }

    fn validated(self) -> Result<HbaRule, String> {
        let me = self.render(&[0; 5]);
        if !TYPES.contains(&self.kind.as_str()) {
            return Err(format!(
                "'{me}': type '{}' is not one of {}",
                self.kind,
                TYPES.join(", ")
            ));
        }
        if !METHODS.contains(&self.method.as_str()) {
            return Err(format!(
                "'{me}': method '{}' is not one of {}",
                self.method,
                METHODS.join(", ")
            ));
        }
        match (&self.kind[..], &self.address) {
            ("local", Some(_)) => return Err(format!("'{me}': local rules have no address")),
            ("local", None) => {}
            (_, None) => return Err(format!("'{me}': {} rules need an address", self.kind)),
            (_, Some(a)) => check_address(a).map_err(|e| format!("'{me}': {e}"))?,
        }
        if self.database.is_empty() || self.user.is_empty() {
            return Err(format!("'{me}': database and user must not be empty"));
        }
        if let Some(o) = self.options.iter().find(|o| !o.contains('=')) {
            return Err(format!("'{me}': option '{o}' is not name=value"));
        }
        let all = [&self.kind, &self.database, &self.user, &self.method]
            .into_iter()
            .chain(&self.options);
        if all
            .chain(&self.address)
            .any(|f| f.contains(['\n', '\r', '#']))
        {
            return Err(format!("'{me}': fields must not hold newlines or '#'"));
        }
        Ok(self)
    }

    /// The line, columns padded to `widths` (type, database, user, address,
    /// method).
    fn render(&self, widths: &[usize; 5]) -> String {
        let cols = [
            self.kind.as_str(),
            self.database.as_str(),
            self.user.as_str(),
            self.address.as_deref().unwrap_or(""),
            self.method.as_str(),
        ];
        let mut line = String::new();
        for (c, w) in cols.iter().zip(widths) {
            line.push_str(&format!("{c:<w$} ", w = *w));
        }
        line.push_str(&self.options.join(" "));
        line.trim_end().to_string()
    }
}

/// `addr/len` and `addr mask` must be valid; names and keywords pass.
fn check_address(a: &str) -> Result<(), String> {
    if let Some((ip, len)) = a.split_once('/') {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("'{a}': '{ip}' is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match len.parse::<u8>() {
            Ok(n) if n <= max => Ok(()),
            _ => Err(format!("'{a}': prefix length must be 0-{max}")),
        }
    } else if let Some((ip, mask)) = a.split_once(' ') {
        match (ip.parse::<IpAddr>(), mask.parse::<IpAddr>()) {
            (Ok(i), Ok(m)) if i.is_ipv4() == m.is_ipv4() => Ok(()),
            _ => Err(format!("'{a}' is not 'address mask'")),
        }
    } else if a.parse::<IpAddr>().is_ok() {
        Err(format!("'{a}': an IP address needs /length or a mask"))
    } else {
        Ok(())
    }
}

/// True when `address` only matches loopback clients.
fn is_loopback(address: &str) -> bool {
    let (ip, prefix) = match address.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>(), len.parse::<u32>().unwrap_or(0)),
        None => match address.split_once(' ') {
            Some((ip, mask)) => {
                let ones = match mask.parse::<IpAddr>() {
                    Ok(IpAddr::V4(m)) => u32::from(m).count_ones(),
                    Ok(IpAddr::V6(m)) => u128::from(m).count_ones(),
                    Err(_) => 0,
                };
                (ip.parse(), ones)
            }
            None => return matches!(address, "samehost" | "localhost"),
        },
    };
    match ip {
        Ok(IpAddr::V4(v4)) => v4.octets()[0] == 127 && prefix >= 8,
        Ok(IpAddr::V6(v6)) => v6.is_loopback() && prefix == 128,
        Err(_) => false,
    }
}

/// Warnings about risky rules: `trust` for clients that are not local
/// (anything but local sockets, 127.0.0.0/8, ::1/128, samehost) lets anyone
/// who can reach the port in without a password.
pub fn lint(rules: &[HbaRule]) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.method == "trust" && r.kind != "local")
        .filter(|r| !r.address.as_deref().is_some_and(is_loopback))
        .map(|r| {
            format!(
                "rule '{}' trusts non-local clients ({}): anyone who reaches the port logs in as {} without a password",
                r.render(&[0; 5]),
                r.address.as_deref().unwrap_or("?"),
                r.user
            )
        })
        .collect()
}

/// The agent's own rules, for the cluster superuser `su`.
pub fn default_rules(su: &str) -> Vec<HbaRule> {
    [
        format!("local all {su} peer"),
        format!("host all {su} 127.0.0.0/8 scram-sha-256"),
        format!("host all {su} ::1/128 scram-sha-256"),
    ]
    .iter()
    .map(|l| HbaRule::parse(l).expect("default rules are valid"))
    .collect()
}

/// The file for `rules`: header, column titles, one aligned line per rule.
pub fn render(title: &str, rules: &[HbaRule]) -> String {
    let mut widths = [4, 8, 4, 7, 6]; // the column titles
    for r in rules {
        let cols = [
            &r.kind,
            &r.database,
            &r.user,
            r.address.as_ref().unwrap_or(&String::new()),
            &r.method,
        ]
        .map(|s| s.len());
        for (w, c) in widths.iter_mut().zip(cols) {
            *w = (*w).max(c);
        }
    }
    let mut out = format!("# Managed by agent (pg_hba[{title}]). Local changes are reverted.\n");
    let titles = HbaRule {
        kind: "# TYPE".into(),
        database: "DATABASE".into(),
        user: "USER".into(),
        address: Some("ADDRESS".into()),
        method: "METHOD".into(),
        options: vec!["OPTIONS".into()],
    };
    let mut w = widths;
    w[0] = w[0].max(6);
    out.push_str(&titles.render(&w));
    out.push('\n');
    for r in rules {
        out.push_str(&r.render(&w));
        out.push('\n');
    }
    out
}

/// The rules of a declaration (without defaults), for `agent validate`.
pub fn decl_rules(decl: &Decl) -> Result<Vec<HbaRule>, ResourceError> {
    let p: Params = decl.params()?;
    rules_of(decl, p.rules.specs())
}

fn rules_of(decl: &Decl, specs: Vec<RuleSpec>) -> Result<Vec<HbaRule>, ResourceError> {
    specs
        .into_iter()
        .map(|s| match s {
            RuleSpec::Line(l) => HbaRule::parse(&l),
            RuleSpec::Map(m) => HbaRule::from_map(m),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ResourceError::Invalid(format!("{}: {e}", decl.id)))
}

/// What `apply` does, as `check` decided.
enum Steps {
    /// Write the rendered rules (and have the server validate them).
    Rewrite(Rewrite),
    /// The content is there already but was never validated (a killed
    /// run): validate it, or put the previous version back.
    Validate(Intent),
}

/// "This file was swapped in and awaits the server's verdict": written
/// durably before the swap, removed once the server accepted the file or
/// the previous one was put back. Kept beside the backup store (the
/// previous content is in it, under `previous`).
#[derive(serde::Serialize, Deserialize)]
struct Intent {
    path: PathBuf,
    /// sha256 of the previous content in the backup store (`None`: there
    /// was no file).
    previous: Option<String>,
}

impl Intent {
    /// `<state dir>/pending-validation/hba-<sha256 of the path>`: beside
    /// the backup store, not in it (its prune removes what it does not
    /// know).
    fn marker(cx: &Context, path: &std::path::Path) -> PathBuf {
        let name = crate::backup::sha256_hex(path.as_os_str().as_encoded_bytes());
        let store = cx.backup.dir();
        store
            .parent()
            .unwrap_or(store)
            .join("pending-validation")
            .join(format!("hba-{name}"))
    }

    fn read(cx: &Context, path: &std::path::Path) -> Result<Option<Intent>, ResourceError> {
        let marker = Intent::marker(cx, path);
        match crate::atomic::read_optional(&marker)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ResourceError::Invalid(format!("{}: {e}", marker.display()))),
        }
    }

    fn write(&self, cx: &Context) -> Result<(), ResourceError> {
        let marker = Intent::marker(cx, &self.path);
        if let Some(dir) = marker.parent() {
            crate::backup::create_private_dir(dir)?;
            // A run killed while writing an intent left its temp here.
            crate::atomic::clean_stale_temps(dir);
        }
        let text = serde_json::to_vec(self)
            .map_err(|e| ResourceError::Failed(format!("{}: {e}", marker.display())))?;
        crate::atomic::write_atomic(&marker, &text, Some(0o600))
    }

    fn clear(&self, cx: &Context) -> Result<(), ResourceError> {
        let marker = Intent::marker(cx, &self.path);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ResourceError::io(&marker, e))
            }
            _ => Ok(()),
        }
    }
}

/// A typed `pg_hba` resource.
#[derive(Debug)]
pub struct PgHba {
    id: ResourceId,
    datadir: String,
    file: String,
    content: String,
    conn: pg::Conn,
    /// [`lint`] of the declared rules, for `agent validate`.
    warnings: Vec<String>,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let datadir = id.title.trim_end_matches('/').to_string();
    if !datadir.starts_with('/') || p.file.as_ref().is_some_and(|f| !f.starts_with('/')) {
        return Err(ResourceError::Invalid(format!(
            "{id}: the data dir (title) and file must be absolute paths"
        )));
    }
    let conn = attr::conn(id, &p.host, p.port, &p.superuser, &p.superuser_password)?;
    let mut rules = if p.defaults {
        default_rules(&conn.user)
    } else {
        vec![]
    };
    let own = rules_of(decl, p.rules.specs())?;
    // Said by `agent validate` (Resource::lints), once, not at every build.
    let warnings = lint(&own);
    rules.extend(own);
    Ok(Box::new(PgHba {
        id: id.clone(),
        file: p.file.unwrap_or_else(|| format!("{datadir}/pg_hba.conf")),
        content: render(&id.title, &rules),
        datadir,
        conn,
        warnings,
    }))
}

impl PgHba {
    /// Errors the server finds in the file on disk, as `line N: error`.
    fn file_errors(&self, client: &mut postgres::Client) -> Result<Vec<String>, ResourceError> {
        let rows = client
            .query("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number", &[])
            .map_err(|e| pg::sql_error(&format!("{}: reading pg_hba_file_rules", self.id), e))?;
        Ok(rows
            .iter()
            .map(|r| {
                format!(
                    "line {}: {}",
                    r.get::<_, Option<i32>>(0).unwrap_or(0),
                    r.get::<_, String>(1)
                )
            })
            .collect())
    }

    /// Warns when the server reads another file than the one we write.
    fn warn_if_other_file(&self, client: &mut postgres::Client, path: &std::path::Path) {
        if let Ok(row) = client.query_one("SELECT current_setting('hba_file')", &[]) {
            let server: PathBuf = PathBuf::from(row.get::<_, String>(0));
            let same = std::fs::canonicalize(&server).ok() == std::fs::canonicalize(path).ok();
            if !same {
                tracing::warn!(resource = %self.id, server = %server.display(), "the server reads another hba_file than {}", path.display());
            }
        }
    }
}

impl Resource for PgHba {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        pg::refuse_if_patroni(&self.id, &cx.path(&self.datadir)?)?;
        // Managed whole: the new text is the rendered rules.
        let file = Current::read(cx, &self.file)?;
        let disk = file.path.clone();
        Ok(
            match file.rewrite(self.content.clone().into_bytes(), false) {
                Some((change, rewrite)) => Plan::new(vec![change], Steps::Rewrite(rewrite)),
                // The content is as wanted, but a run stopped between
                // writing it and the server's verdict: not converged until
                // the server has accepted it.
                None => match Intent::read(cx, &disk)? {
                    Some(intent) => Plan::new(
                        vec![Change::new(
                            "validation",
                            Some(
                                "pending (a run stopped before the server accepted the file)"
                                    .into(),
                            ),
                            Some("accepted".into()),
                        )],
                        Steps::Validate(intent),
                    ),
                    None => Plan::in_sync(),
                },
            },
        )
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let (path, old, new) = match plan.steps::<Steps>(&self.id)? {
            Steps::Rewrite(rewrite) => {
                rewrite.ready(cx, &self.id, "")?;
                let Rewrite { path, old, new, .. } = rewrite;
                (path, old, Some(new))
            }
            Steps::Validate(intent) => {
                let old = match &intent.previous {
                    Some(sha) => Some(cx.backup.get(sha)?),
                    None => None,
                };
                (intent.path, old, None)
            }
        };
        let mut client = pg::connect_if_running(&self.conn, &cx.path(&self.datadir)?)?;
        let Some(client) = client.as_mut() else {
            let Some(new) = &new else {
                return Err(ResourceError::Failed(format!(
                    "{}: {} waits for the server's verdict and the server is not running; \
                     start it, or restore the previous file with `agent backup restore {}`",
                    self.id, self.file, self.file
                )));
            };
            pg::write_config(cx, &path, new, true)?;
            tracing::debug!(resource = %self.id, "server not running: file written only");
            return Ok(());
        };
        // The intent first, durably: a run killed after the swap leaves it
        // for the next run, which validates (or rolls back) before calling
        // the file converged.
        let intent = Intent {
            path: path.clone(),
            previous: old.as_deref().map(crate::backup::sha256_hex),
        };
        if let Some(new) = &new {
            intent.write(cx)?;
            pg::write_config(cx, &path, new, true)?;
        }
        self.warn_if_other_file(client, &path);
        let errors = self.file_errors(client)?;
        if !errors.is_empty() {
            match &old {
                Some(bytes) => pg::write_config(cx, &path, bytes, false)?,
                None => std::fs::remove_file(&path).map_err(|e| ResourceError::io(&path, e))?,
            }
            intent.clear(cx)?;
            return Err(ResourceError::Failed(format!(
                "{}: the server rejects the new {} ({}); previous file restored, server not reloaded",
                self.id,
                self.file,
                errors.join("; ")
            )));
        }
        client
            .execute("SELECT pg_reload_conf()", &[])
            .map_err(|e| pg::sql_error(&format!("{}: reloading", self.id), e))?;
        intent.clear(cx)
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        vec![ResourceId::new("pg_cluster", &self.datadir)]
    }

    fn paths(&self) -> Vec<String> {
        // The data dir too: apply looks for the running server's pid file there.
        vec![self.file.clone(), self.datadir.clone()]
    }

    fn lints(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

#[cfg(test)]
mod tests;
