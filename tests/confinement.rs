//! Root confinement through the real binary: with `--root DIR`, a catalog
//! that would read or write outside DIR (a `..` in a path, an absolute
//! symlink in the root, a symlinked parent leading out, a template or
//! source leaving its folder, an exec cwd or `creates` outside) is refused
//! with a clear error and NOTHING is written: not in the root, not outside
//! it, not in the state dir.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{snapshot, Sandbox, HIERA_YAML};

/// A sandbox with a site whose only role holds `resources`, an `outside/`
/// dir beside the root (the thing that must never be touched), and a root
/// with a few files.
fn sandbox(resources: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("hiera/data/common.yaml", "motd: hi\n")
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            &format!("resources:\n{resources}"),
        )
        .site_file("manifests/templates/ok.hbs", "fine\n")
        .site_file("manifests/files/ok.txt", "fine\n")
        .root_file("etc/hosts", "127.0.0.1 localhost\n")
        .root_file("etc/motd", "old\n");
    fs::create_dir_all(sb.path().join("outside")).unwrap();
    fs::write(sb.path().join("outside/victim"), "untouched\n").unwrap();
    fs::write(sb.path().join("secret.txt"), "not for templates\n").unwrap();
    sb
}

/// Runs validate (where `compile_error`) and apply; both exit 1 with every
/// needle on stderr, and nothing anywhere changed.
fn refused(sb: &Sandbox, compile_error: bool, needles: &[&str]) {
    let outside = sb.path().join("outside");
    let before = (sb.snapshot(), snapshot(&outside), snapshot(&sb.state()));
    let mut runs = vec![sb.agent(&["apply", "--detailed-exitcodes"])];
    if compile_error {
        runs.push(sb.agent(&["validate"]));
    }
    for run in &runs {
        assert_eq!(run.code, 1, "exit code\n{}", run.all());
        for n in needles {
            assert!(
                run.stderr.contains(n),
                "stderr lacks {n:?}:\n{}",
                run.stderr
            );
        }
    }
    let after = (sb.snapshot(), snapshot(&outside), snapshot(&sb.state()));
    assert_eq!(before.0, after.0, "the root changed");
    assert_eq!(before.1, after.1, "something outside the root changed");
    assert_eq!(before.2, after.2, "the state dir changed");
}

#[test]
fn dotdot_in_titles_and_targets_is_refused() {
    // A file title with `..` does not even compile.
    let sb = sandbox("  - file: /etc/../../outside/victim\n    content: pwned\n");
    refused(&sb, true, &["must be an absolute path without '..'"]);
    // Other types' paths are checked before anything runs; the valid file
    // declared first is not written either.
    for decl in [
        "  - host: evil\n    ip: 10.0.0.1\n    target: /etc/../../outside/victim\n",
        "  - properties: /etc/../../outside/victim\n    values: {a: b}\n",
        "  - cron: evil\n    command: /bin/true\n    schedule: '@daily'\n    target: /../outside/victim\n",
    ] {
        let sb = sandbox(&format!(
            "  - file: /etc/new-file\n    content: x\n{decl}"
        ));
        refused(&sb, false, &["refusing to apply, nothing was changed", "outside the root"]);
        assert!(!sb.root().join("etc/new-file").exists());
    }
}

#[test]
fn absolute_symlink_inside_the_root_is_refused() {
    // root/etc -> <sandbox>/outside: writing /etc/victim would land outside.
    let sb = sandbox(
        "  - file: /srv/victim\n    content: pwned\n  - host: evil\n    ip: 10.0.0.1\n    target: /srv/hosts\n",
    );
    symlink(sb.path().join("outside"), sb.root().join("srv")).unwrap();
    refused(
        &sb,
        false,
        &["outside the root", "file[/srv/victim]", "host[evil]"],
    );
    // The classic: root/etc -> /etc. Only the check is exercised: the name
    // is unique and the test fails (and cleans up) if it ever appears.
    let sb = sandbox("  - file: /etc2/agent-confinement-test-7f3a\n    content: pwned\n");
    symlink("/etc", sb.root().join("etc2")).unwrap();
    refused(&sb, false, &["outside the root"]);
    let real = Path::new("/etc/agent-confinement-test-7f3a");
    let leaked = real.exists();
    let _ = fs::remove_file(real);
    assert!(!leaked, "wrote into the real /etc");
}

#[test]
fn relative_symlinked_parent_leading_out_is_refused() {
    let sb = sandbox(
        "  - file: /opt/app\n    ensure: directory\n  - properties: /opt/app/x.properties\n    values: {a: b}\n",
    );
    symlink("../outside", sb.root().join("opt")).unwrap();
    refused(&sb, false, &["outside the root"]);
    // A relative link that stays inside is fine.
    let sb = sandbox("  - file: /opt/inside.txt\n    content: ok\n");
    fs::create_dir_all(sb.root().join("real-opt")).unwrap();
    symlink("real-opt", sb.root().join("opt")).unwrap();
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(sb.read_root("real-opt/inside.txt"), "ok");
}

#[test]
fn templates_and_sources_cannot_leave_their_folders() {
    for (decl, needle) in [
        ("template: ../../secret.txt", "without '..'"),
        ("template: /etc/passwd", "without '..'"),
        ("source: ../../secret.txt", "without '..'"),
        ("source: /etc/passwd", "without '..'"),
        ("template: out.hbs", "resolves outside"),
        ("source: out.txt", "resolves outside"),
    ] {
        let sb = sandbox(&format!("  - file: /etc/motd\n    {decl}\n"));
        // Symlinks inside the folders that lead out are refused too.
        symlink(
            sb.path().join("secret.txt"),
            sb.site().join("manifests/templates/out.hbs"),
        )
        .unwrap();
        symlink(
            sb.path().join("secret.txt"),
            sb.site().join("manifests/files/out.txt"),
        )
        .unwrap();
        refused(&sb, true, &[needle, "file[/etc/motd]"]);
    }
    let sb = sandbox(
        "  - file: /etc/motd\n    template: ok.hbs\n  - file: /etc/copy\n    source: ok.txt\n",
    );
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    assert_eq!(sb.read_root("etc/motd"), "fine\n");
    assert_eq!(sb.read_root("etc/copy"), "fine\n");
}

#[test]
fn exec_cwd_and_creates_are_confined_before_anything_runs() {
    // Before exec had paths(), its cwd escaped the preflight: the command
    // ran inside the symlinked dir, outside the root.
    let sb = sandbox(
        "  - file: /etc/first\n    content: x\n  - exec: touch-it\n    command: touch created-here\n    cwd: /work\n",
    );
    symlink(sb.path().join("outside"), sb.root().join("work")).unwrap();
    refused(&sb, false, &["outside the root", "exec[touch-it]"]);
    assert!(!sb.path().join("outside/created-here").exists());
    let sb =
        sandbox("  - exec: once\n    command: /bin/true\n    creates: /var/../../outside/victim\n");
    refused(
        &sb,
        true,
        &["creates must be an absolute path without '..'"],
    );
}

/// /etc/out becomes a link to outside/ (`extra` are more attributes of the
/// link resource), then a file is written below it: that write must be
/// refused when it runs, and nothing may land outside.
fn link_out_then_write_below(sb: &Sandbox, extra: &str) {
    let outside = sb.path().join("outside");
    sb.site_file(
        "manifests/roles/r.yaml",
        &format!(
            "resources:\n  - file: /etc/out\n    ensure: link\n{extra}    target: {}\n  - file: /etc/out/victim\n    content: pwned\n    require: file[/etc/out]\n",
            outside.display()
        ),
    );
    let run = sb.agent(&["apply", "--detailed-exitcodes"]);
    assert_eq!(run.code, 6, "{}", run.all());
    assert!(run.all().contains("outside the root"), "{}", run.all());
    assert_eq!(
        fs::read_to_string(outside.join("victim")).unwrap(),
        "untouched\n"
    );
}

#[test]
fn a_link_made_in_the_same_run_is_not_a_way_out() {
    // Preflight cannot see a link that does not exist yet; the write through
    // it is refused when it runs, and nothing lands outside.
    link_out_then_write_below(&sandbox(""), "");
}

#[test]
fn a_directory_turned_into_a_link_in_the_same_run_is_checked_again() {
    // Preflight saw /etc/out as a real directory (and the run remembers
    // that); a resource then replaces it by a link leading out. What the
    // run remembered must be forgotten: the write below it is refused.
    let sb = sandbox("");
    sb.root_file("etc/out/keep", "k\n");
    link_out_then_write_below(&sb, "    force: true\n");
}

#[test]
fn a_managed_link_leading_out_is_replaced_never_followed() {
    // A `file` never follows its own last component: the link at its path
    // is replaced (the preflight confines only its parents), and the file
    // it pointed at is untouched. A type that reads and writes through its
    // target (host) is still refused before anything runs.
    let sb = sandbox("  - file: /etc/motd\n    content: hello\n");
    fs::remove_file(sb.root().join("etc/motd")).unwrap();
    symlink(sb.path().join("outside/victim"), sb.root().join("etc/motd")).unwrap();
    sb.agent(&["apply", "--detailed-exitcodes"]).code(2);
    let motd = sb.root().join("etc/motd");
    assert!(fs::symlink_metadata(&motd).unwrap().is_file());
    assert_eq!(sb.read_root("etc/motd"), "hello");
    assert_eq!(
        fs::read_to_string(sb.path().join("outside/victim")).unwrap(),
        "untouched\n"
    );
    let sb = sandbox("  - host: evil\n    ip: 10.0.0.1\n");
    fs::remove_file(sb.root().join("etc/hosts")).unwrap();
    symlink(
        sb.path().join("outside/victim"),
        sb.root().join("etc/hosts"),
    )
    .unwrap();
    refused(&sb, false, &["outside the root", "host[evil]"]);
}
