//! Reading back what an edge holds, object by object, in `domain::plan`'s normal form: what plans,
//! snapshots and rollbacks compare and put back. An absent object is `None`, never an error.

use std::collections::HashMap;

use domain::plan::{self, ObjectRef};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Edge, EdgeError, Failure, RuleState, StreamKind, encode};

impl Edge<'_> {
    /// What the edge holds for each of `objects`, in their order. Lists that several objects share
    /// (a node's groups, an app's subscriptions, the driver list) are read once.
    pub async fn read_objects(&self, objects: &[ObjectRef]) -> Result<Vec<Option<Value>>, EdgeError> {
        let mut reader = Reader::default();
        let mut found = Vec::with_capacity(objects.len());
        for object in objects {
            found.push(reader.read(self, object).await?);
        }
        Ok(found)
    }

    /// `DELETE /subscribe`: a subscription that is not there is not an error.
    pub async fn unsubscribe(&self, app: &str, driver: &str, group: &str) -> Result<(), EdgeError> {
        let body = json!({"app": app, "driver": driver, "group": group});
        let object = format!("subscription of {app} to {driver}/{group}");
        match self.neuron("unsubscribe", &object, Method::DELETE, "subscribe", Some(&body)).await {
            Err(err) if is_absent(&err) => Ok(()),
            other => other.map(drop),
        }
    }

    /// `GET /subscribe?app=`: `[{driver, group, params}]`; `None` when the app does not exist.
    pub async fn list_subscriptions(&self, app: &str) -> Result<Option<Vec<Value>>, EdgeError> {
        let path = format!("subscribe?app={}", encode(app));
        match self.neuron("list", &format!("subscriptions of {app}"), Method::GET, &path, None).await {
            Ok(value) => Ok(Some(value.get("groups").and_then(Value::as_array).cloned().unwrap_or_default())),
            Err(err) if is_absent(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// The `GET`s [`Edge::read_objects`] makes for `objects` whose paths are known without another
/// answer, in its order, for [`Edge::read_ahead`]: a stream, table or plugin is one read, a rule
/// two (its definition, and its status when it exists); a driver's parts are found through lists.
pub(crate) fn read_paths(objects: &[ObjectRef]) -> Vec<String> {
    let mut paths = Vec::new();
    for object in objects {
        match object {
            ObjectRef::Stream { name } => paths.push(crate::stream_path(StreamKind::Stream, name)),
            ObjectRef::Table { name } => paths.push(crate::stream_path(StreamKind::Table, name)),
            ObjectRef::Rule { id } => paths.extend([crate::rule_path(id), crate::rule_status_path(id)]),
            ObjectRef::Plugin { name } => paths.push(crate::portable_path(name)),
            ObjectRef::Node { .. }
            | ObjectRef::Group { .. }
            | ObjectRef::Tags { .. }
            | ObjectRef::Subscription { .. } => {}
        }
    }
    paths
}

/// Whether an error says the object is not there: eKuiper's 404 or "... is not found", Neuron's
/// node (2003), group (2106) or tag (2201) does not exist, or a subscription that is not (2102).
pub fn is_absent(err: &EdgeError) -> bool {
    err.failure == Failure::Edge
        && (err.status == Some(404)
            || matches!(err.code, Some(2003 | 2106 | 2201 | 2102))
            || err.message.contains("is not found")
            || err.message.ends_with("not found"))
}

#[derive(Default)]
struct Reader {
    /// Drivers by name, with their plugin.
    drivers: Option<HashMap<String, Value>>,
    groups: HashMap<String, Option<Vec<Value>>>,
    subscriptions: HashMap<String, Option<Vec<Value>>>,
}

impl Reader {
    async fn read(&mut self, edge: &Edge<'_>, object: &ObjectRef) -> Result<Option<Value>, EdgeError> {
        match object {
            ObjectRef::Stream { name } => stream(edge, StreamKind::Stream, name).await,
            ObjectRef::Table { name } => stream(edge, StreamKind::Table, name).await,
            ObjectRef::Rule { id } => rule(edge, id).await,
            ObjectRef::Node { name } => self.node(edge, name).await,
            ObjectRef::Group { node, group } => {
                let groups = self.groups(edge, node).await?;
                let found = groups.and_then(|groups| groups.iter().find(|g| g["name"] == group.as_str()).cloned());
                Ok(found.map(|g| json!({"interval": g.get("interval").cloned().unwrap_or(Value::Null)})))
            }
            ObjectRef::Tags { node, group } => match edge.list_tags(node, group).await {
                Ok(tags) => Ok(Some(plan::tags_shape(&tags))),
                Err(err) if is_absent(&err) => Ok(None),
                Err(err) => Err(err),
            },
            ObjectRef::Subscription { app, driver, group } => {
                let listed = match self.subscriptions.get(app) {
                    Some(listed) => listed.clone(),
                    None => {
                        let listed = edge.list_subscriptions(app).await?;
                        self.subscriptions.insert(app.clone(), listed.clone());
                        listed
                    }
                };
                let found = listed
                    .into_iter()
                    .flatten()
                    .find(|s| s["driver"] == driver.as_str() && s["group"] == group.as_str());
                Ok(found.map(|s| json!({"params": s.get("params").cloned().unwrap_or(Value::Null)})))
            }
            ObjectRef::Plugin { name } => Ok(edge.get_portable(name).await?.map(|described| {
                plan::plugin_shape(described.get("version").and_then(Value::as_str).unwrap_or_default())
            })),
        }
    }

    async fn node(&mut self, edge: &Edge<'_>, name: &str) -> Result<Option<Value>, EdgeError> {
        if self.drivers.is_none() {
            let listed = edge.list_nodes(1).await?;
            let by_name = listed
                .into_iter()
                .filter_map(|node| {
                    Some((node.get("name")?.as_str()?.to_owned(), node.get("plugin").cloned().unwrap_or(Value::Null)))
                })
                .collect();
            self.drivers = Some(by_name);
        }
        let Some(plugin) = self.drivers.as_ref().and_then(|drivers| drivers.get(name)).cloned() else {
            return Ok(None);
        };
        let params = edge.node_setting(name).await?.unwrap_or(Value::Null);
        Ok(Some(json!({"plugin": plugin, "params": params})))
    }

    async fn groups(&mut self, edge: &Edge<'_>, node: &str) -> Result<Option<Vec<Value>>, EdgeError> {
        if let Some(groups) = self.groups.get(node) {
            return Ok(groups.clone());
        }
        let groups = match edge.list_groups(node).await {
            Ok(groups) => Some(groups),
            Err(err) if is_absent(&err) => None,
            Err(err) => return Err(err),
        };
        self.groups.insert(node.to_owned(), groups.clone());
        Ok(groups)
    }
}

async fn stream(edge: &Edge<'_>, kind: StreamKind, name: &str) -> Result<Option<Value>, EdgeError> {
    match edge.describe_stream(kind, name).await {
        Ok(detail) => Ok(Some(plan::stream_shape_of_detail(&detail))),
        Err(err) if is_absent(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

async fn rule(edge: &Edge<'_>, id: &str) -> Result<Option<Value>, EdgeError> {
    let definition = match edge.get_rule(id).await {
        Ok(definition) => definition,
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    let runs = edge.rule_status(id).await?.state() == RuleState::Running;
    Ok(Some(plan::rule_shape(&definition, runs)))
}
