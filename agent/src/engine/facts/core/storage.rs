//! Storage facts, as Facter 4 reads them on Linux: `mountpoints` (the mount
//! table with each filesystem's sizes from statvfs), `filesystems` (the
//! block filesystems the kernel knows) and `partitions` (block device
//! partitions from sysfs, with their mount point and the udev names of
//! `/dev/disk/by-*`). Every parser is a pure function over a file's text or
//! a directory, so the tests feed it other machines' tables.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::bytes_to_human;

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mount {
    pub device: String,
    pub path: String,
    pub filesystem: String,
    pub options: Vec<String>,
}

/// `/proc/mounts` (octal escapes such as `\040` for a space decoded).
pub(crate) fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let device = unescape(f.next()?);
            let path = unescape(f.next()?);
            let filesystem = f.next()?.to_string();
            let options = f.next()?.split(',').map(String::from).collect();
            Some(Mount {
                device,
                path,
                filesystem,
                options,
            })
        })
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether Facter lists a mount: not `/proc` and `/sys` pseudo filesystems
/// (a tmpfs there is listed), never autofs.
fn listed(m: &Mount) -> bool {
    let pseudo =
        (m.path.starts_with("/proc") || m.path.starts_with("/sys")) && m.filesystem != "tmpfs";
    !pseudo && m.filesystem != "autofs"
}

/// Sizes of a mounted filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Usage {
    pub size: u64,
    pub available: u64,
    pub used: u64,
}

fn statvfs(path: &str) -> Option<Usage> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size();
    let size = s.blocks() * frag;
    Some(Usage {
        size,
        available: s.blocks_available() * frag,
        used: size - s.blocks_free() * frag,
    })
}

/// Facter's capacity: used / (used + available), "100%" when both are
/// equal (an empty pseudo filesystem), "0%" when nothing is used.
fn capacity(used: u64, available: u64) -> String {
    let total = used + available;
    if used == total {
        "100%".into()
    } else if used > 0 {
        format!("{:.2}%", 100.0 * used as f64 / total as f64)
    } else {
        "0%".into()
    }
}

/// `mountpoints`: by path (a path mounted twice shows its last mount, as
/// in Facter); `usage` answers statvfs for a path; `root_device` replaces
/// `/dev/root`.
pub(crate) fn mountpoints(
    mounts: &[Mount],
    usage: &dyn Fn(&str) -> Option<Usage>,
    root_device: Option<&str>,
) -> Value {
    let mut out = Map::new();
    for m in mounts.iter().filter(|m| listed(m)) {
        let device = match (m.device.as_str(), root_device) {
            ("/dev/root", Some(root)) => root.to_string(),
            (d, _) => d.to_string(),
        };
        let mut entry = Map::new();
        entry.insert("device".into(), json!(device));
        entry.insert("filesystem".into(), json!(m.filesystem));
        entry.insert("options".into(), json!(m.options));
        if let Some(u) = usage(&m.path) {
            entry.insert("size_bytes".into(), json!(u.size));
            entry.insert("size".into(), json!(bytes_to_human(u.size)));
            entry.insert("available_bytes".into(), json!(u.available));
            entry.insert("available".into(), json!(bytes_to_human(u.available)));
            entry.insert("used_bytes".into(), json!(u.used));
            entry.insert("used".into(), json!(bytes_to_human(u.used)));
            entry.insert("capacity".into(), json!(capacity(u.used, u.available)));
        }
        out.insert(m.path.clone(), Value::Object(entry));
    }
    Value::Object(out)
}

/// `root=` of the kernel command line (`/dev/root` is not always a link).
fn root_device(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .filter(|r| r.starts_with('/'))
        .map(String::from)
}

/// `filesystems`: `/proc/filesystems` without the `nodev` ones and
/// fuseblk, sorted, comma-separated.
pub(crate) fn filesystems(text: &str) -> String {
    let mut names: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("nodev"))
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "fuseblk")
        .collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// `partitions`: every partition of every block device in `sys_block`
/// (a directory with a `partition` file), by `/dev/` path: its size, where
/// and as what it is mounted, and its udev names from `dev_disk`
/// (`by-uuid`, `by-partuuid`, `by-label`, `by-partlabel`). None: absent.
pub(crate) fn partitions(sys_block: &Path, dev_disk: &Path, mounts: &[Mount]) -> Option<Value> {
    let names = udev_names(dev_disk);
    let mut out = Map::new();
    let disks = std::fs::read_dir(sys_block).ok()?;
    for disk in disks.flatten() {
        let Ok(parts) = std::fs::read_dir(disk.path()) else {
            continue;
        };
        for part in parts.flatten() {
            let dir = part.path();
            if !dir.join("partition").exists() {
                continue;
            }
            let name = part.file_name().to_string_lossy().into_owned();
            let dev = format!("/dev/{name}");
            let mut entry = Map::new();
            let sectors = super::read(&dir.join("size").to_string_lossy())
                .and_then(|t| t.trim().parse::<u64>().ok());
            if let Some(sectors) = sectors {
                let bytes = sectors * 512;
                entry.insert("size_bytes".into(), json!(bytes));
                entry.insert("size".into(), json!(bytes_to_human(bytes)));
            }
            if let Some(m) = mounts.iter().rev().find(|m| m.device == dev) {
                entry.insert("mount".into(), json!(m.path));
                entry.insert("filesystem".into(), json!(m.filesystem));
            }
            if let Some(ids) = names.get(&name) {
                for (k, v) in ids {
                    entry.insert(k.clone(), json!(v));
                }
            }
            out.insert(dev, Value::Object(entry));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Device name → {uuid, partuuid, label, partlabel} from the udev links.
fn udev_names(dev_disk: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (dir, key) in [
        ("by-uuid", "uuid"),
        ("by-partuuid", "partuuid"),
        ("by-label", "label"),
        ("by-partlabel", "partlabel"),
    ] {
        let Ok(links) = std::fs::read_dir(dev_disk.join(dir)) else {
            continue;
        };
        for link in links.flatten() {
            let Ok(target) = std::fs::read_link(link.path()) else {
                continue;
            };
            let Some(dev) = target.file_name() else {
                continue;
            };
            out.entry(dev.to_string_lossy().into_owned())
                .or_default()
                .insert(
                    key.into(),
                    udev_unescape(&link.file_name().to_string_lossy()),
                );
        }
    }
    out
}

/// udev's `\xHH` escapes in link names (`my\x20disk`).
fn udev_unescape(name: &str) -> String {
    let mut out = Vec::new();
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'\\' && b.get(i + 1) == Some(&b'x'))
            .then(|| b.get(i + 2..i + 4))
            .flatten()
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match hex {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The storage facts of this machine.
pub(crate) fn facts() -> Map<String, Value> {
    let mut facts = Map::new();
    let mounts = super::read("/proc/mounts")
        .map(|t| parse_mounts(&t))
        .unwrap_or_default();
    let root = super::read("/proc/cmdline").and_then(|c| root_device(&c));
    facts.insert(
        "mountpoints".into(),
        mountpoints(&mounts, &statvfs, root.as_deref()),
    );
    if let Some(text) = super::read("/proc/filesystems") {
        facts.insert("filesystems".into(), json!(filesystems(&text)));
    }
    if let Some(p) = partitions(Path::new("/sys/block"), Path::new("/dev/disk"), &mounts) {
        facts.insert("partitions".into(), p);
    }
    facts
}

/// `load_averages` from `/proc/loadavg`.
pub(crate) fn load_averages(text: &str) -> Option<Value> {
    let mut f = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    let (one, five, fifteen) = (f.next()??, f.next()??, f.next()??);
    Some(json!({"1m": one, "5m": five, "15m": fifteen}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devpts /dev/pts devpts rw,relatime,mode=600 0 0
/dev/root / ext4 rw,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
auto /net autofs rw 0 0
/dev/sdb1 /mnt/my\\040disk xfs ro 0 0
tmpfs /dev/shm tmpfs rw,size=1k 0 0
tmpfs /dev/shm tmpfs rw,size=2k 0 0
";

    #[test]
    fn mountpoints_as_facter_lists_them() {
        let mounts = parse_mounts(MOUNTS);
        let usage = |p: &str| {
            Some(match p {
                "/" => Usage {
                    size: 270553174016,
                    available: 55455297536,
                    used: 42117451776,
                },
                "/dev/shm" => Usage {
                    size: 2048,
                    available: 2048,
                    used: 0,
                },
                _ => Usage {
                    size: 0,
                    available: 0,
                    used: 0,
                },
            })
        };
        let m = mountpoints(&mounts, &usage, Some("/dev/vda1"));
        let paths: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/",
                "/dev/pts",
                "/dev/shm",
                "/mnt/my disk",
                "/sys/fs/cgroup"
            ]
        );
        assert_eq!(m["/"]["device"], json!("/dev/vda1"));
        assert_eq!(m["/"]["capacity"], json!("43.17%"));
        assert_eq!(m["/"]["size"], json!("251.97 GiB"));
        assert_eq!(m["/"]["available"], json!("51.65 GiB"));
        assert_eq!(m["/"]["used"], json!("39.22 GiB"));
        assert_eq!(m["/dev/pts"]["capacity"], json!("100%"));
        assert_eq!(m["/dev/pts"]["used"], json!("0 bytes"));
        assert_eq!(m["/dev/shm"]["capacity"], json!("0%"));
        assert_eq!(m["/dev/shm"]["options"], json!(["rw", "size=2k"]));
        assert_eq!(m["/mnt/my disk"]["options"], json!(["ro"]));
    }

    #[test]
    fn filesystems_and_load() {
        let text = "nodev\tsysfs\nnodev\ttmpfs\n\text4\n\tfuseblk\nnodev\tfuse\n\txfs\n\tbtrfs\n";
        assert_eq!(filesystems(text), "btrfs,ext4,xfs");
        assert_eq!(
            load_averages("0.50 1.25 2.00 1/234 5678\n"),
            Some(json!({"1m": 0.5, "5m": 1.25, "15m": 2.0}))
        );
        assert_eq!(load_averages("garbage"), None);
        assert_eq!(udev_unescape("my\\x20disk"), "my disk");
        assert_eq!(
            root_device("BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet"),
            Some("/dev/vda1".into())
        );
    }

    #[test]
    fn partitions_from_a_sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let block = dir.path().join("block");
        let part = block.join("sda/sda1");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("partition"), "1\n").unwrap();
        std::fs::write(part.join("size"), "2048\n").unwrap();
        std::fs::create_dir_all(block.join("sda/queue")).unwrap();
        std::fs::create_dir_all(block.join("loop0")).unwrap();
        let by_uuid = dir.path().join("disk/by-uuid");
        std::fs::create_dir_all(&by_uuid).unwrap();
        std::os::unix::fs::symlink("../../sda1", by_uuid.join("abcd-1234")).unwrap();
        let mounts = parse_mounts("/dev/sda1 /boot ext4 rw 0 0\n");
        let p = partitions(&block, &dir.path().join("disk"), &mounts).unwrap();
        assert_eq!(
            p,
            json!({"/dev/sda1": {"size_bytes": 1048576, "size": "1.00 MiB", "mount": "/boot",
                                  "filesystem": "ext4", "uuid": "abcd-1234"}})
        );
        assert_eq!(
            partitions(&dir.path().join("none"), dir.path(), &mounts),
            None
        );
    }
}
