//! Hiera data typed as Puppet types it. Puppet reads YAML with Ruby's
//! Psych, which follows YAML 1.1 for plain scalars: `yes`/`on`/`off`/`no`
//! (any case) are booleans, `0755` is the octal integer 493, `0x1F` and
//! `0b101` are integers, `1_000` and even `1,000` are 1000, `22:30` is a
//! base-60 number, while `1e3` (no dot) stays a string. Only plain scalars
//! are typed: a quoted `'yes'` or `"0755"` is a string, as in Puppet.
//!
//! Where Psych and the YAML 1.1 type list differ, this follows Psych (what
//! `puppet lookup` answers): `y`, `Y`, `n` and `N` stay strings, and a
//! base-60 `1:30` is Psych's 5400 (it weighs the parts from hours), not
//! the spec's 90. Timestamps and dates stay strings: Puppet's safe YAML
//! loader refuses them in data anyway. Non-finite floats (`.inf`, `.nan`)
//! become null, having no JSON form, as under the core schema.

use serde_json::{Number, Value};

use super::node::Scalar;

/// The value of `s` as Psych would type it.
pub fn resolve(s: &Scalar) -> Value {
    if !s.is_plain() {
        return Value::String(s.text.clone());
    }
    let t = s.text.as_str();
    if t.is_empty() {
        return Value::Null;
    }
    if looks_like_words(t) {
        return words(t);
    }
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | "-.inf" | ".nan") || t.starts_with(':') {
        // Infinity and NaN have no JSON form; a `:symbol` is text to us.
        return if t.starts_with(':') {
            Value::String(t.to_string())
        } else {
            Value::Null
        };
    }
    if let Some(v) = sexagesimal(t) {
        return v;
    }
    if is_float(t) {
        let digits: String = t.chars().filter(|c| !matches!(c, ',' | '_')).collect();
        let digits = digits.strip_suffix('.').unwrap_or(&digits);
        return match digits.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => Value::String(t.to_string()),
        };
    }
    let digits: String = t.chars().filter(|c| !matches!(c, ',' | '_')).collect();
    match integer(&digits) {
        Some(n) => Value::Number(n),
        None => Value::String(t.to_string()),
    }
}

/// Psych's first test: text that starts like a word (a letter, or one
/// character that is no digit, dot, colon or minus, then a letter), or
/// spans lines. Only null and the boolean words are typed among these.
fn looks_like_words(t: &str) -> bool {
    let word = |c: char| {
        c.is_ascii_alphabetic() || c.is_whitespace() || "_!@#$%^&*(){}<>|/\\~;=".contains(c)
    };
    let mut chars = t.chars();
    let first = chars.next();
    let second = chars.next();
    t.contains('\n')
        || first.is_some_and(word)
        || (first.is_some_and(|c| !c.is_ascii_digit() && !matches!(c, '.' | ':' | '-'))
            && second.is_some_and(word))
}

fn words(t: &str) -> Value {
    if t.chars().count() > 5 {
        return Value::String(t.to_string());
    }
    match t.to_ascii_lowercase().as_str() {
        "~" | "null" => Value::Null,
        "yes" | "true" | "on" => Value::Bool(true),
        "no" | "false" | "off" => Value::Bool(false),
        _ => Value::String(t.to_string()),
    }
}

/// `[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+` (an integer) or the same followed by
/// `.[0-9_]*` (a float), weighed as Psych does: part `e` of the list by
/// 60^|e-2|.
fn sexagesimal(t: &str) -> Option<Value> {
    let (body, fraction) = match t.split_once('.') {
        Some((b, f)) if f.chars().all(|c| c.is_ascii_digit() || c == '_') => (b, Some(f)),
        Some(_) => return None,
        None => (t, None),
    };
    let mut parts = body.split(':');
    let head = parts.next()?;
    let unsigned = head.strip_prefix(['-', '+']).unwrap_or(head);
    if !unsigned.starts_with(|c: char| c.is_ascii_digit())
        || !unsigned.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let rest: Vec<&str> = parts.collect();
    let base60 = |p: &&str| {
        let b = p.as_bytes();
        match b.len() {
            1 => b[0].is_ascii_digit(),
            2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
            _ => false,
        }
    };
    if rest.is_empty() || !rest.iter().all(base60) {
        return None;
    }
    let parts: Vec<&str> = std::iter::once(head).chain(rest).collect();
    let weight = |e: usize| 60f64.powi(e.abs_diff(2) as i32);
    match fraction {
        None => {
            let mut sum: i128 = 0;
            for (e, p) in parts.iter().enumerate() {
                let n: i128 = p.replace('_', "").parse().ok()?;
                sum = sum.checked_add(n.checked_mul(60i128.checked_pow(e.abs_diff(2) as u32)?)?)?;
            }
            Some(int_value(sum))
        }
        Some(frac) => {
            let last = parts.len() - 1;
            let mut sum = 0f64;
            for (e, p) in parts.iter().enumerate() {
                let text = if e == last {
                    format!("{p}.{frac}").replace('_', "")
                } else {
                    p.replace('_', "")
                };
                sum += text.parse::<f64>().ok()? * weight(e);
            }
            Number::from_f64(sum).map(Value::Number)
        }
    }
}

/// Psych's FLOAT (base 10): `[-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?`,
/// but not a lone dot.
fn is_float(t: &str) -> bool {
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let Some((int, rest)) = unsigned.split_once('.') else {
        return false;
    };
    let int_ok = int.is_empty()
        || (int.starts_with(|c: char| c.is_ascii_digit())
            && int
                .chars()
                .all(|c| c.is_ascii_digit() || c == '_' || c == ','));
    let (frac, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let exp_ok = exp.is_none_or(|e| {
        e.strip_prefix(['-', '+'])
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
    });
    int_ok && frac.chars().all(|c| c.is_ascii_digit()) && exp_ok && unsigned != "."
}

/// Psych's INTEGER on text with `_` and `,` removed: `0b` binary, a
/// leading `0` octal, `0x` hex, else decimal without a leading zero.
fn integer(t: &str) -> Option<Number> {
    let (negative, unsigned) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(d) = unsigned.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = unsigned.strip_prefix("0x") {
        (16, d)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (8, &unsigned[1..])
    } else {
        (10, unsigned)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    Some(int_number(if negative { -magnitude } else { magnitude }))
}

fn int_value(v: i128) -> Value {
    Value::Number(int_number(v))
}

/// An integer as JSON holds it: 64 bits, or a float beyond.
fn int_number(v: i128) -> Number {
    if let Ok(i) = i64::try_from(v) {
        Number::from(i)
    } else if let Ok(u) = u64::try_from(v) {
        Number::from(u)
    } else {
        Number::from_f64(v as f64).unwrap_or_else(|| Number::from(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Style;
    use serde_json::json;

    fn plain(t: &str) -> Value {
        resolve(&Scalar {
            text: t.into(),
            style: Style::Plain,
            tag: None,
        })
    }

    #[test]
    fn booleans_and_null_as_psych_reads_them() {
        for t in [
            "yes", "Yes", "YES", "yEs", "on", "On", "ON", "true", "True", "TRUE",
        ] {
            assert_eq!(plain(t), json!(true), "{t}");
        }
        for t in ["no", "No", "NO", "off", "Off", "OFF", "false", "FALSE"] {
            assert_eq!(plain(t), json!(false), "{t}");
        }
        for t in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(plain(t), json!(null), "{t}");
        }
        // Psych keeps the one-letter YAML 1.1 booleans as text.
        for t in ["y", "Y", "n", "N", "yess", "onoff", "nil", "falsey"] {
            assert_eq!(plain(t), json!(t), "{t}");
        }
    }

    #[test]
    fn numbers_as_psych_reads_them() {
        for (t, v) in [
            ("0755", json!(493)),
            ("-0755", json!(-493)),
            ("00", json!(0)),
            ("0", json!(0)),
            ("42", json!(42)),
            ("+42", json!(42)),
            ("-17", json!(-17)),
            ("0x1F", json!(31)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("1,000", json!(1000)),
            ("1.5", json!(1.5)),
            ("1.", json!(1.0)),
            (".5", json!(0.5)),
            ("-1.5e+3", json!(-1500.0)),
            ("1_000.25", json!(1000.25)),
            ("1:30", json!(5400)),
            ("1:30:15", json!(5415)),
            ("1:30.5", json!(5430.0)),
            (".inf", json!(null)),
            ("-.Inf", json!(null)),
            (".NaN", json!(null)),
            ("9223372036854775807", json!(i64::MAX)),
            ("18446744073709551615", json!(u64::MAX)),
        ] {
            assert_eq!(plain(t), v, "{t}");
        }
    }

    #[test]
    fn what_psych_leaves_as_text() {
        for t in [
            "1e3",
            "1.5e3",
            "08",
            "0o17",
            "0x",
            "0b",
            ".",
            "-.",
            "1.2.3",
            "22:61",
            "10.0.0.1",
            "2024-01-15",
            ":sym",
            "8080:80",
            "v1.0",
            "1.0-rc1",
            "hello",
            "a b",
        ] {
            assert_eq!(plain(t), json!(t), "{t}");
        }
    }

    #[test]
    fn quoted_and_block_scalars_stay_strings() {
        for style in [Style::SingleQuoted, Style::DoubleQuoted, Style::Block] {
            for t in ["yes", "0755", "1.5", "~"] {
                let s = Scalar {
                    text: t.into(),
                    style,
                    tag: None,
                };
                assert_eq!(resolve(&s), json!(t), "{t} {style:?}");
            }
        }
    }
}
