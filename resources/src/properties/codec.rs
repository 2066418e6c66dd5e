//! The Java `.properties` codec: reading a file exactly as
//! `java.util.Properties.load` does ([`parse`], [`items`]), escaping keys and
//! values minimally ([`escape_key`], [`escape_value`]), and editing a file's
//! text so that only the given keys change ([`edit`]) — every other byte,
//! odd escaping included, is kept. The `properties` resource type uses it;
//! the fuzz target and the property tests drive it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

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
pub(super) fn decode(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (bytes.iter().map(|&b| b as char).collect(), true),
    }
}

pub(super) fn encode(text: &str, latin1: bool) -> Vec<u8> {
    if latin1 {
        // Kept lines are latin-1 and written ones ASCII: every char fits a byte.
        text.chars().map(|c| c as u32 as u8).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
