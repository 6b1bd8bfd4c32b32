//! medic run the way users run it: as a service of a compose project, from its image, with the
//! Docker socket mounted and no MEDIC_PROJECT. It finds its own project from its own container,
//! heals the project's services, and never restarts itself, even when it is unhealthy.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use support::{wait_for, Compose, TestRun};

#[test]
fn medic_in_a_container_heals_its_own_project_and_never_restarts_itself() {
    support::build_images("medic");
    let run = TestRun::new("incontainer");
    let socket_gid = std::fs::metadata("/var/run/docker.sock")
        .expect("the Docker socket")
        .gid();
    // medic's healthcheck is made to fail, so medic's own container turns unhealthy.
    let yaml = format!(
        r#"version: "2.4"
services:
  medic:
    image: medic:latest
    group_add: ["{socket_gid}"]
    read_only: true
    volumes: ["/var/run/docker.sock:/var/run/docker.sock"]
    environment:
      MEDIC_RECONCILE_INTERVAL: 1s
      MEDIC_RESTART_GRACE: 1s
      MEDIC_STOP_TIMEOUT: 1s
      MEDIC_RESTART_COOLDOWN: 1s
      MEDIC_LOG_FORMAT: json
    labels: {{medic.test: "true", medic.test.run: "{id}"}}
    healthcheck:
      test: ["CMD", "/usr/local/bin/medic", "no-such-command"]
      interval: 1s
      retries: 1
  sick:
    image: {image}
    command: ["sh", "-c", "touch /tmp/ok; exec sleep 100000"]
    labels: {{medic.test: "true", medic.test.run: "{id}"}}
    healthcheck: {{test: ["CMD-SHELL", "test -f /tmp/ok"], interval: 1s, retries: 1}}
"#,
        image = support::busybox_image(),
        id = run.id
    );
    let project = Compose::new(&run.id, &yaml);
    project.ok(&["up", "-d"]);
    let medic = project.container("medic");
    let sick = project.container("sick");
    let logs = || {
        let out = support::docker_at(None, &["logs", &medic]);
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };

    wait_for(
        "medic watches its own project",
        Duration::from_secs(30),
        || logs().contains(&format!("watching compose project {}", run.id)),
    );
    wait_for("medic itself unhealthy", Duration::from_secs(30), || {
        run.health(&medic) == "unhealthy"
    });
    wait_for("sick healthy", Duration::from_secs(30), || {
        run.health(&sick) == "healthy"
    });
    run.break_health(&sick);
    wait_for("sick restarted by medic", Duration::from_secs(30), || {
        run.restarts(&sick) >= 1
    });
    // Several reconcile rounds with medic unhealthy, and it is still untouched. Evidence that
    // medic's loop went on meanwhile: sick, broken again once healthy, is restarted again.
    wait_for("sick healthy again", Duration::from_secs(30), || {
        run.health(&sick) == "healthy"
    });
    run.break_health(&sick);
    wait_for(
        "sick restarted a second time",
        Duration::from_secs(30),
        || run.restarts(&sick) >= 2,
    );
    assert_eq!(
        run.restarts(&medic),
        0,
        "medic restarted itself:\n{}",
        logs()
    );
    assert_eq!(run.state(&medic), "running");
    assert!(
        !logs().contains("\"level\":\"ERROR\""),
        "errors in medic's log:\n{}",
        logs()
    );
}

/// A container removed with its anonymous volumes when dropped.
struct RemovedWithVolumes(String);

impl Drop for RemovedWithVolumes {
    fn drop(&mut self) {
        let _ = support::docker_at(None, &["rm", "-f", "-v", &self.0]);
    }
}

/// What `docker logs` keeps of medic's text logs: no colour codes (its stderr is no terminal),
/// and fields as values, e.g. its own container id without Rust's `Some("…")` around it.
#[test]
fn docker_logs_of_medic_hold_no_escape_codes() {
    support::build_images("medic");
    let run = TestRun::new("plainlogs");
    let socket_gid = std::fs::metadata("/var/run/docker.sock")
        .expect("the Docker socket")
        .gid()
        .to_string();
    let name = format!("{}-medic", run.id);
    support::docker_ok(
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
            "--group-add",
            &socket_gid,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "--network",
            "none",
            "medic:latest",
        ],
    );
    // Removed with its anonymous /data volume (TestRun's `rm -f` would leave the volume),
    // also when the test fails.
    let _container = RemovedWithVolumes(name.clone());
    let logs = || {
        let out = support::docker_at(None, &["logs", &name]);
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };
    wait_for(
        "medic finds its own container",
        Duration::from_secs(30),
        || logs().contains("own_container="),
    );
    let text = logs();
    assert!(
        !text.contains("\x1b["),
        "escape codes in docker logs:\n{text:?}"
    );
    let own = text
        .split("own_container=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert!(
        own.len() == 64 && own.chars().all(|c| c.is_ascii_hexdigit()),
        "own_container is not a plain id: {own}\n{text}"
    );
}
