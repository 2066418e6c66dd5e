//! `postgresql.*` facts for the local instance, read without connecting or
//! shelling out: the binaries' directory and major version from the
//! filesystem layout (Debian `/usr/lib/postgresql/<v>/bin`, PGDG
//! `/usr/pgsql-<v>/bin`), running postmasters from /proc, and recovery state
//! from the data dir (`standby.signal` / `recovery.conf`). No instance → no
//! `postgresql` fact at all (not an error).

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// Binaries found under the usual prefixes: (major version, bindir), newest first.
fn installed(prefixes: &[(&str, &str)]) -> Vec<(u32, PathBuf)> {
    let mut found = Vec::new();
    for (parent, pattern) in prefixes {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(v) = name.strip_prefix(pattern) else {
                continue;
            };
            let Ok(major) = v.parse::<u32>() else {
                continue;
            };
            let bindir = e.path().join("bin");
            if bindir.join("postgres").exists() {
                found.push((major, bindir));
            }
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

/// A running postmaster: its data dir (from `-D` or PGDATA) and pid.
#[derive(Debug, Clone, PartialEq)]
pub struct Postmaster {
    pub pid: u32,
    pub datadir: PathBuf,
}

/// Postmasters visible in `/proc`: processes running a `postgres` (or
/// `postmaster`) binary with a data directory argument (the server's
/// children rewrite theirs). The binary is told by one readlink of
/// `exe`, so only PostgreSQL's processes cost a read of their command
/// line; where `exe` may not be read (another user's process, without
/// privileges) the command line tells.
pub fn postmasters(proc_dir: &Path) -> Vec<Postmaster> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let dir = e.path();
        match std::fs::read_link(dir.join("exe")) {
            Ok(exe) => {
                let exe = exe.to_string_lossy();
                let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
                if !is_server_binary(exe) {
                    continue;
                }
            }
            // A kernel thread (no binary) or a process that just ended.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {}
        }
        let Ok(cmdline) = super::read_small(&dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(prog) = args.first() else { continue };
        if !is_server_binary(prog) {
            continue;
        }
        if let Some(datadir) = datadir_arg(&args) {
            out.push(Postmaster { pid, datadir });
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// `postgres` or `postmaster`, by path or bare name.
fn is_server_binary(prog: &str) -> bool {
    let name = prog.rsplit('/').next().unwrap_or(prog);
    name == "postgres" || name == "postmaster"
}

/// `-D DIR`, `-DDIR` or `--data-directory=DIR`... as postgres reads them.
fn datadir_arg(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "-D" {
            return it.next().map(PathBuf::from);
        }
        if let Some(d) = a.strip_prefix("-D") {
            return Some(PathBuf::from(d));
        }
        if let Some(d) = a.strip_prefix("--data-directory=") {
            return Some(PathBuf::from(d));
        }
    }
    None
}

/// True when the data dir is set up as a standby.
pub fn in_recovery(datadir: &Path) -> bool {
    datadir.join("standby.signal").exists() || datadir.join("recovery.conf").exists()
}

/// The `postgresql` fact, or `None` when no PostgreSQL is installed.
pub fn collect() -> Option<Map<String, Value>> {
    let bins = installed(&[("/usr/lib/postgresql", ""), ("/usr", "pgsql-")]);
    let running = postmasters(Path::new("/proc"));
    if bins.is_empty() && running.is_empty() {
        return None;
    }
    let mut pg = Map::new();
    if let Some((major, bindir)) = bins.first() {
        pg.insert("version".into(), json!(major.to_string()));
        pg.insert("major".into(), json!(major));
        pg.insert("bindir".into(), json!(bindir.display().to_string()));
    }
    let instances: Vec<Value> = running
        .iter()
        .map(|p| {
            json!({
                "pid": p.pid,
                "datadir": p.datadir.display().to_string(),
                "in_recovery": in_recovery(&p.datadir),
                "version": std::fs::read_to_string(p.datadir.join("PG_VERSION")).ok().map(|v| v.trim().to_string()),
            })
        })
        .collect();
    // The local instance is the only running one; with several (test
    // machines), `instances` lists them and no single datadir is claimed.
    if let [only] = running.as_slice() {
        pg.insert("datadir".into(), json!(only.datadir.display().to_string()));
        pg.insert("in_recovery".into(), json!(in_recovery(&only.datadir)));
    }
    pg.insert("instances".into(), Value::Array(instances));
    let mut out = Map::new();
    out.insert("postgresql".into(), Value::Object(pg));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_installed_binaries_and_datadir_args() {
        let found = installed(&[("/usr/lib/postgresql", "")]);
        assert_eq!(
            found.first().map(|f| f.0),
            Some(15),
            "PostgreSQL 15 is on this machine"
        );
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            datadir_arg(&a(&["postgres", "-D", "/d", "-p", "1"])),
            Some(PathBuf::from("/d"))
        );
        assert_eq!(
            datadir_arg(&a(&["postgres", "-D/x"])),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(datadir_arg(&a(&["postgres", "-p", "1"])), None);
    }

    #[test]
    fn sees_a_running_cluster_and_its_recovery_state() {
        let dir = tempfile::tempdir().unwrap();
        let pg = resources::pg::testing::TestCluster::primary(dir.path(), "127.0.0.1");
        let found = postmasters(Path::new("/proc"));
        let mine = found
            .iter()
            .find(|p| p.datadir == pg.datadir)
            .expect("our postmaster is listed");
        assert!(mine.pid > 0);
        assert!(!in_recovery(&pg.datadir));
        std::fs::write(dir.path().join("standby.signal"), "").unwrap();
        assert!(in_recovery(dir.path()));
    }
}
