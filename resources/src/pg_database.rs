//! `pg_database`: a database of a running cluster and its owner.
//!
//! Encoding and locale are fixed when a database is created; an existing
//! database that differs is an error that says so, never a drop and
//! recreate (that would lose the data). Only the owner converges.

use serde::Deserialize;

use crate::attr::Ensure;
use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::pg::attr;
use crate::pg::{self, quote_ident, quote_literal};

/// Attributes of `- pg_database: <database name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `present` (default) or `absent` (DROP DATABASE; fails while
    /// sessions are connected).
    #[serde(default)]
    ensure: Ensure,
    /// Owning role. Not declared = not managed (a new database then belongs
    /// to the superuser).
    owner: Option<String>,
    /// Encoding (default `UTF8`); fixed at creation.
    encoding: Option<String>,
    /// Sets both `lc_collate` and `lc_ctype`; fixed at creation.
    locale: Option<String>,
    /// Collation order (overrides `locale`); fixed at creation.
    lc_collate: Option<String>,
    /// Character classification (overrides `locale`); fixed at creation.
    lc_ctype: Option<String>,
    /// Template to copy (default `template0`, the only one that allows
    /// another encoding or locale than its own).
    template: Option<String>,
    /// Server address or socket directory (default `127.0.0.1`).
    host: Option<String>,
    /// Server port (default 5432).
    port: Option<u16>,
    /// Role the agent connects as (default `postgres`).
    superuser: Option<String>,
    /// Its password (Sensitive).
    superuser_password: Option<String>,
}

/// A typed `pg_database` resource.
#[derive(Debug)]
pub struct PgDatabase {
    id: ResourceId,
    name: String,
    ensure: Ensure,
    owner: Option<String>,
    encoding: String,
    lc_collate: Option<String>,
    lc_ctype: Option<String>,
    template: String,
    conn: pg::Conn,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let name_ok = |s: &str| !s.is_empty() && s.len() <= 63 && !s.contains('\0');
    if !name_ok(&id.title) {
        return Err(invalid("a database name is 1-63 bytes".into()));
    }
    if let Some(bad) = [&p.owner, &p.template]
        .into_iter()
        .flatten()
        .find(|s| !name_ok(s))
    {
        return Err(invalid(format!(
            "'{bad}' is not a valid role or database name"
        )));
    }
    let encoding = p.encoding.unwrap_or_else(|| "UTF8".into());
    if encoding.is_empty()
        || !encoding
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(format!(
            "encoding '{encoding}' is not an encoding name"
        )));
    }
    let conn = attr::conn(id, &p.host, p.port, &p.superuser, &p.superuser_password)?;
    Ok(Box::new(PgDatabase {
        id: id.clone(),
        name: id.title.clone(),
        ensure: p.ensure,
        owner: p.owner,
        encoding,
        lc_collate: p.lc_collate.or_else(|| p.locale.clone()),
        lc_ctype: p.lc_ctype.or(p.locale),
        template: p.template.unwrap_or_else(|| "template0".into()),
        conn,
    }))
}

/// `UTF8` = `utf-8` = `Utf_8`.
fn norm_encoding(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// `en_US.UTF-8` = `en_US.utf8` (glibc normalises the codeset the same way).
fn norm_locale(s: &str) -> String {
    match s.split_once('.') {
        Some((lang, codeset)) => format!("{lang}.{}", norm_encoding(codeset)),
        None => s.to_string(),
    }
}

/// The database as the server has it.
struct Current {
    owner: String,
    encoding: String,
    collate: String,
    ctype: String,
}

impl PgDatabase {
    fn current(&self, client: &mut postgres::Client) -> Result<Option<Current>, ResourceError> {
        let row = client
            .query_opt(
                "SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text \
                 FROM pg_database WHERE datname = $1",
                &[&self.name],
            )
            .map_err(|e| pg::sql_error(&format!("{}: reading pg_database", self.id), e))?;
        Ok(row.map(|r| Current {
            owner: r.get(0),
            encoding: r.get(1),
            collate: r.get(2),
            ctype: r.get(3),
        }))
    }

    fn changes(&self, cur: &Option<Current>) -> Result<Vec<Change>, ResourceError> {
        let cur = match (self.ensure, cur) {
            (Ensure::Absent, None) => return Ok(vec![]),
            (Ensure::Absent, Some(_)) => {
                return Ok(vec![Change::new(
                    "ensure",
                    Some("present".into()),
                    Some("absent".into()),
                )])
            }
            (Ensure::Present, None) => {
                return Ok(vec![Change::new(
                    "ensure",
                    Some("absent".into()),
                    Some("present".into()),
                )])
            }
            (Ensure::Present, Some(cur)) => cur,
        };
        let fixed = [
            (
                "encoding",
                Some(&self.encoding),
                &cur.encoding,
                norm_encoding as fn(&str) -> String,
            ),
            (
                "lc_collate",
                self.lc_collate.as_ref(),
                &cur.collate,
                norm_locale,
            ),
            ("lc_ctype", self.lc_ctype.as_ref(), &cur.ctype, norm_locale),
        ];
        for (what, want, have, norm) in fixed {
            if let Some(want) = want.filter(|w| norm(w) != norm(have)) {
                return Err(ResourceError::Failed(format!(
                    "{}: the database exists with {what} '{have}', not '{want}'; {what} is fixed when a database \
                     is created (dump it, drop it and let the agent create it again to change it)",
                    self.id
                )));
            }
        }
        Ok(match &self.owner {
            Some(o) if *o != cur.owner => vec![Change::new(
                "owner",
                Some(cur.owner.clone()),
                Some(o.clone()),
            )],
            _ => vec![],
        })
    }

    fn create_sql(&self) -> String {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(&self.name));
        if let Some(o) = &self.owner {
            sql.push_str(&format!(" OWNER {}", quote_ident(o)));
        }
        sql.push_str(&format!(" ENCODING {}", quote_literal(&self.encoding)));
        if let Some(l) = &self.lc_collate {
            sql.push_str(&format!(" LC_COLLATE {}", quote_literal(l)));
        }
        if let Some(l) = &self.lc_ctype {
            sql.push_str(&format!(" LC_CTYPE {}", quote_literal(l)));
        }
        sql.push_str(&format!(" TEMPLATE {}", quote_ident(&self.template)));
        sql
    }
}

/// What `apply` does, as `check` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Drop,
    Create,
    SetOwner(String),
}

impl Resource for PgDatabase {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, _cx: &Context) -> Result<Plan, ResourceError> {
        let mut client = self.conn.connect()?;
        let cur = self.current(&mut client)?;
        let changes = self.changes(&cur)?;
        if changes.is_empty() {
            return Ok(Plan::in_sync());
        }
        let step = match (self.ensure, &cur, &self.owner) {
            (Ensure::Absent, _, _) => Step::Drop,
            (Ensure::Present, None, _) => Step::Create,
            (Ensure::Present, Some(_), Some(owner)) => Step::SetOwner(owner.clone()),
            // Only the owner can differ on an existing database.
            (Ensure::Present, Some(_), None) => return Ok(Plan::in_sync()),
        };
        Ok(Plan::new(changes, step))
    }

    fn apply(&self, _cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let step: Step = plan.steps(&self.id)?;
        let db = quote_ident(&self.name);
        let sql = match step {
            Step::Drop => format!("DROP DATABASE {db}"),
            Step::Create => self.create_sql(),
            Step::SetOwner(owner) => {
                format!("ALTER DATABASE {db} OWNER TO {}", quote_ident(&owner))
            }
        };
        self.conn.execute(&self.id, &sql, &sql, &sql)
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        self.owner
            .iter()
            .map(|o| ResourceId::new("pg_role", o))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::live::{converge, declared, Scene};
    use crate::pg::testing::{decl, TestCluster};
    use serde_json::json;

    #[test]
    fn names_normalise_and_build_validates() {
        assert_eq!(norm_encoding("utf-8"), "UTF8");
        assert_eq!(norm_locale("en_US.UTF-8"), norm_locale("en_US.utf8"));
        assert_ne!(norm_locale("C"), norm_locale("en_US.utf8"));
        let env = TypeEnv::default();
        let r = build(
            &decl("pg_database", "stashdb", json!({"owner": "stashuser"}), &[]),
            &env,
        )
        .unwrap();
        assert_eq!(
            r.autorequires(),
            vec![ResourceId::new("pg_role", "stashuser")]
        );
        for bad in [
            json!({"encoding": "UTF8'"}),
            json!({"owner": ""}),
            json!({"ensure": "maybe"}),
            json!({"x": 1}),
        ] {
            assert!(
                build(&decl("pg_database", "db", bad.clone(), &[]), &env).is_err(),
                "{bad}"
            );
        }
    }

    fn db_for(c: &TestCluster, name: &str, attrs: serde_json::Value) -> Box<dyn Resource> {
        declared(
            c,
            build,
            "pg_database",
            name,
            attrs,
            &["superuser_password"],
        )
    }

    #[test]
    fn databases_on_a_real_server() {
        let scene = Scene::primary();
        let (c, cx) = (&scene.c, &scene.cx);
        let mut admin = scene.admin("CREATE ROLE stashuser; CREATE ROLE other");

        let r = db_for(c, "stashdb", json!({"owner": "stashuser", "locale": "C"}));
        assert_eq!(
            converge(r.as_ref(), cx),
            ["ensure changed 'absent' to 'present'"]
        );
        let row = admin
            .query_one("SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text FROM pg_database WHERE datname = 'stashdb'", &[])
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            ("stashuser".into(), "UTF8".into())
        );

        // The owner converges.
        admin
            .batch_execute("ALTER DATABASE stashdb OWNER TO other")
            .unwrap();
        assert_eq!(
            converge(r.as_ref(), cx),
            ["owner changed 'other' to 'stashuser'"]
        );

        // Encoding cannot change: an error that says why, nothing done.
        let latin = db_for(c, "stashdb", json!({"encoding": "LATIN1"}));
        let err = latin.check(cx).unwrap_err().to_string();
        assert!(
            err.contains("fixed when a database is created") && err.contains("'UTF8'"),
            "{err}"
        );
        // No plan from check, nothing to apply: a plan it did not make is refused.
        assert!(latin.apply(cx, Plan::in_sync()).is_err());

        // Absent drops it.
        let gone = db_for(c, "stashdb", json!({"ensure": "absent"}));
        assert_eq!(
            converge(gone.as_ref(), cx),
            ["ensure changed 'present' to 'absent'"]
        );

        // A missing owner is the server's error, named.
        let orphan = db_for(c, "x", json!({"owner": "nobody_here"}));
        let err = orphan
            .apply(cx, orphan.check(cx).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("42704"), "{err}");
    }
}
