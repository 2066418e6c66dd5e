//! The line syntaxes `conf` edits, each read as its daemon reads it, and the
//! one edit they share: find the active lines of a key, rewrite the last
//! one (the one the daemon obeys) in place or add one, or remove them —
//! every other line kept byte for byte.
//!
//! - `redis`: `key arg...` as `redis.conf` and `sentinel.conf`; a line is
//!   split into arguments as Redis does (`sdssplitargs`: `"..."` with
//!   `\n`, `\xHH` escapes, `'...'`); `#` starts a comment only at the
//!   start of a line; a key may be several words
//!   (`sentinel down-after-milliseconds mymaster`).
//! - `pgpool`: `key = 'value'` as `pgpool.conf`, whose lexer is
//!   PostgreSQL's (`guc-file.l`): the `pg_conf` parser reads it; strings
//!   are written quoted, as pgpool's own sample does.
//! - `ini`: `[section]` headers, `key = value`, `;` or `#` comment lines;
//!   the value is the rest of the line, trimmed.

use crate::pg_conf;

/// Which syntax a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Redis,
    Pgpool,
    Ini,
}

/// A declared value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string; for `redis`, the arguments as they would be written after
    /// the key (split as Redis splits them).
    Str(String),
    /// A number, as written.
    Num(String),
    Bool(bool),
}

/// What one `conf` resource names in its file: the key (and section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub format: Format,
    /// As declared (`pgpool`: lower-cased).
    pub name: String,
    /// `ini` only: the section (`None`: before the first header).
    pub section: Option<String>,
    /// `redis` only: the key's words.
    words: Vec<String>,
}

/// The value of the key as the file has it, for the change line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Line index.
    line: usize,
    /// The value as the daemon reads it (redis: arguments joined by a space).
    pub text: String,
    /// redis: the arguments.
    args: Vec<String>,
    /// Byte range of the value in the line (without terminator).
    span: (usize, usize),
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to change.
    InSync,
    /// The value set: from what it was (`None`: the key was missing).
    Set { from: Option<String> },
    /// Every line of the key removed; the last value.
    Removed { from: String },
}

impl Key {
    /// A validated key; `Err` says what is wrong with it.
    pub fn new(format: Format, name: &str, section: Option<&str>) -> Result<Key, String> {
        let bad = |why: &str| Err(format!("key '{name}' {why}"));
        if name.trim().is_empty() || name.contains(['\n', '\r', '\0']) {
            return bad("must be a non-empty single line");
        }
        if section.is_some() && format != Format::Ini {
            return Err("section is for format: ini only".into());
        }
        let mut words = vec![];
        let name = match format {
            Format::Redis => {
                words = match split_args(name) {
                    Some(w) if !w.is_empty() => w.into_iter().map(|(w, _)| w).collect(),
                    _ => return bad("is not a Redis directive (unbalanced quotes?)"),
                };
                if words[0].starts_with('#') {
                    return bad("starts with '#': that is a comment");
                }
                words.join(" ")
            }
            Format::Pgpool => {
                let lower = name.to_ascii_lowercase();
                let valid = lower
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && lower
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                if !valid {
                    return bad("is not a pgpool.conf parameter name");
                }
                lower
            }
            Format::Ini => {
                let trimmed = name.trim();
                if trimmed != name || name.contains('=') || name.starts_with(['[', ';', '#']) {
                    return bad("is not an ini key (no '=', no surrounding spaces, not a comment or [section])");
                }
                name.to_string()
            }
        };
        if let Some(s) = section {
            if s.trim() != s || s.is_empty() || s.contains([']', '\n', '\r']) {
                return Err(format!("section '{s}' is not an ini section name"));
            }
        }
        Ok(Key {
            format,
            name,
            section: section.map(str::to_string),
            words,
        })
    }

    /// How the key shows in change lines: `[section] key` for ini.
    pub fn label(&self) -> String {
        match &self.section {
            Some(s) => format!("[{s}] {}", self.name),
            None => self.name.clone(),
        }
    }

    /// True when `word` (the file's) is the key's word `i`: directive
    /// names (and Sentinel's sub-commands) are case-blind in Redis, the
    /// rest (a master's name) is not.
    fn redis_word_matches(&self, i: usize, word: &str) -> bool {
        let case_blind = i == 0 || (i == 1 && self.words[0].eq_ignore_ascii_case("sentinel"));
        if case_blind {
            self.words[i].eq_ignore_ascii_case(word)
        } else {
            self.words[i] == word
        }
    }

    /// The key's value on `line` (without terminator), if the line sets it.
    /// `section` is the ini section the line is in.
    fn parse(
        &self,
        line: &str,
        section: Option<&str>,
    ) -> Option<(String, Vec<String>, (usize, usize))> {
        match self.format {
            Format::Redis => {
                let trimmed = line.trim_start_matches([' ', '\t']);
                if trimmed.starts_with('#') {
                    return None;
                }
                let args = split_args(line)?;
                let n = self.words.len();
                if args.len() < n || !(0..n).all(|i| self.redis_word_matches(i, &args[i].0)) {
                    return None;
                }
                let rest: Vec<String> = args[n..].iter().map(|(a, _)| a.clone()).collect();
                let start = args.get(n).map_or(line.trim_end().len(), |(_, at)| *at);
                Some((rest.join(" "), rest, (start, line.trim_end().len())))
            }
            Format::Pgpool => {
                let l = pg_conf::parse_line(line)?;
                (l.name == self.name).then(|| (l.value, vec![], l.span))
            }
            Format::Ini => {
                if section != self.section.as_deref() {
                    return None;
                }
                let (k, _) = line.split_once('=')?;
                let t = line.trim_start();
                if t.starts_with([';', '#', '[']) || k.trim() != self.name {
                    return None;
                }
                let after = k.len() + 1;
                let rest = &line[after..];
                let lead = rest.len() - rest.trim_start().len();
                let value = rest.trim();
                let start = after + lead;
                Some((value.to_string(), vec![], (start, start + value.len())))
            }
        }
    }

    /// Every active line of the key in `lines` (contents, no terminators).
    fn find(&self, lines: &[&str]) -> Vec<Found> {
        let mut section: Option<String> = None;
        let mut found = vec![];
        for (n, line) in lines.iter().enumerate() {
            if self.format == Format::Ini {
                if let Some(s) = ini_header(line) {
                    section = Some(s.to_string());
                    continue;
                }
            }
            if let Some((text, args, span)) = self.parse(line, section.as_deref()) {
                found.push(Found {
                    line: n,
                    text,
                    args,
                    span,
                });
            }
        }
        found
    }
}

/// The section an ini line opens, if it is a header.
fn ini_header(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

impl Value {
    /// Checks the value can be written in `format`.
    pub fn validate(&self, format: Format) -> Result<(), String> {
        if let Value::Str(s) = self {
            if s.contains(['\n', '\r', '\0']) {
                return Err("the value must be one line".into());
            }
            if format == Format::Redis && split_args(s).is_none_or(|a| a.is_empty()) {
                return Err(format!(
                    "the value {s:?} is not Redis arguments (unbalanced quotes, or empty: write '\"\"' for an empty argument)"
                ));
            }
        }
        Ok(())
    }

    /// The value as a person reads it.
    pub fn text(&self, format: Format) -> String {
        match self {
            Value::Str(s) if format == Format::Redis => redis_args(s).join(" "),
            Value::Str(s) | Value::Num(s) => s.clone(),
            Value::Bool(b) => bool_word(format, *b).into(),
        }
    }

    /// As written after the key.
    fn render(&self, format: Format) -> String {
        match (format, self) {
            (Format::Redis, Value::Str(s)) => redis_args(s)
                .iter()
                .map(|a| redis_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            (Format::Pgpool, Value::Str(s)) => {
                let q = pg_conf::quote(s);
                if q.starts_with('\'') {
                    q
                } else {
                    format!("'{q}'")
                }
            }
            (_, Value::Str(s) | Value::Num(s)) => s.clone(),
            (_, Value::Bool(b)) => bool_word(format, *b).into(),
        }
    }

    /// True when the file's value already means this one.
    fn matches(&self, format: Format, found: &Found) -> bool {
        match (format, self) {
            (Format::Redis, Value::Str(s)) => found.args == redis_args(s),
            (Format::Redis, Value::Num(n)) => found.args == [n.clone()],
            (Format::Redis, Value::Bool(b)) => {
                found.args.len() == 1 && found.args[0].eq_ignore_ascii_case(bool_word(format, *b))
            }
            (Format::Pgpool, v) => {
                let setting = match v {
                    Value::Str(s) => pg_conf::Setting::Str(s.clone()),
                    Value::Num(n) => pg_conf::Setting::Num(n.clone()),
                    Value::Bool(b) => pg_conf::Setting::Bool(*b),
                };
                setting.matches(&found.text)
            }
            (Format::Ini, Value::Bool(b)) => {
                let t = found.text.to_ascii_lowercase();
                let truthy = ["true", "yes", "on", "1"];
                let falsy = ["false", "no", "off", "0"];
                if *b {
                    truthy.contains(&t.as_str())
                } else {
                    falsy.contains(&t.as_str())
                }
            }
            (Format::Ini, Value::Str(s) | Value::Num(s)) => &found.text == s,
        }
    }
}

/// How each syntax spells a boolean.
fn bool_word(format: Format, b: bool) -> &'static str {
    match (format, b) {
        (Format::Redis, true) => "yes",
        (Format::Redis, false) => "no",
        (Format::Pgpool, true) => "on",
        (Format::Pgpool, false) => "off",
        (Format::Ini, true) => "true",
        (Format::Ini, false) => "false",
    }
}

/// The arguments of a validated Redis value.
fn redis_args(s: &str) -> Vec<String> {
    split_args(s)
        .unwrap_or_default()
        .into_iter()
        .map(|(a, _)| a)
        .collect()
}

/// The file `old` with the key made to hold `want` (`None`: removed).
/// `replace: false` leaves a key that is there as it is, whatever its
/// value (the daemon owns it once the agent wrote it). Returns the new text (`old`
/// when in sync) and what changed.
pub fn edit(old: &str, key: &Key, want: Option<&Value>, replace: bool) -> (String, Outcome) {
    let raw: Vec<&str> = old.split_inclusive('\n').collect();
    let contents: Vec<&str> = raw
        .iter()
        .map(|l| l.trim_end_matches(['\n', '\r']))
        .collect();
    let found = key.find(&contents);
    let mut out: Vec<String> = raw.iter().map(|l| l.to_string()).collect();
    let outcome = match (want, found.last()) {
        (None, None) => return (old.to_string(), Outcome::InSync),
        (None, Some(last)) => {
            let from = last.text.clone();
            for f in found.iter().rev() {
                out.remove(f.line);
            }
            Outcome::Removed { from }
        }
        (Some(_), Some(_)) if !replace => return (old.to_string(), Outcome::InSync),
        (Some(v), Some(last)) if v.matches(key.format, last) => {
            return (old.to_string(), Outcome::InSync)
        }
        (Some(v), Some(last)) => {
            let line = &raw[last.line];
            let content = contents[last.line];
            let term = &line[content.len()..];
            let mut value = v.render(key.format);
            let mut head = &content[..last.span.0];
            if key.format == Format::Redis {
                // `maxmemory` alone, or `key<TAB> arg`: one space before the value.
                head = head.trim_end();
                value.insert(0, ' ');
            }
            out[last.line] = format!("{head}{value}{}{term}", &content[last.span.1..]);
            Outcome::Set {
                from: Some(last.text.clone()),
            }
        }
        (Some(v), None) => {
            add(&mut out, &contents, key, v);
            Outcome::Set { from: None }
        }
    };
    (out.concat(), outcome)
}

/// Adds the key's line: at the end of its ini section (before the blank
/// lines that end it), else at the end of the file.
fn add(out: &mut Vec<String>, contents: &[&str], key: &Key, v: &Value) {
    let line = match key.format {
        Format::Redis => format!(
            "{} {}\n",
            key.words
                .iter()
                .map(|w| redis_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
            v.render(key.format)
        ),
        Format::Pgpool | Format::Ini => format!("{} = {}\n", key.name, v.render(key.format)),
    };
    let end_newline = |out: &mut Vec<String>| {
        if let Some(last) = out.last_mut().filter(|l| !l.ends_with('\n')) {
            last.push('\n');
        }
    };
    if key.format != Format::Ini {
        end_newline(out);
        out.push(line);
        return;
    }
    // The ini section's lines: from its header (or the file's start for the
    // global one) to the next header.
    let headers: Vec<(usize, &str)> = contents
        .iter()
        .enumerate()
        .filter_map(|(n, l)| Some((n, ini_header(l)?)))
        .collect();
    let range = match &key.section {
        None => Some((0, headers.first().map_or(contents.len(), |h| h.0))),
        Some(s) => headers.iter().rposition(|(_, h)| h == s).map(|i| {
            let end = headers.get(i + 1).map_or(contents.len(), |h| h.0);
            (headers[i].0 + 1, end)
        }),
    };
    let Some((start, end)) = range else {
        end_newline(out);
        if !out.is_empty() && out.last().is_some_and(|l| !l.trim().is_empty()) {
            out.push("\n".into());
        }
        out.push(format!(
            "[{}]\n",
            key.section.as_deref().unwrap_or_default()
        ));
        out.push(line);
        return;
    };
    let mut at = end;
    while at > start && contents[at - 1].trim().is_empty() {
        at -= 1;
    }
    if at == out.len() {
        end_newline(out);
    }
    out.insert(at, line);
}

/// Redis's `sdssplitargs`: the arguments of a config line with where each
/// starts (byte offset); `None` when Redis would refuse the line
/// (unbalanced quotes, a closing quote followed by more text).
pub fn split_args(line: &str) -> Option<Vec<(String, usize)>> {
    let b = line.as_bytes();
    let mut p = 0;
    let mut args = vec![];
    let is_space = |c: u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    loop {
        while p < b.len() && is_space(b[p]) {
            p += 1;
        }
        if p >= b.len() {
            return Some(args);
        }
        let start = p;
        let mut cur: Vec<u8> = vec![];
        let (mut inq, mut insq) = (false, false);
        loop {
            let c = b.get(p).copied();
            if inq {
                match c {
                    None => return None,
                    Some(b'\\')
                        if b.get(p + 1) == Some(&b'x')
                            && b.get(p + 2).is_some_and(u8::is_ascii_hexdigit)
                            && b.get(p + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        let hex = std::str::from_utf8(&b[p + 2..p + 4]).ok()?;
                        cur.push(u8::from_str_radix(hex, 16).ok()?);
                        p += 3;
                    }
                    Some(b'\\') if p + 1 < b.len() => {
                        p += 1;
                        cur.push(match b[p] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if b.get(p + 1).is_some_and(|&n| !is_space(n)) {
                            return None;
                        }
                        p += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else if insq {
                match c {
                    None => return None,
                    Some(b'\\') if b.get(p + 1) == Some(&b'\'') => {
                        p += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if b.get(p + 1).is_some_and(|&n| !is_space(n)) {
                            return None;
                        }
                        p += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(c) if is_space(c) => break,
                    Some(b'"') => inq = true,
                    Some(b'\'') => insq = true,
                    Some(other) => cur.push(other),
                }
            }
            p += 1;
        }
        args.push((String::from_utf8_lossy(&cur).into_owned(), start));
    }
}

/// One Redis argument as written: bare when it can be, else double-quoted
/// with the escapes [`split_args`] reads back.
pub fn redis_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|c| !matches!(c, b'"' | b'\'' | b'\\') && (c >= 0x80 || c.is_ascii_graphic()));
    if plain {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
