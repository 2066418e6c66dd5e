//! `networking` facts: host and domain names, interfaces with their
//! addresses, MAC and MTU, and the primary interface (the one carrying the
//! default route). Addresses come from getifaddrs(3), routes from
//! `/proc/net/route`, the domain from the hostname or `/etc/resolv.conf` —
//! no DNS queries, which could block a run for seconds.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};

use nix::net::if_::InterfaceFlags;
use serde_json::{json, Map, Value};

/// The `networking` fact.
pub(super) fn facts() -> Value {
    let mut out = Map::new();
    let raw_host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let resolv = fs::read_to_string("/etc/resolv.conf").ok();
    let (hostname, domain) = split_hostname(&raw_host, resolv.as_deref());
    let fqdn = match &domain {
        Some(d) => format!("{hostname}.{d}"),
        None => hostname.clone(),
    };
    out.insert("hostname".into(), json!(hostname));
    if let Some(d) = domain {
        out.insert("domain".into(), json!(d));
    }
    out.insert("fqdn".into(), json!(fqdn));

    let interfaces = interfaces();
    let default_route = fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| parse_default_route(&t));
    if let Some(primary) = primary(&interfaces, default_route.as_deref()) {
        out.insert("primary".into(), json!(primary));
        // Facter repeats the primary interface's addresses at this level.
        if let Value::Object(iface) = interfaces[primary].to_value() {
            for (k, v) in iface {
                if !k.starts_with("bindings") {
                    out.insert(k, v);
                }
            }
        }
    }
    let ifaces: Map<String, Value> = interfaces
        .iter()
        .map(|(name, i)| (name.clone(), i.to_value()))
        .collect();
    out.insert("interfaces".into(), Value::Object(ifaces));
    Value::Object(out)
}

/// Short hostname and domain: a dotted hostname carries its own domain,
/// else resolv.conf's `domain`, else its first `search` entry, else none.
pub(crate) fn split_hostname(raw: &str, resolv_conf: Option<&str>) -> (String, Option<String>) {
    if let Some((host, domain)) = raw.split_once('.') {
        if !domain.is_empty() {
            return (
                host.to_string(),
                Some(domain.trim_end_matches('.').to_string()),
            );
        }
    }
    let host = raw.trim_end_matches('.').to_string();
    (host, resolv_conf.and_then(parse_resolv_domain))
}

/// The domain named by resolv.conf: the last `domain` line (as the resolver
/// reads it), else the first entry of the last `search` line.
pub(crate) fn parse_resolv_domain(text: &str) -> Option<String> {
    let mut domain = None;
    let mut search = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("domain") => domain = words.next(),
            Some("search") => search = words.next(),
            _ => {}
        }
    }
    domain
        .or(search)
        .map(|d| d.trim_end_matches('.').to_string())
        .filter(|d| !d.is_empty())
}

/// The interface carrying the default route (lowest metric when several),
/// from `/proc/net/route`.
pub(crate) fn parse_default_route(text: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let up_default = *dest == "00000000" && *mask == "00000000" && flags & RTF_UP != 0;
            up_default.then(|| (metric.parse::<u64>().unwrap_or(u64::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Facter's `scope6` of an IPv6 address: `host` (loopback), `link`
/// (fe80::/10), `site` (the deprecated fec0::/10), else `global` (unique
/// local fc00::/7 included, as Facter reports it).
pub(crate) fn scope6(ip: &Ipv6Addr) -> &'static str {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        "host"
    } else if first & 0xffc0 == 0xfe80 {
        "link"
    } else if first & 0xffc0 == 0xfec0 {
        "site"
    } else {
        "global"
    }
}

/// One interface's addresses as gathered from getifaddrs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Iface {
    pub loopback: bool,
    pub mac: Option<String>,
    pub mtu: Option<u64>,
    pub v4: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub v6: Vec<(Ipv6Addr, Ipv6Addr)>,
}

impl Iface {
    /// The address Facter shows as `ip6`: the first that is not link-local.
    fn main_v6(&self) -> Option<&(Ipv6Addr, Ipv6Addr)> {
        let link_local = |ip: &Ipv6Addr| ip.segments()[0] & 0xffc0 == 0xfe80;
        self.v6
            .iter()
            .find(|(ip, _)| !link_local(ip))
            .or(self.v6.first())
    }

    fn to_value(&self) -> Value {
        let mut out = Map::new();
        if let Some((ip, mask)) = self.v4.first() {
            out.insert("ip".into(), json!(ip.to_string()));
            out.insert("netmask".into(), json!(mask.to_string()));
            out.insert(
                "network".into(),
                json!(Ipv4Addr::from(ip.to_bits() & mask.to_bits()).to_string()),
            );
        }
        if let Some((ip, mask)) = self.main_v6() {
            out.insert("ip6".into(), json!(ip.to_string()));
            out.insert("netmask6".into(), json!(mask.to_string()));
            out.insert(
                "network6".into(),
                json!(Ipv6Addr::from(ip.to_bits() & mask.to_bits()).to_string()),
            );
            out.insert("scope6".into(), json!(scope6(ip)));
        }
        if let Some(mac) = &self.mac {
            out.insert("mac".into(), json!(mac));
        }
        if let Some(mtu) = self.mtu {
            out.insert("mtu".into(), json!(mtu));
        }
        let binding = |ip: String, mask: String, net: String| json!({"address": ip, "netmask": mask, "network": net});
        if !self.v4.is_empty() {
            let b: Vec<Value> = self
                .v4
                .iter()
                .map(|(ip, m)| {
                    binding(
                        ip.to_string(),
                        m.to_string(),
                        Ipv4Addr::from(ip.to_bits() & m.to_bits()).to_string(),
                    )
                })
                .collect();
            out.insert("bindings".into(), Value::Array(b));
        }
        if !self.v6.is_empty() {
            let b: Vec<Value> = self
                .v6
                .iter()
                .map(|(ip, m)| {
                    let mut b = binding(
                        ip.to_string(),
                        m.to_string(),
                        Ipv6Addr::from(ip.to_bits() & m.to_bits()).to_string(),
                    );
                    b["scope6"] = json!(scope6(ip));
                    b
                })
                .collect();
            out.insert("bindings6".into(), Value::Array(b));
        }
        Value::Object(out)
    }
}

/// Every interface by name, from getifaddrs and `/sys/class/net/*/mtu`.
fn interfaces() -> BTreeMap<String, Iface> {
    let mut out: BTreeMap<String, Iface> = BTreeMap::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for a in addrs {
        let iface = out.entry(a.interface_name.clone()).or_default();
        iface.loopback |= a.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        let Some(addr) = a.address else { continue };
        if let Some(sin) = addr.as_sockaddr_in() {
            let mask = a
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map_or(Ipv4Addr::BROADCAST, |m| m.ip());
            iface.v4.push((sin.ip(), mask));
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            let mask = a
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in6())
                .map_or(Ipv6Addr::from(u128::MAX), |m| m.ip());
            iface.v6.push((sin6.ip(), mask));
        } else if let Some(mac) = addr.as_link_addr().and_then(|l| l.addr()) {
            // Loopback and tunnels report all zeros: no MAC to show.
            if mac != [0; 6] {
                iface.mac = Some(
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
        }
    }
    for (name, iface) in out.iter_mut() {
        iface.mtu = fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
    }
    out
}

/// The primary interface: the default route's, else the first with a
/// non-loopback IPv4 address, else a loopback one with an address.
pub(crate) fn primary<'a>(
    interfaces: &'a BTreeMap<String, Iface>,
    default_route: Option<&str>,
) -> Option<&'a str> {
    let has_v4 = |i: &Iface| !i.v4.is_empty();
    default_route
        .and_then(|r| interfaces.get_key_value(r))
        .filter(|(_, i)| has_v4(i))
        .or_else(|| interfaces.iter().find(|(_, i)| !i.loopback && has_v4(i)))
        .or_else(|| interfaces.iter().find(|(_, i)| has_v4(i)))
        .map(|(name, _)| name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t010200C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth1\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0
";

    #[test]
    fn default_route_lowest_metric_and_up() {
        assert_eq!(
            parse_default_route(ROUTE).as_deref(),
            Some("eth0"),
            "eth1 is down, wlan0 costs more"
        );
        let no_default = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(parse_default_route(no_default), None);
        assert_eq!(parse_default_route(""), None);
    }

    #[test]
    fn domain_sources() {
        assert_eq!(
            split_hostname("db1.example.com", Some("domain other.org\n")),
            ("db1".into(), Some("example.com".into()))
        );
        assert_eq!(
            split_hostname("db1", Some("nameserver 1.1.1.1\ndomain corp.example.\n")),
            ("db1".into(), Some("corp.example".into()))
        );
        assert_eq!(
            split_hostname("db1", Some("search a.example b.example\n")),
            ("db1".into(), Some("a.example".into()))
        );
        assert_eq!(
            split_hostname("db1", Some("nameserver 10.0.0.1\n")),
            ("db1".into(), None)
        );
        assert_eq!(split_hostname("db1", None), ("db1".into(), None));
        assert_eq!(
            parse_resolv_domain("search x.org\ndomain y.org\n").as_deref(),
            Some("y.org")
        );
    }

    fn iface(loopback: bool, v4: &[&str]) -> Iface {
        let v4 = v4
            .iter()
            .map(|ip| (ip.parse().unwrap(), Ipv4Addr::new(255, 255, 255, 0)))
            .collect();
        Iface {
            loopback,
            v4,
            ..Default::default()
        }
    }

    #[test]
    fn primary_choice() {
        let mut ifs = BTreeMap::new();
        ifs.insert("lo".to_string(), iface(true, &["127.0.0.1"]));
        ifs.insert("eth0".to_string(), iface(false, &["10.0.0.5"]));
        ifs.insert("eth1".to_string(), iface(false, &["192.168.1.5"]));
        ifs.insert("tun0".to_string(), iface(false, &[]));
        assert_eq!(primary(&ifs, Some("eth1")), Some("eth1"));
        assert_eq!(primary(&ifs, None), Some("eth0"));
        assert_eq!(
            primary(&ifs, Some("tun0")),
            Some("eth0"),
            "route via an interface without IPv4"
        );
        ifs.remove("eth0");
        ifs.remove("eth1");
        assert_eq!(primary(&ifs, None), Some("lo"));
        assert_eq!(primary(&BTreeMap::new(), None), None);
    }

    #[test]
    fn interface_value() {
        let mut i = iface(false, &["192.168.1.77", "192.168.1.78"]);
        i.v6 = vec![
            (
                "fe80::1".parse().unwrap(),
                "ffff:ffff:ffff:ffff::".parse().unwrap(),
            ),
            (
                "2001:db8::5".parse().unwrap(),
                "ffff:ffff:ffff:ffff::".parse().unwrap(),
            ),
        ];
        i.mac = Some("02:42:ac:11:00:02".into());
        i.mtu = Some(1500);
        let v = i.to_value();
        assert_eq!(v["ip"], json!("192.168.1.77"));
        assert_eq!(v["netmask"], json!("255.255.255.0"));
        assert_eq!(v["network"], json!("192.168.1.0"));
        assert_eq!(
            v["ip6"],
            json!("2001:db8::5"),
            "global preferred over link-local"
        );
        assert_eq!(v["network6"], json!("2001:db8::"));
        assert_eq!(v["bindings"][1]["address"], json!("192.168.1.78"));
        assert_eq!(v["bindings6"].as_array().unwrap().len(), 2);
        assert_eq!(
            (v["mac"].clone(), v["mtu"].clone()),
            (json!("02:42:ac:11:00:02"), json!(1500))
        );
    }

    #[test]
    fn live_networking() {
        let n = facts();
        let host = nix::unistd::gethostname()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(host.starts_with(n["hostname"].as_str().unwrap()));
        assert!(n["fqdn"]
            .as_str()
            .unwrap()
            .starts_with(n["hostname"].as_str().unwrap()));
        let lo = &n["interfaces"]["lo"];
        assert_eq!(lo["ip"], json!("127.0.0.1"));
        assert_eq!(
            lo["mtu"],
            json!(fs::read_to_string("/sys/class/net/lo/mtu")
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap())
        );
        let primary = n["primary"].as_str().expect("a primary interface");
        assert_eq!(n["ip"], n["interfaces"][primary]["ip"]);
        if let Some(route_if) = parse_default_route(&fs::read_to_string("/proc/net/route").unwrap())
        {
            assert_eq!(primary, route_if);
        }
    }
}
