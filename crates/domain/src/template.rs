//! Configuration templates: kinds, reading content as users give it, and the checked document a
//! delivery sends.

use serde_json::Value;

use crate::driver::{self, DriverDocument};
use crate::rule::{self, RuleDocument};
use crate::{Problem, params};

crate::wire_enum! {
    pub enum TemplateKind ("template kind") {
        /// eKuiper streams, tables and rules.
        Rule = "rule",
        /// Neuron southbound drivers: nodes, settings, groups, tags, subscriptions.
        Driver = "driver",
    }
}

/// Content as given: a JSON document, or a string holding one (as NeuronEX exports it).
pub fn read_content(content: &Value) -> Result<Value, Problem> {
    match content {
        Value::String(text) => {
            serde_json::from_str(text).map_err(|err| Problem::new("content", crate::json_error_text(&err)))
        }
        Value::Object(_) => Ok(content.clone()),
        _ => Err(Problem::new("content", "must be a JSON object, or a string holding the exported document")),
    }
}

/// A template's content, checked: its normalized form, the parameters it uses, and warnings.
#[derive(Debug, Clone)]
pub struct Checked {
    pub normalized: Value,
    pub parameters: Vec<String>,
    pub warnings: Vec<Problem>,
}

/// What saving a template does with its content: read, normalize, check (placeholders allowed).
pub fn check_content(kind: TemplateKind, content: &Value) -> Result<Checked, Vec<Problem>> {
    let document = read_content(content).map_err(|p| vec![p])?;
    let normalized = normalize(kind, &document)?;
    let warnings = match kind {
        TemplateKind::Rule => rule::warnings(&rule::check(&normalized)?),
        TemplateKind::Driver => {
            driver::check(&normalized, true)?;
            Vec::new()
        }
    };
    let parameters = params::placeholders(&normalized).into_iter().collect();
    Ok(Checked { normalized, parameters, warnings })
}

pub fn normalize(kind: TemplateKind, document: &Value) -> Result<Value, Vec<Problem>> {
    match kind {
        TemplateKind::Rule => rule::normalize(document),
        TemplateKind::Driver => driver::normalize(document),
    }
}

/// A rendered document, ready to send to one edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    Rule(RuleDocument),
    Driver(DriverDocument),
}

/// Checks a normalized document after rendering: no placeholder may remain in number fields.
pub fn load(kind: TemplateKind, rendered: &Value) -> Result<Document, Vec<Problem>> {
    match kind {
        TemplateKind::Rule => rule::check(rendered).map(Document::Rule),
        TemplateKind::Driver => driver::check(rendered, false).map(Document::Driver),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn string_content_reports_line_and_column() {
        let err = check_content(TemplateKind::Rule, &json!("{\n  \"rules\": {,}\n}")).expect_err("bad json");
        assert_eq!(err[0].to_string(), "content: invalid JSON at line 2, column 13: key must be a string");
    }

    #[test]
    fn one_rule_object_is_a_document_with_one_rule() {
        let checked = check_content(
            TemplateKind::Rule,
            &json!({"id": "r1", "sql": "SELECT * FROM ${stream}", "actions": [{"log": {}}]}),
        )
        .expect("valid");
        assert_eq!(checked.parameters, ["stream"]);
        assert_eq!(checked.normalized["rules"]["r1"]["id"], "r1");
    }

    #[test]
    fn kinds_parse() {
        assert_eq!("driver".parse(), Ok(TemplateKind::Driver));
        assert!("rules".parse::<TemplateKind>().is_err());
    }
}
