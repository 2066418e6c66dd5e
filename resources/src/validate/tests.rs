//! Tests of `validate_cmd`: the marker, the checker's view and refusal, on
//! `file` and `conf`, and with a real `haproxy -c`.

use super::*;

fn id() -> ResourceId {
    ResourceId::new("file", "/etc/x.cfg")
}

#[test]
fn the_marker_is_required_at_compile_time() {
    assert_eq!(ValidateCmd::new(&id(), None, None).unwrap(), None);
    let err = ValidateCmd::new(&id(), Some("haproxy -c -f /etc/x.cfg".into()), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("file[/etc/x.cfg]") && err.contains("no '%'") && err.contains("hint"),
        "{err}"
    );
    assert!(ValidateCmd::new(&id(), None, Some("@".into())).is_err());
    assert!(ValidateCmd::new(&id(), Some("check @".into()), Some("".into())).is_err());
    assert!(ValidateCmd::new(&id(), Some("  ".into()), None).is_err());
    let v = ValidateCmd::new(&id(), Some("check -f @@".into()), Some("@@".into()))
        .unwrap()
        .unwrap();
    assert_eq!(v.line(Path::new("/t/it's")), r"check -f '/t/it'\''s'");
    assert_eq!(v.line(Path::new("/tmp/a.cfg")), "check -f /tmp/a.cfg");
}

#[test]
fn the_checker_sees_the_new_content_and_its_refusal_is_the_error() {
    let (_dir, cx) = crate::testing::sandbox(&["etc"]);
    let v = ValidateCmd::new(
        &id(),
        Some("grep -q '^good$' % && test \"$(basename %)\" = x.cfg".into()),
        None,
    )
    .unwrap()
    .unwrap();
    v.check(&cx, &id(), "/etc/x.cfg", b"good\n").unwrap();
    let v = ValidateCmd::new(
        &id(),
        Some("echo \"bad line 3 in %\" >&2; exit 3".into()),
        None,
    )
    .unwrap()
    .unwrap();
    let err = v
        .check(&cx, &id(), "/etc/x.cfg", b"bad\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exit 3") && err.contains("bad line 3 in /etc/x.cfg"),
        "the output names the file, not the temp: {err}"
    );
    assert!(!err.contains("agent-validate."), "{err}");
}

/// A `file` with `validate_cmd`, in a sandbox whose `etc/` holds `old`.
fn file_with(
    content: &str,
    validate: &str,
) -> Result<Box<dyn crate::core::Resource>, ResourceError> {
    let d = crate::testing::decl(
        "file",
        "/etc/app.cfg",
        serde_json::json!({"content": content, "validate_cmd": validate}),
    );
    crate::file::build(&d, &crate::core::TypeEnv::default())
}

/// Names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_file_refused_by_its_check_is_left_as_it_was() {
    let t = crate::testing::Sandbox::new(&["etc"]);
    let path = t.root.join("etc/app.cfg");
    std::fs::write(&path, "good\n").unwrap();
    let r = file_with("bad\n", "sh -c 'grep -qx good \"$1\" || exit 1' check %").unwrap();
    let plan = r.check(&t.cx).unwrap();
    assert!(!plan.is_empty());
    let err = r.apply(&t.cx, plan).unwrap_err();
    assert!(matches!(err, ResourceError::Failed(_)), "{err}");
    assert!(err.to_string().contains("exit 1"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"good\n", "byte-identical");
    assert!(
        t.cx.backup.list(Some(&path)).unwrap().is_empty(),
        "no backup"
    );
    assert_eq!(names(&t.root.join("etc")), ["app.cfg"], "no temp left");
    assert!(t
        .cx
        .runner
        .history()
        .iter()
        .any(|c| c.contains("grep -qx good")));
    // A new file refused is never created.
    std::fs::remove_file(&path).unwrap();
    let plan = r.check(&t.cx).unwrap();
    assert!(r.apply(&t.cx, plan).is_err());
    assert!(!path.exists());
    // Accepted: written, and the next run finds nothing to do.
    std::fs::write(&path, "old\n").unwrap();
    let r = file_with("good\n", "grep -qx good %").unwrap();
    let plan = r.check(&t.cx).unwrap();
    r.apply(&t.cx, plan).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"good\n");
    assert_eq!(t.cx.backup.list(Some(&path)).unwrap().len(), 1);
    assert!(r.check(&t.cx).unwrap().is_empty(), "idempotent");
}

#[test]
fn validate_cmd_is_checked_when_the_manifest_compiles() {
    let err = file_with("x", "haproxy -c -f /etc/haproxy/haproxy.cfg")
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("no '%'") && err.contains("hint"), "{err}");
    let d = crate::testing::decl(
        "file",
        "/etc/d",
        serde_json::json!({"ensure": "directory", "validate_cmd": "true %"}),
    );
    let err = crate::file::build(&d, &crate::core::TypeEnv::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("needs content"), "{err}");
    let d = crate::testing::decl(
        "file",
        "/etc/x",
        serde_json::json!({"content": "x", "validate_cmd": "test -s @", "validate_replacement": "@"}),
    );
    assert!(crate::file::build(&d, &crate::core::TypeEnv::default()).is_ok());
}

const GOOD_CFG: &str = "global\n    maxconn 100\n\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\nfrontend www\n    bind 127.0.0.91:8091\n    http-request return status 200 content-type text/plain string served-by-the-good-config if { path /health }\n    default_backend app\n\nbackend app\n    balance roundrobin\n    option redispatch\n    server app1 127.0.0.92:8092 check inter 500ms fall 2\n";

/// The body of `GET /health` from the HAProxy on 127.0.0.91:8091, if it answers.
fn health() -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect("127.0.0.91:8091").ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The HAProxy a test started, stopped when the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real HAProxy checks its configuration (`haproxy -c -f %`): a broken
/// one is refused and the old file stays byte-identical; a good one goes
/// in. Installs haproxy when missing (as root).
#[test]
fn haproxy_refuses_a_broken_config_and_takes_a_good_one() {
    crate::testing::ensure_package("haproxy", "/usr/sbin/haproxy");
    let t = crate::testing::Sandbox::new(&["etc/haproxy"]);
    let path = t.root.join("etc/haproxy/haproxy.cfg");
    let decl = |content: &str| {
        let d = crate::testing::decl(
            "file",
            "/etc/haproxy/haproxy.cfg",
            serde_json::json!({"content": content, "validate_cmd": "/usr/sbin/haproxy -c -f %"}),
        );
        crate::file::build(&d, &crate::core::TypeEnv::default()).unwrap()
    };
    let good = decl(GOOD_CFG);
    let plan = good.check(&t.cx).unwrap();
    good.apply(&t.cx, plan).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), GOOD_CFG);
    assert!(good.check(&t.cx).unwrap().is_empty(), "idempotent");
    // HAProxy runs on it (foreground, on 127.0.0.91:8091).
    let _haproxy = Running(
        std::process::Command::new("/usr/sbin/haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy starts"),
    );
    let started = std::time::Instant::now();
    while !health().is_some_and(|b| b.contains("served-by-the-good-config")) {
        assert!(
            started.elapsed().as_secs() < 20,
            "haproxy never served the good config"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let broken_cfg = GOOD_CFG.replace("balance roundrobin", "balance round-robbin");
    let broken = decl(&broken_cfg);
    let plan = broken.check(&t.cx).unwrap();
    let err = broken.apply(&t.cx, plan).unwrap_err().to_string();
    let line = broken_cfg
        .lines()
        .position(|l| l.contains("round-robbin"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("[/etc/haproxy/haproxy.cfg:{line}]"))
            && err.contains("balance only supports"),
        "haproxy's own message, naming the node path: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        GOOD_CFG,
        "byte-identical"
    );
    assert!(
        t.cx.backup.list(Some(&path)).unwrap().is_empty(),
        "no backup of a write that never was"
    );
    assert_eq!(names(&t.root.join("etc/haproxy")), ["haproxy.cfg"]);
    let body = health().unwrap_or_default();
    assert!(
        body.contains("served-by-the-good-config"),
        "still serving: {body}"
    );
    // Still refused on the next run: the resource fails again.
    assert!(!broken.check(&t.cx).unwrap().is_empty());

    let better_cfg = GOOD_CFG.replace("maxconn 100", "maxconn 200");
    let better = decl(&better_cfg);
    let plan = better.check(&t.cx).unwrap();
    better.apply(&t.cx, plan).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), better_cfg);
    assert_eq!(t.cx.backup.list(Some(&path)).unwrap().len(), 1);
}
