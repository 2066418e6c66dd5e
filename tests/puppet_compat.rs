//! Coming from Puppet: the agent read side by side with the real Facter
//! (Debian's `facter` package, installed by the test when missing).

mod common;

use std::process::Command;

use common::{ensure_package, Sandbox};
use serde_json::Value;

/// The JSON object `cmd` prints. Facter exits 1 here after printing its
/// facts (it cannot read /proc/1/environ in this sandbox): only the agent's
/// exit status is checked.
fn json_of(cmd: &mut Command) -> serde_json::Map<String, Value> {
    let out = cmd.output().expect("runs");
    let is_agent = cmd.get_program() != "facter";
    assert!(
        out.status.success() || !is_agent,
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Object(m)) => m,
        other => panic!("{cmd:?}: not a JSON object: {other:?}"),
    }
}

/// Facts whose value moves between two reads a second apart.
const VOLATILE: &[&str] = &["memoryfree", "memoryfree_mb"];

#[test]
fn every_legacy_fact_facter_prints_here_resolves_to_the_same_value() {
    ensure_package("facter", "/usr/bin/facter");
    let with_legacy = json_of(Command::new("facter").args(["--show-legacy", "--json"]));
    let plain = json_of(Command::new("facter").arg("--json"));
    let sb = Sandbox::new();
    let ours = json_of(&mut sb.command(&["facts", "--show-legacy", "--json"]));
    let hidden = json_of(&mut sb.command(&["facts", "--json"]));

    let mut compared = Vec::new();
    let mut skipped = Vec::new();
    for (name, theirs) in &with_legacy {
        if plain.contains_key(name) {
            continue; // not a legacy name
        }
        // Facter's own interpreter and its DHCP lease reader: nothing an
        // agent without Ruby has, and Facter resolved no server here.
        if name.starts_with("ruby") || name == "dhcp_servers" {
            skipped.push(format!("{name} (Facter's Ruby / no DHCP lease here)"));
            continue;
        }
        let mine = ours
            .get(name)
            .unwrap_or_else(|| panic!("legacy fact {name} missing (Facter: {theirs})"));
        if VOLATILE.contains(&name.as_str()) {
            assert_eq!(
                mine.is_number(),
                theirs.is_number(),
                "{name}: {mine} vs Facter's {theirs}"
            );
        } else {
            assert_eq!(mine, theirs, "{name}");
        }
        assert!(
            !hidden.contains_key(name),
            "{name} is legacy: listed only with --show-legacy"
        );
        compared.push(name.clone());
    }
    assert!(compared.len() >= 40, "compared only {compared:?}");
    eprintln!(
        "{} legacy facts equal to Facter's; skipped: {}",
        compared.len(),
        skipped.join(", ")
    );
}

#[test]
fn a_legacy_fact_in_a_hierarchy_path_finds_its_file() {
    let sb = Sandbox::new();
    let out = sb
        .command(&["facts", "operatingsystemmajrelease"])
        .output()
        .unwrap();
    let major = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!major.is_empty(), "{out:?}");
    let os = String::from_utf8_lossy(
        &sb.command(&["facts", "operatingsystem"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    sb.site_file(
        "hiera/hiera.yaml",
        "version: 5\nhierarchy:\n  - name: os\n    path: \"os/%{::operatingsystem}-%{::operatingsystemmajrelease}.yaml\"\n  - name: common\n    path: common.yaml\n",
    )
    .site_file(&format!("hiera/data/os/{os}-{major}.yaml"), "where: os-file\n")
    .site_file("hiera/data/common.yaml", "where: common\n");
    let run = sb.agent(&["lookup", "where", "--node", "n1"]);
    run.code(0);
    assert_eq!(run.stdout.trim(), "os-file", "{}", run.all());
}

#[test]
fn a_hierarchy_variable_with_no_value_is_a_warning_naming_the_level() {
    let sb = Sandbox::new();
    sb.site_file(
        "hiera/hiera.yaml",
        "version: 5\nhierarchy:\n  - name: by app\n    path: \"apps/%{::no_such_fact}.yaml\"\n  - name: common\n    path: common.yaml\n",
    )
    .site_file("hiera/data/common.yaml", "a: 1\nb: 2\n");
    let run = sb.agent(&["lookup", "a", "--node", "n1"]);
    run.code(0);
    assert_eq!(run.stdout.trim(), "1");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("by app"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("%{::no_such_fact} has no value"),
        "{}",
        warnings[0]
    );
}

/// Runs the Puppet monitoring check on the sandbox's run summary.
fn puppet_check(sb: &Sandbox) -> (i32, String) {
    ensure_package(
        "python3-yaml",
        "/usr/lib/python3/dist-packages/yaml/__init__.py",
    );
    let run = common::Run::of(
        Command::new("/usr/bin/python3")
            .arg(common::repo().join("tests/monitoring/check_puppet_summary.py"))
            .arg(sb.state().join("last_run_summary.yaml")),
    );
    (run.code, run.all())
}

#[test]
fn a_check_written_for_puppets_run_summary_reads_the_agents() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", common::HIERA_YAML)
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            "resources:\n  - file: /motd\n    content: \"hi\\n\"\n",
        );
    // A normal run: OK, one change.
    sb.agent(&["apply"]).code(0);
    let (code, text) = puppet_check(&sb);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 changes, 0 failures"), "{text}");
    let summary = sb.state().join("last_run_summary.yaml");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&summary), 0o644, "readable by a monitoring user");
    assert_eq!(mode(&sb.state()) & 0o001, 0o001, "its dir traversable");
    // A noop run with drift is recorded too: out of sync, a warning.
    std::fs::write(sb.root().join("motd"), "edited\n").unwrap();
    sb.agent(&["apply", "--noop"]).code(0);
    let (code, text) = puppet_check(&sb);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("1 out of sync"), "{text}");
    // A failed run: critical.
    sb.site_file(
        "manifests/roles/r.yaml",
        "resources:\n  - exec: broken\n    command: \"exit 3\"\n",
    );
    sb.agent(&["apply"]).code(1);
    let (code, text) = puppet_check(&sb);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("1 failures"), "{text}");
}
