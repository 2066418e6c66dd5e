//! `host`: one entry of a hosts file (`/etc/hosts` by default).
//!
//! The type owns exactly the lines whose canonical name (second field) is
//! its title; every other line — comments, blank lines, other hosts — is kept
//! byte for byte, because `/etc/hosts` is shared with the installer, cloud-init
//! and people. The edit itself is the pure function [`edit`], so the in-sync
//! decision and the rewrite are the same computation in `check` and `apply`.

use std::net::IpAddr;

use serde::Deserialize;

use crate::attr::{Ensure, OneOrMany};
use crate::core::{Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::edited::{self, Rewrite};

/// Attributes of `- host: <canonical name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `present` (default) writes the entry; `absent` removes every line
    /// whose canonical name is the title.
    #[serde(default)]
    ensure: Ensure,
    /// The address, IPv4 or IPv6. Required when present.
    ip: Option<String>,
    /// Other names of the host: a string (split on whitespace) or a list.
    /// Also accepted as `aliases`. The entry is managed whole: no aliases
    /// declared means none on the line.
    #[serde(alias = "aliases")]
    host_aliases: Option<OneOrMany>,
    /// Text written after the entry as ` # comment`; none declared means
    /// no comment on the line.
    comment: Option<String>,
    /// The hosts file to edit (default `/etc/hosts`).
    target: Option<String>,
}

/// The validated desired line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ip: IpAddr,
    pub name: String,
    pub aliases: Vec<String>,
    pub comment: Option<String>,
}

impl Entry {
    /// The line as written: fields separated by exactly one tab.
    pub fn render(&self) -> String {
        let mut line = format!("{}\t{}", self.ip, self.name);
        for alias in &self.aliases {
            line.push('\t');
            line.push_str(alias);
        }
        if let Some(c) = &self.comment {
            line.push_str(" # ");
            line.push_str(c);
        }
        line
    }
}

/// A typed `host` resource.
#[derive(Debug)]
pub struct Host {
    id: ResourceId,
    name: String,
    /// `None` = ensure absent.
    entry: Option<Entry>,
    target: String,
}

/// A host name or alias must be one hosts-file field.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '#')
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let name = id.title.clone();
    if !valid_name(&name) {
        return Err(invalid(format!("'{name}' is not a valid host name")));
    }
    let target = p.target.unwrap_or_else(|| "/etc/hosts".to_string());
    if !target.starts_with('/') {
        return Err(invalid(format!(
            "target '{target}' must be an absolute path"
        )));
    }
    let entry = match p.ensure {
        Ensure::Absent => None,
        Ensure::Present => {
            let ip_text =
                p.ip.ok_or_else(|| invalid("ip is required when ensure is present".into()))?;
            let ip: IpAddr = ip_text
                .trim()
                .parse()
                .map_err(|_| invalid(format!("ip '{ip_text}' is not an IPv4 or IPv6 address")))?;
            let aliases: Vec<String> = match p.host_aliases {
                None => vec![],
                Some(OneOrMany::One(s)) => s.split_whitespace().map(str::to_string).collect(),
                Some(OneOrMany::Many(v)) => v.into_iter().map(|s| s.trim().to_string()).collect(),
            };
            if let Some(bad) = aliases.iter().find(|a| !valid_name(a)) {
                return Err(invalid(format!("alias '{bad}' is not a valid host name")));
            }
            let comment = p
                .comment
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty());
            if comment.as_deref().is_some_and(|c| c.contains(['\n', '\r'])) {
                return Err(invalid("comment must be a single line".into()));
            }
            Some(Entry {
                ip,
                name: name.clone(),
                aliases,
                comment,
            })
        }
    };
    Ok(Box::new(Host {
        id: id.clone(),
        name,
        entry,
        target,
    }))
}

/// A parsed hosts line (without its terminator).
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    ip: &'a str,
    name: &'a str,
    aliases: Vec<&'a str>,
    comment: Option<&'a str>,
}

/// Parses an entry line; `None` for comments, blank and malformed lines.
fn parse_line(line: &str) -> Option<Line<'_>> {
    let (data, comment) = match line.find('#') {
        Some(i) => (
            &line[..i],
            Some(line[i + 1..].trim()).filter(|c| !c.is_empty()),
        ),
        None => (line, None),
    };
    let mut fields = data.split_whitespace();
    let ip = fields.next()?;
    let name = fields.next()?;
    Some(Line {
        ip,
        name,
        aliases: fields.collect(),
        comment,
    })
}

/// Splits a line into its content and its terminator (`\n`, `\r\n` or none).
fn split_term(line: &str) -> (&str, &str) {
    if let Some(s) = line.strip_suffix("\r\n") {
        (s, "\r\n")
    } else if let Some(s) = line.strip_suffix('\n') {
        (s, "\n")
    } else {
        (line, "")
    }
}

/// True when the line already says what `entry` says (whitespace aside).
fn in_sync(line: &Line<'_>, entry: &Entry) -> bool {
    line.ip.parse::<IpAddr>().is_ok_and(|ip| ip == entry.ip)
        && line.name == entry.name
        && line
            .aliases
            .iter()
            .copied()
            .eq(entry.aliases.iter().map(String::as_str))
        && line.comment == entry.comment.as_deref()
}

/// The hosts file `old` with the entry of `name` made to match `entry`
/// (`None` = removed). Other lines are untouched; the first matching line is
/// fixed in place, later duplicates removed; a missing entry is appended.
pub fn edit(old: &str, name: &str, entry: Option<&Entry>) -> String {
    let mut out = String::with_capacity(old.len() + 64);
    let mut seen = false;
    for raw in old.split_inclusive('\n') {
        let (content, term) = split_term(raw);
        let parsed = parse_line(content).filter(|l| l.name.eq_ignore_ascii_case(name));
        let Some(line) = parsed else {
            out.push_str(raw);
            continue;
        };
        if seen {
            continue; // a duplicate of the entry: drop it
        }
        seen = true;
        match entry {
            None => {}
            Some(e) if in_sync(&line, e) => out.push_str(raw),
            Some(e) => {
                out.push_str(&e.render());
                out.push_str(if term.is_empty() { "\n" } else { term });
            }
        }
    }
    if let (false, Some(e)) = (seen, entry) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&e.render());
        out.push('\n');
    }
    out
}

/// The entries of a hosts file as `host` declarations (`agent resource
/// host`): title and attributes, in file order, each of which applied
/// leaves its line as it is. A name on several lines (Debian's `localhost`
/// for 127.0.0.1 and ::1) is not declared — the type keeps one line per
/// name and would drop the others — nor is a line the type would not write
/// as it is; each is returned as a note instead.
#[allow(clippy::type_complexity)]
pub fn instances(
    text: &str,
) -> (
    Vec<(String, serde_json::Map<String, serde_json::Value>)>,
    Vec<String>,
) {
    let lines: Vec<(usize, &str, Line<'_>)> = text
        .lines()
        .enumerate()
        .filter_map(|(n, raw)| Some((n + 1, raw, parse_line(raw)?)))
        .collect();
    let count = |name: &str| {
        lines
            .iter()
            .filter(|(_, _, l)| l.name.eq_ignore_ascii_case(name))
            .count()
    };
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (n, raw, line) in &lines {
        let why = match line.ip.parse::<IpAddr>() {
            Err(_) => Some(format!("{:?} is not an address", line.ip)),
            Ok(_) if count(line.name) > 1 => Some(format!(
                "{} is on {} lines (a host entry keeps one line per name)",
                line.name,
                count(line.name)
            )),
            // The type writes the name as its title: lower-case.
            Ok(_) if line.name.to_lowercase() != line.name => {
                Some(format!("{} is not lower-case", line.name))
            }
            Ok(_) => None,
        };
        if let Some(why) = why {
            notes.push(format!("line {n} not declared: {why}: {}", raw.trim()));
            continue;
        }
        let mut attrs = serde_json::Map::new();
        attrs.insert("ip".into(), serde_json::json!(line.ip));
        if !line.aliases.is_empty() {
            attrs.insert("host_aliases".into(), serde_json::json!(line.aliases));
        }
        if let Some(c) = line.comment {
            attrs.insert("comment".into(), serde_json::json!(c));
        }
        out.push((line.name.to_string(), attrs));
    }
    (out, notes)
}

impl Resource for Host {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let wanted = self.entry.is_some();
        edited::check_entry(cx, &self.id, &self.target, wanted, |text| {
            edit(text, &self.name, self.entry.as_ref())
        })
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let rewrite: Rewrite = plan.steps(&self.id)?;
        rewrite.write(cx, &self.id, "", None)
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        edited::autorequires(&self.target)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.target.clone()]
    }

    /// It rewrites one file in place (temp and rename).
    fn keeps_dirs(&self) -> bool {
        true
    }

    /// It reads and rewrites its file through the stager.
    fn stages_writes(&self) -> bool {
        true
    }

    /// It reads one file.
    fn check_only_reads(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Change;
    use serde_json::json;

    #[test]
    fn instances_are_the_lines_as_declarations() {
        let text = "# comment\n127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\n10.0.0.1  db1 db  # primary\n300.1.1.1 bad\n10.0.0.2 DB2\n";
        let (found, notes) = instances(text);
        assert_eq!(
            found,
            vec![(
                "db1".to_string(),
                json!({"ip": "10.0.0.1", "host_aliases": ["db"], "comment": "primary"})
                    .as_object()
                    .unwrap()
                    .clone()
            )]
        );
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(
            notes[0].starts_with("line 2 not declared: localhost is on 2 lines"),
            "{notes:?}"
        );
        assert!(notes[3].contains("DB2 is not lower-case"), "{notes:?}");
        // The declared entry is in sync with the file it came from.
        let entry = Entry {
            ip: "10.0.0.1".parse().unwrap(),
            name: "db1".into(),
            aliases: vec!["db".into()],
            comment: Some("primary".into()),
        };
        assert_eq!(edit(text, "db1", Some(&entry)), text);
    }

    fn decl(title: &str, attrs: serde_json::Value) -> Decl {
        crate::testing::decl("host", title, attrs)
    }

    fn entry(ip: &str, name: &str, aliases: &[&str], comment: Option<&str>) -> Entry {
        Entry {
            ip: ip.parse().unwrap(),
            name: name.into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            comment: comment.map(str::to_string),
        }
    }

    /// A root with `/etc` and a separate state dir.
    fn sandbox() -> (tempfile::TempDir, Context) {
        crate::testing::sandbox(&["etc"])
    }

    #[test]
    fn apply_writes_the_rewrite_check_computed() {
        let (_dir, cx) = sandbox();
        let r = build(&decl("db1", json!({"ip": "10.0.0.5"})), &TypeEnv::default()).unwrap();
        let plan = r.check(&cx).unwrap();
        r.apply(&cx, plan).unwrap();
        assert_eq!(
            std::fs::read_to_string(cx.root.join("etc/hosts")).unwrap(),
            "10.0.0.5\tdb1\n"
        );
        // The typed rewrite is what counts, not the change lines; and a plan
        // without one is refused before anything is written.
        let rewrite = crate::edited::Current::read(&cx, "/etc/hosts")
            .unwrap()
            .into_rewrite(b"10.0.0.6\tdb1\n".to_vec())
            .unwrap();
        r.apply(&cx, Plan::new(vec![Change::new("x", None, None)], rewrite))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(cx.root.join("etc/hosts")).unwrap(),
            "10.0.0.6\tdb1\n"
        );
        assert!(r.apply(&cx, Plan::in_sync()).is_err());
        // A file edited by someone between check and apply is not written
        // over: the edit was made from what check read.
        let plan = r.check(&cx).unwrap();
        std::fs::write(cx.root.join("etc/hosts"), "# by hand\n").unwrap();
        let err = r.apply(&cx, plan).unwrap_err().to_string();
        assert!(err.contains("changed since"), "{err}");
        assert_eq!(
            std::fs::read_to_string(cx.root.join("etc/hosts")).unwrap(),
            "# by hand\n"
        );
    }

    const BASE: &str =
        "# managed by hand\n127.0.0.1   localhost\n\n::1 localhost ip6-localhost  # v6\n";

    #[test]
    fn line_is_tab_separated() {
        let e = entry("192.0.2.1", "node-1.bench.example", &["node-1"], None);
        assert_eq!(e.render(), "192.0.2.1\tnode-1.bench.example\tnode-1");
        let e = entry("2001:db8::1", "db", &["a", "b"], Some("primary"));
        assert_eq!(e.render(), "2001:db8::1\tdb\ta\tb # primary");
    }

    #[test]
    fn edit_appends_replaces_and_removes() {
        let e = entry("192.0.2.1", "node-1.bench.example", &["node-1"], None);
        let added = edit(BASE, "node-1.bench.example", Some(&e));
        assert_eq!(
            added,
            format!("{BASE}192.0.2.1\tnode-1.bench.example\tnode-1\n")
        );
        // A file without a final newline gets one before the new entry.
        assert_eq!(
            edit(
                "127.0.0.1 localhost",
                "x",
                Some(&entry("10.0.0.1", "x", &[], None))
            ),
            "127.0.0.1 localhost\n10.0.0.1\tx\n"
        );
        // Replaced in place, duplicates dropped.
        let old = "10.0.0.9 node-1.bench.example\n# keep\n10.0.0.8\tnode-1.bench.example\tx\n";
        assert_eq!(
            edit(old, "node-1.bench.example", Some(&e)),
            "192.0.2.1\tnode-1.bench.example\tnode-1\n# keep\n"
        );
        assert_eq!(edit(&added, "node-1.bench.example", None), BASE);
        assert_eq!(edit(BASE, "absent-host", None), BASE);
    }

    #[test]
    fn in_sync_tolerates_whitespace_but_not_field_changes() {
        let e = entry("192.0.2.1", "n1", &["a"], Some("c"));
        let old = "192.0.2.1  n1    a   #  c\n";
        assert_eq!(edit(old, "n1", Some(&e)), old);
        assert_ne!(edit("192.0.2.1 n1 a\n", "n1", Some(&e)), "192.0.2.1 n1 a\n");
        assert_ne!(
            edit("192.0.2.1 n1 a b # c\n", "n1", Some(&e)),
            "192.0.2.1 n1 a b # c\n"
        );
        assert_eq!(
            edit("192.0.2.2 n1 a # c\n", "n1", Some(&e)),
            "192.0.2.1\tn1\ta # c\n"
        );
        // A name that only appears as an alias, or in a comment, is not ours.
        let other = "10.0.0.1 other n1\n# 10.0.0.2 n1\n";
        assert_eq!(edit(other, "n1", None), other);
    }

    #[test]
    fn build_validates() {
        let env = TypeEnv::default();
        assert!(build(&decl("h", json!({})), &env).is_err(), "ip required");
        assert!(build(&decl("h", json!({"ip": "300.1.1.1"})), &env).is_err());
        assert!(build(&decl("h", json!({"ip": "10.0.0.1", "bogus": 1})), &env).is_err());
        assert!(build(
            &decl("h", json!({"ip": "10.0.0.1", "aliases": ["a b#"]})),
            &env
        )
        .is_err());
        assert!(build(&decl("h h", json!({"ip": "10.0.0.1"})), &env).is_err());
        assert!(build(&decl("h", json!({"ensure": "absent"})), &env).is_ok());
        assert!(build(&decl("h", json!({"ip": "::1", "aliases": "a b"})), &env).is_ok());
    }

    #[test]
    fn apply_is_idempotent_and_preserves_other_lines() {
        let (_dir, cx) = sandbox();
        let hosts = cx.root.join("etc/hosts");
        let unmanaged = "# do not touch\t \n127.0.0.1\tlocalhost   \n\n10.1.1.1 other # x\r\nlast-without-newline";
        std::fs::write(&hosts, unmanaged).unwrap();
        let env = TypeEnv::default();
        let attrs = json!({"ip": "192.0.2.1", "host_aliases": ["node-1"], "comment": "bench"});
        let r = build(&decl("node-1.bench.example", attrs), &env).unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1);
        assert!(changes[0]
            .diff
            .as_ref()
            .unwrap()
            .contains("+192.0.2.1\tnode-1.bench.example"));
        r.apply(&cx, plan).unwrap();
        assert!(
            r.check(&cx).unwrap().is_empty(),
            "second check finds nothing"
        );
        let text = std::fs::read_to_string(&hosts).unwrap();
        assert_eq!(
            text,
            format!("{unmanaged}\n192.0.2.1\tnode-1.bench.example\tnode-1 # bench\n")
        );
        assert_eq!(
            cx.backup.list(None).unwrap().len(),
            1,
            "old content backed up"
        );

        // Absent removes only our line, leaving the rest byte for byte.
        let gone = build(
            &decl("node-1.bench.example", json!({"ensure": "absent"})),
            &env,
        )
        .unwrap();
        gone.apply(&cx, gone.check(&cx).unwrap()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&hosts).unwrap(),
            format!("{unmanaged}\n")
        );
        assert!(gone.check(&cx).unwrap().is_empty());
    }

    #[test]
    fn creates_missing_file_only_in_existing_dir() {
        let (_dir, cx) = sandbox();
        let env = TypeEnv::default();
        let r = build(&decl("n1", json!({"ip": "10.0.0.1"})), &env).unwrap();
        r.apply(&cx, r.check(&cx).unwrap()).unwrap();
        assert_eq!(
            std::fs::read_to_string(cx.root.join("etc/hosts")).unwrap(),
            "10.0.0.1\tn1\n"
        );
        let absent = build(
            &decl("n1", json!({"ensure": "absent", "target": "/etc/none"})),
            &env,
        )
        .unwrap();
        assert!(
            absent.check(&cx).unwrap().is_empty(),
            "absent on a missing file is in sync"
        );

        let r = build(
            &decl("n1", json!({"ip": "10.0.0.1", "target": "/nodir/hosts"})),
            &env,
        )
        .unwrap();
        assert_eq!(r.check(&cx).unwrap().changes().len(), 1);
        let err = r.apply(&cx, r.check(&cx).unwrap()).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(
            r.autorequires(),
            vec![
                ResourceId::new("file", "/nodir/hosts"),
                ResourceId::new("file", "/nodir")
            ]
        );
        assert_eq!(r.paths(), vec!["/nodir/hosts".to_string()]);
    }
}
