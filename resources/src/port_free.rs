//! `port_free`: a preflight that changes nothing. Its check fails when a
//! TCP port a role needs is already listened on by a process that is not
//! the role's own daemon, naming that process (pid and command), so the
//! run stops there and the resources that require it are skipped — the
//! seed's init script tested its ports the same way before starting
//! anything.
//!
//! Listeners come from `/proc/net/tcp` and `/proc/net/tcp6` (state
//! LISTEN), their holders from the `socket:[inode]` links in
//! `/proc/<pid>/fd`, both read with the `procfs` crate. Ports are
//! host-global: the check looks at the host's sockets even under `--root`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;

use crate::core::{Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};

/// Attributes of `- port_free: <a name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The TCP port that must be free (1–65535).
    port: u16,
    /// The address the role binds: only a listener there, or on the
    /// wildcard address, is in its way. Unset (or `0.0.0.0` / `::`): any
    /// listener on the port is.
    address: Option<String>,
    /// Process names (`comm`, or the file name of the executable) that may
    /// hold the port: the role's own daemon (`haproxy`), already running
    /// from an earlier run.
    #[serde(default)]
    allow: Vec<String>,
}

/// A typed `port_free` resource.
#[derive(Debug)]
pub struct PortFree {
    id: ResourceId,
    port: u16,
    /// `None`: any address.
    address: Option<IpAddr>,
    allow: BTreeSet<String>,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    if p.port == 0 {
        return Err(invalid(
            "port 0 is not a port a role binds (1-65535)".into(),
        ));
    }
    let address = match p.address.as_deref().map(str::trim) {
        None | Some("" | "*" | "any") => None,
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => None,
            Ok(ip) => Some(ip),
            Err(_) => {
                return Err(invalid(format!(
                    "address '{a}' is not an IP address (hint: 127.0.0.94, ::1, or leave it out for any)"
                )))
            }
        },
    };
    let mut allow = BTreeSet::new();
    for name in p.allow {
        let name = name.trim().to_string();
        if name.is_empty() || name.contains('/') {
            return Err(invalid(format!(
                "allow: '{name}' is not a process name (like haproxy)"
            )));
        }
        allow.insert(name);
    }
    Ok(Box::new(PortFree {
        id: id.clone(),
        port: p.port,
        address,
        allow,
    }))
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// `/proc/<pid>/stat`'s command name (15 characters at most).
    pub comm: String,
    /// The file name of `/proc/<pid>/exe`, when it can be read.
    pub exe: Option<String>,
}

/// A listener in the way, and who holds it.
#[derive(Debug)]
struct Listener {
    local: std::net::SocketAddr,
    inode: u64,
}

/// The listening TCP sockets on `port` (IPv4-mapped IPv6 addresses given
/// as IPv4).
fn listeners(port: u16) -> Result<Vec<Listener>, String> {
    use procfs::net::TcpState;
    let mut out = Vec::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()] {
        // A host without IPv6 has no tcp6 table.
        let entries = match table {
            Ok(e) => e,
            Err(procfs::ProcError::NotFound(_)) => continue,
            Err(e) => return Err(e.to_string()),
        };
        for e in entries {
            if e.state != TcpState::Listen || e.local_address.port() != port {
                continue;
            }
            let mut local = e.local_address;
            if let IpAddr::V6(v6) = local.ip() {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    local.set_ip(IpAddr::V4(v4));
                }
            }
            out.push(Listener {
                local,
                inode: e.inode,
            });
        }
    }
    Ok(out)
}

/// True when a listener on `on` stops the role binding `want` (`None`:
/// any address). A wildcard listener is in the way of every address; an
/// IPv6 wildcard is taken as dual-stack (Linux's default).
fn in_the_way(want: Option<IpAddr>, on: IpAddr) -> bool {
    match want {
        None => true,
        Some(w) => on == w || (on.is_unspecified() && (on.is_ipv6() || w.is_ipv4())),
    }
}

/// Every process holding the socket `inode` (forked children share it).
pub fn holders(inode: u64) -> Vec<Holder> {
    let mut out = Vec::new();
    let Ok(all) = procfs::process::all_processes() else {
        return out;
    };
    for proc in all.flatten() {
        // A process that exits meanwhile, or whose fds we may not read.
        let Ok(fds) = proc.fd() else { continue };
        let holds = fds
            .flatten()
            .any(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(i) if i == inode));
        if !holds {
            continue;
        }
        let comm = proc.stat().map(|s| s.comm).unwrap_or_default();
        let exe = proc
            .exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        out.push(Holder {
            pid: proc.pid,
            comm,
            exe,
        });
    }
    out
}

impl PortFree {
    fn allowed(&self, h: &Holder) -> bool {
        self.allow.contains(&h.comm) || h.exe.as_ref().is_some_and(|e| self.allow.contains(e))
    }

    fn wanted(&self) -> String {
        match self.address {
            None => format!("port {}", self.port),
            Some(IpAddr::V6(a)) => format!("[{a}]:{}", self.port),
            Some(a) => format!("{a}:{}", self.port),
        }
    }
}

impl Resource for PortFree {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    /// Fails when a listener in the way is held by a process not allowed;
    /// else in sync. Never a change: there is nothing to apply.
    fn check(&self, _cx: &Context) -> Result<Plan, ResourceError> {
        let found = listeners(self.port).map_err(|e| {
            ResourceError::Failed(format!("{}: reading /proc/net/tcp: {e}", self.id))
        })?;
        let mut blocking = Vec::new();
        for l in found
            .iter()
            .filter(|l| in_the_way(self.address, l.local.ip()))
        {
            let hs = holders(l.inode);
            if hs.is_empty() {
                blocking.push(format!(
                    "a process the agent cannot see (socket inode {}) listens on {}",
                    l.inode, l.local
                ));
            }
            for h in hs.iter().filter(|h| !self.allowed(h)) {
                blocking.push(format!("pid {} ({}) listens on {}", h.pid, h.comm, l.local));
            }
        }
        if blocking.is_empty() {
            return Ok(Plan::in_sync());
        }
        blocking.dedup();
        let allowed: Vec<&str> = self.allow.iter().map(String::as_str).collect();
        Err(ResourceError::Failed(format!(
            "{}: {} is not free: {}; {} (hint: stop it, or name it in allow: if it is the role's own daemon)",
            self.id,
            self.wanted(),
            blocking.join("; "),
            if allowed.is_empty() {
                "no process is allowed".to_string()
            } else {
                format!("allowed: {}", allowed.join(", "))
            }
        )))
    }

    fn apply(&self, _cx: &Context, _plan: Plan) -> Result<(), ResourceError> {
        // `check` never plans a change.
        Ok(())
    }

    fn check_only_reads(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::TcpListener;

    fn port_free(attrs: serde_json::Value) -> Box<dyn Resource> {
        build(
            &crate::testing::decl("port_free", "https", attrs),
            &TypeEnv::default(),
        )
        .unwrap()
    }

    /// This test process's command name, as /proc shows it.
    fn own_comm() -> String {
        procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .comm
    }

    #[test]
    fn a_port_held_by_another_process_fails_naming_it() {
        let (_dir, cx) = crate::testing::sandbox(&[]);
        let held = TcpListener::bind("127.0.0.94:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let r = port_free(json!({"port": port, "address": "127.0.0.94", "allow": ["haproxy"]}));
        let e = r.check(&cx).unwrap_err().to_string();
        let me = format!("pid {} ({})", std::process::id(), own_comm());
        assert!(
            e.contains(&me)
                && e.contains(&format!("127.0.0.94:{port} is not free"))
                && e.contains("allowed: haproxy")
                && e.starts_with("port_free[https]: "),
            "{e}"
        );
        // Any address (the default) is in the way too.
        let any = port_free(json!({"port": port}));
        assert!(any.check(&cx).unwrap_err().to_string().contains(&me));
        // Another address on the same port is not.
        let other = port_free(json!({"port": port, "address": "127.0.0.95"}));
        assert!(other.check(&cx).unwrap().is_empty());
    }

    #[test]
    fn a_wildcard_listener_is_in_the_way_of_every_address() {
        let (_dir, cx) = crate::testing::sandbox(&[]);
        let held = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let r = port_free(json!({"port": port, "address": "127.0.0.96"}));
        let e = r.check(&cx).unwrap_err().to_string();
        assert!(e.contains(&format!("listens on 0.0.0.0:{port}")), "{e}");
    }

    #[test]
    fn the_roles_own_daemon_is_allowed_by_name() {
        let (_dir, cx) = crate::testing::sandbox(&[]);
        let held = TcpListener::bind("127.0.0.95:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let r = port_free(json!({"port": port, "address": "127.0.0.95", "allow": [own_comm()]}));
        assert!(r.check(&cx).unwrap().is_empty());
    }

    #[test]
    fn a_free_port_passes_and_nothing_is_ever_changed() {
        let (_dir, cx) = crate::testing::sandbox(&[]);
        // Held, then released: free now (nothing else binds .96 here).
        let port = {
            let l = TcpListener::bind("127.0.0.96:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let r = port_free(json!({"port": port, "address": "127.0.0.96"}));
        let plan = r.check(&cx).unwrap();
        assert!(plan.is_empty(), "in sync: no change, nothing to apply");
        assert!(r.check_only_reads(), "checked ahead safely: reads only");
        // Noop-safe: a check leaves the root as it was.
        assert_eq!(std::fs::read_dir(&cx.root).unwrap().count(), 0);
        // A connected (not listening) socket on the port is not in the way.
        let server = TcpListener::bind("127.0.0.96:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let r = port_free(json!({"port": client_port, "address": "127.0.0.96"}));
        assert!(r.check(&cx).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_refused_at_compile_time() {
        let err = |attrs: serde_json::Value| {
            build(
                &crate::testing::decl("port_free", "p", attrs),
                &TypeEnv::default(),
            )
            .map(|_| ())
            .unwrap_err()
            .to_string()
        };
        assert!(err(json!({"port": 0})).contains("1-65535"));
        assert!(err(json!({"port": 70000})).contains("port_free[p]"));
        assert!(err(json!({"port": 80, "address": "local host"})).contains("hint"));
        assert!(err(json!({"port": 80, "allow": ["/usr/sbin/haproxy"]})).contains("process name"));
        assert!(err(json!({"port": 80, "ports": 1})).contains("unknown field"));
        assert!(in_the_way(None, "127.0.0.1".parse().unwrap()));
        assert!(in_the_way(
            Some("127.0.0.94".parse().unwrap()),
            "::".parse().unwrap()
        ));
        assert!(!in_the_way(
            Some("::1".parse().unwrap()),
            "0.0.0.0".parse().unwrap()
        ));
    }
}
