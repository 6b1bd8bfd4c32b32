//! medic heals containers of a real Docker Engine: event-driven restarts, scope, cooldown,
//! budget, no fighting the operator, durable state across SIGKILL.
//!
//! Each test scopes its medic to a compose project named after the test (containers carry the
//! compose labels), so tests running side by side never see each other's containers.

mod support;

use std::time::Duration;

use support::{docker_ok, wait_for, Medic, TestRun};

const PROJECT: &str = "com.docker.compose.project";

#[test]
fn an_unhealthy_container_is_restarted_and_recovers() {
    let run = TestRun::new("one");
    let medic = Medic::start(&[("MEDIC_PROJECT", &run.id)]);
    let web = run.service("web", &[]);
    wait_for("web healthy", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });

    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(20), || {
        run.restarts(&web) == 1
    });
    // The restarted container recreates its health file, so it is healthy again.
    wait_for("web healthy again", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    medic.wait_log("recovery logged", Duration::from_secs(10), |l| {
        l.contains("healthy again")
    });
    assert!(
        medic
            .current_lines()
            .iter()
            .any(|l| l.contains("reaction_ms")),
        "the restart line reports the reaction time"
    );
}

#[test]
fn ten_unhealthy_containers_are_restarted_in_parallel() {
    let run = TestRun::new("ten");
    // Each container ignores SIGTERM and gets 3 s to stop: one after another would take 30 s.
    let _medic = Medic::start(&[("MEDIC_PROJECT", &run.id), ("MEDIC_STOP_TIMEOUT", "3s")]);
    let names: Vec<String> = (0..10)
        .map(|i| run.service(&format!("svc{i}"), &[]))
        .collect();
    for name in &names {
        wait_for("healthy", Duration::from_secs(30), || {
            run.health(name) == "healthy"
        });
    }
    for name in &names {
        run.break_health(name);
    }
    wait_for("all ten restarted", Duration::from_secs(40), || {
        names.iter().all(|n| run.restarts(n) >= 1)
    });
    let ends: Vec<i64> = names.iter().map(|n| run.restart_times(n)[0]).collect();
    let spread =
        Duration::from_nanos((ends.iter().max().unwrap() - ends.iter().min().unwrap()) as u64);
    assert!(
        spread < Duration::from_secs(8),
        "ten restarts of 3 s each finished {spread:?} apart: they did not run in parallel"
    );
}

#[test]
fn cooldown_and_budget_limit_restarts_and_medic_gives_up() {
    let run = TestRun::new("budget");
    let medic = Medic::start(&[
        ("MEDIC_PROJECT", &run.id),
        ("MEDIC_RESTART_COOLDOWN", "4s"),
        ("MEDIC_RESTART_BUDGET", "2"),
        ("MEDIC_RESTART_BUDGET_WINDOW", "1h"),
    ]);
    // Never healthy: the health file is never created.
    let name = format!("{}-sick", run.id);
    docker_ok(
        None,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "medic.test=true",
            "--label",
            &format!("medic.test.run={}", run.id),
            "--label",
            &format!("{PROJECT}={}", run.id),
            "--label",
            "com.docker.compose.service=sick",
            "--health-cmd",
            "test -f /tmp/never",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            &support::busybox_image(),
            "sh",
            "-c",
            "exec sleep 100000",
        ],
    );
    wait_for("two restarts", Duration::from_secs(40), || {
        run.restarts(&name) >= 2
    });
    medic.wait_log("GAVE UP", Duration::from_secs(20), |l| {
        l.contains("GAVE UP")
    });
    // Well past another cooldown, still two: the budget holds. Medic saw it failing six more
    // times (a reconcile a second) meanwhile.
    medic.wait_checked(&format!("docker:{name}"), 6, Duration::from_secs(40));
    let times = run.restart_times(&name);
    assert_eq!(times.len(), 2, "{}", medic.dump());
    // The cooldown runs from when medic issued a restart, as its store records it: the
    // engine's events mark when each restart ended, which on a busy machine can be seconds
    // later for the first than for the second.
    let store = medic::store::Store::open(medic.data_dir()).unwrap();
    let issued = store
        .restarts_since(
            &format!("{}/sick", run.id),
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .unwrap();
    assert_eq!(issued.len(), 2, "{issued:?}");
    let gap = (issued[1].at - issued[0].at).to_std().unwrap();
    assert!(
        gap >= Duration::from_secs(4),
        "second restart only {gap:?} after the first"
    );

    let services = store.load_services().unwrap();
    let state = &services[&format!("{}/sick", run.id)];
    assert!(state.gave_up, "{state:?}");
    assert_eq!(state.restarts_total, 2);
}

#[test]
fn containers_out_of_scope_are_never_touched() {
    let run = TestRun::new("scope");
    let medic = Medic::start(&[("MEDIC_PROJECT", &run.id)]);
    let inside = run.service("inside", &[]);
    let other_project = run.container("other", &[(PROJECT, "someone-elses-project")], &[]);
    let opted_out = run.service("optedout", &[("medic.enable", "false")]);
    let no_restart = run.service("norestart", &[("medic.restart", "false")]);
    for n in [&inside, &other_project, &opted_out, &no_restart] {
        wait_for("healthy", Duration::from_secs(20), || {
            run.health(n) == "healthy"
        });
        run.break_health(n);
    }
    wait_for(
        "the in-scope one restarted",
        Duration::from_secs(20),
        || run.restarts(&inside) >= 1,
    );
    for n in [&other_project, &opted_out, &no_restart] {
        wait_for("unhealthy", Duration::from_secs(20), || {
            run.health(n) == "unhealthy"
        });
    }
    // Several reconcile rounds later, still untouched: medic looked at the in-scope service
    // four more times meanwhile, and at the one that opted out of restarts as often.
    medic.wait_checked(&format!("docker:{inside}"), 4, Duration::from_secs(30));
    medic.wait_checked(&format!("docker:{no_restart}"), 4, Duration::from_secs(30));
    for n in [&other_project, &opted_out, &no_restart] {
        assert_eq!(run.restarts(n), 0, "{n} was restarted:\n{}", medic.dump());
    }
    medic.wait_log("opt-out logged", Duration::from_secs(5), |l| {
        l.contains("medic.restart=false")
    });
}

#[test]
fn an_enabled_container_outside_any_project_is_watched() {
    let run = TestRun::new("enabled");
    // No MEDIC_PROJECT: only medic.enable=true containers are watched.
    let _medic = Medic::start(&[]);
    let lone = run.container("lone", &[("medic.enable", "true")], &[]);
    wait_for("healthy", Duration::from_secs(20), || {
        run.health(&lone) == "healthy"
    });
    run.break_health(&lone);
    wait_for("restarted", Duration::from_secs(20), || {
        run.restarts(&lone) >= 1
    });
}

#[test]
fn a_stopped_container_stays_stopped_and_restarts_wait_while_the_project_stops() {
    let run = TestRun::new("operator");
    let medic = Medic::start(&[("MEDIC_PROJECT", &run.id), ("MEDIC_OPERATOR_HOLD", "6s")]);
    let web = run.service("web", &[]);
    let api = run.service("api", &[]);
    for n in [&web, &api] {
        wait_for("healthy", Duration::from_secs(20), || {
            run.health(n) == "healthy"
        });
    }
    // An operator stops web; meanwhile api turns unhealthy.
    docker_ok(None, &["stop", "-t", "1", &web]);
    run.break_health(&api);
    wait_for("api unhealthy", Duration::from_secs(20), || {
        run.health(&api) == "unhealthy"
    });
    medic.wait_log("hold logged", Duration::from_secs(10), |l| {
        l.contains("an operator is stopping the project")
    });
    assert_eq!(
        run.restarts(&api),
        0,
        "api restarted during the operator's stop"
    );
    // Once the hold is over, api is healed; web stays stopped throughout.
    wait_for(
        "api restarted after the hold",
        Duration::from_secs(30),
        || run.restarts(&api) >= 1,
    );
    assert_eq!(run.state(&web), "exited");
    assert_eq!(run.restarts(&web), 0);
}

#[test]
fn docker_compose_stop_is_not_fought() {
    let run = TestRun::new("compose");
    let medic = Medic::start(&[("MEDIC_PROJECT", &run.id), ("MEDIC_OPERATOR_HOLD", "30s")]);
    // web checks that api answers: stopping api makes web unhealthy while compose stops.
    let compose = format!(
        r#"version: "2.4"
services:
  api:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www && echo ok > /www/index.html && httpd -f -p 8080 -h /www & wait"]
    labels: {{medic.test: "true", medic.test.run: "{id}"}}
    stop_grace_period: 1s
    healthcheck: {{test: ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"], interval: 1s, retries: 1}}
  web:
    image: {image}
    command: ["sh", "-c", "exec sleep 100000"]
    labels: {{medic.test: "true", medic.test.run: "{id}"}}
    stop_grace_period: 5s
    healthcheck: {{test: ["CMD", "wget", "-q", "-O", "-", "http://api:8080/"], interval: 1s, retries: 1}}
"#,
        image = support::busybox_image(),
        id = run.id
    );
    let project = support::Compose::new(&run.id, &compose);
    project.ok(&["up", "-d"]);
    let ids = docker_ok(
        None,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label={PROJECT}={}", run.id),
        ],
    );
    let ids: Vec<String> = ids.lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        wait_for("healthy", Duration::from_secs(30), || {
            run.health(id) == "healthy"
        });
    }
    project.ok(&["stop"]);
    // web outlived api by seconds and turned unhealthy meanwhile: medic held its restart.
    medic.wait_log("hold while compose stops", Duration::from_secs(5), |l| {
        l.contains("an operator is stopping the project")
    });
    // Give medic several reconcile rounds to misbehave: a healthy container outside the
    // project, watched through medic.enable=true, shows each round as medic looks at it.
    let witness = run.container("witness", &[("medic.enable", "true")], &[]);
    medic.wait_checked(&format!("docker:{witness}"), 4, Duration::from_secs(40));
    for id in &ids {
        assert_eq!(
            run.state(id),
            "exited",
            "{id} was started again:\n{}",
            medic.dump()
        );
        assert_eq!(run.restarts(id), 0, "{}", medic.dump());
    }
}

#[test]
fn cooldown_survives_sigkill_of_medic() {
    let run = TestRun::new("sigkill");
    let medic = Medic::start(&[("MEDIC_PROJECT", &run.id), ("MEDIC_RESTART_COOLDOWN", "1h")]);
    let web = run.service("web", &[]);
    wait_for("healthy", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    run.break_health(&web);
    wait_for("first restart", Duration::from_secs(20), || {
        run.restarts(&web) == 1
    });
    wait_for("healthy again", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });

    let medic = medic.sigkill_and_restart();
    run.break_health(&web);
    wait_for("unhealthy again", Duration::from_secs(20), || {
        run.health(&web) == "unhealthy"
    });
    medic.wait_log(
        "cooldown hold after restart of medic",
        Duration::from_secs(10),
        |l| l.contains("restart cooldown"),
    );
    medic.wait_checked(&format!("docker:{web}"), 2, Duration::from_secs(20));
    assert_eq!(run.restarts(&web), 1, "{}", medic.dump());
}

#[test]
fn a_malformed_setting_exits_2_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("run")
        .env("MEDIC_RESTART_COOLDOWN", "ten")
        .env("MEDIC_DATA_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MEDIC_RESTART_COOLDOWN"), "{stderr}");
    assert!(stderr.contains("ten"), "{stderr}");
}

#[test]
fn health_answers_while_running() {
    let medic = Medic::start(&[("MEDIC_PROJECT", "medictest-health-nothing")]);
    let (status, body) = support::http_get(&medic.addr(), "/health");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"healthy"}"#);
}
