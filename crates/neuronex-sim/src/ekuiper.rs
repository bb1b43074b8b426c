//! The eKuiper engine of one instance (`/api/ekuiper/...`): streams, tables, rules, imports and
//! portable plugins, with the status codes and texts docs/SIMULATOR.md lists with their upstream sources.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

use crate::Request;
use crate::plugin_zip;
use crate::reply::{Reply, ekuiper_error};
use crate::versions::{Engines, RuleIdCheck};

/// Source types a 2.x eKuiper knows without plugins.
const BUILTIN_SOURCES: &[&str] = &[
    "neuron",
    "simulator",
    "mqtt",
    "httppull",
    "httppush",
    "file",
    "memory",
    "websocket",
    "edgex",
    "video",
    "kafka",
    "sql",
    "redisSub",
];
const BUILTIN_SINKS: &[&str] = &[
    "log",
    "mqtt",
    "rest",
    "memory",
    "nop",
    "file",
    "neuron",
    "edgex",
    "influx",
    "influx2",
    "redis",
    "redisPub",
    "websocket",
    "kafka",
    "sql",
    "image",
    "tdengine",
];
/// Sections of a data-import document, in eKuiper's order.
const IMPORT_SECTIONS: &[&str] = &[
    "streams",
    "tables",
    "rules",
    "nativePlugins",
    "portablePlugins",
    "sourceConfig",
    "sinkConfig",
    "connectionConfig",
    "Service",
    "Schema",
    "uploads",
    "scripts",
];

#[derive(Debug, Default)]
pub struct Ekuiper {
    streams: BTreeMap<String, StreamDef>,
    tables: BTreeMap<String, StreamDef>,
    rules: BTreeMap<String, RuleState>,
    plugins: BTreeMap<String, plugin_zip::PortableMeta>,
    /// Everything else a data import carries (sourceConfig, sinkConfig, ...), stored as given.
    other_sections: BTreeMap<String, BTreeMap<String, Value>>,
    last_import_status: Option<Value>,
    /// How running rules' metrics grow with each status read (the instance's rule faults).
    pub health: RuleHealth,
}

/// Records a healthy rule's source takes in per status read.
pub const RECORDS_PER_READ: u64 = 10;

/// How a running rule's metrics move: each status read adds these, so a test sees the same numbers
/// however fast it runs.
#[derive(Debug, Clone, Copy)]
pub struct RuleHealth {
    pub exceptions_per_read: u64,
    pub records_per_read: u64,
}

impl Default for RuleHealth {
    fn default() -> RuleHealth {
        RuleHealth { exceptions_per_read: 0, records_per_read: RECORDS_PER_READ }
    }
}

#[derive(Debug, Clone)]
struct StreamDef {
    sql: String,
    fields: Vec<(String, String)>,
    options: BTreeMap<String, String>,
}

impl StreamDef {
    fn source_type(&self) -> String {
        self.options.get("TYPE").cloned().unwrap_or_else(|| "mqtt".to_owned())
    }
}

#[derive(Debug, Clone)]
struct RuleState {
    definition: Value,
    /// The rule as it was given: `GET /rules/{id}` answers it verbatim (rest_test.go
    /// `Test_rulesManageHandler`, "get rule").
    text: String,
    run: RuleRun,
    last_start_ms: u64,
    last_stop_ms: u64,
    /// Counted by its status reads (see `RuleHealth`).
    exceptions: u64,
    records_in: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum RuleRun {
    Running,
    StoppedManually,
    StoppedByError(String),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Stream,
    Table,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Stream => "stream",
            Kind::Table => "table",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Kind::Stream => "Stream",
            Kind::Table => "Table",
        }
    }
}

/// A plugin install that needs its zip downloaded before it can finish.
#[derive(Debug, Clone)]
pub struct PendingInstall {
    pub name: String,
    pub url: String,
    pub update: bool,
}

pub enum Outcome {
    Done(Reply),
    Download(PendingInstall),
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Outcome {
        Outcome::Done(reply)
    }
}

impl Ekuiper {
    pub fn handle(&mut self, e: &Engines, req: &Request<'_>, now_ms: u64) -> Outcome {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let reply = match (req.method, segments.as_slice()) {
            ("GET", []) => {
                Reply::json(200, &json!({"version": e.ekuiper.to_string(), "os": "linux", "upTimeSeconds": 42}))
            }
            ("GET", ["ping"]) => Reply::text(200, ""),
            ("POST", ["streams"]) => self.create_stream(e, Kind::Stream, req.body),
            ("POST", ["tables"]) => self.create_stream(e, Kind::Table, req.body),
            ("GET", ["streams"]) => Reply::json(200, &json!(self.streams.keys().collect::<Vec<_>>())),
            ("GET", ["tables"]) => Reply::json(200, &json!(self.tables.keys().collect::<Vec<_>>())),
            ("GET", ["streamdetails"]) => self.stream_details(Kind::Stream),
            ("GET", ["tabledetails"]) => self.stream_details(Kind::Table),
            ("GET", ["streams", name, "schema"]) => self.stream_schema(e, Kind::Stream, name),
            ("GET", ["tables", name, "schema"]) => self.stream_schema(e, Kind::Table, name),
            ("GET", ["streams", name]) => self.describe_stream(e, Kind::Stream, name),
            ("GET", ["tables", name]) => self.describe_stream(e, Kind::Table, name),
            ("PUT", ["streams", name]) => self.replace_stream(e, Kind::Stream, name, req.body),
            ("PUT", ["tables", name]) => self.replace_stream(e, Kind::Table, name, req.body),
            ("DELETE", ["streams", name]) => self.drop_stream(e, Kind::Stream, name, req.query_flag("force")),
            ("DELETE", ["tables", name]) => self.drop_stream(e, Kind::Table, name, req.query_flag("force")),
            ("POST", ["rules"]) => self.create_rule(e, req.body, now_ms),
            ("GET", ["rules"]) => self.list_rules(e),
            ("POST", ["rules", "validate"]) => self.validate_rule(e, req.body),
            ("GET", ["rules", "status", "all"]) => self.all_statuses(e),
            ("GET", ["rules", id]) => self.describe_rule(e, id),
            ("PUT", ["rules", id]) => self.update_rule(e, id, req.body, now_ms),
            ("DELETE", ["rules", id]) => self.drop_rule(e, id),
            ("GET", ["rules", id, "status"]) => self.rule_status(e, id),
            ("POST", ["rules", id, action @ ("start" | "stop" | "restart")]) => {
                self.control_rule(e, id, action, now_ms)
            }
            ("POST", ["data", "import"]) => self.data_import(e, req.body, req.query_flag("partial"), now_ms),
            ("GET", ["data", "import", "status"]) => self.import_status(),
            ("POST", ["ruleset", "import"]) => self.ruleset_import(e, req.body, now_ms),
            ("POST", ["ruleset", "export"]) => self.ruleset_export(),
            // eKuiper's portable manager lists each plugin's info (name, version, language,
            // executable, sources, sinks, functions), not names: internal/server/portable_init.go
            // `portablesHandler` answers `portableManager.List()`.
            ("GET", ["plugins", "portables"]) => {
                let listed: Vec<Value> = self.plugins.iter().map(|(name, meta)| meta.to_json(name)).collect();
                Reply::json(200, &json!(listed))
            }
            ("POST", ["plugins", "portables"]) => {
                return self.start_plugin_install(e, req.body, None);
            }
            ("PUT", ["plugins", "portables", name]) => {
                return self.start_plugin_install(e, req.body, Some(name));
            }
            ("GET", ["plugins", "portables", name]) => self.describe_plugin(e, name),
            ("GET", ["plugins", "portables", name, "status"]) => self.plugin_status(e, name),
            ("DELETE", ["plugins", "portables", name]) => self.delete_plugin(e, name),
            _ => Reply::text(404, "404 page not found"),
        };
        Outcome::Done(reply)
    }

    // ----- streams and tables -----

    fn create_stream(&mut self, e: &Engines, kind: Kind, body: &[u8]) -> Reply {
        let sql = match statement_body(body) {
            Ok(sql) => sql,
            Err(reason) => {
                return ekuiper_error(
                    e,
                    1000,
                    &format!("Invalid body: Error decoding the statement descriptor: {reason}"),
                );
            }
        };
        // The statement decides what is created: `CREATE TABLE` posted to `/streams` makes a table
        // (eKuiper's rest_test.go `Test_sourcesManageHandler`, "create table").
        let (kind, name, def) = match parse_create(&sql) {
            Ok(parsed) => parsed,
            Err(reason) => {
                return ekuiper_error(e, 1000, &format!("{} command error: {reason}", kind.title()));
            }
        };
        let store = self.store_mut(kind);
        if store.contains_key(&name) {
            let message =
                format!("{} command error: Create {} fails: Item {name} already exists.", kind.title(), kind.word());
            return ekuiper_error(e, 3000, &message);
        }
        store.insert(name.clone(), def);
        Reply::text(201, format!("{} {name} is created.", kind.title()))
    }

    fn replace_stream(&mut self, e: &Engines, kind: Kind, name: &str, body: &[u8]) -> Reply {
        let sql = match statement_body(body) {
            Ok(sql) => sql,
            Err(reason) => {
                return ekuiper_error(
                    e,
                    1000,
                    &format!("Invalid body: Error decoding the statement descriptor: {reason}"),
                );
            }
        };
        match parse_create(&sql) {
            Ok((_, parsed_name, def)) if parsed_name == name => {
                if let Some(reason) = self.store(kind).get(name).and_then(|old| replace_refusal(e, name, old, &def)) {
                    return ekuiper_error(e, 3000, &format!("{} command error: {reason}", kind.title()));
                }
                self.store_mut(kind).insert(name.to_owned(), def);
                Reply::text(200, format!("{} {name} is replaced.", kind.title()))
            }
            Ok(_) => ekuiper_error(
                e,
                3000,
                &format!(
                    "{} command error: Replace {name} fails: the sql statement must update the {name} source.",
                    kind.title()
                ),
            ),
            Err(reason) => ekuiper_error(e, 1000, &format!("{} command error: {reason}", kind.title())),
        }
    }

    fn describe_stream(&self, e: &Engines, kind: Kind, name: &str) -> Reply {
        let Some(def) = self.store(kind).get(name) else {
            let message =
                format!("describe {} error: Describe {} fails, {name} is not found.", kind.word(), kind.word());
            return ekuiper_error(e, 3000, &message);
        };
        // eKuiper answers its parsed statement: options under their JSON names, no statement text,
        // `StreamFields` null for a schemaless stream, `StreamType` 0 (stream) or 1 (table)
        // (rest_test.go `Test_sourcesManageHandler`, "get stream" and "get table").
        let fields: Vec<Value> = def.fields.iter().map(|(field, ty)| json!({"Name": field, "FieldType": ty})).collect();
        let fields = if fields.is_empty() { Value::Null } else { Value::Array(fields) };
        let options: serde_json::Map<String, Value> =
            def.options.iter().map(|(key, value)| (key.to_lowercase(), option_value(key, value))).collect();
        let stream_type = if kind == Kind::Table { 1 } else { 0 };
        Reply::json(
            200,
            &json!({"Name": name, "Options": options, "Statement": null, "StreamFields": fields, "StreamType": stream_type}),
        )
    }

    /// The fields a stream or table declares, by name (`{}` for a schemaless one).
    fn stream_schema(&self, e: &Engines, kind: Kind, name: &str) -> Reply {
        let Some(def) = self.store(kind).get(name) else {
            let message =
                format!("describe {} error: Describe {} fails, {name} is not found.", kind.word(), kind.word());
            return ekuiper_error(e, 3000, &message);
        };
        let schema: serde_json::Map<String, Value> =
            def.fields.iter().map(|(field, ty)| (field.clone(), json!({"type": ty}))).collect();
        Reply::json(200, &Value::Object(schema))
    }

    fn stream_details(&self, kind: Kind) -> Reply {
        let items: Vec<Value> = self
            .store(kind)
            .iter()
            .map(|(name, def)| {
                json!({"name": name, "type": def.source_type(), "format": def.options.get("FORMAT").cloned().unwrap_or_else(|| "json".into())})
            })
            .collect();
        Reply::json(200, &json!(items))
    }

    fn drop_stream(&mut self, e: &Engines, kind: Kind, name: &str, force: bool) -> Reply {
        if !self.store(kind).contains_key(name) {
            let message = if e.ekuiper >= crate::versions::Version::new(2, 4, 0) {
                format!("delete {} error: {} {name} is not found", kind.word(), kind.word())
            } else {
                format!("delete {} error: {name} is not found", kind.word())
            };
            return ekuiper_error(e, 1002, &message);
        }
        if e.ekuiper_v2()
            && !force
            && self.rules.values().any(|rule| rule_sources(&rule.definition).iter().any(|s| s == name))
        {
            return ekuiper_error(e, 1000, &format!("{} {name} has been referenced by other rules", kind.word()));
        }
        self.store_mut(kind).remove(name);
        Reply::text(200, format!("{} {name} is dropped.", kind.title()))
    }

    fn store(&self, kind: Kind) -> &BTreeMap<String, StreamDef> {
        match kind {
            Kind::Stream => &self.streams,
            Kind::Table => &self.tables,
        }
    }

    fn store_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, StreamDef> {
        match kind {
            Kind::Stream => &mut self.streams,
            Kind::Table => &mut self.tables,
        }
    }

    // ----- rules -----

    fn create_rule(&mut self, e: &Engines, body: &[u8], now_ms: u64) -> Reply {
        let rule = match serde_json::from_slice::<Value>(body) {
            Ok(rule) if rule.is_object() => rule,
            Ok(_) => {
                let text = String::from_utf8_lossy(body);
                return ekuiper_error(
                    e,
                    1000,
                    &format!(
                        "invalid rule json: Parse rule {text} error : json: cannot unmarshal into Go value of type def.Rule."
                    ),
                );
            }
            Err(err) => {
                let text = String::from_utf8_lossy(body);
                let err = go_json_error(&err, body);
                return ekuiper_error(e, 1000, &format!("invalid rule json: Parse rule {text} error : {err}."));
            }
        };
        if let Err(reason) = validate_rule_shape(e, &rule, None) {
            return ekuiper_error(e, 1000, &format!("invalid rule json: {reason}"));
        }
        let id = rule_id(&rule);
        if self.rules.contains_key(&id) {
            return ekuiper_error(e, 1000, &format!("rule {id} already exists"));
        }
        match self.plan(e, &rule) {
            Ok(run) => {
                self.store_rule(id.clone(), rule, String::from_utf8_lossy(body).into_owned(), run, now_ms);
                Reply::text(201, format!("Rule {id} was created successfully."))
            }
            Err((code, reason)) => ekuiper_error(e, code, &reason),
        }
    }

    fn update_rule(&mut self, e: &Engines, id: &str, body: &[u8], now_ms: u64) -> Reply {
        let mut rule = match serde_json::from_slice::<Value>(body) {
            Ok(rule) if rule.is_object() => rule,
            Ok(_) | Err(_) => {
                let text = String::from_utf8_lossy(body);
                return ekuiper_error(
                    e,
                    1000,
                    &format!("Update rule error: Invalid rule json: Parse rule {text} error."),
                );
            }
        };
        if !self.rules.contains_key(id) && !e.rule_put_upserts() {
            return ekuiper_error(e, 1002, &format!("Rule not found: Rule {id} is not found."));
        }
        // eKuiper 1.x puts the stored secret back where an update sends the mask it showed
        // (v1.14 `internal/server/rule_manager.go` `replaceRulePassword`).
        let mut masked_back = false;
        if !e.ekuiper_v2()
            && let Some(stored) = self.rules.get(id)
        {
            masked_back = restore_masked_secrets(&stored.definition, &mut rule);
        }
        let body_has_id = rule.get("id").is_some() && !masked_back;
        match rule.get("id") {
            None => {
                rule["id"] = json!(id);
            }
            Some(body_id) if body_id.as_str() != Some(id) => {
                return ekuiper_error(
                    e,
                    1000,
                    "Update rule error: Invalid rule json: RuleId is not consistent with rule id.",
                );
            }
            Some(_) => {}
        }
        if let Err(reason) = validate_rule_shape(e, &rule, None) {
            return ekuiper_error(e, 1000, &format!("Update rule error: Invalid rule json: {reason}"));
        }
        if let Err(reason) = self.check_version(e, id, &rule) {
            return ekuiper_error(e, 1000, &format!("Update rule error: {reason}"));
        }
        match self.plan(e, &rule) {
            Ok(run) => {
                let text = if body_has_id { String::from_utf8_lossy(body).into_owned() } else { rule.to_string() };
                self.store_rule(id.to_owned(), rule, text, run, now_ms);
                Reply::text(200, format!("Rule {id} was updated successfully."))
            }
            // A failed update leaves the old rule running.
            Err((code, reason)) => ekuiper_error(e, code, &format!("Update rule error: {reason}")),
        }
    }

    /// From eKuiper 2.2 a stored rule refuses an update or import whose `version` is not greater
    /// than its own (eKuiper's `CanReplace`: two missing versions pass; otherwise the new one
    /// must be greater as text, so an equal or a missing one is "lower").
    fn check_version(&self, e: &Engines, id: &str, rule: &Value) -> Result<(), String> {
        if e.ekuiper < crate::versions::Version::new(2, 2, 0) {
            return Ok(());
        }
        let Some(stored) = self.rules.get(id) else {
            return Ok(());
        };
        let old = stored.definition.get("version").and_then(Value::as_str).unwrap_or_default();
        let new = rule.get("version").and_then(Value::as_str).unwrap_or_default();
        if can_replace(old, new) {
            Ok(())
        } else {
            Err(format!("rule {id} already exists with version ({old}), new version ({new}) is lower"))
        }
    }

    fn store_rule(&mut self, id: String, rule: Value, text: String, run: RuleRun, now_ms: u64) {
        let triggered = rule.get("triggered").and_then(Value::as_bool).unwrap_or(true);
        let run = match run {
            RuleRun::Running if !triggered => RuleRun::StoppedManually,
            other => other,
        };
        let last_start_ms = if run == RuleRun::Running { now_ms } else { 0 };
        self.rules.insert(
            id,
            RuleState { definition: rule, text, run, last_start_ms, last_stop_ms: 0, exceptions: 0, records_in: 0 },
        );
    }

    /// What planning the rule does: streams and tables must exist, their source types and the
    /// sinks must be known. Errors are `(code, text)`; in 1.x an unknown source type only shows
    /// when the rule runs, so the rule is stored stopped.
    fn plan(&self, e: &Engines, rule: &Value) -> Result<RuleRun, (u32, String)> {
        if let Some(graph) = rule.get("graph") {
            return plan_graph(graph).map(|()| RuleRun::Running).map_err(|reason| (1000, reason));
        }
        let mut run = RuleRun::Running;
        for source in rule_sources(rule) {
            let def = self.streams.get(&source).or_else(|| self.tables.get(&source));
            let Some(def) = def else {
                return Err((
                    e.plan_error_code(),
                    format!("fail to get stream {source}, please check if stream is created"),
                ));
            };
            let source_type = def.source_type();
            if !self.source_type_known(&source_type) {
                if e.ekuiper_v2() {
                    return Err((1000, format!("source type {source_type} not found")));
                }
                run = RuleRun::StoppedByError(format!("source {source_type} not found"));
            }
        }
        let mut enabled_sinks = 0;
        for action in rule.get("actions").and_then(Value::as_array).into_iter().flatten() {
            for (sink, props) in action.as_object().into_iter().flatten() {
                if !self.sink_known(sink) {
                    return Err((e.plan_error_code(), format!("sink {sink} is not defined")));
                }
                // Before NeuronEX 3.9.2 `enable` is an unknown property: ignored, the sink runs.
                let disabled = e.sink_enable() && props.get("enable") == Some(&Value::Bool(false));
                enabled_sinks += usize::from(!disabled);
            }
        }
        if e.sink_enable() && enabled_sinks == 0 && rule.get("actions").is_some() {
            return Err((1000, "all sinks of the rule are disabled: enable at least one".to_owned()));
        }
        Ok(run)
    }

    fn source_type_known(&self, source_type: &str) -> bool {
        BUILTIN_SOURCES.iter().any(|s| s.eq_ignore_ascii_case(source_type))
            || self.plugins.values().any(|p| p.sources.iter().any(|s| s == source_type))
    }

    fn sink_known(&self, sink: &str) -> bool {
        BUILTIN_SINKS.contains(&sink) || self.plugins.values().any(|p| p.sinks.iter().any(|s| s == sink))
    }

    fn list_rules(&self, e: &Engines) -> Reply {
        let items: Vec<Value> = self
            .rules
            .iter()
            .map(|(id, rule)| {
                let name = rule.definition.get("name").and_then(Value::as_str).unwrap_or(id);
                let status = list_status(e, &rule.run);
                if e.ekuiper >= crate::versions::Version::new(2, 2, 0) {
                    json!({"id": id, "name": name, "status": status, "version": rule.definition.get("version").cloned().unwrap_or(json!("")), "trace": false, "tags": rule.definition.get("tags").cloned().unwrap_or(Value::Null)})
                } else if e.ekuiper_v2() {
                    json!({"id": id, "name": name, "status": status, "trace": false})
                } else {
                    json!({"id": id, "name": name, "status": status})
                }
            })
            .collect();
        Reply::json(200, &json!(items))
    }

    fn describe_rule(&self, e: &Engines, id: &str) -> Reply {
        match self.rules.get(id) {
            Some(rule) if !e.ekuiper_v2() && masking_needed(&rule.text) => match serde_json::from_str(&rule.text) {
                Ok(parsed) => Reply::json_text(200, sorted(&mask_secrets("", parsed)).to_string()),
                Err(err) => ekuiper_error(e, 1000, &format!("Describe rule error: {err}")),
            },
            Some(rule) => Reply::json_text(200, rule.text.clone()),
            None => ekuiper_error(e, 1002, &format!("Describe rule error: Rule {id} is not found.")),
        }
    }

    fn drop_rule(&mut self, e: &Engines, id: &str) -> Reply {
        if self.rules.remove(id).is_some() {
            return Reply::text(200, format!("Rule {id} is dropped."));
        }
        if e.ekuiper_v2() {
            ekuiper_error(e, 1000, &format!("Delete rule error: rule {id} not found"))
        } else {
            ekuiper_error(e, 1002, &format!("Delete rule error: {id} is not found"))
        }
    }

    fn rule_status(&mut self, e: &Engines, id: &str) -> Reply {
        let health = self.health;
        let Some(rule) = self.rules.get_mut(id) else {
            return ekuiper_error(e, 1002, &format!("get rule status error: Rule {id} is not found"));
        };
        if rule.run == RuleRun::Running {
            rule.exceptions += health.exceptions_per_read;
            rule.records_in += health.records_per_read;
        }
        let rule = &*rule;
        let sources = rule_sources(&rule.definition);
        let mut body = serde_json::Map::new();
        if e.ekuiper_v2() {
            let (status, message) = match &rule.run {
                RuleRun::Running => ("running", String::new()),
                RuleRun::StoppedManually => ("stopped", "canceled manually".to_owned()),
                RuleRun::StoppedByError(err) => ("stopped by error", err.clone()),
            };
            body.insert("status".into(), json!(status));
            body.insert("message".into(), json!(message));
            body.insert("lastStartTimestamp".into(), json!(rule.last_start_ms));
            body.insert("lastStopTimestamp".into(), json!(rule.last_stop_ms));
            body.insert("nextStartTimestamp".into(), json!(0));
        } else {
            match &rule.run {
                RuleRun::Running => {
                    body.insert("status".into(), json!("running"));
                    body.insert("lastStartTimestamp".into(), json!(rule.last_start_ms.to_string()));
                    body.insert("lastStopTimestamp".into(), json!(rule.last_stop_ms.to_string()));
                    body.insert("nextStopTimestamp".into(), json!("0"));
                }
                stopped => {
                    body.insert("message".into(), json!(list_status(e, stopped)));
                    body.insert("status".into(), json!("stopped"));
                    return Reply::json(200, &Value::Object(body));
                }
            }
        }
        // Metrics as eKuiper names them: per source, per operator, per sink, each instance `_0`.
        for source in &sources {
            body.insert(format!("source_{source}_0_records_in_total"), json!(rule.records_in));
            body.insert(format!("source_{source}_0_records_out_total"), json!(rule.records_in));
            body.insert(format!("source_{source}_0_exceptions_total"), json!(0));
        }
        body.insert("op_2_project_0_records_in_total".into(), json!(rule.records_in));
        body.insert("op_2_project_0_exceptions_total".into(), json!(rule.exceptions));
        let last_exception =
            if rule.exceptions > 0 { "run Select error: invalid operation string(abc) * int64(2)" } else { "" };
        body.insert("op_2_project_0_last_exception".into(), json!(last_exception));
        body.insert("sink_log_0_0_records_in_total".into(), json!(rule.records_in));
        body.insert("sink_log_0_0_exceptions_total".into(), json!(0));
        let text = serde_json::to_string_pretty(&Value::Object(body)).unwrap_or_default();
        Reply::Http { status: 200, content_type: crate::reply::JSON, body: text }
    }

    fn all_statuses(&self, e: &Engines) -> Reply {
        let map: serde_json::Map<String, Value> =
            self.rules.iter().map(|(id, rule)| (id.clone(), json!(list_status(e, &rule.run)))).collect();
        Reply::json(200, &Value::Object(map))
    }

    fn control_rule(&mut self, e: &Engines, id: &str, action: &str, now_ms: u64) -> Reply {
        let plan = self.rules.get(id).map(|rule| self.plan(e, &rule.definition));
        let Some(rule) = self.rules.get_mut(id) else {
            return ekuiper_error(
                e,
                1002,
                &format!("{action} rule error: Rule {id} is not found in registry, please check if it is created"),
            );
        };
        // Starting and stopping rewrites the stored rule with its `triggered` flag, re-encoded as
        // Go encodes a map (sorted keys), so a rule read back afterwards is no longer the text
        // that was sent (lf-edge/ekuiper `internal/processor/rule.go` `ExecReplaceRuleState`).
        rule.definition["triggered"] = Value::Bool(action != "stop");
        rule.text = sorted(&rule.definition).to_string();
        match action {
            "stop" => {
                rule.run = RuleRun::StoppedManually;
                rule.last_stop_ms = now_ms;
                Reply::text(200, format!("Rule {id} was stopped."))
            }
            _ => {
                rule.run = match plan {
                    Some(Ok(run)) => run,
                    Some(Err((_, reason))) => RuleRun::StoppedByError(reason),
                    None => RuleRun::Running,
                };
                rule.last_start_ms = now_ms;
                let verb = if action == "start" { "started" } else { "restarted" };
                Reply::text(200, format!("Rule {id} was {verb}"))
            }
        }
    }

    fn validate_rule(&self, e: &Engines, body: &[u8]) -> Reply {
        let Ok(rule) = serde_json::from_slice::<Value>(body) else {
            return ekuiper_error(e, 1000, "Invalid body");
        };
        let verdict =
            validate_rule_shape(e, &rule, None).and_then(|()| self.plan(e, &rule).map(|_| ()).map_err(|(_, r)| r));
        match verdict {
            // Go encodes the answer's map with sorted keys: `{"sources":[...],"valid":true}`
            // (rest_test.go `Test_rulesManageHandler`, "validate a rule").
            Ok(()) => {
                let sources = crate::ekuiper::rule_sources(&rule);
                Reply::text(200, json!({"sources": sources, "valid": true}).to_string())
            }
            Err(reason) => Reply::text(422, format!("invalid rule json: {reason}")),
        }
    }

    // ----- imports -----

    fn data_import(&mut self, e: &Engines, body: &[u8], partial: bool, now_ms: u64) -> Reply {
        let content = match import_content(body, "") {
            Ok(content) => content,
            Err(reason) => return ekuiper_error(e, 1000, &reason),
        };
        if !partial {
            // A full import wipes everything first, even when the document turns out invalid.
            let plugins = std::mem::take(&mut self.plugins);
            *self = Ekuiper { plugins, ..Ekuiper::default() };
        }
        let document: Value = match serde_json::from_str(&content) {
            Ok(doc) => doc,
            Err(err) => {
                let err = go_json_error(&err, content.as_bytes());
                return ekuiper_error(e, 1000, &format!("configuration unmarshal with error {err}"));
            }
        };
        let mut errors: BTreeMap<&str, serde_json::Map<String, Value>> =
            IMPORT_SECTIONS.iter().map(|s| (*s, serde_json::Map::new())).collect();
        for (kind, section) in [(Kind::Stream, "streams"), (Kind::Table, "tables")] {
            for (name, sql) in section_entries(&document, section) {
                let sql = sql.as_str().unwrap_or_default();
                match parse_create(sql) {
                    Ok((_, _, def)) => {
                        self.store_mut(kind).insert(name.clone(), def);
                    }
                    Err(reason) => {
                        errors.entry(section).or_default().insert(name.clone(), json!(reason));
                    }
                }
            }
        }
        for (id, text) in section_entries(&document, "rules") {
            if let Err(reason) = self.import_rule(e, &id, &text, now_ms) {
                errors.entry("rules").or_default().insert(id.clone(), json!(reason));
            }
        }
        for section in IMPORT_SECTIONS.iter().skip(3) {
            for (key, value) in section_entries(&document, section) {
                self.other_sections.entry((*section).to_owned()).or_default().insert(key, value.clone());
            }
        }
        let config_response: serde_json::Map<String, Value> = IMPORT_SECTIONS
            .iter()
            .map(|s| ((*s).to_owned(), Value::Object(errors.remove(s).unwrap_or_default())))
            .collect();
        let failed = config_response.values().any(|m| m.as_object().is_some_and(|m| !m.is_empty()));
        let config_response = Value::Object(config_response);
        self.last_import_status = Some(config_response.clone());
        if !failed {
            return Reply::json_as_text(200, &json!({"ErrorMsg": "", "ConfigResponse": config_response}));
        }
        if e.ekuiper_v2() {
            ekuiper_error(e, 1000, &config_response.to_string())
        } else {
            ekuiper_error(e, 1000, "process error")
        }
    }

    /// One rule of a data import: create, or overwrite an existing one (unless its version is higher).
    fn import_rule(&mut self, e: &Engines, id: &str, text: &Value, now_ms: u64) -> Result<(), String> {
        let exists = self.rules.contains_key(id);
        let prefix = if exists || e.ekuiper >= crate::versions::Version::new(2, 2, 0) {
            "Invalid rule json"
        } else {
            "invalid rule json"
        };
        let source = text.as_str().unwrap_or_default();
        let rule: Value = serde_json::from_str(source)
            .map_err(|err| format!("{prefix}: Parse rule error : {}.", go_json_error(&err, source.as_bytes())))?;
        validate_rule_shape(e, &rule, Some(id)).map_err(|reason| format!("{prefix}: {reason}"))?;
        self.check_version(e, id, &rule)?;
        let run = self.plan(e, &rule).map_err(|(_, reason)| reason)?;
        self.store_rule(id.to_owned(), rule, text.as_str().unwrap_or_default().to_owned(), run, now_ms);
        Ok(())
    }

    fn import_status(&self) -> Reply {
        let empty: serde_json::Map<String, Value> =
            IMPORT_SECTIONS.iter().map(|s| ((*s).to_owned(), json!({}))).collect();
        Reply::json(200, self.last_import_status.as_ref().unwrap_or(&Value::Object(empty)))
    }

    fn ruleset_import(&mut self, e: &Engines, body: &[u8], now_ms: u64) -> Reply {
        let content = match import_content(body, ": bad request") {
            Ok(content) => content,
            Err(reason) => return ekuiper_error(e, 1000, &reason),
        };
        // eKuiper dereferences a nil error here and the connection drops without an answer.
        let Ok(document) = serde_json::from_str::<Value>(&content) else {
            return Reply::Reset;
        };
        let (overwrite_streams, overwrite_rules) = e.ruleset_overwrites();
        let mut counts = [0usize; 3];
        for (index, (kind, section)) in [(Kind::Stream, "streams"), (Kind::Table, "tables")].into_iter().enumerate() {
            for (name, sql) in section_entries(&document, section) {
                if self.store(kind).contains_key(&name) && !overwrite_streams {
                    continue;
                }
                if let Ok((_, _, def)) = parse_create(sql.as_str().unwrap_or_default()) {
                    self.store_mut(kind).insert(name, def);
                    counts[index] += 1;
                }
            }
        }
        for (id, text) in section_entries(&document, "rules") {
            if self.rules.contains_key(&id) && !overwrite_rules {
                continue;
            }
            let text = text.as_str().unwrap_or_default().to_owned();
            let Ok(rule) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if validate_rule_shape(e, &rule, Some(&id)).is_err() || self.check_version(e, &id, &rule).is_err() {
                continue;
            }
            // Only the syntax is checked: a rule on a missing stream is stored and fails to run.
            let run = self.plan(e, &rule).unwrap_or_else(|(_, reason)| RuleRun::StoppedByError(reason));
            self.store_rule(id, rule, text, run, now_ms);
            counts[2] += 1;
        }
        Reply::text(200, format!("imported {} streams, {} tables and {} rules", counts[0], counts[1], counts[2]))
    }

    // ----- portable plugins -----

    fn start_plugin_install(&mut self, e: &Engines, body: &[u8], path_name: Option<&str>) -> Outcome {
        let verb = if path_name.is_some() { "update" } else { "create" };
        let request: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(err) => {
                return ekuiper_error(
                    e,
                    1000,
                    &format!("Invalid body: Error decoding the portable plugin json: {}", go_json_error(&err, body)),
                )
                .into();
            }
        };
        let name = request.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let url = request.get("file").and_then(Value::as_str).unwrap_or_default().to_owned();
        let fail = |reason: String| -> Outcome {
            ekuiper_error(e, 1000, &format!("portable plugin {verb} command error: {reason}")).into()
        };
        if name.is_empty() {
            return fail("invalid name : should not be empty".into());
        }
        let scheme_ok = ["http://", "https://", "file://"].iter().any(|s| url.starts_with(s));
        if !scheme_ok || !url.ends_with(".zip") {
            return fail(format!("invalid uri {url}"));
        }
        match path_name {
            // PUT first deletes the old plugin and ignores a failure to do so.
            Some(old) => {
                self.plugins.remove(old);
            }
            None if self.plugins.contains_key(&name) => {
                return fail(format!("invalid name {name}: duplicate"));
            }
            None => {}
        }
        Outcome::Download(PendingInstall { name, url, update: path_name.is_some() })
    }

    /// Second half of an install, once the zip was fetched (or failed to be).
    pub fn finish_plugin_install(
        &mut self,
        e: &Engines,
        install: &PendingInstall,
        download: Result<Vec<u8>, String>,
    ) -> Reply {
        let verb = if install.update { "update" } else { "create" };
        let fail = |reason: String| ekuiper_error(e, 1000, &format!("portable plugin {verb} command error: {reason}"));
        let bytes = match download {
            Ok(bytes) => bytes,
            Err(cause) => return fail(format!("fail to download file {}: {cause}", install.url)),
        };
        match plugin_zip::inspect(&install.name, &bytes) {
            Ok(meta) => {
                self.plugins.insert(install.name.clone(), meta);
                if install.update {
                    Reply::text(200, format!("portable plugin {} is updated", install.name))
                } else {
                    Reply::text(201, format!("portable plugin {} is created", install.name))
                }
            }
            Err(reason) => fail(format!("fail to install plugin: {reason}")),
        }
    }

    fn describe_plugin(&self, e: &Engines, name: &str) -> Reply {
        match self.plugins.get(name) {
            Some(meta) => Reply::json(200, &meta.to_json(name)),
            None => ekuiper_error(e, 1002, &format!("describe portable plugin {name} error: not found")),
        }
    }

    fn plugin_status(&self, e: &Engines, name: &str) -> Reply {
        if !self.plugins.contains_key(name) {
            return ekuiper_error(e, 1002, &format!("describe portable plugin {name} error: not found"));
        }
        Reply::json(200, &json!({"refCount": {}, "status": "running", "errMsg": "", "pid": 90}))
    }

    fn delete_plugin(&mut self, e: &Engines, name: &str) -> Reply {
        if self.plugins.remove(name).is_some() {
            Reply::text(200, format!("portable plugin {name} is deleted"))
        } else {
            ekuiper_error(e, 1000, &format!("delete portable plugin {name} error: portable plugin {name} is not found"))
        }
    }

    /// `POST /ruleset/export`: the statements and rule texts as they were given.
    fn ruleset_export(&self) -> Reply {
        let statements = |kind: Kind| -> serde_json::Map<String, Value> {
            self.store(kind).iter().map(|(name, def)| (name.clone(), Value::from(def.sql.clone()))).collect()
        };
        let rules: serde_json::Map<String, Value> =
            self.rules.iter().map(|(id, rule)| (id.clone(), Value::from(rule.text.clone()))).collect();
        Reply::json(
            200,
            &json!({"streams": statements(Kind::Stream), "tables": statements(Kind::Table), "rules": rules}),
        )
    }

    /// The control API's view of this engine.
    pub fn snapshot(&self, e: &Engines) -> Value {
        let rules: serde_json::Map<String, Value> = self
            .rules
            .iter()
            .map(|(id, r)| (id.clone(), json!({"status": list_status(e, &r.run), "definition": r.definition})))
            .collect();
        json!({
            "streams": self.streams.iter().map(|(n, d)| (n.clone(), json!(d.sql))).collect::<serde_json::Map<_, _>>(),
            "tables": self.tables.iter().map(|(n, d)| (n.clone(), json!(d.sql))).collect::<serde_json::Map<_, _>>(),
            "rules": rules,
            "plugins": self.plugins.iter().map(|(n, m)| (n.clone(), m.to_json(n))).collect::<serde_json::Map<_, _>>(),
            "other": self.other_sections,
        })
    }
}

fn list_status(e: &Engines, run: &RuleRun) -> String {
    match (e.ekuiper_v2(), run) {
        (true, RuleRun::Running) => "running".into(),
        (true, RuleRun::StoppedManually) => "stopped".into(),
        (true, RuleRun::StoppedByError(_)) => "stopped by error".into(),
        (false, RuleRun::Running) => "Running".into(),
        (false, RuleRun::StoppedManually) => "Stopped: canceled manually.".into(),
        (false, RuleRun::StoppedByError(err)) => format!("Stopped: {err}."),
    }
}

fn rule_id(rule: &Value) -> String {
    rule.get("id").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The checks eKuiper makes on a rule document before planning it (texts without prefix).
fn validate_rule_shape(e: &Engines, rule: &Value, import_id: Option<&str>) -> Result<(), String> {
    let id = match rule.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => match import_id {
            Some(id) => id.to_owned(),
            None => return Err("Missing rule id.".into()),
        },
    };
    check_rule_id(e.rule_id_check(), &id)?;
    let has_sql = rule.get("sql").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let has_graph = rule.get("graph").is_some_and(|g| !g.is_null());
    match (has_sql, has_graph) {
        (true, true) => return Err(format!("Rule {id} has both sql and graph.")),
        (false, false) => return Err(format!("Rule {id} has neither sql nor graph.")),
        _ => {}
    }
    if has_sql && rule.get("actions").and_then(Value::as_array).is_none_or(|a| a.is_empty()) {
        return Err("Missing rule actions.".into());
    }
    Ok(())
}

fn check_rule_id(check: RuleIdCheck, id: &str) -> Result<(), String> {
    static STRICT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_\-]+$").expect("static regex"));
    match check {
        RuleIdCheck::None => Ok(()),
        RuleIdCheck::InvalidChars => {
            if id.trim() != id {
                return Err(format!("ruleID: {id} should be trimed"));
            }
            match id.chars().find(|c| matches!(c, '/' | '#' | '%')) {
                Some(c) => Err(format!("ruleID:{id} contains invalidChar:{c}")),
                None => Ok(()),
            }
        }
        RuleIdCheck::Strict => {
            if id.trim() != id {
                return Err(format!("id '{id}' contains leading or trailing whitespace"));
            }
            if !STRICT.is_match(id) {
                return Err(format!(
                    "id '{id}' contains invalid characters: only alphanumeric, hyphens and underscores are allowed"
                ));
            }
            Ok(())
        }
    }
}

fn plan_graph(graph: &Value) -> Result<(), String> {
    let nodes = graph.get("nodes").and_then(Value::as_object).ok_or("invalid graph: nodes are required")?;
    for (name, node) in nodes {
        let kind = node.get("type").and_then(Value::as_str).unwrap_or_default();
        if !matches!(kind, "source" | "operator" | "sink") {
            return Err(format!("invalid node {name} type {kind}"));
        }
    }
    let topo = graph.get("topo").ok_or("invalid graph: topo is required")?;
    let referenced = topo.get("sources").and_then(Value::as_array).into_iter().flatten().chain(
        topo.get("edges")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|v| v.as_array().into_iter().flatten()),
    );
    for node in referenced {
        let node = node.as_str().unwrap_or_default();
        if !nodes.contains_key(node) {
            return Err(format!("node {node} is not defined"));
        }
    }
    Ok(())
}

/// eKuiper 1.x re-encodes a rule it describes when its text mentions `url`, `password` or
/// `token` (lf-edge/ekuiper v1.14 `internal/server/rest.go` with `pkg/hidden`): keys sorted, as Go
/// encodes maps, and secrets masked. 2.x answers the stored text as it is.
fn masking_needed(text: &str) -> bool {
    let lower = text.to_lowercase();
    ["url", "password", "token"].iter().any(|k| lower.contains(k))
}

/// `pkg/hidden` `HiddenPassword`: `password` and `token` values become `******`, and so does the
/// password inside a `url` value's user info.
fn mask_secrets(key: &str, value: Value) -> Value {
    const MASK: &str = "******";
    match value {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k.clone(), mask_secrets(&k, v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask_secrets("", v)).collect()),
        _ if matches!(key.to_lowercase().as_str(), "password" | "token") => Value::from(MASK),
        Value::String(text) if key.eq_ignore_ascii_case("url") => match reqwest::Url::parse(&text) {
            Ok(mut url) if url.password().is_some_and(|p| !p.is_empty()) => {
                let _ = url.set_password(Some(MASK));
                Value::from(url.to_string().replace("%2A", "*"))
            }
            _ => Value::String(text),
        },
        other => other,
    }
}

/// For each sink of `rule` at the position of one in `stored`, a `password` or `token` sent as
/// `******` takes the stored value. Answers whether anything was put back.
fn restore_masked_secrets(stored: &Value, rule: &mut Value) -> bool {
    let mut restored = false;
    let old_actions = stored.get("actions").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(actions) = rule.get_mut("actions").and_then(Value::as_array_mut) else {
        return false;
    };
    for (action, old_action) in actions.iter_mut().zip(&old_actions) {
        for (sink, props) in action.as_object_mut().into_iter().flatten() {
            for key in ["password", "token"] {
                let old =
                    old_action.get(sink.as_str()).and_then(|p| p.get(key)).filter(|v| v.as_str() != Some("******"));
                if props.get(key).and_then(Value::as_str) == Some("******")
                    && let Some(old) = old
                {
                    props[key] = old.clone();
                    restored = true;
                }
            }
        }
    }
    restored
}

/// Object keys in sorted order at every level, as Go's `encoding/json` writes a map.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// eKuiper's `CanReplace` (internal/processor/rule.go), for rule and stream versions alike.
fn can_replace(old: &str, new: &str) -> bool {
    (old.is_empty() && new.is_empty()) || new > old
}

/// Why eKuiper 2.3+ refuses to replace a stream or table: a changed `SHARED` (checked first), or
/// a `VERSION` that is not greater (lf-edge/ekuiper `stream_test.go` `TestStreamReplace`).
fn replace_refusal(e: &Engines, name: &str, old: &StreamDef, new: &StreamDef) -> Option<String> {
    if !e.stream_replace_checks() {
        return None;
    }
    let shared = |def: &StreamDef| def.options.get("SHARED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if shared(old) != shared(new) {
        return Some(format!("Replace {name} fails: do not support to change stream SHARED option."));
    }
    let version = |def: &StreamDef| def.options.get("VERSION").cloned().unwrap_or_default();
    let (old, new) = (version(old), version(new));
    if can_replace(&old, &new) {
        None
    } else {
        Some(format!("source {name} already exists with version ({old}), new version ({new}) is lower"))
    }
}

/// Parses `CREATE STREAM|TABLE name (fields) WITH (K="v", ...)`.
/// An option's value as eKuiper's options struct holds it: `SHARED` is a boolean, `RETAIN_SIZE` a
/// number, the rest text.
fn option_value(key: &str, value: &str) -> Value {
    match key.to_uppercase().as_str() {
        "SHARED" | "STRICT_VALIDATION" => Value::Bool(value.eq_ignore_ascii_case("true")),
        "RETAIN_SIZE" => value.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(value)),
        _ => Value::from(value),
    }
}

fn parse_create(sql: &str) -> Result<(Kind, String, StreamDef), String> {
    static CREATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?is)^\s*create\s+(stream|table)\s+`?([A-Za-z_][A-Za-z0-9_]*)`?\s*\((.*?)\)\s*with\s*\((.*)\)\s*;?\s*$"#,
        )
        .expect("static regex")
    });
    static OPTION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"([A-Za-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)""#).expect("static regex"));
    let Some(caps) = CREATE.captures(sql) else {
        let first = sql.split_whitespace().next().unwrap_or_default();
        return Err(format!("found \"{first}\", expected CREATE STREAM or CREATE TABLE."));
    };
    let kind = if caps[1].eq_ignore_ascii_case("table") { Kind::Table } else { Kind::Stream };
    let fields = caps[3]
        .split(',')
        .filter_map(|f| {
            let mut parts = f.split_whitespace();
            Some((parts.next()?.to_owned(), parts.collect::<Vec<_>>().join(" ")))
        })
        .collect();
    let options = OPTION.captures_iter(&caps[4]).map(|c| (c[1].to_ascii_uppercase(), c[2].to_owned())).collect();
    Ok((kind, caps[2].to_owned(), StreamDef { sql: sql.to_owned(), fields, options }))
}

/// `{"sql": "..."}` bodies of the stream and table calls.
fn statement_body(body: &[u8]) -> Result<String, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| go_json_error(&e, body))?;
    value.get("sql").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| "missing sql".to_owned())
}

/// A JSON decoding error as Go's `encoding/json` words it, which is what eKuiper passes on:
/// `unexpected end of JSON input`, or `invalid character 'x' looking for beginning of value` at
/// the offending byte (Go varies the last words with the context; the common one is used).
fn go_json_error(err: &serde_json::Error, input: &[u8]) -> String {
    if err.is_eof() {
        return "unexpected end of JSON input".into();
    }
    if err.is_syntax() {
        let line_start: usize =
            input.split(|b| *b == b'\n').take(err.line().saturating_sub(1)).map(|l| l.len() + 1).sum();
        let at = (line_start + err.column()).saturating_sub(1);
        if let Some(&byte) = input.get(at) {
            let shown = if byte.is_ascii_graphic() || byte == b' ' {
                (byte as char).to_string()
            } else {
                format!("\\x{byte:02x}")
            };
            return format!("invalid character '{shown}' looking for beginning of value");
        }
    }
    err.to_string()
}

/// `{"content": "..."}` or `{"file": "..."}`, exactly one of them.
fn import_content(body: &[u8], suffix: &str) -> Result<String, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid body: {e}{suffix}"))?;
    let content = value.get("content").and_then(Value::as_str).filter(|s| !s.is_empty());
    let file = value.get("file").and_then(Value::as_str).filter(|s| !s.is_empty());
    match (content, file) {
        (Some(_), Some(_)) => Err(format!("Invalid body: Cannot specify both content and file{suffix}")),
        (None, None) => Err(format!("Invalid body: must specify content or file{suffix}")),
        (Some(content), None) => Ok(content.to_owned()),
        (None, Some(file)) => Err(format!("fail to read file {file}: only inline content is simulated")),
    }
}

fn section_entries(document: &Value, section: &str) -> Vec<(String, Value)> {
    document
        .get(section)
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The streams and tables a SQL rule reads: the name after each `FROM` and `JOIN`. The simulator
/// reads SQL with its own small tokenizer (quoted text skipped, backticks unwrapped) rather than
/// edgefleet's parser, so a test double cannot agree with the code it judges by sharing its bugs.
fn rule_sources(rule: &Value) -> Vec<String> {
    let sql = rule.get("sql").and_then(Value::as_str).unwrap_or_default();
    let words = sql_words(sql);
    let mut names: Vec<String> = words
        .windows(2)
        .filter(|pair| pair[0].eq_ignore_ascii_case("from") || pair[0].eq_ignore_ascii_case("join"))
        .map(|pair| pair[1].clone())
        .filter(|name| name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Identifier-like words of a SQL text, in order; string literals are skipped.
fn sql_words(sql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // A literal: skip to its closing quote.
                for next in chars.by_ref() {
                    if next == c {
                        break;
                    }
                }
            }
            '`' => {
                let word: String = chars.by_ref().take_while(|&next| next != '`').collect();
                words.push(word);
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if !(next.is_ascii_alphanumeric() || next == '_') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                words.push(word);
            }
            _ => {}
        }
    }
    words
}

#[cfg(test)]
mod sql_tests {
    use super::*;

    #[test]
    fn sources_are_the_names_after_from_and_join() {
        let cases = [
            ("SELECT * FROM demo", vec!["demo"]),
            ("select a from `my_stream` left join t2 on a = b", vec!["my_stream", "t2"]),
            ("SELECT 'from x' AS f FROM s1 INNER JOIN s2 ON true JOIN s1", vec!["s1", "s2"]),
            ("SELECT 1", vec![]),
        ];
        for (sql, expected) in cases {
            assert_eq!(rule_sources(&serde_json::json!({"sql": sql})), expected, "{sql}");
        }
    }
}
