//! Facter's legacy facts: the flat names of Facter 2 (`operatingsystemrelease`,
//! `ipaddress_eth0`, `memorysize`, `lsbdistcodename`, ...) that Hiera
//! hierarchies and templates written for Puppet still use
//! (`os/%{::operatingsystem}-%{::operatingsystemmajrelease}.yaml`). Each is
//! read from the structured fact Facter 4 reads it from, so the two always
//! agree, and each is collected only when named: asking for
//! `ipaddress_eth0` collects `networking` alone.
//!
//! `agent facts` prints them with `--show-legacy`, as `facter` does; by
//! name, in Hiera and in templates they always resolve.

use serde_json::{json, Map, Value};

/// Flat name → (the structured top-level fact, the dotted path in it).
const FIXED: &[(&str, &str)] = &[
    ("architecture", "os.architecture"),
    ("augeasversion", "augeas.version"),
    ("hardwaremodel", "os.hardware"),
    ("operatingsystem", "os.name"),
    ("osfamily", "os.family"),
    ("operatingsystemrelease", "os.release.full"),
    ("operatingsystemmajrelease", "os.release.major"),
    ("lsbdistcodename", "os.distro.codename"),
    ("lsbdistdescription", "os.distro.description"),
    ("lsbdistid", "os.distro.id"),
    ("lsbdistrelease", "os.distro.release.full"),
    ("lsbmajdistrelease", "os.distro.release.major"),
    ("lsbminordistrelease", "os.distro.release.minor"),
    ("selinux", "os.selinux.enabled"),
    ("hardwareisa", "processors.isa"),
    ("processorcount", "processors.count"),
    ("physicalprocessorcount", "processors.physicalcount"),
    ("memorysize", "memory.system.total"),
    ("memoryfree", "memory.system.available"),
    ("hostname", "networking.hostname"),
    ("domain", "networking.domain"),
    ("fqdn", "networking.fqdn"),
    ("ipaddress", "networking.ip"),
    ("ipaddress6", "networking.ip6"),
    ("macaddress", "networking.mac"),
    ("netmask", "networking.netmask"),
    ("netmask6", "networking.netmask6"),
    ("network", "networking.network"),
    ("network6", "networking.network6"),
    ("scope6", "networking.scope6"),
    ("id", "identity.user"),
    ("gid", "identity.group"),
];

/// `<prefix>_<interface>` → the interface's field.
const PER_INTERFACE: &[(&str, &str)] = &[
    ("ipaddress", "ip"),
    ("ipaddress6", "ip6"),
    ("macaddress", "mac"),
    ("mtu", "mtu"),
    ("netmask", "netmask"),
    ("netmask6", "netmask6"),
    ("network", "network"),
    ("network6", "network6"),
    ("scope6", "scope6"),
];

/// The structured top-level fact a legacy name is read from (`None` for a
/// name that is not legacy).
pub fn source(name: &str) -> Option<&'static str> {
    if let Some((_, path)) = FIXED.iter().find(|(n, _)| *n == name) {
        return path.split('.').next();
    }
    match name {
        "memorysize_mb" | "memoryfree_mb" => return Some("memory"),
        "interfaces" => return Some("networking"),
        "blockdevices" => return Some("disks"),
        _ => {}
    }
    if name.strip_prefix("blockdevice_").is_some_and(|rest| {
        ["_size", "_vendor", "_model"]
            .iter()
            .any(|suffix| rest.len() > suffix.len() && rest.ends_with(suffix))
    }) {
        return Some("disks");
    }
    if name
        .strip_prefix("processor")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("processors");
    }
    PER_INTERFACE
        .iter()
        .any(|(prefix, _)| {
            name.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('_'))
                .is_some_and(|iface| !iface.is_empty())
        })
        .then_some("networking")
}

/// True for a legacy name (hidden from a full `agent facts` listing
/// unless `--show-legacy`).
pub fn is_legacy(name: &str) -> bool {
    source(name).is_some()
}

/// Every legacy fact that the structured facts in `facts` give.
pub fn derive(facts: &Map<String, Value>) -> Map<String, Value> {
    let get = |dotted: &str| -> Option<&Value> {
        let mut parts = dotted.split('.');
        let mut v = facts.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        Some(v)
    };
    let mut out = Map::new();
    for (name, path) in FIXED {
        if let Some(v) = get(path) {
            out.insert(name.to_string(), v.clone());
        }
    }
    for (name, path) in [
        ("memorysize_mb", "memory.system.total_bytes"),
        ("memoryfree_mb", "memory.system.available_bytes"),
    ] {
        if let Some(bytes) = get(path).and_then(Value::as_f64) {
            out.insert(name.to_string(), json!(bytes / 1_048_576.0));
        }
    }
    if let Some(Value::Array(models)) = get("processors.models") {
        for (i, m) in models.iter().enumerate() {
            out.insert(format!("processor{i}"), m.clone());
        }
    }
    if let Some(Value::Object(disks)) = get("disks") {
        let names: Vec<&str> = disks.keys().map(String::as_str).collect();
        out.insert("blockdevices".into(), json!(names.join(",")));
        for (disk, fields) in disks {
            for (suffix, field) in [
                ("size", "size_bytes"),
                ("vendor", "vendor"),
                ("model", "model"),
            ] {
                if let Some(v) = fields.get(field) {
                    out.insert(format!("blockdevice_{disk}_{suffix}"), v.clone());
                }
            }
        }
    }
    if let Some(Value::Object(ifaces)) = get("networking.interfaces") {
        let names: Vec<&str> = ifaces.keys().map(String::as_str).collect();
        out.insert("interfaces".into(), json!(names.join(",")));
        for (iface, fields) in ifaces {
            for (prefix, field) in PER_INTERFACE {
                if let Some(v) = fields.get(field) {
                    out.insert(format!("{prefix}_{iface}"), v.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Map<String, Value> {
        let v = json!({
            "os": {"name": "Debian", "family": "Debian", "architecture": "amd64", "hardware": "x86_64",
                   "release": {"full": "12.11", "major": "12", "minor": "11"},
                   "distro": {"codename": "bookworm", "id": "Debian", "description": "Debian GNU/Linux 12 (bookworm)",
                              "release": {"full": "12.11", "major": "12", "minor": "11"}},
                   "selinux": {"enabled": false}},
            "processors": {"count": 2, "physicalcount": 1, "isa": "unknown", "models": ["AMD EPYC", "AMD EPYC"]},
            "memory": {"system": {"total": "23.54 GiB", "total_bytes": 25275973632u64,
                                  "available": "1.00 GiB", "available_bytes": 1073741824u64}},
            "networking": {"hostname": "vm", "fqdn": "vm", "ip": "192.0.2.2", "mac": "02:fc:00:00:00:01",
                           "interfaces": {"eth0": {"ip": "192.0.2.2", "mtu": 1400, "scope6": "global"},
                                          "lo": {"ip": "127.0.0.1", "mtu": 65536}}},
            "identity": {"user": "root", "group": "root"},
            "disks": {"vda": {"size_bytes": 274877906944u64, "vendor": "0x1af4"}},
        });
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn legacy_names_read_their_structured_facts() {
        let d = derive(&sample());
        for (name, want) in [
            ("operatingsystemmajrelease", json!("12")),
            ("operatingsystemrelease", json!("12.11")),
            ("lsbdistcodename", json!("bookworm")),
            ("lsbminordistrelease", json!("11")),
            ("selinux", json!(false)),
            ("processorcount", json!(2)),
            ("processor1", json!("AMD EPYC")),
            ("memorysize", json!("23.54 GiB")),
            ("memorysize_mb", json!(24105.046875)),
            ("memoryfree_mb", json!(1024.0)),
            ("interfaces", json!("eth0,lo")),
            ("ipaddress_eth0", json!("192.0.2.2")),
            ("mtu_lo", json!(65536)),
            ("scope6_eth0", json!("global")),
            ("macaddress", json!("02:fc:00:00:00:01")),
            ("id", json!("root")),
            ("blockdevices", json!("vda")),
            ("blockdevice_vda_size", json!(274877906944u64)),
            ("blockdevice_vda_vendor", json!("0x1af4")),
        ] {
            assert_eq!(d.get(name), Some(&want), "{name}");
        }
        // Every name derived is one `source` knows, so asking for it
        // collects the structured fact it needs.
        for name in d.keys() {
            assert!(source(name).is_some(), "{name}");
        }
    }

    #[test]
    fn sources() {
        assert_eq!(source("ipaddress_eth0"), Some("networking"));
        assert_eq!(source("ipaddress"), Some("networking"));
        assert_eq!(source("processor12"), Some("processors"));
        assert_eq!(source("memoryfree_mb"), Some("memory"));
        assert_eq!(source("lsbdistid"), Some("os"));
        assert_eq!(source("processor"), None);
        assert_eq!(source("ipaddress_"), None);
        assert_eq!(source("kernel"), None);
        assert_eq!(source("blockdevice_vda_size"), Some("disks"));
        assert_eq!(source("blockdevice__size"), None);
        assert_eq!(source("db_master"), None);
    }
}
