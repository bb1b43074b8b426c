//! What a document needs from the NeuronEX it goes to, beyond edgefleet's 3.0 floor: checked after
//! the version gate, before anything is sent, so a document that an older gateway would read
//! differently (and run wrongly) is refused with a reason instead of half-applied.
//!
//! docs/COMPATIBILITY.md lists these rules per NeuronEX version; each has a test there.

use serde_json::Value;

use crate::template::Document;
use crate::version::Version;

/// NeuronEX 3.9.2 is the first whose eKuiper honours a sink's `"enable": false`.
pub const SINK_ENABLE_SINCE: Version = Version::new(3, 9, 2);

/// NeuronEX 3.6 bundles eKuiper 2.2, the first to replace a rule only with a greater `version`.
pub const RULE_VERSIONS_SINCE: Version = Version::new(3, 6, 0);
/// NeuronEX 3.7 bundles eKuiper 2.3, the first to do the same for streams and tables.
pub const STREAM_VERSIONS_SINCE: Version = Version::new(3, 7, 0);

/// eKuiper's `CanReplace`: two missing versions pass; otherwise the new one must be greater, as
/// text (so an equal or a missing one is "lower").
pub fn can_replace(stored: &str, sent: &str) -> bool {
    (stored.is_empty() && sent.is_empty()) || sent > stored
}

/// Why a gateway running NeuronEX `neuronex` would refuse to replace `live` with `desired` (both in
/// `domain::plan`'s normal form; a stream's version is its `version` option), or `None`.
pub fn version_refusal(
    object: &crate::plan::ObjectRef,
    desired: &Value,
    live: &Value,
    neuronex: Version,
) -> Option<String> {
    use crate::plan::ObjectRef;
    let (since, stored, sent) = match object {
        ObjectRef::Rule { .. } => (RULE_VERSIONS_SINCE, &live["version"], &desired["version"]),
        ObjectRef::Stream { .. } | ObjectRef::Table { .. } => {
            (STREAM_VERSIONS_SINCE, &live["options"]["version"], &desired["options"]["version"])
        }
        _ => return None,
    };
    let (stored, sent) = (stored.as_str().unwrap_or_default(), sent.as_str().unwrap_or_default());
    if neuronex < since || can_replace(stored, sent) {
        return None;
    }
    Some(format!(
        "the gateway holds version ({stored}) and its eKuiper replaces it only with a greater one; this template has ({sent})"
    ))
}

/// Why `document` cannot go to a gateway running NeuronEX `version`, or `None` when it can.
pub fn incompatibility(document: &Document, version: Version) -> Option<String> {
    let Document::Rule(rules) = document else {
        return None;
    };
    if version >= SINK_ENABLE_SINCE {
        return None;
    }
    let disabled: Vec<String> = rules
        .rules
        .iter()
        .flat_map(|rule| disabled_sinks(&rule.definition).into_iter().map(move |sink| format!("{}.{sink}", rule.id)))
        .collect();
    if disabled.is_empty() {
        return None;
    }
    Some(format!(
        "NeuronEX {version} ignores a sink's `\"enable\": false` (honoured from {SINK_ENABLE_SINCE}), so {} would run; \
         remove those sinks or deliver to {SINK_ENABLE_SINCE} or later",
        disabled.join(", ")
    ))
}

/// The sinks of a rule's `actions` that carry `"enable": false`, as `<type>#<position>`.
fn disabled_sinks(rule: &Value) -> Vec<String> {
    let actions = rule.get("actions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    actions
        .iter()
        .enumerate()
        .flat_map(|(position, action)| {
            action
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, props)| props.get("enable") == Some(&Value::Bool(false)))
                .map(move |(sink, _)| format!("{sink}#{}", position + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::{TemplateKind, load, normalize};

    fn rule_with(actions: Value) -> Document {
        let content = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": actions});
        let normalized = normalize(TemplateKind::Rule, &content).expect("a rule");
        load(TemplateKind::Rule, &normalized).expect("a valid rule")
    }

    #[test]
    fn a_disabled_sink_needs_neuronex_3_9_2() {
        let disabled =
            rule_with(json!([{"log": {}}, {"mqtt": {"server": "tcp://b:1883", "topic": "t", "enable": false}}]));
        let cases = [
            (
                &disabled,
                "3.9.1",
                Some(
                    "NeuronEX 3.9.1 ignores a sink's `\"enable\": false` (honoured from 3.9.2), so r1.mqtt#2 would run; remove those sinks or deliver to 3.9.2 or later",
                ),
            ),
            (&disabled, "3.9.2", None),
            (&disabled, "4.0.0", None),
        ];
        for (document, version, expected) in cases {
            let version = Version::parse(version).expect("version");
            assert_eq!(incompatibility(document, version).as_deref(), expected, "{version}");
        }
        let enabled = rule_with(json!([{"log": {"enable": true}}]));
        assert_eq!(incompatibility(&enabled, Version::new(3, 0, 0)), None);
    }

    #[test]
    fn versions_are_compared_as_ekuiper_compares_them_from_the_releases_that_do() {
        use crate::plan::ObjectRef;
        let rule = ObjectRef::Rule { id: "r1".into() };
        let versioned = |v: &str| json!({"id": "r1", "version": v});
        let v = |text: &str| Version::parse(text).expect("version");
        assert_eq!(version_refusal(&rule, &versioned("2"), &versioned("1"), v("3.7.0")), None);
        assert!(version_refusal(&rule, &versioned("2"), &versioned("2"), v("3.7.0")).is_some(), "equal is refused");
        assert!(version_refusal(&rule, &versioned("10"), &versioned("9"), v("3.6.0")).is_some(), "text order");
        assert_eq!(
            version_refusal(&rule, &versioned("1"), &versioned("2"), v("3.5.5")),
            None,
            "eKuiper 2.1 does not check"
        );
        let stream = ObjectRef::Stream { name: "s".into() };
        let with = |v: &str| json!({"fields": [], "options": {"version": v}});
        assert_eq!(
            version_refusal(&stream, &with("1"), &with("2"), v("3.6.0")),
            None,
            "eKuiper 2.2 does not check streams"
        );
        assert!(version_refusal(&stream, &with("1"), &with("2"), v("3.7.0")).is_some());
    }
}
