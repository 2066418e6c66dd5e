//! JSON values written as block YAML, for people (`agent facts --yaml`,
//! `agent lookup`) and for files the agent writes (the demo's hiera.yaml).
//!
//! saphyr-parser only reads, so this is the writer. It quotes every string
//! that any reader, YAML 1.1 as well as 1.2, could take for something else
//! (`yes`, `on`, `0755`, `1e3`, `null`, `- x`, `a: b`), so the text reads
//! back as the same value; the tests check that it does.

use serde_json::Value;

use super::node::{Scalar, Style};

/// `v` as a YAML document, ending in a newline.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    block(&mut out, v, 0);
    out.push('\n');
    out
}

/// Writes `v` starting at the current position, which is at column
/// `indent` of its line (or after the `- ` / `key: ` that put it there, a
/// string's literal block then going in at `indent`).
fn block(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (i, (k, val)) in map.iter().enumerate() {
                if i > 0 {
                    newline(out, indent);
                }
                if k.contains('\n') {
                    quoted(out, k);
                } else {
                    scalar(out, k, indent);
                }
                out.push(':');
                if is_collection(val) {
                    newline(out, indent + 2);
                    block(out, val, indent + 2);
                } else {
                    // A literal block's lines go one step in from the key.
                    out.push(' ');
                    block(out, val, indent + 2);
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    newline(out, indent);
                }
                out.push_str("- ");
                block(out, item, indent + 2);
            }
        }
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => scalar(out, s, indent),
    }
}

fn is_collection(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn newline(out: &mut String, indent: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A string: plain when safe, a literal block for readable multi-line
/// text, double-quoted otherwise.
fn scalar(out: &mut String, s: &str, indent: usize) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else if literal_is_safe(s) {
        literal(out, s, indent);
    } else {
        quoted(out, s);
    }
}

/// Words YAML 1.1 reads as booleans or null, in any case.
const YAML11_WORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let typed = Scalar {
        text: s.to_string(),
        style: Style::Plain,
        tag: None,
    }
    .resolve();
    let numeric_start = first.is_ascii_digit()
        || (matches!(first, '-' | '+' | '.') && s[1..].starts_with(|c: char| c.is_ascii_digit()));
    !(typed.as_str() != Some(s)
        || YAML11_WORDS.contains(&s.to_ascii_lowercase().as_str())
        || numeric_start
        || "-?:,[]{}#&*!|>'\"%@`<= \t".contains(first)
        || s.ends_with([' ', '\t', ':'])
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(|c| c.is_control() || c == '\u{feff}'))
}

/// Multi-line text of printable lines that do not start with a space
/// (which a literal block would need an indentation indicator for).
fn literal_is_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.ends_with("\n\n")
        && !s
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{feff}')
        && s.lines().all(|l| !l.ends_with([' ', '\t']))
}

fn literal(out: &mut String, s: &str, indent: usize) {
    let body = s.strip_suffix('\n');
    out.push_str(if body.is_some() { "|" } else { "|-" });
    // A document that is only a string still indents it.
    let indent = indent.max(2);
    for line in body.unwrap_or(s).split('\n') {
        if line.is_empty() {
            out.push('\n');
        } else {
            newline(out, indent);
            out.push_str(line);
        }
    }
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: Value) {
        let text = to_string(&v);
        let back = crate::yaml::parse(&text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .to_json();
        assert_eq!(back, v, "\n{text}");
    }

    #[test]
    fn block_layout() {
        let v = json!({"a": 1, "b": [1, {"c": "x", "d": []}, [2, 3]], "e": {"f": null}, "g": {}});
        assert_eq!(
            to_string(&v),
            "a: 1\nb:\n  - 1\n  - c: x\n    d: []\n  - - 2\n    - 3\ne:\n  f: null\ng: {}\n"
        );
        assert_eq!(to_string(&json!("plain")), "plain\n");
        assert_eq!(to_string(&json!([])), "[]\n");
        round_trip(v);
    }

    #[test]
    fn strings_that_look_like_something_else_are_quoted() {
        for s in [
            "",
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "n",
            "true",
            "False",
            "null",
            "~",
            "0755",
            "5",
            "-5",
            "1e3",
            "1.5",
            ".5",
            "+1",
            "0x1F",
            ".inf",
            "- x",
            "a: b",
            "a #b",
            "x:",
            "#c",
            "&a",
            "*a",
            "!t",
            "|",
            ">",
            "'q'",
            "\"q\"",
            "%d",
            "@x",
            "`x",
            "<<",
            "[a]",
            "{a}",
            ",",
            "?",
            " lead",
            "trail ",
            "tab\tin",
            "\u{7f}",
            "\u{85}",
            "bell\u{7}",
            "back\\slash",
        ] {
            let text = to_string(&json!(s));
            if !["back\\slash"].contains(&s) {
                assert!(text.starts_with('"'), "{s:?} → {text}");
            }
            round_trip(json!(s));
            round_trip(json!({ s: s }));
            round_trip(json!([s]));
        }
        assert_eq!(to_string(&json!("a-b_c.d/e f")), "a-b_c.d/e f\n");
    }

    #[test]
    fn multi_line_text_is_a_literal_block() {
        let v = json!({"cert": "-----BEGIN-----\nabc\n\ndef\n", "two": "a\nb", "k": ["x\ny\n"]});
        assert_eq!(
            to_string(&v),
            "cert: |\n  -----BEGIN-----\n  abc\n\n  def\nk:\n  - |\n    x\n    y\ntwo: |-\n  a\n  b\n"
        );
        round_trip(v);
        for s in [" lead\nx", "x\n\n", "a \nb", "\n", "a\r\nb", "x\n\n\ny"] {
            round_trip(json!({ "k": s }));
            round_trip(json!([s]));
        }
    }

    #[test]
    fn the_sites_hiera_config_round_trips() {
        // What the demo does to it: read, change, write back.
        let text = include_str!("../../../hiera/hiera.yaml");
        round_trip(crate::yaml::parse(text).unwrap().to_json());
    }

    #[test]
    fn numbers_and_nesting_round_trip() {
        round_trip(json!({
            "n": [0, -1, 18446744073709551615u64, 1.5, -2.25e-7, 1e300],
            "deep": {"a": {"b": [[[]], [{}], {"c": [true, false, null]}]}},
            "1": "key that looks like a number",
            "x y": "ünïcødé ✓",
        }));
    }
}
