//! Attribute value shapes that several resource types declare the same way,
//! so a manifest spells them alike for every type and each type's `Params`
//! shares one serde definition instead of repeating it.

use serde::Deserialize;

/// `ensure` for types whose only states are there or not there (`cron`,
/// `host`, `pg_database`, `pg_role`). Types with more states (`file`,
/// `package`, `service`) keep their own, richer enum.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    /// The thing is made to exist (the default: declaring a resource means
    /// wanting it).
    #[default]
    Present,
    /// The thing is removed if it exists.
    Absent,
}

/// An attribute that takes one string or a list of them, as Puppet's array
/// attributes do (`environment: FOO=1` or `environment: [FOO=1, BAR=2]`).
/// What one string means (one item, or items split on whitespace or `:`) is
/// the type's own decision, so this only carries what was written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string, as written.
    One(String),
    /// A YAML list of strings.
    Many(Vec<String>),
}

/// A boolean attribute that a manifest may also compute: `true`/`false`, or
/// a string a template rendered to `"true"`/`"false"` (as the `noop`
/// metaparameter takes it: `"{{#if (lookup 'x')}}true{{else}}false{{/if}}"`).
/// `#[serde(default, deserialize_with = "attr::rendered_bool")]`.
pub fn rendered_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(None),
        Some(B::Bool(b)) => Ok(Some(b)),
        Some(B::Text(t)) => match t.trim() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected a boolean (true or false), got {other:?}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_bool_takes_booleans_and_rendered_strings_only() {
        #[derive(Deserialize)]
        struct P {
            #[serde(default, deserialize_with = "rendered_bool")]
            enable: Option<bool>,
        }
        let p = |v: serde_json::Value| serde_json::from_value::<P>(v).map(|p| p.enable);
        assert_eq!(p(serde_json::json!({"enable": true})).unwrap(), Some(true));
        assert_eq!(
            p(serde_json::json!({"enable": "false"})).unwrap(),
            Some(false)
        );
        assert_eq!(p(serde_json::json!({})).unwrap(), None);
        let e = p(serde_json::json!({"enable": "yes"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a boolean"), "{e}");
    }

    #[test]
    fn ensure_defaults_to_present_and_reads_lowercase() {
        assert_eq!(Ensure::default(), Ensure::Present);
        let e = |v: serde_json::Value| serde_json::from_value::<Ensure>(v).ok();
        assert_eq!(e(serde_json::json!("absent")), Some(Ensure::Absent));
        assert_eq!(e(serde_json::json!("present")), Some(Ensure::Present));
        assert_eq!(e(serde_json::json!("latest")), None);
    }

    #[test]
    fn one_or_many_keeps_what_was_written() {
        let o = |v: serde_json::Value| serde_json::from_value::<OneOrMany>(v).ok();
        assert!(matches!(o(serde_json::json!("a b")), Some(OneOrMany::One(s)) if s == "a b"));
        assert!(
            matches!(o(serde_json::json!(["a", "b"])), Some(OneOrMany::Many(v)) if v == ["a", "b"])
        );
        assert!(o(serde_json::json!(3)).is_none());
    }
}
