//! Every upstream example that is a rule or driver document is accepted as a template.

use domain::template::{TemplateKind, check_content};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../fixtures/upstream/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .expect("fixture json")
}

#[test]
fn rule_documents_are_accepted() {
    // (file, parameters it uses)
    let cases: [(&str, &[&str]); 7] = [
        ("ekuiper_ruleset_import.json", &[]),
        ("ekuiper_data_import_streams_rules_sourceconfig.json", &[]),
        ("ekuiper_data_import_rule_with_full_options.json", &[]),
        ("ekuiper_data_export_full_example.json", &[]),
        ("ekuiper_rules_with_version.json", &[]),
        ("ekuiper_graph_rule_example.json", &["mqtt_srv"]),
        ("neuronex_api_template_export_ekuiper.json", &[]),
    ];
    for (name, parameters) in cases {
        let checked = check_content(TemplateKind::Rule, &fixture(name)).unwrap_or_else(|p| panic!("{name}: {p:?}"));
        assert_eq!(checked.parameters, parameters, "{name}");
        // The same document given as exported text (a JSON string) is accepted too.
        let as_text = Value::String(fixture(name).to_string());
        check_content(TemplateKind::Rule, &as_text).unwrap_or_else(|p| panic!("{name} as text: {p:?}"));
    }
}

#[test]
fn a_rule_without_its_stream_is_accepted_with_a_warning() {
    let checked =
        check_content(TemplateKind::Rule, &fixture("ekuiper_data_import_rule_with_full_options.json")).expect("valid");
    assert_eq!(checked.warnings.len(), 1);
    assert_eq!(
        checked.warnings[0].to_string(),
        "rules.hot: reads `simup`, which this template does not define; it must already exist on every target"
    );
}

#[test]
fn driver_documents_are_accepted() {
    for name in ["neuron_global_drivers_put_request.json", "neuronex_api_template_export_neuron.json"] {
        check_content(TemplateKind::Driver, &fixture(name)).unwrap_or_else(|p| panic!("{name}: {p:?}"));
    }
    // The documented bulk example names groups `name` and misspells `precison`: both normalized.
    let checked =
        check_content(TemplateKind::Driver, &fixture("neuron_global_drivers_put_request.json")).expect("valid");
    let group = &checked.normalized["nodes"][0]["groups"][0];
    assert_eq!(group["group"], "group1");
    assert_eq!(group["tags"][0]["precision"], 1);
}

#[test]
fn documents_of_the_other_kind_are_refused_with_a_reason() {
    let err = check_content(TemplateKind::Driver, &fixture("ekuiper_ruleset_import.json")).expect_err("not a driver");
    assert_eq!(
        err[0].to_string(),
        "nodes: not a driver document: expected {nodes: [...]} as NeuronEX or Neuron export it"
    );
    let err = check_content(TemplateKind::Rule, &fixture("neuronex_api_template_export_neuron.json"))
        .expect_err("not a rule");
    assert!(err[0].message.starts_with("not a rule document"), "{err:?}");
}
