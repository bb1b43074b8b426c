//! `${name}` parameters in template content.
//!
//! Substitution works on the parsed document, string by string, never on raw text: a value with
//! quotes or backslashes therefore lands correctly escaped wherever it sits, including inside the
//! JSON-encoded rule strings of an eKuiper export (those are decoded before rendering and encoded
//! again when sent). A string that is exactly one placeholder takes the value's JSON type, so
//! `"port": "${port}"` with `port = 502` sends the number 502. `$${x}` stands for a literal `${x}`
//! (eKuiper expands `${...}` itself at run time).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Parameter names must look like identifiers, optionally dotted (`edge.name`).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    /// `${name}`, or `${secret:name}` (`secret` set): the value of parameter `name`.
    Param(&'a str),
    Secret(&'a str),
}

/// What marks a secret parameter: `${secret:name}`.
pub const SECRET_PREFIX: &str = "secret:";
/// What stands for a secret value wherever people can see it.
pub const MASK: &str = "******";

/// Characters a parameter name can hold.
fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// Splits a string into literal text and placeholders; `$${` yields a literal `${`.
///
/// One pass, linear in the text: after `${` only name characters are read, and the scan goes on
/// from where they end. (It once searched for the closing `}` from every `${`, which made
/// `${${${...` quadratic: 1.5 MB of it held a runtime thread for 47 s.)
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut literal_from = 0;
    let mut at = 0;
    while let Some(found) = text[at..].find("${") {
        let start = at + found;
        if start > 0 && bytes[start - 1] == b'$' {
            out.push(Piece::Text(&text[literal_from..start - 1]));
            out.push(Piece::Text("${"));
            at = start + 2;
            literal_from = at;
            continue;
        }
        let secret = text[start + 2..].starts_with(SECRET_PREFIX);
        let name_from = start + 2 + if secret { SECRET_PREFIX.len() } else { 0 };
        let name_len = bytes[name_from..].iter().take_while(|c| is_name_char(**c)).count();
        let name_to = name_from + name_len;
        let name = &text[name_from..name_to];
        if bytes.get(name_to) == Some(&b'}') && is_name(name) {
            out.push(Piece::Text(&text[literal_from..start]));
            out.push(if secret { Piece::Secret(name) } else { Piece::Param(name) });
            at = name_to + 1;
            literal_from = at;
        } else {
            at = name_from;
        }
    }
    out.push(Piece::Text(&text[literal_from..]));
    out.retain(|p| *p != Piece::Text(""));
    out
}

/// How many placeholders the document holds, counting stops once past `limit`.
pub fn placeholder_count(document: &Value, limit: usize) -> usize {
    let mut count = 0;
    walk_strings(document, &mut |s| {
        if count <= limit {
            count += pieces(s).iter().filter(|p| !matches!(p, Piece::Text(_))).count();
        }
    });
    count
}

/// Every parameter the document uses, in keys and in values.
pub fn placeholders(document: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    walk_strings(document, &mut |s| {
        for piece in pieces(s) {
            if let Piece::Param(name) | Piece::Secret(name) = piece {
                names.insert(name.to_owned());
            }
        }
    });
    names
}

/// The parameters the document marks secret (`${secret:name}` anywhere).
pub fn secret_names(document: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    walk_strings(document, &mut |s| {
        for piece in pieces(s) {
            if let Piece::Secret(name) = piece {
                names.insert(name.to_owned());
            }
        }
    });
    names
}

fn walk_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => visit(s),
        Value::Array(items) => items.iter().for_each(|v| walk_strings(v, visit)),
        Value::Object(map) => {
            for (key, v) in map {
                visit(key);
                walk_strings(v, visit);
            }
        }
        _ => {}
    }
}

/// The values one target gets: its own, then the delivery's defaults, then the built-ins.
#[derive(Debug, Clone, Default)]
pub struct ParamValues<'a> {
    pub target: Option<&'a BTreeMap<String, Value>>,
    pub defaults: Option<&'a BTreeMap<String, Value>>,
    pub builtins: BTreeMap<String, Value>,
}

impl ParamValues<'_> {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.target
            .and_then(|m| m.get(name))
            .or_else(|| self.defaults.and_then(|m| m.get(name)))
            .or_else(|| self.builtins.get(name))
            .filter(|v| !v.is_null())
    }
}

/// Built-in parameters from an edge service: `edge.name`, `edge.endpoint`, `edge.version`,
/// `edge.id`, `edge.tags` (comma separated).
pub fn edge_builtins(
    id: &str,
    name: &str,
    endpoint: &str,
    version: Option<&str>,
    tags: &[String],
) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    map.insert("edge.id".to_owned(), Value::from(id));
    map.insert("edge.name".to_owned(), Value::from(name));
    map.insert("edge.endpoint".to_owned(), Value::from(endpoint));
    map.insert("edge.version".to_owned(), Value::from(version.unwrap_or_default()));
    map.insert("edge.tags".to_owned(), Value::from(tags.join(",")));
    map
}

/// Parameters the document needs that have no value, sorted.
pub fn missing(document: &Value, values: &ParamValues<'_>) -> Vec<String> {
    placeholders(document).into_iter().filter(|name| values.get(name).is_none()).collect()
}

/// Renders every placeholder; `Err` lists the names that have no value.
pub fn render(document: &Value, values: &ParamValues<'_>) -> Result<Value, Vec<String>> {
    let missing = missing(document, values);
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(render_value(document, values, Secrets::Reveal))
}

/// Renders like [`render`], but every secret parameter shows as [`MASK`]: what previews, plans
/// and anything else people read get.
pub fn render_masked(document: &Value, values: &ParamValues<'_>) -> Result<Value, Vec<String>> {
    let missing = missing(document, values);
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(render_value(document, values, Secrets::Mask))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Reveal,
    Mask,
}

fn render_value(value: &Value, values: &ParamValues<'_>, secrets: Secrets) -> Value {
    match value {
        Value::String(s) => render_string(s, values, secrets),
        Value::Array(items) => Value::Array(items.iter().map(|v| render_value(v, values, secrets)).collect()),
        Value::Object(map) => {
            let rendered: Map<String, Value> = map
                .iter()
                .map(|(k, v)| (as_text(&render_string(k, values, secrets)), render_value(v, values, secrets)))
                .collect();
            Value::Object(rendered)
        }
        other => other.clone(),
    }
}

fn render_string(text: &str, values: &ParamValues<'_>, secrets: Secrets) -> Value {
    let pieces = pieces(text);
    let value_of = |piece: &Piece<'_>| -> Option<Value> {
        match piece {
            Piece::Secret(_) if secrets == Secrets::Mask => Some(Value::from(MASK)),
            Piece::Param(name) | Piece::Secret(name) => values.get(name).cloned(),
            Piece::Text(_) => None,
        }
    };
    if let [only @ (Piece::Param(_) | Piece::Secret(_))] = pieces.as_slice() {
        return value_of(only).unwrap_or(Value::Null);
    }
    let mut out = String::with_capacity(text.len());
    for piece in &pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            other => out.push_str(&value_of(other).as_ref().map(as_text).unwrap_or_default()),
        }
    }
    Value::String(out)
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn finds_placeholders_in_keys_and_values_but_not_escaped_ones() {
        let doc = json!({"rules": {"${line}_r": {"sql": "SELECT * FROM ${stream} WHERE a = '$${literal}'", "n": "${a.b}"}}, "x": "${ bad }"});
        let names: Vec<String> = placeholders(&doc).into_iter().collect();
        assert_eq!(names, ["a.b", "line", "stream"]);
    }

    #[test]
    fn renders_with_target_values_over_defaults_over_builtins() {
        let defaults = values(&[("host", json!("10.0.0.1")), ("port", json!(502))]);
        let target = values(&[("host", json!("10.0.0.9"))]);
        let builtins = edge_builtins("e1", "gw-7", "http://gw", Some("3.6.0"), &["a".into(), "b".into()]);
        let params = ParamValues { target: Some(&target), defaults: Some(&defaults), builtins };
        let doc = json!({"host": "${host}", "port": "${port}", "url": "tcp://${host}:${port}", "who": "${edge.name}/${edge.tags}", "lit": "$${keep}"});
        let rendered = render(&doc, &params).expect("complete");
        assert_eq!(
            rendered,
            json!({"host": "10.0.0.9", "port": 502, "url": "tcp://10.0.0.9:502", "who": "gw-7/a,b", "lit": "${keep}"})
        );
    }

    #[test]
    fn values_with_quotes_stay_valid_inside_json_encoded_rule_strings() {
        // The rule text is decoded before rendering and encoded after, so both levels escape.
        let rule = json!({"id": "r1", "sql": "SELECT * FROM s WHERE name = \"${who}\""});
        let params = ParamValues { defaults: Some(&values(&[("who", json!("a\"b\\c"))])), ..ParamValues::default() };
        let rendered = render(&rule, &params).expect("complete");
        let encoded = rendered.to_string();
        let outer = serde_json::to_string(&json!({"rules": {"r1": encoded}})).expect("encode");
        let back: Value = serde_json::from_str(&outer).expect("outer parses");
        let inner: Value = serde_json::from_str(back["rules"]["r1"].as_str().expect("string")).expect("inner parses");
        assert_eq!(inner["sql"], "SELECT * FROM s WHERE name = \"a\"b\\c\"");
    }

    #[test]
    fn missing_values_are_all_named() {
        let doc = json!({"a": "${x}", "b": "${y}", "c": "${z}"});
        let params =
            ParamValues { defaults: Some(&values(&[("y", json!("1")), ("z", Value::Null)])), ..ParamValues::default() };
        assert_eq!(render(&doc, &params), Err(vec!["x".to_owned(), "z".to_owned()]));
    }

    #[test]
    fn nested_and_broken_openings_are_text_and_cost_linear_time() {
        let doc = json!({"a": "${${x}", "b": "$${${y}}", "c": "${x${y}", "d": "${ok}}"});
        let names: Vec<String> = placeholders(&doc).into_iter().collect();
        assert_eq!(names, ["ok", "x", "y"]);
        // Quadratic scanning would not finish this in any reasonable time.
        let hostile = "${".repeat(2_000_000);
        assert!(placeholders(&json!(hostile)).is_empty());
        let many = "${a}".repeat(50_000);
        assert_eq!(placeholder_count(&json!([many.clone()]), 100), 50_000);
        assert_eq!(placeholder_count(&json!(["${a}", "${b}", "${c}"]), 1), 2, "counting stops past the limit");
    }

    #[test]
    fn secret_parameters_render_for_the_edge_and_mask_for_people() {
        let doc =
            json!({"password": "${secret:opc_pw}", "url": "opc.tcp://u:${secret:opc_pw}@${host}", "h": "${host}"});
        assert_eq!(secret_names(&doc).into_iter().collect::<Vec<_>>(), ["opc_pw"]);
        assert_eq!(placeholders(&doc).into_iter().collect::<Vec<_>>(), ["host", "opc_pw"]);
        let given = values(&[("opc_pw", json!("s3cr\"t")), ("host", json!("10.0.0.2"))]);
        let params = ParamValues { defaults: Some(&given), ..ParamValues::default() };
        assert_eq!(
            render(&doc, &params).expect("complete"),
            json!({"password": "s3cr\"t", "url": "opc.tcp://u:s3cr\"t@10.0.0.2", "h": "10.0.0.2"})
        );
        assert_eq!(
            render_masked(&doc, &params).expect("complete"),
            json!({"password": "******", "url": "opc.tcp://u:******@10.0.0.2", "h": "10.0.0.2"})
        );
        assert!(render_masked(&doc, &ParamValues::default()).is_err(), "a missing secret is still missing");
    }

    #[test]
    fn unterminated_or_odd_text_is_left_alone() {
        let doc = json!("cost: $5 ${unterminated");
        assert!(placeholders(&doc).is_empty());
        assert_eq!(render(&doc, &ParamValues::default()), Ok(doc.clone()));
    }
}
