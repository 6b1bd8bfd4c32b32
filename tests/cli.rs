//! `medic check` and `medic probe` on real targets: the test environment's MongoDB wire server
//! and RabbitMQ, a closed port, the local disk. Output and exit codes as SPEC says.

mod support;

use std::process::{Command, Output};

use support::{free_port, medic_config};

fn medic(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env("MEDIC_CONFIG", config)
        .env("MEDIC_PROJECT", "medictest-cli-nothing")
        .env_remove("MAIL_SERVER")
        .output()
        .unwrap()
}

fn mixed_config() -> String {
    let mongo = std::env::var("MEDIC_TEST_MONGODB_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let rabbit = std::env::var("MEDIC_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    format!(
        r#"probes:
  db:
    type: mongodb
    uri: {mongo}
    database: medic_cli_test
  broker:
    type: rabbitmq
    uri: {rabbit}
    queues: [medic-cli-test-missing-queue]
  web:
    type: http
    url: http://127.0.0.1:{port}/
    timeout: 3s
  space:
    type: disk
    path: /tmp
"#,
        port = free_port()
    )
}

#[test]
fn check_prints_a_table_and_exits_1_when_something_is_unreachable() {
    let (_dir, config) = medic_config(&mixed_config());
    let out = medic(&["check"], &config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{stdout}"))
            .to_string()
    };
    assert!(stdout.lines().next().unwrap().starts_with("CHECK"));
    assert!(line("configuration").contains("4 probes"));
    assert!(line("docker").contains(" ok "), "{stdout}");
    // The machine's engine, named as such (tests/podman.rs checks the Podman case).
    assert!(line("docker").contains("Docker Engine "), "{stdout}");
    assert!(line("smtp").contains("not configured"));
    assert!(line("db ").contains(" ok "), "{stdout}");
    assert!(line("space").contains(" ok "), "{stdout}");
    assert!(line("web").contains("FAIL"));
    let broker = line("broker");
    assert!(
        broker.contains("FAIL") && broker.contains("does not exist"),
        "{broker}"
    );
    assert!(
        broker.contains("guest:***@"),
        "the password is masked: {broker}"
    );
    assert!(!stdout.contains("guest:guest@"), "{stdout}");
}

#[test]
fn probe_json_runs_the_named_probes_and_exits_by_their_results() {
    let (_dir, config) = medic_config(&mixed_config());
    let out = medic(&["probe", "db", "space", "--json"], &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["name"], "db");
    assert_eq!(results[0]["ok"], true);
    let steps: Vec<&str> = results[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["connect", "insert", "find", "compare", "delete"]);
    assert_eq!(results[1]["type"], "disk");

    let out = medic(&["probe", "web", "--json"], &config);
    assert_eq!(out.status.code(), Some(1));
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["ok"], false);
    assert!(results[0]["error"].as_str().unwrap().contains("request"));

    let out = medic(&["probe", "nosuch"], &config);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nosuch") && stderr.contains("db"),
        "{stderr}"
    );
}

#[test]
fn a_typo_in_a_key_exits_2_naming_file_line_and_key() {
    let (_dir, config) = medic_config(
        "probes:\n  web:\n    type: http\n    url: http://127.0.0.1:1/\n    timout: 5s\n",
    );
    for command in [&["check"][..], &["probe"][..], &["run"][..]] {
        let out = medic(command, &config);
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        let all = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}:5", config.display());
        assert!(
            all.contains(&expected),
            "{command:?} should name {expected}: {all}"
        );
        assert!(all.contains("timout"), "{all}");
        assert!(all.contains("timeout"), "suggests the right key: {all}");
    }
}
