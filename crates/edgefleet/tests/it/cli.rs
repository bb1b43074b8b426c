//! The command line as an operator uses it day to day: names instead of ids, a saved project,
//! the deliveries of a project, every import problem at once, completions, and output that a
//! pipe or a log file can take.

use serde_json::json;

use crate::process::{Cli, Server};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the command line and answers (stdout, stderr), failing the test unless it succeeded.
fn ok(cli: &Cli, args: &[&str]) -> (String, String) {
    let output = cli.run(args);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{args:?}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Runs the command line expecting it to fail, and answers its stderr.
fn refused(cli: &Cli, args: &[&str]) -> String {
    let output = cli.run(args);
    assert!(!output.status.success(), "{args:?} should fail: {}", text(&output.stdout));
    text(&output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_names_remembers_a_project_and_lists_its_deliveries() {
    let data = tempfile::tempdir().expect("temp dir");
    let sim = crate::process::sim(3).await;
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, _template) = api.rule_setup(&sim).await; // organization "o", project "p", template "t"
    let cli = Cli::signed_in(&server);

    let no_project = refused(&cli, &["template", "list"]);
    assert!(no_project.contains("no project: pass --project"), "{no_project}");
    let (listed, _) = ok(&cli, &["project", "list"]);
    assert!(listed.contains(&format!("  {project:<38} o/p")), "{listed}");

    let (chosen, _) = ok(&cli, &["use", "o/p"]);
    assert_eq!(chosen.trim(), format!("using project o/p ({project})"));
    let (listed, _) = ok(&cli, &["project", "list"]);
    assert!(listed.contains(&format!("* {project:<38} o/p")), "the saved project is marked: {listed}");

    // No --project from here on; the template by its name.
    let (delivered, progress) =
        ok(&cli, &["deliver", "--template", "t", "--template-version", "1", "--all", "--watch"]);
    let id = delivered.split_whitespace().nth(1).expect("delivery id").trim_end_matches(':').to_owned();
    assert!(delivered.contains(&format!("delivery {id}: succeeded")), "{delivered}");
    assert!(!progress.contains('\r') && !progress.contains('\x1b'), "a pipe gets no control characters: {progress:?}");
    assert!(progress.contains("] 3/3  ✓ 3  ✗ 0"), "the final counts, once: {progress:?}");

    let (deliveries, _) = ok(&cli, &["delivery", "list"]);
    let row = deliveries.lines().find(|line| line.starts_with(&id)).unwrap_or_else(|| panic!("{deliveries}"));
    for column in ["succeeded", "apply", "t v1"] {
        assert!(row.contains(column), "{column} in {row}");
    }
    assert!(deliveries.ends_with("1 of 1 deliveries shown\n"), "{deliveries}");
    let (shown, _) = ok(&cli, &["delivery", "show", &id]);
    assert!(shown.contains("state      succeeded") && shown.contains("sends      t v1 (apply)"), "{shown}");
    assert!(shown.contains("3 total: 3 succeeded, 0 failed"), "{shown}");
    let (watched, _) = ok(&cli, &["delivery", "watch", &id]);
    assert!(watched.contains(&format!("delivery {id}: succeeded")), "{watched}");
    let retry = refused(&cli, &["delivery", "retry", &id]);
    assert!(retry.contains("no target of this delivery failed"), "{retry}");
    let cancel = refused(&cli, &["delivery", "cancel", &id]);
    assert!(cancel.contains("the delivery already ended (succeeded)"), "{cancel}");

    // A delivery that waits for its start time is canceled by the command line.
    let month_ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 24 * 3600);
    let in_a_month = domain::edge::utc_text(
        i64::try_from(month_ahead.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms"),
    );
    let (scheduled, _) = ok(&cli, &["deliver", "--template", "t", "--all", "--start-at", &in_a_month]);
    let later = scheduled.split_whitespace().nth(1).expect("delivery id").trim_end_matches(':').to_owned();
    let (canceled, _) = ok(&cli, &["delivery", "cancel", &later]);
    assert!(canceled.starts_with(&format!("delivery {later}: cancel")), "{canceled}");

    let (audit, _) = ok(&cli, &["audit", "--project", "o/p", "--action", "delivery."]);
    let created = audit.lines().find(|line| line.contains("delivery.start")).unwrap_or_else(|| panic!("{audit}"));
    let at = &created[..19];
    assert!(at.len() == 19 && at.as_bytes()[4] == b'-' && at.as_bytes()[10] == b' ', "a readable UTC time: {created}");
    assert!(audit.lines().all(|line| !line.contains("edge_service.import")), "only the prefix asked: {audit}");

    // Names that say nothing, or too much.
    let missing = refused(&cli, &["deliver", "--template", "nope", "--all"]);
    assert!(missing.contains("no template \"nope\" in this project"), "{missing}");
    let unknown = refused(&cli, &["edge", "list", "--project", "o/nope"]);
    assert!(unknown.contains("no project \"o/nope\" among yours"), "{unknown}");
    let org = api.post("/api/v1/orgs", json!({"name": "o2"})).await;
    api.post(&format!("/api/v1/orgs/{}/projects", org["id"].as_str().expect("id")), json!({"name": "p"})).await;
    let ambiguous = refused(&cli, &["edge", "list", "--project", "p"]);
    assert!(
        ambiguous.contains("\"p\" names several projects; say which: ") && ambiguous.contains("o2/p"),
        "{ambiguous}"
    );
    let (edges, _) = ok(&cli, &["edge", "list", "--project", "o/p", "--edge-version", "3"]);
    assert!(edges.ends_with("3 of 3 shown\n"), "{edges}");
    let (none, _) = ok(&cli, &["edge", "list", "--project", "o/p", "--version", "2.9"]);
    assert!(none.ends_with("0 of 0 shown\n"), "the old spelling filters too: {none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_a_fleet_and_prints_every_import_problem() {
    let data = tempfile::tempdir().expect("temp dir");
    let sim = crate::process::sim(3).await;
    let server = Server::start(data.path());
    let project = server.api().await.project().await;
    let cli = Cli::signed_in(&server);
    let files = tempfile::tempdir().expect("temp dir");

    // The simulator's `--manifest` file as it writes it (with its `index` and `version`).
    let fleet = files.path().join("fleet.json");
    std::fs::write(&fleet, serde_json::to_string_pretty(&sim.manifest).expect("json")).expect("write");
    let (imported, notes) = ok(&cli, &["edge", "import", "--project", &project, fleet.to_str().expect("path")]);
    assert_eq!(imported.trim(), "imported 3 edge services");
    assert!(notes.contains("simulator manifest"), "{notes}");
    let rows: Vec<serde_json::Value> =
        sim.manifest.iter().map(|e| json!({"name": format!("{}-again", e.name), "endpoint": e.endpoint})).collect();
    std::fs::write(&fleet, serde_json::to_string(&rows).expect("json")).expect("write");
    let (imported, notes) = ok(&cli, &["edge", "import", "--project", &project, fleet.to_str().expect("path")]);
    assert_eq!((imported.trim(), notes.as_str()), ("imported 3 edge services", ""), "a plain import is sent as it is");

    let bad = files.path().join("bad.csv");
    std::fs::write(&bad, "name,endpoint\n,http://127.0.0.1:1\nok,http://127.0.0.1:2\nx,not a url\n").expect("write");
    let problems = refused(&cli, &["edge", "import", "--project", &project, bad.to_str().expect("path")]);
    let rows: Vec<&str> = problems.lines().filter(|line| line.starts_with("row ")).collect();
    assert_eq!(rows.len(), 2, "both bad rows, each on its line: {problems}");
    assert!(rows[0].starts_with("row 1 name: ") && rows[1].starts_with("row 3 endpoint: "), "{problems}");
    assert!(problems.contains("(2 problems in all; nothing was imported)"), "{problems}");
}

#[test]
fn the_cli_prints_completions_and_ends_quietly_on_a_closed_pipe() {
    let cli = Cli::new();
    for shell in ["bash", "zsh", "fish"] {
        let (script, _) = ok(&cli, &["completions", shell]);
        assert!(script.contains("edgefleet") && script.contains("delivery"), "{shell}: {}", script.len());
    }
    // The reader is gone before the command writes: it ends as `yes | head -1` does, no panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("ends");
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked") && stderr.is_empty(), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "no panic exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_added_tested_and_logged_from_the_cli() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data.path());
    let project = server.api().await.project().await;
    let cli = Cli::signed_in(&server);
    let url = "http://127.0.0.1:9/hook"; // the discard port: nobody answers
    let (added, _) =
        ok(&cli, &["webhook", "add", "--project", &project, url, "--events", "delivery.finished,edge.drifted"]);
    let id = added.split_whitespace().nth(1).expect("webhook id").to_owned();
    assert!(added.contains("secret (shown once): whsec_"), "{added}");
    let (listed, _) = ok(&cli, &["webhook", "list", "--project", &project]);
    assert_eq!(listed.trim(), format!("{id}  {url}  delivery.finished,edge.drifted"));

    let tested = cli.run(&["webhook", "test", "--project", &project, &id]);
    let said = text(&tested.stdout);
    assert!(!tested.status.success(), "a ping nobody answered fails the command: {said}");
    assert!(said.contains("  ping  failed  1 try  no answer  "), "{said}");
    let (log, _) = ok(&cli, &["webhook", "log", "--project", &project, &id]);
    assert!(log.starts_with("1 calls\n") && log.contains("  ping  failed  1 try  no answer  "), "{log}");

    let unknown = refused(&cli, &["webhook", "add", "--project", &project, url, "--events", "delivery.done"]);
    assert!(unknown.contains("unknown webhook event `delivery.done`"), "{unknown}");
    let (deleted, _) = ok(&cli, &["webhook", "delete", "--project", &project, &id]);
    assert_eq!(deleted.trim(), format!("webhook {id} deleted"));
    let (listed, _) = ok(&cli, &["webhook", "list", "--project", &project]);
    assert!(listed.is_empty(), "{listed}");
}
