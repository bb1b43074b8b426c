//! Which addresses edge endpoints may point to.
//!
//! A project admin chooses endpoints, and the server calls them with its credentials and shows what
//! answered: without a policy the server becomes a tool to probe the networks it can reach (its own
//! loopback services, cloud metadata at 169.254.169.254). The policy is checked when an endpoint is
//! registered and again on every connection (names are resolved again then, so a name that later
//! resolves elsewhere is refused too).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address block, `10.0.0.0/8` or `fd00::/8`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr =
            address.parse().map_err(|_| format!("`{text}` is not a network: use a.b.c.d/n or an IPv6 block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            match prefix.parse::<u8>() {
                Ok(p) if p <= max && prefix.bytes().all(|b| b.is_ascii_digit()) => p,
                _ => return Err(format!("`{text}` has an invalid prefix length (0 to {max})")),
            }
        };
        Ok(Cidr { network: canonical(network), prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where edges may be: the configured networks, or by default everywhere except the blocks no
/// gateway lives in and the server's own address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Empty means the default policy.
    allowed: Vec<Cidr>,
    /// The server's own listen address, never an edge.
    own: Option<SocketAddr>,
}

/// How every refusal ends (so it can be recognised in an error chain that kept only its text).
pub const DENIED_SUFFIX: &str = "edge endpoints must be in the allowed edge networks (--edge-networks)";

/// Why an address is refused: a sentence that names the address and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {why}; {}", DENIED_SUFFIX)]
pub struct Denied {
    pub address: String,
    pub why: String,
}

impl NetworkPolicy {
    /// `networks` empty means the default policy.
    pub fn new(networks: Vec<Cidr>, own: Option<SocketAddr>) -> NetworkPolicy {
        NetworkPolicy { allowed: networks, own }
    }

    /// Every address, loopback included: an agent's own NeuronEX is usually on its loopback, and
    /// the agent calls nothing it was not configured with.
    pub fn allow_all() -> NetworkPolicy {
        let everything = NetworkPolicy::parse_list("0.0.0.0/0,::/0").unwrap_or_default();
        NetworkPolicy { allowed: everything, own: None }
    }

    /// Parses `10.0.0.0/8,192.168.1.0/24` (blank means the default policy).
    pub fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Cidr::from_str).collect()
    }

    pub fn is_default(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Checks one address (with the port, when known, for the server's own address).
    pub fn check(&self, ip: IpAddr, port: Option<u16>) -> Result<(), Denied> {
        let ip = canonical(ip);
        let denied = |why: &str| Err(Denied { address: ip.to_string(), why: why.to_owned() });
        if let Some(own) = self.own {
            let same_ip = canonical(own.ip()) == ip || (own.ip().is_unspecified() && ip.is_loopback());
            if same_ip && port.is_none_or(|p| p == own.port()) {
                return denied("this server's own address");
            }
        }
        if !self.allowed.is_empty() {
            return if self.allowed.iter().any(|net| net.contains(ip)) {
                Ok(())
            } else {
                let list: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
                denied(&format!("outside the allowed edge networks {}", list.join(", ")))
            };
        }
        match default_refusal(ip) {
            Some(why) => denied(why),
            None => Ok(()),
        }
    }
}

/// The blocks the default policy refuses, with the reason a person reads.
fn default_refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_link_local() {
                Some("a link-local address (where cloud metadata services live)")
            } else if v4.is_unspecified() || v4.octets()[0] == 0 {
                Some("an unspecified address")
            } else if v4.is_multicast() || v4 == Ipv4Addr::BROADCAST {
                Some("a multicast or broadcast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unicast_link_local() {
                Some("a link-local address (where cloud metadata services live)")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if v6 == Ipv6Addr::from_bits(0xfd00_0ec2_0000_0000_0000_0000_0000_0254) {
                // AWS's IPv6 metadata address sits in unique-local space.
                Some("a cloud metadata address")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn default_policy_refuses_what_no_gateway_is() {
        let policy = NetworkPolicy::new(Vec::new(), Some("10.1.2.3:8080".parse().expect("addr")));
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
        ] {
            assert!(policy.check(ip(refused), Some(8085)).is_err(), "{refused}");
        }
        for allowed in ["10.0.0.5", "192.168.1.20", "172.16.0.9", "8.8.8.8", "fd12::5"] {
            assert_eq!(policy.check(ip(allowed), Some(8085)), Ok(()), "{allowed}");
        }
        assert!(policy.check(ip("10.1.2.3"), Some(8080)).is_err(), "the server itself");
        assert_eq!(policy.check(ip("10.1.2.3"), Some(8085)), Ok(()), "another port of the same host");
    }

    #[test]
    fn configured_networks_allow_only_themselves() {
        let networks = NetworkPolicy::parse_list("127.0.0.0/8, 10.20.0.0/16,fd00::/8").expect("list");
        let policy = NetworkPolicy::new(networks, Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(policy.check(ip("127.0.0.1"), Some(9700)), Ok(()));
        assert_eq!(policy.check(ip("10.20.3.4"), None), Ok(()));
        assert_eq!(policy.check(ip("fd00::1"), None), Ok(()));
        let err = policy.check(ip("10.21.0.1"), None).expect_err("outside");
        assert!(err.to_string().contains("outside the allowed edge networks 127.0.0.0/8"), "{err}");
        assert!(policy.check(ip("127.0.0.1"), Some(8080)).is_err(), "never the server itself");
    }

    #[test]
    fn bad_networks_are_named() {
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::/129", "10.0.0.0/+8"] {
            assert!(NetworkPolicy::parse_list(bad).is_err(), "{bad}");
        }
        assert_eq!(NetworkPolicy::parse_list(" ").expect("blank"), Vec::new());
    }
}
