//! The upstream examples that are edge payloads, sent as they are: each gets the answer a real
//! NeuronEX gives it (which is not always a success: several documentation examples are wrong).

use serde_json::{Value, json};

use crate::support::{client, sim, target};

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../fixtures/upstream/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn ruleset_and_data_documents_import() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    assert_eq!(
        edge.ruleset_import(&fixture("ekuiper_ruleset_import.json")).await.expect("ruleset"),
        "imported 1 streams, 0 tables and 1 rules"
    );
    for name in [
        "ekuiper_data_import_streams_rules_sourceconfig.json",
        "ekuiper_data_export_full_example.json",
        "ekuiper_rules_with_version.json",
        "neuronex_api_template_export_ekuiper.json",
    ] {
        let errors = edge.data_import(&fixture(name), true).await.expect(name);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    assert!(edge.rule_status("hot").await.expect("hot").running);
    assert!(edge.rule_status("rrr1").await.expect("rrr1").running);
}

#[tokio::test]
async fn a_rule_document_without_its_stream_fails_as_on_the_edge() {
    let sim = sim("3.6.0").await;
    let errors = client()
        .edge(&target(&sim, 0))
        .data_import(&fixture("ekuiper_data_import_rule_with_full_options.json"), true)
        .await
        .expect("answer");
    assert_eq!(errors.0["rules"]["hot"], "fail to get stream simup, please check if stream is created");
}

#[tokio::test]
async fn the_graph_rule_example_is_created() {
    let sim = sim("3.6.0").await;
    let rule = fixture("ekuiper_graph_rule_example.json");
    let client = client();
    let target = target(&sim, 0);
    client.edge(&target).create_rule(&rule).await.expect("graph rule");
    assert!(client.edge(&target).rule_status("rule1").await.expect("status").running);
}

#[tokio::test]
async fn neuron_tag_examples() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_node(
        "modbus-node",
        "Modbus TCP",
        Some(&json!({"host": "127.0.0.1", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0})),
    )
    .await
    .expect("node");
    let gtags = fixture("neuron_gtags_add_request.json");
    let groups = gtags["groups"].as_array().expect("groups").clone();
    assert_eq!(edge.add_group_tags("modbus-node", &groups).await.expect("gtags example"), 4);
    // The swagger's tags example puts an INT16 on coil address 1!00001: the Modbus driver
    // refuses the type for a coil, after keeping the static tag before it.
    let tags = fixture("neuronex_api_neuron_tags_add_request.json");
    let list = tags["tags"].as_array().expect("tags").clone();
    let err = edge.add_tags("modbus-node", tags["group"].as_str().expect("group"), &list).await.expect_err("tag2");
    assert_eq!((err.status, err.code), (Some(400), Some(2204)));
    assert!(err.object.starts_with("tag tag2 (#2"), "{}", err.object);
}

#[tokio::test]
async fn the_documented_global_drivers_example_is_rejected_like_neuron_does() {
    let sim = sim("3.6.0").await;
    let err = client()
        .edge(&target(&sim, 0))
        .put_drivers(&fixture("neuron_global_drivers_put_request.json"))
        .await
        .expect_err("1002");
    assert_eq!((err.status, err.code), (Some(400), Some(1002)));
}
