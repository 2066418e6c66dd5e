//! `virtual` and `is_virtual`: what this node runs on ("physical", "kvm",
//! "docker", "gvisor", ...). Facter asks virt-what and dmidecode; we read
//! the hints those tools read — container marker files, PID 1's cgroup and
//! environment, DMI strings in `/sys`, the CPU's `hypervisor` flag — so the
//! answer costs a few small file reads. A container is reported before the
//! hypervisor under it, as Facter does.

use std::fs;
use std::path::Path;

/// Everything the classification looks at, gathered once.
#[derive(Debug, Default, Clone)]
pub(crate) struct Hints {
    /// `/.dockerenv` exists.
    pub dockerenv: bool,
    /// `/run/.containerenv` exists (podman).
    pub containerenv: bool,
    /// PID 1's `container=` variable (readable by root only).
    pub container_env: Option<String>,
    /// `/proc/1/cgroup`.
    pub cgroup: String,
    /// `/proc/version`.
    pub proc_version: String,
    /// `/proc/cpuinfo` lists the `hypervisor` CPU flag.
    pub hypervisor_flag: bool,
    /// `/sys/class/dmi/id/{product_name,sys_vendor}` and `/sys/hypervisor/type`.
    pub product_name: String,
    pub sys_vendor: String,
    pub hypervisor_type: String,
}

impl Hints {
    /// Reads the hints of this node; `cpuinfo` is `/proc/cpuinfo`, already read.
    pub(super) fn gather(cpuinfo: &str) -> Hints {
        let read = |p: &str| {
            fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let container_env = fs::read("/proc/1/environ").ok().and_then(|env| {
            env.split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"container="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        Hints {
            dockerenv: Path::new("/.dockerenv").exists(),
            containerenv: Path::new("/run/.containerenv").exists(),
            container_env,
            cgroup: read("/proc/1/cgroup"),
            proc_version: read("/proc/version"),
            hypervisor_flag: has_hypervisor_flag(cpuinfo),
            product_name: read("/sys/class/dmi/id/product_name"),
            sys_vendor: read("/sys/class/dmi/id/sys_vendor"),
            hypervisor_type: read("/sys/hypervisor/type"),
        }
    }
}

/// Whether a `flags` line of `/proc/cpuinfo` carries `hypervisor`.
pub(crate) fn has_hypervisor_flag(cpuinfo: &str) -> bool {
    cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| {
        l.split_once(':')
            .is_some_and(|(_, flags)| flags.split_whitespace().any(|f| f == "hypervisor"))
    })
}

/// The `virtual` fact for these hints.
pub(crate) fn classify(h: &Hints) -> &'static str {
    // gVisor's Sentry presents this fixed fake kernel build; it is a sandbox
    // kernel, so it wins over the container runtime that started it.
    if h.proc_version
        .contains("#1 SMP Sun Jan 10 15:06:54 PST 2016")
    {
        return "gvisor";
    }
    if let Some(kind) = container(h) {
        return kind;
    }
    let product = h.product_name.to_lowercase();
    let vendor = h.sys_vendor.to_lowercase();
    let dmi = |needle: &str| product.contains(needle) || vendor.contains(needle);
    if dmi("vmware") {
        "vmware"
    } else if dmi("virtualbox") || product.contains("innotek") {
        "virtualbox"
    } else if vendor.contains("microsoft") && product.contains("virtual machine") {
        "hyperv"
    } else if dmi("google") {
        "gce"
    } else if dmi("parallels") {
        "parallels"
    } else if dmi("bochs") {
        "bochs"
    } else if dmi("openstack") {
        "openstack"
    } else if product.contains("hvm domu") || vendor == "xen" {
        "xenhvm"
    } else if h.hypervisor_type == "xen" {
        // Paravirtual Xen has no DMI; dom0 is the host itself.
        if h.hypervisor_flag {
            "xenu"
        } else {
            "xen0"
        }
    } else if dmi("kvm") || dmi("qemu") || vendor.contains("amazon ec2") {
        "kvm"
    } else if h.hypervisor_flag {
        // A hypervisor without DMI strings (Firecracker, cloud-hypervisor):
        // on Linux hosts these are KVM-based.
        "kvm"
    } else {
        "physical"
    }
}

/// The container runtime we are in, if any.
fn container(h: &Hints) -> Option<&'static str> {
    if let Some(kind) = h.container_env.as_deref() {
        return Some(match kind {
            "docker" => "docker",
            "podman" => "podman",
            "lxc" | "lxc-libvirt" => "lxc",
            "systemd-nspawn" => "systemd_nspawn",
            "crio" => "crio",
            _ => "container_other",
        });
    }
    if h.dockerenv {
        return Some("docker");
    }
    if h.containerenv {
        return Some("podman");
    }
    // cgroup v1 paths name the runtime; under cgroup v2 they read "0::/".
    let cg = &h.cgroup;
    if cg.contains("/docker") {
        Some("docker")
    } else if cg.contains("/lxc") {
        Some("lxc")
    } else if cg.contains("kubepods") {
        Some("container_other")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervisor_flag() {
        assert!(has_hypervisor_flag(
            "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n"
        ));
        assert!(!has_hypervisor_flag(
            "flags\t\t: fpu vme hypervisorx\nmodel name\t: hypervisor\n"
        ));
    }

    #[test]
    fn classification() {
        let base = Hints::default();
        assert_eq!(classify(&base), "physical");
        let h = |f: fn(&mut Hints)| {
            let mut h = base.clone();
            f(&mut h);
            classify(&h)
        };
        assert_eq!(h(|h| h.hypervisor_flag = true), "kvm");
        assert_eq!(h(|h| h.dockerenv = true), "docker");
        assert_eq!(
            h(|h| {
                h.dockerenv = true;
                h.hypervisor_flag = true
            }),
            "docker",
            "container first"
        );
        assert_eq!(h(|h| h.containerenv = true), "podman");
        assert_eq!(h(|h| h.container_env = Some("lxc".into())), "lxc");
        assert_eq!(
            h(|h| h.cgroup = "12:pids:/docker/0123abc\n".into()),
            "docker"
        );
        assert_eq!(h(|h| h.cgroup = "0::/\n".into()), "physical");
        assert_eq!(
            h(|h| {
                h.proc_version = "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016".into();
                h.dockerenv = true
            }),
            "gvisor"
        );
        assert_eq!(
            h(|h| {
                h.product_name = "VMware Virtual Platform".into();
                h.hypervisor_flag = true
            }),
            "vmware"
        );
        assert_eq!(
            h(|h| {
                h.product_name = "VirtualBox".into();
                h.sys_vendor = "innotek GmbH".into()
            }),
            "virtualbox"
        );
        assert_eq!(
            h(|h| {
                h.product_name = "Standard PC (Q35 + ICH9, 2009)".into();
                h.sys_vendor = "QEMU".into()
            }),
            "kvm"
        );
        assert_eq!(
            h(|h| {
                h.product_name = "Virtual Machine".into();
                h.sys_vendor = "Microsoft Corporation".into()
            }),
            "hyperv"
        );
        assert_eq!(
            h(|h| {
                h.product_name = "Google Compute Engine".into();
                h.sys_vendor = "Google".into()
            }),
            "gce"
        );
        assert_eq!(
            h(|h| {
                h.hypervisor_type = "xen".into();
                h.hypervisor_flag = true
            }),
            "xenu"
        );
        assert_eq!(h(|h| h.product_name = "PowerEdge R740".into()), "physical");
    }
}
