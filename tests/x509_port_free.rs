//! `x509_cert` and `port_free` through the whole agent (`agent apply`, trace
//! logging, the JSON report): the preflight fails the run naming the
//! process that holds the port and its dependents are skipped; once the
//! port is free the run goes on; the certificate is made once (a second
//! run changes nothing) and its key appears in no output, log or report;
//! and a real HAProxy serves TLS with the pem while `port_free` lets it
//! (its own daemon) hold the port.

mod common;

use std::fs;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ensure_package, Sandbox, HIERA_YAML};

fn manifest(addr: &str, port: u16) -> String {
    format!(
        r#"resources:
  - file: /etc
    ensure: directory
  - file: /etc/ssl
    ensure: directory
  - x509_cert: hipc
    path: /etc/ssl/hipc.crt
    key_path: /etc/ssl/hipc.key
    pem_path: /etc/ssl/hipc.pem
    common_name: hipchat.example
    subject_alt_names: [hipchat.example, 127.0.0.94, 127.0.0.95]
  - port_free: https
    port: {port}
    address: {addr}
    allow: [haproxy]
  - file: /etc/after-preflight
    content: "the role starts here\n"
    require: ["port_free[https]", "x509_cert[hipc]"]
"#
    )
}

fn sandbox(addr: &str, port: u16) -> Sandbox {
    let sb = Sandbox::new().env("AGENT_LOG", "trace");
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("hiera/data/common.yaml", "{}\n")
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file("manifests/roles/r.yaml", &manifest(addr, port));
    sb
}

/// The base64 lines of a PEM key.
fn key_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_preflight_stops_the_run_naming_the_holder_and_the_key_is_never_printed() {
    // Held by this test process, which haproxy's role does not allow.
    let held = TcpListener::bind("127.0.0.94:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let sb = sandbox("127.0.0.94", port);

    // --noop: the change is shown, no key is made, nothing is written.
    let noop = sb.agent(&["apply", "--noop", "--detailed-exitcodes"]);
    assert!(noop.all().contains("created key"), "{}", noop.all());
    assert!(noop.all().contains("is not free"), "{}", noop.all());
    assert!(!sb.root().join("etc").exists(), "noop wrote nothing");

    let run = sb.agent(&["-vvv", "apply", "--detailed-exitcodes"]);
    let me = format!("pid {} (", std::process::id());
    assert_eq!(run.code, 6, "changes and a failure: {}", run.all());
    assert!(
        run.all().contains(&me)
            && run
                .all()
                .contains(&format!("127.0.0.94:{port} is not free")),
        "names the holder: {}",
        run.all()
    );
    assert!(
        !sb.root().join("etc/after-preflight").exists(),
        "what requires the preflight is skipped"
    );
    assert!(run.all().contains("created key"), "{}", run.all());
    let key = sb.read_root("etc/ssl/hipc.key");
    let report = fs::read_to_string(sb.state().join("last_run_report.json")).unwrap();
    let body = key_lines(&key);
    assert!(!body.is_empty());
    for text in [&run.stdout, &run.stderr, &report] {
        for line in &body {
            assert!(
                !text.contains(line.as_str()),
                "key material printed:\n{text}"
            );
        }
    }
    assert!(
        run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
        "trace logging was on"
    );

    // The port freed: the run goes on, and the certificate is kept.
    drop(held);
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(sb.root().join("etc/after-preflight").exists());
    assert!(!run.all().contains("x509_cert"), "{}", run.all());
    assert_eq!(sb.read_root("etc/ssl/hipc.key"), key, "same key");
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    assert_eq!(run.code, 0, "second run: 0 changes: {}", run.all());
}

/// Stops the haproxy it holds when dropped (a failing assertion included).
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn haproxy_serves_the_certificate_and_is_allowed_to_hold_its_port() {
    ensure_package("haproxy", "/usr/sbin/haproxy");
    ensure_package("openssl", "/usr/bin/openssl");
    // Taken from the kernel, then handed to haproxy: only this test uses
    // 127.0.0.95 on this machine.
    let port = TcpListener::bind("127.0.0.95:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sb = sandbox("127.0.0.95", port);
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    assert_eq!(run.code, 2, "{}", run.all());

    let ssl = sb.root().join("etc/ssl");
    let cfg = sb.path().join("haproxy.cfg");
    fs::write(
        &cfg,
        format!(
            "defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             frontend fe\n  bind 127.0.0.95:{port} ssl crt {}\n  http-request return status 200 content-type text/plain string ok\n",
            ssl.join("hipc.pem").display()
        ),
    )
    .unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(check.status.success(), "haproxy -c: {check:?}");
    let _haproxy = Daemon(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait for its listener, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.95", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "haproxy never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The client trusts exactly this certificate, for this name and this IP.
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.95:{port}"))
        .args([
            "-servername",
            "hipchat.example",
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.95",
            "-CAfile",
        ])
        .arg(ssl.join("hipc.crt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Verify return code: 0 (ok)"),
        "{text}\n{out:?}"
    );
    assert!(text.contains("subject=CN = hipchat.example"), "{text}");

    // haproxy holds the port: its role allows it, the run is clean.
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // Without the allowance the preflight names haproxy.
    sb.site_file(
        "manifests/roles/r.yaml",
        &manifest("127.0.0.95", port).replace("allow: [haproxy]", "allow: [nginx]"),
    );
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.all().contains("(haproxy) listens on 127.0.0.95"),
        "{}",
        run.all()
    );
}

#[test]
fn a_lifetime_renewed_on_every_run_is_refused_before_anything_runs() {
    let sb = sandbox("127.0.0.94", 1);
    sb.site_file(
        "manifests/roles/r.yaml",
        &manifest("127.0.0.94", 1).replace(
            "    common_name: hipchat.example\n",
            "    common_name: hipchat.example\n    days: 10\n    renew_before: 30d\n",
        ),
    );
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    assert_ne!(run.code, 0, "{}", run.all());
    assert_ne!(run.code, 2, "{}", run.all());
    let all = run.all();
    assert!(
        all.contains("r.yaml:") && all.contains("renewed on every run") && all.contains("hint"),
        "names file, line and a hint: {all}"
    );
    assert!(!sb.root().join("etc").exists(), "nothing on disk changed");
}
