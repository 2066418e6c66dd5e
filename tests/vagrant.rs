//! The Vagrant files as Vagrant reads them: `vagrant validate` in each
//! node's folder (no VM can start here, so what can be checked is checked:
//! the Vagrantfiles and the shared `common.rb` load, and every setting in
//! them is one Vagrant knows). Debian's `vagrant` package is installed when
//! missing (as root), else the test fails naming it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ensure_package, repo, Run};

/// `vagrant validate` in `dir`, with a Vagrant home of its own (nothing
/// written to the user's ~/.vagrant.d) and no provider needed.
fn validate(dir: &Path, home: &Path) -> Run {
    Run::of(
        Command::new("vagrant")
            .args(["validate", "--ignore-provider"])
            .current_dir(dir)
            .env("VAGRANT_HOME", home)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .env("VAGRANT_NO_COLOR", "1"),
    )
}

#[test]
fn each_node_vagrantfile_validates_and_a_broken_one_does_not() {
    ensure_package("vagrant", "/usr/bin/vagrant");
    let home = tempfile::tempdir().unwrap();
    // A copy of vagrant/: Vagrant leaves a .vagrant dir where it runs.
    let copy = tempfile::tempdir().unwrap();
    common::copy_dir(&repo().join("vagrant"), copy.path());
    for node in ["stash-server", "production-db-standby"] {
        validate(&copy.path().join(node), home.path())
            .code(0)
            .stdout_has("Vagrantfile validated successfully");
    }
    // The same files with a setting Vagrant does not know: refused, so the
    // check above can fail.
    let shared = copy.path().join("common.rb");
    let text = std::fs::read_to_string(&shared).unwrap();
    std::fs::write(
        &shared,
        text.replace(
            "config.vm.hostname = name",
            "config.vm.hostname = name\n    config.vm.no_such_setting = true",
        ),
    )
    .unwrap();
    let broken = validate(&copy.path().join("stash-server"), home.path());
    assert_ne!(broken.code, 0, "{}", broken.all());
    assert!(broken.all().contains("no_such_setting"), "{}", broken.all());
}

#[test]
fn the_provisioning_script_converges_a_sandbox_root() {
    // provision.sh as Vagrant runs it, with AGENT_ROOT (everything below a
    // sandbox) and AGENT_REPO (the synced folder: this repository's site
    // and the agent built for the test). A node no site.yaml entry names
    // gets roles/base, which needs no PostgreSQL.
    let repo_copy = tempfile::tempdir().unwrap();
    common::copy_dir(
        &repo().join("manifests"),
        &repo_copy.path().join("manifests"),
    );
    common::copy_dir(&repo().join("hiera"), &repo_copy.path().join("hiera"));
    std::fs::create_dir_all(repo_copy.path().join("vagrant/bin")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_agent"),
        repo_copy.path().join("vagrant/bin/agent"),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let host_agent = std::fs::metadata("/usr/local/bin/agent")
        .and_then(|m| m.modified())
        .ok();
    let provision = || {
        Run::of(
            Command::new("bash")
                .arg(repo().join("vagrant/provision.sh"))
                .arg("web-1")
                .env("AGENT_ROOT", root.path())
                .env("AGENT_REPO", repo_copy.path())
                .env_remove("AGENT_LOG"),
        )
    };
    provision()
        .code(0)
        .stdout_has("provision: web-1 converged (agent apply exit 2)");
    let r = root.path();
    for installed in [
        "usr/local/bin/agent",
        "etc/agent/manifests/site.yaml",
        "etc/agent/data/common.yaml",
        "etc/agent/hiera.yaml",
        "var/lib/agent/last_run_report.json",
    ] {
        assert!(r.join(installed).is_file(), "{installed} not installed");
    }
    let hosts = std::fs::read_to_string(r.join("etc/hosts")).unwrap();
    assert!(
        hosts.contains("172.16.254.11\tstash-server")
            && hosts.contains("172.16.254.12\tproduction-db-standby"),
        "{hosts}"
    );
    assert!(
        r.join("etc/cron.d/agent").is_file() || r.join("etc/systemd/system/agent.timer").is_file(),
        "no drift-correction schedule in the root"
    );
    // Provisioning again (`vagrant provision`): nothing left to change.
    provision()
        .code(0)
        .stdout_has("provision: web-1 converged (agent apply exit 0)");
    assert_eq!(
        std::fs::metadata("/usr/local/bin/agent")
            .and_then(|m| m.modified())
            .ok(),
        host_agent,
        "the host's /usr/local/bin/agent was touched"
    );
}

#[test]
fn the_vms_agent_is_rebuilt_when_a_source_is_newer() {
    // build_agent.sh (what boot_strap_project.sh runs first) on a real,
    // tiny cargo package named agent: built when missing, left alone when
    // up to date, rebuilt when a source is newer than the binary.
    let repo_dir = tempfile::tempdir().unwrap();
    let r = repo_dir.path();
    common::write(
        &r.join("Cargo.toml"),
        "[package]\nname = \"agent\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    common::write(&r.join("src/main.rs"), "fn main() { println!(\"one\"); }\n");
    let build = || {
        Run::of(
            Command::new("bash")
                .arg(repo().join("vagrant/build_agent.sh"))
                .arg(r)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR"),
        )
    };
    let bin = r.join("vagrant/bin/agent");
    let says = |text: &str| {
        let out = Command::new(&bin).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), text);
    };
    build().code(0).stdout_has("Building the agent (release)");
    says("one\n");
    let built = std::fs::metadata(&bin).unwrap().modified().unwrap();
    build()
        .code(0)
        .stdout_has("vagrant/bin/agent is up to date");
    assert_eq!(std::fs::metadata(&bin).unwrap().modified().unwrap(), built);
    // A source changed after the build: the binary is now the older one.
    common::write(&r.join("src/main.rs"), "fn main() { println!(\"two\"); }\n");
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&bin)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    build()
        .code(0)
        .stdout_has("Rebuilding the agent for the VMs: src/main.rs is newer");
    says("two\n");
}
