//! Values of secret parameters (`${secret:name}`) at rest: sealed with the server's secret key
//! when a delivery is stored, opened only by the engine that sends them, and shown to nobody.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::crypto::SecretBox;

/// The stored form of a secret value: `{"sealed": "v1:..."}`.
const SEALED: &str = "sealed";

fn map_values(params: &Value, mut change: impl FnMut(&str, &Value) -> Value) -> Value {
    let mut apply = |values: &Value| -> Value {
        match values.as_object() {
            Some(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), change(k, v))).collect::<Map<_, _>>()),
            None => values.clone(),
        }
    };
    let mut out = params.clone();
    if let Some(defaults) = params.get("defaults") {
        out["defaults"] = apply(defaults);
    }
    if let Some(Value::Object(targets)) = params.get("targets") {
        out["targets"] = Value::Object(targets.iter().map(|(k, v)| (k.clone(), apply(v))).collect());
    }
    out
}

/// Seals the values of the secret parameters (others stay as given).
pub fn seal(params: &Value, secret: &BTreeSet<String>, secrets: &SecretBox) -> Value {
    map_values(params, |name, value| {
        if secret.contains(name) && !value.is_null() {
            json!({SEALED: secrets.seal(&value.to_string())})
        } else {
            value.clone()
        }
    })
}

/// Opens sealed values for sending; a value that cannot be opened is an error naming it.
pub fn open(params: &Value, secrets: &SecretBox) -> Result<Value, String> {
    let mut failure = None;
    let opened = map_values(params, |name, value| match sealed_text(value) {
        Some(sealed) => match secrets.open(sealed).ok().and_then(|plain| serde_json::from_str(&plain).ok()) {
            Some(plain) => plain,
            None => {
                failure = Some(format!("secret parameter {name}: cannot be decrypted with this server's secret key"));
                Value::Null
            }
        },
        None => value.clone(),
    });
    failure.map_or(Ok(opened), Err)
}

/// What the API shows: sealed values as `******`.
pub fn masked(params: &Value) -> Value {
    map_values(
        params,
        |_, value| {
            if sealed_text(value).is_some() { Value::from(domain::params::MASK) } else { value.clone() }
        },
    )
}

fn sealed_text(value: &Value) -> Option<&str> {
    let map = value.as_object().filter(|m| m.len() == 1)?;
    map.get(SEALED)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_sealed_opened_and_masked() {
        let secrets = SecretBox::new(&SecretBox::generate_key());
        let params = json!({"defaults": {"pw": "hunter2", "port": 502}, "targets": {"e1": {"pw": {"nested": true}}}});
        let secret = ["pw".to_owned()].into_iter().collect();
        let stored = seal(&params, &secret, &secrets);
        assert!(!stored.to_string().contains("hunter2"));
        assert_eq!(stored["defaults"]["port"], 502);
        assert_eq!(open(&stored, &secrets), Ok(params));
        assert_eq!(
            masked(&stored),
            json!({"defaults": {"pw": "******", "port": 502}, "targets": {"e1": {"pw": "******"}}})
        );
        let other = SecretBox::new(&SecretBox::generate_key());
        assert!(open(&stored, &other).expect_err("wrong key").contains("secret parameter pw"));
    }
}
