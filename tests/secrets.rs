//! Secrets end to end: a catalog full of Sensitive values (Hiera
//! `convert_to: Sensitive` in file content, a template, properties, exec
//! commands, a failing exec's stderr, `password` attributes) run at trace
//! level; no plain value may reach stdout, stderr, the JSON report,
//! `agent lookup`, `agent validate`, `agent graph`, `agent backup list` or
//! the backup index. Files holding secrets are private (0600 new, never
//! world-readable), the state dir is not listable (0711) and the backup store is 0700.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Run, Sandbox, HIERA_YAML};

const SECRETS: &[&str] = &[
    "Fp7qXz-file-secret",
    "Db9kLm-jdbc-secret",
    "Ex3vBn-exec-secret",
    "Rl5wQe-role-secret",
    "Su8yTr-super-secret",
    "Tp2hGj-template-secret",
];

const DATA: &str = r#"lookup_options:
  secret::file_pw: {convert_to: Sensitive}
  secret::db_pw: {convert_to: Sensitive}
  secret::exec_token: {convert_to: Sensitive}
  secret::role_pw: {convert_to: Sensitive}
  secret::super_pw: {convert_to: Sensitive}
  secret::tpl_pw: {convert_to: Sensitive}
secret::file_pw: Fp7qXz-file-secret
secret::db_pw: Db9kLm-jdbc-secret
secret::exec_token: Ex3vBn-exec-secret
secret::role_pw: Rl5wQe-role-secret
secret::super_pw: Su8yTr-super-secret
secret::tpl_pw: Tp2hGj-template-secret
plain::greeting: "hello"
"#;

const MANIFEST: &str = r#"resources:
  - file: /etc
    ensure: directory
  - file: /etc/app.conf
    content: "user=app\npassword={{lookup 'secret::file_pw'}}\n"
  - file: /etc/existing.conf
    content: "password={{lookup 'secret::file_pw'}}\n"
  - file: /etc/group-readable.conf
    content: "password={{lookup 'secret::file_pw'}}\n"
    mode: "0640"
  - file: /etc/db.conf
    template: db.conf.hbs
  - properties: /etc/stash-config.properties
    values:
      jdbc.url: "jdbc:postgresql://db:5432/stash?ssl=true&x=1"
      jdbc.password: "{{lookup 'secret::db_pw'}}"
  - exec: uses-token
    command: "test -n '{{lookup 'secret::exec_token'}}' && touch \"$AGENT_ROOT/etc/token-used\""
    creates: /etc/token-used
  - exec: leaks-to-stderr
    command: "echo 'token is {{lookup 'secret::exec_token'}}' >&2; exit 1"
  - pg_role: stash
    password: "{{lookup 'secret::role_pw'}}"
    superuser_password: "{{lookup 'secret::super_pw'}}"
    port: 1
"#;

fn sandbox() -> Sandbox {
    let sb = Sandbox::new().env("AGENT_LOG", "trace");
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("hiera/data/common.yaml", DATA)
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file("manifests/roles/r.yaml", MANIFEST)
        .site_file(
            "manifests/templates/db.conf.hbs",
            "host=db\npassword={{lookup 'secret::tpl_pw'}}\n",
        )
        // An existing world-readable file whose old content is a secret too.
        .root_file("etc/existing.conf", "password=Old4Secret-value\n");
    fs::set_permissions(
        sb.root().join("etc/existing.conf"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    sb
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks {s}:\n{text}");
    }
}

fn assert_run_clean(what: &str, run: &Run) {
    assert_clean(&format!("{what}: stdout"), &run.stdout);
    assert_clean(&format!("{what}: stderr"), &run.stderr);
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn no_secret_reaches_any_output_and_secret_files_are_private() {
    let sb = sandbox();
    let validate = sb.agent(&["-vvv", "validate"]);
    validate.code(0);
    assert_run_clean("validate", &validate);
    let noop = sb.agent(&["-vvv", "apply", "--noop"]);
    assert_run_clean("noop", &noop);
    assert!(noop.stdout.contains("[redacted]"), "{}", noop.stdout);

    let run = sb.agent(&["-vvv", "apply", "--detailed-exitcodes"]);
    // leaks-to-stderr fails, pg_role cannot reach a server on port 1.
    assert_eq!(run.code, 6, "{}", run.all());
    assert_run_clean("apply", &run);
    assert!(
        run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
        "trace logging is on: {}",
        run.stderr
    );
    assert!(run.all().contains("exec[leaks-to-stderr]"), "{}", run.all());
    assert!(
        sb.root().join("etc/token-used").exists(),
        "the token exec ran"
    );
    assert!(
        !run.all().contains("Old4Secret-value"),
        "the old content of a secret file is not shown either"
    );
    let report = fs::read_to_string(sb.state().join("last_run_report.json")).unwrap();
    assert_clean("report", &report);
    assert!(report.contains("[redacted]"), "{report}");

    // The files hold the secrets, privately.
    assert!(sb.read_root("etc/app.conf").contains(SECRETS[0]));
    assert!(sb
        .read_root("etc/db.conf")
        .contains("Tp2hGj-template-secret"));
    assert!(sb
        .read_root("etc/stash-config.properties")
        .contains(SECRETS[1]));
    for (rel, want) in [
        ("etc/app.conf", 0o600),
        ("etc/db.conf", 0o600),
        ("etc/stash-config.properties", 0o600),
        ("etc/group-readable.conf", 0o640), // the manifest says so
        ("etc/existing.conf", 0o640),       // was 0644: other users cut off
    ] {
        assert_eq!(mode(&sb.root().join(rel)), want, "{rel}");
    }
    assert_eq!(
        mode(&sb.state()),
        0o711,
        "state dir: traversable, not listable"
    );

    // Lookups and explanations redact; graph names no secret.
    for key in ["secret::db_pw", "secret::role_pw"] {
        let l = sb.agent(&["-vvv", "lookup", key]);
        l.code(0).stdout_has("Sensitive [value redacted]");
        assert_run_clean("lookup", &l);
        let e = sb.agent(&["-vvv", "lookup", key, "--explain"]);
        e.code(0);
        assert_run_clean("lookup --explain", &e);
    }
    assert_run_clean("graph", &sb.agent(&["graph"]));

    // The backup store: the old content of existing.conf is kept (it held a
    // secret: 0600 blob in 0700 dirs), the listing and index show metadata only.
    let list = sb.agent(&["-vvv", "backup", "list"]);
    list.code(0).stdout_has("/etc/existing.conf");
    assert_run_clean("backup list", &list);
    assert!(!list.all().contains("Old4Secret-value"), "{}", list.all());
    let backup = sb.state().join("backup");
    let index = fs::read_to_string(backup.join("index.jsonl")).unwrap();
    assert_clean("backup index", &index);
    assert!(!index.contains("Old4Secret-value"), "{index}");
    assert_eq!(mode(&backup), 0o700);
    assert_eq!(mode(&backup.join("index.jsonl")), 0o600);
    let blobs: Vec<_> = walkdir::WalkDir::new(&backup)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.file_name() != "index.jsonl")
        .collect();
    assert!(!blobs.is_empty());
    for b in blobs {
        assert_eq!(mode(b.path()), 0o600, "{}", b.path().display());
        assert_eq!(mode(b.path().parent().unwrap()), 0o700);
    }

    // Drift, then a noop: the diff of a secret file stays hidden.
    fs::write(
        sb.root().join("etc/app.conf"),
        "user=app\npassword=Drift3d-x\n",
    )
    .unwrap();
    let drift = sb.agent(&["-vvv", "apply", "--noop", "--detailed-exitcodes"]);
    assert_run_clean("drift noop", &drift);
    assert!(!drift.all().contains("Drift3d-x"), "{}", drift.all());
    // A restore prints no content either.
    let restore = sb.agent(&["backup", "restore", "/etc/existing.conf"]);
    restore.code(0).stdout_has("restored /etc/existing.conf");
    assert!(
        !restore.all().contains("Old4Secret-value"),
        "{}",
        restore.all()
    );
    assert_eq!(
        sb.read_root("etc/existing.conf"),
        "password=Old4Secret-value\n"
    );
}

#[test]
fn validate_warns_about_a_world_readable_secret_without_printing_it() {
    let sb = sandbox();
    sb.site_file(
        "manifests/roles/r.yaml",
        "resources:\n  - file: /etc/open.conf\n    content: \"pw={{lookup 'secret::file_pw'}}\\n\"\n    mode: \"0644\"\n  - exec: every-time\n    command: /bin/true\n",
    );
    let v = sb.agent(&["validate"]);
    v.code(0)
        .stderr_has("Warning: ")
        .stderr_has("file[/etc/open.conf]: holds Sensitive content")
        .stderr_has("exec[every-time]: has no creates, unless, onlyif or refreshonly");
    assert!(v.stderr.contains("roles/r.yaml:2:"), "{}", v.stderr);
    assert_run_clean("validate", &v);
}
