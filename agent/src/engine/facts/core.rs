//! Core facts: the operating system, kernel, memory, processors, uptime,
//! timezone, identity and (in submodules) the OS, networking and virtualization,
//! under Facter's names. Everything is read from `/proc`, `/sys`, `/etc` or
//! a syscall: no commands and no sleeping, so the set costs a millisecond or
//! two. Each file parser is a pure function over the file's text so tests
//! can feed it other distributions' files.

mod augeas;
mod networking;
mod os;
mod storage;
mod virt;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// Reads a file that may well be missing (containers, non-root): absence
/// just means the facts derived from it are absent.
fn read(path: &str) -> Option<String> {
    String::from_utf8(super::read_small(std::path::Path::new(path)).ok()?).ok()
}

/// The core facts, in parts that are collected separately (see
/// [`super::Facts`]): each part reads its own sources, and the top-level
/// names it may produce are listed in [`Part::names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Part {
    /// uname and /etc/os-release: `os`, `kernel*`.
    System,
    /// Interfaces and names (netlink, /sys, resolv.conf).
    Networking,
    /// /proc/cpuinfo, meminfo, uptime, the timezone, virtualization, PATH.
    Hardware,
    /// The user and group the agent runs as (NSS).
    Identity,
    /// The mount table with statvfs of each mount, /proc/filesystems,
    /// partitions from sysfs.
    Storage,
    /// /proc/loadavg.
    Load,
    /// libaugeas, asked its version.
    Augeas,
}

impl Part {
    /// Every top-level name the part may produce.
    pub(super) fn names(self) -> &'static [&'static str] {
        match self {
            Part::System => &[
                "os",
                "operatingsystem",
                "osfamily",
                "kernel",
                "kernelversion",
                "kernelmajversion",
                "kernelrelease",
            ],
            Part::Networking => &["networking", "hostname", "domain", "fqdn", "ipaddress"],
            Part::Hardware => &[
                "processors",
                "memory",
                "disks",
                "system_uptime",
                "timezone",
                "virtual",
                "is_virtual",
                "path",
            ],
            Part::Identity => &["identity"],
            Part::Storage => &["mountpoints", "filesystems", "partitions"],
            Part::Load => &["load_averages"],
            Part::Augeas => &["augeas"],
        }
    }
}

/// The facts of one part.
pub(super) fn collect_part(part: Part) -> Map<String, Value> {
    let mut facts = Map::new();
    match part {
        Part::System => {
            let uts = nix::sys::utsname::uname().ok();
            let machine = uts
                .as_ref()
                .map(|u| u.machine().to_string_lossy().into_owned())
                .unwrap_or_default();
            let os = os::facts(&machine);
            facts.insert("operatingsystem".into(), os["name"].clone());
            facts.insert("osfamily".into(), os["family"].clone());
            facts.insert("os".into(), os);
            if let Some(uts) = &uts {
                let release = uts.release().to_string_lossy().into_owned();
                facts.insert("kernel".into(), json!(uts.sysname().to_string_lossy()));
                facts.insert("kernelversion".into(), json!(kernel_version(&release)));
                facts.insert(
                    "kernelmajversion".into(),
                    json!(kernel_major_version(&release)),
                );
                facts.insert("kernelrelease".into(), json!(release));
            }
        }
        Part::Networking => {
            let networking = networking::facts();
            for (legacy, name) in [
                ("hostname", "hostname"),
                ("domain", "domain"),
                ("fqdn", "fqdn"),
                ("ipaddress", "ip"),
            ] {
                if let Some(value) = networking.get(name) {
                    facts.insert(legacy.into(), value.clone());
                }
            }
            facts.insert("networking".into(), networking);
        }
        Part::Hardware => {
            let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
            facts.insert("processors".into(), processors(&cpuinfo));
            if let Some(memory) = read("/proc/meminfo").and_then(|t| memory(&parse_meminfo(&t))) {
                facts.insert("memory".into(), memory);
            }
            facts.insert("disks".into(), disks(std::path::Path::new("/sys/block")));
            if let Some(seconds) = read("/proc/uptime").and_then(|t| parse_uptime(&t)) {
                facts.insert("system_uptime".into(), uptime(seconds));
            }
            if let Some(tz) = timezone() {
                facts.insert("timezone".into(), json!(tz));
            }
            let virtual_ = virt::classify(&virt::Hints::gather(&cpuinfo));
            facts.insert("virtual".into(), json!(virtual_));
            facts.insert("is_virtual".into(), json!(virtual_ != "physical"));
            if let Some(path) = std::env::var_os("PATH") {
                facts.insert("path".into(), json!(path.to_string_lossy()));
            }
        }
        Part::Identity => {
            facts.insert("identity".into(), identity());
        }
        Part::Storage => facts = storage::facts(),
        Part::Augeas => {
            if let Some(v) = augeas::version() {
                facts.insert("augeas".into(), json!({ "version": v }));
            }
        }
        Part::Load => {
            if let Some(load) = read("/proc/loadavg").and_then(|t| storage::load_averages(&t)) {
                facts.insert("load_averages".into(), load);
            }
        }
    }
    facts
}

/// `kernelversion`: the release without its distribution suffix.
pub(crate) fn kernel_version(release: &str) -> String {
    release.split('-').next().unwrap_or_default().to_string()
}

/// `kernelmajversion`: the first two components ("6.1").
pub(crate) fn kernel_major_version(release: &str) -> String {
    kernel_version(release)
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// `processors`: logical CPUs online, the model names, and Facter's
/// topology fields from cpuinfo (sockets, cores per socket, threads per
/// core, the first CPU's speed) and `isa` (uname -p, which Linux does not
/// know: "unknown", as Facter says).
pub(crate) fn processors(cpuinfo: &str) -> Value {
    // SAFETY: sysconf only reads a configuration value.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let models: Vec<&str> = cpuinfo
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim() == "model name")
                .map(|(_, v)| v.trim())
        })
        .collect();
    let count = if online > 0 {
        online as usize
    } else {
        models.len()
    };
    let field = |name: &'static str| {
        cpuinfo.lines().filter_map(move |l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim())
        })
    };
    let sockets = field("physical id")
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    let cores = field("cpu cores")
        .next()
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(count / sockets)
        .max(1);
    let mut out = json!({
        "count": count,
        "models": models,
        "physicalcount": sockets,
        "cores": cores,
        "threads": (count / (sockets * cores)).max(1),
        "isa": "unknown",
    });
    if let Some(mhz) = field("cpu MHz").next().and_then(|m| m.parse::<f64>().ok()) {
        out["speed"] = json!(if mhz >= 1000.0 {
            format!("{:.2} GHz", mhz / 1000.0)
        } else {
            format!("{mhz:.2} MHz")
        });
    }
    out
}

/// `disks`: the block devices backed by hardware (a `device` link in
/// sysfs: loop and zram devices have none), as Facter lists them.
pub(crate) fn disks(sys_block: &std::path::Path) -> Value {
    let mut out = serde_json::Map::new();
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Value::Object(out);
    };
    for e in entries.flatten() {
        let dir = e.path();
        if !dir.join("device").exists() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let text = |rel: &str| {
            read(&dir.join(rel).to_string_lossy())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        };
        let mut disk = serde_json::Map::new();
        if let Some(sectors) = text("size").and_then(|t| t.parse::<u64>().ok()) {
            // sysfs counts 512-byte sectors whatever the device's own size.
            let bytes = sectors * 512;
            disk.insert("size".into(), json!(bytes_to_human(bytes)));
            disk.insert("size_bytes".into(), json!(bytes));
        }
        if let Some(rot) = text("queue/rotational") {
            disk.insert("type".into(), json!(if rot == "1" { "hdd" } else { "ssd" }));
        }
        for (key, rel) in [("vendor", "device/vendor"), ("model", "device/model")] {
            if let Some(v) = text(rel) {
                disk.insert(key.into(), json!(v));
            }
        }
        out.insert(name, Value::Object(disk));
    }
    Value::Object(out)
}

/// `/proc/meminfo` in bytes, by field name.
pub(crate) fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut words = rest.split_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            let unit = match words.next() {
                Some("kB") => 1024,
                None => 1,
                Some(_) => return None,
            };
            Some((key.trim().to_string(), n * unit))
        })
        .collect()
}

/// `memory.system` (and `memory.swap` when there is swap) as Facter shows it.
pub(crate) fn memory(meminfo: &BTreeMap<String, u64>) -> Option<Value> {
    let total = *meminfo.get("MemTotal")?;
    // Kernels before 3.14 lack MemAvailable; this is what it estimates.
    let available = meminfo.get("MemAvailable").copied().unwrap_or_else(|| {
        ["MemFree", "Buffers", "Cached"]
            .iter()
            .filter_map(|k| meminfo.get(*k))
            .sum()
    });
    let mut out = json!({"system": usage(total, available)});
    if let (Some(&total), Some(&free)) = (meminfo.get("SwapTotal"), meminfo.get("SwapFree")) {
        if total > 0 {
            out["swap"] = usage(total, free);
        }
    }
    Some(out)
}

fn usage(total: u64, available: u64) -> Value {
    let used = total.saturating_sub(available);
    let capacity = if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    };
    json!({
        "total_bytes": total,
        "total": bytes_to_human(total),
        "available_bytes": available,
        "available": bytes_to_human(available),
        "used_bytes": used,
        "used": bytes_to_human(used),
        "capacity": format!("{capacity:.2}%"),
    })
}

/// Facter's human-readable size: "512 bytes", "1.50 KiB", "23.47 GiB".
pub(crate) fn bytes_to_human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut exp = ((63 - bytes.leading_zeros()) / 10) as usize;
    // Ruby's round(2): halves away from zero, unlike `{:.2}` alone.
    let round2 = |n: f64| (n * 100.0).round() / 100.0;
    let mut n = round2(bytes as f64 / 1024f64.powi(exp as i32));
    // 1023.999 KiB prints as "1.00 MiB", not "1024.00 KiB", as in Facter.
    if n >= 1024.0 && exp < UNITS.len() {
        exp += 1;
        n = round2(n / 1024.0);
    }
    format!("{n:.2} {}", UNITS[exp - 1])
}

/// Whole seconds since boot, from `/proc/uptime`.
pub(crate) fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(secs as u64)
}

/// `system_uptime`, with Facter's `uptime` text ("3:07 hours", "1 day").
pub(crate) fn uptime(seconds: u64) -> Value {
    let hours = seconds / 3600;
    let days = hours / 24;
    let text = match days {
        0 => format!("{hours}:{:02} hours", (seconds / 60) % 60),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    };
    json!({"seconds": seconds, "hours": hours, "days": days, "uptime": text})
}

/// The local timezone abbreviation ("UTC", "CEST"), as Facter prints it.
fn timezone() -> Option<String> {
    // The libc crate does not bind tzset(3); it is in every Unix libc.
    extern "C" {
        fn tzset();
    }
    // SAFETY: tzset/time/localtime_r are given valid pointers; tm_zone points
    // into libc's static tz data, copied out at once.
    unsafe {
        tzset();
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() || tm.tm_zone.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(tm.tm_zone)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// `identity`: who the agent runs as (effective ids, as Facter).
fn identity() -> Value {
    use nix::unistd::{getegid, geteuid, Group, User};
    let (uid, gid) = (geteuid(), getegid());
    let mut out = json!({"uid": uid.as_raw(), "gid": gid.as_raw(), "privileged": uid.is_root()});
    if let Ok(Some(user)) = User::from_uid(uid) {
        out["user"] = json!(user.name);
    }
    if let Ok(Some(group)) = Group::from_gid(gid) {
        out["group"] = json!(group.name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_facts_are_consistent() {
        let mut f = Map::new();
        for part in [
            Part::System,
            Part::Networking,
            Part::Hardware,
            Part::Identity,
            Part::Storage,
            Part::Load,
        ] {
            f.extend(collect_part(part));
        }
        let uts = nix::sys::utsname::uname().unwrap();
        assert_eq!(f["kernel"], json!("Linux"));
        assert_eq!(f["kernelrelease"], json!(uts.release().to_string_lossy()));
        assert!(f["kernelrelease"]
            .as_str()
            .unwrap()
            .starts_with(f["kernelversion"].as_str().unwrap()));
        assert!(f["processors"]["count"].as_u64().unwrap() >= 1);
        let sys = &f["memory"]["system"];
        assert!(sys["available_bytes"].as_u64().unwrap() <= sys["total_bytes"].as_u64().unwrap());
        assert!(f["system_uptime"]["seconds"].as_u64().unwrap() > 0);
        assert!(!f["timezone"].as_str().unwrap().is_empty());
        assert_eq!(f["identity"]["uid"], json!(nix::unistd::geteuid().as_raw()));
        assert_eq!(
            f["identity"]["privileged"],
            json!(nix::unistd::geteuid().is_root())
        );
        assert_eq!(f["is_virtual"], json!(f["virtual"] != json!("physical")));
        assert_eq!(f["osfamily"], f["os"]["family"]);
        assert_eq!(f["operatingsystem"], f["os"]["name"]);
        assert_eq!(f["hostname"], f["networking"]["hostname"]);
        assert_eq!(f["ipaddress"], f["networking"]["ip"]);
        assert!(f["mountpoints"]["/"]["size_bytes"].as_u64().unwrap() > 0);
        assert!(f["filesystems"].as_str().unwrap().contains("ext4"));
        assert!(f["load_averages"]["1m"].as_f64().unwrap() >= 0.0);
    }

    #[test]
    fn meminfo_and_human_sizes() {
        let m = parse_meminfo("MemTotal:       16318412 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\nHugePages_Total:       0\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
        assert_eq!(m["MemTotal"], 16318412 * 1024);
        assert_eq!(m["HugePages_Total"], 0);
        let mem = memory(&m).unwrap();
        assert_eq!(mem["system"]["total_bytes"], json!(16710053888u64));
        assert_eq!(mem["system"]["total"], json!("15.56 GiB"));
        assert_eq!(mem["system"]["available_bytes"], json!(8192000000u64));
        assert_eq!(
            mem["system"]["used_bytes"],
            json!(16710053888u64 - 8192000000)
        );
        assert_eq!(mem["system"]["capacity"], json!("50.98%"));
        assert!(mem.get("swap").is_none(), "no swap, no swap facts");

        let old = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\nSwapTotal: 2048 kB\nSwapFree: 1024 kB\n");
        let mem = memory(&old).unwrap();
        assert_eq!(
            mem["system"]["available_bytes"],
            json!(400 * 1024),
            "estimated without MemAvailable"
        );
        assert_eq!(mem["swap"]["available"], json!("1.00 MiB"));
        assert!(memory(&parse_meminfo("garbage")).is_none());

        assert_eq!(bytes_to_human(0), "0 bytes");
        assert_eq!(bytes_to_human(1023), "1023 bytes");
        assert_eq!(bytes_to_human(1536), "1.50 KiB");
        assert_eq!(bytes_to_human(25_200_000_000), "23.47 GiB");
        assert_eq!(bytes_to_human(1024 * 1024 - 1), "1.00 MiB");
    }

    #[test]
    fn uptime_texts() {
        assert_eq!(parse_uptime("12345.67 54321.00\n"), Some(12345));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(uptime(3 * 3600 + 7 * 60 + 5)["uptime"], json!("3:07 hours"));
        assert_eq!(uptime(59)["uptime"], json!("0:00 hours"));
        let day = uptime(90_000);
        assert_eq!(
            (
                day["hours"].clone(),
                day["days"].clone(),
                day["uptime"].clone()
            ),
            (json!(25), json!(1), json!("1 day"))
        );
        assert_eq!(uptime(3 * 86_400 + 5)["uptime"], json!("3 days"));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.1.0-25-amd64"), "6.1.0");
        assert_eq!(kernel_major_version("6.1.0-25-amd64"), "6.1");
        assert_eq!(kernel_version("4.18.0-553.el8_10.x86_64"), "4.18.0");
    }
}
