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
}

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
    if tags.len() > 32 {
        return Err(format!("{} tags given; an edge service carries at most 32", tags.len()));
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
