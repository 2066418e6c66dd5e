//! `pg_role`: a role of a running cluster: its attributes and password.
//!
//! The password is compared without ever leaving the agent in clear: the
//! stored SCRAM verifier (`pg_authid.rolpassword`) is checked the way the
//! server checks a login — the declared password plays the client of a
//! SCRAM exchange (postgres-protocol's own client, so SASLprep is the
//! server's), and the proof is verified against the stored key; md5
//! verifiers are recomputed as `md5(password || rolname)`. A new password
//! is sent as a client-side computed SCRAM verifier, so the plain text is in
//! neither the SQL text nor the server log.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::attr::Ensure;
use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::pg::attr;
use crate::pg::{self, quote_ident, quote_literal};

/// Attributes of `- pg_role: <role name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `present` (default) or `absent` (DROP ROLE; fails while the role
    /// owns objects).
    #[serde(default)]
    ensure: Ensure,
    /// May log in (default true).
    #[serde(default = "yes")]
    login: bool,
    /// Is a superuser (default false). The role the agent connects as
    /// cannot be declared without it.
    #[serde(default)]
    superuser: bool,
    /// May create databases (default false).
    #[serde(default)]
    createdb: bool,
    /// May create roles (default false).
    #[serde(default)]
    createrole: bool,
    /// May start streaming replication (default false).
    #[serde(default)]
    replication: bool,
    /// Password (Sensitive). Not declared = not managed.
    password: Option<String>,
    /// Maximum concurrent connections (-1 = no limit). Not declared = not
    /// managed.
    connection_limit: Option<i32>,
    /// Server address or socket directory (default `127.0.0.1`).
    host: Option<String>,
    /// Server port (default 5432).
    port: Option<u16>,
    /// Role the agent connects as (default `postgres`). Named so because
    /// `superuser` is this role's flag here.
    connect_as: Option<String>,
    /// Password of `connect_as` (Sensitive).
    superuser_password: Option<String>,
}

fn yes() -> bool {
    true
}

/// The role flags, in `CREATE ROLE` keyword order.
const FLAGS: [(&str, &str); 5] = [
    ("login", "LOGIN"),
    ("superuser", "SUPERUSER"),
    ("createdb", "CREATEDB"),
    ("createrole", "CREATEROLE"),
    ("replication", "REPLICATION"),
];

/// A typed `pg_role` resource.
#[derive(Debug)]
pub struct PgRole {
    id: ResourceId,
    name: String,
    ensure: Ensure,
    /// Same order as [`FLAGS`].
    flags: [bool; 5],
    password: Option<String>,
    connection_limit: Option<i32>,
    conn: pg::Conn,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let name = id.title.clone();
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(invalid("a role name is 1-63 bytes".into()));
    }
    let conn = attr::conn(id, &p.host, p.port, &p.connect_as, &p.superuser_password)?;
    if name == conn.user && (p.ensure == Ensure::Absent || !p.superuser || !p.login) {
        return Err(invalid(format!(
            "the agent connects as {name}: it must stay a superuser that can log in"
        )));
    }
    if let Some(pw) = &p.password {
        crate::redact::register(pw);
        if pw.is_empty() || pw.contains('\0') {
            return Err(invalid("password must not be empty".into()));
        }
    }
    if p.connection_limit.is_some_and(|n| n < -1) {
        return Err(invalid(
            "connection_limit must be -1 (no limit) or more".into(),
        ));
    }
    Ok(Box::new(PgRole {
        id: id.clone(),
        name,
        ensure: p.ensure,
        flags: [
            p.login,
            p.superuser,
            p.createdb,
            p.createrole,
            p.replication,
        ],
        password: p.password,
        connection_limit: p.connection_limit,
        conn,
    }))
}

/// What `apply` does, as `check` decided. `password`: set the password
/// too (it differs); otherwise its verifier is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Drop,
    Create { password: bool },
    Alter { password: bool },
}

/// The role as the server has it.
struct Current {
    flags: [bool; 5],
    connection_limit: i32,
    verifier: Option<String>,
}

impl PgRole {
    fn current(&self, client: &mut postgres::Client) -> Result<Option<Current>, ResourceError> {
        let row = client
            .query_opt(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolconnlimit, rolpassword \
                 FROM pg_authid WHERE rolname = $1",
                &[&self.name],
            )
            .map_err(|e| pg::sql_error(&format!("{}: reading pg_authid", self.id), e))?;
        Ok(row.map(|r| Current {
            flags: [r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)],
            connection_limit: r.get(5),
            verifier: r.get(6),
        }))
    }

    /// True when the declared password is not what the server has (or the
    /// role is yet to be created with one).
    fn password_differs(&self, cur: &Option<Current>) -> bool {
        match (&self.password, cur) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(pw), Some(cur)) => !cur
                .verifier
                .as_deref()
                .is_some_and(|v| password_matches(v, pw, &self.name)),
        }
    }

    /// The changes to show; `password` is [`PgRole::password_differs`].
    fn changes(&self, cur: &Option<Current>, password: bool) -> Vec<Change> {
        let yes_no = |b: bool| Some(b.to_string());
        match (self.ensure, cur) {
            (Ensure::Absent, None) => vec![],
            (Ensure::Absent, Some(_)) => vec![Change::new(
                "ensure",
                Some("present".into()),
                Some("absent".into()),
            )],
            (Ensure::Present, None) => {
                let mut c = vec![Change::new(
                    "ensure",
                    Some("absent".into()),
                    Some("present".into()),
                )];
                if password {
                    c.push(Change::new("password", None, None).sensitive(true));
                }
                c
            }
            (Ensure::Present, Some(cur)) => {
                let mut c: Vec<Change> = FLAGS
                    .iter()
                    .zip(self.flags.iter().zip(cur.flags))
                    .filter(|(_, (want, have))| **want != *have)
                    .map(|((name, _), (want, have))| {
                        Change::new(*name, yes_no(have), yes_no(*want))
                    })
                    .collect();
                if let Some(n) = self.connection_limit.filter(|n| *n != cur.connection_limit) {
                    c.push(Change::new(
                        "connection_limit",
                        Some(cur.connection_limit.to_string()),
                        Some(n.to_string()),
                    ));
                }
                if password {
                    c.push(Change::new("password", None, None).sensitive(true));
                }
                c
            }
        }
    }

    /// `LOGIN NOSUPERUSER ... [CONNECTION LIMIT n] [PASSWORD 'verifier']`.
    fn options(&self, with_password: bool) -> String {
        let mut sql: Vec<String> = FLAGS
            .iter()
            .zip(self.flags)
            .map(|((_, kw), on)| {
                if on {
                    kw.to_string()
                } else {
                    format!("NO{kw}")
                }
            })
            .collect();
        if let Some(n) = self.connection_limit {
            sql.push(format!("CONNECTION LIMIT {n}"));
        }
        if let (true, Some(pw)) = (with_password, &self.password) {
            let verifier = postgres_protocol::password::scram_sha_256(pw.as_bytes());
            sql.push(format!("PASSWORD {}", quote_literal(&verifier)));
        }
        sql.join(" ")
    }
}

impl Resource for PgRole {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, _cx: &Context) -> Result<Plan, ResourceError> {
        let mut client = self.conn.connect()?;
        let cur = self.current(&mut client)?;
        let password = self.password_differs(&cur);
        let changes = self.changes(&cur, password);
        if changes.is_empty() {
            return Ok(Plan::in_sync());
        }
        let step = match (self.ensure, cur) {
            (Ensure::Absent, _) => Step::Drop,
            (Ensure::Present, None) => Step::Create { password },
            (Ensure::Present, Some(_)) => Step::Alter { password },
        };
        Ok(Plan::new(changes, step))
    }

    fn apply(&self, _cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let step: Step = plan.steps(&self.id)?;
        let role = quote_ident(&self.name);
        let sql = match step {
            Step::Drop => format!("DROP ROLE {role}"),
            Step::Create { password } => {
                format!("CREATE ROLE {role} WITH {}", self.options(password))
            }
            Step::Alter { password } => {
                format!("ALTER ROLE {role} WITH {}", self.options(password))
            }
        };
        // The verifier is not the password, but it still stays out of logs
        // and errors.
        let logged = sql.split(" PASSWORD ").next().unwrap_or("");
        let named = sql.split(" WITH ").next().unwrap_or("");
        self.conn.execute(&self.id, &sql, logged, named)
    }
}

/// True when the stored verifier `stored` accepts `password` for `role`.
pub fn password_matches(stored: &str, password: &str, role: &str) -> bool {
    if stored.starts_with("md5") {
        return postgres_protocol::password::md5(password.as_bytes(), role) == stored;
    }
    scram_matches(stored, password).unwrap_or(false)
}

/// Plays a SCRAM-SHA-256 login against `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`:
/// the client proof must give the stored key, and the server signature from
/// the server key must satisfy the client.
fn scram_matches(stored: &str, password: &str) -> Option<bool> {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
    let (iter_salt, keys) = rest.split_once('$')?;
    let (iterations, salt) = iter_salt.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let (stored_key, server_key) = (b64_decode(stored_key)?, b64_decode(server_key)?);
    let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    // client-first is `n,,n=,r=<nonce>`; the random nonce may itself hold
    // "r=" (it excludes only ','), so the split is at the first ",r=".
    let first = String::from_utf8(client.message().to_vec()).ok()?;
    let client_nonce = first.split_once(",r=")?.1.to_string();
    let server_first = format!("r={client_nonce}agent,s={salt},i={iterations}");
    client.update(server_first.as_bytes()).ok()?;
    let client_final = String::from_utf8(client.message().to_vec()).ok()?;
    let (without_proof, proof) = client_final.rsplit_once(",p=")?;
    let auth_message = format!("n=,r={client_nonce},{server_first},{without_proof}");
    let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
    let client_key: Vec<u8> = b64_decode(proof)?
        .iter()
        .zip(signature)
        .map(|(p, s)| p ^ s)
        .collect();
    if Sha256::digest(&client_key).as_slice() != stored_key.as_slice() {
        return Some(false);
    }
    let server_signature = b64_encode(&hmac_sha256(&server_key, auth_message.as_bytes()));
    Some(
        client
            .finish(format!("v={server_signature}").as_bytes())
            .is_ok(),
    )
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests;
