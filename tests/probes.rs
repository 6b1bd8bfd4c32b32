//! The probe engine against real servers: RabbitMQ and the nx-27017 MongoDB wire server of the
//! test environment, a busybox container on the real Docker Engine, local files and git
//! repositories, and local HTTP fixtures for the model APIs and the upload API (see
//! tests/support/fixtures.rs). Also configuration parsing from YAML and labels, end to end.
//!
//! Run through scripts/test.sh, or after `eval "$(scripts/testenv.sh env)"`.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use medic::probe::vars::LabelVariables;
use medic::probe::{
    self, parse_labels, parse_yaml, ConfigOrigin, ProbeContext, ProbeKind, ProbeResult, ProbeSpec,
    Severity,
};
use support::fixtures::*;
use support::{free_port, test_env, unique};

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Parses one probe from a YAML body (the lines under `probes:`).
fn spec_with(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> ProbeSpec {
    let text = format!("probes:\n{yaml}");
    let mut specs = parse_yaml(&text, "test.yaml", env).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(specs.len(), 1);
    specs.remove(0)
}

fn spec(yaml: &str) -> ProbeSpec {
    spec_with(yaml, &no_env)
}

fn step_names(result: &ProbeResult) -> Vec<&str> {
    result.steps.iter().map(|s| s.name.as_str()).collect()
}

/// Everything a result could show anywhere: Debug, Display of the error and JSON.
fn all_output(result: &ProbeResult) -> String {
    format!(
        "{result:?}\n{}\n{}",
        result.error.clone().unwrap_or_default(),
        serde_json::to_string(result).unwrap()
    )
}

// ---------------------------------------------------------------------------------------------
// mongodb

#[tokio::test]
async fn mongodb_passes_against_the_wire_server_and_leaves_no_document_behind() {
    let uri = test_env("MEDIC_TEST_MONGODB_URL");
    let database = unique("medic_probe_test").replace('-', "_");
    let s = spec(&format!(
        "  db:\n    type: mongodb\n    uri: {uri}\n    database: {database}\n    collection: checks\n    timeout: 10s\n"
    ));
    let ctx = ProbeContext::new();
    for _ in 0..2 {
        let result = probe::run(&s, &ctx).await;
        assert!(result.ok, "{result:#?}");
        assert_eq!(
            step_names(&result),
            ["connect", "insert", "find", "compare", "delete"]
        );
        assert!(result.steps.iter().all(|s| s.ok));
    }

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let left = client
        .database(&database)
        .collection::<mongodb::bson::Document>("checks")
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(left, 0, "the probe left documents behind");
    let _ = client.database(&database).drop().await;
}

#[tokio::test]
async fn mongodb_fails_naming_the_step_when_the_server_stops_and_recovers_when_it_returns() {
    let mut server = WireServer::start();
    let s = spec(&format!(
        "  db:\n    type: mongodb\n    uri: {}\n    timeout: 3s\n",
        server.uri()
    ));
    let ctx = ProbeContext::new();
    let result = probe::run(&s, &ctx).await;
    assert!(result.ok, "{result:#?}");

    server.stop();
    let started = std::time::Instant::now();
    let result = probe::run(&s, &ctx).await;
    assert!(!result.ok);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let error = result.error.clone().unwrap();
    assert!(error.starts_with("step `connect` failed"), "{error}");
    assert_eq!(result.failed_step().unwrap().name, "connect");
    assert_eq!(result.severity, Severity::Critical);

    server.restart();
    let result = probe::run(&s, &ctx).await;
    assert!(result.ok, "did not recover: {result:#?}");
}

#[tokio::test]
async fn mongodb_errors_never_show_the_uri_password() {
    let port = free_port();
    let s = spec(&format!(
        "  db:\n    type: mongodb\n    uri: mongodb://medic:Sup3rSecretPw@127.0.0.1:{port}/?authSource=admin\n    timeout: 2s\n"
    ));
    assert!(!format!("{s:?}").contains("Sup3rSecretPw"));
    let result = probe::run(&s, &ProbeContext::new()).await;
    assert!(!result.ok);
    assert!(
        !all_output(&result).contains("Sup3rSecretPw"),
        "{result:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// rabbitmq

async fn amqp() -> Connection {
    Connection::connect(
        &test_env("MEDIC_TEST_RABBITMQ_URL"),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ of the test environment")
}

/// Declares a fresh queue for one test; deleted by `delete_queue`.
async fn fresh_queue(connection: &Connection) -> String {
    let name = unique("medic-probe-q");
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    name
}

async fn delete_queue(connection: &Connection, name: &str) {
    let channel = connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
}

fn rabbit_spec(queues: &str, extra: &str) -> ProbeSpec {
    spec(&format!(
        "  mq:\n    type: rabbitmq\n    uri: {}\n    queues: {queues}\n    timeout: 5s\n{extra}",
        test_env("MEDIC_TEST_RABBITMQ_URL")
    ))
}

#[tokio::test]
async fn rabbitmq_passes_with_a_consumer_and_fails_when_it_goes_away() {
    let connection = amqp().await;
    let queue = fresh_queue(&connection).await;
    let s = rabbit_spec(
        &format!("[{queue}]"),
        "    max_messages: 10\n    min_consumers: 1\n",
    );
    let ctx = ProbeContext::new();

    let channel = connection.create_channel().await.unwrap();
    let _consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "medic-test-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let result = probe::run(&s, &ctx).await;
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.details["queues"][&queue]["consumers"], 1);
    assert_eq!(
        step_names(&result),
        ["connect", &format!("queue {queue}"), "close"]
    );

    channel
        .basic_cancel("medic-test-consumer".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    let result = probe::run(&s, &ctx).await;
    assert!(!result.ok);
    let error = result.error.clone().unwrap();
    assert!(
        error.contains("0 consumers, fewer than min_consumers 1"),
        "{error}"
    );
    assert!(error.contains(&format!("step `queue {queue}`")), "{error}");
    delete_queue(&connection, &queue).await;
}

#[tokio::test]
async fn rabbitmq_fails_when_ready_messages_exceed_max_messages() {
    let connection = amqp().await;
    let queue = fresh_queue(&connection).await;
    let s = rabbit_spec(&queue, "    max_messages: 2\n    min_consumers: 0\n");
    let ctx = ProbeContext::new();
    assert!(probe::run(&s, &ctx).await.ok);

    let channel = connection.create_channel().await.unwrap();
    for i in 0..3 {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("job {i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Publishing is asynchronous in the broker: wait for the probe to see all three.
    let mut result = probe::run(&s, &ctx).await;
    for _ in 0..50 {
        if !result.ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = probe::run(&s, &ctx).await;
    }
    assert!(!result.ok);
    let error = result.error.clone().unwrap();
    assert!(
        error.contains("3 messages ready, more than max_messages 2"),
        "{error}"
    );
    delete_queue(&connection, &queue).await;
}

#[tokio::test]
async fn rabbitmq_never_declares_a_missing_queue() {
    let connection = amqp().await;
    let present = fresh_queue(&connection).await;
    let missing = unique("medic-probe-missing");
    let s = rabbit_spec(&format!("[{missing}, {present}]"), "    min_consumers: 0\n");
    let result = probe::run(&s, &ProbeContext::new()).await;
    assert!(!result.ok);
    let error = result.error.clone().unwrap();
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains(&missing), "{error}");
    // The other queue was still checked, on a channel of its own.
    assert!(result
        .steps
        .iter()
        .any(|s| s.name == format!("queue {present}") && s.ok));
    assert_eq!(result.details["queues"][&present]["ready"], 0);

    let channel = connection.create_channel().await.unwrap();
    let still_missing = channel
        .queue_declare(
            missing.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(still_missing.is_err(), "the probe created {missing}");
    delete_queue(&connection, &present).await;
}

#[tokio::test]
async fn rabbitmq_unreachable_fails_at_connect_without_the_password() {
    let port = free_port();
    let s = spec(&format!(
        "  mq:\n    type: rabbitmq\n    uri: amqp://guest:Rabbit-Pa55word@127.0.0.1:{port}/%2f\n    queues: uploads\n    timeout: 3s\n"
    ));
    let result = probe::run(&s, &ProbeContext::new()).await;
    assert!(!result.ok);
    assert_eq!(result.failed_step().unwrap().name, "connect");
    assert!(!all_output(&result).contains("Rabbit-Pa55word"));
}

// ---------------------------------------------------------------------------------------------
// ai

const KEY: &str = "sk-test-Zk93hQ0pLmN4vB7xC2dE";

fn ai_spec(provider: &str, base: &str, timeout: &str) -> ProbeSpec {
    let model = if provider == "gemini" {
        "gemini-test"
    } else {
        "gpt-test"
    };
    spec_with(
        &format!(
            "  model:\n    type: ai\n    provider: {provider}\n    base_url: {base}\n    model: {model}\n    api_key: ${{TEST_AI_KEY}}\n    timeout: {timeout}\n"
        ),
        &env_of(&[("TEST_AI_KEY", KEY)]),
    )
}

fn assert_no_key(result: &ProbeResult, spec: &ProbeSpec) {
    assert!(!all_output(result).contains(KEY), "key leaked: {result:#?}");
    assert!(!all_output(result).contains("Zk93hQ0p"));
    assert!(!format!("{spec:?}").contains(KEY));
}

#[tokio::test]
async fn ai_ok_reply_passes_in_both_shapes() {
    for provider in ["openai", "gemini", "openai-compatible"] {
        let (fixture, base) = ModelFixture::start(ModelMode::Reply("OK".into())).await;
        let s = ai_spec(provider, &base, "5s");
        let result = probe::run(&s, &ProbeContext::new()).await;
        assert!(result.ok, "{provider}: {result:#?}");
        assert_eq!(result.details["reply"], "OK");
        assert_no_key(&result, &s);
        let request = fixture.last();
        if provider == "gemini" {
            assert_eq!(
                request.uri, "/v1beta/models/gemini-test:generateContent",
                "the key must not be in the URL"
            );
            assert_eq!(request.headers["x-goog-api-key"], KEY);
            assert_eq!(
                request.body["contents"][0]["parts"][0]["text"],
                "Say 'OK' if you can read this"
            );
        } else {
            assert_eq!(request.uri, "/v1/chat/completions");
            assert_eq!(request.headers["authorization"], format!("Bearer {KEY}"));
            assert_eq!(request.body["model"], "gpt-test");
            assert_eq!(
                request.body["messages"][0]["content"],
                "Say 'OK' if you can read this"
            );
        }
    }
}

#[tokio::test]
async fn ai_failures_each_fail_with_a_clear_error_and_never_show_the_key() {
    let cases: Vec<(ModelMode, &str, &str)> = vec![
        (
            ModelMode::Reply("I cannot help with that".into()),
            "check reply",
            "does not contain OK",
        ),
        (ModelMode::Status(401), "request", "API key was refused"),
        (
            ModelMode::Status(500),
            "request",
            "the provider failed (HTTP 500)",
        ),
        (
            ModelMode::Slow(Duration::from_secs(4)),
            "request",
            "no answer within",
        ),
        (
            ModelMode::Garbage(10 * 1024 * 1024),
            "request",
            "larger than 1.0 MiB",
        ),
        (
            ModelMode::Reply("".into()),
            "check reply",
            "does not contain OK",
        ),
    ];
    for provider in ["openai", "gemini"] {
        for (mode, step, message) in &cases {
            let (_fixture, base) = ModelFixture::start(mode.clone()).await;
            let s = ai_spec(provider, &base, "2s");
            let started = std::time::Instant::now();
            let result = probe::run(&s, &ProbeContext::new()).await;
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{provider} {mode:?} took {:?}",
                started.elapsed()
            );
            assert!(!result.ok, "{provider} {mode:?} passed");
            let error = result.error.clone().unwrap();
            assert!(
                error.starts_with(&format!("step `{step}` failed")),
                "{provider} {mode:?}: {error}"
            );
            assert!(error.contains(message), "{provider} {mode:?}: {error}");
            assert_no_key(&result, &s);
        }
    }
}

#[tokio::test]
async fn ai_garbage_json_fails_cleanly() {
    let (fixture, base) = ModelFixture::start(ModelMode::Reply("OK".into())).await;
    // A 200 whose body is JSON of the wrong shape, then one that is not JSON.
    fixture.set(ModelMode::Garbage(100));
    let s = ai_spec("openai", &base, "3s");
    let result = probe::run(&s, &ProbeContext::new()).await;
    let error = result.error.unwrap();
    assert!(
        error.starts_with("step `parse reply` failed: the reply is not JSON"),
        "{error}"
    );
}

#[tokio::test]
async fn ai_key_defaults_to_the_provider_variable() {
    let (fixture, base) = ModelFixture::start(ModelMode::Reply("Ok.".into())).await;
    let s = spec_with(
        &format!("  model:\n    type: ai\n    provider: openai\n    base_url: {base}/v1\n"),
        &env_of(&[("OPENAI_API_KEY", KEY)]),
    );
    let result = probe::run(&s, &ProbeContext::new()).await;
    assert!(result.ok, "{result:#?}");
    assert_eq!(
        fixture.last().headers["authorization"],
        format!("Bearer {KEY}")
    );
    assert_no_key(&result, &s);

    let missing = parse_yaml(
        "probes:\n  model:\n    type: ai\n    provider: gemini\n",
        "medic.yaml",
        &no_env,
    )
    .unwrap_err();
    assert!(missing.to_string().contains("GEMINI_API_KEY"), "{missing}");
}

// ---------------------------------------------------------------------------------------------
// upload

fn upload_spec(base: &str, timeout: &str) -> ProbeSpec {
    spec_with(
        &format!(
            "  upload:\n    type: upload\n    url: {base}/api/upload\n    status_url: /api/documents/{{id}}\n    poll_interval: 100ms\n    timeout: {timeout}\n    restart: [worker]\n    headers:\n      Authorization: Bearer ${{UPLOAD_TOKEN}}\n"
        ),
        &env_of(&[("UPLOAD_TOKEN", "upl-tok-7731")]),
    )
}

#[tokio::test]
async fn upload_passes_and_deletes_what_it_made() {
    let (fixture, base) = UploadFixture::start(Processing::Works).await;
    let s = upload_spec(&base, "10s");
    assert_eq!(s.component, "worker");
    let result = probe::run(&s, &ProbeContext::new()).await;
    assert!(result.ok, "{result:#?}");
    assert_eq!(
        step_names(&result),
        ["upload", "process", "check text", "delete"]
    );
    let id = result.details["id"].as_str().unwrap().to_string();
    assert_eq!(*fixture.deleted.lock().unwrap(), vec![id]);
    assert!(fixture.documents.lock().unwrap().is_empty());
    assert!(fixture
        .auth
        .lock()
        .unwrap()
        .iter()
        .all(|a| a.as_deref() == Some("Bearer upl-tok-7731")));
    assert!(!all_output(&result).contains("upl-tok-7731"));
}

#[tokio::test]
async fn upload_processing_failure_fails_and_still_deletes() {
    let (fixture, base) = UploadFixture::start(Processing::Fails).await;
    let result = probe::run(&upload_spec(&base, "10s"), &ProbeContext::new()).await;
    assert!(!result.ok);
    let error = result.error.clone().unwrap();
    assert!(
        error.starts_with("step `process` failed: processing failed: status \"failed\""),
        "{error}"
    );
    assert!(error.contains("text extraction crashed"), "{error}");
    assert_eq!(fixture.deleted.lock().unwrap().len(), 1);
    assert!(fixture.documents.lock().unwrap().is_empty());
    assert!(result.steps.last().unwrap().name == "delete" && result.steps.last().unwrap().ok);
}

#[tokio::test]
async fn upload_stuck_worker_times_out_and_still_deletes() {
    let (fixture, base) = UploadFixture::start(Processing::Stuck).await;
    let started = std::time::Instant::now();
    let result = probe::run(&upload_spec(&base, "2s"), &ProbeContext::new()).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!result.ok);
    let error = result.error.clone().unwrap();
    assert!(
        error.starts_with("step `process` failed: not \"done\""),
        "{error}"
    );
    assert!(
        error.contains("last seen: status \"processing\""),
        "{error}"
    );
    assert_eq!(fixture.deleted.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn upload_wrong_text_and_broken_upload_fail_at_their_steps() {
    let (fixture, base) = UploadFixture::start(Processing::WrongText).await;
    let s = upload_spec(&base, "10s");
    let result = probe::run(&s, &ProbeContext::new()).await;
    assert_eq!(result.failed_step().unwrap().name, "check text");
    assert_eq!(fixture.deleted.lock().unwrap().len(), 1);

    *fixture.upload_broken.lock().unwrap() = true;
    let result = probe::run(&s, &ProbeContext::new()).await;
    let error = result.error.clone().unwrap();
    assert!(
        error.starts_with("step `upload` failed: HTTP 500"),
        "{error}"
    );
    // No id, nothing to delete.
    assert_eq!(step_names(&result), ["upload"]);
    assert_eq!(fixture.deleted.lock().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// http and tcp

#[tokio::test]
async fn http_checks_status_body_json_and_latency() {
    let base = start_http_fixture().await;
    let ctx = ProbeContext::new();
    let ok = spec(&format!(
        "  web:\n    type: http\n    url: {base}/health\n    headers:\n      X-Token: t0k3n-value\n    expect_body: checks\n    expect_json_pointer: /checks/version\n    expect_json_value: 3\n    max_latency: 1s\n"
    ));
    let result = probe::run(&ok, &ctx).await;
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.details["status"], 200);
    assert!(!all_output(&result).contains("t0k3n-value"));

    let cases = [
        (
            format!("    url: {base}/health\n"),
            "expected HTTP 200, got 401",
        ),
        (
            format!("    url: {base}/down\n    expect_status: 200\n"),
            "expected HTTP 200, got 503: maintenance",
        ),
        (
            format!("    url: {base}/health\n    headers:\n      X-Token: t0k3n-value\n    expect_json_pointer: /status\n    expect_json_value: degraded\n"),
            "/status is \"ok\", expected \"degraded\"",
        ),
        (
            format!("    url: {base}/slow\n    max_latency: 200ms\n"),
            "more than max_latency 200ms",
        ),
        (
            format!("    url: {base}/slow\n    timeout: 1s\n"),
            "no answer within",
        ),
        (
            format!("    url: {base}/echo\n    method: post\n    body: ping\n    expect_body: pong\n"),
            "does not contain \"pong\"",
        ),
        (
            format!("    url: http://127.0.0.1:{}/\n", free_port()),
            "cannot connect",
        ),
    ];
    for (keys, message) in cases {
        let s = spec(&format!("  web:\n    type: http\n{keys}"));
        let result = probe::run(&s, &ctx).await;
        assert!(!result.ok, "{keys}");
        let error = result.error.unwrap();
        assert!(error.contains(message), "{keys}: {error}");
    }

    let post = spec(&format!(
        "  web:\n    type: http\n    url: {base}/echo\n    method: POST\n    body: ping\n    expect_body: \"echo: ping\"\n"
    ));
    assert!(probe::run(&post, &ctx).await.ok);
}

#[tokio::test]
async fn tcp_connects_or_fails_naming_the_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ok = spec(&format!(
        "  port:\n    type: tcp\n    host: 127.0.0.1\n    port: {port}\n"
    ));
    assert!(probe::run(&ok, &ProbeContext::new()).await.ok);

    let closed = free_port();
    let bad = spec(&format!(
        "  port:\n    type: tcp\n    host: 127.0.0.1\n    port: {closed}\n"
    ));
    let result = probe::run(&bad, &ProbeContext::new()).await;
    let error = result.error.unwrap();
    assert!(
        error.starts_with(&format!(
            "step `connect` failed: cannot connect to 127.0.0.1:{closed}"
        )),
        "{error}"
    );
}

#[tokio::test]
async fn a_probe_that_hangs_fails_within_its_timeout_naming_the_step() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let s = spec(&format!(
        "  hang:\n    type: mongodb\n    uri: mongodb://127.0.0.1:{port}\n    timeout: 1s\n"
    ));
    let started = std::time::Instant::now();
    let result = probe::run(&s, &ProbeContext::new()).await;
    // The bound is the timeout plus slack for a machine busy compiling.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!result.ok);
    assert_eq!(result.failed_step().unwrap().name, "connect");
}

// ---------------------------------------------------------------------------------------------
// exec

#[tokio::test]
async fn exec_runs_commands_in_a_container_by_name_and_by_service() {
    let project = unique("medicprobe");
    let service = unique("svc");
    let container = Container::start(&[
        ("com.docker.compose.project", &project),
        ("com.docker.compose.service", &service),
    ]);
    let docker = ProbeContext::connect_docker(None).await.unwrap();
    let ctx = ProbeContext::new()
        .with_docker(docker)
        .with_project(project.clone());

    let ok = spec(&format!(
        "  ex:\n    type: exec\n    container: {}\n    command: [\"test\", \"-d\", \"/tmp\"]\n",
        container.name
    ));
    let result = probe::run(&ok, &ctx).await;
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.details["exit_code"], 0);

    let failing = spec(&format!(
        "  ex:\n    type: exec\n    service: {service}\n    command: \"echo broken >&2; exit 3\"\n"
    ));
    let result = probe::run(&failing, &ctx).await;
    assert!(!result.ok);
    let error = result.error.clone().unwrap();
    assert!(error.starts_with("step `exec` failed"), "{error}");
    assert!(error.contains("exited with 3: broken"), "{error}");
    assert_eq!(result.details["container"], container.name);

    let nobody =
        spec("  ex:\n    type: exec\n    service: no-such-service-here\n    command: \"true\"\n");
    let result = probe::run(&nobody, &ctx).await;
    assert_eq!(result.failed_step().unwrap().name, "find container");

    let without_docker = probe::run(&ok, &ProbeContext::new()).await;
    assert!(without_docker.error.unwrap().contains("no Docker client"));
}

// ---------------------------------------------------------------------------------------------
// disk, memory, git

#[tokio::test]
async fn disk_reports_free_space_with_warning_and_critical_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display();
    let ctx = ProbeContext::new();
    let ok = spec(&format!(
        "  disk:\n    type: disk\n    path: {path}\n    warning: 1KB\n    critical: 1B\n"
    ));
    let result = probe::run(&ok, &ctx).await;
    assert!(result.ok, "{result:#?}");
    assert!(result.details["free_bytes"].as_u64().unwrap() > 0);

    let warn = spec(&format!(
        "  disk:\n    type: disk\n    path: {path}\n    warning: 1000TB\n    critical: 1B\n"
    ));
    let result = probe::run(&warn, &ctx).await;
    assert_eq!(result.severity, Severity::Warning);
    assert!(!result.ok);
    assert!(result.error.unwrap().contains("warning under 1000.0 TiB"));

    let critical = spec(&format!(
        "  disk:\n    type: disk\n    path: {path}\n    warning: 2000TB\n    critical: 1000TB\n"
    ));
    let result = probe::run(&critical, &ctx).await;
    assert_eq!(result.severity, Severity::Critical);

    let missing = spec("  disk:\n    type: disk\n    path: /nonexistent/medic/disk\n");
    let result = probe::run(&missing, &ctx).await;
    assert_eq!(result.severity, Severity::Critical);
    assert_eq!(result.failed_step().unwrap().name, "statvfs");
}

#[tokio::test]
async fn memory_reports_pressure_from_meminfo() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ProbeContext::new();
    let real = spec("  mem:\n    type: memory\n");
    let result = probe::run(&real, &ctx).await;
    assert!(result.steps[0].ok, "{result:#?}");
    assert!(result.details["total_bytes"].as_u64().unwrap() > 0);

    for (available, severity) in [
        (8000, Severity::Ok),
        (1500, Severity::Warning),
        (400, Severity::Critical),
    ] {
        let file = dir.path().join(format!("meminfo-{available}"));
        std::fs::write(
            &file,
            format!("MemTotal:       16000 kB\nMemFree:        100 kB\nMemAvailable:   {available} kB\n"),
        )
        .unwrap();
        let s = spec(&format!(
            "  mem:\n    type: memory\n    meminfo: {}\n",
            file.display()
        ));
        let result = probe::run(&s, &ctx).await;
        assert_eq!(result.severity, severity, "{result:#?}");
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=medic",
            "-c",
            "user.email=medic@test",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git CLI (test setup only)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn git_reads_branch_commit_changes_and_remote_without_a_git_binary() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    std::fs::write(repo.join("app.txt"), "version 1\n").unwrap();
    std::fs::create_dir(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/main.rs"), "fn main() {}\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "first"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    git(
        repo,
        &[
            "remote",
            "add",
            "origin",
            &format!("http://deploy:gh-tok-5521@127.0.0.1:{port}/app.git"),
        ],
    );
    let head = git(repo, &["rev-parse", "HEAD"]);
    let ctx = ProbeContext::new();
    let s = spec(&format!(
        "  repo:\n    type: git\n    path: {}\n",
        repo.display()
    ));
    assert!(s.restart.is_empty());

    let result = probe::run(&s, &ctx).await;
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.details["branch"], "main");
    assert_eq!(result.details["commit"], head.as_str());
    assert_eq!(result.details["dirty"], false);
    assert_eq!(result.details["remote_reachable"], true);
    assert_eq!(
        result.details["remote"],
        format!("http://deploy:***@127.0.0.1:{port}/app.git")
    );
    assert!(!all_output(&result).contains("gh-tok-5521"));

    // A changed and a deleted tracked file; an untracked one is not reported.
    std::fs::write(repo.join("app.txt"), "version 2\n").unwrap();
    std::fs::remove_file(repo.join("src/main.rs")).unwrap();
    std::fs::write(repo.join("untracked.txt"), "x").unwrap();
    let result = probe::run(&s, &ctx).await;
    assert_eq!(result.details["dirty"], true);
    assert_eq!(result.details["changed_files"], 2);
    assert_eq!(
        result.details["changes"],
        serde_json::json!(["app.txt", "src/main.rs"])
    );

    // Same size, new content: the size matches, so the content hash decides.
    git(repo, &["checkout", "-q", "--", "."]);
    let result = probe::run(&s, &ctx).await;
    assert_eq!(result.details["dirty"], false, "{result:#?}");
    std::fs::write(repo.join("app.txt"), "version 3\n").unwrap();
    let result = probe::run(&s, &ctx).await;
    assert_eq!(result.details["changed_files"], 1);
    git(repo, &["checkout", "-q", "--", "."]);

    // Packed refs, a detached HEAD, and an unreachable remote (a warning, never a restart).
    git(repo, &["pack-refs", "--all"]);
    git(repo, &["checkout", "-q", "--detach"]);
    drop(listener);
    let result = probe::run(&s, &ctx).await;
    assert_eq!(result.details["branch"], serde_json::Value::Null);
    assert_eq!(result.details["commit"], head.as_str());
    assert_eq!(result.details["remote_reachable"], false);
    assert_eq!(result.severity, Severity::Warning);
    assert!(result.error.unwrap().contains("unreachable"));

    git(repo, &["checkout", "-q", "main"]);
    let result = probe::run(&s, &ctx).await;
    assert_eq!(result.details["branch"], "main");

    let not_repo = spec(&format!(
        "  repo:\n    type: git\n    path: {}\n",
        repo.join("src").display()
    ));
    let result = probe::run(&not_repo, &ctx).await;
    assert_eq!(result.severity, Severity::Critical);
    assert!(result.error.unwrap().contains("not a git repository"));
}

// ---------------------------------------------------------------------------------------------
// configuration

#[test]
fn a_yaml_typo_names_the_file_line_and_key() {
    let text = "# medic\nprobes:\n  db:\n    type: mongodb\n    uri: mongodb://mongo:27017\n    colection: probes\n";
    let error = parse_yaml(text, "/etc/medic/medic.yaml", &no_env).unwrap_err();
    assert_eq!(
        error.origin,
        ConfigOrigin::File {
            path: "/etc/medic/medic.yaml".into(),
            line: Some(6),
            column: Some(5)
        }
    );
    assert_eq!(error.key.as_deref(), Some("colection"));
    assert_eq!(
        error.to_string(),
        "/etc/medic/medic.yaml:6:5: probe `db`, key `colection`: unknown key `colection`; did you mean `collection`?"
    );
}

#[test]
fn yaml_value_errors_name_the_line_and_key() {
    let cases = [
        ("  web:\n    type: http\n    url: http://app/\n    timeout: 3x\n", 4, "timeout", "expected a duration"),
        ("  web:\n    type: http\n    url: http://app/\n    queues: [a]\n", 4, "queues", "not a key of a http probe"),
        ("  web:\n    type: htp\n", 2, "type", "did you mean `http`?"),
        ("  web:\n    type: http\n    url: http://app/\n    interval: 1m\n    cron: \"0 * * * *\"\n", 5, "cron", "either interval or cron"),
        ("  web:\n    type: http\n    url: http://app/\n    cron: \"99 * * * *\"\n", 4, "cron", "invalid"),
        ("  free:\n    type: disk\n    restart: [app]\n", 3, "restart", "informational"),
        ("  web:\n    type: http\n", 1, "url", "is required"),
        ("  q:\n    type: rabbitmq\n    uri: http://x\n    queues: a\n", 3, "uri", "not a amqp URI"),
    ];
    for (body, line, key, message) in cases {
        let text = format!("probes:\n{body}");
        let error = parse_yaml(&text, "medic.yaml", &no_env).unwrap_err();
        let shown = error.to_string();
        assert_eq!(error.key.as_deref(), Some(key), "{shown}");
        assert!(shown.contains(message), "{shown}");
        if line > 1 {
            assert!(
                shown.starts_with(&format!("medic.yaml:{}:", line + 1)),
                "{shown}"
            );
        }
    }
}

#[test]
fn yaml_defaults_schedules_and_components() {
    let text = "probes:\n  nightly:\n    type: tcp\n    host: db\n    port: 5432\n    cron: \"0 3 * * *\"\n    timeout: 5s\n    failure_threshold: 2\n    component: database\n  web:\n    type: http\n    url: http://app:8000/health\n";
    let specs = parse_yaml(text, "medic.yaml", &no_env).unwrap();
    let nightly = specs.iter().find(|s| s.name == "nightly").unwrap();
    assert!(matches!(&nightly.schedule, probe::Schedule::Cron(c) if c.expression() == "0 3 * * *"));
    assert_eq!(nightly.timeout, Duration::from_secs(5));
    assert_eq!(nightly.failure_threshold, Some(2));
    assert_eq!(nightly.component, "database");
    let web = specs.iter().find(|s| s.name == "web").unwrap();
    assert!(matches!(web.schedule, probe::Schedule::Interval(d) if d == Duration::from_secs(300)));
    assert_eq!(web.timeout, Duration::from_secs(30));
    assert!(web.restart.is_empty());
    assert_eq!(web.component, "web");
    assert_eq!(web.declared_in, "medic.yaml");
    // Other top-level sections are not the probe parser's business.
    assert!(parse_yaml("alerts:\n  x: 1\n", "medic.yaml", &no_env)
        .unwrap()
        .is_empty());
}

#[test]
fn variables_and_var_files_are_substituted_and_missing_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("mongo_password");
    std::fs::write(&secret_file, "from-file-pw\n").unwrap();
    let path = secret_file.display().to_string();
    let env = env_of(&[("MONGO_PASSWORD_FILE", &path), ("MONGO_HOST", "mongo")]);
    let s = spec_with(
        "  db:\n    type: mongodb\n    uri: mongodb://app:${MONGO_PASSWORD}@${MONGO_HOST}:27017\n",
        &env,
    );
    let ProbeKind::Mongodb(m) = &s.kind else {
        panic!()
    };
    assert_eq!(m.uri.expose(), "mongodb://app:from-file-pw@mongo:27017");
    assert_eq!(m.uri.to_string(), "mongodb://app:***@mongo:27017");
    assert!(!format!("{s:?}").contains("from-file-pw"));

    let error = parse_yaml(
        "probes:\n  db:\n    type: mongodb\n    uri: mongodb://app:${MONGO_PASSWORD}@mongo\n",
        "medic.yaml",
        &no_env,
    )
    .unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.starts_with("medic.yaml:4:5: probe `db`, key `uri`"),
        "{shown}"
    );
    assert!(shown.contains("MONGO_PASSWORD"), "{shown}");
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn labels_parse_traefik_style_with_the_service_as_default() {
    let l = labels(&[
        ("com.docker.compose.service", "worker"),
        ("medic.probe.queue.type", "rabbitmq"),
        (
            "medic.probe.queue.uri",
            "amqp://guest:${RABBIT_PW}@rabbitmq:5672/%2f",
        ),
        ("medic.probe.queue.queues", "uploads, thumbnails"),
        ("medic.probe.queue.max_messages", "100"),
        ("medic.probe.queue.interval", "1m"),
        ("medic.probe.api.type", "http"),
        ("medic.probe.api.url", "http://app:8000/health"),
        ("medic.probe.api.headers.X-Token", "${API_TOKEN}"),
        ("medic.probe.api.restart", "app,worker"),
        ("medic.probe.port.type", "tcp"),
        ("medic.probe.port.port", "8080"),
        ("medic.probe.shell.type", "exec"),
        ("medic.probe.shell.command", "test -f /tmp/ok"),
        ("medic.probe.free.type", "disk"),
    ]);
    let env = env_of(&[("RABBIT_PW", "rabbit-pw-1"), ("API_TOKEN", "api-tok-2")]);
    // Labels read only the variables the operator allowed (MEDIC_LABEL_VARIABLES).
    let allowed = LabelVariables::of(["RABBIT_PW", "API_TOKEN"]);
    let specs = parse_labels("stack_worker_1", "worker", &l, &env, &allowed).unwrap();
    let by_name = |n: &str| specs.iter().find(|s| s.name == n).unwrap();

    let queue = by_name("queue");
    assert_eq!(queue.restart, vec!["worker"]);
    assert_eq!(queue.component, "worker");
    assert_eq!(queue.declared_in, "container stack_worker_1");
    let ProbeKind::Rabbitmq(r) = &queue.kind else {
        panic!()
    };
    assert_eq!(r.queues, vec!["uploads", "thumbnails"]);
    assert_eq!(r.max_messages, Some(100));
    assert_eq!(r.min_consumers, 1);

    let api = by_name("api");
    assert_eq!(api.restart, vec!["app", "worker"]);
    let ProbeKind::Http(h) = &api.kind else {
        panic!()
    };
    assert_eq!(h.headers[0].name, "X-Token");
    assert_eq!(h.headers[0].value.expose(), "api-tok-2");

    let ProbeKind::Tcp(t) = &by_name("port").kind else {
        panic!()
    };
    assert_eq!((t.host.as_str(), t.port), ("worker", 8080));
    let ProbeKind::Exec(e) = &by_name("shell").kind else {
        panic!()
    };
    assert_eq!(
        e.target,
        probe::ExecTarget::Container("stack_worker_1".into())
    );
    assert_eq!(e.command, vec!["/bin/sh", "-c", "test -f /tmp/ok"]);
    assert!(by_name("free").restart.is_empty());

    let debug = format!("{specs:?}");
    assert!(
        !debug.contains("rabbit-pw-1") && !debug.contains("api-tok-2"),
        "{debug}"
    );
}

#[test]
fn label_errors_name_the_container_label_and_key() {
    let cases = [
        (
            vec![
                ("medic.probe.db.type", "mongodb"),
                ("medic.probe.db.urii", "mongodb://x"),
            ],
            "medic.probe.db.urii",
            "urii",
            "did you mean `uri`?",
        ),
        (
            vec![
                ("medic.probe.db.type", "mongodb"),
                ("medic.probe.db.uri", "mongodb://x"),
                ("medic.probe.db.timeout", "soon"),
            ],
            "medic.probe.db.timeout",
            "timeout",
            "expected a duration",
        ),
        (
            vec![
                ("medic.probe.web.type", "http"),
                ("medic.probe.web.url", "http://x/"),
                ("medic.probe.web.body.x", "y"),
            ],
            "medic.probe.web.body.x",
            "body.x",
            "takes no sub-key",
        ),
        (
            vec![
                ("medic.probe.free.type", "memory"),
                ("medic.probe.free.restart", "app"),
            ],
            "medic.probe.free.restart",
            "restart",
            "never restarts",
        ),
        (
            vec![
                ("medic.probe.db.type", "mongodb"),
                ("medic.probe.db.uri", "${NOPE}"),
            ],
            "medic.probe.db.uri",
            "uri",
            "neither NOPE nor NOPE_FILE is set",
        ),
    ];
    for (pairs, label, key, message) in cases {
        // NOPE is allowed, so its absence is the error (not the trust boundary).
        let allowed = LabelVariables::of(["NOPE"]);
        let error =
            parse_labels("stack_app_1", "app", &labels(&pairs), &no_env, &allowed).unwrap_err();
        assert_eq!(
            error.origin,
            ConfigOrigin::Label {
                container: "stack_app_1".into(),
                label: label.into()
            }
        );
        assert_eq!(error.key.as_deref(), Some(key));
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("container \"stack_app_1\", label \"{label}\": ")),
            "{shown}"
        );
        assert!(shown.contains(message), "{shown}");
    }
    let error = parse_labels(
        "c",
        "s",
        &labels(&[("medic.probe.x", "http")]),
        &no_env,
        &LabelVariables::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("medic.probe.<name>.<key>"));
}

/// The examples of docs/probes.md parse as documented.
#[test]
fn the_documented_examples_parse() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/probes.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2);
    let env = env_of(&[
        ("MONGO_PASSWORD", "m"),
        ("RABBITMQ_PASSWORD", "r"),
        ("OPENAI_API_KEY", "k"),
        ("APP_TOKEN", "t"),
    ]);
    let specs = parse_yaml(blocks[0], "docs/probes.md", &env).unwrap();
    assert_eq!(specs.len(), 9);
    let pipeline = specs.iter().find(|s| s.name == "pipeline").unwrap();
    assert_eq!(
        (pipeline.restart.clone(), pipeline.component.as_str()),
        (vec!["worker".to_string()], "worker")
    );
    let model = specs.iter().find(|s| s.name == "model").unwrap();
    assert!(model.restart.is_empty());

    // Compose turns `$${VAR}` into `${VAR}` before medic reads the labels.
    let compose: serde_json::Value = yaml_serde::from_str(&blocks[1].replace("$$", "$")).unwrap();
    let mut count = 0;
    for (service, definition) in compose["services"].as_object().unwrap() {
        let labels: HashMap<String, String> = definition["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        // The allow-list the docs give for the example, read from the docs themselves.
        let listed = doc
            .split("`MEDIC_LABEL_VARIABLES=")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .expect("docs/probes.md names the MEDIC_LABEL_VARIABLES the example needs");
        let allowed = LabelVariables::parse(listed).unwrap();
        let specs = parse_labels(
            &format!("stack-{service}-1"),
            service,
            &labels,
            &env,
            &allowed,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        count += specs.len();
    }
    assert_eq!(count, 3);
}
