use serde_json::{Value, json};

use crate::support::{client, sim, target};

const MODBUS: &str = "Modbus TCP";

/// What a real Neuron 2.13 takes for a Modbus TCP client (emqx/neuron plugins/modbus/modbus-tcp.json).
fn modbus_params() -> Value {
    json!({"host": "10.0.0.5", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0})
}

/// What a real Neuron 2.13 takes for an MQTT app (emqx/neuron plugins/mqtt/mqtt.json).
fn mqtt_params() -> Value {
    json!({"host": "broker", "port": 1883, "client-id": "neuron-up", "format": 0})
}

#[tokio::test]
async fn plugins_list_the_installed_drivers() {
    let sim = sim("3.6.0").await;
    let plugins = client().edge(&target(&sim, 0)).neuron_plugins().await.expect("plugins");
    let names: Vec<&str> = plugins.iter().filter_map(|p| p["name"].as_str()).collect();
    for expected in ["Modbus TCP", "Modbus RTU", "OPC UA", "Siemens S7 ISOTCP", "MQTT", "eKuiper"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test]
async fn node_errors_carry_neurons_codes_and_statuses() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_node("m1", MODBUS, Some(&modbus_params())).await.expect("create");
    let cases: [(&str, &str, Option<Value>, u16, i64); 4] = [
        ("m1", MODBUS, None, 409, 2002),
        ("m2", "No Such Driver", None, 404, 2301),
        ("m3", MODBUS, Some(json!({"host": "10.0.0.5"})), 400, 2004),
        ("m4", MODBUS, Some(json!({"host": "10.0.0.5", "port": 70000, "timeout": 3000})), 400, 2004),
    ];
    for (name, plugin, params, status, code) in cases {
        let err = edge.create_node(name, plugin, params.as_ref()).await.expect_err(name);
        assert_eq!((err.status, err.code), (Some(status), Some(code)), "{name}");
        assert_eq!(err.object, format!("node {name}"));
    }
    let nodes = edge.list_nodes(1).await.expect("nodes");
    assert_eq!(nodes.len(), 1, "a node whose params were rejected is not created");
    let err = edge.set_node_setting("nope", &modbus_params()).await.expect_err("missing node");
    assert_eq!((err.status, err.code), (Some(404), Some(2003)));
    assert_eq!(edge.node_setting("m1").await.expect("setting"), Some(modbus_params()));
    edge.create_node("bare", MODBUS, None).await.expect("create without params");
    assert_eq!(edge.node_setting("bare").await.expect("no setting yet"), None);
    edge.delete_node("bare").await.expect("delete");
    let err = edge.delete_node("bare").await.expect_err("delete twice");
    assert_eq!((err.status, err.code), (Some(404), Some(2003)));
}

#[tokio::test]
async fn group_errors() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_node("m1", MODBUS, Some(&modbus_params())).await.expect("node");
    edge.create_node("up", "MQTT", Some(&mqtt_params())).await.expect("app");
    edge.create_group("m1", "g1", 1000).await.expect("group");
    let cases = [
        ("m1", "g2", 99, 400, 2105),
        ("m1", "g1", 1000, 409, 2104),
        ("nope", "g1", 1000, 404, 2003),
        ("up", "g1", 1000, 409, 2103),
    ];
    for (node, group, interval, status, code) in cases {
        let err = edge.create_group(node, group, interval).await.expect_err(group);
        assert_eq!((err.status, err.code), (Some(status), Some(code)), "{node}/{group}/{interval}");
    }
    assert_eq!(
        edge.list_groups("m1").await.expect("groups"),
        vec![json!({"name": "g1", "interval": 1000, "tag_count": 0})]
    );
}

#[tokio::test]
async fn tags_stop_at_the_first_bad_one_and_keep_the_earlier_ones() {
    // NeuronEX 3.0 bundles Neuron 2.6 (206 for bad tags); later versions answer 400.
    for (version, status) in [("3.0.0", 206), ("3.6.0", 400)] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        edge.create_node("m1", MODBUS, Some(&modbus_params())).await.expect("node");
        let tags = vec![
            json!({"name": "t1", "address": "1!400001", "attribute": 1, "type": 3}),
            json!({"name": "t2", "address": "1!4xx", "attribute": 1, "type": 3}),
            json!({"name": "t3", "address": "1!400003", "attribute": 1, "type": 3}),
        ];
        let err = edge.add_tags("m1", "g1", &tags).await.expect_err(version);
        assert_eq!((err.status, err.code), (Some(status), Some(2205)), "{version}");
        assert_eq!(err.object, "tag t2 (#2 in group g1 on node m1)");
        let kept = edge.list_tags("m1", "g1").await.expect("group created automatically");
        assert_eq!(kept.len(), 1);
        let err = edge.add_tags("m1", "g1", &tags[..1]).await.expect_err("conflict");
        assert_eq!((err.status, err.code), (Some(409), Some(2202)));
        assert_eq!(edge.add_tags("m1", "g1", &tags[2..]).await.expect("good tag"), 1);
        assert_eq!(
            edge.list_groups("m1").await.expect("groups")[0]["interval"],
            100,
            "auto-created groups poll every 100 ms"
        );
    }
}

#[tokio::test]
async fn tag_checks_cover_type_attribute_and_static_values() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_node("m1", MODBUS, Some(&modbus_params())).await.expect("node");
    let cases = [
        (json!({"name": "a", "address": "1!400001", "attribute": 1, "type": 99}), 2204),
        (json!({"name": "b", "address": "1!400001", "attribute": 0, "type": 3}), 2203),
        (json!({"name": "c", "address": "", "attribute": 8, "type": 3}), 2203),
        (json!({"name": "d", "address": "1!000001", "attribute": 1, "type": 3}), 2204),
        (json!({"name": "e", "address": "1!400001", "attribute": 1, "type": 9, "precision": 20}), 2209),
        (json!({"name": "x".repeat(200), "address": "1!400001", "attribute": 1, "type": 3}), 2206),
    ];
    for (tag, code) in cases {
        let err = edge.add_tags("m1", "g1", std::slice::from_ref(&tag)).await.expect_err("bad tag");
        assert_eq!(err.code, Some(code), "{tag}");
    }
    let static_tag = json!({"name": "s", "address": "", "attribute": 10, "type": 1, "value": 42});
    edge.add_tags("m1", "g1", &[static_tag]).await.expect("static tag with a value");
}

#[tokio::test]
async fn subscriptions_link_an_app_to_a_driver_group() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_node("m1", MODBUS, Some(&modbus_params())).await.expect("node");
    edge.create_group("m1", "g1", 1000).await.expect("group");
    edge.create_node("up", "MQTT", Some(&mqtt_params())).await.expect("app");
    edge.subscribe("up", "m1", "g1", Some(&json!({"topic": "t"}))).await.expect("subscribe");
    edge.subscribe("up", "m1", "g1", None).await.expect("subscribing twice is fine");
    let err = edge.subscribe("up", "m1", "nope", None).await.expect_err("missing group");
    assert_eq!((err.status, err.code), (Some(404), Some(2106)));
}

fn drivers_document() -> Value {
    json!({"nodes": [{"name": "m1", "plugin": MODBUS, "params": modbus_params(), "groups": [
        {"group": "g1", "interval": 1000, "tags": [{"name": "t1", "address": "1!400001", "attribute": 1, "type": 3}]}
    ]}]})
}

#[tokio::test]
async fn global_drivers_replace_nodes_whole() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.put_drivers(&drivers_document()).await.expect("first apply");
    edge.put_drivers(&drivers_document()).await.expect("sending the same driver again replaces it");
    let exported = edge.get_drivers(&["m1"]).await.expect("export");
    // What was sent, read back as Neuron lists a tag: every field filled in, the `description`
    // included (the client always sends one: real Neuron 2.13 to 2.15 crash without it).
    let mut sent = drivers_document();
    sent["nodes"][0]["groups"][0]["tags"][0] = json!({"type": 3, "name": "t1", "attribute": 1, "precision": 0,
        "decimal": 0.0, "bias": 0.0, "address": "1!400001", "description": ""});
    assert_eq!(exported, sent);
}

#[tokio::test]
async fn global_drivers_errors() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut doc = drivers_document();
        change(&mut doc);
        doc
    };
    let cases: Vec<(Value, u16, i64)> = vec![
        (
            with(&|d| {
                d["nodes"][0]["groups"][0] = json!({"name": "g1", "interval": 1000, "tags": []});
            }),
            400,
            1002,
        ),
        (
            with(&|d| {
                if let Some(node) = d["nodes"][0].as_object_mut() {
                    node.remove("params");
                }
            }),
            400,
            1002,
        ),
        (
            with(&|d| {
                let n = d["nodes"][0].clone();
                if let Some(nodes) = d["nodes"].as_array_mut() {
                    nodes.push(n);
                }
            }),
            400,
            1002,
        ),
        (
            with(&|d| {
                d["nodes"][0]["plugin"] = json!("Nope");
            }),
            404,
            2301,
        ),
        (
            with(&|d| {
                d["nodes"][0]["plugin"] = json!("MQTT");
            }),
            400,
            3019,
        ),
        (
            with(&|d| {
                d["nodes"][0]["params"] = json!({"host": "h"});
            }),
            400,
            2004,
        ),
        (
            with(&|d| {
                d["nodes"][0]["groups"][0]["interval"] = json!(50);
            }),
            400,
            2105,
        ),
        (
            with(&|d| {
                d["nodes"][0]["groups"][0]["tags"][0]["type"] = json!(99);
            }),
            400,
            2204,
        ),
    ];
    for (doc, status, code) in cases {
        let err = edge.put_drivers(&doc).await.expect_err("must fail");
        assert_eq!((err.status, err.code), (Some(status), Some(code)), "{doc}");
    }
    assert!(edge.list_nodes(1).await.expect("nodes").is_empty(), "failed applies leave no node behind");
}

#[tokio::test]
async fn global_drivers_do_not_exist_before_neuronex_3_2() {
    let sim = sim("3.1.0").await;
    let err = client().edge(&target(&sim, 0)).put_drivers(&drivers_document()).await.expect_err("404");
    assert_eq!(err.status, Some(404));
}
