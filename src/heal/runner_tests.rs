//! The healing loop driven through its real tasks (watcher, loop, restart tasks) by a scripted
//! engine on tokio's paused clock: events and probe reports in, restarts, alerts and history
//! out. Acceptance tests do the same against the real engine.

use std::sync::Arc;

use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedSender;

use super::super::scripted::{container, event, healing, ScriptedEngine};
use super::*;
use crate::docker::{EventKind, Health};

struct Rig {
    engine: Arc<ScriptedEngine>,
    events: UnboundedSender<EngineEvent>,
    store: Arc<Store>,
    handles: Handles,
    alerts: mpsc::Receiver<crate::notify::Incoming>,
    shutdown: CancellationToken,
    _dir: TempDir,
}

/// The loop watching project `shop` (containers `web` and `db`), settled: the scope is known.
async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let (engine, events) = ScriptedEngine::new(vec![container("web"), container("db")]);
    let engine = Arc::new(engine);
    let (alerts_tx, alerts) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let settings = SupervisorSettings {
        project: Some("shop".into()),
        healing: healing(),
        reconcile_interval: Duration::from_secs(30),
        file_probes: Vec::new(),
        // Exec probes' client: nowhere, so nothing reaches a real engine.
        docker_host: Some("/nonexistent/docker.sock".into()),
        label_variables: Default::default(),
    };
    let status = Arc::new(Status::new(Duration::from_secs(60)));
    let handles = spawn(
        settings,
        engine.clone(),
        store.clone(),
        status.clone(),
        alerts_tx,
        &TaskTracker::new(),
        shutdown.clone(),
    )
    .unwrap();
    // Settled once the loop has published the containers the watcher listed.
    until("the loop knows the containers", || {
        let views = status.components();
        views.contains_key("web") && views.contains_key("db")
    })
    .await;
    Rig {
        engine,
        events,
        store,
        handles,
        alerts,
        shutdown,
        _dir: dir,
    }
}

/// Waits on the paused clock until `done` holds; fails after a minute of virtual time.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// The history kinds written about `component` in the last hour.
fn kinds(store: &Store, component: &str) -> Vec<String> {
    store
        .timeline_since(Utc::now() - chrono::Duration::hours(1))
        .unwrap()
        .into_iter()
        .filter(|e| e.component == component)
        .map(|e| e.kind)
        .collect()
}

fn alerts_received(rig: &mut Rig) -> usize {
    std::iter::from_fn(|| rig.alerts.try_recv().ok()).count()
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_event_restarts_alerts_and_its_echo_is_not_an_operator_stop() {
    let mut rig = rig().await;
    let web = container("web");
    rig.events
        .send(event(&web, EventKind::Health(Health::Unhealthy)))
        .unwrap();
    let engine = rig.engine.clone();
    until("web is restarted", || {
        engine.restarted.lock().unwrap().as_slice() == ["id-web"]
    })
    .await;
    let store = rig.store.clone();
    until("the restart is in history", || {
        let kinds = kinds(&store, "web");
        ["unhealthy", "alert_critical", "restart"]
            .iter()
            .all(|k| kinds.iter().any(|have| have == k))
    })
    .await;
    assert_eq!(alerts_received(&mut rig), 1, "one CRITICAL");

    // The engine's stop during the restart: medic's own echo. The oom after it proves the
    // loop handled the stop before we look.
    rig.events.send(event(&web, EventKind::Stop)).unwrap();
    rig.events.send(event(&web, EventKind::Oom)).unwrap();
    until("the oom is in history", || {
        kinds(&store, "web").iter().any(|k| k == "oom")
    })
    .await;
    assert!(!kinds(&store, "web").iter().any(|k| k == "operator_stop"));

    // Once the echo window is over, a stop is an operator's.
    tokio::time::sleep(crate::heal::decide::OWN_RESTART_ECHO + Duration::from_secs(3)).await;
    rig.events.send(event(&web, EventKind::Stop)).unwrap();
    until("the operator's stop is in history", || {
        kinds(&store, "web").iter().any(|k| k == "operator_stop")
    })
    .await;
    assert_eq!(
        rig.engine.restarted.lock().unwrap().len(),
        1,
        "restarted once"
    );
    rig.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_probe_restarts_the_service_it_names_and_a_failed_restart_is_kept_by_component() {
    let mut rig = rig().await;
    *rig.engine.restart_error.lock().unwrap() = Some("engine said no".into());
    let text = "probes:\n  api:\n    type: tcp\n    host: db\n    port: 1\n    restart: db\n    failure_threshold: 1\n";
    let spec = Arc::new(
        crate::probe::parse_yaml(text, "medic.yaml", &|_| None)
            .unwrap()
            .remove(0),
    );
    let result = crate::probe::ProbeResult {
        name: "api".into(),
        kind: "tcp",
        component: spec.component.clone(),
        ok: false,
        severity: crate::probe::Severity::Critical,
        latency: Duration::from_millis(2),
        error: Some("connection refused".into()),
        steps: Vec::new(),
        details: serde_json::Map::new(),
        checked_at: Utc::now(),
    };
    rig.handles
        .probes
        .send(ProbeReport {
            spec,
            result: Arc::new(result),
            lag: Duration::ZERO,
        })
        .await
        .unwrap();
    let engine = rig.engine.clone();
    until("db is restarted", || {
        engine.restarted.lock().unwrap().as_slice() == ["id-db"]
    })
    .await;
    let store = rig.store.clone();
    until("the failed restart is in db's history", || {
        kinds(&store, "db").iter().any(|k| k == "restart_failed")
    })
    .await;
    assert!(!kinds(&store, "shop/db")
        .iter()
        .any(|k| k == "restart_failed"));
    assert_eq!(alerts_received(&mut rig), 1);
    rig.shutdown.cancel();
}

#[test]
fn a_command_naming_nothing_known_lists_what_is() {
    assert_eq!(
        not_found("probe", "x", &["a", "b"]).to_string(),
        "no probe named \"x\"; probes: a, b"
    );
    assert_eq!(
        not_found("component", "x", &Vec::<String>::new()).to_string(),
        "no component named \"x\"; components: none"
    );
}
