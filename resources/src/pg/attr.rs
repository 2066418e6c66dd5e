//! Attribute values the PostgreSQL types share. A port or a count may be
//! written as a YAML number (`5432`) or come out of a template as text
//! (`"{{lookup 'pgsql_server::port'}}"`); both mean the same. The types
//! that speak SQL to a running server also share how they reach it
//! ([`ConnAttrs`]).

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

/// How a SQL-speaking type (`pg_conf`, `pg_database`, `pg_hba`) reaches
/// the server: `#[serde(flatten)]`ed into its attributes, so the four are
/// spelt, documented and defaulted the same for each.
///
/// No `deny_unknown_fields` here: serde does not support it on a flattened
/// struct; the type's own `Params` denies them for both.
#[derive(Debug, Default, Deserialize)]
pub struct ConnAttrs {
    /// Server address or socket directory (default `127.0.0.1`).
    host: Option<String>,
    /// Server port (default 5432).
    port: Option<u16>,
    /// Role the agent connects as (default `postgres`).
    superuser: Option<String>,
    /// Its password (Sensitive).
    superuser_password: Option<String>,
}

impl ConnAttrs {
    /// The connection, with the defaults applied; an error names `id`.
    pub fn conn(&self, id: &ResourceId) -> Result<Conn, ResourceError> {
        conn_from_attrs(
            self.host.as_deref(),
            self.port,
            self.superuser.as_deref(),
            self.superuser_password.as_deref(),
        )
        .map_err(|e| ResourceError::Invalid(format!("{id}: {e}")))
    }
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

    /// Flattened into a `deny_unknown_fields` struct, the connection
    /// attributes are read and a misspelt one is still refused.
    #[test]
    fn conn_attrs_flatten_and_unknown_fields_are_refused() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Params {
            #[allow(dead_code)]
            name: Option<String>,
            #[serde(flatten)]
            conn: ConnAttrs,
        }
        let id = ResourceId::new("pg_database", "db");
        let p = |v: serde_json::Value| serde_json::from_value::<Params>(v);
        let c = p(serde_json::json!({"name": "x", "port": 5433, "superuser": "admin"}))
            .unwrap()
            .conn
            .conn(&id)
            .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("127.0.0.1", 5433, "admin")
        );
        assert!(p(serde_json::json!({"prot": 5433})).is_err());
        assert!(p(serde_json::json!({"port": "x"})).is_err());
        let e = p(serde_json::json!({"host": ""}))
            .unwrap()
            .conn
            .conn(&id)
            .unwrap_err();
        assert_eq!(e.to_string(), "pg_database[db]: host must not be empty");
    }
}
