//! Synthetic probes drive healing: the upload probe runs through the demo stack (app, RabbitMQ,
//! worker, MongoDB wire server); when the worker stops consuming, Docker still calls it healthy,
//! the probe fails, and after three failures medic restarts the worker (not the app), after
//! which the probe passes again. Also: a probe that hangs does not delay another.

mod support;

use std::time::Duration;

use support::{docker_ok, free_port, medic_config, var, wait_for, Medic, TestRun};

#[test]
fn a_failing_upload_probe_restarts_the_worker_and_recovers() {
    support::build_images("demo");
    let run = TestRun::new("upload");
    let (app_port, admin_port) = (free_port(), free_port());
    let mongo = var("MEDIC_TEST_MONGODB_URL", "mongodb://127.0.0.1:27017");
    let rabbit = var(
        "MEDIC_TEST_RABBITMQ_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let queue = format!("uploads-{}", run.id);
    let start = |service: &str, image: &str, port_var: &str, port: u16| {
        let name = format!("{}-{service}", run.id);
        docker_ok(
            None,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "host",
                "--label",
                "medic.test=true",
                "--label",
                &format!("medic.test.run={}", run.id),
                "--label",
                &format!("com.docker.compose.project={}", run.id),
                "--label",
                &format!("com.docker.compose.service={service}"),
                "-e",
                &format!("MONGODB_URL={mongo}"),
                "-e",
                &format!("MONGODB_DB={}", run.id),
                "-e",
                &format!("RABBITMQ_URL={rabbit}"),
                "-e",
                &format!("UPLOAD_QUEUE={queue}"),
                "-e",
                &format!("{port_var}={port}"),
                image,
            ],
        );
        name
    };
    let worker = start(
        "worker",
        "medic-demo/worker:latest",
        "WORKER_ADMIN_PORT",
        admin_port,
    );
    let app = start("app", "medic-demo/app:latest", "APP_PORT", app_port);

    let (_config_dir, config) = medic_config(&format!(
        r#"probes:
  upload:
    type: upload
    url: http://127.0.0.1:{app_port}/api/upload
    status_url: /api/documents/{{id}}
    poll_interval: 200ms
    interval: 2s
    timeout: 4s
    restart: [worker]
"#
    ));
    let medic = Medic::start(&[
        ("MEDIC_PROJECT", &run.id),
        ("MEDIC_CONFIG", config.to_str().unwrap()),
        ("MEDIC_RESTART_COOLDOWN", "1h"),
    ]);
    let passes = |m: &Medic| {
        m.current_lines()
            .iter()
            .filter(|l| l.contains("probe passed") || l.contains("probe passes again"))
            .count()
    };
    // The worker's demo probe passes before anything breaks (debug lines are not logged at
    // info, so wait for a clean record instead: no failure within two rounds, which
    // `/health/detailed` shows ran).
    wait_for("the app answers", Duration::from_secs(30), || {
        support::http_get(&format!("127.0.0.1:{app_port}"), "/health").0 == 200
    });
    medic.wait_checked("probe:upload", 2, Duration::from_secs(30));
    assert!(
        !medic
            .current_lines()
            .iter()
            .any(|l| l.contains("probe failed")),
        "the upload probe fails on a healthy stack:\n{}",
        medic.dump()
    );

    // Break the worker the way Docker cannot see.
    docker_ok(
        None,
        &["exec", &worker, "demo-worker", "fault", "stop-consuming"],
    );
    medic.wait_log("threshold reached", Duration::from_secs(40), |l| {
        l.contains("threshold reached")
    });
    wait_for("worker restarted", Duration::from_secs(30), || {
        run.restarts(&worker) == 1
    });
    assert_eq!(
        run.restarts(&app),
        0,
        "the app is not at fault and must not be restarted"
    );
    assert_eq!(
        medic
            .current_lines()
            .iter()
            .filter(|l| l.contains("probe failed"))
            .count(),
        3,
        "three failures, then the restart:\n{}",
        medic.dump()
    );
    medic.wait_log(
        "the probe passes after the restart",
        Duration::from_secs(40),
        |l| l.contains("probe passes again"),
    );
    assert!(passes(&medic) >= 1);
    assert_eq!(run.restarts(&worker), 1);
}

#[test]
fn a_hung_probe_does_not_delay_another() {
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming().take(20).flatten() {
            conns.push(c);
        }
    });
    let _ = held;
    let (_config_dir, config) = medic_config(&format!(
        r#"probes:
  hangs:
    type: http
    url: http://127.0.0.1:{silent_port}/
    interval: 1s
    timeout: 60s
  quick:
    type: tcp
    host: 127.0.0.1
    port: {silent_port}
    interval: 1s
    timeout: 2s
    failure_threshold: 1000
"#
    ));
    let medic = Medic::start(&[
        ("MEDIC_PROJECT", "medictest-hung-nothing"),
        ("MEDIC_CONFIG", config.to_str().unwrap()),
        ("MEDIC_LOG", "medic=debug"),
    ]);
    // The hung probe holds its run for 60 s: four runs of the quick one (a second apart) well
    // before that show it is not held up, without betting on how fast this machine is.
    let quick_runs = || {
        medic
            .current_lines()
            .iter()
            .filter(|l| l.contains("probe passed") && l.contains(r#""probe":"quick""#))
            .count()
    };
    // (On timeout, medic's log is printed as the test fails.)
    wait_for(
        "four runs of the quick probe beside the hung one",
        Duration::from_secs(30),
        || quick_runs() >= 4,
    );
    assert!(
        !medic
            .current_lines()
            .iter()
            .any(|l| l.contains(r#""probe":"hangs""#) && l.contains("probe passed")),
        "the hung probe cannot have passed"
    );
}
