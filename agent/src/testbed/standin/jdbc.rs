//! What the stand-in Stash reads from `stash-config.properties`, once, at
//! start: the PostgreSQL JDBC url (one host, or pgJDBC's multi-host form
//! with `targetServerType`), the user and the password.
//!
//! Parsing follows pgJDBC's `Driver.parseURL` for the forms the site uses,
//! so a url the stand-in accepts is one Stash would accept too, and a url it
//! refuses is reported whole (the password lives in its own key and is
//! redacted anyway).

use std::path::Path;

use anyhow::{bail, Context as _, Result};

/// Which server of a multi-host url a connection goes to (pgJDBC's
/// `targetServerType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetServerType {
    /// The first host that accepts the connection (pgJDBC's default).
    Any,
    /// Only a server that is not in recovery (`primary`, or the older `master`).
    Primary,
    /// A primary if there is one, else any server.
    PreferPrimary,
}

/// A parsed `jdbc:postgresql://…` url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JdbcUrl {
    /// `(host, port)` in url order; port 5432 when not given.
    pub hosts: Vec<(String, u16)>,
    pub database: String,
    pub target: TargetServerType,
}

impl JdbcUrl {
    /// `host:port/db` of one of the hosts, as the log names it.
    pub fn describe(&self, host: &(String, u16)) -> String {
        format!("{}:{}/{}", host_text(&host.0), host.1, self.database)
    }

    /// `h1:p1, h2:p2`.
    pub fn hosts_text(&self) -> String {
        self.hosts
            .iter()
            .map(|(h, p)| format!("{}:{p}", host_text(h)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn host_text(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// Parses `jdbc:postgresql://host[:port][,host[:port]…]/database[?k=v&…]`.
/// Hosts may be names, IPv4 or bracketed IPv6 addresses. Query parameters
/// other than `targetServerType` are ignored, as pgJDBC ignores unknown ones.
pub fn parse_url(url: &str) -> Result<JdbcUrl> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "jdbc.url '{url}' {why} (expected jdbc:postgresql://host[:port][,host[:port]...]/database[?targetServerType=primary])"
        )
    };
    let rest = url
        .trim()
        .strip_prefix("jdbc:postgresql://")
        .ok_or_else(|| bad("is not a PostgreSQL JDBC url"))?;
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (rest, None),
    };
    let (hosts_part, database) = location
        .split_once('/')
        .ok_or_else(|| bad("names no database"))?;
    if database.is_empty() || database.contains('/') {
        return Err(bad("names no database"));
    }
    let mut hosts = Vec::new();
    for spec in hosts_part.split(',') {
        hosts.push(parse_host(spec).map_err(|why| bad(&why))?);
    }
    let mut target = TargetServerType::Any;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "targetServerType" {
            target = match v {
                "any" => TargetServerType::Any,
                "primary" | "master" => TargetServerType::Primary,
                "preferPrimary" => TargetServerType::PreferPrimary,
                // A standby cannot take the writes the stand-in makes.
                "secondary" | "preferSecondary" | "slave" | "preferSlave" => {
                    return Err(bad(&format!(
                        "asks for targetServerType={v}: the application writes, a standby cannot take writes"
                    )))
                }
                other => return Err(bad(&format!("has an unknown targetServerType '{other}'"))),
            };
        }
    }
    Ok(JdbcUrl {
        hosts,
        database: database.to_string(),
        target,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn parse_host(spec: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(inner) = spec.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("has an unclosed '[' in host '{spec}'"))?;
        match after {
            "" => (h, None),
            p if p.starts_with(':') => (h, Some(&p[1..])),
            _ => return Err(format!("has a bad host '{spec}'")),
        }
    } else {
        match spec.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (spec, None),
        }
    };
    if host.is_empty() {
        return Err("has an empty host".into());
    }
    let port = match port {
        None => 5432,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("has a bad port '{p}' for host '{host}'")),
        },
    };
    Ok((host.to_string(), port))
}

/// Everything the stand-in needs from the properties file.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    pub url: JdbcUrl,
    pub user: String,
    pub password: Option<String>,
}

/// Reads `jdbc.url`, `jdbc.user` and `jdbc.password` from a Stash
/// `stash-config.properties`. The password is registered as a secret before
/// anything could print it.
pub fn load_config(path: &Path) -> Result<StandinConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading Stash config {}", path.display()))?;
    let pairs = resources::properties::parse(&text);
    let password = resources::properties::lookup(&pairs, "jdbc.password")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    if let Some(p) = &password {
        resources::redact::register(p);
    }
    let get = |key: &str| {
        resources::properties::lookup(&pairs, key)
            .map(str::to_string)
            .with_context(|| format!("{}: no {key}", path.display()))
    };
    let url = get("jdbc.url")?;
    let user = get("jdbc.user")?;
    if user.is_empty() {
        bail!("{}: jdbc.user is empty", path.display());
    }
    let url = parse_url(&url).with_context(|| format!("in {}", path.display()))?;
    Ok(StandinConfig {
        url,
        user,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_host_urls_parse() {
        let u = parse_url("jdbc:postgresql://stash-server:5432/stashdb").unwrap();
        assert_eq!(u.hosts, vec![("stash-server".to_string(), 5432)]);
        assert_eq!(u.database, "stashdb");
        assert_eq!(u.target, TargetServerType::Any);

        let u = parse_url(
            "jdbc:postgresql://127.0.0.11:5433,127.0.0.12/stashdb?ssl=false&targetServerType=primary",
        )
        .unwrap();
        assert_eq!(
            u.hosts,
            vec![
                ("127.0.0.11".to_string(), 5433),
                ("127.0.0.12".to_string(), 5432)
            ]
        );
        assert_eq!(u.target, TargetServerType::Primary);
        assert_eq!(u.describe(&u.hosts[1]), "127.0.0.12:5432/stashdb");
        assert_eq!(u.hosts_text(), "127.0.0.11:5433, 127.0.0.12:5432");

        let u = parse_url("jdbc:postgresql://[::1]:6000,h/db?targetServerType=master").unwrap();
        assert_eq!(u.hosts[0], ("::1".to_string(), 6000));
        assert_eq!(u.describe(&u.hosts[0]), "[::1]:6000/db");
        assert_eq!(u.target, TargetServerType::Primary);
        let u = parse_url("jdbc:postgresql://h/db?targetServerType=preferPrimary").unwrap();
        assert_eq!(u.target, TargetServerType::PreferPrimary);
    }

    #[test]
    fn bad_urls_are_refused_naming_the_url() {
        for (url, why) in [
            ("jdbc:mysql://h/db", "not a PostgreSQL JDBC url"),
            ("jdbc:postgresql://h:5432", "names no database"),
            ("jdbc:postgresql://h:5432/", "names no database"),
            ("jdbc:postgresql://h:port/db", "bad port 'port'"),
            ("jdbc:postgresql://h:0/db", "bad port '0'"),
            ("jdbc:postgresql://h1,/db", "empty host"),
            ("jdbc:postgresql://[::1/db", "unclosed"),
            (
                "jdbc:postgresql://h/db?targetServerType=secondary",
                "standby cannot take writes",
            ),
            (
                "jdbc:postgresql://h/db?targetServerType=leader",
                "unknown targetServerType",
            ),
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains(&format!("'{url}'")), "{e}");
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn config_is_read_from_properties_and_the_password_registered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stash-config.properties");
        std::fs::write(
            &p,
            "# written by agent\njdbc.driver=org.postgresql.Driver\n\
             jdbc.url=jdbc\\:postgresql\\://db1\\:5432,db2\\:5432/stashdb?targetServerType\\=primary\n\
             jdbc.user=stashuser\njdbc.password=standin-jdbc-pw-1\n",
        )
        .unwrap();
        let c = load_config(&p).unwrap();
        assert_eq!(c.user, "stashuser");
        assert_eq!(c.password.as_deref(), Some("standin-jdbc-pw-1"));
        assert_eq!(c.url.hosts.len(), 2);
        assert_eq!(c.url.target, TargetServerType::Primary);
        assert_eq!(
            resources::redact::redact("pw standin-jdbc-pw-1"),
            "pw [redacted]"
        );

        std::fs::write(&p, "jdbc.user=u\n").unwrap();
        let e = format!("{:#}", load_config(&p).unwrap_err());
        assert!(e.contains("no jdbc.url"), "{e}");
        std::fs::write(&p, "jdbc.user=u\njdbc.url=jdbc:postgresql:stashdb\n").unwrap();
        let e = format!("{:#}", load_config(&p).unwrap_err());
        assert!(e.contains("'jdbc:postgresql:stashdb'"), "{e}");
        assert!(e.contains(&p.display().to_string()), "{e}");
        let e = format!(
            "{:#}",
            load_config(&dir.path().join("missing")).unwrap_err()
        );
        assert!(e.contains("reading Stash config"), "{e}");
    }
}
