//! Rule templates: the documents NeuronEX and eKuiper export, normalized to one shape and checked
//! the way eKuiper will check them.
//!
//! Accepted: (a) the data-export document `{streams, tables, rules, sourceConfig, ...}` whose rule
//! values are JSON strings, (b) the ruleset `{streams, tables, rules}`, (c) one rule object
//! `{id, sql|graph, actions, options}`. Rule values may also be objects. The normalized form is
//! `{streams: {name: sql}, tables: {name: sql}, rules: {id: rule object}, <other sections>}`.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::Problem;

/// Sections delivered as they are, through eKuiper's own partial data import.
pub const PASS_THROUGH_SECTIONS: &[&str] = &[
    "sourceConfig",
    "sinkConfig",
    "connectionConfig",
    "Service",
    "Schema",
    "uploads",
    "scripts",
    "nativePlugins",
    "portablePlugins",
];

/// A checked rule document, ready to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDocument {
    pub streams: Vec<(String, String)>,
    pub tables: Vec<(String, String)>,
    pub rules: Vec<RuleDef>,
    /// Non-empty pass-through sections (sourceConfig, ...), in document order.
    pub extras: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    pub id: String,
    pub definition: Value,
}

impl RuleDef {
    /// `triggered: false` asks eKuiper to store the rule without starting it.
    pub fn starts(&self) -> bool {
        self.definition.get("triggered").and_then(Value::as_bool).unwrap_or(true)
    }
}

/// Brings any accepted shape to the normalized form. Errors are about the shape only.
pub fn normalize(content: &Value) -> Result<Value, Vec<Problem>> {
    let Some(object) = content.as_object() else {
        return Err(vec![Problem::new("", "a rule template must be a JSON object")]);
    };
    if object.contains_key("id") && (object.contains_key("sql") || object.contains_key("graph")) {
        let id = object.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut rules = Map::new();
        rules.insert(id, content.clone());
        let mut doc = Map::new();
        doc.insert("streams".into(), Value::Object(Map::new()));
        doc.insert("tables".into(), Value::Object(Map::new()));
        doc.insert("rules".into(), Value::Object(rules));
        return Ok(Value::Object(doc));
    }
    let known = ["streams", "tables", "rules"];
    if !known.iter().any(|k| object.contains_key(*k)) {
        return Err(vec![Problem::new(
            "",
            "not a rule document: expected {streams, tables, rules} (a NeuronEX or eKuiper export) or one rule {id, sql|graph, actions}",
        )]);
    }
    let mut problems = Vec::new();
    let mut doc = Map::new();
    for section in ["streams", "tables"] {
        match object.get(section) {
            None | Some(Value::Null) => {
                doc.insert(section.into(), Value::Object(Map::new()));
            }
            Some(Value::Object(map)) => {
                doc.insert(section.into(), Value::Object(map.clone()));
            }
            Some(_) => problems.push(Problem::new(section, "must be an object of name -> CREATE statement")),
        }
    }
    let mut rules = Map::new();
    match object.get("rules") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (id, value) in map {
                match value {
                    Value::String(text) => match serde_json::from_str::<Value>(text) {
                        Ok(rule) => {
                            rules.insert(id.clone(), rule);
                        }
                        Err(err) => problems.push(Problem::new(
                            format!("rules.{id}"),
                            format!("the rule text is not valid: {}", crate::json_error_text(&err)),
                        )),
                    },
                    Value::Object(_) => {
                        rules.insert(id.clone(), value.clone());
                    }
                    _ => problems.push(Problem::new(format!("rules.{id}"), "must be a rule object or its JSON text")),
                }
            }
        }
        Some(_) => problems.push(Problem::new("rules", "must be an object of rule id -> rule")),
    }
    doc.insert("rules".into(), Value::Object(rules));
    for (key, value) in object {
        if known.contains(&key.as_str()) {
            continue;
        }
        if PASS_THROUGH_SECTIONS.contains(&key.as_str()) {
            doc.insert(key.clone(), value.clone());
        } else {
            problems.push(Problem::new(
                key.clone(),
                "unknown section; NeuronEX exports have streams, tables, rules and config sections",
            ));
        }
    }
    if problems.is_empty() { Ok(Value::Object(doc)) } else { Err(problems) }
}

/// Checks a normalized document and returns it typed, or every problem found.
pub fn check(normalized: &Value) -> Result<RuleDocument, Vec<Problem>> {
    let mut problems = Vec::new();
    let streams = statements(normalized, "streams", "STREAM", &mut problems);
    let tables = statements(normalized, "tables", "TABLE", &mut problems);
    let mut rules = Vec::new();
    if let Some(map) = normalized.get("rules").and_then(Value::as_object) {
        for (key, rule) in map {
            if let Some(def) = check_rule(key, rule, &mut problems) {
                rules.push(def);
            }
        }
    }
    if streams.is_empty() && tables.is_empty() && rules.is_empty() {
        problems.push(Problem::new("", "the document has no streams, tables or rules to deliver"));
    }
    let mut extras = Map::new();
    for (key, value) in normalized.as_object().into_iter().flatten() {
        if PASS_THROUGH_SECTIONS.contains(&key.as_str()) && !is_empty_section(value) {
            if !value.is_object() {
                problems.push(Problem::new(key.clone(), "must be an object"));
            }
            extras.insert(key.clone(), value.clone());
        }
    }
    if problems.is_empty() { Ok(RuleDocument { streams, tables, rules, extras }) } else { Err(problems) }
}

fn is_empty_section(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn statements(doc: &Value, section: &str, keyword: &str, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    static CREATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?is)^\s*create\s+(stream|table)\s+`?([A-Za-z_$][A-Za-z0-9_${}.\-]*)`?\s*\(.*\)\s*with\s*\(.*\)\s*;?\s*$",
        )
        .expect("static regex")
    });
    let mut out = Vec::new();
    for (name, sql) in doc.get(section).and_then(Value::as_object).into_iter().flatten() {
        let path = format!("{section}.{name}");
        let Some(sql) = sql.as_str() else {
            problems.push(Problem::new(path, format!("must be a CREATE {keyword} statement (a string)")));
            continue;
        };
        match CREATE.captures(sql) {
            None => problems.push(Problem::new(
                path,
                format!("not a valid statement: expected CREATE {keyword} {name} (...) WITH (...)"),
            )),
            Some(caps) if !caps[1].eq_ignore_ascii_case(keyword) => problems.push(Problem::new(
                path,
                format!("is a CREATE {} statement in the {section} section", caps[1].to_uppercase()),
            )),
            Some(caps) if caps[2] != *name => {
                problems.push(Problem::new(path, format!("the statement creates `{}`, not `{name}`", &caps[2])))
            }
            Some(_) => out.push((name.clone(), sql.to_owned())),
        }
    }
    out
}

fn check_rule(key: &str, rule: &Value, problems: &mut Vec<Problem>) -> Option<RuleDef> {
    let path = format!("rules.{key}");
    let before = problems.len();
    let Some(object) = rule.as_object() else {
        problems.push(Problem::new(path, "must be a rule object"));
        return None;
    };
    let id = object.get("id").and_then(Value::as_str).unwrap_or(key);
    if id.is_empty() {
        problems.push(Problem::new(path.clone(), "the rule has no id"));
    } else if id != key && !key.is_empty() {
        problems.push(Problem::new(path.clone(), format!("the rule id `{id}` differs from its key `{key}`")));
    }
    if id.trim() != id {
        problems.push(Problem::new(path.clone(), format!("bad rule id `{id}`: leading or trailing white space")));
    }
    if let Some(c) = id.chars().find(|c| matches!(c, '/' | '#' | '%' | '?')) {
        problems.push(Problem::new(path.clone(), format!("bad rule id `{id}`: eKuiper refuses the character `{c}`")));
    }
    let sql = object.get("sql").filter(|v| !v.is_null());
    let graph = object.get("graph").filter(|v| !v.is_null());
    match (sql, graph) {
        (Some(_), Some(_)) => problems.push(Problem::new(path.clone(), "has both sql and graph; keep one")),
        (None, None) => problems.push(Problem::new(path.clone(), "has neither sql nor graph")),
        (Some(sql), None) => {
            if sql.as_str().is_none_or(|s| s.trim().is_empty()) {
                problems.push(Problem::new(format!("{path}.sql"), "must be a non-empty SQL string"));
            }
            check_actions(&path, object.get("actions"), problems);
        }
        (None, Some(graph)) => check_graph(&path, graph, problems),
    }
    if let Some(options) = object.get("options")
        && !options.is_object()
    {
        problems.push(Problem::new(format!("{path}.options"), "must be an object"));
    }
    if let Some(triggered) = object.get("triggered")
        && !triggered.is_boolean()
    {
        problems.push(Problem::new(format!("{path}.triggered"), "must be true or false"));
    }
    (problems.len() == before).then(|| RuleDef { id: id.to_owned(), definition: rule.clone() })
}

fn check_actions(path: &str, actions: Option<&Value>, problems: &mut Vec<Problem>) {
    let Some(actions) = actions.and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        problems.push(Problem::new(format!("{path}.actions"), "a SQL rule needs at least one action (sink)"));
        return;
    };
    for (i, action) in actions.iter().enumerate() {
        match action.as_object() {
            Some(map) if map.len() == 1 => {}
            _ => problems.push(Problem::new(
                format!("{path}.actions[{i}]"),
                "each action is an object with one sink type, e.g. {\"log\": {}}",
            )),
        }
    }
}

fn check_graph(path: &str, graph: &Value, problems: &mut Vec<Problem>) {
    let Some(nodes) = graph.get("nodes").and_then(Value::as_object) else {
        problems.push(Problem::new(format!("{path}.graph.nodes"), "a graph rule needs nodes"));
        return;
    };
    for (name, node) in nodes {
        let kind = node.get("type").and_then(Value::as_str).unwrap_or_default();
        if !matches!(kind, "source" | "operator" | "sink") {
            problems.push(Problem::new(
                format!("{path}.graph.nodes.{name}.type"),
                format!("`{kind}` is not source, operator or sink"),
            ));
        }
    }
    let Some(topo) = graph.get("topo") else {
        problems.push(Problem::new(format!("{path}.graph.topo"), "a graph rule needs topo"));
        return;
    };
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
            problems.push(Problem::new(
                format!("{path}.graph.topo"),
                format!("node `{node}` is not defined in graph.nodes"),
            ));
        }
    }
}

/// Streams and tables a SQL rule reads, for warnings about references the document lacks.
pub fn rule_sources(rule: &Value) -> Vec<String> {
    static FROM: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\b(?:from|join)\s+`?([A-Za-z_][A-Za-z0-9_]*)`?").expect("static regex"));
    let sql = rule.get("sql").and_then(Value::as_str).unwrap_or_default();
    let mut names: Vec<String> = FROM.captures_iter(sql).map(|c| c[1].to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

/// Rules that read a stream or table the document does not define: it must exist on the edge.
pub fn warnings(doc: &RuleDocument) -> Vec<Problem> {
    let mut out = Vec::new();
    for rule in &doc.rules {
        for source in rule_sources(&rule.definition) {
            let defined = doc.streams.iter().chain(doc.tables.iter()).any(|(name, _)| *name == source);
            if !defined {
                out.push(Problem::new(
                    format!("rules.{}", rule.id),
                    format!(
                        "reads `{source}`, which this template does not define; it must already exist on every target"
                    ),
                ));
            }
        }
    }
    out
}

impl RuleDocument {
    /// The pass-through sections as eKuiper's import expects them: config values as JSON strings.
    pub fn extras_for_import(&self) -> Value {
        let mut doc = Map::new();
        for (section, value) in &self.extras {
            let encoded: Map<String, Value> = value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), if v.is_string() { v.clone() } else { Value::String(v.to_string()) }))
                .collect();
            doc.insert(section.clone(), Value::Object(encoded));
        }
        Value::Object(doc)
    }
}
