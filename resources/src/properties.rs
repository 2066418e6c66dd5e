//! `properties`: keys of a Java `.properties` file (Atlassian Stash's
//! `stash-config.properties`, where the JDBC url follows the database master).
//!
//! The file belongs to the application: the type changes only the keys it is
//! given and keeps every other line — comments, blank lines, other keys, their
//! odd escaping — byte for byte. Reading follows `java.util.Properties.load`
//! exactly ([`parse`]), so "in sync" means "the application would read the
//! same value", whatever escaping the file uses; writing escapes minimally so
//! a JDBC url stays readable.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::fsutil;

/// Attributes of `- properties: <absolute path of the file>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Keys to set: key → string, number or boolean (written as text).
    /// Mark the whole map or `values.<key>` Sensitive to hide values.
    #[serde(default)]
    values: BTreeMap<String, Value>,
    /// Keys to delete (every line of them).
    #[serde(default)]
    remove: Vec<String>,
    /// Octal mode (`"0640"`). Unset: an existing file keeps its mode; a new
    /// one is 0600 if it holds a Sensitive value, else 0644.
    mode: Option<String>,
    /// Only `present` for now.
    #[serde(default)]
    ensure: Ensure,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Ensure {
    #[default]
    Present,
}

/// Whitespace as `Properties.load` sees it.
const WS: [char; 3] = [' ', '\t', '\x0c'];

/// One logical line of a properties file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Bytes of all its physical lines, terminators included.
    pub span: Range<usize>,
    /// Unescaped key and value; `None` for blank and comment lines.
    pub entry: Option<(String, String)>,
}

/// Physical lines as `(start, end of content, end with terminator)`;
/// `\n`, `\r\n` and a lone `\r` all end a line, as in Java.
fn physical_lines(text: &str) -> Vec<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push((start, i, i + 1));
                start = i + 1;
            }
            b'\r' => {
                let end = if bytes.get(i + 1) == Some(&b'\n') {
                    i + 2
                } else {
                    i + 1
                };
                lines.push((start, i, end));
                start = end;
                i = end - 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push((start, bytes.len(), bytes.len()));
    }
    lines
}

fn odd_trailing_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits `text` into logical lines: comments (`#`/`!` first after
/// whitespace) and blank lines stand alone; an entry continues onto the next
/// physical line while it ends in an odd number of backslashes, and the next
/// line's leading whitespace is dropped.
pub fn items(text: &str) -> Vec<Item> {
    let lines = physical_lines(text);
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (start, content_end, mut end) = lines[i];
        i += 1;
        let first = text[start..content_end].trim_start_matches(WS);
        if first.is_empty() || first.starts_with(['#', '!']) {
            items.push(Item {
                span: start..end,
                entry: None,
            });
            continue;
        }
        let mut logical = first.to_string();
        while odd_trailing_backslashes(&logical) {
            logical.pop();
            let Some(&(s, ce, e)) = lines.get(i) else {
                break;
            };
            logical.push_str(text[s..ce].trim_start_matches(WS));
            end = e;
            i += 1;
        }
        items.push(Item {
            span: start..end,
            entry: Some(split_entry(&logical)),
        });
    }
    items
}

/// Key and value of a logical line, as `Properties.load0` splits them: the
/// key ends at the first unescaped `=`, `:` or whitespace; then whitespace
/// and at most one `=`/`:` are skipped.
fn split_entry(line: &str) -> (String, String) {
    let chars: Vec<char> = line.chars().collect();
    let (mut key_len, mut value_start, mut has_sep, mut escaped) = (0, chars.len(), false, false);
    while key_len < chars.len() {
        let c = chars[key_len];
        if !escaped && (c == '=' || c == ':') {
            (value_start, has_sep) = (key_len + 1, true);
            break;
        }
        if !escaped && WS.contains(&c) {
            value_start = key_len + 1;
            break;
        }
        escaped = c == '\\' && !escaped;
        key_len += 1;
    }
    while let Some(&c) = chars.get(value_start) {
        if WS.contains(&c) {
        } else if !has_sep && (c == '=' || c == ':') {
            has_sep = true;
        } else {
            break;
        }
        value_start += 1;
    }
    (
        unescape(&chars[..key_len]),
        unescape(&chars[value_start.min(chars.len())..]),
    )
}

/// `Properties.loadConvert`: `\t \n \r \f`, `\uXXXX` (surrogate pairs
/// joined), and a backslash before any other character keeps the character.
fn unescape(chars: &[char]) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(chars.len());
    let mut buf = [0u16; 2];
    let mut i = 0;
    while i < chars.len() {
        let mut c = chars[i];
        i += 1;
        if c == '\\' {
            let Some(&next) = chars.get(i) else { break };
            i += 1;
            c = match next {
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                'f' => '\x0c',
                'u' => {
                    let hex: String = chars.iter().skip(i).take(4).collect();
                    match u16::from_str_radix(&hex, 16) {
                        Ok(unit)
                            if hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
                        {
                            units.push(unit);
                            i += 4;
                            continue;
                        }
                        // Java rejects the file; keep the text rather than lose it.
                        _ => 'u',
                    }
                }
                other => other,
            };
        }
        units.extend_from_slice(c.encode_utf16(&mut buf));
    }
    String::from_utf16_lossy(&units)
}

/// Every `(key, value)` in file order, unescaped; later duplicates win when
/// looking a key up, as in Java.
pub fn parse(text: &str) -> Vec<(String, String)> {
    items(text)
        .into_iter()
        .filter_map(|item| item.entry)
        .collect()
}

/// The value Java would read for `key`.
pub fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\x0c' => out.push_str("\\f"),
        c if c.is_ascii_control() || !c.is_ascii() => {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04X}"));
            }
        }
        c => out.push(c),
    }
}

/// A key escaped so it reads back whole: separators, spaces and a leading
/// comment character get a backslash.
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        match c {
            ' ' | '=' | ':' => out.push('\\'),
            '#' | '!' if i == 0 => out.push('\\'),
            _ => {}
        }
        push_escaped(&mut out, c);
    }
    out
}

/// A value escaped minimally: backslashes, a leading space, control and
/// non-ASCII characters. `& : = /` stay as they are (readable JDBC urls).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for (i, c) in value.chars().enumerate() {
        if i == 0 && c == ' ' {
            out.push('\\');
        }
        push_escaped(&mut out, c);
    }
    out
}

/// The line terminator ending `text` (`\n` when it has none: the last line).
fn terminator(text: &str) -> &str {
    ["\r\n", "\n", "\r"]
        .into_iter()
        .find(|t| text.ends_with(t))
        .unwrap_or("\n")
}

/// `old` with each key of `set` given its value and each key of `remove`
/// deleted. A key whose value Java would already read is left alone;
/// otherwise its first logical line is replaced in place by `key=value` and
/// later duplicates dropped; missing keys are appended in `set` order.
pub fn edit(old: &str, set: &[(String, String)], remove: &[String]) -> String {
    let items = items(old);
    let pairs: Vec<(String, String)> = items.iter().filter_map(|i| i.entry.clone()).collect();
    let write: BTreeMap<&str, &str> = set
        .iter()
        .filter(|(k, v)| lookup(&pairs, k) != Some(v.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut written = BTreeSet::new();
    let mut out = String::with_capacity(old.len() + 64);
    for item in &items {
        let text = &old[item.span.clone()];
        let Some((key, _)) = &item.entry else {
            out.push_str(text);
            continue;
        };
        if remove.contains(key) {
            continue;
        }
        match write.get(key.as_str()) {
            None => out.push_str(text),
            Some(_) if !written.insert(key.as_str()) => {} // a later duplicate
            Some(value) => {
                let term = terminator(text);
                out.push_str(&format!(
                    "{}={}{term}",
                    escape_key(key),
                    escape_value(value)
                ));
            }
        }
    }
    for (key, value) in set {
        if write.contains_key(key.as_str()) && !written.contains(key.as_str()) {
            if !out.is_empty() && !out.ends_with(['\n', '\r']) {
                out.push('\n');
            }
            if dangling_continuation(&out) {
                // The last entry ends in a backslash: it would swallow the
                // line we append. A blank line ends it (its value unchanged),
                // with the file's own terminator: a `\n` after a lone `\r`
                // would only turn it into `\r\n`.
                let term = terminator(&out).to_string();
                out.push_str(&term);
            }
            out.push_str(&format!("{}={}\n", escape_key(key), escape_value(value)));
        }
    }
    out
}

/// True when the last logical line of `text` is an entry continued past
/// the end of the text (an odd number of trailing backslashes).
fn dangling_continuation(text: &str) -> bool {
    items(text).last().is_some_and(|item| {
        let span = &text[item.span.clone()];
        let body = span
            .strip_suffix("\r\n")
            .or_else(|| span.strip_suffix(['\n', '\r']))
            .unwrap_or(span);
        let last_line = body.rsplit(['\n', '\r']).next().unwrap_or(body);
        item.entry.is_some() && odd_trailing_backslashes(last_line)
    })
}

/// Text of a file: UTF-8 if it is, else ISO-8859-1 (what `Properties.load`
/// reads from a stream), so that untouched bytes are written back as read.
fn decode(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (bytes.iter().map(|&b| b as char).collect(), true),
    }
}

fn encode(text: &str, latin1: bool) -> Vec<u8> {
    if latin1 {
        // Kept lines are latin-1 and written ones ASCII: every char fits a byte.
        text.chars().map(|c| c as u32 as u8).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// A typed `properties` resource.
#[derive(Debug)]
pub struct Properties {
    id: ResourceId,
    path: String,
    set: Vec<(String, String)>,
    remove: Vec<String>,
    mode: Option<u32>,
    /// Keys whose values are Sensitive.
    sensitive: BTreeSet<String>,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let Ensure::Present = p.ensure;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let path = id.title.clone();
    if !path.starts_with('/') {
        return Err(invalid(
            "the title must be the absolute path of the file".into(),
        ));
    }
    let mut set = Vec::with_capacity(p.values.len());
    for (key, value) in p.values {
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(invalid(format!(
                    "values.{key} must be a string, number or boolean"
                )))
            }
        };
        if key.is_empty() {
            return Err(invalid("property keys cannot be empty".into()));
        }
        if p.remove.contains(&key) {
            return Err(invalid(format!("'{key}' is both in values and in remove")));
        }
        set.push((key, text));
    }
    let sensitive = set
        .iter()
        .filter(|(k, _)| decl.is_sensitive("values") || decl.is_sensitive(&format!("values.{k}")))
        .map(|(k, _)| k.clone())
        .collect();
    let mode = p
        .mode
        .as_deref()
        .map(fsutil::parse_mode)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Box::new(Properties {
        id: id.clone(),
        path,
        set,
        remove: p.remove,
        mode,
        sensitive,
    }))
}

/// What `check` found and `apply` acts on: whether there is a file and its
/// mode, and the wanted content.
#[derive(Debug)]
struct Steps {
    path: PathBuf,
    exists: bool,
    old_mode: Option<u32>,
    /// `None` when the content is already right.
    new: Option<Vec<u8>>,
}

impl Properties {
    fn plan(&self, path: &Path) -> Result<(Vec<Change>, Steps), ResourceError> {
        let old = fsutil::read_optional(path)?;
        let (text, latin1) = old.as_deref().map(decode).unwrap_or_default();
        let pairs = parse(&text);
        let new_text = edit(&text, &self.set, &self.remove);
        let new = encode(&new_text, latin1);
        let mut changes = Vec::new();
        for (key, value) in &self.set {
            let current = lookup(&pairs, key);
            if current != Some(value.as_str()) {
                let change = Change::new(key, current.map(str::to_string), Some(value.clone()));
                changes.push(change.sensitive(self.sensitive.contains(key)));
            }
        }
        for key in &self.remove {
            if let Some(current) = lookup(&pairs, key) {
                changes.push(Change::new(key, Some(current.to_string()), None));
            }
        }
        // Only removals on a missing file: nothing to write, no file to create.
        let write = old.as_deref() != Some(&new[..]) && (old.is_some() || !self.set.is_empty());
        if write {
            let secret = !self.sensitive.is_empty();
            changes.push(fsutil::content_change(
                Path::new(&self.path),
                old.as_deref(),
                &new,
                secret,
            ));
        }
        let old_mode = match &old {
            Some(_) => Some(
                std::fs::metadata(path)
                    .map_err(|e| ResourceError::io(path, e))?
                    .mode()
                    & 0o7777,
            ),
            None => None,
        };
        if let (Some(want), Some(have)) = (self.mode, old_mode) {
            if want != have {
                changes.push(Change::new(
                    "mode",
                    Some(format!("{have:04o}")),
                    Some(format!("{want:04o}")),
                ));
            }
        }
        let steps = Steps {
            path: path.to_path_buf(),
            exists: old.is_some(),
            old_mode,
            new: write.then_some(new),
        };
        Ok((changes, steps))
    }
}

impl Resource for Properties {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let (changes, steps) = self.plan(&cx.path(&self.path)?)?;
        if changes.is_empty() {
            return Ok(Plan::in_sync());
        }
        Ok(Plan::new(changes, steps))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let plan: Steps = plan.steps(&self.id)?;
        let path = &plan.path;
        if let Some(new) = &plan.new {
            let owner = if plan.exists {
                std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
            } else {
                fsutil::require_parent_dir(&self.id, &self.path, path, "")?;
                None
            };
            let mode = match (self.mode, plan.exists) {
                (Some(m), _) => Some(m),
                (None, true) => None, // keep the file's mode
                (None, false) if self.sensitive.is_empty() => Some(0o644),
                (None, false) => Some(0o600),
            };
            tracing::debug!(resource = %self.id, "rewriting properties file");
            fsutil::replace_file(cx, path, new, mode)?;
            // The application user owns its config; replacing must not hand
            // it to root (a 0600 root file would lock the application out).
            if let Some((uid, gid)) = owner.filter(|_| nix::unistd::geteuid().is_root()) {
                let meta = std::fs::metadata(path).map_err(|e| ResourceError::io(path, e))?;
                if (meta.uid(), meta.gid()) != (uid, gid) {
                    std::os::unix::fs::chown(path, Some(uid), Some(gid))
                        .map_err(|e| ResourceError::io(path, e))?;
                    if let Some(m) = mode.or(plan.old_mode) {
                        // chown clears set-id bits; put the mode back.
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
                            .map_err(|e| ResourceError::io(path, e))?;
                    }
                }
            }
        } else if let (Some(want), Some(have)) = (self.mode, plan.old_mode) {
            if want != have {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))
                    .map_err(|e| ResourceError::io(path, e))?;
            }
        }
        Ok(())
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = vec![ResourceId::new("file", &self.path)];
        if let Some(parent) = Path::new(&self.path).parent() {
            ids.push(ResourceId::new("file", parent.to_string_lossy()));
        }
        ids
    }

    fn paths(&self) -> Vec<String> {
        vec![self.path.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::BackupStore;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decl(path: &str, attrs: serde_json::Value, sensitive: &[&str]) -> Decl {
        Decl {
            id: ResourceId::new("properties", path),
            attrs: attrs.as_object().unwrap().clone(),
            sensitive: sensitive.iter().map(|s| s.to_string()).collect(),
            location: Default::default(),
        }
    }

    fn sandbox() -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/stash/shared")).unwrap();
        let cx = Context::new(
            dir.path().join("root"),
            BackupStore::new(&dir.path().join("state")),
        );
        (dir, cx)
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn parses_like_java() {
        let text = "# comment\n  ! also a comment \\\nTruth = Beauty\n Truth:Beauty\r\nTruth\t\t\t:Beauty\r\
                    fruits  apple, banana, pear, \\\n        cantaloupe, watermelon, \\\n   kiwi, mango\n\
                    cheeses\nkey\\ with\\ spaces = v\n\\#not\\:comment=1\nk = = v\nu=\\u00e9\\uD83D\\uDE00\\q\n\
                    c=a\\\n  #b\nslash=x\\\\\nlast=y\\";
        assert_eq!(
            parse(text),
            pairs(&[
                ("Truth", "Beauty"),
                ("Truth", "Beauty"),
                ("Truth", "Beauty"),
                (
                    "fruits",
                    "apple, banana, pear, cantaloupe, watermelon, kiwi, mango"
                ),
                ("cheeses", ""),
                ("key with spaces", "v"),
                ("#not:comment", "1"),
                ("k", "= v"),
                ("u", "é😀q"),
                ("c", "a#b"),
                ("slash", "x\\"),
                ("last", "y"),
            ])
        );
        // A continuation onto a blank line ends the entry there.
        assert_eq!(parse("a=1\\\n\nb=2\n"), pairs(&[("a", "1"), ("b", "2")]));
        assert_eq!(
            lookup(&parse("a=1\na=2\n"), "a"),
            Some("2"),
            "later duplicates win"
        );
    }

    #[test]
    fn escaping_round_trips() {
        let keys = [
            "plain", "a b", "k=1", "k:2", "#hash", "!bang", "ключ", "x\\y", " lead", "tab\tkey",
            "mid#!",
        ];
        let values = [
            "",
            " leading",
            "  two",
            "trailing ",
            "back\\slash",
            "end\\",
            "tab\there",
            "new\nline",
            "cr\r",
            "ff\x0c",
            "unicode é ☃ 😀",
            "a&b=c:d/e",
            "#not comment",
            "!bang",
            "=starts",
            ":colon",
            "\\u0041 literal",
            "\u{1}ctl",
        ];
        for key in keys {
            for value in values {
                let line = format!("{}={}", escape_key(key), escape_value(value));
                assert_eq!(parse(&line), pairs(&[(key, value)]), "{line:?}");
                let file = edit("x=1\n", &pairs(&[(key, value)]), &[]);
                assert_eq!(lookup(&parse(&file), key), Some(value), "{file:?}");
                assert!(file.is_ascii() && file.lines().count() == 2, "{file:?}");
            }
        }
        let url = "jdbc:postgresql://h:5432/db?ssl=true&user=a";
        assert_eq!(escape_value(url), url, "urls stay readable");
    }

    #[test]
    fn edit_rewrites_logical_lines_in_place() {
        let old = "# Stash config\r\n! keep me\n\njdbc.url=jdbc\\:postgresql\\://h\\:5432/db\n\
                   jdbc.user = sta\\\n    sh\nother=1\njdbc.user=dup\n";
        // In sync on the unescaped value: nothing changes.
        let same = pairs(&[("jdbc.url", "jdbc:postgresql://h:5432/db")]);
        assert_eq!(edit(old, &same, &[]), old);
        let set = pairs(&[
            ("jdbc.user", "stash"),
            ("jdbc.url", "jdbc:postgresql://n2:5432/db"),
            ("new.key", "v"),
        ]);
        assert_eq!(
            edit(old, &set, &[]),
            "# Stash config\r\n! keep me\n\njdbc.url=jdbc:postgresql://n2:5432/db\n\
             jdbc.user=stash\nother=1\nnew.key=v\n"
        );
        assert_eq!(
            edit(old, &[], &["jdbc.user".into(), "absent".into()]),
            "# Stash config\r\n! keep me\n\njdbc.url=jdbc\\:postgresql\\://h\\:5432/db\nother=1\n"
        );
        assert_eq!(edit("a=1", &pairs(&[("b", "2")]), &[]), "a=1\nb=2\n");
        assert_eq!(
            edit("a=1\\\n\nz=0\n", &pairs(&[("a", "2")]), &[]),
            "a=2\nz=0\n"
        );
    }

    #[test]
    fn apply_is_idempotent_and_reports_per_key() {
        let (_dir, cx) = sandbox();
        let path = cx.root.join("stash/shared/stash-config.properties");
        let unmanaged = "#>>> Stash config\n#Mon Jan 01 00:00:00 UTC 2024\nsetup.displayName=Stash \\\n  Bench\r\n\njdbc.driver=org.postgresql.Driver\n";
        std::fs::write(
            &path,
            format!("{unmanaged}jdbc.url=jdbc\\:postgresql\\://old\\:5432/stash\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let attrs = json!({"values": {"jdbc.url": "jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2", "plugin.port": 7990, "ok": true}});
        let r = build(
            &decl("/stash/shared/stash-config.properties", attrs, &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        let lines: Vec<String> = changes.iter().map(Change::line).collect();
        assert!(lines.contains(&"jdbc.url changed 'jdbc:postgresql://old:5432/stash' to 'jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2'".into()), "{lines:?}");
        assert!(
            lines.contains(&"plugin.port changed absent to '7990'".into()),
            "{lines:?}"
        );
        assert_eq!(changes.len(), 4, "three keys and the content");
        r.apply(&cx, plan).unwrap();
        assert!(
            r.check(&cx).unwrap().is_empty(),
            "second check finds nothing"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{unmanaged}jdbc.url=jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2\nok=true\nplugin.port=7990\n"));
        assert_eq!(mode_of(&path), 0o640, "existing mode kept");

        let moded = build(
            &decl(
                "/stash/shared/stash-config.properties",
                json!({"mode": "0600"}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        assert_eq!(
            moded.check(&cx).unwrap().changes()[0].line(),
            "mode changed '0640' to '0600'"
        );
        moded.apply(&cx, moded.check(&cx).unwrap()).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert!(moded.check(&cx).unwrap().is_empty());
    }

    #[test]
    fn sensitive_values_are_redacted_and_new_files_private() {
        let (_dir, cx) = sandbox();
        let attrs = json!({"values": {"jdbc.password": "s3cr3t-prop-test", "jdbc.user": "stash"}});
        let r = build(
            &decl(
                "/stash/shared/new.properties",
                attrs,
                &["values.jdbc.password"],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        let pw = changes
            .iter()
            .find(|c| c.property == "jdbc.password")
            .unwrap();
        assert!(
            pw.sensitive && !pw.line().contains("s3cr3t"),
            "{}",
            pw.line()
        );
        let user = changes.iter().find(|c| c.property == "jdbc.user").unwrap();
        assert!(!user.sensitive);
        let content = changes.iter().find(|c| c.property == "content").unwrap();
        assert!(content.printable_diff().is_none(), "a new file has no diff");
        r.apply(&cx, plan).unwrap();
        let path = cx.root.join("stash/shared/new.properties");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "jdbc.password=s3cr3t-prop-test\njdbc.user=stash\n"
        );
        assert!(r.check(&cx).unwrap().is_empty());

        let plain = build(
            &decl(
                "/stash/shared/plain.properties",
                json!({"values": {"a": "1"}}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        plain.apply(&cx, plain.check(&cx).unwrap()).unwrap();
        assert_eq!(
            mode_of(&cx.root.join("stash/shared/plain.properties")),
            0o644
        );
        let nodir = build(
            &decl("/nodir/x.properties", json!({"values": {"a": "1"}}), &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        assert!(nodir
            .apply(&cx, nodir.check(&cx).unwrap())
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }

    #[test]
    fn remove_and_latin1_files_keep_other_bytes() {
        let (_dir, cx) = sandbox();
        let path = cx.root.join("stash/shared/l1.properties");
        let mut old = b"# caf\xe9\nname=caf\xe9\ngone=1\n".to_vec();
        std::fs::write(&path, &old).unwrap();
        let r = build(
            &decl(
                "/stash/shared/l1.properties",
                json!({"remove": ["gone"], "values": {"x": "é"}}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        r.apply(&cx, r.check(&cx).unwrap()).unwrap();
        assert!(r.check(&cx).unwrap().is_empty());
        old.truncate(old.len() - "gone=1\n".len());
        old.extend_from_slice(b"x=\\u00E9\n");
        assert_eq!(std::fs::read(&path).unwrap(), old);
        let only_remove = json!({"remove": ["gone"]});
        let r = build(
            &decl("/stash/shared/none.properties", only_remove, &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        assert!(
            r.check(&cx).unwrap().is_empty(),
            "removing from a missing file is in sync"
        );
        let both = json!({"remove": ["a"], "values": {"a": "1"}});
        assert!(build(&decl("/x", both, &[]), &TypeEnv::default()).is_err());
        assert!(build(
            &decl("/x", json!({"ensure": "absent"}), &[]),
            &TypeEnv::default()
        )
        .is_err());
        assert!(build(
            &decl("/x", json!({"values": {"a": [1]}}), &[]),
            &TypeEnv::default()
        )
        .is_err());
    }

    #[test]
    fn replacing_keeps_the_owner() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root can give a file away
        }
        let (_dir, cx) = sandbox();
        let path = cx.root.join("stash/shared/owned.properties");
        std::fs::write(&path, "a=1\n").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let r = build(
            &decl(
                "/stash/shared/owned.properties",
                json!({"values": {"a": "2"}}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        r.apply(&cx, r.check(&cx).unwrap()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (
                meta.uid(),
                meta.gid(),
                std::fs::read_to_string(&path).unwrap().as_str()
            ),
            (65534, 65534, "a=2\n")
        );
    }

    /// Found by the property tests: a file ending in a continued entry
    /// swallowed the keys appended after it (`a` read `\njdbc.url=...`).
    #[test]
    fn appending_after_a_dangling_continuation_keeps_keys_apart() {
        // The last one was found by the fuzzer: a lone `\r` terminator.
        for old in [
            "a=x\\",
            "a=x\\\n",
            "a=x\\\r\n",
            "# c\\\nb=1\na=\\\n",
            "\\\u{16}\\\u{16}\\\r",
        ] {
            let set = vec![("jdbc.url".to_string(), "u".to_string())];
            let new = edit(old, &set, &[]);
            let pairs = parse(&new);
            assert_eq!(lookup(&pairs, "jdbc.url"), Some("u"), "{old:?} -> {new:?}");
            assert_eq!(
                lookup(&pairs, "a"),
                lookup(&parse(old), "a"),
                "{old:?} -> {new:?}"
            );
            assert_eq!(edit(&new, &set, &[]), new);
        }
    }
}
