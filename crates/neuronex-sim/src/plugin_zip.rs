//! eKuiper's checks of a downloaded portable-plugin zip (`internal/plugin/portable/manager.go`),
//! returning the reason texts it uses after `fail to install plugin: `.

use std::io::{Cursor, Read};

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortableMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub executable: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub sinks: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
}

impl PortableMeta {
    pub fn to_json(&self, name: &str) -> Value {
        json!({
            "name": name, "version": self.version, "language": self.language,
            "executable": self.executable, "sources": self.sources, "sinks": self.sinks,
            "functions": self.functions,
        })
    }
}

/// Most a simulated instance unpacks from one zip, so a hostile package cannot exhaust memory.
const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;

pub fn inspect(name: &str, bytes: &[u8]) -> Result<PortableMeta, String> {
    let json_name = format!("{name}.json");
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|_| format!("missing or invalid json file {json_name}, found 0 files in total"))?;
    let file_names: Vec<String> = archive.file_names().filter_map(|n| n.ok()).map(|n| n.into_owned()).collect();
    let invalid_json =
        || format!("missing or invalid json file {json_name}, found {} files in total", file_names.len());
    let mut text = String::new();
    {
        let entry = archive.by_name(&json_name).map_err(|_| invalid_json())?;
        entry.take(MAX_ENTRY_BYTES).read_to_string(&mut text).map_err(|_| invalid_json())?;
    }
    let meta: PortableMeta = serde_json::from_str(&text).map_err(|_| invalid_json())?;
    if let Some(json_name) = meta.name.as_deref().filter(|n| *n != name) {
        return Err(format!("invalid plugin, expect name '{name}' but got '{json_name}'"));
    }
    if meta.language.is_empty() {
        return Err("invalid plugin, missing language".into());
    }
    if meta.executable.is_empty() {
        return Err("invalid plugin, missing executable".into());
    }
    if meta.sources.len() + meta.sinks.len() + meta.functions.len() == 0 {
        return Err("invalid plugin, must define at lease one source, sink or function".into());
    }
    if meta.language != "go" && meta.language != "python" {
        return Err(format!("invalid plugin, language '{}' is not supported", meta.language));
    }
    let required =
        std::iter::once(meta.executable.clone()).chain(meta.sources.iter().map(|s| format!("sources/{s}.yaml")));
    for file in required {
        if !file_names.contains(&file) {
            return Err(format!("missing {file}"));
        }
    }
    Ok(meta)
}
