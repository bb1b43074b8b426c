use neuronex_sim::Faults;
use serde_json::json;

use crate::support::{TestApp, code, files_under, python_plugin, sim, sim_state, zip_of};

#[tokio::test]
async fn upload_download_and_refuse_identical_content() {
    let app = TestApp::spawn().await;
    let package = python_plugin("pysam", "v1.0.0");
    let created = app.upload(Some("pysam"), Some(package.clone())).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["manifest"]["language"], "python");
    assert_eq!(created.body["size"], package.len());
    let id = created.body["id"].as_str().expect("id");
    let download = app
        .http
        .get(format!("{}{}", app.base, app.p(&format!("/plugins/{id}/package"))))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("download");
    assert_eq!(download.bytes().await.expect("bytes").to_vec(), package);
    let same = app.upload(Some("pysam_copy"), Some(package)).await;
    assert_eq!((same.status, code(&same)), (409, "plugin_duplicate_content"));
    assert_eq!(same.body["error"]["message"], "this package is identical to plugin `pysam` (same SHA-256)");
    let other = app.upload(Some("pysam"), Some(python_plugin("pysam", "v2.0.0"))).await;
    assert_eq!((other.status, code(&other)), (409, "plugin_name_taken"));
    assert_eq!(
        other.body["error"]["details"]["name"], "pysam",
        "the console's text takes its parameter: {}",
        other.text
    );
    assert_eq!(app.get(&app.p("/plugins")).await.body["total"], 1);
    assert_eq!(files_under(&app.data.path().join("blobs")).len(), 1, "refused uploads leave no blob or temp file");
}

#[tokio::test]
async fn hostile_packages_are_refused_and_leave_nothing_behind() {
    let app = TestApp::spawn().await;
    let meta: &[u8] = br#"{"version":"1","language":"python","executable":"p.py","sinks":["s"]}"#;
    type Case<'a> = (Option<&'a str>, Option<Vec<u8>>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (Some("p"), Some(zip_of(&[("p.json", meta), ("p.py", b"x"), ("../../etc/evil", b"x")])), 422, "unsafe_path"),
        (Some("p"), Some(b"MZ this is an exe".to_vec()), 422, "not_a_zip"),
        (Some("p"), Some(zip_of(&[("other.json", meta), ("p.py", b"x")])), 422, "missing_metadata"),
        (Some("p"), Some(zip_of(&[("p.json", meta)])), 422, "missing_executable"),
        (Some("bad name"), Some(zip_of(&[("p.json", meta)])), 422, "invalid_plugin_name"),
        (None, Some(zip_of(&[("p.json", meta)])), 422, "invalid_plugin"),
        (Some("p"), None, 422, "invalid_plugin"),
    ];
    for (name, file, status, expected) in cases {
        let answer = app.upload(name, file).await;
        assert_eq!((answer.status, code(&answer)), (status, expected), "{}", answer.text);
    }
    let zip = app.upload(Some("p"), Some(zip_of(&[("p.json", meta), ("p.py", b"x"), ("../../etc/evil", b"x")]))).await;
    assert_eq!(
        zip.body["error"]["message"],
        "file: entry `../../etc/evil` has an unsafe path (absolute, or leaving the package with `..`)"
    );
    assert_eq!(app.get(&app.p("/plugins")).await.body["total"], 0);
    assert!(
        files_under(&app.data.path().join("blobs")).is_empty(),
        "{:?}",
        files_under(&app.data.path().join("blobs"))
    );
}

#[tokio::test]
async fn oversized_packages_get_413_and_leave_nothing_behind() {
    let app = TestApp::spawn_with(|config| config.max_plugin_bytes = 64 * 1024).await;
    let big = zip_of(&[("blob.bin", &vec![9u8; 256 * 1024]), ("x", b"y")]);
    let big = [big, vec![0u8; 128 * 1024]].concat();
    let answer = app.upload(Some("big"), Some(big)).await;
    assert_eq!((answer.status, code(&answer)), (413, "plugin_too_large"));
    assert!(files_under(&app.data.path().join("blobs")).is_empty());
}

#[tokio::test]
async fn a_plugin_is_delivered_through_a_signed_link_the_edge_really_downloads() {
    let app = TestApp::spawn().await;
    let sim = sim(4, &["3.6.0", "3.7.0", "2.9.0", "3.5.5"]).await;
    let ids = app.register(&sim, 4).await;
    let created = app.upload(Some("pysam"), Some(python_plugin("pysam", "v1.0.0"))).await;
    let plugin = created.body["id"].as_str().expect("id").to_owned();
    let (delivery, _) = app.deliver(json!({"plugin_id": plugin, "targets": {"ids": ids}})).await;
    assert_eq!((delivery["kind"].as_str(), delivery["state"].as_str()), (Some("plugin"), Some("partial")));
    let targets = app.targets(&delivery).await;
    let statuses: Vec<&str> = targets.iter().map(|t| t["status"].as_str().unwrap_or_default()).collect();
    assert_eq!(statuses, ["succeeded", "succeeded", "failed", "succeeded"]);
    assert_eq!(targets[0]["items"][0], json!({"object": "plugin pysam", "action": "installed"}));
    let edge = sim_state(&sim, 0).await;
    assert_eq!(edge["ekuiper"]["plugins"]["pysam"]["language"], "python");
    // Delivering again overwrites (PUT) by default; with on_conflict fail it names the reason.
    let (again, _) = app.deliver(json!({"plugin_id": plugin, "targets": {"ids": [ids[0].clone()]}})).await;
    assert_eq!(app.targets(&again).await[0]["items"][0]["action"], "updated");
    let (refused, _) = app
        .deliver(json!({"plugin_id": plugin, "targets": {"ids": [ids[0].clone()]}, "options": {"on_conflict": "fail"}}))
        .await;
    assert_eq!(
        app.targets(&refused).await[0]["reason"],
        "plugin pysam: already installed on the edge (on_conflict = fail)"
    );
    let audit = app.get("/api/v1/audit?action=delivery.start").await;
    assert_eq!(audit.body["items"][2]["details"]["plugin_id"], plugin);
}

#[tokio::test]
async fn the_edges_own_install_errors_are_the_reason() {
    // Edges that cannot reach the public URL fail the download, and say so.
    let app = TestApp::spawn_with(|config| config.public_url = Some("http://127.0.0.1:1".into())).await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    let created = app.upload(Some("pysam"), Some(python_plugin("pysam", "v1.0.0"))).await;
    assert_eq!(created.status, 201);
    let (delivery, _) =
        app.deliver(json!({"plugin_id": created.body["id"], "targets": {"ids": ids}, "options": {"retries": 0}})).await;
    let reason = app.targets(&delivery).await[0]["reason"].as_str().expect("reason").to_owned();
    let expected = "update plugin pysam: edge said 1000 \"portable plugin update command error: fail to download file http://127.0.0.1:1/edge/packages/";
    assert!(reason.starts_with(expected), "{reason}");
}

#[tokio::test]
async fn package_links_are_signed_and_checked() {
    let app = TestApp::spawn().await;
    let created = app.upload(Some("pysam"), Some(python_plugin("pysam", "v1.0.0"))).await;
    let sha = created.body["sha256"].as_str().expect("sha");
    let forged = app
        .http
        .get(format!("{}/edge/packages/{sha}/99999999999/00000000000000000000000000000000/pysam.zip", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(forged.status(), 403);
    let body: serde_json::Value = forged.json().await.expect("json");
    assert_eq!(body["error"]["message"], "package link refused: the link's signature is wrong");
}

#[tokio::test]
async fn delete_is_refused_while_delivering_and_removes_an_unused_blob() {
    let app = TestApp::spawn().await;
    let sim = sim(5, &["3.6.0"]).await;
    let ids = app.register(&sim, 5).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 400, ..Faults::default() }));
    let created = app.upload(Some("pysam"), Some(python_plugin("pysam", "v1.0.0"))).await;
    let plugin = created.body["id"].as_str().expect("id").to_owned();
    let started = app
        .post(
            &app.p("/deliveries"),
            json!({"plugin_id": plugin, "targets": {"ids": ids}, "options": {"concurrency": 1}}),
        )
        .await;
    let delivery = started.body["id"].as_str().expect("id").to_owned();
    let refused = app.call(reqwest::Method::DELETE, &app.p(&format!("/plugins/{plugin}")), None).await;
    assert_eq!((refused.status, code(&refused)), (409, "plugin_in_use"));
    app.post(&app.p(&format!("/deliveries/{delivery}/cancel")), json!({})).await;
    app.events(&delivery).await;
    let deleted = app.call(reqwest::Method::DELETE, &app.p(&format!("/plugins/{plugin}")), None).await;
    assert_eq!(deleted.status, 204);
    assert!(files_under(&app.data.path().join("blobs")).is_empty());
}

/// NeuronEX 3.9 (eKuiper 2.4) refuses downloads from private addresses, such as this test's
/// loopback edgefleet, until its eKuiper allows them: the reason says what to change, and the same
/// delivery retried after the gateway allows it goes through.
#[tokio::test]
async fn neuronex_3_9_refuses_private_download_links_with_a_reason_that_says_what_to_change() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.9.2"]).await;
    let ids = app.register(&sim, 1).await;
    let created = app.upload(Some("pysam"), Some(python_plugin("pysam", "v1.0.0"))).await;
    let (delivery, _) =
        app.deliver(json!({"plugin_id": created.body["id"], "targets": {"ids": ids}, "options": {"retries": 0}})).await;
    let reason = app.targets(&delivery).await[0]["reason"].as_str().expect("reason").to_owned();
    assert!(reason.starts_with("update plugin pysam: edge said 1000 \"portable plugin update command error: fail to download file http://127.0.0.1:"), "{reason}");
    assert!(
        reason.ends_with(
            "is in internal network\"; NeuronEX 3.9 and later (eKuiper 2.4+) refuse downloads from private addresses: set \
             `basic.enablePrivateNet: true` in the gateway's eKuiper configuration, or give edgefleet a public download \
             address (`public_url`)"
        ),
        "{reason}"
    );
    let allow = reqwest::Client::new()
        .put(format!("{}/__sim/instances/0/ekuiper-config", sim.base_url))
        .json(&json!({"enablePrivateNet": true}))
        .send()
        .await
        .expect("control API");
    assert_eq!(allow.status(), 200);
    let id = delivery["id"].as_str().expect("id");
    let retried = app.post(&app.p(&format!("/deliveries/{id}/retry")), json!({})).await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    app.events(id).await;
    assert_eq!(sim_state(&sim, 0).await["ekuiper"]["plugins"]["pysam"]["language"], "python");
}

/// A plugin update that fails after eKuiper removed the old version cannot be put back (edgefleet
/// does not hold the earlier package): the target says so, never hides it.
#[tokio::test]
async fn a_restore_that_cannot_put_a_plugin_back_says_so() {
    let app = TestApp::spawn_with(|config| config.public_url = Some("http://127.0.0.1:1".into())).await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    // The gateway runs pysam v0.9, installed from its own disk.
    let dir = tempfile::tempdir().expect("temp dir");
    let old = dir.path().join("pysam.zip");
    std::fs::write(&old, python_plugin("pysam", "v0.9")).expect("zip");
    let install = json!({"name": "pysam", "file": format!("file://{}", old.display())});
    let installed = reqwest::Client::new()
        .post(format!("{}/api/ekuiper/plugins/portables", sim.endpoint(0)))
        .json(&install)
        .send()
        .await;
    assert_eq!(installed.expect("sim").status(), 201);
    let created = app.upload(Some("pysam"), Some(python_plugin("pysam", "v1.0.0"))).await;
    let (delivery, _) =
        app.deliver(json!({"plugin_id": created.body["id"], "targets": {"ids": ids}, "options": {"retries": 0}})).await;
    let target = &app.targets(&delivery).await[0];
    assert_eq!((target["status"].as_str(), target["restored"].as_bool()), (Some("failed"), Some(false)));
    assert_eq!(
        target["restore_failed"],
        "plugin pysam: version v0.9 was replaced and edgefleet does not hold its package; the edge may hold part of the delivery"
    );
    assert!(target["reason"].as_str().unwrap_or_default().ends_with("; restore failed: plugin pysam: version v0.9 was replaced and edgefleet does not hold its package; the edge may hold part of the delivery"));
}
