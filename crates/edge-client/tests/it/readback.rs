//! Read-back: what the edge reports, brought to `domain::plan`'s normal form, equals what was sent
//! when it means the same, on every engine generation; a change by hand shows as a JSON Patch.

use domain::delivery::OnConflict;
use domain::plan::{self, ChangeAction, ObjectRef};
use domain::template::{self, Document, TemplateKind};
use edge_client::{Edge, StreamKind};
use serde_json::{Value, json};

use crate::support::{client, sim, target};

fn load(kind: TemplateKind, content: Value) -> Document {
    let normalized = template::normalize(kind, &content).expect("normalizes");
    template::load(kind, &normalized).expect("loads")
}

fn rule_document() -> Document {
    let rule = json!({"id": "r1", "sql": "SELECT temp FROM demo", "actions": [{"log": {}}], "options": {"qos": 1}});
    let stopped = json!({"id": "r2", "triggered": false, "sql": "SELECT * FROM demo", "actions": [{"nop": {}}]});
    load(
        TemplateKind::Rule,
        json!({"streams": {"demo": "CREATE STREAM demo (temp FLOAT, id BIGINT) WITH (DATASOURCE=\"t/#\", FORMAT=\"json\", TYPE=\"mqtt\", SHARED=\"true\")"},
               "tables": {"lookup": "CREATE TABLE lookup () WITH (DATASOURCE=\"0\", TYPE=\"memory\", KEY=\"id\", KIND=\"lookup\")"},
               "rules": {"r1": rule.to_string(), "r2": stopped.to_string()}}),
    )
}

fn driver_document() -> Document {
    load(
        TemplateKind::Driver,
        json!({"nodes": [{"name": "plc", "plugin": "Modbus TCP",
            "params": {"host": "10.0.0.5", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0},
            "groups": [{"group": "fast", "interval": 1000, "tags": [
                {"name": "temp", "address": "1!400001", "attribute": 1, "type": 9, "precision": 2},
                {"name": "run", "address": "1!000001", "attribute": 3, "type": 11}]}]}],
            "subscriptions": [{"app": "cloud", "driver": "plc", "group": "fast", "params": {"topic": "plant/a"}}]}),
    )
}

/// Writes `document` the way a delivery does.
async fn apply(edge: &Edge<'_>, document: &Document) {
    match document {
        Document::Rule(doc) => {
            for (kind, list) in [(StreamKind::Stream, &doc.streams), (StreamKind::Table, &doc.tables)] {
                for (name, sql) in list {
                    edge.replace_stream(kind, name, sql).await.expect("stream");
                }
            }
            for rule in &doc.rules {
                edge.upsert_rule(&rule.id, &rule.definition).await.expect("rule");
            }
        }
        Document::Driver(doc) => {
            for node in &doc.nodes {
                edge.create_node(&node.name, &node.plugin, node.params.as_ref()).await.expect("node");
                for group in &node.groups {
                    edge.create_group(&node.name, &group.name, group.interval).await.expect("group");
                    edge.add_tags(&node.name, &group.name, &group.tags).await.expect("tags");
                }
            }
            for sub in &doc.subscriptions {
                edge.subscribe(&sub.app, &sub.driver, &sub.group, sub.params.as_ref()).await.expect("subscription");
            }
        }
    }
}

async fn changes(edge: &Edge<'_>, document: &Document) -> Vec<plan::Change> {
    let desired = plan::desired(document);
    let refs: Vec<ObjectRef> = desired.iter().map(|(object, _)| object.clone()).collect();
    let live = edge.read_objects(&refs).await.expect("read back");
    desired
        .iter()
        .zip(&live)
        .map(|((object, want), have)| plan::compare(object, want, have.as_ref(), OnConflict::Overwrite))
        .collect()
}

fn actions(changes: &[plan::Change]) -> Vec<(String, ChangeAction)> {
    changes.iter().map(|c| (c.object.clone(), c.action)).collect()
}

#[tokio::test]
async fn what_was_sent_reads_back_unchanged_on_every_engine_generation() {
    for version in ["3.3.0", "3.5.5", "3.7.0", "3.9.2"] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        let cloud = json!({"host": "broker", "port": 1883, "client-id": "c1", "format": 0});
        edge.create_node("cloud", "MQTT", Some(&cloud)).await.expect("app");
        for document in [rule_document(), driver_document()] {
            let before = changes(&edge, &document).await;
            assert!(before.iter().all(|c| c.action == ChangeAction::Create), "{version}: {:?}", actions(&before));
            apply(&edge, &document).await;
            // The stopped rule stays stopped, as it was asked.
            if let Document::Rule(_) = document {
                edge.control_rule("r2", "stop").await.expect("stop r2");
            }
            let after = changes(&edge, &document).await;
            assert!(
                after.iter().all(|c| c.action == ChangeAction::Unchanged),
                "{version}: {:?}",
                after.iter().filter(|c| c.action != ChangeAction::Unchanged).collect::<Vec<_>>()
            );
        }
    }
}

#[tokio::test]
async fn a_change_by_hand_shows_as_an_update_with_its_patch() {
    let sim = sim("3.7.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    let cloud = json!({"host": "broker", "port": 1883, "client-id": "c1", "format": 0});
    edge.create_node("cloud", "MQTT", Some(&cloud)).await.expect("app");
    let (rules, drivers) = (rule_document(), driver_document());
    apply(&edge, &rules).await;
    edge.control_rule("r2", "stop").await.expect("stop r2");
    apply(&edge, &drivers).await;
    // By hand: r1 stopped and its SQL changed, a tag's precision changed, the topic changed.
    let edited =
        json!({"id": "r1", "sql": "SELECT temp, id FROM demo", "actions": [{"log": {}}], "options": {"qos": 1}});
    edge.update_rule("r1", &edited).await.expect("edit r1");
    edge.control_rule("r1", "stop").await.expect("stop r1");
    let tag = json!({"node": "plc", "group": "fast", "tags": [{"name": "temp", "address": "1!400001", "attribute": 1, "type": 9, "precision": 3}]});
    let answer = reqwest::Client::new().put(format!("{}/api/neuron/tags", sim.endpoint(0))).json(&tag).send().await;
    assert_eq!(answer.expect("sim").status(), 200);
    edge.unsubscribe("cloud", "plc", "fast").await.expect("unsubscribe");
    let rule_changes = changes(&edge, &rules).await;
    let r1 = rule_changes.iter().find(|c| c.object == "rule r1").expect("r1");
    assert_eq!(r1.action, ChangeAction::Update);
    assert_eq!(
        r1.diff,
        [
            json!({"op": "replace", "path": "/sql", "value": "SELECT temp FROM demo"}),
            json!({"op": "replace", "path": "/triggered", "value": true})
        ]
    );
    let driver_changes = changes(&edge, &drivers).await;
    assert_eq!(
        actions(&driver_changes),
        [
            ("node plc".to_owned(), ChangeAction::Unchanged),
            ("group plc/fast".to_owned(), ChangeAction::Unchanged),
            ("tags plc/fast".to_owned(), ChangeAction::Update),
            ("subscription cloud/plc/fast".to_owned(), ChangeAction::Create),
        ]
    );
    assert_eq!(driver_changes[2].diff, [json!({"op": "replace", "path": "/tags/temp/precision", "value": 2})]);
}

/// A snapshot taken before writing, then much changed (objects replaced, created, stopped, a node
/// replaced with fewer groups and no subscriptions), is put back exactly: what the edge holds
/// afterwards is the snapshot, object by object.
#[tokio::test]
async fn a_restore_puts_back_exactly_what_the_snapshot_holds() {
    for version in ["3.3.0", "3.7.0", "3.9.2"] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        let cloud = json!({"host": "broker", "port": 1883, "client-id": "c1", "format": 0});
        edge.create_node("cloud", "MQTT", Some(&cloud)).await.expect("app");
        edge.create_node("other", "MQTT", Some(&json!({"host": "b2", "port": 1883, "client-id": "c2", "format": 0})))
            .await
            .expect("app 2");
        let (rules, drivers) = (rule_document(), driver_document());
        apply(&edge, &rules).await;
        edge.control_rule("r2", "stop").await.expect("stop r2");
        apply(&edge, &drivers).await;
        // An extra group on the node and a subscription of an app the template does not name.
        edge.create_group("plc", "slow", 5000).await.expect("group");
        edge.subscribe("other", "plc", "slow", Some(&json!({"topic": "x"}))).await.expect("subscription");
        // The snapshot covers the objects of both documents plus a stream and rule that are absent.
        let mut objects: Vec<ObjectRef> =
            plan::desired(&rules).into_iter().chain(plan::desired(&drivers)).map(|(o, _)| o).collect();
        objects.push(ObjectRef::Stream { name: "extra".into() });
        objects.push(ObjectRef::Rule { id: "r9".into() });
        let snapshot = edge.take_snapshot(&objects).await.expect("snapshot");

        // Everything changes.
        let other = "CREATE STREAM demo () WITH (DATASOURCE=\"other\", TYPE=\"mqtt\", SHARED=\"true\")";
        edge.replace_stream(StreamKind::Stream, "demo", other).await.expect("stream");
        edge.create_stream(StreamKind::Stream, "extra", "CREATE STREAM extra () WITH (TYPE=\"mqtt\")")
            .await
            .expect("extra");
        let r9 = json!({"id": "r9", "sql": "SELECT * FROM extra", "actions": [{"log": {}}]});
        edge.create_rule(&r9).await.expect("r9");
        let edited = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"nop": {}}]});
        edge.update_rule("r1", &edited).await.expect("r1");
        edge.control_rule("r2", "start").await.expect("start r2");
        edge.delete_node("plc").await.expect("delete plc");
        edge.create_node(
            "plc",
            "Modbus TCP",
            Some(&json!({"host": "10.9.9.9", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0})),
        )
        .await
        .expect("plc again");

        edge.restore(&snapshot).await.unwrap_or_else(|err| panic!("{version}: {err}"));
        let after = edge.take_snapshot(&objects).await.expect("after");
        assert_eq!(after, snapshot, "{version}");
    }
}
