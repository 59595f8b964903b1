//! Linux network context: interface type and VPN presence from sysfs and the routing table.

use std::net::IpAddr;

use netqoe_model::InterfaceType;

/// Classifies an interface by name and sysfs entries.
pub fn classify(name: &str, sysfs: &std::path::Path) -> InterfaceType {
    let vpn_prefixes = ["tun", "tap", "wg", "ppp", "utun", "ipsec"];
    if vpn_prefixes.iter().any(|p| name.starts_with(p)) {
        InterfaceType::Vpn
    } else if sysfs.join(name).join("wireless").exists() || name.starts_with("wl") {
        InterfaceType::Wifi
    } else if name.starts_with("wwan") || name.starts_with("rmnet") {
        InterfaceType::Cellular
    } else if name == "lo" {
        InterfaceType::Unknown
    } else {
        InterfaceType::Ethernet
    }
}

/// Interface type for a local address and whether any VPN interface is up.
pub fn interface_for(local: IpAddr) -> (InterfaceType, bool) {
    let sysfs = std::path::Path::new("/sys/class/net");
    let names: Vec<String> = std::fs::read_dir(sysfs)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let vpn = names
        .iter()
        .any(|n| classify(n, sysfs) == InterfaceType::Vpn);
    if local.is_loopback() {
        return (InterfaceType::Unknown, vpn);
    }
    let iface = default_route_iface().unwrap_or_default();
    if iface.is_empty() {
        return (InterfaceType::Unknown, vpn);
    }
    (classify(&iface, sysfs), vpn)
}

/// Interface of the IPv4 default route from /proc/net/route.
fn default_route_iface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let name = f.next()?;
        (f.next()? == "00000000").then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        let p = std::path::Path::new("/nonexistent");
        assert_eq!(classify("wg0", p), InterfaceType::Vpn);
        assert_eq!(classify("tun1", p), InterfaceType::Vpn);
        assert_eq!(classify("wlan0", p), InterfaceType::Wifi);
        assert_eq!(classify("eth0", p), InterfaceType::Ethernet);
    }
}
