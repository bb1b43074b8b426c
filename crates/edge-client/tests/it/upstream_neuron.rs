//! Cases replayed from Neuron's own functional tests, expectations unchanged, against the
//! simulator's Neuron (under NeuronEX's `/api/neuron` prefix). Source: emqx/neuron
//! `tests/ft/group/test_group.py` at 2eb5290 (class `TestGroup`, whose cases share one Neuron and
//! run in order), with `tests/ft/neuron/api.py` for the request shapes and `tests/ft/neuron/error.py`
//! for the codes. Each step names the upstream test it replays.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::sim;

struct Neuron {
    http: reqwest::Client,
    base: String,
}

impl Neuron {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `api.add_node(node, plugin)`: no settings.
    async fn add_node(&self, name: &str, plugin: &str) -> (u16, Value) {
        self.call(Method::POST, "/node", Some(json!({"name": name, "plugin": plugin}))).await
    }

    /// `api.update_node(node, new_name)`.
    async fn rename_node(&self, name: &str, new_name: &str) -> (u16, Value) {
        self.call(Method::PUT, "/node", Some(json!({"name": name, "new_name": new_name}))).await
    }

    /// `api.del_node(node)`.
    async fn delete_node(&self, name: &str) -> (u16, Value) {
        self.call(Method::DELETE, "/node", Some(json!({"name": name}))).await
    }

    /// `api.get_nodes(type)`.
    async fn nodes(&self, node_type: u32) -> (u16, Value) {
        self.call(Method::GET, &format!("/node?type={node_type}"), None).await
    }

    /// `api.add_group(node, group, interval=100)`.
    async fn add_group(&self, node: &str, group: &str, interval: u64) -> (u16, Value) {
        self.call(Method::POST, "/group", Some(json!({"node": node, "group": group, "interval": interval}))).await
    }

    /// `api.update_group(node, group, new_name="", interval=0)`: only the fields given.
    async fn update_group(&self, node: &str, group: &str, new_name: &str, interval: u64) -> (u16, Value) {
        let mut body = json!({"node": node, "group": group});
        if !new_name.is_empty() || interval == 0 {
            body["new_name"] = json!(new_name);
        }
        if interval > 0 {
            body["interval"] = json!(interval);
        }
        self.call(Method::PUT, "/group", Some(body)).await
    }
}

const NODE_NOT_EXIST: i64 = 2003;
const NODE_NAME_TOO_LONG: i64 = 2010;
const GROUP_NOT_ALLOW: i64 = 2103;
const GROUP_EXIST: i64 = 2104;
const GROUP_PARAMETER_INVALID: i64 = 2105;
const GROUP_NOT_EXIST: i64 = 2106;
const GROUP_NAME_TOO_LONG: i64 = 2107;
const BODY_IS_WRONG: i64 = 1002;

#[tokio::test]
async fn groups_behave_as_neurons_functional_tests_expect() {
    let sim = sim("3.7.0").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    let error = |answer: &(u16, Value)| (answer.0, answer.1["error"].as_i64());

    // test_add_group_non_existent_node
    assert_eq!(error(&neuron.add_group("non-existent", "group", 100).await), (404, Some(NODE_NOT_EXIST)));
    // test_add_group_existent_node (the node is added without settings, as api.add_node does)
    let added = neuron.call(Method::POST, "/node", Some(json!({"name": "modbus-tcp", "plugin": "Modbus TCP"}))).await;
    assert_eq!(error(&added), (200, Some(0)));
    assert_eq!(error(&neuron.add_group("modbus-tcp", "group", 100).await), (200, Some(0)));
    // test_get_group
    let (status, groups) = neuron.call(Method::GET, "/group?node=modbus-tcp", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&groups["groups"][0]["tag_count"], &groups["groups"][0]["interval"], &groups["groups"][0]["name"]),
        (&json!(0), &json!(100), &json!("group"))
    );
    // test_delete_non_existent_group
    let missing = json!({"node": "modbus-tcp", "group": "non-existent"});
    assert_eq!(error(&neuron.call(Method::DELETE, "/group", Some(missing)).await), (404, Some(GROUP_NOT_EXIST)));
    // test_delete_group_non_existent_node
    let no_node = json!({"node": "non-existent", "group": "group"});
    assert_eq!(error(&neuron.call(Method::DELETE, "/group", Some(no_node)).await), (404, Some(NODE_NOT_EXIST)));
    // test_delete_group
    neuron.add_group("modbus-tcp", "group1", 100).await;
    let group1 = json!({"node": "modbus-tcp", "group": "group1"});
    assert_eq!(error(&neuron.call(Method::DELETE, "/group", Some(group1)).await), (200, Some(0)));
    // test_add_group_wrong_interval
    assert_eq!(error(&neuron.add_group("modbus-tcp", "group", 99).await), (400, Some(GROUP_PARAMETER_INVALID)));
    // test_add_group_app_node
    let app = json!({"name": "mqtt", "plugin": "MQTT"});
    assert_eq!(error(&neuron.call(Method::POST, "/node", Some(app)).await), (200, Some(0)));
    assert_eq!(error(&neuron.add_group("mqtt", "group", 100).await), (409, Some(GROUP_NOT_ALLOW)));
    // test_update_group_non_existent_node
    assert_eq!(error(&neuron.update_group("non-existent", "group", "new_group", 0).await), (404, Some(NODE_NOT_EXIST)));
    // test_update_group_long_node_name
    let long = "a".repeat(200);
    assert_eq!(error(&neuron.update_group(&long, "group", "new_group", 0).await), (400, Some(NODE_NAME_TOO_LONG)));
    // test_update_group_non_existent_group
    assert_eq!(
        error(&neuron.update_group("modbus-tcp", "non-existent", "new_group", 0).await),
        (404, Some(GROUP_NOT_EXIST))
    );
    // test_update_group_long_group_name
    assert_eq!(error(&neuron.update_group("modbus-tcp", "group", &long, 0).await), (400, Some(GROUP_NAME_TOO_LONG)));
    // test_update_group_small_interval
    assert_eq!(
        error(&neuron.update_group("modbus-tcp", "group", "", 12_345_678_910).await),
        (400, Some(GROUP_PARAMETER_INVALID))
    );
    // test_update_group_valid_interval
    assert_eq!(error(&neuron.update_group("modbus-tcp", "group", "", 2000).await), (200, Some(0)));
    // test_update_group_empty_name
    assert_eq!(error(&neuron.update_group("modbus-tcp", "group", "", 0).await), (400, Some(BODY_IS_WRONG)));
    // test_update_group_conflict_name
    neuron.add_group("modbus-tcp", "group1", 100).await;
    assert_eq!(error(&neuron.update_group("modbus-tcp", "group1", "group", 0).await), (409, Some(GROUP_EXIST)));
    // test_update_group_name
    assert_eq!(error(&neuron.update_group("modbus-tcp", "group", "group2", 0).await), (200, Some(0)));
    // test_update_group_name_interval
    assert_eq!(error(&neuron.update_group("modbus-tcp", "group2", "group", 3000).await), (200, Some(0)));
    // test_update_group_subscription: a renamed group keeps its subscribers.
    let subscribe =
        json!({"app": "mqtt", "driver": "modbus-tcp", "group": "group", "params": {"topic": "/neuron/mqtt/test"}});
    assert_eq!(error(&neuron.call(Method::POST, "/subscribe", Some(subscribe)).await), (200, Some(0)));
    let (status, subscribed) = neuron.call(Method::GET, "/subscribe?app=mqtt", None).await;
    assert_eq!((status, &subscribed["groups"][0]["group"]), (200, &json!("group")));
    assert_eq!(error(&neuron.update_group("modbus-tcp", "group", "group2", 0).await), (200, Some(0)));
    let (status, subscribed) = neuron.call(Method::GET, "/subscribe?app=mqtt", None).await;
    assert_eq!((status, &subscribed["groups"][0]["group"]), (200, &json!("group2")));
}

/// Neuron's `tests/ft/tag/test_tag.py` (class `TestTag`), the bias cases of tag addition:
/// `test_add_tag_with_bias`, `test_add_tag_with_bias_out_of_range`,
/// `test_add_tag_with_bias_and_write_attr`, `test_add_tag_with_bias_and_bad_type`.
#[tokio::test]
async fn tag_bias_behaves_as_neurons_functional_tests_expect() {
    const TAG_BIAS_INVALID: i64 = 2212;
    let sim = sim("3.7.0").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    neuron.call(Method::POST, "/node", Some(json!({"name": "modbus-tcp", "plugin": "Modbus TCP"}))).await;
    neuron.add_group("modbus-tcp", "group1", 100).await;
    // `hold_int16_bias`: a readable INT16 holding register with bias 1.0.
    let bias_tag = json!({"name": "hold_int16_bias", "address": "1!400001", "attribute": 1, "type": 3, "bias": 1.0});
    let add = |tag: Value| {
        let body = json!({"node": "modbus-tcp", "group": "group1", "tags": [tag]});
        neuron.call(Method::POST, "/tags", Some(body))
    };
    let delete = || {
        let body = json!({"node": "modbus-tcp", "group": "group1", "tags": ["hold_int16_bias"]});
        neuron.call(Method::DELETE, "/tags", Some(body))
    };
    // test_add_tag_with_bias
    let (status, added) = add(bias_tag.clone()).await;
    assert_eq!((status, added["error"].as_i64()), (200, Some(0)));
    let (_, tags) = neuron.call(Method::GET, "/tags?node=modbus-tcp&group=group1", None).await;
    assert_eq!((&tags["tags"][0]["name"], &tags["tags"][0]["bias"]), (&json!("hold_int16_bias"), &json!(1.0)));
    delete().await;
    // test_add_tag_with_bias_out_of_range
    let mut out_of_range = bias_tag.clone();
    out_of_range["bias"] = json!(10000);
    let (status, refused) = add(out_of_range).await;
    assert_eq!((status, refused["error"].as_i64()), (400, Some(TAG_BIAS_INVALID)));
    // test_add_tag_with_bias_and_write_attr (NEU_TAG_ATTRIBUTE_RW = 3)
    let mut writable = bias_tag.clone();
    writable["attribute"] = json!(3);
    let (status, refused) = add(writable).await;
    assert_eq!((status, refused["error"].as_i64()), (400, Some(TAG_BIAS_INVALID)));
    // test_add_tag_with_bias_and_bad_type: BIT, BOOL, STRING, BYTES, WORD, DWORD, LWORD, TIME,
    // DATA_AND_TIME (Neuron's type codes 11, 12, 13, 14, 16, 17, 18, 20, 21).
    for tag_type in [11, 12, 13, 14, 16, 17, 18, 20, 21] {
        let mut bad_type = bias_tag.clone();
        bad_type["type"] = json!(tag_type);
        let (status, refused) = add(bad_type).await;
        assert_eq!((status, refused["error"].as_i64()), (400, Some(TAG_BIAS_INVALID)), "type {tag_type}");
    }
}

/// Neuron's `tests/ft/node/test_node.py` at 2eb5290 (class `TestNode`, in order): plugins, node
/// types, names, renames, deletion and settings.
#[tokio::test]
async fn nodes_behave_as_neurons_functional_tests_expect() {
    const PARAM_IS_WRONG: i64 = 1003;
    const NODE_EXIST: i64 = 2002;
    const NODE_SETTING_NOT_FOUND: i64 = 2005;
    const NODE_NAME_EMPTY: i64 = 2015;
    const LIBRARY_NOT_FOUND: i64 = 2301;
    let sim = sim("3.7.0").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    let error = |answer: &(u16, Value)| (answer.0, answer.1["error"].as_i64());

    // test_ping
    assert_eq!(neuron.call(Method::POST, "/ping", None).await.0, 200);
    // test_add_driver_non_existent_plugin
    assert_eq!(error(&neuron.add_node("unknow", "non-existent").await), (404, Some(LIBRARY_NOT_FOUND)));
    // test_get_invalid_node_type
    assert_eq!(error(&neuron.nodes(3).await), (400, Some(PARAM_IS_WRONG)));
    // test_add_driver, test_get_driver, test_get_app_empty
    assert_eq!(error(&neuron.add_node("modbus-tcp", "Modbus TCP").await), (200, Some(0)));
    assert_eq!(neuron.nodes(1).await.1["nodes"][0]["name"], "modbus-tcp");
    assert_eq!(neuron.nodes(2).await.1["nodes"], json!([]));
    // test_add_driver_with_same_name
    assert_eq!(error(&neuron.add_node("modbus-tcp", "Modbus TCP").await), (409, Some(NODE_EXIST)));
    // test_add_app, test_get_app
    assert_eq!(error(&neuron.add_node("mqtt", "MQTT").await), (200, Some(0)));
    assert_eq!(neuron.nodes(2).await.1["nodes"][0]["name"], "mqtt");
    // test_update_node_name_to_empty
    assert_eq!(error(&neuron.rename_node("modbus-tcp", "").await), (400, Some(NODE_NAME_EMPTY)));
    // test_update_non_existent_node
    assert_eq!(error(&neuron.rename_node("non-existent", "not found").await), (404, Some(NODE_NOT_EXIST)));
    // test_update_conflict_node_name
    assert_eq!(error(&neuron.rename_node("modbus-tcp", "mqtt").await), (409, Some(NODE_EXIST)));
    // test_update_node_name_to_the_same
    assert_eq!(error(&neuron.rename_node("modbus-tcp", "modbus-tcp").await), (409, Some(NODE_EXIST)));
    assert_eq!(error(&neuron.rename_node("mqtt", "mqtt").await), (409, Some(NODE_EXIST)));
    // test_update_driver_node_name
    assert_eq!(error(&neuron.rename_node("modbus-tcp", "modbus-tcp-new").await), (200, Some(0)));
    assert_eq!(error(&neuron.rename_node("modbus-tcp-new", "modbus-tcp").await), (200, Some(0)));
    // test_update_app_node_name
    assert_eq!(error(&neuron.rename_node("mqtt", "mqtt-new").await), (200, Some(0)));
    assert_eq!(error(&neuron.rename_node("mqtt-new", "mqtt").await), (200, Some(0)));
    // test_delete_app_node, test_delete_app_node_non_existent
    assert_eq!(error(&neuron.delete_node("mqtt").await), (200, Some(0)));
    assert_eq!(neuron.nodes(2).await.1["nodes"], json!([]));
    assert_eq!(error(&neuron.delete_node("mqtt").await), (404, Some(NODE_NOT_EXIST)));
    // test_delete_driver_node, test_delete_driver_node_non_existent
    assert_eq!(error(&neuron.delete_node("modbus-tcp").await), (200, Some(0)));
    assert_eq!(neuron.nodes(1).await.1["nodes"], json!([]));
    assert_eq!(error(&neuron.delete_node("modbus-tcp").await), (404, Some(NODE_NOT_EXIST)));
    // test_set_non_existent_node, test_get_non_existent_node_setting (api.modbus_tcp_node_setting)
    let setting = json!({"node": "modbus-tcp", "params": {"connection_mode": 0, "transport_mode": 0, "interval": 1,
        "host": "127.0.0.1", "port": 502, "timeout": 3000, "max_retries": 2, "retry_interval": 1,
        "device_degrade": 0, "degrade_cycle": 1, "degrade_time": 600}});
    assert_eq!(
        error(&neuron.call(Method::POST, "/node/setting", Some(setting.clone())).await),
        (404, Some(NODE_NOT_EXIST))
    );
    let get_setting = || neuron.call(Method::GET, "/node/setting?node=modbus-tcp", None);
    assert_eq!(error(&get_setting().await), (404, Some(NODE_NOT_EXIST)));
    // test_get_node_setting_not_set
    assert_eq!(error(&neuron.add_node("modbus-tcp", "Modbus TCP").await), (200, Some(0)));
    assert_eq!(error(&get_setting().await), (200, Some(NODE_SETTING_NOT_FOUND)));
    // test_set_node, test_get_node_setting
    assert_eq!(error(&neuron.call(Method::POST, "/node/setting", Some(setting)).await), (200, Some(0)));
    let (status, got) = get_setting().await;
    assert_eq!(status, 200);
    assert_eq!(got["node"], "modbus-tcp");
    let params = &got["params"];
    assert_eq!(
        (&params["port"], &params["host"], &params["timeout"], &params["interval"]),
        (&json!(502), &json!("127.0.0.1"), &json!(3000), &json!(1))
    );
}

/// Neuron's `tests/ft/app/test_app.py` at 1aad699 (class `TestDriver`, in order): a Modbus TCP
/// driver with three groups, an MQTT app subscribing to them in one call, and its node state
/// counting subscriptions as they come and go.
#[tokio::test]
async fn app_subscriptions_behave_as_neurons_functional_tests_expect() {
    let sim = sim("3.7.0").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    let ok = |answer: (u16, Value)| assert_eq!((answer.0, answer.1["error"].as_i64()), (200, Some(0)), "{}", answer.1);
    // test_create_driver_node, test_create_app_node
    ok(neuron.add_node("modbus-tcp-1", "Modbus TCP").await);
    ok(neuron.add_node("mqtt-1", "MQTT").await);
    // test_modbus_tcp_setting (api.modbus_tcp_node_setting(node, port=502) with its defaults)
    let modbus = json!({"node": "modbus-tcp-1", "params": {"connection_mode": 0, "transport_mode": 0, "interval": 0,
        "host": "127.0.0.1", "port": 502, "timeout": 3000, "max_retries": 2, "retry_interval": 1,
        "device_degrade": 0, "degrade_cycle": 1, "degrade_time": 600}});
    ok(neuron.call(Method::POST, "/node/setting", Some(modbus)).await);
    let hold_int16 = json!([{"name": "hold_int16", "address": "1!400001", "attribute": 3, "type": 3}]);
    for group in ["group-1", "group-2", "group-3"] {
        ok(neuron.add_group("modbus-tcp-1", group, 100).await);
    }
    for group in ["group-1", "group-2", "group-3"] {
        let tags = json!({"node": "modbus-tcp-1", "group": group, "tags": hold_int16});
        ok(neuron.call(Method::POST, "/tags", Some(tags)).await);
    }
    // test_mqtt_setting (api.mqtt_node_setting(node))
    let mqtt = json!({"node": "mqtt-1", "params": {"client-id": "neuron_aBcDeF", "qos": 0, "format": 0,
        "write-req-topic": "/neuron/mqtt-1/write/req", "write-resp-topic": "/neuron/mqtt-1/write/resp",
        "offline-cache": false, "cache-sync-interval": 100, "host": "broker.emqx.io", "port": 1883,
        "username": "", "password": "", "ssl": false}});
    ok(neuron.call(Method::POST, "/node/setting", Some(mqtt)).await);
    let groups = json!({"app": "mqtt-1", "groups": [{"driver": "modbus-tcp-1", "group": "group-1"},
        {"driver": "modbus-tcp-1", "group": "group-2"}, {"driver": "modbus-tcp-1", "group": "group-3"}]});
    ok(neuron.call(Method::POST, "/subscribes", Some(groups)).await);
    // test_mqtt_sub_group_count
    let state = || neuron.call(Method::GET, "/node/state?node=mqtt-1", None);
    let (status, counted) = state().await;
    assert_eq!((status, counted["sub_group_count"].as_u64()), (200, Some(3)));
    for group in ["group-1", "group-2", "group-3"] {
        let unsubscribe = json!({"app": "mqtt-1", "driver": "modbus-tcp-1", "group": group});
        ok(neuron.call(Method::DELETE, "/subscribe", Some(unsubscribe)).await);
    }
    assert_eq!(state().await.1["sub_group_count"].as_u64(), Some(0));
    let subscribe = json!({"app": "mqtt-1", "driver": "modbus-tcp-1", "group": "group-1", "params": {"topic": "/neuron/mqtt/test"}});
    ok(neuron.call(Method::POST, "/subscribe", Some(subscribe)).await);
    assert_eq!(state().await.1["sub_group_count"].as_u64(), Some(1));

    // The rest of the class at emqx/neuron main (67d6bebc), in order.
    const GROUP_NOT_SUBSCRIBE: i64 = 2102;
    const MQTT_SUBSCRIBE_FAILURE: i64 = 4010;
    let error = |answer: &(u16, Value)| (answer.0, answer.1["error"].as_i64());
    let sub = |group: &str, params: Value| json!({"app": "mqtt-1", "driver": "modbus-tcp-1", "group": group, "params": params});
    let topic = json!({"topic": "/neuron/mqtt/test"});
    // test_mqtt_sub_non_existent_group
    let answer = neuron.call(Method::POST, "/subscribe", Some(sub("non-existent", topic.clone()))).await;
    assert_eq!(error(&answer), (404, Some(GROUP_NOT_EXIST)));
    // test_mqtt_update_subscribe_non_existent_group
    let answer = neuron.call(Method::PUT, "/subscribe", Some(sub("non-existent", json!({"topic": "new_topic"})))).await;
    assert_eq!(error(&answer), (404, Some(GROUP_NOT_SUBSCRIBE)));
    // test_mqtt_update_subscribe_group
    ok(neuron.call(Method::PUT, "/subscribe", Some(sub("group-1", json!({"topic": "new_topic"})))).await);
    // test_mqtt_subscribe_multiple_non_existent_groups
    let groups = json!({"app": "mqtt-1", "groups": [{"driver": "modbus-tcp-1", "group": "non-1"},
        {"driver": "modbus-tcp-1", "group": "non-2"}, {"driver": "modbus-tcp-1", "group": "non-3"}]});
    assert_eq!(error(&neuron.call(Method::POST, "/subscribes", Some(groups)).await), (404, Some(GROUP_NOT_EXIST)));
    // test_mqtt_subscribe_group_with_empty_topic: refused before "already subscribed", with 200.
    let answer = neuron.call(Method::POST, "/subscribe", Some(sub("group-1", json!({"topic": ""})))).await;
    assert_eq!(error(&answer), (200, Some(MQTT_SUBSCRIBE_FAILURE)));
    let groups =
        json!({"app": "mqtt-1", "groups": [{"driver": "modbus-tcp-1", "group": "group-1", "params": {"topic": ""}}]});
    assert_eq!(
        error(&neuron.call(Method::POST, "/subscribes", Some(groups)).await),
        (200, Some(MQTT_SUBSCRIBE_FAILURE))
    );
    // test_mqtt_get_subscriptions
    let subscriptions = || neuron.call(Method::GET, "/subscribe?app=mqtt-1", None);
    let (status, listed) = subscriptions().await;
    assert_eq!(status, 200);
    let first = &listed["groups"][0];
    assert_eq!(
        (&first["driver"], &first["group"], &first["params"]["topic"]),
        (&json!("modbus-tcp-1"), &json!("group-1"), &json!("new_topic"))
    );
    // test_get_subscription_group_be_deleted
    ok(neuron.call(Method::DELETE, "/group", Some(json!({"node": "modbus-tcp-1", "group": "group-1"}))).await);
    assert_eq!(subscriptions().await.1["groups"], json!([]));
    // test_get_subscription_node_be_deleted
    ok(neuron.add_group("modbus-tcp-1", "group_test", 100).await);
    ok(neuron.call(Method::POST, "/subscribe", Some(sub("group_test", topic))).await);
    let listed = subscriptions().await.1;
    assert_eq!(
        (&listed["groups"][0]["driver"], &listed["groups"][0]["group"]),
        (&json!("modbus-tcp-1"), &json!("group_test"))
    );
    ok(neuron.delete_node("modbus-tcp-1").await);
    assert_eq!(subscriptions().await.1["groups"], json!([]));
}

/// `GET /subscribe?app=&driver=&group=` filters by substring (emqx/neuron src/core/subscribe.c
/// `neu_subscribe_manager_find_by_app`, `strstr` on driver and group), as `api.get_subscribe_group`
/// passes them.
#[tokio::test]
async fn subscription_lists_filter_by_driver_and_group() {
    let sim = sim("3.7.0").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    neuron.add_node("modbus-a", "Modbus TCP").await;
    neuron.add_node("modbus-b", "Modbus TCP").await;
    neuron.add_node("app", "MQTT").await;
    for (driver, group) in [("modbus-a", "line-1"), ("modbus-a", "line-2"), ("modbus-b", "line-1")] {
        neuron.add_group(driver, group, 100).await;
        let body = json!({"app": "app", "driver": driver, "group": group, "params": {"topic": "t"}});
        assert_eq!(neuron.call(Method::POST, "/subscribe", Some(body)).await.0, 200);
    }
    let neuron = &neuron;
    let listed = |query: &'static str| async move {
        let (_, body) = neuron.call(Method::GET, &format!("/subscribe?app=app{query}"), None).await;
        let pairs: Vec<String> = body["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| format!("{}/{}", g["driver"].as_str().unwrap_or(""), g["group"].as_str().unwrap_or("")))
            .collect();
        pairs
    };
    assert_eq!(listed("").await.len(), 3);
    assert_eq!(listed("&driver=a").await, ["modbus-a/line-1", "modbus-a/line-2"]);
    assert_eq!(listed("&group=1").await, ["modbus-a/line-1", "modbus-b/line-1"]);
    assert_eq!(listed("&driver=modbus-b&group=line").await, ["modbus-b/line-1"]);
}

/// Neuron's `tests/ft/tag/test_tag.py` at main (67d6bebc, Neuron 2.15 as NeuronEX 3.9 bundles
/// it): `test_adding_correct_gtags_nonexisting_groups` with its restart, groups across drivers read
/// with `api.get_group()` (no node) in creation order, tags read back with their fields filled in,
/// and both `test_add_string_tag_with_decimal` cases (2211, the second with index 1).
#[tokio::test]
async fn gtags_and_read_backs_behave_as_neurons_main_branch_tests_expect() {
    const TAG_DECIMAL_INVALID: i64 = 2211;
    let sim = sim("3.9.2").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    let error = |answer: &(u16, Value)| (answer.0, answer.1["error"].as_i64());
    assert_eq!(error(&neuron.add_node("modbus-tcp-tag-test", "Modbus TCP").await), (200, Some(0)));
    let groups = json!([
        {"group": "group_1", "interval": 3000, "tags": [
            {"name": "tag1", "address": "1!400001", "attribute": 3, "type": 3, "decimal": 0.01},
            {"name": "tag2", "address": "1!400002", "attribute": 3, "type": 9, "precision": 3}]},
        {"group": "group_2", "interval": 300, "tags": [
            {"name": "tag1", "address": "1!400003", "attribute": 3, "type": 9, "precision": 3},
            {"name": "tag2", "address": "1!400004", "attribute": 3, "type": 9, "precision": 3}]},
        {"group": "group_3", "interval": 3000, "tags": [
            {"name": "tag1", "address": "1!400001", "attribute": 1, "type": 3, "bias": 1.0},
            {"name": "tag2", "address": "1!400002", "attribute": 1, "type": 9, "decimal": 0.01, "bias": 1.0}]}
    ]);
    let body = json!({"node": "modbus-tcp-tag-test", "groups": groups});
    assert_eq!(error(&neuron.call(Method::POST, "/gtags", Some(body)).await), (200, Some(0)));
    // "check data persisted": a restart keeps nodes, groups and tags.
    let restart = reqwest::Client::new().post(format!("{}/__sim/instances/0/restart", sim.base_url)).send().await;
    assert_eq!(restart.expect("control API").status(), 200);
    let (status, listed) = neuron.call(Method::GET, "/group?node=", None).await;
    assert_eq!(status, 200);
    let summary: Vec<(Value, Value, Value)> = listed["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| (g["group"].clone(), g["interval"].clone(), g["tag_count"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!("group_1"), json!(3000), json!(2)),
            (json!("group_2"), json!(300), json!(2)),
            (json!("group_3"), json!(3000), json!(2))
        ]
    );
    let (status, tags) = neuron.call(Method::GET, "/tags?node=modbus-tcp-tag-test&group=group_1", None).await;
    assert_eq!(status, 200);
    let first = &tags["tags"][0];
    assert_eq!(
        (&first["name"], &first["address"], &first["decimal"], &first["type"], &first["attribute"]),
        (&json!("tag1"), &json!("1!400001"), &json!(0.01), &json!(3), &json!(3))
    );
    // Every field comes back filled in (emqx/neuron src/parser/neu_json_tag.c `neu_json_encode_tag`).
    assert_eq!(
        tags["tags"][1],
        json!({"type": 9, "name": "tag2", "attribute": 3, "precision": 3, "decimal": 0.0, "bias": 0.0,
               "address": "1!400002", "description": "", "unit": ""})
    );
    // test_add_string_tag_with_decimal (POST /tags, then POST /gtags: nothing is added)
    neuron.add_node("modbus-tcp", "Modbus TCP").await;
    neuron.add_group("modbus-tcp", "group1", 100).await;
    let string_decimal =
        json!([{"name": "string_decimal", "address": "1!400001.10", "attribute": 3, "type": 13, "decimal": 0.1}]);
    let body = json!({"node": "modbus-tcp", "group": "group1", "tags": string_decimal});
    assert_eq!(error(&neuron.call(Method::POST, "/tags", Some(body)).await), (400, Some(TAG_DECIMAL_INVALID)));
    let body = json!({"node": "modbus-tcp", "groups": [
        {"group": "group_ok", "interval": 3000, "tags": [{"name": "tag_string_ok", "address": "1!400001.10", "attribute": 3, "type": 13}]},
        {"group": "group123", "interval": 3000, "tags": [{"name": "tag_string_decimal", "address": "1!400001.10", "attribute": 3, "type": 13, "decimal": 0.01}]}]});
    let (status, answer) = neuron.call(Method::POST, "/gtags", Some(body)).await;
    assert_eq!((status, answer["error"].as_i64(), answer["index"].as_i64()), (400, Some(TAG_DECIMAL_INVALID), Some(1)));
    let (_, groups) = neuron.call(Method::GET, "/group?node=modbus-tcp", None).await;
    assert_eq!(groups["groups"].as_array().map(Vec::len), Some(1), "nothing of the refused request was added");
}

/// Neuron's "fast check" of `PUT /global/drivers` answers in its own order (emqx/neuron
/// plugins/restful/adapter_handle.c `send_drivers`): an over-long plugin name (3013) before too
/// many groups (2108) before a duplicate node name (1002).
#[tokio::test]
async fn driver_bodies_are_refused_in_neurons_order() {
    let sim = sim("3.7.0").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    let node = |name: &str, plugin: &str, groups: usize| {
        let groups: Vec<Value> =
            (0..groups).map(|g| json!({"group": format!("g{g}"), "interval": 1000, "tags": []})).collect();
        json!({"name": name, "plugin": plugin, "params": {}, "groups": groups})
    };
    let long_plugin = "P".repeat(32);
    let cases = [
        (json!([node("a", &long_plugin, 513), node("a", "Modbus TCP", 1)]), 3013),
        (json!([node("a", "Modbus TCP", 513), node("a", "Modbus TCP", 1)]), 2108),
        (json!([node("a", "Modbus TCP", 1), node("a", "Modbus TCP", 1)]), 1002),
    ];
    for (nodes, code) in cases {
        let (status, answer) = neuron.call(Method::PUT, "/global/drivers", Some(json!({"nodes": nodes}))).await;
        assert_eq!((status, answer["error"].as_i64()), (400, Some(code)));
    }
    assert_eq!(neuron.nodes(1).await.1["nodes"], json!([]), "nothing was created");
}

/// Neuron's `tests/ft/tag/test_tag.py` (class `TestTag`), the tag cases from
/// `test_add_tags_non_existent_node` to `test_add_tag_with_decimal`, in order.
#[tokio::test]
async fn tags_behave_as_neurons_functional_tests_expect() {
    const TAG_NOT_EXIST: i64 = 2201;
    const TAG_NAME_CONFLICT: i64 = 2202;
    let sim = sim("3.7.0").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    let error = |answer: &(u16, Value)| (answer.0, answer.1["error"].as_i64());
    let tags_call = |method: Method, node: &str, group: &str, tags: Value| {
        let body = json!({"node": node, "group": group, "tags": tags});
        neuron.call(method, "/tags", Some(body))
    };
    let read = || neuron.call(Method::GET, "/tags?node=modbus-tcp&group=group1", None);
    let hold_int16 = json!([{"name": "hold_int16", "address": "1!400001", "attribute": 3, "type": 3}]);
    let hold_int16_bit = json!([{"name": "hold_int16_type", "address": "1!400001", "attribute": 3, "type": 3},
        {"name": "hold_bit_type", "address": "1!000001", "attribute": 3, "type": 11}]);
    // test_add_tags_non_existent_node
    neuron.add_node("modbus-tcp", "Modbus TCP").await;
    neuron.add_group("modbus-tcp", "group", 100).await;
    let answer = tags_call(Method::POST, "non-existent", "group1", hold_int16.clone()).await;
    assert_eq!(error(&answer), (404, Some(NODE_NOT_EXIST)));
    // test_add_tags_non_existent_group: the group is made.
    assert_eq!(error(&tags_call(Method::POST, "modbus-tcp", "group1", hold_int16.clone()).await), (200, Some(0)));
    // test_add_different_types_tags
    assert_eq!(error(&tags_call(Method::POST, "modbus-tcp", "group1", hold_int16_bit.clone()).await), (200, Some(0)));
    // test_add_error_tags
    let answer = tags_call(Method::POST, "modbus-tcp", "group1", hold_int16_bit).await;
    assert_eq!(error(&answer), (409, Some(TAG_NAME_CONFLICT)));
    // test_get_tags
    let (status, tags) = read().await;
    assert_eq!(status, 200);
    let first = &tags["tags"][0];
    assert_eq!(
        (&first["name"], &first["address"], &first["attribute"], &first["type"]),
        (&json!("hold_int16"), &json!("1!400001"), &json!(3), &json!(3))
    );
    // test_update_tag
    let to_int32 = json!([{"name": "hold_int16", "address": "1!400002", "attribute": 3, "type": 5}]);
    assert_eq!(error(&tags_call(Method::PUT, "modbus-tcp", "group1", to_int32).await), (200, Some(0)));
    let first = read().await.1["tags"][0].clone();
    assert_eq!(
        (&first["name"], &first["address"], &first["type"]),
        (&json!("hold_int16"), &json!("1!400002"), &json!(5))
    );
    // test_delete_tag_non_existent_group
    let answer = tags_call(Method::DELETE, "modbus-tcp", "non-existent", json!(["hold_int16"])).await;
    assert_eq!(error(&answer), (404, Some(GROUP_NOT_EXIST)));
    // test_delete_tags (one of the names was never added)
    let names = json!(["hold_int16", "hold_int16_static", "hold_int16_type", "hold_bit_type"]);
    assert_eq!(error(&tags_call(Method::DELETE, "modbus-tcp", "group1", names).await), (200, Some(0)));
    assert_eq!(read().await.1["tags"], json!([]));
    // test_add_tag_with_description
    let described = json!([{"name": "hold_int16_description", "address": "1!400001", "attribute": 3, "type": 3, "description": "description info"}]);
    assert_eq!(error(&tags_call(Method::POST, "modbus-tcp", "group1", described).await), (200, Some(0)));
    assert_eq!(read().await.1["tags"][0]["description"], "description info");
    let answer = tags_call(Method::DELETE, "modbus-tcp", "group1", json!(["hold_int16_description"])).await;
    assert_eq!(error(&answer), (200, Some(0)));
    // test_update_non_existent_tag
    let none = json!([{"name": "none", "address": "1!400001", "attribute": 3, "type": 3}]);
    assert_eq!(error(&tags_call(Method::PUT, "modbus-tcp", "group", none).await), (404, Some(TAG_NOT_EXIST)));
    // test_add_tag_with_decimal
    let decimal =
        json!([{"name": "hold_int16_decimal", "address": "1!400001", "attribute": 3, "type": 3, "decimal": 0.1}]);
    assert_eq!(error(&tags_call(Method::POST, "modbus-tcp", "group1", decimal).await), (200, Some(0)));
    assert_eq!(read().await.1["tags"][0]["decimal"], json!(0.1));
    let answer = tags_call(Method::DELETE, "modbus-tcp", "group1", json!(["hold_int16_decimal"])).await;
    assert_eq!(error(&answer), (200, Some(0)));
}

/// Neuron's `tests/ft/http_api/test_http_api.py` at main (67d6bebc)
/// `test_get_node_or_group_by_filter`: nodes filtered by a group substring (which also matches the
/// node's own name) and groups of a node filtered by substring.
#[tokio::test]
async fn nodes_and_groups_filter_as_neurons_http_api_test_expects() {
    let sim = sim("3.9.2").await;
    let neuron = Neuron { http: reqwest::Client::new(), base: format!("{}/api/neuron", sim.endpoint(0)) };
    neuron.add_node("test1", "Modbus TCP").await;
    neuron.add_node("test2", "Modbus TCP").await;
    neuron.add_group("test1", "abcd1", 1000).await;
    neuron.add_group("test1", "abdc2", 1000).await;
    neuron.add_group("test2", "abcd1", 1000).await;
    let count = |path: String, key: &'static str| {
        let neuron = &neuron;
        async move { neuron.call(Method::GET, &path, None).await.1[key].as_array().map(Vec::len) }
    };
    assert_eq!(count("/node?type=1".into(), "nodes").await, Some(2));
    for (group, nodes) in [("dc", 1), ("ab", 2), ("test", 2), ("test1", 1), ("1234", 0)] {
        assert_eq!(count(format!("/node?type=1&group={group}"), "nodes").await, Some(nodes), "group={group}");
    }
    assert_eq!(count("/group?node=test1".into(), "groups").await, Some(2));
    assert_eq!(count("/group?node=test1&group=1".into(), "groups").await, Some(1));
    assert_eq!(count("/group?node=test2".into(), "groups").await, Some(1));
}
