//! Tests of `x509_cert`: idempotence, renewal, SAN changes, modes and
//! owners, the key never printed, removal; checked with the real `openssl`
//! and `haproxy -c`; and the time to make a pair, rcgen vs `openssl req`.

use super::*;
use crate::testing::{ensure_package, Sandbox};
use serde_json::json;
use std::process::Command;

fn cert(title: &str, attrs: serde_json::Value) -> Box<dyn Resource> {
    build(
        &crate::testing::decl("x509_cert", title, attrs),
        &TypeEnv::default(),
    )
    .unwrap()
}

fn build_err(attrs: serde_json::Value) -> String {
    build(
        &crate::testing::decl("x509_cert", "/etc/ssl/hipc.crt", attrs),
        &TypeEnv::default(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string()
}

fn base(sans: &[&str]) -> serde_json::Value {
    json!({
        "key_path": "/etc/ssl/hipc.key",
        "pem_path": "/etc/ssl/hipc.pem",
        "common_name": "hipchat.example",
        "subject_alt_names": sans,
    })
}

fn with(mut attrs: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    for (k, v) in extra.as_object().unwrap() {
        attrs[k] = v.clone();
    }
    attrs
}

/// Applies `r`'s plan (which must have changes); returns its change lines.
fn apply(r: &dyn Resource, cx: &Context) -> Vec<String> {
    let plan = r.check(cx).unwrap();
    assert!(!plan.is_empty(), "expected changes");
    let lines = crate::testing::lines(&plan);
    r.apply(cx, plan).unwrap();
    lines
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (the Debian package openssl) runs")
}

fn ssl_dir() -> Sandbox {
    ensure_package("openssl", "/usr/bin/openssl");
    Sandbox::new(&["etc/ssl"])
}

#[test]
fn creates_a_pair_that_openssl_accepts_and_a_second_run_changes_nothing() {
    let sb = ssl_dir();
    let r = cert(
        "/etc/ssl/hipc.crt",
        base(&["hipchat.example", "127.0.0.94"]),
    );
    let lines = apply(r.as_ref(), &sb.cx);
    assert!(
        lines
            .iter()
            .any(|l| l == "key changed absent to 'created key'"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("certificate changed absent to 'CN=hipchat.example, SAN [DNS:hipchat.example, IP:127.0.0.94], ecdsa-p256, 365 days")),
        "{lines:?}"
    );
    assert!(r.check(&sb.cx).unwrap().is_empty(), "second run: 0 changes");

    let (crt, key, pem) = (
        sb.root.join("etc/ssl/hipc.crt"),
        sb.root.join("etc/ssl/hipc.key"),
        sb.root.join("etc/ssl/hipc.pem"),
    );
    assert_eq!(mode_of(&key), 0o600);
    assert_eq!(mode_of(&pem), 0o600, "the pem holds the key");
    assert_eq!(mode_of(&crt), 0o644);
    let (c, k) = (std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap());
    assert_eq!(
        std::fs::read(&pem).unwrap(),
        [&c[..], &k[..]].concat(),
        "cert then key"
    );

    // Valid for 364 more days, not for 366.
    let c_path = crt.to_str().unwrap();
    let ok = openssl(&["x509", "-noout", "-checkend", "31449600", "-in", c_path]);
    assert!(ok.status.success(), "{ok:?}");
    let late = openssl(&["x509", "-noout", "-checkend", "31622400", "-in", c_path]);
    assert!(!late.status.success(), "expires within 366 days");
    let verify = openssl(&["verify", "-CAfile", c_path, c_path]);
    assert!(verify.status.success(), "{verify:?}");
    let text = openssl(&["x509", "-noout", "-text", "-in", c_path]);
    let text = String::from_utf8_lossy(&text.stdout);
    for want in [
        "Subject: CN = hipchat.example",
        "DNS:hipchat.example",
        "IP Address:127.0.0.94",
        "prime256v1",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    // The key is the certificate's (openssl's reading of both).
    let pub_of = |args: &[&str]| openssl(args).stdout;
    assert_eq!(
        pub_of(&["pkey", "-pubout", "-in", key.to_str().unwrap()]),
        pub_of(&["x509", "-noout", "-pubkey", "-in", c_path])
    );
}

#[test]
fn haproxy_loads_the_pem() {
    let sb = ssl_dir();
    ensure_package("haproxy", "/usr/sbin/haproxy");
    let r = cert(
        "/etc/ssl/hipc.crt",
        base(&["hipchat.example", "127.0.0.94"]),
    );
    apply(r.as_ref(), &sb.cx);
    let pem = sb.root.join("etc/ssl/hipc.pem");
    let cfg = sb.root.join("etc/haproxy.cfg");
    let write_cfg = |crt: &Path| {
        std::fs::write(
            &cfg,
            format!(
                "defaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
                 frontend fe\n  bind 127.0.0.94:8443 ssl crt {}\n  default_backend be\n\
                 backend be\n  server s1 127.0.0.95:8080\n",
                crt.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    write_cfg(&pem);
    let out = check();
    assert!(out.status.success(), "haproxy -c: {out:?}");
    // The check can fail: the certificate alone has no key for haproxy.
    write_cfg(&sb.root.join("etc/ssl/hipc.crt"));
    let out = check();
    assert!(!out.status.success(), "a crt without its key is refused");
}

#[test]
fn an_expiring_certificate_is_renewed_once_and_a_fresh_one_is_kept() {
    let sb = ssl_dir();
    // Two days left: within a 30-day renew_before.
    let short = cert(
        "/etc/ssl/hipc.crt",
        with(
            base(&["hipchat.example"]),
            json!({"days": 2, "renew_before": "1d"}),
        ),
    );
    apply(short.as_ref(), &sb.cx);
    assert!(short.check(&sb.cx).unwrap().is_empty(), "2 days > 1d: kept");
    let old_key = std::fs::read(sb.root.join("etc/ssl/hipc.key")).unwrap();

    let long = cert("/etc/ssl/hipc.crt", base(&["hipchat.example"]));
    let plan = long.check(&sb.cx).unwrap();
    let lines = crate::testing::lines(&plan);
    assert!(
        lines[0].contains("within renew_before 30days"),
        "says why: {lines:?}"
    );
    long.apply(&sb.cx, plan).unwrap();
    assert!(
        long.check(&sb.cx).unwrap().is_empty(),
        "renewed once, then kept"
    );
    let new_key = std::fs::read(sb.root.join("etc/ssl/hipc.key")).unwrap();
    assert_ne!(old_key, new_key, "a new key with the new certificate");
    let crt = sb.root.join("etc/ssl/hipc.crt");
    let ok = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        "2592000",
        "-in",
        crt.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "valid for 30 more days now");
    // The old files went to the backup store.
    let key_path = sb.root.join("etc/ssl/hipc.key");
    let saved = sb.cx.backup.list(Some(&key_path)).unwrap();
    assert_eq!(saved.len(), 1, "{saved:?}");

    // 40 days with a 30-day margin: kept on every run.
    let forty = cert(
        "/etc/ssl/other.crt",
        json!({"key_path": "/etc/ssl/other.key", "common_name": "o", "days": 40}),
    );
    apply(forty.as_ref(), &sb.cx);
    assert!(forty.check(&sb.cx).unwrap().is_empty());
}

#[test]
fn a_lifetime_within_renew_before_and_other_bad_input_are_refused_at_compile_time() {
    let e = build_err(with(base(&[]), json!({"days": 10, "renew_before": "30d"})));
    assert!(
        e.contains("x509_cert[/etc/ssl/hipc.crt]")
            && e.contains("renewed on every run")
            && e.contains("hint"),
        "{e}"
    );
    let e = build_err(with(base(&[]), json!({"days": 30})));
    assert!(e.contains("not longer than renew_before: 30d"), "{e}");
    let e = build_err(with(base(&[]), json!({"key_type": "rsa"})));
    assert!(
        e.contains("cannot generate RSA") && e.contains("hint"),
        "{e}"
    );
    let e = build_err(with(base(&["not a name"]), json!({})));
    assert!(e.contains("neither an IP address nor a DNS name"), "{e}");
    let e = build_err(with(base(&[]), json!({"renew_before": "soon"})));
    assert!(e.contains("renew_before 'soon'"), "{e}");
    let e = build_err(with(base(&[]), json!({"pem_path": "/etc/ssl/hipc.key"})));
    assert!(e.contains("same file"), "{e}");
    let e = build_err(with(base(&[]), json!({"key_path": "hipc.key"})));
    assert!(e.contains("absolute"), "{e}");
    let e = build_err(with(base(&[]), json!({"sans": ["x"]})));
    assert!(e.contains("unknown field"), "{e}");
    // Valid: the other key types.
    for kt in ["ecdsa-p384", "ed25519"] {
        assert!(build(
            &crate::testing::decl("x509_cert", "/c", with(base(&[]), json!({"key_type": kt}))),
            &TypeEnv::default()
        )
        .is_ok());
    }
}

#[test]
fn a_san_or_key_type_change_makes_a_new_pair() {
    let sb = ssl_dir();
    let one = cert("/etc/ssl/hipc.crt", base(&["hipchat.example"]));
    apply(one.as_ref(), &sb.cx);
    let key_path = sb.root.join("etc/ssl/hipc.key");
    let first = std::fs::read(&key_path).unwrap();

    // Same names, other order and case: in sync.
    let same = cert(
        "/etc/ssl/hipc.crt",
        base(&["HipChat.example", "hipchat.example"]),
    );
    assert!(same.check(&sb.cx).unwrap().is_empty());

    let two = cert(
        "/etc/ssl/hipc.crt",
        base(&["hipchat.example", "127.0.0.94"]),
    );
    let lines = apply(two.as_ref(), &sb.cx);
    assert!(
        lines[0].contains("the SANs are [DNS:hipchat.example]"),
        "{lines:?}"
    );
    assert!(two.check(&sb.cx).unwrap().is_empty());
    assert_ne!(std::fs::read(&key_path).unwrap(), first);

    let cn = cert(
        "/etc/ssl/hipc.crt",
        with(
            base(&["hipchat.example", "127.0.0.94"]),
            json!({"common_name": "lb.example"}),
        ),
    );
    let lines = apply(cn.as_ref(), &sb.cx);
    assert!(
        lines[0].contains("the common name is 'hipchat.example'"),
        "{lines:?}"
    );

    let p384 = cert(
        "/etc/ssl/hipc.crt",
        with(
            base(&["hipchat.example", "127.0.0.94"]),
            json!({"common_name": "lb.example", "key_type": "ecdsa-p384"}),
        ),
    );
    let lines = apply(p384.as_ref(), &sb.cx);
    assert!(lines[0].contains("the key is not ecdsa-p384"), "{lines:?}");
    assert!(p384.check(&sb.cx).unwrap().is_empty());
}

#[test]
fn a_damaged_pair_or_pem_is_put_right_and_modes_are_managed() {
    let sb = ssl_dir();
    let r = cert("/etc/ssl/hipc.crt", base(&["hipchat.example"]));
    apply(r.as_ref(), &sb.cx);
    let (crt, key, pem) = (
        sb.root.join("etc/ssl/hipc.crt"),
        sb.root.join("etc/ssl/hipc.key"),
        sb.root.join("etc/ssl/hipc.pem"),
    );
    let good_crt = std::fs::read(&crt).unwrap();

    // A loosened key mode: only the mode is put back.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let lines = apply(r.as_ref(), &sb.cx);
    assert_eq!(lines, ["/etc/ssl/hipc.key mode changed '0644' to '0600'"]);
    assert_eq!(mode_of(&key), 0o600);
    assert_eq!(std::fs::read(&crt).unwrap(), good_crt, "not re-made");

    // A stale pem: rewritten from the pair, which is kept.
    std::fs::write(&pem, "old\n").unwrap();
    let lines = apply(r.as_ref(), &sb.cx);
    assert_eq!(lines, ["pem changed 'stale pem' to 'certificate + key'"]);
    assert_eq!(std::fs::read(&crt).unwrap(), good_crt);
    assert!(r.check(&sb.cx).unwrap().is_empty());

    // A key that is not the certificate's (a run killed between the two
    // writes): a new pair.
    let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(&key, &other).unwrap();
    let lines = apply(r.as_ref(), &sb.cx);
    assert!(
        lines[0].contains("the key is not the certificate's"),
        "{lines:?}"
    );
    assert!(r.check(&sb.cx).unwrap().is_empty());

    // Garbage in place of the certificate.
    std::fs::write(&crt, "garbage").unwrap();
    let lines = apply(r.as_ref(), &sb.cx);
    assert!(lines[0].contains("unreadable"), "{lines:?}");
    assert!(r.check(&sb.cx).unwrap().is_empty());
}

#[test]
fn owner_and_group_apply_to_the_three_files() {
    let sb = ssl_dir();
    if !nix::unistd::geteuid().is_root() {
        panic!("this test gives files away: run it as root");
    }
    let r = cert(
        "/etc/ssl/hipc.crt",
        with(
            base(&["hipchat.example"]),
            json!({"owner": "nobody", "group": "nogroup"}),
        ),
    );
    apply(r.as_ref(), &sb.cx);
    for f in ["hipc.crt", "hipc.key", "hipc.pem"] {
        let m = std::fs::metadata(sb.root.join("etc/ssl").join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{f}");
    }
    assert!(r.check(&sb.cx).unwrap().is_empty());
    // Given back by hand: put right without a new pair.
    let key = sb.root.join("etc/ssl/hipc.key");
    std::os::unix::fs::chown(&key, Some(0), Some(0)).unwrap();
    let lines = apply(r.as_ref(), &sb.cx);
    assert_eq!(
        lines,
        [
            "/etc/ssl/hipc.key owner changed 'root' to 'nobody'",
            "/etc/ssl/hipc.key group changed 'root' to 'nogroup'"
        ]
    );
    assert_eq!(mode_of(&key), 0o600);
    let e = build(
        &crate::testing::decl(
            "x509_cert",
            "/etc/ssl/x.crt",
            json!({"key_path": "/etc/ssl/x.key", "common_name": "x", "owner": "no-such-user-x509"}),
        ),
        &TypeEnv::default(),
    )
    .unwrap()
    .check(&sb.cx)
    .unwrap_err()
    .to_string();
    assert!(e.contains("no such user"), "{e}");
    assert!(!sb.root.join("etc/ssl/x.key").exists());
}

#[test]
fn the_key_never_appears_in_what_is_printed() {
    let sb = ssl_dir();
    let r = cert("/etc/ssl/hipc.crt", base(&["hipchat.example"]));
    let mut printed = Vec::new();
    let mut record = |plan: &Plan| {
        printed.push(format!("{plan:?}"));
        for c in plan.changes() {
            printed.push(c.line());
            printed.extend(c.printable_diff());
            printed.push(format!("{c:?}"));
        }
    };
    let plan = r.check(&sb.cx).unwrap();
    record(&plan);
    r.apply(&sb.cx, plan).unwrap();
    let key_path = sb.root.join("etc/ssl/hipc.key");
    let first = std::fs::read_to_string(&key_path).unwrap();
    // A renewal (old key on disk, new one made) and a stale pem.
    let r2 = cert(
        "/etc/ssl/hipc.crt",
        base(&["hipchat.example", "127.0.0.96"]),
    );
    let plan = r2.check(&sb.cx).unwrap();
    record(&plan);
    r2.apply(&sb.cx, plan).unwrap();
    std::fs::write(sb.root.join("etc/ssl/hipc.pem"), "x").unwrap();
    let plan = r2.check(&sb.cx).unwrap();
    record(&plan);
    let second = std::fs::read_to_string(&key_path).unwrap();
    assert!(redact::contains_secret(&second), "registered as a secret");
    assert_eq!(redact::redact(&second), redact::REDACTED);
    for key in [first, second] {
        // Any line of the key's base64 body would do: none is printed.
        let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!body.is_empty());
        for text in &printed {
            for line in &body {
                assert!(!text.contains(line), "key material printed: {text}");
            }
        }
    }
}

#[test]
fn absent_removes_the_three_files_into_the_backup_store() {
    let sb = ssl_dir();
    apply(
        cert("/etc/ssl/hipc.crt", base(&["hipchat.example"])).as_ref(),
        &sb.cx,
    );
    let gone = cert(
        "/etc/ssl/hipc.crt",
        with(base(&[]), json!({"ensure": "absent"})),
    );
    let lines = apply(gone.as_ref(), &sb.cx);
    assert_eq!(
        lines,
        [
            "/etc/ssl/hipc.crt changed 'present' to 'absent'",
            "/etc/ssl/hipc.key changed 'present' to 'absent'",
            "/etc/ssl/hipc.pem changed 'present' to 'absent'"
        ]
    );
    assert!(gone.check(&sb.cx).unwrap().is_empty());
    for f in ["hipc.crt", "hipc.key", "hipc.pem"] {
        let p = sb.root.join("etc/ssl").join(f);
        assert!(!p.exists());
        assert_eq!(sb.cx.backup.list(Some(&p)).unwrap().len(), 1, "{f} saved");
    }
    // A missing directory fails the apply and writes nothing.
    let nodir = cert(
        "/etc/nodir/a.crt",
        json!({"key_path": "/etc/nodir/a.key", "common_name": "a"}),
    );
    let plan = nodir.check(&sb.cx).unwrap();
    let e = nodir.apply(&sb.cx, plan).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert_eq!(
        nodir.autorequires()[0],
        ResourceId::new("file", "/etc/nodir")
    );
}

/// The figure in the README: making a key and a self-signed certificate
/// with rcgen here vs `openssl req -x509 -newkey ec` (a process each, as a
/// shell-out would). Prints; asserts only that both made a certificate.
#[test]
fn time_to_make_a_pair_rcgen_vs_openssl() {
    let sb = ssl_dir();
    let want = Subject {
        common_name: "bench.example".into(),
        sans: vec![San::Dns("bench.example".into())],
        key_type: KeyType::EcdsaP256,
    };
    let runs = 20;
    let mut rcgen_times = Vec::new();
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let (_key, crt) = generate(&want, 365).unwrap();
        rcgen_times.push(t.elapsed());
        assert!(read_cert(crt.as_bytes()).is_ok());
    }
    let mut openssl_times = Vec::new();
    let dir = sb.root.join("etc/ssl");
    for i in 0..runs {
        let (k, c) = (dir.join(format!("o{i}.key")), dir.join(format!("o{i}.crt")));
        let t = std::time::Instant::now();
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "365",
                "-subj",
                "/CN=bench.example",
                "-addext",
                "subjectAltName=DNS:bench.example",
                "-keyout",
            ])
            .arg(&k)
            .arg("-out")
            .arg(&c)
            .output()
            .unwrap();
        openssl_times.push(t.elapsed());
        assert!(out.status.success(), "{out:?}");
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "x509 pair (ecdsa-p256, self-signed), median of {runs}: rcgen {:?}, openssl req {:?}",
        median(&mut rcgen_times),
        median(&mut openssl_times)
    );
}
