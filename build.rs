//! Build settings of the agent's binaries.
//!
//! - Links them with packed relative relocations (DT_RELR, glibc >= 2.36):
//!   a binary of this size carries ~17k relative relocations, which as
//!   classic RELA entries are 400 KiB the dynamic loader reads at every
//!   start, a hundred page faults and a fifth of the start-up of a
//!   one-resource run. Packed, they are 5 KiB. The binary stays
//!   position-independent (ASLR); libraries and tests are unaffected.
//! - Stamps `agent --version` with the git commit and the build date
//!   (`AGENT_GIT_COMMIT`, `AGENT_BUILD_DATE`; `SOURCE_DATE_EPOCH` fixes the
//!   date for reproducible builds; outside a git checkout: "unknown").

use std::process::Command;

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // A new commit or checkout re-stamps the version.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or(dir);
            println!("cargo:rerun-if-changed={common}/{head}");
        }
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let date = civil_date(epoch.unwrap_or_else(now));
    println!("cargo:rustc-env=AGENT_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=AGENT_BUILD_DATE={date}");
}

/// YYYY-MM-DD (UTC) of a Unix time, without a date crate in the build.
fn civil_date(secs: i64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
