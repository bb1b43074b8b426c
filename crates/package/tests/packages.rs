//! A real plugin package and a corpus of hostile ones, each refused with its reason.

use std::io::{Cursor, Write};

use package::{Limits, PackageError, inspect};
use zip::write::SimpleFileOptions;

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in files {
        writer.start_file(*name, SimpleFileOptions::default()).expect("entry");
        writer.write_all(content).expect("write");
    }
    writer.finish().expect("finish").into_inner()
}

const META: &[u8] = br#"{"version":"v1.0.0","language":"python","executable":"pysam.py","sources":["pyjson"],"sinks":["print"],"functions":["revert"]}"#;

fn valid() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("pysam.json", META),
        ("pysam.py", b"print('hi')\n"),
        ("sources/pyjson.yaml", b"default: {}\n"),
        ("requirements.txt", b""),
    ]
}

fn check(bytes: Vec<u8>) -> Result<package::Manifest, PackageError> {
    inspect(Cursor::new(bytes), "pysam", &Limits::default())
}

/// Sets a header flag bit in both the local and the central header of every entry.
fn patch_flags(mut bytes: Vec<u8>, bit: u16) -> Vec<u8> {
    for i in 0..bytes.len().saturating_sub(10) {
        let offset = match &bytes[i..i + 4] {
            [0x50, 0x4b, 0x03, 0x04] => 6,
            [0x50, 0x4b, 0x01, 0x02] => 8,
            _ => continue,
        };
        let flags = u16::from_le_bytes([bytes[i + offset], bytes[i + offset + 1]]) | bit;
        bytes[i + offset..i + offset + 2].copy_from_slice(&flags.to_le_bytes());
    }
    bytes
}

/// Renames every occurrence of one entry name to another of the same length.
fn rename(bytes: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes;
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    out
}

#[test]
fn a_real_python_plugin_is_accepted() {
    let manifest = check(zip_of(&valid())).expect("valid");
    assert_eq!((manifest.language.as_str(), manifest.executable.as_str(), manifest.files), ("python", "pysam.py", 4));
    assert_eq!(manifest.sources, ["pyjson"]);
}

#[test]
fn the_upstream_metadata_examples_are_accepted() {
    for (file, name, executable) in [
        ("ekuiper_portable_pysam_python.json", "pysam", "pysam.py"),
        ("ekuiper_portable_mirror_go.json", "mirror", "mirror"),
    ] {
        let meta =
            std::fs::read(format!("{}/../../fixtures/upstream/{file}", env!("CARGO_MANIFEST_DIR"))).expect("fixture");
        let json_name = format!("{name}.json");
        let source = std::str::from_utf8(&meta).expect("utf8");
        let source_name: serde_json::Value = serde_json::from_str(source).expect("json");
        let yaml = format!("sources/{}.yaml", source_name["sources"][0].as_str().expect("source"));
        let bytes = zip_of(&[(&json_name, &meta), (executable, b"binary"), (&yaml, b"default: {}")]);
        inspect(Cursor::new(bytes), name, &Limits::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn hostile_and_broken_packages_are_refused_with_a_reason() {
    let with = |extra: (&'static str, &'static [u8])| {
        let mut files = valid();
        files.push(extra);
        zip_of(&files)
    };
    let bomb_data: &'static [u8] = Box::leak(vec![0u8; 64 * 1024 * 1024].into_boxed_slice());
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"PK not really".to_vec(), "not_a_zip", "not a zip archive"),
        (Vec::new(), "not_a_zip", "not a zip archive"),
        (with(("../evil.sh", b"rm -rf /")), "unsafe_path", "entry `../evil.sh` has an unsafe path"),
        (with(("a/../../evil.sh", b"x")), "unsafe_path", "unsafe path"),
        (with(("/etc/cron.d/evil", b"x")), "unsafe_path", "unsafe path"),
        (patch_flags(zip_of(&valid()), 1), "encrypted_entry", "is encrypted"),
        (
            rename(
                zip_of(&[("pysam.json", META), ("pysam.py", b"x"), ("sources/pyjson.yaml", b"x"), ("pysam.pz", b"y")]),
                "pysam.pz",
                "pysam.py",
            ),
            "duplicate_entry",
            "entry `pysam.py` appears more than once",
        ),
        (with(("PYSAM.PY", b"x")), "duplicate_entry", "appears more than once"),
        (with(("zeros.bin", bomb_data)), "zip_bomb", "expands"),
        (zip_of(&[("pysam.py", b"x")]), "missing_metadata", "missing pysam.json at the zip root"),
        (zip_of(&[("lib/pysam.json", META), ("pysam.py", b"x")]), "missing_metadata", "missing pysam.json"),
        (
            zip_of(&[("pysam.json", b"{not json"), ("pysam.py", b"x")]),
            "invalid_metadata",
            "pysam.json is not valid plugin metadata",
        ),
        (
            zip_of(&[
                ("pysam.json", br#"{"name":"other","version":"1","language":"go","executable":"x","sinks":["a"]}"#),
                ("x", b"x"),
            ]),
            "plugin_name_mismatch",
            "names the plugin `other`",
        ),
        (
            zip_of(&[("pysam.json", br#"{"language":"go","executable":"x","sinks":["a"]}"#), ("x", b"x")]),
            "invalid_metadata",
            "`version` is missing",
        ),
        (
            zip_of(&[
                ("pysam.json", br#"{"version":"1","language":"java","executable":"x","sinks":["a"]}"#),
                ("x", b"x"),
            ]),
            "unsupported_language",
            "language `java` is not supported",
        ),
        (
            zip_of(&[("pysam.json", br#"{"version":"1","language":"go","executable":"x"}"#), ("x", b"x")]),
            "no_symbols",
            "declares no source, sink or function",
        ),
        (
            zip_of(&[("pysam.json", br#"{"version":"1","language":"go","executable":"x","sinks":["a"]}"#)]),
            "missing_executable",
            "the executable `x`",
        ),
        (zip_of(&[("pysam.json", META), ("pysam.py", b"x")]), "missing_source_config", "sources/pyjson.yaml"),
    ];
    for (bytes, code, words) in cases {
        let err = check(bytes).expect_err(code);
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(words), "{code}: {err}");
    }
}

#[test]
fn symbolic_links_are_refused() {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in valid() {
        writer.start_file(name, SimpleFileOptions::default()).expect("entry");
        writer.write_all(content).expect("write");
    }
    writer.add_symlink("link", "/etc/passwd", SimpleFileOptions::default()).expect("symlink");
    let bytes = writer.finish().expect("finish").into_inner();
    assert_eq!(check(bytes).expect_err("symlink").code(), "symlink_in_package");
}

#[test]
fn limits_on_entries_and_sizes_hold() {
    let files = valid();
    let tight = Limits { max_entries: 3, ..Limits::default() };
    let err = inspect(Cursor::new(zip_of(&files)), "pysam", &tight).expect_err("entries");
    assert_eq!(err, PackageError::TooManyEntries { count: 4, max: 3 });
    let small = Limits { max_total_bytes: 100, ..Limits::default() };
    let mut big = valid();
    big.push(("blob.bin", &[7u8; 1000]));
    assert_eq!(inspect(Cursor::new(zip_of(&big)), "pysam", &small).expect_err("total").code(), "zip_bomb");
    let names = ["", "1abc", "has space", "dash-name", &"x".repeat(65)];
    for name in names {
        assert_eq!(
            inspect(Cursor::new(zip_of(&files)), name, &Limits::default()).expect_err(name).code(),
            "invalid_plugin_name"
        );
    }
}
