//! Drift: whether an edge still holds what edgefleet last delivered to it, and the way back from
//! normal forms (what is kept per edge and what is read back) to template documents, for re-applying
//! them and for templates taken from a live gateway.
//!
//! What is kept of a delivered object is its normal form (`plan::desired`), so the check is the
//! plan's comparison: equal normal forms mean the edge holds what was delivered.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::params::MASK;
use crate::patch;
use crate::plan::{ObjectRef, SnapshotEntry, tags_shape};
use crate::secrets::{is_secret_key, mask_credentials};

crate::wire_enum! {
    /// Whether an edge holds what was last delivered to it.
    pub enum ConfigState ("config state") {
        /// Every object delivered is there as it was delivered.
        InSync = "in_sync",
        /// At least one delivered object was changed or deleted on the edge.
        Drifted = "drifted",
        /// The last check could not read the edge.
        Unknown = "unknown",
        /// Nothing was ever delivered to it.
        None = "none",
    }
}

crate::wire_enum! {
    /// What the inventory lists per edge.
    pub enum InventoryKind ("inventory kind") {
        Rule = "rule",
        Stream = "stream",
        Table = "table",
        /// A Neuron node: a southbound driver or a northbound app.
        Node = "node",
        /// A portable plugin.
        Plugin = "plugin",
    }
}

/// The JSON Patch (RFC 6902) from what was delivered to what the edge holds: empty when they are
/// the same; one `remove` of the whole document when the object is gone. Values under credential
/// keys are masked, so a changed password shows as changed without showing either password.
pub fn drift_patch(expected: &Value, live: Option<&Value>) -> Vec<Value> {
    match live {
        None => vec![json!({"op": "remove", "path": ""})],
        Some(live) if live == expected => Vec::new(),
        Some(live) => patch::diff(expected, live).into_iter().map(masked_op).collect(),
    }
}

/// One patch operation with its value masked when its path ends in a credential key, and with
/// credentials inside an added object masked.
fn masked_op(mut op: Value) -> Value {
    let secret_path = op
        .get("path")
        .and_then(Value::as_str)
        .and_then(|path| path.rsplit('/').next())
        .is_some_and(|last| is_secret_key(&last.replace("~1", "/").replace("~0", "~")));
    if let Some(value) = op.get_mut("value") {
        *value = if secret_path { Value::from(MASK) } else { mask_credentials(value) };
    }
    op
}

/// What a successful rollback left, object by object, as the normal forms a check compares: a
/// snapshot's node entry holds the whole node, which is its node, group and tags objects (and the
/// subscriptions to it). `None`: the object is absent.
pub fn restored_objects(snapshot: &[SnapshotEntry]) -> Vec<(ObjectRef, Option<Value>)> {
    let mut objects = Vec::new();
    for entry in snapshot {
        let (ObjectRef::Node { name }, Some(node)) = (&entry.object, &entry.live) else {
            objects.push((entry.object.clone(), entry.live.clone()));
            continue;
        };
        let plugin_and_params = json!({"plugin": node["plugin"], "params": node["params"]});
        objects.push((entry.object.clone(), Some(plugin_and_params)));
        for group in node["groups"].as_array().into_iter().flatten() {
            let group_name = group["name"].as_str().unwrap_or_default().to_owned();
            let tags = group["tags"].as_array().cloned().unwrap_or_default();
            objects.push((
                ObjectRef::Group { node: name.clone(), group: group_name.clone() },
                Some(json!({"interval": group["interval"]})),
            ));
            objects.push((ObjectRef::Tags { node: name.clone(), group: group_name }, Some(tags_shape(&tags))));
        }
    }
    objects
}

/// Template documents holding `objects` (normal forms): a rule document `{streams, tables,
/// rules}` and a driver document `{nodes, subscriptions}`, each only when some object is of its
/// kind. Groups and tags go under their node (a group without its node is left out: a driver
/// document creates nodes whole); plugins are not template content and are left out.
pub fn documents_of(objects: &[(ObjectRef, Value)]) -> Documents {
    let mut rules = RuleParts::default();
    let mut nodes: BTreeMap<String, NodeParts> = BTreeMap::new();
    let mut subscriptions = Vec::new();
    for (object, shape) in objects {
        match object {
            ObjectRef::Stream { name } => {
                rules.streams.insert(name.clone(), crate::plan::stream_statement("STREAM", name, shape).into());
            }
            ObjectRef::Table { name } => {
                rules.tables.insert(name.clone(), crate::plan::stream_statement("TABLE", name, shape).into());
            }
            ObjectRef::Rule { id } => {
                rules.rules.insert(id.clone(), shape.clone());
            }
            ObjectRef::Node { name } => nodes.entry(name.clone()).or_default().node = Some(shape.clone()),
            ObjectRef::Group { node, group } => {
                nodes.entry(node.clone()).or_default().group(group).interval = shape.get("interval").cloned();
            }
            ObjectRef::Tags { node, group } => {
                nodes.entry(node.clone()).or_default().group(group).tags = tags_of_shape(shape);
            }
            ObjectRef::Subscription { app, driver, group } => {
                let mut sub = json!({"app": app, "driver": driver, "group": group});
                if let Some(params) = shape.get("params").filter(|p| !p.is_null()) {
                    sub["params"] = params.clone();
                }
                subscriptions.push(sub);
            }
            ObjectRef::Plugin { .. } => {}
        }
    }
    let rule =
        (!rules.is_empty()).then(|| json!({"streams": rules.streams, "tables": rules.tables, "rules": rules.rules}));
    let driver_nodes: Vec<Value> = nodes.into_iter().filter_map(|(name, parts)| parts.document(&name)).collect();
    let driver = (!driver_nodes.is_empty() || !subscriptions.is_empty())
        .then(|| json!({"nodes": driver_nodes, "subscriptions": subscriptions}));
    Documents { rule, driver }
}

/// A rule document and a driver document, as `documents_of` builds them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Documents {
    pub rule: Option<Value>,
    pub driver: Option<Value>,
}

#[derive(Default)]
struct RuleParts {
    streams: Map<String, Value>,
    tables: Map<String, Value>,
    rules: Map<String, Value>,
}

impl RuleParts {
    fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.tables.is_empty() && self.rules.is_empty()
    }
}

#[derive(Default)]
struct NodeParts {
    node: Option<Value>,
    groups: BTreeMap<String, GroupParts>,
}

#[derive(Default)]
struct GroupParts {
    interval: Option<Value>,
    tags: Vec<Value>,
}

impl NodeParts {
    fn group(&mut self, name: &str) -> &mut GroupParts {
        self.groups.entry(name.to_owned()).or_default()
    }

    /// Neuron's bulk shape of one node; `None` without the node itself.
    fn document(self, name: &str) -> Option<Value> {
        let node = self.node?;
        let groups: Vec<Value> = self
            .groups
            .into_iter()
            .map(|(group, parts)| {
                json!({"group": group, "interval": parts.interval.unwrap_or(Value::from(1000)), "tags": parts.tags})
            })
            .collect();
        let mut document = json!({"name": name, "plugin": node["plugin"], "groups": groups});
        if let Some(params) = node.get("params").filter(|p| !p.is_null()) {
            document["params"] = params.clone();
        }
        Some(document)
    }
}

/// Tags back from `{tags: {name: tag}}`, each with its name.
fn tags_of_shape(shape: &Value) -> Vec<Value> {
    shape
        .get("tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, tag)| {
            let mut tag = tag.as_object().cloned().unwrap_or_default();
            tag.insert("name".into(), Value::from(name.clone()));
            Value::Object(tag)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::desired;
    use crate::template::{self, TemplateKind};

    fn document(kind: TemplateKind, content: Value) -> template::Document {
        let checked = template::check_content(kind, &content).expect("valid");
        template::load(kind, &checked.normalized).expect("loads")
    }

    #[test]
    fn a_rule_document_round_trips_through_its_normal_forms() {
        let original = document(
            TemplateKind::Rule,
            json!({
                "streams": {"s1": "CREATE STREAM s1 (temp float) WITH (DATASOURCE=\"t/1\", FORMAT=\"json\", SHARED=\"true\")"},
                "tables": {},
                "rules": {"r1": {"id": "r1", "sql": "SELECT temp FROM s1", "actions": [{"log": {}}], "triggered": false}},
            }),
        );
        let objects = desired(&original);
        let rebuilt = documents_of(&objects).rule.expect("a rule document");
        assert_eq!(desired(&document(TemplateKind::Rule, rebuilt)), objects);
    }

    #[test]
    fn a_driver_document_round_trips_through_its_normal_forms() {
        let original = document(
            TemplateKind::Driver,
            json!({
                "nodes": [{"name": "plc", "plugin": "Modbus TCP", "params": {"host": "10.0.0.1", "port": 502},
                           "groups": [{"group": "fast", "interval": 100,
                                       "tags": [{"name": "t1", "address": "1!400001", "attribute": 1, "type": 3, "precision": 0}]}]}],
                "subscriptions": [{"app": "mqtt", "driver": "plc", "group": "fast"}],
            }),
        );
        let objects = desired(&original);
        let rebuilt = documents_of(&objects).driver.expect("a driver document");
        assert_eq!(desired(&document(TemplateKind::Driver, rebuilt)), objects);
        assert_eq!(documents_of(&objects).rule, None);
    }

    #[test]
    fn a_patch_goes_from_delivered_to_live_and_masks_credentials() {
        let expected = json!({"params": {"host": "a", "password": "old"}});
        let live = json!({"params": {"host": "b", "password": "new"}});
        let patch = drift_patch(&expected, Some(&live));
        assert!(patch.contains(&json!({"op": "replace", "path": "/params/host", "value": "b"})), "{patch:?}");
        assert!(patch.contains(&json!({"op": "replace", "path": "/params/password", "value": MASK})), "{patch:?}");
        assert_eq!(drift_patch(&expected, None), [json!({"op": "remove", "path": ""})]);
        assert!(drift_patch(&expected, Some(&expected)).is_empty());
    }

    #[test]
    fn a_restored_node_is_its_node_group_and_tags_objects() {
        let node = json!({"plugin": "Modbus TCP", "params": {"port": 502},
                          "groups": [{"name": "g", "interval": 500, "tags": [{"name": "t", "type": 3, "precision": 0}]}],
                          "subscriptions": []});
        let restored =
            restored_objects(&[SnapshotEntry { object: ObjectRef::Node { name: "plc".into() }, live: Some(node) }]);
        assert_eq!(
            restored,
            [
                (
                    ObjectRef::Node { name: "plc".into() },
                    Some(json!({"plugin": "Modbus TCP", "params": {"port": 502}}))
                ),
                (ObjectRef::Group { node: "plc".into(), group: "g".into() }, Some(json!({"interval": 500}))),
                (ObjectRef::Tags { node: "plc".into(), group: "g".into() }, Some(json!({"tags": {"t": {"type": 3}}}))),
            ]
        );
    }

    #[test]
    fn states_and_kinds_parse() {
        assert_eq!("in_sync".parse(), Ok(ConfigState::InSync));
        assert!("synced".parse::<ConfigState>().is_err());
        assert_eq!("plugin".parse(), Ok(InventoryKind::Plugin));
    }
}
