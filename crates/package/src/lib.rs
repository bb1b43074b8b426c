//! Checks an uploaded eKuiper portable-plugin zip before anything is stored: first as a hostile
//! archive (unsafe paths, links, encryption, duplicates, entry counts, decompression bombs measured
//! while reading, never trusted from headers), then as eKuiper will install it (`<name>.json` at the
//! root naming the plugin, language, executable present, a `sources/<x>.yaml` per source).

use std::collections::BTreeSet;
use std::io::{Read, Seek};

use serde::{Deserialize, Serialize};

/// Bounds on what one package may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_total_bytes: u64,
    pub max_entry_bytes: u64,
    /// Largest decompressed / compressed ratio of an entry larger than `ratio_floor_bytes`.
    pub max_ratio: u64,
    pub ratio_floor_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: 10_000,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024 * 1024,
            max_ratio: 200,
            ratio_floor_bytes: 1024 * 1024,
        }
    }
}

/// The plugin's metadata file, as eKuiper reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub language: String,
    pub executable: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub sinks: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
    /// Entries in the package.
    pub files: usize,
    /// Total decompressed size.
    pub unpacked_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("not a zip archive: {0}")]
    NotZip(String),
    #[error("the package has {count} entries; at most {max} are allowed")]
    TooManyEntries { count: usize, max: usize },
    #[error("entry `{0}` has an unsafe path (absolute, or leaving the package with `..`)")]
    UnsafePath(String),
    #[error("entry `{0}` is a symbolic link; packages may not contain links")]
    Symlink(String),
    #[error("entry `{0}` is encrypted; packages must not be password protected")]
    Encrypted(String),
    #[error("entry `{0}` appears more than once")]
    Duplicate(String),
    #[error("entry `{name}` unpacks to more than {limit} bytes")]
    EntryTooLarge { name: String, limit: u64 },
    #[error("the package unpacks to more than {limit} bytes (a zip bomb?)")]
    TooLarge { limit: u64 },
    #[error("entry `{name}` expands {ratio} times its packed size (a zip bomb?)")]
    SuspiciousRatio { name: String, ratio: u64 },
    #[error("entry `{name}` cannot be read: {reason}")]
    Unreadable { name: String, reason: String },
    #[error("`{0}` is not a valid plugin name: use letters, digits and _ (1 to 64), starting with a letter")]
    BadName(String),
    #[error("missing {0} at the zip root: the JSON file must carry the plugin name")]
    MissingMetadata(String),
    #[error("{file} is not valid plugin metadata: {reason}")]
    BadMetadata { file: String, reason: String },
    #[error("{file} names the plugin `{found}`, but the plugin is called `{expected}`")]
    NameMismatch { file: String, expected: String, found: String },
    #[error("{file}: language `{0}` is not supported; eKuiper portable plugins are go or python", file = .1)]
    Language(String, String),
    #[error("{file} declares no source, sink or function")]
    NoSymbols { file: String },
    #[error("the executable `{0}` named in the metadata is not in the package")]
    MissingExecutable(String),
    #[error("source `{source_name}` needs sources/{source_name}.yaml in the package")]
    MissingSourceConfig { source_name: String },
}

impl PackageError {
    /// A stable snake_case code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            PackageError::NotZip(_) => "not_a_zip",
            PackageError::TooManyEntries { .. } => "too_many_entries",
            PackageError::UnsafePath(_) => "unsafe_path",
            PackageError::Symlink(_) => "symlink_in_package",
            PackageError::Encrypted(_) => "encrypted_entry",
            PackageError::Duplicate(_) => "duplicate_entry",
            PackageError::EntryTooLarge { .. }
            | PackageError::TooLarge { .. }
            | PackageError::SuspiciousRatio { .. } => "zip_bomb",
            PackageError::Unreadable { .. } => "unreadable_entry",
            PackageError::BadName(_) => "invalid_plugin_name",
            PackageError::MissingMetadata(_) => "missing_metadata",
            PackageError::BadMetadata { .. } => "invalid_metadata",
            PackageError::NameMismatch { .. } => "plugin_name_mismatch",
            PackageError::Language(..) => "unsupported_language",
            PackageError::NoSymbols { .. } => "no_symbols",
            PackageError::MissingExecutable(_) => "missing_executable",
            PackageError::MissingSourceConfig { .. } => "missing_source_config",
        }
    }
}

pub fn check_name(name: &str) -> Result<(), PackageError> {
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid { Ok(()) } else { Err(PackageError::BadName(name.to_owned())) }
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    executable: Option<String>,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    sinks: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
}

/// Checks the package for plugin `name`. Reads every entry to the end, so the decompressed size
/// is what the data really holds.
pub fn inspect<R: Read + Seek>(mut reader: R, name: &str, limits: &Limits) -> Result<Manifest, PackageError> {
    check_name(name)?;
    let listed = central_directory_names(&mut reader)?;
    if listed.len() > limits.max_entries {
        return Err(PackageError::TooManyEntries { count: listed.len(), max: limits.max_entries });
    }
    // The zip library indexes entries by name and keeps one of a duplicated pair; eKuiper's Go
    // unzip would see both. So duplicates are found in the central directory itself.
    let mut names = BTreeSet::new();
    for entry_name in &listed {
        if !names.insert(entry_name.to_lowercase()) {
            return Err(PackageError::Duplicate(entry_name.clone()));
        }
    }
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| PackageError::NotZip(e.to_string()))?;
    let mut seen = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut total = 0u64;
    let metadata_name = format!("{name}.json");
    let mut metadata: Option<Vec<u8>> = None;
    for index in 0..archive.len() {
        let entry_name = {
            let raw = archive.by_index_raw(index).map_err(|e| PackageError::NotZip(e.to_string()))?;
            let entry_name = raw.name().map(|n| n.into_owned()).unwrap_or_else(|_| format!("entry #{index}"));
            if raw.enclosed_name().is_none() || entry_name.starts_with('/') || entry_name.contains('\\') {
                return Err(PackageError::UnsafePath(entry_name));
            }
            if raw.is_symlink() || raw.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
                return Err(PackageError::Symlink(entry_name));
            }
            if raw.encrypted() {
                return Err(PackageError::Encrypted(entry_name));
            }
            if !seen.insert(entry_name.to_lowercase()) {
                return Err(PackageError::Duplicate(entry_name));
            }
            if raw.is_dir() {
                continue;
            }
            entry_name
        };
        let mut entry = archive
            .by_index(index)
            .map_err(|e| PackageError::Unreadable { name: entry_name.clone(), reason: e.to_string() })?;
        let compressed = entry.compressed_size().max(1);
        let keep = entry_name == metadata_name;
        let mut kept = Vec::new();
        let size = measure(&mut entry, limits.max_entry_bytes, keep.then_some(&mut kept))
            .map_err(|reason| PackageError::Unreadable { name: entry_name.clone(), reason })?;
        if size > limits.max_entry_bytes {
            return Err(PackageError::EntryTooLarge { name: entry_name, limit: limits.max_entry_bytes });
        }
        if size > limits.ratio_floor_bytes && size / compressed > limits.max_ratio {
            return Err(PackageError::SuspiciousRatio { name: entry_name, ratio: size / compressed });
        }
        total += size;
        if total > limits.max_total_bytes {
            return Err(PackageError::TooLarge { limit: limits.max_total_bytes });
        }
        if keep {
            metadata = Some(kept);
        }
        files.insert(entry_name);
    }
    let metadata = metadata.ok_or_else(|| PackageError::MissingMetadata(metadata_name.clone()))?;
    let raw: RawMetadata = serde_json::from_slice(&metadata)
        .map_err(|e| PackageError::BadMetadata { file: metadata_name.clone(), reason: e.to_string() })?;
    if let Some(found) = raw.name.filter(|n| n != name) {
        return Err(PackageError::NameMismatch { file: metadata_name, expected: name.to_owned(), found });
    }
    let required = |field: &str, value: Option<String>| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| PackageError::BadMetadata {
            file: metadata_name.clone(),
            reason: format!("`{field}` is missing"),
        })
    };
    let version = required("version", raw.version)?;
    let language = required("language", raw.language)?;
    let executable = required("executable", raw.executable)?;
    if language != "go" && language != "python" {
        return Err(PackageError::Language(language, metadata_name));
    }
    if raw.sources.len() + raw.sinks.len() + raw.functions.len() == 0 {
        return Err(PackageError::NoSymbols { file: metadata_name });
    }
    if !files.contains(&executable) {
        return Err(PackageError::MissingExecutable(executable));
    }
    for source in &raw.sources {
        if !files.contains(&format!("sources/{source}.yaml")) {
            return Err(PackageError::MissingSourceConfig { source_name: source.clone() });
        }
    }
    Ok(Manifest {
        version,
        language,
        executable,
        sources: raw.sources,
        sinks: raw.sinks,
        functions: raw.functions,
        files: files.len(),
        unpacked_bytes: total,
    })
}

/// The entry names as the central directory lists them, duplicates included. Archives that need
/// ZIP64 for their directory are read through the zip library instead.
fn central_directory_names<R: Read + Seek>(reader: &mut R) -> Result<Vec<String>, PackageError> {
    use std::io::SeekFrom;
    let not_zip = |reason: &str| PackageError::NotZip(reason.to_owned());
    let length = reader.seek(SeekFrom::End(0)).map_err(|e| PackageError::NotZip(e.to_string()))?;
    let tail_length = length.min(22 + 65_535);
    reader.seek(SeekFrom::Start(length - tail_length)).map_err(|e| PackageError::NotZip(e.to_string()))?;
    let mut tail = vec![0u8; tail_length as usize];
    reader.read_exact(&mut tail).map_err(|e| PackageError::NotZip(e.to_string()))?;
    let end = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| not_zip("no end of central directory record"))?;
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let entries = u16_at(&tail, end + 10);
    let size = u32_at(&tail, end + 12);
    let offset = u32_at(&tail, end + 16);
    let names = if entries == u16::MAX || size == u32::MAX || offset == u32::MAX {
        reader.seek(SeekFrom::Start(0)).map_err(|e| PackageError::NotZip(e.to_string()))?;
        let archive = zip::ZipArchive::new(&mut *reader).map_err(|e| PackageError::NotZip(e.to_string()))?;
        archive.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect()
    } else {
        if u64::from(offset) + u64::from(size) > length {
            return Err(not_zip("the central directory lies outside the file"));
        }
        reader.seek(SeekFrom::Start(u64::from(offset))).map_err(|e| PackageError::NotZip(e.to_string()))?;
        let mut directory = vec![0u8; size as usize];
        reader.read_exact(&mut directory).map_err(|e| PackageError::NotZip(e.to_string()))?;
        let mut names = Vec::with_capacity(usize::from(entries));
        let mut at = 0usize;
        while at + 46 <= directory.len() && directory[at..at + 4] == [0x50, 0x4b, 0x01, 0x02] {
            let name_length = usize::from(u16_at(&directory, at + 28));
            let extra_length = usize::from(u16_at(&directory, at + 30));
            let comment_length = usize::from(u16_at(&directory, at + 32));
            let name =
                directory.get(at + 46..at + 46 + name_length).ok_or_else(|| not_zip("truncated central directory"))?;
            names.push(String::from_utf8_lossy(name).into_owned());
            at += 46 + name_length + extra_length + comment_length;
        }
        if names.len() != usize::from(entries) {
            return Err(not_zip("the central directory does not hold the entries it announces"));
        }
        names
    };
    reader.seek(SeekFrom::Start(0)).map_err(|e| PackageError::NotZip(e.to_string()))?;
    Ok(names)
}

/// Reads to the end (or one byte past `limit`), counting; optionally keeps the bytes.
fn measure(reader: &mut impl Read, limit: u64, mut keep: Option<&mut Vec<u8>>) -> Result<u64, String> {
    let mut buffer = [0u8; 64 * 1024];
    let mut total = 0u64;
    let mut limited = reader.take(limit + 1);
    loop {
        let n = limited.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if let Some(kept) = keep.as_deref_mut()
            && kept.len() < 1024 * 1024
        {
            kept.extend_from_slice(&buffer[..n]);
        }
    }
}
