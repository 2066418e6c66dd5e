//! serde over a [`Node`]: configuration files still parse into structs with
//! `deny_unknown_fields`, and an error (an unknown field, a list where a
//! string belongs) carries the line and column of the node it is about,
//! which a serde-only YAML library can only give for syntax errors.
//!
//! A scalar asked for as a string gives its text whatever it would resolve
//! to (`name: 2024` is the string "2024"); asked for "anything" it is typed
//! by the core schema ([`super::Scalar::resolve`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::node::{Data, Mark, Node};

/// A value that does not fit the struct it is read into.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// The node the error is about, when known.
    pub mark: Option<Mark>,
    pub message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mark {
            Some(m) => write!(f, "{} at {m}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            mark: None,
            message: msg.to_string(),
        }
    }
}

/// Reads a `T` from `node`.
pub fn from_node<'de, T: serde::Deserialize<'de>>(node: &'de Node) -> Result<T, DeError> {
    T::deserialize(node)
}

/// Gives an error raised while reading `node` its position, unless a node
/// deeper down already did.
fn at(node: &Node) -> impl FnOnce(DeError) -> DeError + '_ {
    move |mut e| {
        e.mark.get_or_insert(node.mark);
        e
    }
}

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.data {
            Data::Scalar(s) => match s.resolve() {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(b),
                Value::Number(n) => {
                    if let Some(u) = n.as_u64() {
                        visitor.visit_u64(u)
                    } else if let Some(i) = n.as_i64() {
                        visitor.visit_i64(i)
                    } else {
                        visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                    }
                }
                _ => visitor.visit_str(&s.text),
            },
            Data::Seq(items) => visitor.visit_seq(Seq(items.iter())),
            Data::Map(entries) => visitor.visit_map(Entries {
                iter: entries.iter(),
                value: None,
            }),
        };
        r.map_err(at(self))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.data {
            Data::Scalar(s) if !s.resolve().is_null() => {
                visitor.visit_str(&s.text).map_err(at(self))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Unit variants only: `merge: deep`.
        match self.scalar() {
            Some(s) => visitor
                .visit_enum(s.text.as_str().into_deserializer())
                .map_err(at(self)),
            None => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes
        byte_buf unit unit_struct seq tuple tuple_struct map struct
        ignored_any
    }
}

struct Seq<'de>(std::slice::Iter<'de, Node>);

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some(n) => seed.deserialize(n).map(Some).map_err(at(n)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    iter: std::slice::Iter<'de, (Node, Node)>,
    value: Option<&'de Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k).map(Some).map_err(at(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(v).map_err(at(v)),
            None => Err(de::Error::custom("a value without a key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Level {
        name: String,
        path: Option<String>,
        paths: Option<Vec<String>>,
        #[serde(default)]
        n: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        hierarchy: Vec<Level>,
        options: Option<BTreeMap<String, serde_json::Value>>,
    }

    fn read(text: &str) -> Result<Config, DeError> {
        from_node(&parse(text).unwrap())
    }

    #[test]
    fn reads_structs_with_scalars_as_written() {
        let c = read("hierarchy:\n  - name: 2024\n    path: ~\n    paths: [a, 'b']\n    n: 3\noptions: {x: [1, true]}\n").unwrap();
        assert_eq!(
            c.hierarchy,
            [Level {
                name: "2024".into(),
                path: None,
                paths: Some(vec!["a".into(), "b".into()]),
                n: 3
            }]
        );
        assert_eq!(c.options.unwrap()["x"], serde_json::json!([1, true]));
    }

    #[test]
    fn errors_point_at_the_node_they_are_about() {
        let e = read("hierarchy:\n  - name: a\n    pth: a.yaml\n").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 3, col: 5 }));
        assert!(e.message.contains("unknown field `pth`"), "{e}");
        let e = read("hierarchy:\n  - name: a\n    paths: x\n").unwrap_err();
        assert_eq!(e.mark.map(|m| m.line), Some(3), "{e}");
        let e = read("hierarchy:\n  - name: a\n    n: many\n").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 3, col: 8 }), "{e}");
        let e = read("hierarchy:\n  - path: a\n").unwrap_err();
        assert!(e.message.contains("missing field `name`"), "{e}");
        assert_eq!(e.mark.map(|m| m.line), Some(2), "{e}");
    }
}
