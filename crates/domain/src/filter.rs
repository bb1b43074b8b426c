//! Selecting edge services: by name, endpoint, version, tags, status and free text.

use serde::{Deserialize, Serialize};

/// All given fields must match (AND). Text fields match case-insensitively as substrings;
/// `version` matches exactly or as a prefix at a dot (`3.6` matches `3.6.0`); every tag listed must
/// be on the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeFilter {
    pub q: Option<String>,
    pub name: Option<String>,
    pub endpoint: Option<String>,
    pub version: Option<String>,
    pub tag: Vec<String>,
    pub status: Option<String>,
    /// Whether the edge holds what was last delivered to it.
    pub config_state: Option<crate::drift::ConfigState>,
}

/// Longest text filter (`q`, `name`, `endpoint`, `version`).
pub const MAX_FILTER_TEXT: usize = 200;
/// Most tags on one service, and so in one filter.
pub const MAX_TAGS: usize = 32;

pub const STATUSES: [&str; 3] = ["online", "offline", "unknown"];

impl EdgeFilter {
    /// Empty strings mean "not given".
    pub fn cleaned(mut self) -> EdgeFilter {
        let clean = |v: &mut Option<String>| {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *v = None;
            }
        };
        clean(&mut self.q);
        clean(&mut self.name);
        clean(&mut self.endpoint);
        clean(&mut self.version);
        clean(&mut self.status);
        self.tag.retain(|t| !t.trim().is_empty());
        self
    }

    pub fn check(&self) -> Result<(), String> {
        let texts = [("q", &self.q), ("name", &self.name), ("endpoint", &self.endpoint), ("version", &self.version)];
        for (field, value) in texts {
            if let Some(value) = value {
                if value.chars().count() > MAX_FILTER_TEXT {
                    return Err(format!("`{field}` is longer than {MAX_FILTER_TEXT} characters"));
                }
                if value.chars().any(char::is_control) {
                    return Err(format!("`{field}` contains control characters"));
                }
            }
        }
        if self.tag.len() > MAX_TAGS {
            return Err(format!(
                "{} tags given; a service carries at most {MAX_TAGS}, so more can never match",
                self.tag.len()
            ));
        }
        check_tags(&self.tag).map_err(|e| format!("tag: {e}"))?;
        if let Some(status) = &self.status
            && !STATUSES.contains(&status.as_str())
        {
            return Err(format!("unknown status `{status}`: use online, offline or unknown"));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == EdgeFilter::default()
    }
}

/// Tags: 1 to 64 characters, letters, digits, `-`, `_`, `.`, `:`, `/`; at most 32 per service.
pub fn check_tags(tags: &[String]) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("{} tags given; an edge service carries at most {MAX_TAGS}", tags.len()));
    }
    for tag in tags {
        let valid = (1..=64).contains(&tag.chars().count())
            && tag.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
        if !valid {
            return Err(format!("bad tag `{tag}`: use 1 to 64 letters, digits, - _ . : /"));
        }
    }
    Ok(())
}
