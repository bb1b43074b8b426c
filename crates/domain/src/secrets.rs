//! Values people must not read: secret parameters and credentials written into templates.
//!
//! Driver settings and rule actions carry passwords, tokens and keys (an OPC UA password, an MQTT
//! sink's password). Wherever a document is shown to someone who may not hold them (viewers,
//! the audit, previews) such values are replaced by [`MASK`](crate::params::MASK).

use serde_json::{Map, Value};

use crate::params::MASK;

/// Keys whose values are credentials, compared without case, `_` or `-`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "token",
    "accesstoken",
    "refreshtoken",
    "secret",
    "clientsecret",
    "key",
    "privatekey",
    "apikey",
    "secretkey",
    "accesskey",
    "credential",
    "credentials",
    "passphrase",
];

/// Whether a field of this name holds a credential.
pub fn is_secret_key(key: &str) -> bool {
    let folded: String = key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
    SECRET_KEYS.contains(&folded.as_str())
}

/// The document with every credential value masked, including inside JSON-encoded strings (the
/// rules of an eKuiper export are JSON documents held in strings).
pub fn mask_credentials(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let masked: Map<String, Value> = map
                .iter()
                .map(|(key, v)| {
                    let shown = match v {
                        Value::String(s) if is_secret_key(key) && !s.is_empty() => Value::from(MASK),
                        Value::Number(_) if is_secret_key(key) => Value::from(MASK),
                        other => mask_credentials(other),
                    };
                    (key.clone(), shown)
                })
                .collect();
            Value::Object(masked)
        }
        Value::Array(items) => Value::Array(items.iter().map(mask_credentials).collect()),
        Value::String(text) if text.trim_start().starts_with('{') => match serde_json::from_str::<Value>(text) {
            Ok(inner @ Value::Object(_)) => {
                let masked = mask_credentials(&inner);
                if masked == inner { value.clone() } else { Value::String(masked.to_string()) }
            }
            _ => value.clone(),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_are_masked_at_any_depth_and_inside_rule_strings() {
        let rule =
            json!({"id": "r1", "actions": [{"mqtt": {"server": "tcp://b:1883", "password": "hunter2", "token": ""}}]});
        let doc = json!({
            "nodes": [{"name": "opc", "params": {"Password": "plc-secret", "api_key": 1234, "host": "10.0.0.2"}}],
            "rules": {"r1": rule.to_string()}
        });
        let masked = mask_credentials(&doc);
        assert_eq!(
            masked["nodes"][0]["params"],
            json!({"Password": "******", "api_key": "******", "host": "10.0.0.2"})
        );
        let inner: Value = serde_json::from_str(masked["rules"]["r1"].as_str().expect("string")).expect("json");
        assert_eq!(inner["actions"][0]["mqtt"]["password"], "******");
        assert_eq!(inner["actions"][0]["mqtt"]["token"], "", "an empty value hides nothing");
        assert!(!masked.to_string().contains("hunter2") && !masked.to_string().contains("plc-secret"));
        assert!(!is_secret_key("keyField") && !is_secret_key("monkey") && is_secret_key("client-secret"));
    }
}
