//! Plans: what a delivery would change on one edge, object by object, and the normal form in which
//! what NeuronEX reports and what edgefleet sends compare equal when they mean the same.
//!
//! The edge client reads objects back (`edge_client::Edge::read_object`) and brings them to these
//! shapes with the `*_of_*` functions here; the desired side comes from the rendered document.
//! Normal forms, per object:
//! - stream/table: `{fields: [[name, type]], options: {lowercase key: value}}`, from the CREATE
//!   statement or from eKuiper's detail (which has no statement text);
//! - rule: the definition without `triggered`, plus `triggered` = whether it runs (from its status
//!   on the edge, from `triggered` in the template);
//! - node: `{plugin, params}`; group: `{interval}`; tags: `{tags: {name: tag}}` with Neuron's
//!   defaults (precision 0, decimal 0, bias 0, empty description and unit) left out;
//! - subscription: `{params}`; plugin: `{version}`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::delivery::OnConflict;
use crate::patch;
use crate::secrets::mask_credentials;
use crate::template::Document;

/// One object a delivery touches, as a plan, a snapshot and a restore name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectRef {
    Stream { name: String },
    Table { name: String },
    Rule { id: String },
    Node { name: String },
    Group { node: String, group: String },
    Tags { node: String, group: String },
    Subscription { app: String, driver: String, group: String },
    Plugin { name: String },
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectRef::Stream { name } => write!(f, "stream {name}"),
            ObjectRef::Table { name } => write!(f, "table {name}"),
            ObjectRef::Rule { id } => write!(f, "rule {id}"),
            ObjectRef::Node { name } => write!(f, "node {name}"),
            ObjectRef::Group { node, group } => write!(f, "group {node}/{group}"),
            ObjectRef::Tags { node, group } => write!(f, "tags {node}/{group}"),
            ObjectRef::Subscription { app, driver, group } => write!(f, "subscription {app}/{driver}/{group}"),
            ObjectRef::Plugin { name } => write!(f, "plugin {name}"),
        }
    }
}

crate::wire_enum! {
    /// What applying would do to one object.
    pub enum ChangeAction ("change action") {
        /// Absent on the edge: it would be created.
        Create = "create",
        /// Present and different: it would be replaced.
        Update = "update",
        /// Present and the same: nothing to do.
        Unchanged = "unchanged",
        /// Present and different, and `on_conflict` is `skip` or `fail`: it would be left, or fail.
        Conflict = "conflict",
        /// The edge cannot take it (too old, or it holds a newer version).
        Incompatible = "incompatible",
    }
}

/// One object's planned change: the JSON Patch (RFC 6902) from what the edge holds to what would
/// be sent, secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Change {
    /// `rule r1`, `group plc/fast`: the object's name as people read it.
    pub object: String,
    #[serde(rename = "ref")]
    pub object_ref: ObjectRef,
    pub action: ChangeAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<Value>,
    /// Why it is `incompatible`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One object as an edge held it before a delivery wrote: `live` is `None` when it was absent. A
/// node's `live` is the whole node (`{plugin, params, groups: [{name, interval, tags}],
/// subscriptions: [{app, group, params}]}`), since replacing it drops its other groups and the
/// subscriptions of apps the template does not name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotEntry {
    #[serde(rename = "ref")]
    pub object: ObjectRef,
    pub live: Option<Value>,
}

/// The entries of `expected` that `now` does not hold as they are: what differs, in the order of
/// `expected`.
pub fn differing<'a>(expected: &'a [SnapshotEntry], now: &[SnapshotEntry]) -> Vec<&'a SnapshotEntry> {
    expected.iter().filter(|entry| !now.contains(entry)).collect()
}

impl SnapshotEntry {
    /// Objects and what was read of each, in the same order, as entries.
    pub fn pair(objects: impl IntoIterator<Item = ObjectRef>, live: Vec<Option<Value>>) -> Vec<SnapshotEntry> {
        objects.into_iter().zip(live).map(|(object, live)| SnapshotEntry { object, live }).collect()
    }
}

/// What `document` would leave on an edge, object by object, in the order a delivery applies them.
/// eKuiper configuration sections (`sourceConfig`, ...) are imported, not compared, and are not
/// listed.
pub fn desired(document: &Document) -> Vec<(ObjectRef, Value)> {
    match document {
        Document::Rule(doc) => {
            let streams =
                doc.streams.iter().map(|(name, sql)| (ObjectRef::Stream { name: name.clone() }, stream_shape(sql)));
            let tables =
                doc.tables.iter().map(|(name, sql)| (ObjectRef::Table { name: name.clone() }, stream_shape(sql)));
            let rules = doc
                .rules
                .iter()
                .map(|rule| (ObjectRef::Rule { id: rule.id.clone() }, rule_shape(&rule.definition, rule.starts())));
            streams.chain(tables).chain(rules).collect()
        }
        Document::Driver(doc) => {
            let mut objects = Vec::new();
            for node in &doc.nodes {
                let plugin_and_params =
                    json!({"plugin": node.plugin, "params": node.params.clone().unwrap_or(Value::Null)});
                objects.push((ObjectRef::Node { name: node.name.clone() }, plugin_and_params));
                for group in &node.groups {
                    let (node, name) = (node.name.clone(), group.name.clone());
                    objects.push((
                        ObjectRef::Group { node: node.clone(), group: name.clone() },
                        json!({"interval": group.interval}),
                    ));
                    objects.push((ObjectRef::Tags { node, group: name }, tags_shape(&group.tags)));
                }
            }
            for sub in &doc.subscriptions {
                let object = ObjectRef::Subscription {
                    app: sub.app.clone(),
                    driver: sub.driver.clone(),
                    group: sub.group.clone(),
                };
                objects.push((object, json!({"params": sub.params.clone().unwrap_or(Value::Null)})));
            }
            objects
        }
    }
}

/// The desired state of a portable plugin.
pub fn plugin_shape(version: &str) -> Value {
    json!({"version": version})
}

/// Compares one object; `live` is `None` when the edge does not have it.
pub fn compare(object: &ObjectRef, desired: &Value, live: Option<&Value>, on_conflict: OnConflict) -> Change {
    let (action, diff) = match live {
        None => (ChangeAction::Create, vec![json!({"op": "add", "path": "", "value": mask_credentials(desired)})]),
        Some(live) if live == desired => (ChangeAction::Unchanged, Vec::new()),
        Some(live) => {
            let action =
                if on_conflict == OnConflict::Overwrite { ChangeAction::Update } else { ChangeAction::Conflict };
            (action, patch::diff(live, desired))
        }
    };
    Change { object: object.to_string(), object_ref: object.clone(), action, diff, reason: String::new() }
}

/// An object the edge cannot take, with the reason.
pub fn incompatible(object: &ObjectRef, reason: impl Into<String>) -> Change {
    Change {
        object: object.to_string(),
        object_ref: object.clone(),
        action: ChangeAction::Incompatible,
        diff: Vec::new(),
        reason: reason.into(),
    }
}

/// `{fields: [[name, type]], options: {key: value}}` of a `CREATE STREAM|TABLE` statement: option
/// keys lower-cased as eKuiper's detail names them, `SHARED` and `STRICT_VALIDATION` as booleans,
/// `RETAIN_SIZE` as a number; field types lower-cased.
pub fn stream_shape(sql: &str) -> Value {
    static CREATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?is)^\s*create\s+(?:stream|table)\s+`?[A-Za-z_][A-Za-z0-9_]*`?\s*\((.*?)\)\s*with\s*\((.*)\)\s*;?\s*$",
        )
        .expect("static regex")
    });
    static OPTION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"([A-Za-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)""#).expect("static regex"));
    let Some(caps) = CREATE.captures(sql) else {
        return json!({"statement": sql});
    };
    let fields: Vec<Value> = caps[1]
        .split(',')
        .filter_map(|field| {
            let mut words = field.split_whitespace();
            let name = words.next()?.trim_matches('`');
            let kind = words.collect::<Vec<_>>().join(" ").to_lowercase();
            Some(json!([name, kind]))
        })
        .collect();
    let options: Map<String, Value> =
        OPTION.captures_iter(&caps[2]).map(|c| (c[1].to_lowercase(), option_value(&c[1], &c[2]))).collect();
    json!({"fields": fields, "options": options})
}

/// The same shape from eKuiper's `GET /streams/{name}` (or `/tables/{name}`) answer.
pub fn stream_shape_of_detail(detail: &Value) -> Value {
    let fields: Vec<Value> = detail
        .get("StreamFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|field| {
            let name = field.get("Name").cloned().unwrap_or(Value::Null);
            let kind = match field.get("FieldType") {
                Some(Value::String(kind)) => Value::from(kind.to_lowercase()),
                Some(other) => other.clone(),
                None => Value::Null,
            };
            json!([name, kind])
        })
        .collect();
    let options: Map<String, Value> = detail
        .get("Options")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, value)| !is_unset(value))
        .map(|(key, value)| (key.to_lowercase(), value.clone()))
        .collect();
    json!({"fields": fields, "options": options})
}

/// An option eKuiper's detail lists at its zero value means the same as an option not given.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        _ => false,
    }
}

/// A `CREATE` statement holding `shape`: how a snapshot of a stream or table is put back.
pub fn stream_statement(keyword: &str, name: &str, shape: &Value) -> String {
    if let Some(statement) = shape.get("statement").and_then(Value::as_str) {
        return statement.to_owned();
    }
    let fields: Vec<String> = shape
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|field| Some(format!("{} {}", field.get(0)?.as_str()?, field.get(1)?.as_str()?)))
        .collect();
    let options: Vec<String> = shape
        .get("options")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.replace('\\', "\\\\").replace('"', "\\\""),
                other => other.to_string(),
            };
            format!("{}=\"{text}\"", key.to_uppercase())
        })
        .collect();
    format!("CREATE {keyword} {name} ({}) WITH ({})", fields.join(", "), options.join(", "))
}

fn option_value(key: &str, value: &str) -> Value {
    match key.to_uppercase().as_str() {
        "SHARED" | "STRICT_VALIDATION" => Value::Bool(value.eq_ignore_ascii_case("true")),
        "RETAIN_SIZE" => value.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(value)),
        _ => Value::from(value),
    }
}

/// A rule's normal form: its definition without `triggered`, then `triggered` as whether it runs.
pub fn rule_shape(definition: &Value, runs: bool) -> Value {
    let mut shape = definition.as_object().cloned().unwrap_or_default();
    shape.remove("triggered");
    shape.insert("triggered".into(), Value::Bool(runs));
    Value::Object(shape)
}

/// A group's tags by name, each without the fields Neuron fills in with defaults when listing.
pub fn tags_shape(tags: &[Value]) -> Value {
    let by_name: BTreeMap<String, Value> = tags
        .iter()
        .map(|tag| (tag.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(), tag_shape(tag)))
        .collect();
    json!({"tags": by_name})
}

/// One tag without `name` (the key) and without Neuron's defaults: precision 0, decimal and bias
/// 0, empty description and unit.
pub fn tag_shape(tag: &Value) -> Value {
    let mut shape = tag.as_object().cloned().unwrap_or_default();
    shape.remove("name");
    let is_default = |key: &str, value: &Value| match key {
        "precision" | "decimal" | "bias" => value.as_f64() == Some(0.0),
        "description" | "unit" => value.as_str() == Some(""),
        _ => false,
    };
    shape.retain(|key, value| !is_default(key, value));
    Value::Object(shape)
}

/// Plan totals: objects by action across targets, and targets that could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanSummary {
    pub create: u64,
    pub update: u64,
    pub unchanged: u64,
    pub conflict: u64,
    pub incompatible: u64,
    pub unreachable: u64,
}

/// Targets with the same change set, read once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanGroup {
    pub targets: u64,
    /// The first 20 of them.
    pub edge_ids: Vec<String>,
    /// Their names, in the same order.
    pub names: Vec<String>,
    pub changes: Vec<Change>,
}

/// Targets that could not be planned, grouped by reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnreachableGroup {
    pub reason: String,
    pub targets: u64,
    pub edge_ids: Vec<String>,
    pub names: Vec<String>,
}

const GROUP_EDGE_IDS: usize = 20;

/// Groups planned targets by identical change sets (largest group first) and counts everything.
pub fn summarize<'a>(
    targets: impl IntoIterator<Item = (&'a str, &'a str, Result<&'a [Change], &'a str>)>,
) -> (PlanSummary, Vec<PlanGroup>, Vec<UnreachableGroup>) {
    let mut summarizer = Summarizer::default();
    for (edge_id, name, outcome) in targets {
        summarizer.add(edge_id, name, outcome);
    }
    summarizer.finish()
}

/// [`summarize`] a target at a time, so a large plan is read in pages and never held whole.
#[derive(Debug, Default)]
pub struct Summarizer {
    summary: PlanSummary,
    groups: Vec<PlanGroup>,
    /// Change set (as JSON) -> its group.
    index: BTreeMap<String, usize>,
    unreachable: Vec<UnreachableGroup>,
}

impl Summarizer {
    /// One target (`edge_id`, `name`): its changes, or why it could not be read.
    pub fn add(&mut self, edge_id: &str, name: &str, outcome: Result<&[Change], &str>) {
        match outcome {
            Ok(changes) => {
                for change in changes {
                    let slot = match change.action {
                        ChangeAction::Create => &mut self.summary.create,
                        ChangeAction::Update => &mut self.summary.update,
                        ChangeAction::Unchanged => &mut self.summary.unchanged,
                        ChangeAction::Conflict => &mut self.summary.conflict,
                        ChangeAction::Incompatible => &mut self.summary.incompatible,
                    };
                    *slot += 1;
                }
                let key = serde_json::to_string(changes).unwrap_or_default();
                let groups = &mut self.groups;
                let at = *self.index.entry(key).or_insert_with(|| {
                    groups.push(PlanGroup {
                        targets: 0,
                        edge_ids: Vec::new(),
                        names: Vec::new(),
                        changes: changes.to_vec(),
                    });
                    groups.len() - 1
                });
                let group = &mut self.groups[at];
                add_member(&mut group.targets, &mut group.edge_ids, &mut group.names, (edge_id, name));
            }
            Err(reason) => {
                let reason = without_tries(reason);
                self.summary.unreachable += 1;
                let at = match self.unreachable.iter().position(|g| g.reason == reason) {
                    Some(at) => at,
                    None => {
                        self.unreachable.push(UnreachableGroup {
                            reason: reason.to_owned(),
                            targets: 0,
                            edge_ids: Vec::new(),
                            names: Vec::new(),
                        });
                        self.unreachable.len() - 1
                    }
                };
                let group = &mut self.unreachable[at];
                add_member(&mut group.targets, &mut group.edge_ids, &mut group.names, (edge_id, name));
            }
        }
    }

    pub fn finish(mut self) -> (PlanSummary, Vec<PlanGroup>, Vec<UnreachableGroup>) {
        self.groups.sort_by_key(|g| std::cmp::Reverse(g.targets));
        self.unreachable.sort_by_key(|g| std::cmp::Reverse(g.targets));
        (self.summary, self.groups, self.unreachable)
    }
}

/// A reason without its closing `(3 tries in 45.7 s)`: targets that failed the same way differ
/// only in their timings, and are one group.
fn without_tries(reason: &str) -> &str {
    match reason.rfind(" (") {
        Some(at) if reason.ends_with(')') && reason[at..].contains(" in ") && reason[at..].contains("tr") => {
            &reason[..at]
        }
        _ => reason,
    }
}

fn add_member(count: &mut u64, edge_ids: &mut Vec<String>, names: &mut Vec<String>, (edge_id, name): (&str, &str)) {
    *count += 1;
    if edge_ids.len() < GROUP_EDGE_IDS {
        edge_ids.push(edge_id.to_owned());
        names.push(name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_and_ekuipers_detail_of_it_compare_equal() {
        let sql = r#"CREATE STREAM demo (temp FLOAT, id BIGINT) WITH (DATASOURCE="t/#", FORMAT="json", SHARED="true", TYPE="mqtt")"#;
        let detail = json!({"Name": "demo", "Options": {"datasource": "t/#", "format": "json", "shared": true, "type": "mqtt", "strict_validation": false},
            "Statement": null, "StreamFields": [{"FieldType": "float", "Name": "temp"}, {"FieldType": "bigint", "Name": "id"}], "StreamType": 0});
        assert_eq!(stream_shape(sql), stream_shape_of_detail(&detail));
        let rebuilt = stream_statement("STREAM", "demo", &stream_shape(sql));
        assert_eq!(stream_shape(&rebuilt), stream_shape(sql), "{rebuilt}");
        let schemaless = json!({"Name": "d", "Options": {"datasource": "0", "type": "mqtt"}, "Statement": null, "StreamFields": null, "StreamType": 0});
        assert_eq!(
            stream_shape(r#"CREATE STREAM d () WITH (DATASOURCE="0", TYPE="mqtt")"#),
            stream_shape_of_detail(&schemaless)
        );
    }

    #[test]
    fn changes_say_what_would_happen_and_mask_secrets() {
        let object = ObjectRef::Rule { id: "r1".into() };
        let desired =
            rule_shape(&json!({"id": "r1", "sql": "SELECT 1", "actions": [{"mqtt": {"password": "new"}}]}), true);
        let same = compare(&object, &desired, Some(&desired), OnConflict::Overwrite);
        assert_eq!((same.action, same.diff.len()), (ChangeAction::Unchanged, 0));
        let absent = compare(&object, &desired, None, OnConflict::Overwrite);
        assert_eq!(absent.action, ChangeAction::Create);
        assert_eq!(absent.diff[0]["value"]["actions"][0]["mqtt"]["password"], "******");
        let live =
            rule_shape(&json!({"id": "r1", "sql": "SELECT 1", "actions": [{"mqtt": {"password": "old"}}]}), false);
        let changed = compare(&object, &desired, Some(&live), OnConflict::Overwrite);
        assert_eq!(changed.action, ChangeAction::Update);
        assert_eq!(
            changed.diff,
            [
                json!({"op": "replace", "path": "/actions/0/mqtt/password", "value": "******"}),
                json!({"op": "replace", "path": "/triggered", "value": true})
            ]
        );
        assert_eq!(compare(&object, &desired, Some(&live), OnConflict::Skip).action, ChangeAction::Conflict);
        assert_eq!(serde_json::to_value(&changed).expect("json")["object"], "rule r1");
    }

    #[test]
    fn tags_compare_without_neurons_defaults() {
        let sent = [json!({"name": "t", "address": "1!400001", "attribute": 1, "type": 3})];
        let listed = [json!({"type": 3, "name": "t", "attribute": 1, "precision": 0, "decimal": 0.0, "bias": 0.0,
            "address": "1!400001", "description": "", "unit": ""})];
        assert_eq!(tags_shape(&sent), tags_shape(&listed));
    }

    #[test]
    fn targets_with_the_same_changes_are_one_group() {
        let object = ObjectRef::Stream { name: "demo".into() };
        let create = [compare(&object, &json!({}), None, OnConflict::Overwrite)];
        let same = [compare(&object, &json!({}), Some(&json!({})), OnConflict::Overwrite)];
        let targets = [
            ("e1", "one", Ok(&create[..])),
            ("e2", "two", Ok(&same[..])),
            ("e3", "three", Ok(&create[..])),
            ("e4", "four", Err("read version: no answer within 15 s (3 tries in 45.7 s)")),
            ("e5", "five", Err("read version: no answer within 15 s (3 tries in 45.9 s)")),
        ];
        let (summary, groups, unreachable) = summarize(targets);
        assert_eq!(summary, PlanSummary { create: 2, unchanged: 1, unreachable: 2, ..PlanSummary::default() });
        assert_eq!(
            groups.iter().map(|g| (g.targets, g.edge_ids.clone())).collect::<Vec<_>>(),
            [(2, vec!["e1".to_owned(), "e3".to_owned()]), (1, vec!["e2".to_owned()])]
        );
        assert_eq!(
            (unreachable[0].reason.as_str(), unreachable[0].targets),
            ("read version: no answer within 15 s", 2)
        );
    }
}
