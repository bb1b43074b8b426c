use edge_client::StreamKind;

use crate::support::{client, sim, target};

const DEMO: &str = r#"CREATE STREAM demo () WITH (DATASOURCE="users", FORMAT="JSON")"#;
const RULE: &str = r#"{"id":"r1","sql":"SELECT * FROM demo","actions":[{"log":{}}]}"#;

#[tokio::test]
async fn create_list_describe_and_duplicate() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_stream(StreamKind::Stream, "demo", DEMO).await.expect("create");
    assert_eq!(edge.list_streams(StreamKind::Stream).await.expect("list"), vec!["demo"]);
    let described = edge.describe_stream(StreamKind::Stream, "demo").await.expect("describe");
    assert_eq!(described["Name"], "demo");
    let err = edge.create_stream(StreamKind::Stream, "demo", DEMO).await.expect_err("duplicate");
    assert_eq!((err.status, err.code), (Some(400), Some(3000)));
    assert_eq!(err.message, "Stream command error: Create stream fails: Item demo already exists.");
    let table = r#"CREATE TABLE t1 () WITH (DATASOURCE="t.json", TYPE="file")"#;
    edge.create_stream(StreamKind::Table, "t1", table).await.expect("create table");
    let err = edge.create_stream(StreamKind::Table, "t1", table).await.expect_err("duplicate table");
    assert_eq!(err.message, "Table command error: Create table fails: Item t1 already exists.");
}

#[tokio::test]
async fn replace_creates_a_missing_stream_and_refuses_another_name() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.replace_stream(StreamKind::Stream, "demo", DEMO).await.expect("replace creates");
    let err = edge.replace_stream(StreamKind::Stream, "other", DEMO).await.expect_err("other name");
    assert_eq!(err.code, Some(3000));
    assert_eq!(
        err.message,
        "Stream command error: Replace other fails: the sql statement must update the other source."
    );
}

#[tokio::test]
async fn missing_streams_answer_as_ekuiper_does() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    let err = edge.describe_stream(StreamKind::Stream, "demo").await.expect_err("describe missing");
    assert_eq!((err.status, err.code), (Some(400), Some(3000)));
    assert_eq!(err.message, "describe stream error: Describe stream fails, demo is not found.");
    let err = edge.drop_stream(StreamKind::Stream, "demo", false).await.expect_err("drop missing");
    assert_eq!((err.status, err.code), (Some(404), Some(1002)));
    assert_eq!(err.message, "delete stream error: demo is not found");
}

#[tokio::test]
async fn dropping_a_referenced_stream_is_refused_from_ekuiper_2_unless_forced() {
    for (version, refused) in [("3.3.0", false), ("3.4.0", true), ("3.7.0", true)] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        edge.create_stream(StreamKind::Stream, "demo", DEMO).await.expect("create");
        edge.create_rule(&serde_json::from_str(RULE).expect("rule")).await.expect("rule");
        let outcome = edge.drop_stream(StreamKind::Stream, "demo", false).await;
        if refused {
            let err = outcome.expect_err(version);
            assert_eq!((err.status, err.code), (Some(400), Some(1000)), "{version}");
            assert_eq!(err.message, "stream demo has been referenced by other rules");
            edge.drop_stream(StreamKind::Stream, "demo", true).await.expect("forced drop");
        } else {
            outcome.expect(version);
        }
    }
}
