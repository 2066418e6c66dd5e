//! The user's reference for every resource type: what `agent describe`
//! prints and, row for row, the README's "Resource types" table (a test in
//! the agent's tests compares the two, so they cannot drift). Cells are the
//! README's Markdown, pipes escaped as `\\|`.

/// One type's reference.
#[derive(Debug, Clone, Copy)]
pub struct TypeDoc {
    /// The name used in manifests (`- file: /etc/motd`).
    pub name: &'static str,
    /// Its attributes: `` `name` (values, default) ``, comma-separated.
    pub attributes: &'static str,
    /// What it does and how.
    pub notes: &'static str,
}

/// Every type, in the README's order.
pub const TYPES: &[TypeDoc] = &[
    TypeDoc {
        name: "file",
        attributes: r#"`ensure` (file\|directory\|link\|absent\|present, default file), `content`, `template`, `source`, `target`, `owner`, `group`, `mode` ("0644"), `backup` (true), `force` (false), `validate_cmd`, `validate_replacement` (%)"#,
        notes: r#"Title = absolute node path. Atomic replace (temp file, fsync, rename, fsync dir); old content saved in the backup store; links swapped atomically, never followed; replacing/removing a directory needs `force`. Sensitive content is never printed and new files holding it are 0600. Mode/owner managed only when given. `validate_cmd` (`haproxy -c -f %`) checks new content in a private temp file before anything is written: a non-zero exit fails the resource with the command's output and changes nothing (no backup either). Autorequires `file[parent]`, `user[owner]`, `group[group]`."#,
    },
    TypeDoc {
        name: "host",
        attributes: r#"`ensure` (present\|absent), `ip`, `host_aliases` (string or list), `comment`, `target` (/etc/hosts)"#,
        notes: r#"Title = canonical name. Writes `ip<TAB>name<TAB>aliases`; only lines whose name field is the title are touched; every other line is kept byte for byte."#,
    },
    TypeDoc {
        name: "cron",
        attributes: r#"`ensure`, `command`, `user` (root), `schedule` (5 fields or `@weekly`…) or `minute`/`hour`/`monthday`/`month`/`weekday`, `environment`, `target`"#,
        notes: r#"Title = entry name, marked `# agent: <title>`; only marked entries are ever changed. Default target: the user's crontab spool (`/var/spool/cron/crontabs/<user>` on Debian, mode 0600); `/etc/cron.d/*` gets the user field. Schedules are validated with the `cron` crate at compile time."#,
    },
    TypeDoc {
        name: "exec",
        attributes: r#"`command` (default: title), `creates`, `unless`, `onlyif`, `refreshonly`, `cwd`, `user`, `environment`, `timeout` (300 s), `path`"#,
        notes: r#"`/bin/sh -c` with `AGENT_ROOT` set. A non-zero exit fails with its stderr in the report. Runs on refresh (guards still apply)."#,
    },
    TypeDoc {
        name: "properties",
        attributes: r#"`values` (key → value), `remove` (keys), `mode`, `owner`, `group`, `ensure` (present), `encoding` (`utf-8` default, or `iso-8859-1`)"#,
        notes: r#"Title = a Java `.properties` file (e.g. Stash's `stash-config.properties`). Read like `java.util.Properties.load` (escaped and plain spellings compare equal) in the encoding the application reads it with: `utf-8` as Stash does (a file that is not UTF-8 reads as ISO-8859-1), or `iso-8859-1` as `Properties.load(InputStream)` (a raw UTF-8 `ü` is then not in sync); written values are ASCII with `\uXXXX` escapes, read alike by both; each key's line is replaced in place, every other line and comment kept; minimal escaping so a JDBC url stays readable. Sensitive values redacted; a new file holding one is 0600. `owner`/`group` as `file`'s: an unknown user or group fails the check (nothing written); the new file is given its owner (declared, else the old file's) before it is renamed in; autorequires `user[owner]`, `group[group]`."#,
    },
    TypeDoc {
        name: "group",
        attributes: r#"`ensure` (present\|absent), `gid`, `system` (false), `manage_existing` (false)"#,
        notes: r#"Title = group name. groupadd/groupmod/groupdel, with `-R <root>` under `--root`; read from NSS on the host, from `<root>/etc/group` under a root. A group the agent did not create (recorded in `<state>/created_accounts`) is never changed or removed without `manage_existing: true`. `gid` managed only when given; `system` only on creation."#,
    },
    TypeDoc {
        name: "user",
        attributes: r#"`ensure` (present\|absent), `uid`, `gid` (primary group, name or number), `groups` (list), `membership` (minimum\|inclusive, default minimum), `home`, `shell`, `comment`, `system` (false), `managehome` (false), `manage_existing` (false)"#,
        notes: r#"Title = user name. useradd/usermod/userdel, with `-R <root>` under `--root`; read from NSS (groups: getgrouplist) on the host, from `<root>/etc/passwd` and `/etc/group` under a root. Only declared attributes are managed. A user the agent did not create is never changed or removed without `manage_existing: true`; its home is created (`-m`), moved or deleted only with `managehome: true`. Autorequires `group[gid]`, `group[each of groups]`."#,
    },
    TypeDoc {
        name: "package",
        attributes: r#"`ensure` (present\|installed\|latest\|absent\|purged\|*version*), `provider`"#,
        notes: r#"`apt` (dpkg-query, apt-cache policy, apt-get non-interactive; `apt-get update` first when the lists in /var/lib/apt/lists are missing or older than a day, once a day per process at most), `dnf`, `yum` (rpm -q, dnf). Default from `os.family`. Packages are host-global: checked and changed on the host even under `--root`."#,
    },
    TypeDoc {
        name: "service",
        attributes: r#"`ensure` (running\|stopped), `enable`, `restart` (restart\|reload: what a refresh does), `provider`, `package`, `timeout` (60 s); pg_ctl: `datadir`, `bindir`, `logfile`, `options`; command: `start`, `stop`, `status`, `reload`"#,
        notes: r#"`systemd` (default when PID 1 is systemd), `pg_ctl` (a PostgreSQL cluster by data dir, as the postgres user), `command` (shell lines with `AGENT_ROOT`; default without systemd). Without `provider:`, a service may carry both: where PID 1 is systemd the unit named by the title runs it (its command lines are for other hosts), elsewhere its lines do (the Patroni roles use the packaged `etcd`/`patroni` units this way). Refresh: running → restart/reload, stopped → start. A service started in this run is not restarted again by a refresh. Autorequires `package[..]` and, for pg_ctl, `pg_cluster[datadir]`."#,
    },
    TypeDoc {
        name: "patroni_config",
        attributes: r#"title = the cluster (Patroni's scope); `api` (`http://host:port` of a node's REST API), `settings` (map, nested as `bootstrap.dcs`), `username`/`password` (Sensitive: `restapi.authentication`), `timeout` (30 s), `standby_cluster` (map: `host`, `port`, `primary_slot_name`, `create_replica_methods`, `restore_command`, `archive_cleanup_command`, `recovery_min_apply_delay`)"#,
        notes: r#"Patroni's dynamic configuration: `GET /config`, compare the declared keys (others left alone; `on`/`true`, `10`/`"10"` compare equal), `PATCH /config` with the difference only; `--noop` shows each differing key. Keys are checked at compile time against Patroni 3.0's (`ttl`, `loop_wait`, `retry_timeout`, `maximum_lag_on_failover`, `synchronous_mode`, `synchronous_node_count`, `failsafe_mode`, `postgresql.{parameters,use_pg_rewind,use_slots,pg_hba,pg_ident,recovery_conf}`, `standby_cluster`, `slots`, ...): an unknown key or a wrong type is an error with a did-you-mean hint, and `loop_wait + 2 × retry_timeout` must fit in `ttl`. Waits up to `timeout` for the API and for the cluster's configuration (a node just started, a cluster bootstrapping). `standby_cluster` (a standby cluster's source, keys checked the same way) is converged only while the cluster has one — never added to a cluster without it, which would demote a site promoted by `agent dr promote`."#,
    },
    TypeDoc {
        name: "pg_cluster",
        attributes: r#"title = data dir; `bindir`, `encoding` (UTF8), `locale` (C), `auth_local` (peer), `auth_host` (scram-sha-256), `superuser` (postgres), `superuser_password`, `data_checksums`"#,
        notes: r#"initdb as the postgres OS user (password through a 0600 file, removed after). Never touches an existing cluster; refuses a non-empty dir without `PG_VERSION`."#,
    },
    TypeDoc {
        name: "conf",
        attributes: r#"title = `<path>:<key>` or any name; `path` (else from the title), `key` (else from the title, or the title), `format` (redis\|pgpool\|ini), `value` (string, number or boolean), `ensure` (present\|absent), `section` (ini only), `replace` (true; false = managed once), `validate_cmd`, `validate_replacement` (%)"#,
        notes: r#"One setting in a daemon's own config file, read as the daemon reads it: `redis` (`key args…`, Redis's quoting; keys of several words like `sentinel down-after-milliseconds mymaster`), `pgpool` (`key = 'value'`, PostgreSQL's lexer), `ini` (`[section]`, `key = value`). The last active line of the key is rewritten in place (a trailing comment kept) or the line added (ini: at the end of its section); `absent` removes every line of it; every other line stays byte for byte. The file keeps its owner and mode; several `conf` of one file are one staged write. `replace: false` (Sentinel's `sentinel monitor` after a failover): written when missing or never written by the agent (a packaged default is replaced once, recorded in `<state>/conf_written`); after that the daemon's value is neither drift nor changed. Sensitive values redacted (a new file holding one is 0600). `validate_cmd` as `file`'s, on the whole new file."#,
    },
    TypeDoc {
        name: "pg_conf",
        attributes: r#"title = a name; `datadir`, `file` (`<datadir>/postgresql.conf`), `settings` (map), `bindir`, `restart_log`, `host`, `port`, `superuser`, `superuser_password`"#,
        notes: r#"Edits the last active line of each setting (comments kept) or appends it. Refuses a data dir Patroni runs (it owns the file there: see Patroni + etcd). A running server is reloaded, or restarted when `pg_settings.context` says `postmaster`; change lines say `(reload)` / `(restart)`. Unknown names are refused while the server runs."#,
    },
    TypeDoc {
        name: "pg_hba",
        attributes: r#"title = data dir; `file`, `rules` (lines like `host stashdb stashuser all trust` or `{type, database, user, address, method, options}`), `defaults` (true), connection attributes"#,
        notes: r#"Manages the whole file, in order, after the agent's own rules (`local all postgres peer`, `host all postgres 127.0.0.0/8 scram-sha-256`, `host all postgres ::1/128 scram-sha-256`). The server checks the new file (`pg_hba_file_rules`) before it is loaded; a rejected file is restored byte for byte and the resource fails. `trust` for a non-local address is warned about."#,
    },
    TypeDoc {
        name: "pg_role",
        attributes: r#"title = role; `ensure`, `login` (true), `superuser`, `createdb`, `createrole`, `replication`, `password` (Sensitive), `connection_limit`, `host`, `port`, `connect_as`, `superuser_password`"#,
        notes: r#"Passwords compared with the stored SCRAM/md5 verifier, never printed; set as a SCRAM verifier computed by the agent (the plain password never reaches SQL text or the server log)."#,
    },
    TypeDoc {
        name: "pg_database",
        attributes: r#"title = database; `ensure`, `owner`, `encoding` (UTF8), `locale`/`lc_collate`/`lc_ctype`, `template` (template0), connection attributes"#,
        notes: r#"Owner converged; a different encoding or locale of an existing database is an error that says why."#,
    },
    TypeDoc {
        name: "pg_standby",
        attributes: r#"title = data dir; `primary_host`, `primary_port`, `replication_user`, `replication_password` (Sensitive), `bindir`, `method` (basebackup\|restore), `backup_dir`, `trigger_file`, `application_name`, `content` (from `template:`)"#,
        notes: r#"Seeds an empty data dir with `pg_basebackup --checkpoint=fast` (or copies the newest `pg_backup` backup) through a temp dir: never half-seeded. Writes `recovery.conf` for ≤ 11, or `standby.signal` + settings in `postgresql.auto.conf` for 12+ (templates `recovery.conf.hbs` / `standby.auto.conf.hbs`, chosen by `pgsql_server::version`). A promoted standby stays a primary: the agent never demotes it."#,
    },
    TypeDoc {
        name: "pg_backup",
        attributes: r#"title = name; `backup_dir`, `keep` (4), `schedule` (@weekly), `user` (root), `host`, `port`, `replication_user`, `password` (Sensitive), `bindir`, `script`, `ensure` (present\|absent: no entry, script or pgpass; the backups stay), `initial_backup` (false)"#,
        notes: r#"Installs a script (pg_basebackup into `<dir>/<UTC time>.partial`, `pg_verifybackup`, rename, keep the newest N), its 0600 pgpass file, and a marked crontab entry. The seed's weekly backup; `pg_standby` `method: restore` reads it. `initial_backup: true` also runs the script during the apply when the dir holds no complete backup (a change `initial backup` until one is there); the script finds its node paths under `$AGENT_ROOT`, which the agent sets under `--root` (cron does not), so this works in a sandbox too."#,
    },
    TypeDoc {
        name: "x509_cert",
        attributes: r#"`path` (the certificate, default: the title), `key_path`, `pem_path` (optional: certificate then key, for HAProxy's `crt`), `common_name`, `subject_alt_names` (DNS names and IP addresses), `days` (365), `key_type` (ecdsa-p256\|ecdsa-p384\|ed25519, default ecdsa-p256), `renew_before` (30d), `ensure` (present\|absent), `owner`, `group`"#,
        notes: r#"A self-signed key and certificate made with rcgen. Made only when missing or unreadable, when the key is not the certificate's or not `key_type`, when the CN or the SANs differ from the manifest, or when the certificate expires within `renew_before`; a `days` not longer than `renew_before` (renewed on every run) is refused at compile time. Key and pem 0600, certificate 0644, `owner`/`group` on all three. The key is never printed (the report says `created key`; it is registered as a secret). Atomic, durable writes, old files saved in the backup store; `absent` removes the three. Autorequires `file[dir]`, `user[owner]`, `group[group]`."#,
    },
    TypeDoc {
        name: "port_free",
        attributes: r#"title = a name; `port`, `address` (default: any), `allow` (process names: the role's own daemon)"#,
        notes: r#"A preflight that changes nothing: the check fails, naming the pid and command, when a process not in `allow` listens on the TCP port (on `address` or the wildcard address), so the run stops there and what requires it is skipped. Listeners from `/proc/net/tcp{,6}`, holders from `/proc/<pid>/fd` (procfs). Host-global, even under `--root`."#,
    },
];

/// The reference of `name`.
pub fn of(name: &str) -> Option<&'static TypeDoc> {
    TYPES.iter().find(|d| d.name == name)
}

impl TypeDoc {
    /// The README row of this type.
    pub fn markdown_row(&self) -> String {
        format!("| `{}` | {} | {} |", self.name, self.attributes, self.notes)
    }

    /// Each attribute and what the row says of it in parentheses (values,
    /// default), split at the commas outside parentheses.
    pub fn attribute_list(&self) -> Vec<(String, String)> {
        let text = plain(self.attributes);
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut item = String::new();
        for c in text.chars().chain(std::iter::once(',')) {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if c == ',' && depth == 0 {
                let it = item.trim();
                if !it.is_empty() {
                    let (names, detail) = match it.find('(') {
                        Some(i) => (it[..i].trim(), it[i + 1..].trim_end_matches(')').trim()),
                        None => (it, ""),
                    };
                    // `locale`/`lc_collate`/`lc_ctype`: one entry each.
                    for n in names.split('/') {
                        out.push((n.trim().to_string(), detail.to_string()));
                    }
                }
                item.clear();
            } else {
                item.push(c);
            }
        }
        out
    }
}

/// A cell as plain text: no backticks, pipes unescaped.
pub fn plain(md: &str) -> String {
    md.replace("\\|", "|").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_type_has_a_reference_and_no_other() {
        let mut documented: Vec<&str> = TYPES.iter().map(|d| d.name).collect();
        let mut registered = crate::registry::names();
        documented.sort_unstable();
        registered.sort_unstable();
        assert_eq!(documented, registered);
    }

    #[test]
    fn attributes_split_outside_parentheses() {
        let host = of("host").unwrap();
        let names: Vec<String> = host.attribute_list().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["ensure", "ip", "host_aliases", "comment", "target"]);
        let ensure = &host.attribute_list()[0];
        assert_eq!(ensure.1, "present|absent");
    }
}
