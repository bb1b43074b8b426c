//! Southbound-driver templates: NeuronEX's template `{nodes, groups, tags, subscriptions, settings}`
//! (the shape of Neuron's `global/config`) and Neuron's bulk `{nodes: [{name, plugin, params,
//! groups: [{group, interval, tags}]}]}` (the documented variant that names groups with `name` is
//! accepted and normalized). The normalized form is the bulk shape with `group` keys plus an
//! optional `subscriptions` list `[{app, driver, group, params?}]`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::Problem;

/// Neuron's name length limit (`NEU_NODE_NAME_LEN` and friends, less the terminating NUL).
pub const NAME_MAX: usize = 127;
pub const MIN_INTERVAL_MS: u64 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct DriverDocument {
    pub nodes: Vec<DriverNode>,
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriverNode {
    pub name: String,
    pub plugin: String,
    pub params: Option<Value>,
    pub groups: Vec<DriverGroup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriverGroup {
    pub name: String,
    pub interval: u64,
    pub tags: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub app: String,
    pub driver: String,
    pub group: String,
    pub params: Option<Value>,
}

pub fn normalize(content: &Value) -> Result<Value, Vec<Problem>> {
    let Some(object) = content.as_object() else {
        return Err(vec![Problem::new("", "a driver template must be a JSON object")]);
    };
    let Some(nodes) = object.get("nodes").and_then(Value::as_array) else {
        return Err(vec![Problem::new(
            "nodes",
            "not a driver document: expected {nodes: [...]} as NeuronEX or Neuron export it",
        )]);
    };
    let template_shape = ["groups", "tags", "settings", "subscriptions"].iter().any(|k| object.contains_key(*k))
        && nodes.iter().all(|n| n.get("groups").is_none());
    if template_shape {
        from_template(object)
    } else {
        let mut problems = Vec::new();
        let subscriptions = subscriptions_of(object, &mut problems);
        if problems.is_empty() { Ok(from_bulk(nodes, subscriptions)) } else { Err(problems) }
    }
}

/// Neuron's bulk shape; groups named with `name` become `group`, `precison` becomes `precision`.
fn from_bulk(nodes: &[Value], subscriptions: Vec<Value>) -> Value {
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|node| {
            let mut node = node.clone();
            if let Some(groups) = node.get_mut("groups").and_then(Value::as_array_mut) {
                for group in groups.iter_mut().filter_map(Value::as_object_mut) {
                    if !group.contains_key("group")
                        && let Some(name) = group.remove("name")
                    {
                        group.insert("group".into(), name);
                    }
                    for tag in group.get_mut("tags").and_then(Value::as_array_mut).into_iter().flatten() {
                        if let Some(tag) = tag.as_object_mut()
                            && !tag.contains_key("precision")
                            && let Some(p) = tag.remove("precison")
                        {
                            tag.insert("precision".into(), p);
                        }
                    }
                }
            }
            node
        })
        .collect();
    json!({"nodes": nodes, "subscriptions": subscriptions})
}

/// The `subscriptions` of either shape, flat: NeuronEX's `{app, groups: [{driver, group,
/// params?}]}` entries are expanded, entries already flat (`{app, driver, group, params?}`) kept.
fn subscriptions_of(object: &Map<String, Value>, problems: &mut Vec<Problem>) -> Vec<Value> {
    let mut subscriptions = Vec::new();
    for (i, sub) in array(object, "subscriptions").iter().enumerate() {
        let app = sub.get("app").cloned().unwrap_or(Value::Null);
        let Some(groups) = sub.get("groups").and_then(Value::as_array) else {
            subscriptions.push(sub.clone());
            continue;
        };
        for (j, group) in groups.iter().enumerate() {
            let (Some(driver), Some(name)) = (group.get("driver"), group.get("group")) else {
                problems.push(Problem::new(format!("subscriptions[{i}].groups[{j}]"), "needs `driver` and `group`"));
                continue;
            };
            let mut entry = json!({"app": app, "driver": driver, "group": name});
            if let Some(params) = group.get("params") {
                entry["params"] = params.clone();
            }
            subscriptions.push(entry);
        }
    }
    subscriptions
}

/// NeuronEX's template: nodes, then groups, tags, settings and subscriptions that refer to them.
fn from_template(object: &Map<String, Value>) -> Result<Value, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut nodes: Vec<Map<String, Value>> = Vec::new();
    for (i, node) in array(object, "nodes").iter().enumerate() {
        match (node.get("name").and_then(Value::as_str), node.get("plugin").and_then(Value::as_str)) {
            (Some(name), Some(plugin)) => {
                let mut entry = Map::new();
                entry.insert("name".into(), json!(name));
                entry.insert("plugin".into(), json!(plugin));
                entry.insert("groups".into(), json!([]));
                nodes.push(entry);
            }
            _ => problems.push(Problem::new(format!("nodes[{i}]"), "a node needs `name` and `plugin`")),
        }
    }
    let find = |nodes: &mut Vec<Map<String, Value>>, name: &str| nodes.iter_mut().position(|n| n["name"] == name);
    for (i, setting) in array(object, "settings").iter().enumerate() {
        let node = setting.get("node").and_then(Value::as_str).unwrap_or_default();
        match find(&mut nodes, node) {
            Some(at) => {
                nodes[at].insert("params".into(), setting.get("params").cloned().unwrap_or(json!({})));
            }
            None => problems.push(Problem::new(format!("settings[{i}]"), format!("node `{node}` is not in nodes"))),
        }
    }
    for (i, group) in array(object, "groups").iter().enumerate() {
        let driver = group.get("driver").and_then(Value::as_str).unwrap_or_default();
        let name = group.get("group").or_else(|| group.get("name")).cloned().unwrap_or(Value::Null);
        let interval = group.get("interval").cloned().unwrap_or(Value::Null);
        match find(&mut nodes, driver) {
            Some(at) => {
                if let Some(groups) = nodes[at].get_mut("groups").and_then(Value::as_array_mut) {
                    groups.push(json!({"group": name, "interval": interval, "tags": []}));
                }
            }
            None => problems.push(Problem::new(format!("groups[{i}]"), format!("driver `{driver}` is not in nodes"))),
        }
    }
    for (i, entry) in array(object, "tags").iter().enumerate() {
        let driver = entry.get("driver").and_then(Value::as_str).unwrap_or_default();
        let group = entry.get("group").and_then(Value::as_str).unwrap_or_default();
        let tags = entry.get("tags").and_then(Value::as_array).cloned().unwrap_or_default();
        let slot = find(&mut nodes, driver).and_then(|at| {
            nodes[at]
                .get_mut("groups")
                .and_then(Value::as_array_mut)
                .and_then(|groups| groups.iter_mut().find(|g| g["group"] == group))
        });
        match slot {
            Some(target) => target["tags"] = Value::Array(tags),
            None => problems.push(Problem::new(
                format!("tags[{i}]"),
                format!("group `{group}` of driver `{driver}` is not in groups"),
            )),
        }
    }
    let subscriptions = subscriptions_of(object, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(json!({"nodes": nodes, "subscriptions": subscriptions}))
}

fn array<'a>(object: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    object.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Checks a normalized document as Neuron will. With `placeholders_allowed`, a number field may
/// still hold `${name}` (checked again after rendering).
pub fn check(normalized: &Value, placeholders_allowed: bool) -> Result<DriverDocument, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut nodes = Vec::new();
    let mut names = BTreeSet::new();
    let number = |value: Option<&Value>| -> Option<u64> {
        match value {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) if placeholders_allowed && is_placeholder(s) => Some(u64::MAX),
            _ => None,
        }
    };
    let raw_nodes = normalized.get("nodes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if raw_nodes.is_empty() {
        problems.push(Problem::new("nodes", "the document has no nodes to deliver"));
    }
    for (i, node) in raw_nodes.iter().enumerate() {
        let path = format!("nodes[{i}]");
        let name = node.get("name").and_then(Value::as_str).unwrap_or_default();
        let plugin = node.get("plugin").and_then(Value::as_str).unwrap_or_default();
        let label = if name.is_empty() { path.clone() } else { format!("{path} (node {name})") };
        check_name(&label, "node name", name, &mut problems);
        if plugin.is_empty() {
            problems.push(Problem::new(
                label.clone(),
                "needs `plugin`, the driver plugin's module name (e.g. \"Modbus TCP\")",
            ));
        }
        if !names.insert(name.to_owned()) {
            problems.push(Problem::new(label.clone(), format!("node `{name}` appears twice")));
        }
        let params = node.get("params").filter(|p| !p.is_null()).cloned();
        if params.as_ref().is_some_and(|p| !p.is_object()) {
            problems.push(Problem::new(format!("{label}.params"), "must be an object of setting -> value"));
        }
        let mut groups = Vec::new();
        let mut group_names = BTreeSet::new();
        for (j, group) in node.get("groups").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let group_name = group.get("group").and_then(Value::as_str).unwrap_or_default();
            let gpath = format!("{label}.groups[{j}] (group {group_name})");
            check_name(&gpath, "group name", group_name, &mut problems);
            if !group_names.insert(group_name.to_owned()) {
                problems
                    .push(Problem::new(gpath.clone(), format!("group `{group_name}` appears twice in node `{name}`")));
            }
            let interval = match number(group.get("interval")) {
                Some(ms) if ms >= MIN_INTERVAL_MS => ms,
                Some(ms) => {
                    problems.push(Problem::new(
                        format!("{gpath}.interval"),
                        format!("{ms} ms is below Neuron's minimum of {MIN_INTERVAL_MS} ms"),
                    ));
                    ms
                }
                None => {
                    problems
                        .push(Problem::new(format!("{gpath}.interval"), "needs the polling interval in milliseconds"));
                    0
                }
            };
            let tags = group.get("tags").and_then(Value::as_array).cloned().unwrap_or_default();
            check_tags(&gpath, &tags, placeholders_allowed, &mut problems);
            groups.push(DriverGroup { name: group_name.to_owned(), interval, tags });
        }
        nodes.push(DriverNode { name: name.to_owned(), plugin: plugin.to_owned(), params, groups });
    }
    let mut subscriptions = Vec::new();
    for (i, sub) in normalized.get("subscriptions").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let text = |key: &str| sub.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (app, driver, group) = (text("app"), text("driver"), text("group"));
        if app.is_empty() || driver.is_empty() || group.is_empty() {
            problems.push(Problem::new(format!("subscriptions[{i}]"), "needs `app`, `driver` and `group`"));
        }
        subscriptions.push(Subscription { app, driver, group, params: sub.get("params").cloned() });
    }
    if problems.is_empty() { Ok(DriverDocument { nodes, subscriptions }) } else { Err(problems) }
}

fn check_name(path: &str, what: &str, name: &str, problems: &mut Vec<Problem>) {
    if name.is_empty() {
        problems.push(Problem::new(path, format!("needs a {what}")));
    } else if name.len() > NAME_MAX {
        problems.push(Problem::new(path, format!("{what} is {} bytes; Neuron allows {NAME_MAX}", name.len())));
    }
}

/// Neuron's tag type codes (`include/neuron/type.h`).
pub fn tag_type_name(code: u64) -> Option<&'static str> {
    const NAMES: [&str; 34] = [
        "INT8",
        "UINT8",
        "INT16",
        "UINT16",
        "INT32",
        "UINT32",
        "INT64",
        "UINT64",
        "FLOAT",
        "DOUBLE",
        "BIT",
        "BOOL",
        "STRING",
        "BYTES",
        "ERROR",
        "WORD",
        "DWORD",
        "LWORD",
        "PTR",
        "TIME",
        "DATA_AND_TIME",
        "ARRAY_CHAR",
        "ARRAY_INT8",
        "ARRAY_UINT8",
        "ARRAY_INT16",
        "ARRAY_UINT16",
        "ARRAY_INT32",
        "ARRAY_UINT32",
        "ARRAY_INT64",
        "ARRAY_UINT64",
        "ARRAY_FLOAT",
        "ARRAY_DOUBLE",
        "ARRAY_BOOL",
        "ARRAY_STRING",
    ];
    match code {
        1..=34 => Some(NAMES[(code - 1) as usize]),
        40 => Some("JSON"),
        _ => None,
    }
}

fn check_tags(gpath: &str, tags: &[Value], placeholders_allowed: bool, problems: &mut Vec<Problem>) {
    let mut seen = BTreeSet::new();
    for (k, tag) in tags.iter().enumerate() {
        let name = tag.get("name").and_then(Value::as_str).unwrap_or_default();
        let path = format!("{gpath}.tags[{k}] (tag {name})");
        check_name(&path, "tag name", name, problems);
        if !seen.insert(name.to_owned()) {
            problems.push(Problem::new(path.clone(), format!("tag `{name}` appears twice in the group")));
        }
        let held =
            |key: &str| tag.get(key).and_then(Value::as_str).is_some_and(|s| placeholders_allowed && is_placeholder(s));
        match tag.get("type").and_then(Value::as_u64) {
            Some(code) if tag_type_name(code).is_some() => {}
            Some(code) => problems
                .push(Problem::new(path.clone(), format!("unknown tag type code {code} (Neuron knows 1-34 and 40)"))),
            None if held("type") => {}
            None => problems.push(Problem::new(path.clone(), "needs `type`, a Neuron tag type code such as 3 (INT16)")),
        }
        let attribute = tag.get("attribute").and_then(Value::as_u64);
        match attribute {
            Some(a) if (1..=15).contains(&a) => {}
            Some(a) => problems.push(Problem::new(
                path.clone(),
                format!("attribute {a} is not a combination of READ 1, WRITE 2, SUBSCRIBE 4, STATIC 8"),
            )),
            None if held("attribute") => {}
            None => {
                problems.push(Problem::new(path.clone(), "needs `attribute` (READ 1, WRITE 2, SUBSCRIBE 4, STATIC 8)"))
            }
        }
        let is_static = attribute.is_some_and(|a| a & 8 != 0);
        if is_static && tag.get("value").is_none() {
            problems.push(Problem::new(path.clone(), "a static tag (attribute 8) needs a `value`"));
        }
        if !is_static && tag.get("address").and_then(Value::as_str).is_none_or(str::is_empty) {
            problems.push(Problem::new(path.clone(), "needs an `address`"));
        }
        if let Some(p) = tag.get("precision").and_then(Value::as_u64)
            && p > 17
        {
            problems.push(Problem::new(path.clone(), format!("precision {p} is above Neuron's maximum of 17")));
        }
    }
}

fn is_placeholder(text: &str) -> bool {
    text.starts_with("${") && text.ends_with('}')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn template_shape_is_folded_into_nodes() {
        let template = json!({
            "nodes": [{"plugin": "Modbus TCP", "name": "m1"}, {"plugin": "MQTT", "name": "up"}],
            "groups": [{"driver": "m1", "group": "g1", "interval": 1000, "tag_count": 1}],
            "tags": [{"driver": "m1", "group": "g1", "tags": [{"name": "t1", "address": "1!400001", "attribute": 1, "type": 3}]}],
            "subscriptions": [{"app": "up", "groups": [{"driver": "m1", "group": "g1"}]}],
            "settings": [{"node": "m1", "params": {"host": "h", "port": 502}}]
        });
        let normalized = normalize(&template).expect("normalizes");
        let doc = check(&normalized, false).expect("valid");
        assert_eq!(doc.nodes[0].groups[0].tags.len(), 1);
        assert_eq!(doc.nodes[0].params, Some(json!({"host": "h", "port": 502})));
        assert_eq!(
            doc.subscriptions[0],
            Subscription { app: "up".into(), driver: "m1".into(), group: "g1".into(), params: None }
        );
    }

    #[test]
    fn problems_name_the_node_group_and_tag() {
        let doc = json!({"nodes": [{"name": "m1", "plugin": "Modbus TCP", "groups": [{"group": "g1", "interval": 50, "tags": [
            {"name": "t1", "address": "1!400001", "attribute": 1, "type": 99},
            {"name": "t1", "address": "", "attribute": 1, "type": 3}
        ]}]}]});
        let problems = check(&normalize(&doc).expect("shape"), false).expect_err("invalid");
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "nodes[0] (node m1).groups[0] (group g1).interval: 50 ms is below Neuron's minimum of 100 ms",
                "nodes[0] (node m1).groups[0] (group g1).tags[0] (tag t1): unknown tag type code 99 (Neuron knows 1-34 and 40)",
                "nodes[0] (node m1).groups[0] (group g1).tags[1] (tag t1): tag `t1` appears twice in the group",
                "nodes[0] (node m1).groups[0] (group g1).tags[1] (tag t1): needs an `address`",
            ]
        );
    }

    #[test]
    fn placeholders_may_stand_for_numbers_until_rendered() {
        let doc = json!({"nodes": [{"name": "m1", "plugin": "Modbus TCP", "groups": [{"group": "g1", "interval": "${poll}", "tags": []}]}]});
        let normalized = normalize(&doc).expect("shape");
        assert!(check(&normalized, true).is_ok());
        assert!(check(&normalized, false).is_err());
    }
}
