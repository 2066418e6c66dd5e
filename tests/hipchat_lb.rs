//! `roles/hipchat_lb` for real: HAProxy terminating TLS on 127.0.0.121 in
//! front of two tiny HTTP backends this test serves (127.0.0.122, .123),
//! applied from the bundled role, profile, template and Hiera as node
//! `hipchat-lb` in its own `--root`. Checks: the first apply brings HAProxy
//! up; HTTPS answers from both backends in turn (round robin), HTTP
//! redirects to HTTPS; a second apply changes nothing; a broken backend in
//! Hiera is refused by `validate_cmd` (`haproxy -c`), the old haproxy.cfg
//! stays byte-identical and HAProxy keeps serving; a config change reloads
//! HAProxy (`-sf`) without a failed request, and so do new SANs (a new
//! certificate, served); killing a backend fails no
//! request (redispatch, retries) and the health check marks it down in
//! about a second (the figures are printed); `hipchat_lb::ensure: stopped`
//! stops HAProxy and keeps its files; and in a second sandbox the
//! `port_free` preflight stops the run, naming this process, which holds
//! the HTTPS port, before HAProxy is started.
//!
//! A guard kills every HAProxy the test saw and stops the backends, also
//! when an assertion fails.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{ensure_package, Run, Sandbox};

const LB: &str = "127.0.0.121";
const NODE: &str = "hipchat-lb";

/// A tiny HTTP server answering 200 with its name to every request
/// (HAProxy's `GET /health` included), until stopped: then its listener is
/// closed and connections to it are refused, like a killed node's.
struct Backend {
    name: String,
    ip: String,
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(name: &str, ip: &str) -> Backend {
        let listener = TcpListener::bind((ip, 0)).expect("bind a backend");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, body) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        // One thread per connection: a slow client never
                        // delays HAProxy's health checks.
                        let body = body.clone();
                        std::thread::spawn(move || answer(conn, &body));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            // The listener is dropped here: the node is gone.
        });
        Backend {
            name: name.into(),
            ip: ip.into(),
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn answer(mut conn: TcpStream, body: &str) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Kills every HAProxy seen in the sandboxes' pid files when dropped.
struct Guard {
    pidfiles: Vec<PathBuf>,
    seen: Mutex<BTreeSet<i32>>,
}

impl Guard {
    fn pids(&self) -> BTreeSet<i32> {
        let mut now = BTreeSet::new();
        for f in &self.pidfiles {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            now.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
        self.seen.lock().unwrap().extend(now.iter().copied());
        now
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.pids();
        for pid in self.seen.lock().unwrap().iter() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
        }
    }
}

fn node_hiera(http: u16, https: u16, backends: &[&Backend], extra: &str) -> String {
    let mut s = format!(
        "hipchat_lb::ip: {LB}\nhipchat_lb::http_port: {http}\nhipchat_lb::https_port: {https}\n\
         hipchat_lb::subject_alt_names: [hipchat.example, {LB}]\nhipchat_lb::backends:\n"
    );
    for b in backends {
        s += &format!("  - {{name: {}, ip: {}, port: {}}}\n", b.name, b.ip, b.port);
    }
    s + extra
}

fn apply(sb: &Sandbox) -> Run {
    sb.agent(&["apply", "--detailed-exitcodes", "--node", NODE])
}

/// One request with curl: (HTTP status, body); status 0 when curl failed.
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code} %{redirect_url}",
        ])
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = tail.split(' ').next().unwrap_or("").parse().unwrap_or(0);
    (
        code,
        format!("{body}{}", tail.split_once(' ').map(|x| x.1).unwrap_or("")),
    )
}

/// Requests `url` in a loop on a thread until `stop`: (done, errors).
fn traffic(url: String, stop: Arc<AtomicBool>) -> JoinHandle<(usize, usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut done, mut errors, mut seen) = (0, 0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let (code, body) = get(&url);
            done += 1;
            if code != 200 {
                errors += 1;
                seen.push(format!("{code} {body}"));
            }
        }
        (done, errors, seen)
    })
}

/// The status (UP, DOWN, ...) of `server` in HAProxy's `show stat`.
fn server_status(sock: &std::path::Path, server: &str) -> Option<String> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.write_all(b"show stat\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.len() > 17 && f[0] == "hipchat_nodes" && f[1] == server)
        .map(|f| f[17].to_string())
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn haproxy_terminates_tls_balances_survives_a_dead_node_and_refuses_a_broken_config() {
    ensure_package("haproxy", "/usr/sbin/haproxy");
    ensure_package("curl", "/usr/bin/curl");
    let started = Instant::now();

    let mut b1 = Backend::start("hipchat1", "127.0.0.122");
    let mut b2 = Backend::start("hipchat2", "127.0.0.123");
    let free = || {
        TcpListener::bind((LB, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (http, https) = (free(), free());

    let sb = Sandbox::bundled();
    let other = Sandbox::bundled();
    let guard = Guard {
        pidfiles: vec![
            sb.root().join("var/run/haproxy.pid"),
            other.root().join("var/run/haproxy.pid"),
        ],
        seen: Mutex::new(BTreeSet::new()),
    };
    let hiera = format!("hiera/data/nodes/{NODE}.yaml");
    let good = node_hiera(http, https, &[&b1, &b2], "");
    sb.site_file(&hiera, &good);

    // First apply: certificate, config, HAProxy up.
    let run = apply(&sb);
    assert_eq!(run.code, 2, "first apply: {}", run.all());
    let first_pids = guard.pids();
    assert!(!first_pids.is_empty(), "a pid file: {}", run.all());
    // HAProxy's own check of what the role wrote: valid, not one warning.
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(sb.root().join("etc/haproxy/haproxy.cfg"))
        .env("AGENT_ROOT", sb.root())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr).into_owned()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && !said.contains("WARNING"),
        "haproxy -c: {said}"
    );
    let url = format!("https://{LB}:{https}/");
    wait_for("HTTPS through HAProxy", 10, || get(&url).0 == 200);

    // The certificate from Hiera's CN/SANs: a client trusting exactly it
    // verifies the server at its IP address; the pem is 0600.
    let crt = sb.root().join("etc/haproxy/ssl/hipc.crt");
    let verified = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(&crt)
        .arg(&url)
        .output()
        .unwrap();
    assert!(verified.status.success(), "curl --cacert: {verified:?}");
    let pem = std::fs::metadata(sb.root().join("etc/haproxy/ssl/hipc.pem")).unwrap();
    assert_eq!(pem.permissions().mode() & 0o777, 0o600);

    // Round robin: one request after another, the nodes take turns.
    let names: Vec<String> = (0..6).map(|_| get(&url).1).collect();
    let count = |n: &str| names.iter().filter(|x| *x == n).count();
    assert!(
        count("hipchat1") == 3 && count("hipchat2") == 3 && names[0] != names[1],
        "both backends answer in turn: {names:?}"
    );
    // HTTP sends the client to HTTPS.
    let (code, location) = get(&format!("http://{LB}:{http}/chat"));
    assert_eq!(code, 301, "{location}");
    assert!(location.starts_with(&format!("https://{LB}")), "{location}");

    // Second apply: nothing to do (HAProxy, its own daemon, holds the ports).
    let run = apply(&sb);
    assert_eq!(run.code, 0, "second apply changes nothing: {}", run.all());

    // A broken backend: refused by haproxy -c, nothing written, still serving.
    let cfg = sb.root().join("etc/haproxy/haproxy.cfg");
    let before = std::fs::read(&cfg).unwrap();
    sb.site_file(
        &hiera,
        &good.replace(&format!("port: {}", b2.port), "port: abc"),
    );
    let run = apply(&sb);
    assert_eq!(run.code, 4, "a failure, no change: {}", run.all());
    assert!(
        run.all().contains("haproxy.cfg") && run.all().contains("abc"),
        "names the file and haproxy's complaint: {}",
        run.all()
    );
    assert_eq!(
        std::fs::read(&cfg).unwrap(),
        before,
        "old config byte-identical"
    );
    assert_eq!(guard.pids(), first_pids, "HAProxy not restarted");
    assert_eq!(get(&url).0, 200, "HAProxy keeps serving");
    sb.site_file(&hiera, &good);
    let run = apply(&sb);
    assert_eq!(run.code, 0, "good data back: nothing to do: {}", run.all());

    // A config change reloads HAProxy gracefully: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(url.clone(), stop.clone());
    sb.site_file(&hiera, &format!("{good}hipchat_lb::maxconn: 2048\n"));
    let t = Instant::now();
    let run = apply(&sb);
    let reload_s = t.elapsed().as_secs_f64();
    assert_eq!(run.code, 2, "reload apply: {}", run.all());
    let new_pids = guard.pids();
    assert!(new_pids.is_disjoint(&first_pids), "a new HAProxy took over");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let (done, errors, seen) = load.join().unwrap();
    println!("reload: {done} requests during the apply ({reload_s:.2} s), {errors} errors");
    assert_eq!(errors, 0, "no request fails across the reload: {seen:?}");

    // New SANs in Hiera: a new certificate, served after a reload (a client
    // trusting only the new one verifies the server).
    let old_crt = std::fs::read(&crt).unwrap();
    sb.site_file(
        &hiera,
        &format!("{good}hipchat_lb::maxconn: 2048\n").replace(
            &format!("[hipchat.example, {LB}]"),
            &format!("[hipchat.example, chat.example, {LB}]"),
        ),
    );
    let run = apply(&sb);
    assert_eq!(run.code, 2, "new SANs: {}", run.all());
    assert_ne!(std::fs::read(&crt).unwrap(), old_crt, "a new certificate");
    let renewed_pids = guard.pids();
    assert!(renewed_pids.is_disjoint(&new_pids), "HAProxy reloaded");
    wait_for("the new certificate served", 5, || {
        Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(&crt)
            .arg(&url)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let run = apply(&sb);
    assert_eq!(run.code, 0, "new SANs, second run: {}", run.all());

    // Kill one node under traffic: no HTTP error; marked down in ~1 s.
    let sock = sb.root().join("var/run/haproxy.sock");
    // Fully up (not "UP 1/2", a check already failed): the figure below
    // then counts the checks from the kill on.
    wait_for("hipchat2 UP", 5, || {
        server_status(&sock, "hipchat2").is_some_and(|s| s == "UP")
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(url.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let killed = Instant::now();
    b2.kill();
    wait_for("hipchat2 DOWN", 10, || {
        server_status(&sock, "hipchat2").is_some_and(|s| s.starts_with("DOWN"))
    });
    let down_s = killed.elapsed().as_secs_f64();
    // Requests go on past the mark-down, 50 at least in all.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (mut done, mut errors, mut seen) = load.join().unwrap();
    while done < 50 {
        let (code, body) = get(&url);
        done += 1;
        if code != 200 {
            errors += 1;
            seen.push(format!("{code} {body}"));
        }
    }
    println!(
        "node killed: {done} requests, {errors} HTTP errors; marked down after {down_s:.2} s \
         (STACKS.md by hand: 0.97 s at inter 500ms fall 2)"
    );
    assert_eq!(errors, 0, "redispatch: no request fails: {seen:?}");
    // fall 2 checks 500 ms apart: not before ~0.5 s, and well within 2 s.
    assert!((0.4..2.0).contains(&down_s), "marked down in {down_s:.2} s");
    assert_eq!(get(&url).1, "hipchat1", "the survivor answers");
    b1.kill();

    // The seed's down: HAProxy stopped, its ports free, certificate and
    // config kept; a second run finds nothing to do.
    sb.site_file(
        &hiera,
        &format!("{good}hipchat_lb::maxconn: 2048\nhipchat_lb::ensure: stopped\n").replace(
            &format!("[hipchat.example, {LB}]"),
            &format!("[hipchat.example, chat.example, {LB}]"),
        ),
    );
    let t = Instant::now();
    let run = apply(&sb);
    println!(
        "down: HAProxy stopped by the apply in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(run.code, 2, "down: {}", run.all());
    assert!(!sb.root().join("var/run/haproxy.pid").exists());
    assert!(
        TcpStream::connect((LB, https)).is_err(),
        "HTTPS port closed"
    );
    assert!(cfg.exists() && crt.exists());
    let run = apply(&sb);
    assert_eq!(run.code, 0, "down again: nothing to do: {}", run.all());

    // A second node whose HTTPS port this process holds: the preflight
    // stops the run naming it, and HAProxy is not started.
    let held = TcpListener::bind((LB, 0)).unwrap();
    let held_port = held.local_addr().unwrap().port();
    let b3 = Backend::start("hipchat3", "127.0.0.122");
    other.site_file(&hiera, &node_hiera(free(), held_port, &[&b3], ""));
    let run = apply(&other);
    assert_eq!(run.code, 6, "changes and a failure: {}", run.all());
    assert!(
        run.all().contains(&format!("pid {} (", std::process::id()))
            && run.all().contains(&format!("{LB}:{held_port} is not free")),
        "names the holder: {}",
        run.all()
    );
    assert!(
        !other.root().join("var/run/haproxy.pid").exists(),
        "HAProxy not started"
    );
    drop(held);

    let total = started.elapsed().as_secs_f64();
    println!("hipchat_lb test: {total:.1} s");
    drop(guard);
}

#[test]
fn the_bundled_hipchat_lb_node_compiles_with_the_role_data() {
    let sb = Sandbox::bundled();
    sb.agent(&["validate", "--node", NODE])
        .code(0)
        .stdout_has("roles/hipchat_lb");
    let run = sb.agent(&["apply", "--noop", "--node", NODE]);
    run.code(0)
        .stdout_has("IP:172.16.254.30")
        .stdout_has("file[/etc/haproxy/haproxy.cfg]");
}
