//! The network policy at connect time: names are resolved here and only allowed addresses are
//! handed to the connector; URLs that carry an address are checked before the request is made.

use std::net::{IpAddr, SocketAddr};

use domain::network::{Denied, NetworkPolicy};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub struct PolicyResolver {
    policy: NetworkPolicy,
}

impl PolicyResolver {
    pub fn new(policy: NetworkPolicy) -> PolicyResolver {
        PolicyResolver { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Every address the name has must be allowed: a name with one public and one internal
            // address is refused, since the connector could pick either.
            for address in &resolved {
                policy.check(address.ip(), None).map_err(|denied| Box::new(named(denied, &host)))?;
            }
            let addrs: Addrs = Box::new(resolved.into_iter());
            Ok(addrs)
        })
    }
}

fn named(mut denied: Denied, host: &str) -> Denied {
    denied.address = format!("{host} ({})", denied.address);
    denied
}

/// Checks a URL whose host is an address (no resolver sees those). reqwest reads hosts the way
/// browsers do, so `http://2130706433/` is 127.0.0.1 here too.
pub fn check_literal(policy: &NetworkPolicy, parsed: &reqwest::Url) -> Result<(), Denied> {
    let port = parsed.port_or_known_default();
    match parsed.host() {
        Some(url::Host::Ipv4(v4)) => policy.check(IpAddr::V4(v4), port),
        Some(url::Host::Ipv6(v6)) => policy.check(IpAddr::V6(v6), port),
        _ => Ok(()),
    }
}

/// The policy's refusal inside a transport error, if that is what stopped it. The resolver's
/// error reaches here wrapped by hyper and reqwest, which keep its text but not its type, so the
/// refusal is found by the sentence every refusal ends with.
pub fn denial_in(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(denied) = cause.downcast_ref::<Denied>() {
            return Some(denied.to_string());
        }
        let text = cause.to_string();
        if text.ends_with(domain::network::DENIED_SUFFIX) {
            let start = text.rfind(": ").map_or(0, |i| i + 2);
            return Some(text[start..].to_owned());
        }
        source = cause.source();
    }
    None
}
