//! Edge-service endpoints: `http(s)://host[:port][/prefix]`, normalized without a trailing slash.

/// Checks and normalizes an endpoint; the error says what is wrong with it.
pub fn normalize_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
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
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')) {
        return Err(format!("`{text}` has an invalid host `{host}`"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
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
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
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
        ];
        for (input, reason) in cases {
            let err = normalize_endpoint(input).expect_err(input);
            assert!(err.contains(reason), "{input}: {err}");
        }
    }
}
