//! NeuronEX, eKuiper and Neuron versions: parse and compare.

use std::fmt;

/// A `major.minor.patch` version; pre-release suffixes are ignored for ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version { major, minor, patch }
    }

    /// Parses `3.6.0`, `v2.1.5`, `3.1.0-beta.3`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim().trim_start_matches('v');
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().unwrap_or("0").parse().ok()?;
        let patch = parts.next().unwrap_or("0").parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version { major, minor, patch })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The oldest NeuronEX that edge-service management supports (ECP's documented limit).
pub const MIN_NEURONEX: Version = Version::new(3, 0, 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_with_prefix_and_suffix() {
        assert_eq!(Version::parse("v2.1.5"), Some(Version::new(2, 1, 5)));
        assert_eq!(Version::parse("3.1.0-beta.3"), Some(Version::new(3, 1, 0)));
        assert_eq!(Version::parse("3.6"), Some(Version::new(3, 6, 0)));
        assert_eq!(Version::parse("x.1"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version::new(2, 9, 9) < MIN_NEURONEX);
    }
}
