//! Roles a user holds in an organization or a project, and how audited actions ended.

use crate::delivery::DeliveryState;

crate::wire_enum! {
    /// A role in an organization or a project, ordered by what it allows. Projects take `viewer`
    /// and `admin`; `member` is an organization role (it sees only the projects it is given).
    pub enum Role ("role") {
        Member = "member",
        Viewer = "viewer",
        Admin = "admin",
    }
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Member => 0,
            Role::Viewer => 1,
            Role::Admin => 2,
        }
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Role) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Role) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Outcome {
    #[default]
    Success,
    /// Refused by access rules.
    Denied,
    /// Attempted and failed (a wrong password, ...).
    Failure,
    /// Refused before it was tried: too many recent failures (sign-in back-off).
    Throttled,
    /// A delivery's final state, on its `delivery.finish` record.
    Ended(DeliveryState),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
            Outcome::Throttled => "throttled",
            Outcome::Ended(state) => state.as_str(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(text: &str) -> Result<Outcome, String> {
        match text {
            "success" => Ok(Outcome::Success),
            "denied" => Ok(Outcome::Denied),
            "failure" => Ok(Outcome::Failure),
            "throttled" => Ok(Outcome::Throttled),
            _ => text.parse().map(Outcome::Ended).map_err(|_| {
                let mut names = vec!["success", "denied", "failure", "throttled"];
                names.extend(DeliveryState::ALL.iter().map(|s| s.as_str()));
                crate::wire::unknown("audit outcome", text, &names)
            }),
        }
    }
}

impl schemars::JsonSchema for Outcome {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Outcome".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut names = vec!["success", "denied", "failure", "throttled"];
        names.extend(DeliveryState::ALL.iter().map(|s| s.as_str()));
        schemars::json_schema!({"type": "string", "enum": names})
    }
}

impl<'de> serde::Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Outcome, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_allow() {
        assert!(Role::Member < Role::Viewer && Role::Viewer < Role::Admin);
        assert_eq!(Some(Role::Viewer).max(Some(Role::Admin)), Some(Role::Admin));
    }

    #[test]
    fn outcomes_round_trip_including_delivery_states() {
        let all = [
            Outcome::Success,
            Outcome::Denied,
            Outcome::Failure,
            Outcome::Throttled,
            Outcome::Ended(DeliveryState::Partial),
        ];
        for outcome in all {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
        assert!("running".parse::<Outcome>().is_ok_and(|o| o == Outcome::Ended(DeliveryState::Running)));
        assert!("ok".parse::<Outcome>().is_err_and(|e| e.starts_with("unknown audit outcome `ok`: use success")));
    }
}
