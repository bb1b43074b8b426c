//! The console's language files hold the same keys: a string added in one language only would
//! show its key to users of the other.

use std::collections::BTreeSet;

fn keys(block: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut rest = block;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let candidate = &after[..end];
        let tail = after[end + 1..].trim_start();
        if tail.starts_with(':') && candidate.contains('.') && !candidate.contains(' ') {
            keys.insert(candidate.to_owned());
        }
        rest = &after[end + 1..];
    }
    keys
}

/// The keys of the console's English and Chinese blocks.
fn console_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = include_str!("../../console/i18n.js");
    let zh_at = text.find("\n  zh: {").expect("a zh block");
    (keys(&text[..zh_at]), keys(&text[zh_at..]))
}

/// Those of `wanted` that one language of the console (or both) lacks.
fn untranslated(wanted: impl IntoIterator<Item = String>) -> Vec<String> {
    let (en, zh) = console_keys();
    wanted.into_iter().filter(|key| !en.contains(key) || !zh.contains(key)).collect()
}

#[test]
fn english_and_chinese_have_the_same_keys() {
    let (en, zh) = console_keys();
    assert!(en.len() > 50, "found {} English keys", en.len());
    let only_en: Vec<&String> = en.difference(&zh).collect();
    let only_zh: Vec<&String> = zh.difference(&en).collect();
    assert!(only_en.is_empty() && only_zh.is_empty(), "English only: {only_en:?}; Chinese only: {only_zh:?}");
}

/// docs/API.md publishes the error-code table; it must be the server's own, letter for letter.
#[test]
fn the_published_error_codes_are_the_servers() {
    let docs = include_str!("../../../../docs/API.md");
    let begin = "<!-- error-codes:begin -->\n";
    let start = docs.find(begin).expect("the error-code markers") + begin.len();
    let end = docs.find("<!-- error-codes:end -->").expect("the end marker");
    let expected = server::error_codes::markdown_table();
    assert!(
        docs[start..end] == expected,
        "docs/API.md's error codes differ from the server's; put this between the markers:\n{expected}"
    );
}

/// docs/API.md lists every route of the route table with its access rule, and no route it lacks.
#[test]
fn the_published_routes_are_the_servers() {
    let docs = include_str!("../../../../docs/API.md");
    let mut missing = Vec::new();
    for route in server::routes::catalog() {
        let row = format!("| `{} {}` | {:?} |", route.method, route.path, route.access);
        if !docs.contains(&row) {
            missing.push(row);
        }
    }
    assert!(missing.is_empty(), "docs/API.md lacks these rows (or names another rule):\n{}", missing.join("\n"));
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let is_route_row = |line: &&str| methods.iter().any(|m| line.starts_with(&format!("| `{m} /")));
    let listed = docs.lines().filter(is_route_row).count();
    let routes = server::routes::catalog().len();
    assert_eq!(listed, routes, "docs/API.md lists {listed} routes, the server has {routes}");
}

/// Every error code the API answers has its meaning in both of the console's languages, so a
/// Chinese user reads what went wrong in Chinese (the console shows `err.<code>`).
#[test]
fn every_error_code_is_explained_in_the_console_in_both_languages() {
    let missing = untranslated(server::error_codes::ErrorCode::ALL.iter().map(|code| format!("err.{}", code.as_str())));
    assert!(missing.is_empty(), "console/i18n.js lacks (in one language or both): {missing:?}");
    let (en, _) = console_keys();
    let unknown: Vec<&String> = en
        .iter()
        .filter(|key| key.starts_with("err."))
        .filter(|key| !server::error_codes::ErrorCode::ALL.iter().any(|code| format!("err.{}", code.as_str()) == **key))
        .collect();
    assert!(unknown.is_empty(), "console/i18n.js explains codes the server does not have: {unknown:?}");
}

/// The `{parameters}` of each `errp.<code>` text of one language block, by code.
fn parameterized_errors(block: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut found = std::collections::BTreeMap::new();
    for line in block.lines() {
        let Some(rest) = line.trim().strip_prefix("\"errp.") else { continue };
        let (code, text) = rest.split_once("\": ").expect("an errp line is `\"errp.<code>\": \"text\",`");
        let names = text.split('{').skip(1).filter_map(|part| part.split_once('}')).map(|(n, _)| n.to_owned());
        found.insert(code.to_owned(), names.collect());
    }
    found
}

/// An error text with parameters (`errp.<code>`, filled from the answer's `details`) names a code
/// the server has and the same parameters in both languages: a parameter one language lacks
/// would make the console fall back in that language only.
#[test]
fn parameterized_error_texts_match_across_languages_and_name_real_codes() {
    let text = include_str!("../../console/i18n.js");
    let zh_at = text.find("\n  zh: {").expect("a zh block");
    let (en, zh) = (parameterized_errors(&text[..zh_at]), parameterized_errors(&text[zh_at..]));
    assert!(en.len() >= 20, "found {} parameterized error texts", en.len());
    assert_eq!(en, zh, "the parameters of errp.<code> differ between English and Chinese");
    let codes: BTreeSet<&str> = server::error_codes::ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    let unknown: Vec<&String> = en.keys().filter(|code| !codes.contains(code.as_str())).collect();
    assert!(unknown.is_empty(), "errp texts for codes the server does not have: {unknown:?}");
    assert!(en.values().all(|names| !names.is_empty()), "an errp text without parameters belongs in err.<code>");
}

/// Every action the audit can record, and every plain outcome, reads in both of the console's
/// languages (`audit.act.<action>`, `audit.outcome.<outcome>`); none is translated that the
/// server cannot record.
#[test]
fn every_audit_action_and_outcome_is_translated_in_both_languages() {
    use domain::access::Outcome;
    use domain::audit::AuditAction;
    let outcomes = [Outcome::Success, Outcome::Denied, Outcome::Failure, Outcome::Throttled];
    let wanted: Vec<String> = AuditAction::ALL
        .iter()
        .map(|action| format!("audit.act.{action}"))
        .chain(outcomes.iter().map(|outcome| format!("audit.outcome.{}", outcome.as_str())))
        .collect();
    let missing = untranslated(wanted.clone());
    assert!(missing.is_empty(), "console/i18n.js lacks (in one language or both): {missing:?}");
    let (en, zh) = console_keys();
    let stale: Vec<&String> =
        en.iter().chain(&zh).filter(|key| key.starts_with("audit.act.") && !wanted.contains(key)).collect();
    assert!(stale.is_empty(), "console/i18n.js translates actions the server does not record: {stale:?}");
}

/// docs/API.md's table of audit actions is the enum's list, in its order.
#[test]
fn the_api_document_lists_every_audit_action() {
    let docs = include_str!("../../../../docs/API.md");
    let table = docs.split("| action | recorded when").nth(1).expect("the audit action table");
    let listed: Vec<&str> = table
        .lines()
        .skip(2) // the rest of the header line, and the separator
        .take_while(|line| line.starts_with("| `"))
        .filter_map(|line| line.strip_prefix("| `")?.split_once('`').map(|(name, _)| name))
        .collect();
    let actions: Vec<&str> = domain::audit::AuditAction::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(listed, actions, "docs/API.md's audit action table");
}

/// Every webhook event reads in both of the console's languages (`wh.event.<event>`), and the
/// console's list of events to subscribe to is the server's (all but `ping`).
#[test]
fn every_webhook_event_is_offered_and_translated_in_the_console() {
    use domain::webhook::WebhookEvent;
    let missing = untranslated(WebhookEvent::ALL.iter().map(|event| format!("wh.event.{event}")));
    assert!(missing.is_empty(), "console/i18n.js lacks (in one language or both): {missing:?}");
    let app = include_str!("../../console/app.js");
    let offered =
        app.split("const WEBHOOK_EVENTS = [").nth(1).and_then(|rest| rest.split(']').next()).expect("WEBHOOK_EVENTS");
    let offered: Vec<&str> = offered.split(',').map(|name| name.trim().trim_matches('"')).collect();
    let subscribable: Vec<&str> =
        WebhookEvent::ALL.iter().filter(|e| **e != WebhookEvent::Ping).map(|e| e.as_str()).collect();
    assert_eq!(offered, subscribable, "console/app.js's WEBHOOK_EVENTS");
}

/// Every failure code a target can carry reads in both of the console's languages (`fail.<code>`).
#[test]
fn every_failure_code_is_translated_in_both_languages() {
    use domain::delivery::FailureCode;
    let missing = untranslated(FailureCode::ALL.iter().map(|code| format!("fail.{code}")));
    assert!(missing.is_empty(), "console/i18n.js lacks (in one language or both): {missing:?}");
}
