//! The Neuron engine of one instance (`/api/neuron/...`): driver plugins, nodes, settings, groups,
//! tags, subscriptions and the bulk `global/drivers` document, answering with Neuron's codes.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use serde_json::{Map, Value, json};

use crate::Request;
use crate::reply::{Reply, neuron_code, neuron_error, neuron_ok};
use crate::versions::Engines;

/// Neuron's name and string length limits (`NEU_*_LEN` minus the NUL).
const NAME_MAX: usize = 127;
const MAX_GROUPS_PER_NODE: usize = 512;

#[derive(Debug, Default)]
pub struct Neuron {
    nodes: BTreeMap<String, Node>,
    /// (app, driver, group) -> params
    subscriptions: BTreeMap<(String, String, String), Value>,
}

#[derive(Debug, Clone)]
struct Node {
    plugin: &'static PluginDef,
    params: Option<Value>,
    /// In creation order, as Neuron lists them.
    groups: IndexMap<String, Group>,
}

#[derive(Debug, Clone)]
struct Group {
    interval: u64,
    tags: Vec<Value>,
}

/// One installed plugin and the setting parameters its `setting` callback insists on.
#[derive(Debug)]
pub struct PluginDef {
    pub name: &'static str,
    pub library: &'static str,
    pub description: &'static str,
    /// 1 driver (south), 2 app (north)
    pub node_type: u8,
    pub single: bool,
    params: &'static [Param],
    address: AddressRule,
}

#[derive(Debug)]
struct Param {
    key: &'static str,
    kind: ParamKind,
    required: bool,
}

#[derive(Debug)]
enum ParamKind {
    Int { min: i64, max: i64 },
    Str { max_len: usize },
    Bool,
    Map(&'static [i64]),
}

#[derive(Debug, Clone, Copy)]
enum AddressRule {
    Modbus,
    OpcUa,
    S7,
    Any,
}

const fn int(key: &'static str, min: i64, max: i64, required: bool) -> Param {
    Param { key, kind: ParamKind::Int { min, max }, required }
}
const fn string(key: &'static str, required: bool) -> Param {
    Param { key, kind: ParamKind::Str { max_len: 255 }, required }
}

static PLUGINS: &[PluginDef] = &[
    PluginDef {
        name: "Modbus TCP",
        library: "libplugin-modbus-tcp.so",
        description: "This plugin is used to connect devices using modbus tcp protocol",
        node_type: 1,
        single: false,
        // emqx/neuron plugins/modbus/modbus-tcp.json (fixtures/upstream/neuron_plugin_schema_modbus_tcp.json):
        // a real Neuron 2.13.0 refuses a node without `connection_mode` or `interval` (2004).
        params: &[
            string("host", true),
            int("port", 1, 65535, true),
            int("timeout", 1000, 65535, true),
            int("interval", 0, 3000, true),
            Param { key: "connection_mode", kind: ParamKind::Map(&[0, 1]), required: true },
            Param { key: "transport_mode", kind: ParamKind::Map(&[0, 1]), required: false },
            int("max_retries", 0, 3, false),
            int("retry_interval", 0, 10000, false),
        ],
        address: AddressRule::Modbus,
    },
    PluginDef {
        name: "Modbus RTU",
        library: "libplugin-modbus-rtu.so",
        description: "This plugin is used to connect devices using modbus rtu protocol",
        node_type: 1,
        single: false,
        params: &[
            Param { key: "link", kind: ParamKind::Map(&[0, 1]), required: true },
            string("device", false),
            Param { key: "baud", kind: ParamKind::Map(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), required: false },
            Param { key: "parity", kind: ParamKind::Map(&[0, 1, 2, 3, 4]), required: false },
            Param { key: "stop", kind: ParamKind::Map(&[0, 1]), required: false },
            Param { key: "data", kind: ParamKind::Map(&[0, 1, 2, 3]), required: false },
            string("host", false),
            int("port", 1, 65535, false),
            int("timeout", 1000, 65535, true),
        ],
        address: AddressRule::Modbus,
    },
    PluginDef {
        name: "OPC UA",
        library: "libplugin-opcua.so",
        description: "OPC UA plugin",
        node_type: 1,
        single: false,
        params: &[string("url", true), string("username", false), string("password", false)],
        address: AddressRule::OpcUa,
    },
    PluginDef {
        name: "Siemens S7 ISOTCP",
        library: "libplugin-s7comm.so",
        description: "Siemens S7 ISO TCP",
        node_type: 1,
        single: false,
        params: &[string("host", true), int("port", 1, 65535, true), int("rack", 0, 7, true), int("slot", 0, 31, true)],
        address: AddressRule::S7,
    },
    PluginDef {
        name: "File",
        library: "libplugin-file.so",
        description: "File plugin",
        node_type: 1,
        single: false,
        params: &[int("file_length", 1, 1024 * 1024, false)],
        address: AddressRule::Any,
    },
    PluginDef {
        name: "MQTT",
        library: "libplugin-mqtt.so",
        description: "Neuron northbound MQTT plugin",
        node_type: 2,
        single: false,
        // emqx/neuron plugins/mqtt/mqtt.json: `client-id` and `format` are required.
        params: &[
            string("host", true),
            int("port", 1, 65535, true),
            string("client-id", true),
            Param { key: "format", kind: ParamKind::Map(&[0, 1, 2, 3, 4]), required: true },
            Param { key: "version", kind: ParamKind::Map(&[4, 5]), required: false },
            Param { key: "qos", kind: ParamKind::Map(&[0, 1, 2]), required: false },
            Param { key: "ssl", kind: ParamKind::Bool, required: false },
        ],
        address: AddressRule::Any,
    },
    PluginDef {
        name: "eKuiper",
        library: "libplugin-ekuiper.so",
        description: "Neuron northbound eKuiper plugin",
        node_type: 2,
        single: false,
        params: &[string("host", true), int("port", 1, 65535, true)],
        address: AddressRule::Any,
    },
    PluginDef {
        name: "Monitor",
        library: "libplugin-monitor.so",
        description: "Builtin plugin for Neuron monitoring",
        node_type: 2,
        single: true,
        params: &[],
        address: AddressRule::Any,
    },
];

fn plugin(name: &str) -> Option<&'static PluginDef> {
    PLUGINS.iter().find(|p| p.name == name)
}

impl Neuron {
    pub fn handle(&mut self, e: &Engines, req: &Request<'_>) -> Reply {
        let path = req.path.trim_matches('/');
        let body = || serde_json::from_slice::<Value>(req.body).ok().filter(Value::is_object);
        macro_rules! with_body {
            ($f:expr) => {
                match body() {
                    Some(b) => $f(b),
                    None => neuron_error(1002),
                }
            };
        }
        match (req.method, path) {
            ("GET", "version") => Reply::json(
                200,
                &json!({"build_date": "2024-01-01", "revision": "simulated", "version": e.neuron.to_string()}),
            ),
            ("POST", "ping") => neuron_ok(),
            ("GET", "plugin") => self.list_plugins(),
            ("GET", "node") => self.list_nodes(req),
            ("POST", "node") => with_body!(|b| self.create_node(&b)),
            ("DELETE", "node") => with_body!(|b| self.delete_node(&b)),
            ("PUT", "node") => with_body!(|b| self.rename_node(&b)),
            ("GET", "node/setting") => self.get_setting(req),
            ("POST", "node/setting") => with_body!(|b| self.set_setting(&b)),
            ("GET", "group") => self.list_groups(req),
            ("POST", "group") => with_body!(|b| self.create_group(&b)),
            ("DELETE", "group") => with_body!(|b| self.delete_group(&b)),
            ("PUT", "group") => with_body!(|b| self.update_group(&b)),
            ("GET", "tags") => self.list_tags(e, req),
            ("POST", "tags") => with_body!(|b| self.add_tags(e, &b)),
            ("POST", "gtags") => with_body!(|b| self.add_gtags(e, &b)),
            ("PUT", "tags") => with_body!(|b| self.update_tags(e, &b)),
            ("DELETE", "tags") => with_body!(|b| self.delete_tags(&b)),
            ("POST", "subscribe") => with_body!(|b| self.subscribe(&b)),
            ("POST", "subscribes") => with_body!(|b| self.subscribe_many(&b)),
            ("DELETE", "subscribe") => with_body!(|b| self.unsubscribe(&b)),
            ("PUT", "subscribe") => with_body!(|b| self.update_subscription(&b)),
            ("GET", "node/state") => self.node_state(req),
            ("GET", "subscribe") => self.list_subscriptions(req),
            ("GET", "global/drivers") if e.has_global_drivers() => self.export_drivers(e, req),
            ("PUT", "global/drivers") if e.has_global_drivers() => {
                with_body!(|b| self.put_drivers(e, &b))
            }
            _ => Reply::text(404, "404 page not found"),
        }
    }

    fn list_plugins(&self) -> Reply {
        let plugins: Vec<Value> = PLUGINS
            .iter()
            .map(|p| {
                json!({"kind": 1, "node_type": p.node_type, "name": p.name, "library": p.library,
                       "description": p.description, "description_zh": p.description,
                       "schema": p.library.trim_start_matches("libplugin-").trim_end_matches(".so"),
                       "single": p.single, "display": true})
            })
            .collect();
        Reply::json(200, &json!({"plugins": plugins}))
    }

    fn list_nodes(&self, req: &Request<'_>) -> Reply {
        // Only drivers (1) and apps (2) exist; another type is a wrong parameter (1003), as
        // tests/ft/node/test_node.py `test_get_invalid_node_type` expects.
        let node_type: u8 = match req.query.get("type").map(|t| t.parse::<u8>()) {
            None => 1,
            Some(Ok(t @ (1 | 2))) => t,
            Some(_) => return neuron_code(400, 1003),
        };
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.plugin.node_type == node_type)
            .filter(|(_, n)| req.query.get("plugin").is_none_or(|p| p.is_empty() || p == n.plugin.name))
            // `node` and `group` match by substring; `group` also matches the node's own name
            // (emqx/neuron src/core/node_manager.c `neu_node_manager_filter`).
            .filter(|(name, _)| req.query.get("node").is_none_or(|q| name.contains(q.as_str())))
            .filter(|(name, n)| {
                req.query.get("group").is_none_or(|q| name.contains(q.as_str()) || n.groups.keys().any(|g| g.contains(q.as_str())))
            })
            .map(|(name, n)| json!({"name": name, "plugin": n.plugin.name, "support_import_tags": n.plugin.node_type == 1}))
            .collect();
        Reply::json(200, &json!({"nodes": nodes}))
    }

    fn create_node(&mut self, body: &Value) -> Reply {
        let (Some(name), Some(plugin_name)) = (str_field(body, "name"), str_field(body, "plugin")) else {
            return neuron_error(1002);
        };
        match self.insert_node(name, plugin_name, body.get("params")) {
            Ok(()) => neuron_ok(),
            Err(code) => neuron_error(code),
        }
    }

    fn insert_node(&mut self, name: &str, plugin_name: &str, params: Option<&Value>) -> Result<(), u32> {
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(2010);
        }
        let Some(plugin) = plugin(plugin_name) else {
            return Err(2301);
        };
        if self.nodes.contains_key(name) {
            return Err(2002);
        }
        if plugin.single && self.nodes.values().any(|n| std::ptr::eq(n.plugin, plugin)) {
            return Err(2307);
        }
        if let Some(params) = params {
            check_params(plugin, params)?;
        }
        let params = params.cloned();
        self.nodes.insert(name.to_owned(), Node { plugin, params, groups: IndexMap::new() });
        Ok(())
    }

    fn delete_node(&mut self, body: &Value) -> Reply {
        let Some(name) = str_field(body, "name") else {
            return neuron_error(1002);
        };
        if self.nodes.remove(name).is_none() {
            return neuron_error(2003);
        }
        self.subscriptions.retain(|(app, driver, _), _| app != name && driver != name);
        neuron_ok()
    }

    /// `PUT /node {name, new_name}`: renames a node (its subscriptions follow); the checks are
    /// those of tests/ft/node/test_node.py.
    fn rename_node(&mut self, body: &Value) -> Reply {
        let (Some(name), Some(new_name)) = (str_field(body, "name"), str_field(body, "new_name")) else {
            return neuron_error(1002);
        };
        if new_name.is_empty() {
            return neuron_error(2015);
        }
        if name.len() > NAME_MAX || new_name.len() > NAME_MAX {
            return neuron_error(2010);
        }
        if !self.nodes.contains_key(name) {
            return neuron_error(2003);
        }
        if self.nodes.contains_key(new_name) {
            return neuron_error(2002);
        }
        if let Some(node) = self.nodes.remove(name) {
            self.nodes.insert(new_name.to_owned(), node);
        }
        let renamed: Vec<_> =
            self.subscriptions.keys().filter(|(app, driver, _)| app == name || driver == name).cloned().collect();
        for key in renamed {
            if let Some(params) = self.subscriptions.remove(&key) {
                let rename = |n: String| if n == name { new_name.to_owned() } else { n };
                self.subscriptions.insert((rename(key.0), rename(key.1), key.2), params);
            }
        }
        neuron_ok()
    }

    fn get_setting(&self, req: &Request<'_>) -> Reply {
        let name = req.query.get("node").map(String::as_str).unwrap_or_default();
        match self.nodes.get(name) {
            None => neuron_error(2003),
            Some(Node { params: None, .. }) => neuron_code(200, 2005),
            Some(Node { params: Some(params), .. }) => Reply::json(200, &json!({"node": name, "params": params})),
        }
    }

    fn set_setting(&mut self, body: &Value) -> Reply {
        let (Some(name), Some(params)) = (str_field(body, "node"), body.get("params").filter(|p| p.is_object())) else {
            return neuron_error(1002);
        };
        let Some(node) = self.nodes.get_mut(name) else {
            return neuron_error(2003);
        };
        if let Err(code) = check_params(node.plugin, params) {
            return neuron_error(code);
        }
        node.params = Some(params.clone());
        neuron_ok()
    }

    /// `GET /group?node=&group=`: one driver's groups, or with `node` empty or absent every
    /// driver's groups as `{driver, group, interval, tag_count}` (emqx/neuron
    /// `group_config_handle.c` `handle_get_group_config`); `group` filters by substring.
    fn list_groups(&self, req: &Request<'_>) -> Reply {
        let name = req.query.get("node").map(String::as_str).unwrap_or_default();
        let wanted = |group: &str| req.query.get("group").is_none_or(|q| group.contains(q.as_str()));
        if name.is_empty() {
            let groups: Vec<Value> = self
                .nodes
                .iter()
                .filter(|(_, node)| node.plugin.node_type == 1)
                .flat_map(|(driver, node)| node.groups.iter().map(move |(g, group)| (driver, g, group)))
                .filter(|(_, g, _)| wanted(g))
                .map(|(driver, g, group)| {
                    json!({"driver": driver, "group": g, "interval": group.interval, "tag_count": group.tags.len()})
                })
                .collect();
            return Reply::json(200, &json!({"groups": groups}));
        }
        let Some(node) = self.nodes.get(name) else {
            return neuron_error(2003);
        };
        let groups: Vec<Value> = node
            .groups
            .iter()
            .filter(|(g, _)| wanted(g))
            .map(|(g, group)| json!({"name": g, "interval": group.interval, "tag_count": group.tags.len()}))
            .collect();
        Reply::json(200, &json!({"groups": groups}))
    }

    fn create_group(&mut self, body: &Value) -> Reply {
        let (Some(node), Some(group), Some(interval)) =
            (str_field(body, "node"), str_field(body, "group"), body.get("interval").and_then(Value::as_u64))
        else {
            return neuron_error(1002);
        };
        match self.insert_group(node, group, interval) {
            Ok(()) => neuron_ok(),
            Err(code) => neuron_error(code),
        }
    }

    fn insert_group(&mut self, node_name: &str, group: &str, interval: u64) -> Result<(), u32> {
        if node_name.len() > NAME_MAX {
            return Err(2010);
        }
        if group.is_empty() || group.len() > NAME_MAX {
            return Err(2107);
        }
        if interval < 100 {
            return Err(2105);
        }
        let node = self.nodes.get_mut(node_name).ok_or(2003u32)?;
        if node.plugin.node_type != 1 {
            return Err(2103);
        }
        if node.groups.contains_key(group) {
            return Err(2104);
        }
        if node.groups.len() >= MAX_GROUPS_PER_NODE {
            return Err(2108);
        }
        node.groups.insert(group.to_owned(), Group { interval, tags: Vec::new() });
        Ok(())
    }

    fn delete_group(&mut self, body: &Value) -> Reply {
        let (Some(node), Some(group)) = (str_field(body, "node"), str_field(body, "group")) else {
            return neuron_error(1002);
        };
        let Some(node) = self.nodes.get_mut(node) else {
            return neuron_error(2003);
        };
        if node.groups.shift_remove(group).is_none() {
            return neuron_error(2106);
        }
        // Its subscriptions go with it.
        let driver = str_field(body, "node").unwrap_or_default();
        self.subscriptions.retain(|(_, d, g), _| !(d == driver && g == group));
        neuron_ok()
    }

    /// `PUT /group {node, group, new_name?, interval?}`: renames a group (its subscriptions follow)
    /// or changes its interval; the checks and their order are those of Neuron's
    /// tests/ft/group/test_group.py.
    fn update_group(&mut self, body: &Value) -> Reply {
        let (Some(node_name), Some(group)) = (str_field(body, "node"), str_field(body, "group")) else {
            return neuron_error(1002);
        };
        let new_name = str_field(body, "new_name").filter(|n| !n.is_empty());
        let interval = body.get("interval");
        if node_name.len() > NAME_MAX {
            return neuron_error(2010);
        }
        if new_name.is_some_and(|n| n.len() > NAME_MAX) {
            return neuron_error(2107);
        }
        let Some(node) = self.nodes.get_mut(node_name) else {
            return neuron_error(2003);
        };
        if !node.groups.contains_key(group) {
            return neuron_error(2106);
        }
        if new_name.is_none() && interval.is_none() {
            return neuron_error(1002);
        }
        let interval = match interval {
            None => None,
            Some(value) => match value.as_u64().filter(|i| (100..=u64::from(u32::MAX)).contains(i)) {
                Some(interval) => Some(interval),
                None => return neuron_error(2105),
            },
        };
        if let Some(new_name) = new_name
            && new_name != group
            && node.groups.contains_key(new_name)
        {
            return neuron_error(2104);
        }
        if let Some(interval) = interval
            && let Some(existing) = node.groups.get_mut(group)
        {
            existing.interval = interval;
        }
        if let Some(new_name) = new_name
            && new_name != group
            && let Some((position, _, moved)) = node.groups.shift_remove_full(group)
        {
            node.groups.shift_insert(position, new_name.to_owned(), moved);
            let renamed: Vec<_> =
                self.subscriptions.keys().filter(|(_, driver, g)| driver == node_name && g == group).cloned().collect();
            for key in renamed {
                if let Some(params) = self.subscriptions.remove(&key) {
                    self.subscriptions.insert((key.0, key.1, new_name.to_owned()), params);
                }
            }
        }
        neuron_ok()
    }

    fn list_tags(&self, e: &Engines, req: &Request<'_>) -> Reply {
        let node = req.query.get("node").map(String::as_str).unwrap_or_default();
        let group = req.query.get("group").map(String::as_str).unwrap_or_default();
        let Some(node) = self.nodes.get(node) else {
            return neuron_error(2003);
        };
        let Some(group) = node.groups.get(group) else {
            return neuron_error(2106);
        };
        let tags: Vec<Value> = group.tags.iter().map(|tag| read_back_tag(e, tag)).collect();
        Reply::json(200, &json!({"tags": tags}))
    }

    fn add_tags(&mut self, e: &Engines, body: &Value) -> Reply {
        let (Some(node), Some(group), Some(tags)) =
            (str_field(body, "node"), str_field(body, "group"), body.get("tags").and_then(Value::as_array))
        else {
            return neuron_error(1002);
        };
        if !self.nodes.contains_key(node) {
            return neuron_error(2003);
        }
        if let Some((index, code)) = non_numeric_refusal(tags.iter()) {
            return tags_reply(e, index, code);
        }
        let (added, code) = self.add_tags_to_group(e, node, group, 100, tags);
        tags_reply(e, added, code)
    }

    /// `PUT /tags {node, group, tags}`: each tag replaces the one of its name, which must exist
    /// (2201); the checks of an added tag apply (tests/ft/tag/test_tag.py `test_update_tag`,
    /// `test_update_non_existent_tag`).
    fn update_tags(&mut self, e: &Engines, body: &Value) -> Reply {
        let (Some(node_name), Some(group), Some(tags)) =
            (str_field(body, "node"), str_field(body, "group"), body.get("tags").and_then(Value::as_array))
        else {
            return neuron_error(1002);
        };
        let Some(node) = self.nodes.get_mut(node_name) else {
            return neuron_error(2003);
        };
        let address_rule = node.plugin.address;
        let Some(group) = node.groups.get_mut(group) else {
            return neuron_error(2106);
        };
        for (index, tag) in tags.iter().enumerate() {
            if let Err(code) = check_tag(e, address_rule, tag) {
                return tags_reply(e, index, code);
            }
            let name = str_field(tag, "name").unwrap_or_default();
            match group.tags.iter_mut().find(|t| str_field(t, "name") == Some(name)) {
                Some(existing) => *existing = tag.clone(),
                None => return tags_reply(e, index, 2201),
            }
        }
        tags_reply(e, tags.len(), 0)
    }

    /// `DELETE /tags {node, group, tags: [names]}`: names not in the group are ignored.
    fn delete_tags(&mut self, body: &Value) -> Reply {
        let (Some(node_name), Some(group), Some(names)) =
            (str_field(body, "node"), str_field(body, "group"), body.get("tags").and_then(Value::as_array))
        else {
            return neuron_error(1002);
        };
        let Some(node) = self.nodes.get_mut(node_name) else {
            return neuron_error(2003);
        };
        let Some(group) = node.groups.get_mut(group) else {
            return neuron_error(2106);
        };
        let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        group.tags.retain(|t| !str_field(t, "name").is_some_and(|n| names.contains(&n)));
        neuron_ok()
    }

    fn add_gtags(&mut self, e: &Engines, body: &Value) -> Reply {
        let (Some(node), Some(groups)) = (str_field(body, "node"), body.get("groups").and_then(Value::as_array)) else {
            return neuron_error(1002);
        };
        if !self.nodes.contains_key(node) {
            return neuron_error(2003);
        }
        let all_tags = groups.iter().flat_map(|g| g.get("tags").and_then(Value::as_array).into_iter().flatten());
        if let Some((index, code)) = non_numeric_refusal(all_tags) {
            return tags_reply(e, index, code);
        }
        let mut total = 0;
        for group in groups {
            let (Some(name), Some(interval), Some(tags)) = (
                str_field(group, "group"),
                group.get("interval").and_then(Value::as_u64),
                group.get("tags").and_then(Value::as_array),
            ) else {
                return neuron_error(1002);
            };
            if interval < 100 {
                return tags_reply(e, total, 2105);
            }
            let (added, code) = self.add_tags_to_group(e, node, name, interval, tags);
            total += added;
            if code != 0 {
                return tags_reply(e, total, code);
            }
        }
        tags_reply(e, total, 0)
    }

    /// Adds tags in order and stops at the first bad one, keeping the ones before it.
    fn add_tags_to_group(
        &mut self,
        e: &Engines,
        node_name: &str,
        group: &str,
        interval: u64,
        tags: &[Value],
    ) -> (usize, u32) {
        let Some(node) = self.nodes.get_mut(node_name) else {
            return (0, 2003);
        };
        if node.plugin.node_type != 1 {
            return (0, 2103);
        }
        let address_rule = node.plugin.address;
        let group = node.groups.entry(group.to_owned()).or_insert(Group { interval, tags: Vec::new() });
        for (index, tag) in tags.iter().enumerate() {
            if let Err(code) = check_tag(e, address_rule, tag) {
                return (index, code);
            }
            let name = str_field(tag, "name").unwrap_or_default();
            if group.tags.iter().any(|t| str_field(t, "name") == Some(name)) {
                return (index, 2202);
            }
            group.tags.push(tag.clone());
        }
        (tags.len(), 0)
    }

    fn subscribe(&mut self, body: &Value) -> Reply {
        match self.subscribe_one(body) {
            Ok(()) => neuron_ok(),
            Err(code) => neuron_error(code),
        }
    }

    fn subscribe_one(&mut self, body: &Value) -> Result<(), u32> {
        let (Some(app), Some(driver), Some(group)) =
            (str_field(body, "app"), str_field(body, "driver"), str_field(body, "group"))
        else {
            return Err(1002);
        };
        let app_node = self.nodes.get(app).ok_or(2003u32)?;
        // Neuron's guard against an MQTT subscription whose params lack a non-empty `topic`
        // comes before every other check but the app's existence (emqx/neuron
        // src/core/manager_internal.c `neu_manager_subscribe`): 4010, with HTTP 200.
        if let Some(params) = body.get("params")
            && app_node.plugin.name == "MQTT"
            && params.get("topic").and_then(Value::as_str).is_none_or(str::is_empty)
        {
            return Err(4010);
        }
        if app_node.plugin.node_type != 2 {
            return Err(2012);
        }
        let driver_node = self.nodes.get(driver).ok_or(2003u32)?;
        if !driver_node.groups.contains_key(group) {
            return Err(2106);
        }
        let key = (app.to_owned(), driver.to_owned(), group.to_owned());
        let params = body.get("params").cloned().unwrap_or(Value::Null);
        if self.subscriptions.insert(key, params).is_some() {
            // Neuron answers "already subscribed" with HTTP 200 (`neu_http_response`).
            return Err(2101);
        }
        Ok(())
    }

    /// `POST /subscribes {app, groups: [{driver, group, params?}]}`: each as `POST /subscribe`;
    /// the first refusal is the answer.
    fn subscribe_many(&mut self, body: &Value) -> Reply {
        let (Some(app), Some(groups)) = (str_field(body, "app"), body.get("groups").and_then(Value::as_array)) else {
            return neuron_error(1002);
        };
        for group in groups {
            let mut one = group.clone();
            one["app"] = json!(app);
            if let Err(code) = self.subscribe_one(&one) {
                return neuron_error(code);
            }
        }
        neuron_ok()
    }

    /// The `(app, driver, group)` a subscription call names, once both nodes exist (1002 for a
    /// body without them, 2003 for a missing node).
    fn existing_nodes_key(&self, body: &Value) -> Result<(String, String, String), u32> {
        let (Some(app), Some(driver), Some(group)) =
            (str_field(body, "app"), str_field(body, "driver"), str_field(body, "group"))
        else {
            return Err(1002);
        };
        if !self.nodes.contains_key(app) || !self.nodes.contains_key(driver) {
            return Err(2003);
        }
        Ok((app.to_owned(), driver.to_owned(), group.to_owned()))
    }

    /// `PUT /subscribe {app, driver, group, params}`: new params for an existing subscription;
    /// 2102 when there is none (tests/ft/app/test_app.py
    /// `test_mqtt_update_subscribe_non_existent_group`).
    fn update_subscription(&mut self, body: &Value) -> Reply {
        let key = match self.existing_nodes_key(body) {
            Ok(key) => key,
            Err(code) => return neuron_error(code),
        };
        match self.subscriptions.get_mut(&key) {
            Some(params) => {
                *params = body.get("params").cloned().unwrap_or(Value::Null);
                neuron_ok()
            }
            None => neuron_error(2102),
        }
    }

    /// `DELETE /subscribe {app, driver, group}`.
    fn unsubscribe(&mut self, body: &Value) -> Reply {
        let key = match self.existing_nodes_key(body) {
            Ok(key) => key,
            Err(code) => return neuron_error(code),
        };
        match self.subscriptions.remove(&key) {
            Some(_) => neuron_ok(),
            None => neuron_error(2102),
        }
    }

    /// `GET /node/state?node=`: running state, link state and, for apps, how many groups they
    /// subscribe (tests/ft/app/test_app.py `test_mqtt_sub_group_count`).
    fn node_state(&self, req: &Request<'_>) -> Reply {
        let name = req.query.get("node").map(String::as_str).unwrap_or_default();
        if !self.nodes.contains_key(name) {
            return neuron_error(2003);
        }
        let sub_group_count = self.subscriptions.keys().filter(|(app, _, _)| app == name).count();
        Reply::json(200, &json!({"node": name, "running": 3, "link": 1, "rtt": 0, "sub_group_count": sub_group_count}))
    }

    fn list_subscriptions(&self, req: &Request<'_>) -> Reply {
        let app = req.query.get("app").map(String::as_str).unwrap_or_default();
        let groups: Vec<Value> = self
            .subscriptions
            .iter()
            .filter(|((a, _, _), _)| a == app)
            .filter(|((_, d, _), _)| req.query.get("driver").is_none_or(|q| d.contains(q.as_str())))
            .filter(|((_, _, g), _)| req.query.get("group").is_none_or(|q| g.contains(q.as_str())))
            .map(|((_, driver, group), params)| json!({"driver": driver, "group": group, "params": params}))
            .collect();
        Reply::json(200, &json!({"groups": groups}))
    }

    fn export_drivers(&self, e: &Engines, req: &Request<'_>) -> Reply {
        let wanted: Option<Vec<&str>> = req.query.get("name").map(|n| n.split(',').collect());
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.plugin.node_type == 1)
            .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w.contains(&name.as_str())))
            .map(|(name, n)| {
                let groups: Vec<Value> = n
                    .groups
                    .iter()
                    .map(|(g, group)| {
                        let tags: Vec<Value> = group.tags.iter().map(|tag| read_back_tag(e, tag)).collect();
                        json!({"group": g, "interval": group.interval, "tags": tags})
                    })
                    .collect();
                json!({"name": name, "plugin": n.plugin.name, "params": n.params.clone().unwrap_or(json!({})), "groups": groups})
            })
            .collect();
        Reply::json(200, &json!({"nodes": nodes}))
    }

    /// `PUT /global/drivers`: decode strictly, then replace each node in order; on a failure the
    /// nodes this call created are removed again, but deleted pre-existing nodes stay deleted.
    fn put_drivers(&mut self, e: &Engines, body: &Value) -> Reply {
        let Some(nodes) = decode_drivers(body) else {
            return neuron_error(1002);
        };
        if let Err(code) = fast_check(e, &nodes) {
            return neuron_error(code);
        }
        let mut created: Vec<String> = Vec::new();
        for node in &nodes {
            if let Err(code) = self.replace_driver(e, node) {
                for name in &created {
                    self.nodes.remove(name);
                }
                self.nodes.remove(node.name);
                return neuron_error(code);
            }
            created.push(node.name.to_owned());
        }
        neuron_ok()
    }

    fn replace_driver(&mut self, e: &Engines, node: &DriverDoc<'_>) -> Result<(), u32> {
        let plugin = plugin(node.plugin).ok_or(2301u32)?;
        if plugin.node_type != 1 {
            return Err(3019);
        }
        self.nodes.remove(node.name);
        self.insert_node(node.name, node.plugin, Some(node.params))?;
        for group in &node.groups {
            self.insert_group(node.name, group.name, group.interval)?;
            let (_, code) = self.add_tags_to_group(e, node.name, group.name, group.interval, group.tags);
            if code != 0 {
                return Err(code);
            }
        }
        Ok(())
    }

    pub fn snapshot(&self) -> Value {
        let nodes: Map<String, Value> = self
            .nodes
            .iter()
            .map(|(name, n)| {
                let groups: Map<String, Value> = n
                    .groups
                    .iter()
                    .map(|(g, group)| (g.clone(), json!({"interval": group.interval, "tags": group.tags})))
                    .collect();
                (name.clone(), json!({"plugin": n.plugin.name, "params": n.params, "groups": groups}))
            })
            .collect();
        let subscriptions: Vec<Value> = self
            .subscriptions
            .keys()
            .map(|(app, driver, group)| json!({"app": app, "driver": driver, "group": group}))
            .collect();
        json!({"nodes": nodes, "subscriptions": subscriptions})
    }
}

fn tags_reply(e: &Engines, index: usize, code: u32) -> Reply {
    let status = match code {
        0 => 200,
        2202 => 409,
        2003 | 2106 => 404,
        2203..=2209 | 2212 => e.tag_error_status(),
        other => crate::reply::neuron_status(other),
    };
    Reply::json(status, &json!({"index": index, "error": code}))
}

struct DriverDoc<'a> {
    name: &'a str,
    plugin: &'a str,
    params: &'a Value,
    groups: Vec<GroupDoc<'a>>,
}

struct GroupDoc<'a> {
    name: &'a str,
    interval: u64,
    tags: &'a [Value],
}

/// Neuron's `neu_json_decode_gtag_json` strictness: `params` and `groups` are required, groups are
/// keyed `group`, and duplicate node, group or tag names make the whole body undecodable.
fn decode_drivers(body: &Value) -> Option<Vec<DriverDoc<'_>>> {
    let mut nodes = Vec::new();
    for node in body.get("nodes")?.as_array()? {
        let mut groups = Vec::new();
        for group in node.get("groups")?.as_array()? {
            let tags = group.get("tags")?.as_array()?;
            if tags.iter().any(|t| str_field(t, "name").is_none()) {
                return None;
            }
            let interval = group.get("interval")?.as_u64()?;
            groups.push(GroupDoc { name: str_field(group, "group")?, interval, tags });
        }
        let params = node.get("params").filter(|p| p.is_object())?;
        nodes.push(DriverDoc { name: str_field(node, "name")?, plugin: str_field(node, "plugin")?, params, groups });
    }
    Some(nodes)
}

/// Neuron's "fast check" of a `PUT /global/drivers` body, before anything is touched, in its
/// order (emqx/neuron plugins/restful/adapter_handle.c `send_drivers`): per node the name and
/// plugin-name lengths (2010, 3013), at most 512 groups (2108), a unique name (1002); per group
/// name length (2107), interval (2105), a unique name in its node (1002); per tag name, address
/// and description lengths (2206, 2207, 2208), precision (2209), a unique name in its group (1002).
fn fast_check(e: &Engines, nodes: &[DriverDoc<'_>]) -> Result<(), u32> {
    const PLUGIN_NAME_MAX: usize = 31;
    let mut node_seen = std::collections::HashSet::new();
    for node in nodes {
        if node.name.len() > NAME_MAX {
            return Err(2010);
        }
        if node.plugin.len() > PLUGIN_NAME_MAX {
            return Err(3013);
        }
        if node.groups.len() > MAX_GROUPS_PER_NODE {
            return Err(2108);
        }
        if !node_seen.insert(node.name) {
            return Err(1002);
        }
        let mut group_seen = std::collections::HashSet::new();
        for group in &node.groups {
            if group.name.len() > NAME_MAX {
                return Err(2107);
            }
            if group.interval < 100 {
                return Err(2105);
            }
            if !group_seen.insert(group.name) {
                return Err(1002);
            }
            let mut tag_seen = std::collections::HashSet::new();
            for tag in group.tags {
                let text = |key: &str| str_field(tag, key).unwrap_or_default().len();
                if text("name") > NAME_MAX {
                    return Err(2206);
                }
                if text("address") > NAME_MAX {
                    return Err(2207);
                }
                if text("description") > e.tag_description_max() {
                    return Err(2208);
                }
                if tag.get("precision").and_then(Value::as_u64).is_some_and(|p| p > 17) {
                    return Err(2209);
                }
                if !tag_seen.insert(str_field(tag, "name").unwrap_or_default()) {
                    return Err(1002);
                }
            }
        }
    }
    Ok(())
}

/// What a plugin's `setting` callback rejects, as 2004.
fn check_params(plugin: &PluginDef, params: &Value) -> Result<(), u32> {
    let params = params.as_object().ok_or(2004u32)?;
    for param in plugin.params {
        let Some(value) = params.get(param.key) else {
            if param.required {
                return Err(2004);
            }
            continue;
        };
        let ok = match &param.kind {
            ParamKind::Int { min, max } => value.as_i64().is_some_and(|v| (*min..=*max).contains(&v)),
            ParamKind::Str { max_len } => value.as_str().is_some_and(|s| s.len() <= *max_len),
            ParamKind::Bool => value.is_boolean(),
            ParamKind::Map(allowed) => value.as_i64().is_some_and(|v| allowed.contains(&v)),
        };
        if !ok {
            return Err(2004);
        }
    }
    Ok(())
}

/// Per-tag checks, in Neuron's order: lengths, type, attribute, precision, address.
fn check_tag(e: &Engines, rule: AddressRule, tag: &Value) -> Result<(), u32> {
    let name = str_field(tag, "name").ok_or(1002u32)?;
    let address = tag.get("address").and_then(Value::as_str).unwrap_or_default();
    let tag_type = tag.get("type").and_then(Value::as_u64).ok_or(1002u32)?;
    let attribute = tag.get("attribute").and_then(Value::as_u64).ok_or(1002u32)?;
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(2206);
    }
    if address.len() > NAME_MAX {
        return Err(2207);
    }
    if tag.get("description").and_then(Value::as_str).is_some_and(|d| d.len() > e.tag_description_max()) {
        return Err(2208);
    }
    if !matches!(tag_type, 1..=34 | 40) {
        return Err(2204);
    }
    if attribute == 0 || attribute > 15 {
        return Err(2203);
    }
    if tag.get("precision").and_then(Value::as_u64).is_some_and(|p| p > 17) {
        return Err(2209);
    }
    // A bias (emqx/neuron src/adapter/driver/driver.c, tag validation): numeric types only
    // (INT8 to DOUBLE), within ±1000, and never on a writable tag; else 2212.
    let bias = tag.get("bias").and_then(Value::as_f64).unwrap_or(0.0);
    if bias != 0.0 && (!(1..=10).contains(&tag_type) || !(-1000.0..=1000.0).contains(&bias) || attribute & 2 != 0) {
        return Err(2212);
    }
    let is_static = attribute & 8 != 0;
    if is_static {
        return if tag.get("value").is_some() { Ok(()) } else { Err(2203) };
    }
    check_address(rule, address, tag_type)
}

/// Neuron's REST check before any tag of a `POST /tags` or `/gtags` is added: a precision,
/// decimal or bias above 0 on a string, bool, bit, time or custom tag refuses the whole request
/// with 2209, 2211 or 2212 and the tag's index (emqx/neuron plugins/restful/datatag_handle.c).
fn non_numeric_refusal<'a>(tags: impl Iterator<Item = &'a Value>) -> Option<(usize, u32)> {
    const NON_NUMERIC: [u64; 6] = [11, 12, 13, 20, 21, 40];
    tags.enumerate().find_map(|(index, tag)| {
        let tag_type = tag.get("type").and_then(Value::as_u64)?;
        if !NON_NUMERIC.contains(&tag_type) {
            return None;
        }
        let above_zero = |key: &str| tag.get(key).and_then(Value::as_f64).is_some_and(|v| v > 0.0);
        let code = [("precision", 2209), ("decimal", 2211), ("bias", 2212)]
            .into_iter()
            .find(|(key, _)| above_zero(key))
            .map(|(_, code)| code)?;
        Some((index, code))
    })
}

/// A tag as Neuron lists it (`neu_json_encode_tag`): every field filled in, `precision` 0,
/// `decimal` and `bias` 0.0 and `description` "" when never given, `value` only on static tags,
/// `unit` from Neuron 2.15.
fn read_back_tag(e: &Engines, tag: &Value) -> Value {
    let number = |key: &str| tag.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let mut listed = json!({
        "type": tag.get("type").cloned().unwrap_or(Value::Null),
        "name": tag.get("name").cloned().unwrap_or(Value::Null),
        "attribute": tag.get("attribute").cloned().unwrap_or(Value::Null),
        "precision": tag.get("precision").and_then(Value::as_i64).unwrap_or(0),
        "decimal": number("decimal"),
        "bias": number("bias"),
        "address": tag.get("address").and_then(Value::as_str).unwrap_or_default(),
        "description": tag.get("description").and_then(Value::as_str).unwrap_or_default(),
    });
    if let Some(value) = tag.get("value") {
        listed["value"] = value.clone();
    }
    if e.tag_units() {
        listed["unit"] = json!(tag.get("unit").and_then(Value::as_str).unwrap_or_default());
    }
    listed
}

fn check_address(rule: AddressRule, address: &str, tag_type: u64) -> Result<(), u32> {
    match rule {
        AddressRule::Modbus => check_modbus_address(address, tag_type),
        AddressRule::OpcUa => {
            let valid = address.split_once('!').is_some_and(|(ns, id)| ns.parse::<u16>().is_ok() && !id.is_empty());
            if valid { Ok(()) } else { Err(2205) }
        }
        AddressRule::S7 => {
            let upper = address.to_ascii_uppercase();
            let valid = upper.starts_with("DB") || ["I", "Q", "M", "V"].iter().any(|p| upper.starts_with(p));
            if valid && upper.len() > 1 { Ok(()) } else { Err(2205) }
        }
        AddressRule::Any => Ok(()),
    }
}

/// `<slave>!<area><offset>[#B|#L|#BB|#BL|#LL|#LB][.bit|.len(H|L|D|E)]`; coils and discrete inputs
/// (areas 0 and 1) carry bits only.
fn check_modbus_address(address: &str, tag_type: u64) -> Result<(), u32> {
    let (slave, rest) = address.split_once('!').ok_or(2205u32)?;
    if slave.parse::<u8>().is_err() {
        return Err(2205);
    }
    let (register, suffix) = match rest.find(['#', '.']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let area = register.chars().next().ok_or(2205u32)?;
    if !matches!(area, '0' | '1' | '3' | '4') || register.len() < 2 || !register.chars().all(|c| c.is_ascii_digit()) {
        return Err(2205);
    }
    if let Some(flags) = suffix.strip_prefix('#') {
        let flag = flags.split('.').next().unwrap_or_default();
        if !matches!(flag, "B" | "L" | "BB" | "BL" | "LL" | "LB") {
            return Err(2205);
        }
    }
    if matches!(area, '0' | '1') && tag_type != 11 && tag_type != 12 {
        return Err(2204);
    }
    Ok(())
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}
