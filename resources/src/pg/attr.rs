//! Attribute values the PostgreSQL types share. A port or a count may be
//! written as a YAML number (`5432`) or come out of a template as text
//! (`"{{lookup 'pgsql_server::port'}}"`); both mean the same. The types
//! that speak SQL to a running server also share how they reach it
//! ([`conn`]).

use serde::Deserialize;

use crate::core::{ResourceError, ResourceId};
use crate::pg::{conn_from_attrs, Conn};

/// A whole number, as a number or as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Num(u64),
    Text(String),
}

impl Number {
    /// The value, or why it is not a whole number.
    pub fn value(&self) -> Result<u64, String> {
        match self {
            Number::Num(n) => Ok(*n),
            Number::Text(t) => t
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("'{t}' is not a whole number")),
        }
    }

    /// The value as a TCP port.
    pub fn port(&self) -> Result<u16, String> {
        let n = self.value()?;
        u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {n} is out of range (1-65535)"))
    }
}

/// The port in `value`, or `default` when not given.
pub fn port_or(value: &Option<Number>, default: u16) -> Result<u16, String> {
    value.as_ref().map_or(Ok(default), Number::port)
}

/// The connection a SQL-speaking type (`pg_conf`, `pg_database`,
/// `pg_hba`, `pg_role`) declares with its `host`, `port`, `superuser` (or
/// `connect_as`) and `superuser_password` attributes, with the defaults
/// applied; an error names `id`. The attributes stay in each type's own
/// `Params`: a flattened struct would cost `deny_unknown_fields` its list of
/// the expected names in the error about a misspelt one.
pub fn conn(
    id: &ResourceId,
    host: &Option<String>,
    port: Option<u16>,
    user: &Option<String>,
    password: &Option<String>,
) -> Result<Conn, ResourceError> {
    conn_from_attrs(host.as_deref(), port, user.as_deref(), password.as_deref())
        .map_err(|e| ResourceError::Invalid(format!("{id}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ports_from_numbers_and_text() {
        let n = |v: serde_json::Value| serde_json::from_value::<Number>(v).unwrap();
        assert_eq!(n(serde_json::json!(5433)).port(), Ok(5433));
        assert_eq!(n(serde_json::json!(" 5432 ")).port(), Ok(5432));
        assert_eq!(n(serde_json::json!("4")).value(), Ok(4));
        assert!(n(serde_json::json!(0)).port().is_err());
        assert!(n(serde_json::json!(70000)).port().is_err());
        assert!(n(serde_json::json!("x")).value().is_err());
        assert_eq!(port_or(&None, 5432), Ok(5432));
    }

    #[test]
    fn conn_applies_defaults_and_names_the_resource() {
        let id = ResourceId::new("pg_database", "db");
        let c = conn(&id, &None, Some(5433), &Some("admin".into()), &None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("127.0.0.1", 5433, "admin")
        );
        let e = conn(&id, &Some(String::new()), None, &None, &None).unwrap_err();
        assert_eq!(e.to_string(), "pg_database[db]: host must not be empty");
    }
}
