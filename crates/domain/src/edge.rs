//! What edgefleet knows of an edge service between deliveries.

crate::wire_enum! {
    /// What the last periodic probe found.
    pub enum EdgeStatus ("edge status") {
        Online = "online",
        Offline = "offline",
        /// Never probed yet (just registered, or its endpoint changed).
        Unknown = "unknown",
    }
}

crate::wire_enum! {
    /// How edgefleet signs in to an edge service.
    pub enum AuthKind ("auth kind") {
        None = "none",
        /// NeuronEX's `POST /api/login` with a user name and password.
        Basic = "basic",
        /// RS256 tokens signed by the project's key.
        Jwt = "jwt",
    }
}

#[allow(clippy::derivable_impls, reason = "wire_enum! holds the derives; a default is not wanted for every enum")]
impl Default for AuthKind {
    fn default() -> AuthKind {
        AuthKind::None
    }
}

/// `2026-12-04T13:02:11Z` for a time in milliseconds since the Unix epoch, as reasons show it.
pub fn utc_text(epoch_ms: i64) -> String {
    let nanos = i128::from(epoch_ms) * 1_000_000;
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return format!("{epoch_ms} ms after the Unix epoch");
    };
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{epoch_ms} ms after the Unix epoch"))
}

/// An RFC 3339 time (`2026-12-05T02:00:00+08:00`) in milliseconds since the Unix epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        let shown: String = text.chars().take(64).collect();
        format!("`{shown}` is not an RFC 3339 time like 2026-12-05T02:00:00+08:00: {e}")
    })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("`{text}` is too far away"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_from_rfc3339() {
        assert_eq!(parse_time("2026-12-04T13:02:11Z"), Ok(1_796_389_331_000));
        assert_eq!(parse_time("2026-12-04T21:02:11+08:00"), Ok(1_796_389_331_000));
        assert!(parse_time("tomorrow").expect_err("refused").contains("not an RFC 3339 time"));
    }

    #[test]
    fn times_read_as_rfc3339_in_utc() {
        assert_eq!(utc_text(1_796_389_331_123), "2026-12-04T13:02:11Z");
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(i64::MAX), "9223372036854775807 ms after the Unix epoch");
    }
}

crate::wire_enum! {
    /// How edgefleet reaches an edge service.
    pub enum Transport ("transport") {
        /// edgefleet calls the endpoint over HTTP.
        Http = "http",
        /// An `edgefleet agent` next to the gateway connects out to an MQTT broker and makes the
        /// calls on its local NeuronEX (edges behind NAT and firewalls).
        Agent = "agent",
    }
}

#[allow(clippy::derivable_impls, reason = "wire_enum! holds the derives; a default is not wanted for every enum")]
impl Default for Transport {
    fn default() -> Transport {
        Transport::Http
    }
}

/// The local NeuronEX an agent-mode edge has when none is given: NeuronEX's own port on the
/// agent's machine.
pub const AGENT_DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8085";

/// Longest agent id: it is an MQTT user name and a topic level.
pub const AGENT_ID_MAX: usize = 64;

/// An agent id is a topic level and a broker user name: letters, digits, `.`, `_` and `-` only, so
/// it can hold no MQTT wildcard (`+`, `#`), level separator or ACL placeholder.
pub fn check_agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > AGENT_ID_MAX {
        return Err(format!("an agent id has 1 to {AGENT_ID_MAX} characters"));
    }
    match id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(c) => Err(format!("an agent id holds letters, digits, '.', '_' and '-' only, not {c:?}")),
        None if id.starts_with('.') => Err("an agent id cannot start with '.'".into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod agent_id_tests {
    use super::check_agent_id;

    #[test]
    fn agent_ids_cannot_reach_other_topics() {
        for good in ["sim-0", "plant_7.line-2", "A"] {
            assert_eq!(check_agent_id(good), Ok(()), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", "a/b", "+", "#", "a b", "..", "%u", "é", long.as_str()] {
            assert!(check_agent_id(bad).is_err(), "{bad}");
        }
    }
}

/// How one edge service is reached, with what that needs: an agent-mode edge always has its
/// agent id, an HTTP one never.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Reach {
    #[default]
    Http,
    Agent {
        agent_id: String,
    },
}

impl Reach {
    pub fn transport(&self) -> Transport {
        match self {
            Reach::Http => Transport::Http,
            Reach::Agent { .. } => Transport::Agent,
        }
    }

    pub fn agent_id(&self) -> Option<&str> {
        match self {
            Reach::Http => None,
            Reach::Agent { agent_id } => Some(agent_id),
        }
    }

    /// From the two columns (or fields) that hold it.
    pub fn from_parts(transport: Transport, agent_id: Option<String>) -> Result<Reach, String> {
        match (transport, agent_id) {
            (Transport::Http, None) => Ok(Reach::Http),
            (Transport::Http, Some(_)) => Err("an agent id is only for transport \"agent\"".into()),
            (Transport::Agent, Some(agent_id)) => check_agent_id(&agent_id).map(|()| Reach::Agent { agent_id }),
            (Transport::Agent, None) => Err("transport \"agent\" needs an agent_id".into()),
        }
    }
}
