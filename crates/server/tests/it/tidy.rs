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

#[test]
fn english_and_chinese_have_the_same_keys() {
    let text = include_str!("../../console/i18n.js");
    let zh_at = text.find("\n  zh: {").expect("a zh block");
    let en = keys(&text[..zh_at]);
    let zh = keys(&text[zh_at..]);
    assert!(en.len() > 50, "found {} English keys", en.len());
    let only_en: Vec<&String> = en.difference(&zh).collect();
    let only_zh: Vec<&String> = zh.difference(&en).collect();
    assert!(only_en.is_empty() && only_zh.is_empty(), "English only: {only_en:?}; Chinese only: {only_zh:?}");
}
