//! `os` facts: name, family, release and distribution codename, from
//! `/etc/os-release` refined by `/etc/debian_version` and
//! `/etc/redhat-release` as Facter does. Parsing is pure (text in, values
//! out) so other distributions' files serve as test fixtures.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::read;

/// The `os` fact; `machine` is uname's hardware name ("x86_64").
pub(super) fn facts(machine: &str) -> Value {
    let os_release = parse_os_release(
        &read("/etc/os-release")
            .or_else(|| read("/usr/lib/os-release"))
            .unwrap_or_default(),
    );
    let os = os_info(
        &os_release,
        read("/etc/debian_version").as_deref(),
        read("/etc/redhat-release").as_deref(),
    );
    let mut os_fact = json!({
        "name": os.name,
        "family": os.family,
        "hardware": machine,
        "architecture": architecture(&os.family, machine),
    });
    let mut distro = Map::new();
    if let Some(release) = &os.release {
        let mut rel = json!({"full": release.full, "major": release.major});
        if let Some(minor) = &release.minor {
            rel["minor"] = json!(minor);
        }
        os_fact["release"] = rel.clone();
        distro.insert("release".into(), rel);
    }
    if let Some(codename) = &os.codename {
        distro.insert("codename".into(), json!(codename));
    }
    // lsb_release -i: the distribution's own name.
    distro.insert("id".into(), json!(os.name));
    if let Some(description) = &os.description {
        distro.insert("description".into(), json!(description));
    }
    if !distro.is_empty() {
        os_fact["distro"] = Value::Object(distro);
    }
    os_fact["selinux"] = selinux();
    os_fact
}

/// `os.selinux`: enabled when selinuxfs is mounted, and then whether it
/// enforces (Facter's `enabled`, `enforced`).
fn selinux() -> Value {
    let Some(enforce) = read("/sys/fs/selinux/enforce") else {
        return json!({"enabled": false});
    };
    json!({"enabled": true, "enforced": enforce.trim() == "1"})
}

/// `/etc/os-release` as a map, with shell quoting removed.
pub(crate) fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            Some((key.trim().to_string(), unquote(value.trim())))
        })
        .collect()
}

/// Removes one level of shell quotes; in double quotes a backslash escapes
/// the next character (os-release(5)).
fn unquote(value: &str) -> String {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') {
        return value[1..value.len() - 1].to_string();
    }
    if !quoted('"') {
        return value.to_string();
    }
    let mut out = String::new();
    let mut chars = value[1..value.len() - 1].chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

/// What the OS facts are made of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OsInfo {
    pub name: String,
    pub family: String,
    pub release: Option<Release>,
    pub codename: Option<String>,
    pub description: Option<String>,
}

/// `os.release`: `full`, `major` and (when there is one) `minor`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Release {
    pub full: String,
    pub major: String,
    pub minor: Option<String>,
}

/// Derives the OS facts from os-release, refined as Facter does by
/// `/etc/debian_version` (Debian's point release, "12.7") and
/// `/etc/redhat-release` (CentOS 7's "7.9.2009").
pub(crate) fn os_info(
    os_release: &BTreeMap<String, String>,
    debian_version: Option<&str>,
    redhat_release: Option<&str>,
) -> OsInfo {
    let id = os_release
        .get("ID")
        .map(|s| s.to_lowercase())
        .unwrap_or_default();
    let name = if id.is_empty() {
        os_release
            .get("NAME")
            .cloned()
            .unwrap_or_else(|| "Linux".into())
    } else {
        os_name(&id)
    };
    let like = os_release
        .get("ID_LIKE")
        .map(|s| s.to_lowercase())
        .unwrap_or_default();
    let family = std::iter::once(id.as_str())
        .chain(like.split_whitespace())
        .find_map(family_of)
        .map_or_else(|| name.clone(), str::to_string);

    let numeric = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
    let mut full = os_release.get("VERSION_ID").cloned();
    if matches!(id.as_str(), "debian" | "raspbian") {
        // Testing/unstable says "trixie/sid" there: keep VERSION_ID then.
        if let Some(v) = debian_version.map(str::trim).filter(|v| numeric(v)) {
            full = Some(v.to_string());
        }
    }
    if family == "RedHat" {
        let from_file = redhat_release.and_then(|text| {
            let mut words = text.split_whitespace();
            words.find(|w| *w == "release")?;
            words.next().filter(|v| numeric(v)).map(str::to_string)
        });
        full = from_file.or(full);
    }
    let release = full.filter(|f| !f.is_empty()).map(|full| {
        if id == "ubuntu" {
            // Facter treats "22.04" as Ubuntu's major release as a whole.
            return Release {
                major: full.clone(),
                minor: None,
                full,
            };
        }
        let mut parts = full.split('.');
        let major = parts.next().unwrap_or_default().to_string();
        let minor = parts.next().map(str::to_string);
        Release { full, major, minor }
    });

    let codename = ["VERSION_CODENAME", "UBUNTU_CODENAME"]
        .iter()
        .find_map(|k| os_release.get(*k).filter(|v| !v.is_empty()).cloned())
        .or_else(|| {
            // CentOS 7 and Rocky only say it in VERSION="7 (Core)".
            let version = os_release.get("VERSION")?;
            let inner = version.split_once('(')?.1.split_once(')')?.0.trim();
            (!inner.is_empty()).then(|| inner.to_string())
        });
    let description = os_release.get("PRETTY_NAME").cloned();
    OsInfo {
        name,
        family,
        release,
        codename,
        description,
    }
}

/// Facter's `os.name` for an os-release ID.
fn os_name(id: &str) -> String {
    let known = match id {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        "rhel" => "RedHat",
        "centos" => "CentOS",
        "rocky" => "Rocky",
        "almalinux" => "AlmaLinux",
        "fedora" => "Fedora",
        "ol" => "OracleLinux",
        "amzn" => "Amazon",
        "sles" | "sles_sap" => "SLES",
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "OpenSuSE",
        "arch" => "Archlinux",
        "manjaro" => "ManjaroLinux",
        "linuxmint" => "LinuxMint",
        "raspbian" => "Raspbian",
        "alpine" => "Alpine",
        "gentoo" => "Gentoo",
        other => {
            let mut chars = other.chars();
            return chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
        }
    };
    known.to_string()
}

/// Facter's `os.family` for an os-release ID or ID_LIKE word.
fn family_of(id: &str) -> Option<&'static str> {
    match id {
        "debian" | "ubuntu" => Some("Debian"),
        "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" | "amzn" => Some("RedHat"),
        "suse" | "sles" | "sles_sap" => Some("Suse"),
        s if s.starts_with("opensuse") => Some("Suse"),
        "arch" | "archlinux" => Some("Archlinux"),
        _ => None,
    }
}

/// `os.architecture`: Debian names x86_64 "amd64" and aarch64 "arm64".
fn architecture(family: &str, machine: &str) -> String {
    match (family, machine) {
        ("Debian", "x86_64") => "amd64".into(),
        ("Debian", "aarch64") => "arm64".into(),
        _ => machine.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const DEBIAN: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"#;
    const UBUNTU: &str = r#"PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=jammy
"#;
    const ROCKY: &str = r#"NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
"#;
    const CENTOS7: &str = r#"NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core)"
"#;

    fn info(text: &str, debian: Option<&str>, redhat: Option<&str>) -> OsInfo {
        os_info(&parse_os_release(text), debian, redhat)
    }

    fn rel(full: &str, major: &str, minor: Option<&str>) -> Option<Release> {
        Some(Release {
            full: full.into(),
            major: major.into(),
            minor: minor.map(Into::into),
        })
    }

    #[test]
    fn os_release_unquotes() {
        let m = parse_os_release("# c\nA=\"x \\\"y\\\" \\\\z\"\nB='single'\nC=bare\n\nD=\"\"\n");
        assert_eq!(m["A"], r#"x "y" \z"#);
        assert_eq!(m["B"], "single");
        assert_eq!(m["C"], "bare");
        assert_eq!(m["D"], "");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn debian_uses_debian_version_for_full() {
        let os = info(DEBIAN, Some("12.7\n"), None);
        assert_eq!((os.name.as_str(), os.family.as_str()), ("Debian", "Debian"));
        assert_eq!(os.release, rel("12.7", "12", Some("7")));
        assert_eq!(os.codename.as_deref(), Some("bookworm"));
        assert_eq!(
            os.description.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            info(DEBIAN, Some("trixie/sid"), None).release,
            rel("12", "12", None)
        );
        assert_eq!(info(DEBIAN, None, None).release, rel("12", "12", None));
    }

    #[test]
    fn ubuntu_is_debian_family_with_whole_major() {
        // Ubuntu ships /etc/debian_version too; it must not be used.
        let os = info(UBUNTU, Some("bookworm/sid"), None);
        assert_eq!((os.name.as_str(), os.family.as_str()), ("Ubuntu", "Debian"));
        assert_eq!(os.release, rel("22.04", "22.04", None));
        assert_eq!(os.codename.as_deref(), Some("jammy"));
    }

    #[test]
    fn rocky_and_centos_are_redhat() {
        let os = info(ROCKY, None, Some("Rocky Linux release 9.4 (Blue Onyx)\n"));
        assert_eq!((os.name.as_str(), os.family.as_str()), ("Rocky", "RedHat"));
        assert_eq!(os.release, rel("9.4", "9", Some("4")));
        assert_eq!(os.codename.as_deref(), Some("Blue Onyx"));

        let os = info(
            CENTOS7,
            None,
            Some("CentOS Linux release 7.9.2009 (Core)\n"),
        );
        assert_eq!((os.name.as_str(), os.family.as_str()), ("CentOS", "RedHat"));
        assert_eq!(os.release, rel("7.9.2009", "7", Some("9")));
        assert_eq!(os.codename.as_deref(), Some("Core"));
        assert_eq!(info(CENTOS7, None, None).release, rel("7", "7", None));
    }

    #[test]
    fn other_families() {
        let os = info(
            "ID=opensuse-leap\nID_LIKE=\"suse opensuse\"\nVERSION_ID=\"15.5\"\n",
            None,
            None,
        );
        assert_eq!((os.name.as_str(), os.family.as_str()), ("OpenSuSE", "Suse"));
        let os = info("ID=arch\nNAME=\"Arch Linux\"\n", None, None);
        assert_eq!(
            (os.name.as_str(), os.family.as_str(), os.release),
            ("Archlinux", "Archlinux", None)
        );
        let os = info("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", None, None);
        assert_eq!(
            (os.name.as_str(), os.family.as_str()),
            ("LinuxMint", "Debian")
        );
        let os = info("ID=void\n", None, None);
        assert_eq!(
            (os.name.as_str(), os.family.as_str()),
            ("Void", "Void"),
            "unknown: family is the name"
        );
        assert_eq!(info("", None, None).name, "Linux");
    }

    #[test]
    fn live_os_is_parsed_like_the_fixture() {
        let text = fs::read_to_string("/etc/os-release").unwrap();
        let live = facts("x86_64");
        let expected = info(
            &text,
            read("/etc/debian_version").as_deref(),
            read("/etc/redhat-release").as_deref(),
        );
        assert_eq!(live["name"], json!(expected.name));
        assert_eq!(live["family"], json!(expected.family));
        if parse_os_release(&text).get("ID").map(String::as_str) == Some("debian") {
            // This project's build machine is Debian 12.
            assert_eq!(live["name"], json!("Debian"));
            assert_eq!(live["family"], json!("Debian"));
            assert_eq!(
                live["release"]["major"],
                json!(parse_os_release(&text)["VERSION_ID"])
            );
        }
    }

    #[test]
    fn architectures() {
        assert_eq!(architecture("Debian", "x86_64"), "amd64");
        assert_eq!(architecture("RedHat", "x86_64"), "x86_64");
        assert_eq!(facts("x86_64")["hardware"], json!("x86_64"));
    }
}
