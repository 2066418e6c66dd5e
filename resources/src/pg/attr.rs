//! Attribute values the PostgreSQL types share. A port or a count may be
//! written as a YAML number (`5432`) or come out of a template as text
//! (`"{{lookup 'pgsql_server::port'}}"`); both mean the same.

use serde::Deserialize;

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
}
