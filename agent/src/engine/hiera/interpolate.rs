//! `%{...}` interpolation in hierarchy paths and data values.
//!
//! This file owns the syntax (Puppet's: `%{var}`, `%{::var}`,
//! `%{facts.a.b}`, `%{lookup('k')}`, `%{hiera('k')}`, `%{alias('k')}`,
//! `%{literal('%')}`, `%{scope('x')}`), the dotted-key splitting and digging
//! shared with lookups, and how a non-string value reads inside a string. What
//! a variable or a key resolves to is asked of a [`Resolver`], so the rules
//! here are testable without a hierarchy.

use serde_json::{Map, Value};

use super::HieraError;

/// What a `Sensitive` value reads as inside a string (Puppet's text).
pub(crate) const SENSITIVE_TEXT: &str = "Sensitive [value redacted]";

/// The interpolation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Lookup,
    Hiera,
    Alias,
    Literal,
    Scope,
}

/// One `%{...}` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `%{}`, `%{::}`, `%{''}`...: the empty string.
    Empty,
    /// A scope variable, possibly dotted: `facts.os.family`, `::role`.
    Var(String),
    Call(Method, String),
}

/// The answers interpolation needs from the lookup engine.
pub(crate) trait Resolver {
    /// The value of a scope variable (dotted path allowed); `None` when undefined.
    fn var(&mut self, path: &str) -> Result<Option<Value>, HieraError>;
    /// A nested lookup: `None` when the key is not found; `Some((v, true))`
    /// when the value is Sensitive. `alias` marks an `alias()` call.
    fn lookup(&mut self, key: &str, alias: bool) -> Result<Option<(Value, bool)>, HieraError>;
    /// An error about the string being interpolated.
    fn error(&self, msg: String) -> HieraError;
    /// Called around each expression, for `--explain`.
    fn enter(&mut self, _raw: &str) {}
    fn leave(&mut self) {}
}

/// The `%{...}` expressions of `s`: (byte range of the whole expression,
/// its inside). An unclosed `%{` ends the scan.
fn exprs(s: &str) -> impl Iterator<Item = (std::ops::Range<usize>, &str)> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let start = pos + s[pos..].find("%{")?;
        let close = start + 2 + s[start + 2..].find('}')?;
        pos = close + 1;
        Some((start..close + 1, &s[start + 2..close]))
    })
}

/// `name("arg")` or `name('arg')` (arg non-empty, without its quote):
/// the function-call form of an interpolation.
fn parse_call(expr: &str) -> Option<(&str, &str)> {
    let open = expr.find('(')?;
    let name = &expr[..open];
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let args = expr[open + 1..].strip_suffix(')')?;
    let quote = args.chars().next().filter(|q| matches!(q, '"' | '\''))?;
    let arg = args[1..].strip_suffix(quote)?;
    (!arg.is_empty() && !arg.contains(quote)).then_some((name, arg))
}

/// Parses the inside of one `%{...}` (already without `%{` and `}`).
pub(crate) fn parse_expr(inner: &str) -> Result<Expr, String> {
    let expr = inner.trim();
    if matches!(expr, "" | "::" | "\"\"" | "''" | "\"::\"" | "'::'") {
        return Ok(Expr::Empty);
    }
    let Some((name, arg)) = parse_call(expr) else {
        return Ok(Expr::Var(expr.to_string()));
    };
    let method = match name {
        "lookup" => Method::Lookup,
        "hiera" => Method::Hiera,
        "alias" => Method::Alias,
        "literal" => Method::Literal,
        "scope" => Method::Scope,
        other => return Err(format!("unknown interpolation method '{other}'")),
    };
    Ok(Expr::Call(method, arg.to_string()))
}

/// True when `s` holds any `%{...}` expression.
pub(crate) fn has_interpolation(s: &str) -> bool {
    exprs(s).next().is_some()
}

/// The first function call (`lookup(...)` etc.) in `s`, if any: those are not
/// allowed in hierarchy paths, which only read scope variables.
pub(crate) fn first_call(s: &str) -> Option<String> {
    exprs(s).find_map(|(whole, inner)| match parse_expr(inner) {
        Ok(Expr::Var(_) | Expr::Empty) => None,
        _ => Some(s[whole].to_string()),
    })
}

/// Interpolates every string in `v` (hash keys too, like Puppet).
pub(crate) fn interpolate_value(
    v: &Value,
    r: &mut dyn Resolver,
    allow_calls: bool,
) -> Result<Value, HieraError> {
    Ok(match v {
        Value::String(s) => interpolate_str(s, r, allow_calls)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| interpolate_value(i, r, allow_calls))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let k = match interpolate_str(k, r, allow_calls)? {
                    Value::String(s) => s,
                    other => to_text(&other),
                };
                out.insert(k, interpolate_value(v, r, allow_calls)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Interpolates one string. The result is a string, except for a string that
/// is exactly one `%{alias('k')}`: that yields k's value with its own type.
pub(crate) fn interpolate_str(
    s: &str,
    r: &mut dyn Resolver,
    allow_calls: bool,
) -> Result<Value, HieraError> {
    if !s.contains("%{") {
        return Ok(Value::String(s.to_string()));
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (range, inner) in exprs(s) {
        let whole = &s[range.clone()];
        out.push_str(&s[last..range.start]);
        last = range.end;
        let expr = parse_expr(inner).map_err(|m| r.error(format!("{m} in \"{s}\"")))?;
        if matches!(expr, Expr::Call(..)) && !allow_calls {
            return Err(r.error(format!(
                "interpolation using method syntax is not allowed in this context: \"{s}\""
            )));
        }
        r.enter(whole);
        let res = eval(&expr, s, whole == s, r);
        r.leave();
        match res? {
            Piece::Whole(v) => return Ok(v),
            Piece::Text(t) => out.push_str(&t),
        }
    }
    out.push_str(&s[last..]);
    Ok(Value::String(out))
}

enum Piece {
    Text(String),
    /// An alias: the whole string's value.
    Whole(Value),
}

fn alias_msg(s: &str) -> String {
    format!("'alias' interpolation is only permitted if the expression is equal to the entire string: \"{s}\"")
}

/// Evaluates one expression of `s`; `whole` when it is all of `s`.
fn eval(expr: &Expr, s: &str, whole: bool, r: &mut dyn Resolver) -> Result<Piece, HieraError> {
    let text = |found: Option<(Value, bool)>| match found {
        Some((_, true)) => SENSITIVE_TEXT.to_string(),
        Some((v, false)) => to_text(&v),
        None => String::new(),
    };
    Ok(match expr {
        Expr::Empty => Piece::Text(String::new()),
        Expr::Var(path) | Expr::Call(Method::Scope, path) => {
            Piece::Text(r.var(path)?.map(|v| to_text(&v)).unwrap_or_default())
        }
        Expr::Call(Method::Literal, lit) => Piece::Text(lit.clone()),
        Expr::Call(Method::Lookup | Method::Hiera, key) => Piece::Text(text(r.lookup(key, false)?)),
        Expr::Call(Method::Alias, key) => {
            if !whole {
                return Err(r.error(alias_msg(s)));
            }
            // A missing key aliases to "" (Puppet looks it up with default '').
            let found = r.lookup(key, true)?;
            Piece::Whole(found.map_or(Value::String(String::new()), |(v, _)| v))
        }
    })
}

/// A key segment: a hash key, or an array index (an all-digit segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(i64),
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Segment::Key(k) => f.write_str(k),
            Segment::Index(i) => write!(f, "{i}"),
        }
    }
}

/// Splits `a.b."c.d".0` into segments (Puppet's `split_key`). The first
/// segment is always a key (the root key or variable name).
pub(crate) fn split_key(key: &str) -> Result<Vec<Segment>, String> {
    let syntax = || format!("syntax error in key \"{key}\"");
    let mut segs = Vec::new();
    let mut rest = key;
    loop {
        let trimmed = rest.trim_start();
        let (seg, after) = match trimmed.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let end = trimmed[1..].find(q).ok_or_else(syntax)? + 1;
                let inner = &trimmed[1..end];
                if inner.is_empty() {
                    return Err(syntax());
                }
                (
                    Segment::Key(inner.to_string()),
                    trimmed[end + 1..].trim_start(),
                )
            }
            _ => {
                let end = rest.find(['.', '"', '\'']).unwrap_or(rest.len());
                let raw = rest[..end].trim();
                if raw.is_empty() {
                    return Err(syntax());
                }
                let seg = match raw.parse::<i64>() {
                    Ok(i) if !segs.is_empty() => Segment::Index(i),
                    _ => Segment::Key(raw.to_string()),
                };
                (seg, &rest[end..])
            }
        };
        segs.push(seg);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => return Ok(segs),
            None => return Err(syntax()),
        }
    }
}

/// Digs `segments` into `value` (Puppet's sub-lookup). `Ok(None)` when a
/// segment is missing; an error when a scalar is in the way.
pub(crate) fn dig(
    mut value: Value,
    segments: &[Segment],
    key: &str,
) -> Result<Option<Value>, String> {
    for seg in segments {
        value = match (value, seg) {
            (Value::Null, _) => return Ok(None),
            (Value::Array(mut items), Segment::Index(i)) => {
                match usize::try_from(*i).ok().filter(|i| *i < items.len()) {
                    Some(i) => items.swap_remove(i),
                    None => return Ok(None),
                }
            }
            (Value::Object(mut map), seg) => match map.remove(&seg.to_string()) {
                Some(v) => v,
                None => return Ok(None),
            },
            (other, seg) => {
                return Err(format!(
                    "type mismatch: got {} when a hash-like object was expected to access value using '{seg}' from key '{key}'",
                    super::merge::kind(&other)
                ))
            }
        };
    }
    Ok(Some(value))
}

/// How a value reads inside a string (Ruby's `to_s`, as Puppet does it):
/// undef is empty, arrays and hashes print as `["a", 1]` / `{"k"=>"v"}`.
pub(crate) fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => inspect(other),
    }
}

fn inspect(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(inspect).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}=>{}", inspect(&Value::String(k.clone())), inspect(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    /// A resolver over a flat scope and a key table, counting nothing else.
    struct Fake {
        scope: Value,
        data: HashMap<&'static str, (Value, bool)>,
    }

    impl Resolver for Fake {
        fn var(&mut self, path: &str) -> Result<Option<Value>, HieraError> {
            let segs = split_key(path).map_err(|m| self.error(m))?;
            let Segment::Key(root) = &segs[0] else {
                unreachable!()
            };
            let root = root.trim_start_matches("::");
            match self.scope.get(root) {
                None => Ok(None),
                Some(v) => dig(v.clone(), &segs[1..], path).map_err(|m| self.error(m)),
            }
        }
        fn lookup(&mut self, key: &str, _: bool) -> Result<Option<(Value, bool)>, HieraError> {
            Ok(self.data.get(key).cloned())
        }
        fn error(&self, msg: String) -> HieraError {
            HieraError::Interpolation {
                key: "test".into(),
                msg,
            }
        }
    }

    fn fake() -> Fake {
        Fake {
            scope: json!({
                "facts": {"os": {"family": "Debian"}, "ips": ["10.0.0.1", "10.0.0.2"]},
                "trusted": {"certname": "stash-server"},
                "role": "stash_server",
                "n": 5,
            }),
            data: HashMap::from([
                ("list", (json!(["a", "b"]), false)),
                ("name", (json!("stashdb"), false)),
                ("pw", (json!("hunter2"), true)),
            ]),
        }
    }

    fn interp(s: &str) -> Result<Value, HieraError> {
        interpolate_str(s, &mut fake(), true)
    }

    #[test]
    fn expressions_and_calls_are_found_like_puppet() {
        let found: Vec<&str> = exprs("a%{x}b%{ y }%{}c%{unclosed")
            .map(|(_, e)| e)
            .collect();
        assert_eq!(found, ["x", " y ", ""]);
        assert_eq!(exprs("50%{").count(), 0);
        assert_eq!(parse_call("lookup('a::b')"), Some(("lookup", "a::b")));
        assert_eq!(parse_call("alias(\"k\")"), Some(("alias", "k")));
        for not in [
            "lookup()",
            "lookup('')",
            "lookup('a\")",
            "look up('a')",
            "lookup('a'b')",
            "x",
        ] {
            assert_eq!(parse_call(not), None, "{not}");
        }
        assert_eq!(
            first_call("%{x}/%{lookup('k')}").as_deref(),
            Some("%{lookup('k')}")
        );
    }

    #[test]
    fn scope_variables_all_forms() {
        assert_eq!(
            interp("%{facts.os.family}/%{::role}").unwrap(),
            json!("Debian/stash_server")
        );
        assert_eq!(
            interp("%{ trusted.certname }.yaml").unwrap(),
            json!("stash-server.yaml")
        );
        assert_eq!(interp("%{scope('role')}").unwrap(), json!("stash_server"));
        assert_eq!(
            interp("ip=%{facts.ips.1} n=%{n}").unwrap(),
            json!("ip=10.0.0.2 n=5")
        );
        assert_eq!(
            interp("[%{nope}][%{facts.none.x}][%{}]").unwrap(),
            json!("[][][]")
        );
    }

    #[test]
    fn calls_lookup_alias_literal() {
        assert_eq!(interp("db=%{lookup('name')}").unwrap(), json!("db=stashdb"));
        assert_eq!(interp("%{hiera(\"name\")}").unwrap(), json!("stashdb"));
        assert_eq!(interp("%{alias('list')}").unwrap(), json!(["a", "b"]));
        assert_eq!(
            interp("l=%{lookup('list')}").unwrap(),
            json!("l=[\"a\", \"b\"]")
        );
        assert_eq!(interp("100%{literal('%')}").unwrap(), json!("100%"));
        assert_eq!(interp("%{lookup('missing')}x").unwrap(), json!("x"));
        assert_eq!(
            interp("pw=%{lookup('pw')}").unwrap(),
            json!(format!("pw={SENSITIVE_TEXT}"))
        );
        let e = interp("x%{alias('list')}").unwrap_err().to_string();
        assert!(e.contains("entire string"), "{e}");
        let e = interp("%{nosuch('x')}").unwrap_err().to_string();
        assert!(e.contains("unknown interpolation method 'nosuch'"), "{e}");
    }

    #[test]
    fn calls_are_refused_where_not_allowed() {
        let e = interpolate_str("%{lookup('name')}.yaml", &mut fake(), false).unwrap_err();
        assert!(e.to_string().contains("not allowed"), "{e}");
        assert_eq!(
            first_call("a/%{facts.x}/%{alias('k')}"),
            Some("%{alias('k')}".into())
        );
        assert_eq!(first_call("a/%{facts.x}"), None);
    }

    #[test]
    fn values_interpolate_recursively_including_keys() {
        let v = json!({"%{role}": ["%{facts.os.family}", 1, {"x": "%{lookup('name')}"}]});
        let got = interpolate_value(&v, &mut fake(), true).unwrap();
        assert_eq!(
            got,
            json!({"stash_server": ["Debian", 1, {"x": "stashdb"}]})
        );
    }

    #[test]
    fn split_and_dig() {
        assert_eq!(
            split_key("a.'b.c'.0").unwrap(),
            vec![
                Segment::Key("a".into()),
                Segment::Key("b.c".into()),
                Segment::Index(0)
            ]
        );
        assert_eq!(split_key("pgsql_server::db_name").unwrap().len(), 1);
        assert!(split_key("a..b").is_err());
        assert!(split_key("a.").is_err());
        let v = json!({"x": [{"y": 1}]});
        let segs = split_key("k.x.0.y").unwrap();
        assert_eq!(
            dig(v.clone(), &segs[1..], "k.x.0.y").unwrap(),
            Some(json!(1))
        );
        assert_eq!(
            dig(v.clone(), &split_key("k.x.5").unwrap()[1..], "k").unwrap(),
            None
        );
        assert!(dig(json!("s"), &split_key("k.x").unwrap()[1..], "k.x").is_err());
    }

    #[test]
    fn text_of_values_is_rubyish() {
        assert_eq!(to_text(&json!({"a": [1, null]})), "{\"a\"=>[1, nil]}");
        assert_eq!(to_text(&json!(true)), "true");
        assert_eq!(to_text(&Value::Null), "");
    }
}
