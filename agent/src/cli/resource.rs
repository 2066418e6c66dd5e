//! `agent resource TYPE [NAME]`: the current state of resources, printed as
//! manifest YAML that can be pasted into a manifest (Puppet's `puppet
//! resource host`): applied as printed, it changes nothing. Read under
//! `--root` as a run would; nothing is written.
//!
//! Types: `host` (the hosts file's entries), `user` and `group` (the
//! account databases: NSS on the host, the root's files under `--root`),
//! `cron` (the agent's marked entries in users' crontabs and /etc/cron.d),
//! `file` (one path: its kind, mode, owner, group or link target) and
//! `package` (installed Debian packages and their versions, from
//! dpkg-query: packages are host-global, as the type manages them), and
//! `pg_role` / `pg_database` (from a running PostgreSQL, reached as the
//! types reach it: `--pg-host`, `--pg-port`, `--pg-user`, the password in
//! `PGPASSWORD`, never on the command line and never printed).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value};

use crate::engine::report;
use crate::settings::Settings;

/// The types `agent resource` can read.
pub const TYPES: &[&str] = &[
    "cron",
    "file",
    "group",
    "host",
    "package",
    "pg_database",
    "pg_role",
    "user",
];

/// Flags of `agent resource`.
#[derive(Debug, clap::Args)]
pub struct ResourceArgs {
    /// The resource type (`host`, `user`, `group`, `cron`, `file`, `package`).
    #[arg(value_name = "TYPE")]
    pub type_name: String,
    /// Only this resource (a host name, user, group; for `file`, the
    /// absolute path, required).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// pg_role, pg_database: the server's address (default 127.0.0.1).
    #[arg(long, value_name = "HOST")]
    pub pg_host: Option<String>,
    /// pg_role, pg_database: the server's port (default 5432).
    #[arg(long, value_name = "PORT")]
    pub pg_port: Option<u16>,
    /// pg_role, pg_database: the superuser to connect as (default
    /// postgres); its password comes from PGPASSWORD.
    #[arg(long, value_name = "USER")]
    pub pg_user: Option<String>,
}

type Instance = (String, Map<String, Value>);

pub fn run(settings: &Settings, args: ResourceArgs) -> Result<u8> {
    let cx = resources::Context::new(
        settings.root_path(),
        resources::backup::BackupStore::new(&settings.state.dir),
    );
    let read = |node_path: &str| -> Result<String> {
        let path = cx.path(node_path)?;
        let bytes = resources::atomic::read_optional(&path)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let name = args.name.as_deref();
    let (mut found, notes): (Vec<Instance>, Vec<String>) = match args.type_name.as_str() {
        "host" => resources::host::instances(&read("/etc/hosts")?),
        "user" => (users(&cx, &read("/etc/passwd")?, name)?, vec![]),
        "group" => (groups(&cx, &read("/etc/group")?, name)?, vec![]),
        "package" => (packages(name)?, vec![]),
        "cron" => (crons(&cx)?, vec![]),
        "pg_role" | "pg_database" => (postgres(&args)?, vec![]),
        "file" => {
            let Some(path) = name else {
                bail!("agent resource file needs a PATH\nhint: agent resource file /etc/motd");
            };
            (vec![file(&cx, path)?], vec![])
        }
        other => bail!(
            "agent resource cannot read {other:?} resources\nhint: it reads {}; \
             `agent describe {other}` documents the type",
            TYPES.join(", ")
        ),
    };
    if let Some(n) = name {
        let wanted =
            resources::registry::normalize_title(&args.type_name, n).map_err(anyhow::Error::msg)?;
        found.retain(|(title, _)| *title == wanted);
        if found.is_empty() {
            report::print_errors(
                "agent",
                &[format!("no {}[{wanted}] on this node", args.type_name)],
            );
            return Ok(1);
        }
    }
    let mut out = String::new();
    // What was left out is said when everything is listed.
    for note in notes.iter().filter(|_| name.is_none()) {
        out.push_str(&format!("# {note}\n"));
    }
    out.push_str(&render(&args.type_name, &found));
    report::print(&out);
    Ok(0)
}

/// Declarations as a manifest's `resources:` list items.
pub fn render(type_name: &str, found: &[Instance]) -> String {
    let mut out = String::new();
    for (title, attrs) in found {
        let head = crate::yaml::to_string(&json!({ type_name: title }));
        out.push_str("- ");
        out.push_str(&head);
        for (k, v) in attrs {
            let text = crate::yaml::to_string(&json!({ k: v }));
            for line in text.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if out.is_empty() {
        out.push_str("[]\n");
    }
    out
}

fn users(cx: &resources::Context, passwd: &str, name: Option<&str>) -> Result<Vec<Instance>> {
    let mut entries = resources::accounts::parse_passwd(passwd);
    // On the host a user may come from NSS alone (LDAP): by name, asked.
    if let (Some(n), true) = (name, entries.iter().all(|u| Some(u.name.as_str()) != name)) {
        entries.extend(resources::accounts::user(cx, n)?);
    }
    Ok(entries
        .into_iter()
        .map(|u| {
            let mut a = Map::new();
            a.insert("ensure".into(), json!("present"));
            a.insert("uid".into(), json!(u.uid));
            a.insert("gid".into(), json!(u.gid));
            a.insert("home".into(), json!(u.home));
            a.insert("shell".into(), json!(u.shell));
            if !u.comment.is_empty() {
                a.insert("comment".into(), json!(u.comment));
            }
            (u.name, a)
        })
        .collect())
}

fn groups(cx: &resources::Context, group: &str, name: Option<&str>) -> Result<Vec<Instance>> {
    let mut entries = resources::accounts::parse_group(group);
    if let (Some(n), true) = (name, entries.iter().all(|g| Some(g.name.as_str()) != name)) {
        entries.extend(resources::accounts::group(cx, n)?);
    }
    Ok(entries
        .into_iter()
        .map(|g| {
            let mut a = Map::new();
            a.insert("ensure".into(), json!("present"));
            a.insert("gid".into(), json!(g.gid));
            (g.name, a)
        })
        .collect())
}

fn file(cx: &resources::Context, node_path: &str) -> Result<Instance> {
    let title =
        resources::registry::normalize_title("file", node_path).map_err(anyhow::Error::msg)?;
    let path = cx.path(&title)?;
    let mut a = Map::new();
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            a.insert("ensure".into(), json!("absent"));
            return Ok((title, a));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        a.insert("ensure".into(), json!("link"));
        let target = std::fs::read_link(&path)?;
        a.insert("target".into(), json!(target.to_string_lossy()));
        return Ok((title, a));
    }
    let ensure = if kind.is_dir() {
        "directory"
    } else if kind.is_file() {
        "file"
    } else {
        bail!(
            "{title} is neither a file, a directory nor a link: the file type does not manage it"
        );
    };
    a.insert("ensure".into(), json!(ensure));
    a.insert(
        "mode".into(),
        json!(format!("{:04o}", meta.permissions().mode() & 0o7777)),
    );
    // Named as the file type resolves names: the root's own databases,
    // then the host's, else the number.
    let (uid, gid) = (meta.uid(), meta.gid());
    let owner = resources::accounts::user_name_of(cx, uid)?
        .or_else(|| Some(nix::unistd::User::from_uid(uid.into()).ok()??.name))
        .unwrap_or_else(|| uid.to_string());
    let group = resources::accounts::group_name(cx, gid)?
        .or_else(|| Some(nix::unistd::Group::from_gid(gid.into()).ok()??.name))
        .unwrap_or_else(|| gid.to_string());
    a.insert("owner".into(), json!(owner));
    a.insert("group".into(), json!(group));
    Ok((title, a))
}

/// Installed packages (all, or `name`) with their versions, as `ensure`.
fn packages(name: Option<&str>) -> Result<Vec<Instance>> {
    let mut argv = vec![
        "dpkg-query",
        "-W",
        "-f=${Package}\\t${Status}\\t${Version}\\n",
    ];
    argv.extend(name);
    let cmd = resources::runner::Cmd::new(&argv);
    let out = resources::runner::Runner::default()
        .output(&cmd)
        .context("agent resource package reads dpkg's database (Debian family)")?;
    // dpkg-query exits 1 for a name it has never heard of: none installed.
    if !out.success() && !out.stderr.contains("no packages found") {
        bail!("{} failed: {}", cmd.display(), out.stderr.trim());
    }
    let mut found: Vec<Instance> = Vec::new();
    for line in out.stdout.lines() {
        let mut f = line.split('\t');
        let (Some(pkg), Some(status), Some(version)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let installed = resources::package::apt::parse_dpkg_query(&format!("{status}\t{version}"));
        let resources::package::Installed::Version(v) = installed else {
            continue;
        };
        // One entry per name when several architectures are installed.
        if found.iter().any(|(t, _)| t == pkg) {
            continue;
        }
        let mut a = Map::new();
        a.insert("ensure".into(), json!(v));
        found.push((pkg.to_string(), a));
    }
    Ok(found)
}

/// The marked entries of every user's crontab spool (Debian's
/// `crontabs/USER`, Red Hat's `cron/USER`: their default targets) and of
/// `/etc/cron.d/*` (its files named as `target`).
fn crons(cx: &resources::Context) -> Result<Vec<Instance>> {
    let mut out: Vec<Instance> = Vec::new();
    let mut files = Vec::new();
    for (dir, system) in [
        ("/var/spool/cron/crontabs", false),
        ("/var/spool/cron", false),
        ("/etc/cron.d", true),
    ] {
        let Ok(entries) = std::fs::read_dir(cx.path(dir)?) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            files.push((format!("{dir}/{n}"), n, system));
        }
    }
    for (node_path, file_name, system) in files {
        let path = cx.path(&node_path)?;
        let bytes = resources::atomic::read_optional(&path)?.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for (title, mut attrs) in resources::cron::instances(&text, system) {
            if system {
                attrs.insert("target".into(), json!(node_path));
            } else {
                attrs.insert("user".into(), json!(file_name));
            }
            if !out.iter().any(|(t, _)| *t == title) {
                out.push((title, attrs));
            }
        }
    }
    Ok(out)
}

/// Roles (not the built-in `pg_*` ones) or databases (not templates) of a
/// running server, with the connection attributes that were given, so the
/// declarations reach the same server.
fn postgres(args: &ResourceArgs) -> Result<Vec<Instance>> {
    let password = std::env::var("PGPASSWORD").ok();
    let conn = resources::pg::conn_from_attrs(
        args.pg_host.as_deref(),
        args.pg_port,
        args.pg_user.as_deref(),
        password.as_deref(),
    )?;
    let mut client = conn.connect()?;
    let mut out: Vec<Instance> = Vec::new();
    let connection = |a: &mut Map<String, Value>| {
        if let Some(h) = &args.pg_host {
            a.insert("host".into(), json!(h));
        }
        if let Some(p) = args.pg_port {
            a.insert("port".into(), json!(p));
        }
    };
    if args.type_name == "pg_role" {
        let rows = client
            .query(
                "SELECT rolname::text, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, \
                 rolreplication, rolconnlimit FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
                &[],
            )
            .map_err(|e| resources::pg::sql_error("reading pg_roles", e))?;
        for r in rows {
            let mut a = Map::new();
            a.insert("ensure".into(), json!("present"));
            for (i, flag) in [
                "login",
                "superuser",
                "createdb",
                "createrole",
                "replication",
            ]
            .iter()
            .enumerate()
            {
                a.insert((*flag).into(), json!(r.get::<_, bool>(i + 1)));
            }
            let limit: i32 = r.get(6);
            if limit != -1 {
                a.insert("connection_limit".into(), json!(limit));
            }
            connection(&mut a);
            out.push((r.get(0), a));
        }
    } else {
        let rows = client
            .query(
                "SELECT datname::text, pg_get_userbyid(datdba)::text, \
                 pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text \
                 FROM pg_database WHERE NOT datistemplate ORDER BY 1",
                &[],
            )
            .map_err(|e| resources::pg::sql_error("reading pg_database", e))?;
        for r in rows {
            let mut a = Map::new();
            a.insert("ensure".into(), json!("present"));
            a.insert("owner".into(), json!(r.get::<_, String>(1)));
            a.insert("encoding".into(), json!(r.get::<_, String>(2)));
            a.insert("lc_collate".into(), json!(r.get::<_, String>(3)));
            a.insert("lc_ctype".into(), json!(r.get::<_, String>(4)));
            connection(&mut a);
            out.push((r.get(0), a));
        }
    }
    Ok(out)
}
