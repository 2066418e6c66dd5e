//! The YAML tree the loader builds: every node keeps where it starts and,
//! for a scalar, its text as written and whether it was quoted. Typing a
//! scalar (is `5` a number, `true` a boolean?) is a separate step,
//! [`Scalar::resolve`], so that a reader with other rules (Hiera's YAML 1.1)
//! can type the same tree its own way.

use std::fmt;

use serde_json::{Map, Number, Value};

/// A position in the source: 1-based line, 1-based column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.col)
    }
}

/// How a scalar was written. Only a plain scalar is typed: a quoted or
/// block scalar is always a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>`.
    Block,
}

/// A scalar as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub style: Style,
    /// The resolved tag (`tag:yaml.org,2002:str` for `!!str`), if any.
    pub tag: Option<String>,
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in written order.
    Map(Vec<(Node, Node)>),
}

/// The core tag that forces a string.
const STR_TAG: &str = "tag:yaml.org,2002:str";

impl Scalar {
    /// Plain and not tagged `!!str`: the only kind a schema may type.
    pub fn is_plain(&self) -> bool {
        self.style == Style::Plain && self.tag.as_deref() != Some(STR_TAG)
    }

    /// The value under the YAML 1.2 core schema as the agent has always
    /// read it: `~`/`null`/empty is null, `true`/`True`/`TRUE` (and false)
    /// booleans, decimal, `0x`, `0o`, `0b` integers, floats with `.inf` and
    /// `.nan`; a leading zero (`0755`) keeps digits a string. Non-finite
    /// floats become null, having no JSON form.
    pub fn resolve(&self) -> Value {
        if !self.is_plain() {
            return Value::String(self.text.clone());
        }
        let t = self.text.as_str();
        if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
            return Value::Null;
        }
        if let Some(b) = core_bool(t) {
            return Value::Bool(b);
        }
        if let Some(n) = core_int(t) {
            return Value::Number(n);
        }
        if !leading_zero_digits(t) {
            if let Some(f) = core_float(t) {
                return Number::from_f64(f).map_or(Value::Null, Value::Number);
            }
        }
        Value::String(self.text.clone())
    }
}

impl Scalar {
    /// A plain `.inf`, `-.inf` or `.nan`: a float JSON cannot hold, which
    /// [`Scalar::resolve`] turns into null.
    pub fn is_non_finite(&self) -> bool {
        let t = self.text.as_str();
        self.is_plain()
            && core_int(t).is_none()
            && !leading_zero_digits(t)
            && core_float(t).is_some_and(|f| !f.is_finite())
    }
}

fn core_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Digits after a leading zero: a string in YAML 1.2 (`0755`, `007`).
fn leading_zero_digits(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    t.len() > 1 && t.starts_with('0') && t[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A core-schema integer; one too large for 64 bits is a float, as JSON
/// has no wider integer.
fn core_int(t: &str) -> Option<Number> {
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(d) = rest.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = rest.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = rest.strip_prefix("0b") {
        (2, d)
    } else {
        if leading_zero_digits(rest) {
            return None;
        }
        (10, rest)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if negative {
        let v = i128::try_from(magnitude).ok().map(|m| -m)?;
        match i64::try_from(v) {
            Ok(i) => Some(Number::from(i)),
            Err(_) => Number::from_f64(v as f64),
        }
    } else {
        match u64::try_from(magnitude) {
            Ok(u) => Some(Number::from(u)),
            Err(_) => Number::from_f64(magnitude as f64),
        }
    }
}

fn core_float(t: &str) -> Option<f64> {
    let unsigned = t.strip_prefix('+').unwrap_or(t);
    if unsigned.starts_with(['+', '-']) && t.starts_with('+') {
        return None;
    }
    match (unsigned, t) {
        (".inf" | ".Inf" | ".INF", _) => return Some(f64::INFINITY),
        (_, "-.inf" | "-.Inf" | "-.INF") => return Some(f64::NEG_INFINITY),
        (_, ".nan" | ".NaN" | ".NAN") => return Some(f64::NAN),
        _ => {}
    }
    // Rust also reads `inf` and `NaN`, which YAML spells with a dot.
    unsigned.parse::<f64>().ok().filter(|f| f.is_finite())
}

impl Node {
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.data {
            Data::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar that resolves to a string (so `5` and `true`
    /// are not strings, `"5"` is).
    pub fn as_str(&self) -> Option<&str> {
        let s = self.scalar()?;
        matches!(s.resolve(), Value::String(_)).then_some(s.text.as_str())
    }

    /// Null: an empty document, `~`, `null`, or nothing after `key:`.
    pub fn is_null(&self) -> bool {
        self.scalar().is_some_and(|s| s.resolve().is_null())
    }

    /// The entries of a mapping.
    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.data {
            Data::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The entry of a mapping whose key is the scalar `key`.
    pub fn entry(&self, key: &str) -> Option<&(Node, Node)> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.scalar().is_some_and(|s| s.text == key))
    }

    /// The value under the scalar key `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// What kind of node this is, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.data {
            Data::Scalar(s) => match s.resolve() {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "a string",
            },
            Data::Seq(_) => "a sequence",
            Data::Map(_) => "a mapping",
        }
    }

    /// The tree as JSON under the core schema; keys become their text
    /// (`1: x` → `"1"`, a null key `""`, a collection key its JSON).
    pub fn to_json(&self) -> Value {
        self.to_json_with(Scalar::resolve)
    }

    /// The tree as JSON, scalars typed by `resolve` (Hiera data uses
    /// [`super::yaml11::resolve`]); keys as in [`Node::to_json`].
    pub fn to_json_with(&self, resolve: fn(&Scalar) -> Value) -> Value {
        match &self.data {
            Data::Scalar(s) => resolve(s),
            Data::Seq(items) => {
                Value::Array(items.iter().map(|n| n.to_json_with(resolve)).collect())
            }
            Data::Map(entries) => {
                let mut out = Map::new();
                for (k, v) in entries {
                    out.insert(k.key_text(), v.to_json_with(resolve));
                }
                Value::Object(out)
            }
        }
    }

    /// A mapping key as text.
    pub fn key_text(&self) -> String {
        match &self.data {
            Data::Scalar(s) if s.resolve().is_null() => String::new(),
            Data::Scalar(s) => s.text.clone(),
            _ => self.to_json().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(t: &str) -> Value {
        Scalar {
            text: t.into(),
            style: Style::Plain,
            tag: None,
        }
        .resolve()
    }

    #[test]
    fn core_schema_as_serde_yaml_read_it() {
        for (t, v) in [
            ("", json!(null)),
            ("~", json!(null)),
            ("NULL", json!(null)),
            ("True", json!(true)),
            ("FALSE", json!(false)),
            ("yes", json!("yes")),
            ("on", json!("on")),
            ("5", json!(5)),
            ("-5", json!(-5)),
            ("+5", json!(5)),
            ("0", json!(0)),
            ("0x1F", json!(31)),
            ("0o17", json!(15)),
            ("0b101", json!(5)),
            ("-0x10", json!(-16)),
            ("0755", json!("0755")),
            ("-007", json!("-007")),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            (".inf", json!(null)),
            ("-.inf", json!(null)),
            (".nan", json!(null)),
            ("inf", json!("inf")),
            ("NaN", json!("NaN")),
            ("++5", json!("++5")),
            ("0x", json!("0x")),
            ("1_000", json!("1_000")),
            ("18446744073709551615", json!(18446744073709551615u64)),
            ("18446744073709551616", json!(18446744073709551616.0)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("hello", json!("hello")),
        ] {
            assert_eq!(plain(t), v, "{t:?}");
        }
    }

    #[test]
    fn quoted_block_and_str_tagged_scalars_stay_strings() {
        for style in [Style::SingleQuoted, Style::DoubleQuoted, Style::Block] {
            let s = Scalar {
                text: "5".into(),
                style,
                tag: None,
            };
            assert_eq!(s.resolve(), json!("5"));
        }
        let tagged = Scalar {
            text: "true".into(),
            style: Style::Plain,
            tag: Some(STR_TAG.into()),
        };
        assert_eq!(tagged.resolve(), json!("true"));
    }

    #[test]
    fn non_finite_floats_are_told_apart() {
        let s = |t: &str| Scalar {
            text: t.into(),
            style: Style::Plain,
            tag: None,
        };
        for t in [".inf", "-.Inf", "+.INF", ".nan"] {
            assert!(s(t).is_non_finite(), "{t}");
        }
        for t in ["1.5", "null", "inf", "x"] {
            assert!(!s(t).is_non_finite(), "{t}");
        }
    }
}
