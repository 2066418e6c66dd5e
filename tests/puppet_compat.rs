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

/// The keys of `tests/puppet_lookup/` compared with `puppet lookup`: YAML
/// 1.1 typing, quoting, octal, exponent, null, `%`-strings, multi-line,
/// nested data, interpolation, merges and a legacy-fact hierarchy path.
const LOOKUP_KEYS: &[&str] = &[
    "plain_on",
    "plain_off",
    "plain_yes",
    "plain_no",
    "plain_true",
    "quoted_on",
    "quoted_off",
    "quoted_yes",
    "y_word",
    "octal",
    "quoted_octal",
    "hex",
    "underscored",
    "sexagesimal",
    "exponent",
    "float",
    "negative",
    "nothing",
    "null_word",
    "empty",
    "percent",
    "star",
    "colon",
    "multi",
    "folded",
    "nested",
    "nested.hash.b",
    "arr",
    "where",
    "greeting",
    "via_lookup",
    "aliased",
    "merged",
    "unique_list",
];

/// Puppet run on the fixture tree as node n1 with the facts of
/// `facts.yaml`, its state kept in `scratch` (nothing of Puppet's own on
/// the machine is written): `args` after `puppet`.
fn puppet(scratch: &std::path::Path, args: &[String]) -> (i32, String, String) {
    let dir = common::repo().join("tests/puppet_lookup");
    let mut cmd = Command::new("/usr/bin/puppet");
    cmd.args(args);
    for (flag, sub) in [
        ("--vardir", "var"),
        ("--confdir", "conf"),
        ("--logdir", "log"),
        ("--rundir", "run"),
    ] {
        cmd.arg(flag).arg(scratch.join(sub));
    }
    cmd.arg("--hiera_config")
        .arg(dir.join("hiera.yaml"))
        .env("HOME", scratch)
        .env("FACTER_operatingsystem", "Debian")
        .env("FACTER_operatingsystemmajrelease", "12");
    if args[0] == "lookup" {
        cmd.args(["--node", "n1", "--facts"])
            .arg(dir.join("facts.yaml"));
    }
    let run = common::Run::of(&mut cmd);
    (run.code, run.stdout, strip_colours(&run.stderr))
}

/// Several Puppet runs at once (each costs seconds of Ruby start-up).
fn puppet_runs(runs: &[Vec<String>]) -> Vec<(i32, String, String)> {
    ensure_package("puppet", "/usr/bin/puppet");
    let scratch = tempfile::tempdir().unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![None; runs.len()]);
    std::thread::scope(|s| {
        for worker in 0..3 {
            // Each worker its own vardir/confdir: Puppets started together
            // race to create the same settings directories ("File exists").
            let own = scratch.path().join(format!("w{worker}"));
            let (next, results) = (&next, &results);
            s.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(args) = runs.get(i) else { break };
                let out = puppet(&own, args);
                results.lock().unwrap()[i] = Some(out);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every Puppet run ran"))
        .collect()
}

/// Puppet's messages without their ANSI colours.
fn strip_colours(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A sandbox whose Hiera is the fixture tree.
fn lookup_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    common::copy_dir(
        &common::repo().join("tests/puppet_lookup"),
        &sb.site().join("hiera"),
    );
    sb
}

fn agent_lookup(sb: &Sandbox, args: &[&str]) -> common::Run {
    let facts = sb.site().join("hiera/facts.yaml");
    let mut all = vec!["lookup", "--node", "n1", "--facts", facts.to_str().unwrap()];
    all.extend_from_slice(args);
    sb.agent(&all)
}

#[test]
fn agent_lookup_answers_as_puppet_lookup_on_the_same_data() {
    // Every key through Puppet's `lookup` (what `puppet lookup` calls) in
    // one `puppet apply`, printed as JSON by Ruby's own encoder...
    let manifest = format!(
        "$values = {{ {} }}\nnotice(inline_template('<%= require \"json\"; \"VALUES=\" + @values.to_json %>'))\n",
        LOOKUP_KEYS
            .iter()
            .map(|k| format!("'{k}' => lookup('{k}')"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut runs: Vec<Vec<String>> = vec![["apply", "--certname", "n1", "-e", manifest.as_str()]
        .iter()
        .map(|s| s.to_string())
        .collect()];
    // ...and `puppet lookup` itself: JSON and `s` rendering, several keys
    // (the first found), --default, --type and its messages.
    let cli: &[&[&str]] = &[
        &["--render-as", "json", "nested"],
        &["--render-as", "json", "no_such", "where", "plain_on"],
        &["--render-as", "json", "no_such", "--default", "fallback"],
        &["--render-as", "json", "octal", "--type", "Integer"],
        &[
            "--render-as",
            "json",
            "nothing",
            "--type",
            "Optional[String]",
        ],
        &["--render-as", "s", "arr"],
        &["--render-as", "s", "nested.hash"],
        &["--render-as", "s", "multi"],
        &["octal", "--type", "String"],
        &["nested.list", "--type", "Array[String]"],
        &["no_such", "--default", "5", "--type", "Integer"],
        &["where", "--type", "Enum[a, b]"],
    ];
    runs.extend(cli.iter().map(|a| {
        std::iter::once("lookup")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    }));
    let theirs = puppet_runs(&runs);
    let sb = lookup_sandbox();

    let (code, out, err) = &theirs[0];
    assert_eq!(*code, 0, "puppet apply: {out}{err}");
    let values = out
        .lines()
        .find_map(|l| l.split_once("VALUES=").map(|(_, v)| strip_colours(v)))
        .unwrap_or_else(|| panic!("puppet apply printed no values: {out}{err}"));
    let values: serde_json::Map<String, Value> = serde_json::from_str(&values).unwrap();
    for key in LOOKUP_KEYS {
        let ours = agent_lookup(&sb, &["--render-as", "json", key]);
        ours.code(0);
        let ours: Value = serde_json::from_str(ours.stdout.trim()).unwrap();
        assert_eq!(&ours, &values[*key], "{key}");
    }

    for (args, (code, out, err)) in runs[1..].iter().zip(&theirs[1..]) {
        let args: Vec<&str> = args[1..].iter().map(String::as_str).collect();
        let ours = agent_lookup(&sb, &args);
        assert_eq!(
            ours.code,
            *code,
            "{args:?}: puppet said {out}{err}\nwe said {}",
            ours.all()
        );
        if *code != 0 {
            // Puppet's message, after its "Error: Could not run: ".
            let message = err
                .trim()
                .trim_start_matches("Error: Could not run:")
                .trim();
            for line in message.lines() {
                assert!(
                    ours.stderr.contains(line.trim()),
                    "{args:?}: puppet said {line:?}, we said {}",
                    ours.stderr
                );
            }
        } else if args.contains(&"json") {
            let parse = |s: &str| -> Value {
                serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {s}"))
            };
            assert_eq!(parse(&ours.stdout), parse(out), "{args:?}");
        } else {
            assert_eq!(ours.stdout.trim_end(), out.trim_end(), "{args:?}");
        }
    }
    eprintln!(
        "{} keys and {} puppet lookup command lines answered alike",
        LOOKUP_KEYS.len(),
        runs.len() - 1
    );
}

#[test]
fn agent_lookups_default_yaml_loads_back_to_the_same_values() {
    ensure_package(
        "python3-yaml",
        "/usr/lib/python3/dist-packages/yaml/__init__.py",
    );
    let sb = lookup_sandbox();
    let mut expected = serde_json::Map::new();
    let mut yaml_texts = serde_json::Map::new();
    for key in LOOKUP_KEYS {
        let json = agent_lookup(&sb, &["--render-as", "json", key]);
        json.code(0);
        expected.insert(
            key.to_string(),
            serde_json::from_str(json.stdout.trim()).unwrap(),
        );
        let yaml = agent_lookup(&sb, &[key]);
        yaml.code(0);
        yaml_texts.insert(key.to_string(), Value::String(yaml.stdout.clone()));
    }
    let input = sb.path().join("yaml-outputs.json");
    std::fs::write(&input, Value::Object(yaml_texts).to_string()).unwrap();
    let loaded = common::Run::of(Command::new("/usr/bin/python3").args([
        "-c",
        "import json, sys, yaml\n\
         texts = json.load(open(sys.argv[1]))\n\
         print(json.dumps({k: yaml.safe_load(t) for k, t in texts.items()}))",
        input.to_str().unwrap(),
    ]));
    loaded.code(0);
    let loaded: Value = serde_json::from_str(&loaded.stdout).unwrap();
    for (key, want) in &expected {
        assert_eq!(
            &loaded[key], want,
            "{key}: yaml.safe_load of our YAML output"
        );
    }
}

#[test]
fn storage_and_load_facts_are_facters() {
    ensure_package("facter", "/usr/bin/facter");
    // Facter's mountpoints need the sys-filesystem gem, which Debian's
    // facter only recommends (installed without recommends, Facter leaves
    // the fact out with a debug line).
    ensure_package(
        "ruby-sys-filesystem",
        "/usr/lib/ruby/vendor_ruby/sys/filesystem.rb",
    );
    let names = ["load_averages", "mountpoints", "filesystems", "partitions"];
    let theirs = json_of(Command::new("facter").arg("--json").args(names));
    let sb = Sandbox::new();
    // Each name alone: a fact Facter resolves to nothing here (partitions
    // on a disk without any) must be absent from ours too.
    let mut ours = serde_json::Map::new();
    for name in names {
        let run = sb.agent(&["facts", "--json", name]);
        if run.code == 0 {
            let v: Value = serde_json::from_str(&run.stdout).unwrap();
            ours.insert(name.to_string(), v[name].clone());
        } else {
            run.stderr_has(&format!("no such fact: {name}"));
        }
    }
    // Resolved to something: Facter prints `{}` for partitions on a disk
    // without any where we leave the fact out; both mean none.
    let present = |m: &serde_json::Map<String, Value>| -> Vec<String> {
        names
            .iter()
            .filter(|n| {
                m.get(**n)
                    .is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
            })
            .map(|n| n.to_string())
            .collect()
    };
    assert_eq!(present(&ours), present(&theirs), "facts resolved here");
    assert_eq!(ours["filesystems"], theirs["filesystems"]);
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&ours["load_averages"]), keys(&theirs["load_averages"]));
    assert!(ours["load_averages"]["1m"].is_number());
    // Mount points: the same paths, devices, types, options and sizes (what
    // is used and free moves between two reads).
    assert_eq!(keys(&ours["mountpoints"]), keys(&theirs["mountpoints"]));
    for (path, theirs) in theirs["mountpoints"].as_object().unwrap() {
        let mine = &ours["mountpoints"][path];
        for field in ["device", "filesystem", "options", "size_bytes", "size"] {
            assert_eq!(mine[field], theirs[field], "{path} {field}");
        }
        assert_eq!(keys(mine), keys(theirs), "{path}");
    }
    if let Some(parts) = theirs.get("partitions").filter(|p| !p.is_null()) {
        assert_eq!(keys(&ours["partitions"]), keys(parts));
        for (dev, theirs) in parts.as_object().unwrap() {
            for field in ["size_bytes", "mount", "uuid", "partuuid", "label"] {
                assert_eq!(
                    ours["partitions"][dev].get(field),
                    theirs.get(field),
                    "{dev} {field}"
                );
            }
        }
    } else {
        eprintln!("partitions: none here (Facter resolves none either); compared by unit tests");
    }
}

#[test]
fn facts_flags_as_facters_and_a_broken_external_fact_is_an_error() {
    let sb = Sandbox::new();
    let ext = sb.path().join("facts.d");
    common::write(&ext.join("a.yaml"), "good: 1\n");
    common::write(&ext.join("b.yaml"), "bad: [1\n");
    // --external-dir is Facter's name for --facts-dir.
    let alias = common::Run::of(
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["facts", "good", "--external-dir"])
            .arg(&ext),
    );
    alias.code(0);
    assert_eq!(alias.stdout.trim(), "1");
    let run = sb.agent(&["facts", "good"]);
    // Without --strict: the value of the good file, exit 0, and an error
    // naming the broken file and its line.
    run.code(0);
    assert_eq!(run.stdout.trim(), "1");
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("b.yaml") && errors[0].contains("line 2"),
        "{}",
        errors[0]
    );
    // --strict: exit 1.
    sb.agent(&["facts", "good", "--strict"])
        .code(1)
        .stdout_has("1")
        .stderr_has("b.yaml")
        .stderr_has("--strict");
    // A script that exits 3 fails the same way.
    std::fs::remove_file(ext.join("b.yaml")).unwrap();
    common::write(&ext.join("c.sh"), "#!/bin/sh\nexit 3\n");
    std::fs::set_permissions(
        ext.join("c.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    sb.agent(&["facts", "good", "--strict"])
        .code(1)
        .stderr_has("c.sh");
    // --no-external-facts: none read, so no error and no `good`.
    let none = sb.agent(&["facts", "--no-external-facts", "--strict", "good"]);
    none.code(1).stderr_has("no such fact: good");
    assert!(!none.stderr.contains("c.sh"), "{}", none.stderr);
    // --timing: one line per source read, on stderr; stdout is the value.
    let timed = sb.agent(&["facts", "--no-external-facts", "--timing", "kernel"]);
    timed.code(0);
    assert_eq!(timed.stdout.trim(), "Linux");
    let lines: Vec<&str> = timed.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "only the system source was read: {}",
        timed.stderr
    );
    assert!(
        lines[0].starts_with("facts from system: took "),
        "{}",
        lines[0]
    );
}
