//! Snapshots and restore: what an edge held before a delivery wrote, and putting it back. A
//! restore reads the edge first and touches only objects that differ from the snapshot, in the
//! order eKuiper and Neuron allow (rules off their streams before the streams change, a node whole
//! with its groups, tags and subscriptions), then reads again to check.

use domain::plan::{self, ObjectRef, SnapshotEntry};
use serde_json::{Value, json};

use crate::readback::is_absent;
use crate::{Edge, EdgeError, StreamKind};

impl Edge<'_> {
    /// What the edge holds for `objects`, to be put back on failure. Groups and tags are part of
    /// their node's entry (the whole node is kept); the other objects are read as plans read them.
    pub async fn take_snapshot(&self, objects: &[ObjectRef]) -> Result<Vec<SnapshotEntry>, EdgeError> {
        let kept: Vec<ObjectRef> = objects
            .iter()
            .filter(|o| !matches!(o, ObjectRef::Group { .. } | ObjectRef::Tags { .. } | ObjectRef::Node { .. }))
            .cloned()
            .collect();
        let mut entries = Vec::with_capacity(objects.len());
        for object in objects {
            if let ObjectRef::Node { name } = object {
                entries.push(SnapshotEntry { object: object.clone(), live: self.whole_node(name).await? });
            }
        }
        let live = self.read_objects(&kept).await?;
        entries.extend(SnapshotEntry::pair(kept, live));
        Ok(entries)
    }

    /// A driver node with everything a delete takes with it, or `None` when there is no such node.
    async fn whole_node(&self, name: &str) -> Result<Option<Value>, EdgeError> {
        let drivers = self.list_nodes(1).await?;
        let Some(node) = drivers.iter().find(|n| n["name"] == name) else {
            return Ok(None);
        };
        let params = self.node_setting(name).await?.unwrap_or(Value::Null);
        let mut groups = Vec::new();
        for group in self.list_groups(name).await? {
            let group_name = group["name"].as_str().unwrap_or_default().to_owned();
            let tags = self.list_tags(name, &group_name).await?;
            groups.push(json!({"name": group_name, "interval": group["interval"], "tags": tags}));
        }
        let mut subscriptions = Vec::new();
        for app in self.list_nodes(2).await? {
            let app_name = app["name"].as_str().unwrap_or_default().to_owned();
            for sub in self.list_subscriptions(&app_name).await?.into_iter().flatten() {
                if sub["driver"] == name {
                    subscriptions.push(json!({"app": app_name, "group": sub["group"], "params": sub["params"]}));
                }
            }
        }
        Ok(Some(json!({"plugin": node["plugin"], "params": params, "groups": groups, "subscriptions": subscriptions})))
    }

    /// Puts every object of `snapshot` back as it was, touching only those that differ now; then
    /// checks. Answers how many objects it put back (0: nothing differed). An error names the
    /// objects that could not be put back.
    pub async fn restore(&self, snapshot: &[SnapshotEntry]) -> Result<usize, RestoreError> {
        let objects: Vec<ObjectRef> = snapshot.iter().map(|e| e.object.clone()).collect();
        let now = self.take_snapshot(&objects).await.map_err(RestoreError::Edge)?;
        let differing = plan::differing(snapshot, &now);
        if differing.is_empty() {
            return Ok(0);
        }
        let exists = |object: &ObjectRef| now.iter().any(|n| &n.object == object && n.live.is_some());
        // Rules first come off (their streams may be dropped), then streams, then rules go back.
        for entry in differing.iter().filter(|e| matches!(e.object, ObjectRef::Rule { .. })) {
            if let ObjectRef::Rule { id } = &entry.object
                && exists(&entry.object)
            {
                self.delete_rule(id).await.or_else(absent_is_fine)?;
            }
        }
        for entry in &differing {
            match (&entry.object, &entry.live) {
                (ObjectRef::Stream { name }, live) => {
                    self.put_stream_back(StreamKind::Stream, name, live.as_ref(), exists(&entry.object)).await?
                }
                (ObjectRef::Table { name }, live) => {
                    self.put_stream_back(StreamKind::Table, name, live.as_ref(), exists(&entry.object)).await?
                }
                _ => {}
            }
        }
        for entry in &differing {
            match (&entry.object, &entry.live) {
                (ObjectRef::Rule { .. }, Some(shape)) => self.create_rule(shape).await?,
                (ObjectRef::Node { name }, live) => {
                    self.put_node_back(name, live.as_ref(), exists(&entry.object)).await?
                }
                (ObjectRef::Subscription { app, driver, group }, None) => self.unsubscribe(app, driver, group).await?,
                (ObjectRef::Subscription { app, driver, group }, Some(shape)) => {
                    let params = shape.get("params").filter(|p| !p.is_null());
                    self.subscribe(app, driver, group, params).await?;
                }
                (ObjectRef::Plugin { name }, None) => self.delete_portable(name).await.or_else(absent_is_fine)?,
                (ObjectRef::Plugin { name }, Some(shape)) => {
                    return Err(RestoreError::Impossible(format!(
                        "plugin {name}: version {} was replaced and edgefleet does not hold its package",
                        shape["version"].as_str().unwrap_or("?")
                    )));
                }
                _ => {}
            }
        }
        let after = self.take_snapshot(&objects).await.map_err(RestoreError::Edge)?;
        let still: Vec<String> =
            plan::differing(snapshot, &after).iter().map(|entry| entry.object.to_string()).collect();
        if still.is_empty() {
            Ok(differing.len())
        } else {
            Err(RestoreError::Impossible(format!("{} still differ(s) from the snapshot", still.join(", "))))
        }
    }

    async fn put_stream_back(
        &self,
        kind: StreamKind,
        name: &str,
        live: Option<&Value>,
        exists: bool,
    ) -> Result<(), RestoreError> {
        let keyword = if kind == StreamKind::Stream { "STREAM" } else { "TABLE" };
        match live {
            None if exists => self.drop_stream(kind, name, false).await.or_else(absent_is_fine)?,
            None => {}
            Some(shape) => {
                let statement = plan::stream_statement(keyword, name, shape);
                // A replace is refused when the current VERSION is not lower or SHARED differs
                // (eKuiper 2.3+): then the stream is dropped and created again.
                if let Err(err) = self.replace_stream(kind, name, &statement).await {
                    if err.version_clash().is_none() && !err.is_shared_change() {
                        return Err(err.into());
                    }
                    self.drop_stream(kind, name, false).await.or_else(absent_is_fine)?;
                    self.create_stream(kind, name, &statement).await?;
                }
            }
        }
        Ok(())
    }

    async fn put_node_back(&self, name: &str, live: Option<&Value>, exists: bool) -> Result<(), RestoreError> {
        if exists {
            self.delete_node(name).await.or_else(absent_is_fine)?;
        }
        let Some(node) = live else {
            return Ok(());
        };
        let params = node.get("params").filter(|p| !p.is_null());
        self.create_node(name, node["plugin"].as_str().unwrap_or_default(), params).await?;
        for group in node["groups"].as_array().into_iter().flatten() {
            let group_name = group["name"].as_str().unwrap_or_default();
            self.create_group(name, group_name, group["interval"].as_u64().unwrap_or(1000)).await?;
            let tags = group["tags"].as_array().cloned().unwrap_or_default();
            if !tags.is_empty() {
                self.add_tags(name, group_name, &tags).await?;
            }
        }
        for sub in node["subscriptions"].as_array().into_iter().flatten() {
            let params = sub.get("params").filter(|p| !p.is_null());
            self.subscribe(
                sub["app"].as_str().unwrap_or_default(),
                name,
                sub["group"].as_str().unwrap_or_default(),
                params,
            )
            .await?;
        }
        Ok(())
    }
}

fn absent_is_fine(err: EdgeError) -> Result<(), EdgeError> {
    if is_absent(&err) { Ok(()) } else { Err(err) }
}

/// Why a restore did not put everything back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Edge(#[from] EdgeError),
    #[error("{0}")]
    Impossible(String),
}
