//! Puppet's data types for the values Hiera returns (`agent lookup --type`,
//! as `puppet lookup --type`): the common cases, parsed from Puppet's own
//! spelling (`Optional[Array[String]]`, `Integer[0, 65535]`,
//! `Enum[primary, standby]`) and matched against a JSON value. A value of
//! the wrong type is an error worded as Puppet words it ("expects a String
//! value, got Integer").
//!
//! Supported: `Any`, `Data`, `Scalar`, `String[min, max]`,
//! `Integer[min, max]`, `Float[min, max]`, `Numeric`, `Boolean`, `Undef`,
//! `NotUndef[T]`, `Optional[T]`, `Variant[T, …]`, `Enum[s, …]`,
//! `Array[T, min, max]`, `Hash[K, V, min, max]`. Anything else is refused
//! by name rather than accepted and ignored.

use serde_json::Value;

/// A parsed Puppet data type.
#[derive(Debug, Clone, PartialEq)]
pub enum DataType {
    Any,
    Data,
    Scalar,
    /// Length bounds, inclusive.
    String(Bounds),
    Integer(Range),
    Float(Range),
    Numeric,
    Boolean,
    Undef,
    NotUndef(Box<DataType>),
    Optional(Box<DataType>),
    Variant(Vec<DataType>),
    Enum(Vec<String>),
    /// Element type and size bounds.
    Array(Box<DataType>, Bounds),
    /// Key type, value type and size bounds.
    Hash(Box<DataType>, Box<DataType>, Bounds),
}

/// Inclusive size bounds (`String[1, 10]`, `Array[T, 1]`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds {
    pub min: u64,
    pub max: Option<u64>,
}

/// Inclusive numeric bounds (`Integer[0, 65535]`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Bounds {
    fn holds(self, n: usize) -> bool {
        let n = n as u64;
        n >= self.min && self.max.is_none_or(|m| n <= m)
    }
}

impl Range {
    fn holds(self, x: f64) -> bool {
        self.min.is_none_or(|m| x >= m) && self.max.is_none_or(|m| x <= m)
    }
}

/// Why a type expression did not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad data type {text:?}: {msg}")]
pub struct TypeError {
    pub text: String,
    pub msg: String,
}

impl std::str::FromStr for DataType {
    type Err = TypeError;

    fn from_str(text: &str) -> Result<DataType, TypeError> {
        let err = |msg: String| TypeError {
            text: text.to_string(),
            msg,
        };
        let mut p = Parser {
            tokens: tokenize(text).map_err(err)?,
            at: 0,
        };
        let t = p.data_type().map_err(err)?;
        match p.tokens.get(p.at) {
            None => Ok(t),
            Some(tok) => Err(err(format!("unexpected {tok:?} after the type"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Number(f64),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '[' | ']' | ',' => {
                chars.next();
                out.push(match c {
                    '[' => Token::Open,
                    ']' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' | '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(ch) => s.push(ch),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
                out.push(Token::Quoted(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut s = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '.' || d == '-' || d == '+' {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let n = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
                out.push(Token::Number(n));
            }
            c if c.is_alphanumeric() || c == '_' || c == ':' => {
                let mut s = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' || d == ':' {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(s));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

/// A parameter of a parameterised type.
enum Param {
    Type(DataType),
    Number(f64),
    /// `default` (an open bound) or a bare word / quoted string (`Enum`).
    Default,
    Text(String),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

const SUPPORTED: &str = "Any, Data, Scalar, String, Integer, Float, Numeric, Boolean, Undef, \
                         NotUndef, Optional, Variant, Enum, Array, Hash";

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn data_type(&mut self) -> Result<DataType, String> {
        match self.next() {
            Some(Token::Word(w)) => {
                let params = if self.tokens.get(self.at) == Some(&Token::Open) {
                    self.at += 1;
                    self.params()?
                } else {
                    Vec::new()
                };
                build(&w, params)
            }
            Some(t) => Err(format!("expected a type name, found {t:?}")),
            None => Err("expected a type name".into()),
        }
    }

    /// The parameters after `[`, through the closing `]`.
    fn params(&mut self) -> Result<Vec<Param>, String> {
        let mut out = Vec::new();
        loop {
            let p = match self.tokens.get(self.at).cloned() {
                Some(Token::Number(n)) => {
                    self.at += 1;
                    Param::Number(n)
                }
                Some(Token::Quoted(s)) => {
                    self.at += 1;
                    Param::Text(s)
                }
                Some(Token::Word(w)) if w == "default" => {
                    self.at += 1;
                    Param::Default
                }
                // A lower-case word is an Enum member, a capitalised one a type.
                Some(Token::Word(w)) if w.starts_with(|c: char| c.is_lowercase()) => {
                    self.at += 1;
                    Param::Text(w)
                }
                Some(Token::Word(_)) => Param::Type(self.data_type()?),
                Some(t) => return Err(format!("unexpected {t:?} in parameters")),
                None => return Err("missing ]".into()),
            };
            out.push(p);
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => return Ok(out),
                Some(t) => return Err(format!("expected , or ] but found {t:?}")),
                None => return Err("missing ]".into()),
            }
        }
    }
}

fn build(name: &str, params: Vec<Param>) -> Result<DataType, String> {
    let n = params.len();
    let arity = |max: usize| -> Result<(), String> {
        if n > max {
            Err(format!("{name} takes at most {max} parameters, got {n}"))
        } else {
            Ok(())
        }
    };
    let mut params = params.into_iter();
    let t = match name {
        "Any" | "Data" | "Scalar" | "Numeric" | "Boolean" | "Undef" => {
            arity(0)?;
            match name {
                "Any" => DataType::Any,
                "Data" => DataType::Data,
                "Scalar" => DataType::Scalar,
                "Numeric" => DataType::Numeric,
                "Boolean" => DataType::Boolean,
                _ => DataType::Undef,
            }
        }
        "String" => {
            arity(2)?;
            DataType::String(bounds(&mut params)?)
        }
        "Integer" | "Float" => {
            arity(2)?;
            let min = number(params.next())?;
            let max = number(params.next())?;
            let r = Range { min, max };
            if name == "Integer" {
                DataType::Integer(r)
            } else {
                DataType::Float(r)
            }
        }
        "Optional" | "NotUndef" => {
            arity(1)?;
            let inner = match params.next() {
                Some(p) => one_type(p)?,
                None => DataType::Any,
            };
            if name == "Optional" {
                DataType::Optional(Box::new(inner))
            } else {
                DataType::NotUndef(Box::new(inner))
            }
        }
        "Variant" => DataType::Variant(params.map(one_type).collect::<Result<_, _>>()?),
        "Enum" => DataType::Enum(
            params
                .map(|p| match p {
                    Param::Text(s) => Ok(s),
                    _ => Err("Enum takes strings".to_string()),
                })
                .collect::<Result<_, _>>()?,
        ),
        "Array" => {
            arity(3)?;
            let mut rest: Vec<Param> = params.collect();
            let elem = if matches!(rest.first(), Some(Param::Type(_))) {
                one_type(rest.remove(0))?
            } else {
                DataType::Any
            };
            DataType::Array(Box::new(elem), bounds(&mut rest.into_iter())?)
        }
        "Hash" => {
            arity(4)?;
            let mut rest: Vec<Param> = params.collect();
            let (k, v) = if matches!(rest.first(), Some(Param::Type(_))) {
                if rest.len() < 2 {
                    return Err("Hash takes a key type and a value type".into());
                }
                let k = one_type(rest.remove(0))?;
                (k, one_type(rest.remove(0))?)
            } else {
                (DataType::Any, DataType::Any)
            };
            DataType::Hash(Box::new(k), Box::new(v), bounds(&mut rest.into_iter())?)
        }
        other => return Err(format!("unsupported type {other} (supported: {SUPPORTED})")),
    };
    Ok(t)
}

fn one_type(p: Param) -> Result<DataType, String> {
    match p {
        Param::Type(t) => Ok(t),
        _ => Err("expected a type parameter".into()),
    }
}

fn number(p: Option<Param>) -> Result<Option<f64>, String> {
    match p {
        None | Some(Param::Default) => Ok(None),
        Some(Param::Number(n)) => Ok(Some(n)),
        Some(_) => Err("expected a number or default".into()),
    }
}

fn bounds(params: &mut impl Iterator<Item = Param>) -> Result<Bounds, String> {
    let size = |n: Option<f64>| -> Result<Option<u64>, String> {
        match n {
            Some(x) if x < 0.0 || x.fract() != 0.0 => Err(format!("{x} is not a size")),
            Some(x) => Ok(Some(x as u64)),
            None => Ok(None),
        }
    };
    let min = size(number(params.next())?)?.unwrap_or(0);
    let max = size(number(params.next())?)?;
    if params.next().is_some() {
        return Err("too many parameters".into());
    }
    Ok(Bounds { min, max })
}

/// Puppet's name for the type of a value, as its messages say "got …".
pub fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "Undef",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        // A literal's type, as Puppet infers it.
        Value::Array(_) => "Tuple",
        Value::Object(_) => "Struct",
    }
}

impl DataType {
    /// Whether `v` is an instance of this type.
    pub fn matches(&self, v: &Value) -> bool {
        match self {
            DataType::Any => true,
            DataType::Data => match v {
                Value::Array(a) => a.iter().all(|x| DataType::Data.matches(x)),
                Value::Object(m) => m.values().all(|x| DataType::Data.matches(x)),
                _ => true,
            },
            DataType::Scalar => matches!(v, Value::Bool(_) | Value::Number(_) | Value::String(_)),
            DataType::String(b) => v.as_str().is_some_and(|s| b.holds(s.chars().count())),
            DataType::Integer(r) => match v {
                Value::Number(n) if !n.is_f64() => n.as_f64().is_some_and(|x| r.holds(x)),
                _ => false,
            },
            DataType::Float(r) => match v {
                Value::Number(n) if n.is_f64() => n.as_f64().is_some_and(|x| r.holds(x)),
                _ => false,
            },
            DataType::Numeric => v.is_number(),
            DataType::Boolean => v.is_boolean(),
            DataType::Undef => v.is_null(),
            DataType::NotUndef(t) => !v.is_null() && t.matches(v),
            DataType::Optional(t) => v.is_null() || t.matches(v),
            DataType::Variant(ts) => ts.iter().any(|t| t.matches(v)),
            DataType::Enum(words) => v.as_str().is_some_and(|s| words.iter().any(|w| w == s)),
            DataType::Array(t, b) => v
                .as_array()
                .is_some_and(|a| b.holds(a.len()) && a.iter().all(|x| t.matches(x))),
            DataType::Hash(k, t, b) => v.as_object().is_some_and(|m| {
                b.holds(m.len())
                    && m.iter()
                        .all(|(key, x)| k.matches(&Value::String(key.clone())) && t.matches(x))
            }),
        }
    }

    /// Puppet's wording of what is expected: "a String value", "an Integer
    /// value", "a value of type Undef or String".
    pub fn expects(&self) -> String {
        match self {
            DataType::Optional(t) => format!("a value of type Undef or {}", t.name()),
            DataType::Variant(ts) => {
                let names: Vec<String> = ts.iter().map(DataType::name).collect();
                match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("a value of type {} or {last}", rest.join(", "))
                    }
                    _ => format!("a value of type {}", names.join("")),
                }
            }
            t => {
                let name = t.name();
                let article = if name.starts_with(['A', 'E', 'I', 'O', 'U']) {
                    "an"
                } else {
                    "a"
                };
                format!("{article} {name} value")
            }
        }
    }

    /// The type as Puppet prints it.
    pub fn name(&self) -> String {
        let range = |n: &str, r: &Range| match (r.min, r.max) {
            (None, None) => n.to_string(),
            (min, max) => format!("{n}[{}, {}]", num(min), num(max)),
        };
        let bounds = |b: &Bounds| match (b.min, b.max) {
            (0, None) => String::new(),
            (min, None) => format!("{min}"),
            (min, Some(max)) => format!("{min}, {max}"),
        };
        match self {
            DataType::Any => "Any".into(),
            DataType::Data => "Data".into(),
            DataType::Scalar => "Scalar".into(),
            DataType::String(b) if bounds(b).is_empty() => "String".into(),
            DataType::String(b) => format!("String[{}]", bounds(b)),
            DataType::Integer(r) => range("Integer", r),
            DataType::Float(r) => range("Float", r),
            DataType::Numeric => "Numeric".into(),
            DataType::Boolean => "Boolean".into(),
            DataType::Undef => "Undef".into(),
            DataType::NotUndef(t) => format!("NotUndef[{}]", t.name()),
            DataType::Optional(t) => format!("Optional[{}]", t.name()),
            DataType::Variant(ts) => {
                let names: Vec<String> = ts.iter().map(DataType::name).collect();
                format!("Variant[{}]", names.join(", "))
            }
            DataType::Enum(ws) => {
                let ws: Vec<String> = ws.iter().map(|w| format!("'{w}'")).collect();
                format!("Enum[{}]", ws.join(", "))
            }
            DataType::Array(t, b) => match (**t == DataType::Any, bounds(b)) {
                (true, s) if s.is_empty() => "Array".into(),
                (_, s) if s.is_empty() => format!("Array[{}]", t.name()),
                (_, s) => format!("Array[{}, {s}]", t.name()),
            },
            DataType::Hash(k, v, b) => {
                match (**k == DataType::Any && **v == DataType::Any, bounds(b)) {
                    (true, s) if s.is_empty() => "Hash".into(),
                    (_, s) if s.is_empty() => format!("Hash[{}, {}]", k.name(), v.name()),
                    (_, s) => format!("Hash[{}, {}, {s}]", k.name(), v.name()),
                }
            }
        }
    }

    /// `Ok` when `v` matches; else Puppet's message, `what` saying which
    /// value ("Found value", "Default value"): one line per mismatch,
    /// naming the index or entry inside an array or hash as Puppet does.
    pub fn check(&self, what: &str, v: &Value) -> Result<(), String> {
        if self.matches(v) {
            return Ok(());
        }
        let mut lines = Vec::new();
        self.mismatches(v, "", &mut lines);
        let lines: Vec<String> = lines
            .into_iter()
            .map(|l| format!("{what} has wrong type, {l}"))
            .collect();
        Err(lines.join("\n"))
    }

    /// What is wrong with `v` (which does not match), inside `at`.
    fn mismatches(&self, v: &Value, at: &str, out: &mut Vec<String>) {
        match (self, v) {
            (DataType::Array(t, b), Value::Array(a)) if b.holds(a.len()) => {
                for (i, x) in a.iter().enumerate().filter(|(_, x)| !t.matches(x)) {
                    t.mismatches(x, &format!("{at}index {i} "), out);
                }
            }
            (DataType::Hash(k, t, b), Value::Object(m))
                if b.holds(m.len())
                    && m.keys().all(|key| k.matches(&Value::String(key.clone()))) =>
            {
                for (key, x) in m.iter().filter(|(_, x)| !t.matches(x)) {
                    t.mismatches(x, &format!("{at}entry '{key}' "), out);
                }
            }
            (DataType::Enum(_), _) => out.push(format!(
                "{at}expects a match for {}, got {}",
                self.name(),
                match v {
                    Value::String(s) => format!("'{s}'"),
                    other => type_of(other).to_string(),
                }
            )),
            _ => out.push(format!(
                "{at}expects {}, got {}",
                self.expects(),
                got(self, v)
            )),
        }
    }
}

/// Puppet's name for the type of `v` in a message about `expected`: a
/// number outside a range shows as its own range (`Integer[493, 493]`).
fn got(expected: &DataType, v: &Value) -> String {
    match (expected, v) {
        (DataType::Integer(_), Value::Number(n)) | (DataType::Float(_), Value::Number(n))
            if type_of(v) == expected.name().split('[').next().unwrap_or("") =>
        {
            format!("{}[{n}, {n}]", type_of(v))
        }
        _ => type_of(v).to_string(),
    }
}

fn num(x: Option<f64>) -> String {
    match x {
        None => "default".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        Some(x) => x.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DataType {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn scalars() {
        assert!(t("String").matches(&json!("x")));
        assert!(!t("String").matches(&json!(5)));
        assert!(t("Integer").matches(&json!(493)));
        assert!(!t("Integer").matches(&json!(1.5)));
        assert!(t("Float").matches(&json!(1.5)));
        assert!(t("Numeric").matches(&json!(1.5)) && t("Numeric").matches(&json!(1)));
        assert!(t("Boolean").matches(&json!(false)));
        assert!(!t("Boolean").matches(&json!("false")));
        assert!(t("Undef").matches(&json!(null)));
        assert!(t("Scalar").matches(&json!("x")) && !t("Scalar").matches(&json!([])));
        assert!(!t("Scalar").matches(&json!(null)));
        assert!(t("Any").matches(&json!(null)));
    }

    #[test]
    fn bounds_and_parameters() {
        assert!(t("Integer[0, 100]").matches(&json!(100)));
        assert!(!t("Integer[0,100]").matches(&json!(493)));
        assert!(t("Integer[default, 5]").matches(&json!(-7)));
        assert!(t("Integer[-5]").matches(&json!(-5)) && !t("Integer[-5]").matches(&json!(-6)));
        assert!(t("String[1,3]").matches(&json!("abc")));
        assert!(!t("String[1,3]").matches(&json!("")));
        assert!(t("Enum[a, 'b c']").matches(&json!("b c")));
        assert!(!t("Enum[a,b]").matches(&json!("os-file")));
        assert!(t("Array[String]").matches(&json!(["a", "b"])));
        assert!(!t("Array[String]").matches(&json!([1, "two"])));
        assert!(t("Array[Any, 2]").matches(&json!([1, 2])));
        assert!(!t("Array[Any, 3]").matches(&json!([1, 2])));
        assert!(t("Hash[String, Integer]").matches(&json!({"a": 1})));
        assert!(!t("Hash[String, Integer]").matches(&json!({"a": {"c": false}})));
        assert!(t("Optional[String]").matches(&json!(null)));
        assert!(!t("NotUndef").matches(&json!(null)));
        assert!(t("Variant[Integer, Boolean]").matches(&json!(true)));
        assert!(t("Data").matches(&json!({"a": [1, null]})));
    }

    #[test]
    fn messages_are_puppets() {
        assert_eq!(
            t("String").check("Found value", &json!(493)).unwrap_err(),
            "Found value has wrong type, expects a String value, got Integer"
        );
        assert_eq!(
            t("Integer")
                .check("Default value", &json!("5"))
                .unwrap_err(),
            "Default value has wrong type, expects an Integer value, got String"
        );
        assert_eq!(
            t("Optional[String]").expects(),
            "a value of type Undef or String"
        );
        assert_eq!(
            t("Variant[Integer, Boolean]").expects(),
            "a value of type Integer or Boolean"
        );
        assert_eq!(t("Integer[0,100]").name(), "Integer[0, 100]");
        assert_eq!(t("Array[String]").name(), "Array[String]");
    }

    #[test]
    fn nested_mismatches_name_where() {
        assert_eq!(
            t("Array[String]")
                .check("Found value", &json!([1, "two", true]))
                .unwrap_err(),
            "Found value has wrong type, index 0 expects a String value, got Integer\n\
             Found value has wrong type, index 2 expects a String value, got Boolean"
        );
        assert_eq!(
            t("Hash[String, Integer]")
                .check("Found value", &json!({"a": 1, "b": {"c": false}}))
                .unwrap_err(),
            "Found value has wrong type, entry 'b' expects an Integer value, got Struct"
        );
        assert_eq!(
            t("Integer[0,100]")
                .check("Found value", &json!(493))
                .unwrap_err(),
            "Found value has wrong type, expects an Integer[0, 100] value, got Integer[493, 493]"
        );
        assert_eq!(
            t("Enum[a,b]")
                .check("Found value", &json!("os-file"))
                .unwrap_err(),
            "Found value has wrong type, expects a match for Enum['a', 'b'], got 'os-file'"
        );
        assert_eq!(
            t("String").check("Found value", &json!([1])).unwrap_err(),
            "Found value has wrong type, expects a String value, got Tuple"
        );
    }

    #[test]
    fn bad_types_are_refused_by_name() {
        for bad in [
            "Foo",
            "Array[",
            "String[a]",
            "Integer[1,2,3]",
            "",
            "Hash[String]",
        ] {
            assert!(bad.parse::<DataType>().is_err(), "{bad}");
        }
        let e = "Pattern[/x/]".parse::<DataType>().unwrap_err();
        assert!(e.to_string().contains("unexpected"), "{e}");
        let e = "Foo".parse::<DataType>().unwrap_err();
        assert!(e.msg.contains("unsupported type Foo"), "{e}");
    }
}
