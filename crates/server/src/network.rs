//! The edge network policy at registration: the endpoint's host is resolved now and every address
//! it has must be allowed. (The edge client checks again on every connection.)

use std::net::IpAddr;
use std::time::Duration;

use domain::network::NetworkPolicy;
use serde_json::json;

use crate::error::{ApiError, ErrorCode};

/// A name that does not resolve within this long is registered as it is (the gateway may not be
/// installed yet); the check at connect time still applies.
const RESOLVE_FOR: Duration = Duration::from_secs(2);

pub async fn check_endpoint(policy: &NetworkPolicy, endpoint: &str) -> Result<(), ApiError> {
    let Some((host, port)) = domain::endpoint::host_and_port(endpoint) else {
        return Ok(());
    };
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::time::timeout(RESOLVE_FOR, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
            Ok(Err(_)) | Err(_) => Vec::new(),
        },
    };
    for ip in addresses {
        policy.check(ip, Some(port)).map_err(|denied| denied_error(&host, &denied))?;
    }
    Ok(())
}

pub fn denied_error(host: &str, denied: &domain::network::Denied) -> ApiError {
    let message = if host == denied.address { denied.to_string() } else { format!("{host} resolves to {denied}") };
    ApiError::new(ErrorCode::EdgeNetworkDenied, format!("endpoint: {message}"))
        .with_details(json!({"field": "endpoint", "address": denied.address}))
}
