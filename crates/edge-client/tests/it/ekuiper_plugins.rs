use serde_json::json;

use crate::support::{FileServer, client, python_plugin, sim, target, zip_of};

#[tokio::test]
async fn a_real_python_plugin_is_downloaded_installed_and_described() {
    let sim = sim("3.6.0").await;
    let files = FileServer::start().await;
    let url = files.put("/pkg/pysam.zip", python_plugin("pysam"));
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.install_portable("pysam", &url, false).await.expect("install");
    // Listed as eKuiper's portable manager lists plugins: their info objects (lf-edge/ekuiper
    // internal/server/portable_init.go, `portablesHandler` GET -> `portableManager.List()`).
    let listed = edge.list_portables().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].language.as_str()), ("pysam", "python"));
    assert_eq!(listed[0].sources, vec!["pyjson"]);
    let described = edge.get_portable("pysam").await.expect("get").expect("installed");
    assert_eq!(described["language"], "python");
    assert_eq!(described["sources"], json!(["pyjson"]));
    // Its source type becomes usable in streams and rules.
    edge.create_stream(edge_client::StreamKind::Stream, "s", r#"CREATE STREAM s () WITH (TYPE="pyjson")"#)
        .await
        .expect("stream");
    edge.create_rule(&json!({"id": "r", "sql": "SELECT * FROM s", "actions": [{"print": {}}]})).await.expect("rule");
    let err = edge.install_portable("pysam", &url, false).await.expect_err("duplicate");
    assert_eq!(err.message, "portable plugin create command error: invalid name pysam: duplicate");
    edge.install_portable("pysam", &url, true).await.expect("PUT replaces");
    edge.delete_portable("pysam").await.expect("delete");
    assert_eq!(edge.get_portable("pysam").await.expect("get"), None);
    let err = edge.delete_portable("pysam").await.expect_err("delete missing");
    assert_eq!(
        (err.status, err.message.as_str()),
        (Some(400), "delete portable plugin pysam error: portable plugin pysam is not found")
    );
}

#[tokio::test]
async fn put_installs_a_plugin_that_was_not_there() {
    let sim = sim("3.6.0").await;
    let files = FileServer::start().await;
    let url = files.put("/m.zip", python_plugin("m"));
    client().edge(&target(&sim, 0)).install_portable("m", &url, true).await.expect("PUT as create");
}

#[tokio::test]
async fn install_errors_name_the_reason_as_ekuiper_does() {
    let sim = sim("3.6.0").await;
    let files = FileServer::start().await;
    let meta = |body: &str| body.as_bytes().to_vec();
    let packages: Vec<(&str, &str, Vec<u8>, String)> = vec![
        (
            "mirror",
            "/missing.zip",
            Vec::new(),
            "fail to download file {url}: cannot download the file with status: 404 Not Found".into(),
        ),
        (
            "mirror",
            "/nojson.zip",
            zip_of(&[("a.txt", b"x"), ("b.txt", b"y"), ("c.txt", b"z")]),
            "fail to install plugin: missing or invalid json file mirror.json, found 3 files in total".into(),
        ),
        (
            "mirror",
            "/other.zip",
            zip_of(&[(
                "mirror.json",
                &meta(r#"{"name":"other","language":"go","executable":"mirror","sinks":["file"]}"#),
            )]),
            "fail to install plugin: invalid plugin, expect name 'mirror' but got 'other'".into(),
        ),
        (
            "mirror",
            "/nolang.zip",
            zip_of(&[("mirror.json", &meta(r#"{"executable":"mirror","sinks":["file"]}"#))]),
            "fail to install plugin: invalid plugin, missing language".into(),
        ),
        (
            "mirror",
            "/noexe.zip",
            zip_of(&[("mirror.json", &meta(r#"{"language":"go","sinks":["file"]}"#))]),
            "fail to install plugin: invalid plugin, missing executable".into(),
        ),
        (
            "mirror",
            "/nosym.zip",
            zip_of(&[("mirror.json", &meta(r#"{"language":"go","executable":"mirror"}"#))]),
            "fail to install plugin: invalid plugin, must define at lease one source, sink or function".into(),
        ),
        (
            "mirror",
            "/java.zip",
            zip_of(&[("mirror.json", &meta(r#"{"language":"java","executable":"mirror","sinks":["file"]}"#))]),
            "fail to install plugin: invalid plugin, language 'java' is not supported".into(),
        ),
        (
            "mirror",
            "/exe.zip",
            zip_of(&[("mirror.json", &meta(r#"{"language":"go","executable":"mirror","sinks":["file"]}"#))]),
            "fail to install plugin: missing mirror".into(),
        ),
        (
            "mirror",
            "/yaml.zip",
            zip_of(&[
                ("mirror.json", &meta(r#"{"language":"go","executable":"mirror","sources":["random"]}"#)),
                ("mirror", b"\x7fELF"),
            ]),
            "fail to install plugin: missing sources/random.yaml".into(),
        ),
    ];
    let client = client();
    let target = target(&sim, 0);
    for (name, path, bytes, reason) in packages {
        let url = if bytes.is_empty() { format!("{}{path}", files.base_url) } else { files.put(path, bytes) };
        let err = client.edge(&target).install_portable(name, &url, false).await.expect_err(path);
        let expected = format!("portable plugin create command error: {}", reason.replace("{url}", &url));
        assert_eq!((err.status, err.code, err.message.as_str()), (Some(400), Some(1000), expected.as_str()), "{path}");
        assert_eq!(err.object, format!("plugin {name}"));
    }
}

#[tokio::test]
async fn request_errors_come_before_any_download() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    let err = edge.install_portable("", "http://127.0.0.1:1/x.zip", false).await.expect_err("empty name");
    assert_eq!(err.message, "portable plugin create command error: invalid name : should not be empty");
    let err = edge.install_portable("m", "http://127.0.0.1:1/m.tar.gz", false).await.expect_err("not a zip url");
    assert_eq!(err.message, "portable plugin create command error: invalid uri http://127.0.0.1:1/m.tar.gz");
    let err = edge.install_portable("m", "ftp://127.0.0.1/m.zip", false).await.expect_err("scheme");
    assert_eq!(err.message, "portable plugin create command error: invalid uri ftp://127.0.0.1/m.zip");
    let err = edge.install_portable("m", "http://127.0.0.1:1/m.zip", false).await.expect_err("refused");
    assert!(
        err.message
            .starts_with("portable plugin create command error: fail to download file http://127.0.0.1:1/m.zip: "),
        "{}",
        err.message
    );
}
