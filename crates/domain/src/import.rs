//! Edge services as people give them: one JSON object, a JSON array, or CSV rows; and the checks
//! every registered edge service passes (name, endpoint, tags, description).

use serde::Deserialize;

use crate::endpoint::normalize_endpoint;
use crate::filter::check_tags;

/// Most rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 100_000;
/// Longest edge-service name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// How edgefleet signs in to a new or edited edge service; `password` is write-only.
#[derive(Debug, Clone, Deserialize, serde::Serialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    pub kind: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// A new edge service, as the API and imports take it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeInput {
    pub name: String,
    /// Required over HTTP; through an agent, the NeuronEX URL as the agent sees it (shown only;
    /// default `http://127.0.0.1:8085`).
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub auth: Option<AuthInput>,
    /// `http` (default) or `agent`.
    #[serde(default)]
    pub transport: Option<crate::edge::Transport>,
    /// Required with `transport: agent`.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// An edge service's fields after their checks (auth is the server's to seal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEdge {
    pub name: String,
    pub endpoint: String,
    pub description: String,
    pub tags: Vec<String>,
    pub reach: crate::edge::Reach,
}

pub fn checked_name(name: &str) -> Result<String, String> {
    crate::text::check_name("an edge service name", name, MAX_NAME_CHARS)
}

/// Trimmed, sorted, without duplicates, each valid.
pub fn checked_tags(tags: &[String]) -> Result<Vec<String>, String> {
    let mut tags: Vec<String> = tags.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
    tags.sort();
    tags.dedup();
    check_tags(&tags)?;
    Ok(tags)
}

pub fn checked_description(description: &str) -> Result<String, String> {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!("a description is at most {MAX_DESCRIPTION_CHARS} characters"));
    }
    if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("the description contains control characters".into());
    }
    Ok(description.to_owned())
}

/// Checks one edge service; the error names the field.
pub fn check_edge(input: &EdgeInput) -> Result<CheckedEdge, (&'static str, String)> {
    let transport = input.transport.unwrap_or_default();
    let reach = crate::edge::Reach::from_parts(transport, input.agent_id.clone().filter(|id| !id.is_empty()))
        .map_err(|m| ("agent_id", m))?;
    let endpoint = match (&reach, input.endpoint.trim()) {
        (crate::edge::Reach::Agent { .. }, "") => crate::edge::AGENT_DEFAULT_ENDPOINT.to_owned(),
        _ => normalize_endpoint(&input.endpoint).map_err(|m| ("endpoint", m))?,
    };
    if reach != crate::edge::Reach::Http && input.auth.as_ref().is_some_and(|a| a.kind != "none") {
        let why = "an agent-mode service signs in to NeuronEX with the agent's own credentials (edgefleet agent --auth); leave auth out";
        return Err(("auth", why.to_owned()));
    }
    Ok(CheckedEdge {
        name: checked_name(&input.name).map_err(|m| ("name", m))?,
        endpoint,
        description: checked_description(&input.description).map_err(|m| ("description", m))?,
        tags: checked_tags(&input.tags).map_err(|m| ("tags", m))?,
        reach,
    })
}

/// `name,endpoint,tags,description,auth,username,password` with a header row; tags separated by
/// `;` or `|`. Only `name` and `endpoint` are required.
pub fn parse_csv(body: &[u8]) -> Result<Vec<EdgeInput>, String> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(body);
    let headers = reader.headers().map_err(|e| format!("CSV header: {e}"))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(name_at), Some(endpoint_at)) = (column("name"), column("endpoint")) else {
        return Err("the CSV header must name at least the columns name and endpoint".into());
    };
    let known = ["name", "endpoint", "tags", "description", "auth", "username", "password", "transport", "agent_id"];
    if let Some(unknown) = headers.iter().find(|h| !known.iter().any(|k| k.eq_ignore_ascii_case(h))) {
        return Err(format!("unknown CSV column `{unknown}`; columns are {}", known.join(", ")));
    }
    let mut inputs = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // More rows than an import takes are refused without reading the rest.
        if index >= MAX_IMPORT_ROWS {
            return Err(format!("more than {MAX_IMPORT_ROWS} rows; one import takes at most {MAX_IMPORT_ROWS}"));
        }
        let record = record.map_err(|e| format!("CSV row {}: {e}", index + 1))?;
        let field = |at: Option<usize>| at.and_then(|i| record.get(i)).unwrap_or_default().to_owned();
        let auth_kind = field(column("auth"));
        let auth = (!auth_kind.is_empty()).then(|| AuthInput {
            kind: auth_kind,
            username: Some(field(column("username"))).filter(|u| !u.is_empty()),
            password: Some(field(column("password"))).filter(|p| !p.is_empty()),
        });
        inputs.push(EdgeInput {
            name: field(Some(name_at)),
            endpoint: field(Some(endpoint_at)),
            description: field(column("description")),
            tags: field(column("tags"))
                .split([';', '|'])
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            auth,
            transport: match field(column("transport")).as_str() {
                "" => None,
                text => Some(text.parse().map_err(|e| format!("CSV row {}: transport: {e}", index + 1))?),
            },
            agent_id: Some(field(column("agent_id"))).filter(|id| !id.is_empty()),
        });
    }
    Ok(inputs)
}
