//! Template loading and parameter rendering: any text, as either kind, must give a document or
//! a list of problems, in time linear in its size.
#![no_main]

use std::collections::BTreeMap;

use domain::params::{self, ParamValues};
use domain::template::{self, TemplateKind};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let content = Value::String(text.to_owned());
    for kind in [TemplateKind::Rule, TemplateKind::Driver] {
        let Ok(checked) = template::check_content(kind, &content) else {
            continue;
        };
        // Every parameter gets a value with quotes and placeholders of its own: rendering must
        // neither expand them again nor break the document it lands in.
        let values: BTreeMap<String, Value> =
            checked.parameters.iter().map(|name| (name.clone(), Value::from("\"${x}\\"))).collect();
        let given = ParamValues { defaults: Some(&values), ..ParamValues::default() };
        if let Ok(rendered) = params::render(&checked.normalized, &given) {
            let _ = template::load(kind, &rendered);
        }
    }
    let _ = params::placeholder_count(&content, 10_000);
});
