//! RFC 6902 JSON Patch between two documents: what a plan shows for an object (from what the edge
//! runs to what would be sent) and what drift shows (from what was sent to what runs). Values under
//! secret-looking keys are compared but never shown: the patch carries `"******"` for them.

use serde_json::{Value, json};

use crate::secrets::{is_secret_key, mask_credentials};

/// The operations that turn `from` into `to`, in a stable order (keys as `to` and `from` list
/// them). Objects are compared key by key, arrays of the same length element by element, anything
/// else (arrays of different lengths included) is replaced whole.
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    walk(from, to, "", false, &mut ops);
    ops
}

fn walk(from: &Value, to: &Value, path: &str, secret: bool, ops: &mut Vec<Value>) {
    if from == to {
        return;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, old) in a {
                let child = format!("{path}/{}", escape(key));
                match b.get(key) {
                    Some(new) => walk(old, new, &child, secret || is_secret_key(key), ops),
                    None => ops.push(json!({"op": "remove", "path": child})),
                }
            }
            for (key, new) in b.iter().filter(|(key, _)| !a.contains_key(*key)) {
                let child = format!("{path}/{}", escape(key));
                ops.push(json!({"op": "add", "path": child, "value": shown(new, secret || is_secret_key(key))}));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (old, new)) in a.iter().zip(b).enumerate() {
                walk(old, new, &format!("{path}/{index}"), secret, ops);
            }
        }
        _ => ops.push(json!({"op": "replace", "path": path, "value": shown(to, secret)})),
    }
}

/// A value as a patch may show it: a secret's value is masked, and so are secrets inside it.
fn shown(value: &Value, secret: bool) -> Value {
    if secret && !value.is_object() && !value.is_array() {
        return json!("******");
    }
    mask_credentials(value)
}

/// RFC 6901: `~` is written `~0` and `/` is written `~1` inside a path segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_name_each_change_and_mask_secrets() {
        let cases = [
            (json!({"a": 1}), json!({"a": 1}), json!([])),
            (json!({"a": 1}), json!({"a": 2}), json!([{"op": "replace", "path": "/a", "value": 2}])),
            (
                json!({"a": 1, "b": {"c": [1, 2]}}),
                json!({"b": {"c": [1, 3]}, "d/e": "x"}),
                json!([{"op": "remove", "path": "/a"}, {"op": "replace", "path": "/b/c/1", "value": 3},
                       {"op": "add", "path": "/d~1e", "value": "x"}]),
            ),
            (json!([1]), json!([1, 2]), json!([{"op": "replace", "path": "", "value": [1, 2]}])),
            (
                json!({"mqtt": {"password": "old", "server": "tcp://a"}}),
                json!({"mqtt": {"password": "new", "server": "tcp://b"}}),
                json!([{"op": "replace", "path": "/mqtt/password", "value": "******"},
                       {"op": "replace", "path": "/mqtt/server", "value": "tcp://b"}]),
            ),
            (json!({}), json!({"token": "t"}), json!([{"op": "add", "path": "/token", "value": "******"}])),
        ];
        for (from, to, expected) in cases {
            assert_eq!(Value::Array(diff(&from, &to)), expected, "{from} -> {to}");
        }
    }
}
