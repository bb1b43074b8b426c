//! Edge-service endpoints: `http(s)://host[:port][/prefix]`, normalized without a trailing slash.

/// Checks and normalizes an endpoint; the error says what is wrong with it.
/// Longest endpoint URL.
pub const MAX_ENDPOINT_CHARS: usize = 2048;

pub fn normalize_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() > MAX_ENDPOINT_CHARS {
        return Err(format!("the endpoint is longer than {MAX_ENDPOINT_CHARS} characters"));
    }
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("`{text}` is not an http(s) URL: it must start with http:// or https://"))?;
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{text}` contains white space"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("`{text}` has a query or fragment; give the base URL only"));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(format!("`{text}` carries credentials; set them in the edge service's auth instead"));
    }
    let (host, port) = split_host_port(authority);
    check_host(text, host)?;
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("`{text}` has an invalid port `{port}`")),
        }
    }
    let scheme_len = text.len() - rest.len();
    let path = path.trim_end_matches('/');
    let base = &text[..scheme_len + authority.len()];
    Ok(if path.is_empty() { base.to_owned() } else { format!("{base}/{path}") })
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        // [v6]:port
        return match authority.rsplit_once("]:") {
            Some((host, port)) => (&authority[..host.len() + 1], Some(port)),
            None => (authority, None),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// A host is a name, a dotted IPv4 address or a bracketed IPv6 address. Numeric forms that URL
/// parsers read as IPv4 (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) are refused: they hide
/// an address from whoever reads the registry.
fn check_host(text: &str, host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<std::net::Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(format!("`{text}` has an invalid IPv6 host `{host}`")),
        };
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err(format!("`{text}` has an invalid host `{host}`"));
    }
    if host.len() > 253 || host.split('.').any(|label| label.len() > 63) {
        return Err(format!("`{text}` has a host name longer than DNS allows"));
    }
    let last = host.trim_end_matches('.').rsplit('.').next().unwrap_or_default();
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit()) || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")));
    if numeric && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("`{text}` writes an IP address in a form other than a.b.c.d; use the dotted form"));
    }
    Ok(())
}

/// The host of a normalized endpoint (brackets removed from IPv6) and its port (the scheme's
/// default when absent), for checking where it points.
pub fn host_and_port(endpoint: &str) -> Option<(String, u16)> {
    let (rest, default_port) = match endpoint.strip_prefix("https://") {
        Some(rest) => (rest, 443),
        None => (endpoint.strip_prefix("http://")?, 80),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = split_host_port(authority);
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::normalize_endpoint;

    #[test]
    fn accepts_and_normalizes() {
        let cases = [
            ("http://10.0.0.5:8085", "http://10.0.0.5:8085"),
            ("https://gw.plant-1.example/", "https://gw.plant-1.example"),
            ("http://127.0.0.1:9700/i/3/", "http://127.0.0.1:9700/i/3"),
            (" http://[::1]:8085 ", "http://[::1]:8085"),
            ("http://gw-7.plant:8085", "http://gw-7.plant:8085"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_endpoint(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_with_a_reason() {
        let cases = [
            ("10.0.0.5:8085", "must start with http:// or https://"),
            ("ftp://x", "must start with http://"),
            ("http://", "has no host"),
            ("http://host:99999", "invalid port"),
            ("http://host:0", "invalid port"),
            ("http://a b", "white space"),
            ("http://host/?x=1", "query or fragment"),
            ("http://user:pw@host", "carries credentials"),
            ("http://ho$t", "invalid host"),
            ("http://h:80:90", "invalid port"),
            ("http://[::1", "invalid IPv6 host"),
            ("http://[zz]:80", "invalid IPv6 host"),
            ("http://host:+80", "invalid port"),
            ("http://2130706433:8085", "form other than a.b.c.d"),
            ("http://0x7f.1", "form other than a.b.c.d"),
            ("http://0177.0.0.1", "form other than a.b.c.d"),
            ("http://127.1", "form other than a.b.c.d"),
        ];
        for (input, reason) in cases {
            let err = normalize_endpoint(input).expect_err(input);
            assert!(err.contains(reason), "{input}: {err}");
        }
    }
}

#[cfg(test)]
mod host_tests {
    use super::host_and_port;

    #[test]
    fn host_and_port_of_normalized_endpoints() {
        assert_eq!(host_and_port("http://10.0.0.5:8085/x"), Some(("10.0.0.5".into(), 8085)));
        assert_eq!(host_and_port("https://gw.example"), Some(("gw.example".into(), 443)));
        assert_eq!(host_and_port("http://[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(host_and_port("http://h"), Some(("h".into(), 80)));
    }
}
