//! Table tests of the healing step: one test per rule, named after the rule.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::scripted::healing;
use super::*;
use crate::docker::scope::Scope;
use crate::model::WorkloadId;
use crate::policy::CheckState;

fn t(secs: i64) -> Instant {
    chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

/// A moment `secs` seconds into the test, on both clocks.
fn at(base: tokio::time::Instant, secs: i64) -> Now {
    Now {
        wall: t(secs),
        mono: base + Duration::from_secs(secs as u64),
    }
}

fn labels(service: &str) -> HashMap<String, String> {
    HashMap::from([
        (crate::docker::LABEL_PROJECT.to_string(), "shop".to_string()),
        (
            crate::docker::LABEL_SERVICE.to_string(),
            service.to_string(),
        ),
    ])
}

fn container(service: &str) -> Container {
    Container {
        id: format!("id-{service}"),
        name: format!("shop-{service}-1"),
        labels: labels(service),
        state: RunState::Running,
        health: Health::None,
        stop_timeout: None,
        start_period: None,
    }
}

fn event(service: &str, kind: EventKind) -> EngineEvent {
    let mut attributes = labels(service);
    attributes.insert("name".into(), format!("shop-{service}-1"));
    EngineEvent {
        id: format!("id-{service}"),
        kind,
        attributes,
        time_nanos: 7,
    }
}

fn unhealthy(service: &str) -> Observation {
    Observation::Event(event(service, EventKind::Health(Health::Unhealthy)))
}

fn healthy(service: &str) -> Observation {
    Observation::Event(event(service, EventKind::Health(Health::Healthy)))
}

/// The shop project with its `web` and `db` containers, watched.
fn state() -> HealState {
    let mut state = HealState::new(healing(), HashMap::new(), HashMap::new(), HashMap::new());
    state.scope = Some(Scope {
        project: Some("shop".into()),
        own_id: None,
    });
    state.containers = vec![container("web"), container("db")];
    state
}

fn probe(text: &str) -> Arc<ProbeSpec> {
    Arc::new(
        crate::probe::parse_yaml(text, "medic.yaml", &|_| None)
            .unwrap()
            .remove(0),
    )
}

/// A tcp probe of component `api` that restarts `web` at 3 failures in a row.
fn api_probe() -> Arc<ProbeSpec> {
    probe("probes:\n  api:\n    type: tcp\n    host: web\n    port: 1\n    restart: web\n    failure_threshold: 3\n")
}

fn run(spec: &Arc<ProbeSpec>, error: Option<&str>) -> Observation {
    Observation::Probe(ProbeRun {
        spec: spec.clone(),
        error: error.map(str::to_string),
        latency: Duration::from_millis(3),
    })
}

fn alerts(effects: &[Effect]) -> Vec<&Alert> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Alert(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn restarts(effects: &[Effect]) -> Vec<&RestartOrder> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Restart(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn history(effects: &[Effect]) -> Vec<(String, HistoryKind)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::History {
                component, kind, ..
            } => Some((component.to_string(), *kind)),
            _ => None,
        })
        .collect()
}

fn web_key() -> ServiceKey {
    ServiceKey::new(Some("shop"), "web")
}

/// web turns unhealthy at 0 s and is restarted; the restart ends at 1 s with `grace` seconds.
fn restart_web(s: &mut HealState, base: tokio::time::Instant, grace: u64) {
    assert_eq!(restarts(&step(s, unhealthy("web"), at(base, 0))).len(), 1);
    let grace = Duration::from_secs(grace);
    step(s, done(RestartResult::Restarted { grace }), at(base, 1));
}

fn done(result: RestartResult) -> Observation {
    Observation::RestartDone {
        service: web_key(),
        workload: WorkloadId::new("id-web"),
        result,
    }
}

#[test]
fn alert_is_sent_exactly_at_the_threshold() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let spec = api_probe();
    // (run, failing?, alerts expected)
    let runs = [
        (1, true, 0),
        (2, true, 0),
        (3, true, 1),
        (4, true, 0),
        (5, true, 0),
    ];
    for (i, failing, expected) in runs {
        let effects = step(
            &mut s,
            run(&spec, failing.then_some("refused")),
            at(base, i),
        );
        let sent = alerts(&effects);
        assert_eq!(sent.len(), expected, "run {i}");
        if let Some(alert) = sent.first() {
            assert_eq!(alert.kind, AlertKind::Critical);
            assert_eq!(alert.consecutive_failures, 3);
            assert_eq!(alert.check, "api");
            assert_eq!(alert.check_type, "tcp");
        }
    }
}

#[test]
fn recovered_follows_only_an_outage_that_alerted() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let spec = api_probe();
    step(&mut s, run(&spec, Some("refused")), at(base, 1));
    let effects = step(&mut s, run(&spec, None), at(base, 2));
    assert!(alerts(&effects).is_empty(), "one failure raised nothing");
    assert_eq!(
        history(&effects),
        vec![(spec.component.clone(), HistoryKind::Recovered)]
    );
    for i in 3..6 {
        step(&mut s, run(&spec, Some("refused")), at(base, i));
    }
    let effects = step(&mut s, run(&spec, None), at(base, 700));
    let sent = alerts(&effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, AlertKind::Recovered);
    assert_eq!(sent[0].action, "probe api passes again");
}

#[test]
fn docker_health_counts_as_threshold_one() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let effects = step(&mut s, unhealthy("web"), at(base, 0));
    let sent = alerts(&effects);
    assert_eq!(sent.len(), 1, "the first unhealthy alerts");
    assert_eq!(sent[0].kind, AlertKind::Critical);
    assert_eq!(sent[0].status, "unhealthy");
    assert_eq!(sent[0].action, "restarted shop-web-1");
    let orders = restarts(&effects);
    assert_eq!(orders.len(), 1, "and restarts at once");
    assert_eq!(orders[0].service, web_key());
    assert_eq!(orders[0].event_nanos, Some(7));
    assert_eq!(
        history(&effects)[0],
        ("web".into(), HistoryKind::Unhealthy),
        "history says so first"
    );
}

#[test]
fn only_a_change_of_health_is_news() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    step(&mut s, unhealthy("db"), at(base, 0));
    // Podman repeats the health on every run: the repeat does nothing.
    assert!(step(&mut s, unhealthy("db"), at(base, 1)).is_empty());
}

#[test]
fn probe_restarts_the_services_it_names() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let spec = api_probe();
    let mut effects = Vec::new();
    for i in 1..=3 {
        effects = step(&mut s, run(&spec, Some("refused")), at(base, i));
    }
    let orders = restarts(&effects);
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].service, web_key());
    assert_eq!(
        orders[0].workloads,
        vec![(WorkloadId::new("id-web"), "shop-web-1".to_string())],
        "web only, not db"
    );
    assert_eq!(orders[0].component.as_str(), "web");
    assert!(orders[0]
        .reason
        .contains("probe api failed 3 times in a row"));
}

#[test]
fn probe_without_restart_only_alerts() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let spec = probe(
        "probes:\n  api:\n    type: tcp\n    host: web\n    port: 1\n    failure_threshold: 1\n",
    );
    let effects = step(&mut s, run(&spec, Some("refused")), at(base, 1));
    assert!(restarts(&effects).is_empty());
    assert_eq!(alerts(&effects)[0].action, "none: this probe only alerts");
}

#[test]
fn probe_naming_no_running_container_restarts_nothing() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    s.containers[0].state = RunState::Exited;
    let spec = probe("probes:\n  api:\n    type: tcp\n    host: web\n    port: 1\n    restart: web\n    failure_threshold: 1\n");
    let effects = step(&mut s, run(&spec, Some("refused")), at(base, 1));
    assert!(restarts(&effects).is_empty());
    assert_eq!(
        alerts(&effects)[0].action,
        "not restarted: no running watched container of web"
    );
}

#[test]
fn own_restart_echo_is_not_an_operator_stop() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    step(&mut s, unhealthy("web"), at(base, 0));
    // While the restart is under way: the engine's stop and kill are medic's own.
    for kind in [EventKind::Kill, EventKind::Stop] {
        let effects = step(&mut s, Observation::Event(event("web", kind)), at(base, 1));
        assert!(effects.is_empty(), "{effects:?}");
    }
    step(
        &mut s,
        done(RestartResult::Restarted {
            grace: Duration::from_secs(5),
        }),
        at(base, 2),
    );
    // Late echoes, within the window after the restart.
    let echo = Observation::Event(event("web", EventKind::Stop));
    let late = 2 + OWN_RESTART_ECHO.as_secs() as i64 - 1;
    assert!(step(&mut s, echo.clone(), at(base, late)).is_empty());
    assert!(s.operator_holds.is_empty());
    // After the window, a stop is an operator's.
    let effects = step(&mut s, echo, at(base, late + 2));
    assert_eq!(
        history(&effects),
        vec![("web".into(), HistoryKind::OperatorStop)]
    );
}

#[test]
fn interrupted_restart_echo_is_not_an_operator_stop() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    s.interrupted_restarts
        .insert("shop-web-1".into(), base + INTERRUPTED_RESTART_WINDOW);
    let stop = Observation::Event(event("web", EventKind::Stop));
    assert!(step(&mut s, stop.clone(), at(base, 1)).is_empty());
    let after = INTERRUPTED_RESTART_WINDOW.as_secs() as i64 + 1;
    step(&mut s, Observation::Tick, at(base, after));
    assert!(s.interrupted_restarts.is_empty(), "the tick forgets it");
    assert_eq!(history(&step(&mut s, stop, at(base, after))).len(), 1);
}

#[test]
fn operator_stop_holds_restarts() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let effects = step(
        &mut s,
        Observation::Event(event("db", EventKind::Stop)),
        at(base, 0),
    );
    assert_eq!(
        history(&effects),
        vec![("db".into(), HistoryKind::OperatorStop)]
    );
    // Another service of the same project turns unhealthy meanwhile: held, and alerted.
    let effects = step(&mut s, unhealthy("web"), at(base, 10));
    assert!(restarts(&effects).is_empty());
    assert!(history(&effects).contains(&("web".into(), HistoryKind::Held)));
    assert!(alerts(&effects)[0]
        .action
        .starts_with("not restarted: an operator is stopping the project"));
    // The hold ends with its time.
    step(&mut s, Observation::Tick, at(base, 121));
    assert!(s.operator_holds.is_empty());
}

#[test]
fn operator_holds_are_lifted_when_the_engine_reconnects() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    step(
        &mut s,
        Observation::Event(event("db", EventKind::Kill)),
        at(base, 0),
    );
    assert_eq!(s.operator_holds.len(), 1);
    step(&mut s, Observation::Reconnected, at(base, 1));
    assert!(s.operator_holds.is_empty());
    // And every health is news again.
    step(&mut s, healthy("web"), at(base, 2));
    step(&mut s, Observation::Reconnected, at(base, 3));
    assert!(s.event_health.changed("id-web", Health::Healthy));
}

#[test]
fn silence_holds_restarts_and_alerts() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let effects = step(
        &mut s,
        Observation::Silence {
            component: "web".into(),
            until: Some(t(3600)),
        },
        at(base, 0),
    );
    assert_eq!(effects[0], Effect::SaveSilence("web".into(), Some(t(3600))));
    assert_eq!(
        history(&effects),
        vec![("web".into(), HistoryKind::Silenced)]
    );
    assert_eq!(effects.last(), Some(&Effect::PublishNow));
    let effects = step(&mut s, unhealthy("web"), at(base, 10));
    assert!(restarts(&effects).is_empty(), "no restart");
    assert!(alerts(&effects).is_empty(), "no alert sent");
    assert!(effects.contains(&Effect::AlertHeld(
        ComponentId::new("web"),
        HistoryKind::AlertCritical
    )));
    // The alert is still in history.
    assert!(history(&effects).contains(&("web".into(), HistoryKind::AlertCritical)));
    // Lifted: restarts again.
    step(
        &mut s,
        Observation::Silence {
            component: "web".into(),
            until: None,
        },
        at(base, 20),
    );
    step(&mut s, healthy("web"), at(base, 30));
    assert_eq!(
        restarts(&step(&mut s, unhealthy("web"), at(base, 40))).len(),
        1
    );
}

#[test]
fn opted_out_container_is_alerted_about_but_not_restarted() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let mut e = event("web", EventKind::Health(Health::Unhealthy));
    e.attributes.insert("medic.restart".into(), "false".into());
    let effects = step(&mut s, Observation::Event(e), at(base, 0));
    assert!(restarts(&effects).is_empty());
    assert_eq!(
        alerts(&effects)[0].action,
        "not restarted: restarts are disabled by label medic.restart=false"
    );
}

#[test]
fn medics_own_container_is_never_restarted() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    s.scope = Some(Scope {
        project: Some("shop".into()),
        own_id: Some("id-web".into()),
    });
    let spec = api_probe();
    let mut effects = Vec::new();
    for i in 1..=3 {
        effects = step(&mut s, run(&spec, Some("refused")), at(base, i));
    }
    assert!(restarts(&effects).is_empty());
    assert_eq!(alerts(&effects)[0].action, "nothing to restart");
}

#[test]
fn out_of_scope_events_are_ignored() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let mut e = event("web", EventKind::Health(Health::Unhealthy));
    e.attributes
        .insert(crate::docker::LABEL_PROJECT.into(), "other".into());
    assert!(step(&mut s, Observation::Event(e), at(base, 0)).is_empty());
}

#[test]
fn grace_after_a_restart_ignores_failures() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    restart_web(&mut s, base, 60);
    step(&mut s, healthy("web"), at(base, 2));
    let effects = step(&mut s, unhealthy("web"), at(base, 30));
    assert!(restarts(&effects).is_empty());
    assert!(alerts(&effects).is_empty());
    assert!(history(&effects).is_empty());
}

#[test]
fn cooldown_holds_the_next_restart() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    restart_web(&mut s, base, 5);
    step(&mut s, healthy("web"), at(base, 10));
    let effects = step(&mut s, unhealthy("web"), at(base, 100));
    assert!(restarts(&effects).is_empty());
    assert!(alerts(&effects)[0]
        .action
        .starts_with("not restarted: in restart cooldown until"));
    // Past the cooldown it restarts.
    step(&mut s, healthy("web"), at(base, 599));
    assert_eq!(
        restarts(&step(&mut s, unhealthy("web"), at(base, 601))).len(),
        1
    );
}

#[test]
fn a_steady_hold_is_written_once() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let spec = probe("probes:\n  api:\n    type: tcp\n    host: web\n    port: 1\n    restart: web\n    failure_threshold: 1\n");
    step(
        &mut s,
        Observation::Event(event("db", EventKind::Stop)),
        at(base, 0),
    );
    let first = step(&mut s, run(&spec, Some("refused")), at(base, 1));
    assert!(history(&first).contains(&("web".into(), HistoryKind::Held)));
    let second = step(&mut s, run(&spec, Some("refused")), at(base, 2));
    assert!(!history(&second).contains(&("web".into(), HistoryKind::Held)));
}

#[test]
fn budget_spent_gives_up_once() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    s.healing.restart_budget = 1;
    s.healing.restart_cooldown = Duration::ZERO;
    restart_web(&mut s, base, 0);
    step(&mut s, healthy("web"), at(base, 2));
    let effects = step(&mut s, unhealthy("web"), at(base, 3));
    assert!(restarts(&effects).is_empty());
    let kinds: Vec<AlertKind> = alerts(&effects).iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AlertKind::GaveUp, AlertKind::Critical]);
    assert!(history(&effects).contains(&("web".into(), HistoryKind::GaveUp)));
    assert!(s.services["shop/web"].gave_up);
    // Still failing: held, no second GAVE UP.
    s.event_health.clear();
    let effects = step(&mut s, unhealthy("web"), at(base, 4));
    assert!(alerts(&effects).is_empty());
    // A recovery clears the mark.
    step(&mut s, healthy("web"), at(base, 5));
    assert!(!s.services["shop/web"].gave_up);
}

#[test]
fn skipped_restart_gives_back_its_budget_slot() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    step(&mut s, unhealthy("web"), at(base, 0));
    assert_eq!(s.services["shop/web"].restarts_total, 1, "counted at once");
    let effects = step(
        &mut s,
        done(RestartResult::Skipped("it is exited".into())),
        at(base, 1),
    );
    assert_eq!(
        effects,
        vec![Effect::SaveService(web_key(), ServiceState::default())]
    );
    assert_eq!(s.services["shop/web"], ServiceState::default());
    assert!(s.in_flight.is_empty());
}

#[test]
fn failed_restart_keeps_its_budget_slot_without_grace() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    step(&mut s, unhealthy("web"), at(base, 0));
    step(
        &mut s,
        done(RestartResult::Failed("refused".into())),
        at(base, 1),
    );
    let state = &s.services["shop/web"];
    assert_eq!(state.restarts_total, 1);
    assert_eq!(state.grace_until, Some(t(1)));
}

#[test]
fn restart_failed_history_is_keyed_by_component() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    step(&mut s, unhealthy("web"), at(base, 0));
    let effects = step(
        &mut s,
        done(RestartResult::Failed("engine said no".into())),
        at(base, 1),
    );
    assert_eq!(
        history(&effects),
        vec![("web".into(), HistoryKind::RestartFailed)],
        "the component, as every other line and the status page"
    );
}

#[test]
fn a_restart_under_way_is_not_started_twice() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    // No grace, so the second failure is not ignored as in grace.
    s.healing.default_grace = Duration::ZERO;
    let spec = probe("probes:\n  api:\n    type: tcp\n    host: web\n    port: 1\n    restart: web\n    failure_threshold: 1\n");
    assert_eq!(
        restarts(&step(&mut s, run(&spec, Some("x")), at(base, 0))).len(),
        1
    );
    let effects = step(&mut s, unhealthy("web"), at(base, 1));
    assert!(restarts(&effects).is_empty());
    assert_eq!(alerts(&effects)[0].action, "a restart is already under way");
}

#[test]
fn grace_is_the_longest_of_the_workloads() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let mut second = container("web");
    second.id = "id-web-2".into();
    second.name = "shop-web-2".into();
    s.containers.push(second);
    let spec = probe("probes:\n  api:\n    type: tcp\n    host: web\n    port: 1\n    restart: web\n    failure_threshold: 1\n");
    let effects = step(&mut s, run(&spec, Some("x")), at(base, 0));
    assert_eq!(restarts(&effects)[0].workloads.len(), 2);
    let one = step(
        &mut s,
        done(RestartResult::Restarted {
            grace: Duration::from_secs(30),
        }),
        at(base, 1),
    );
    assert!(one.is_empty(), "the service waits for its other workload");
    step(
        &mut s,
        Observation::RestartDone {
            service: web_key(),
            workload: WorkloadId::new("id-web-2"),
            result: RestartResult::Restarted {
                grace: Duration::from_secs(90),
            },
        },
        at(base, 2),
    );
    assert_eq!(s.services["shop/web"].grace_until, Some(t(92)));
}

#[test]
fn effects_keep_the_alert_before_the_state_that_records_it() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let effects = step(&mut s, unhealthy("web"), at(base, 0));
    let index = |f: &dyn Fn(&Effect) -> bool| effects.iter().position(f).unwrap();
    let save_service = index(&|e| matches!(e, Effect::SaveService(..)));
    let restart = index(&|e| matches!(e, Effect::Restart(_)));
    let alert = index(&|e| matches!(e, Effect::Alert(_)));
    let save_check = index(&|e| matches!(e, Effect::SaveCheck(..)));
    assert!(
        save_service < restart,
        "the restart is counted before it is made"
    );
    assert!(
        alert < save_check,
        "the alert is kept before the check that says it was raised"
    );
    assert_eq!(
        effects[save_check],
        Effect::SaveCheck(
            CheckKey::docker("shop-web-1"),
            s.checks["docker:shop-web-1"].clone()
        )
    );
}

#[test]
fn probe_recovery_clears_gave_up() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    s.services.insert(
        "shop/web".into(),
        ServiceState {
            gave_up: true,
            ..Default::default()
        },
    );
    s.checks.insert(
        "probe:api".into(),
        CheckState {
            consecutive_failures: 5,
            ..Default::default()
        },
    );
    let effects = step(&mut s, run(&api_probe(), None), at(base, 0));
    assert!(effects.contains(&Effect::SaveService(web_key(), ServiceState::default())));
}

#[test]
fn store_fault_is_told_in_one_critical_and_recovered_pair() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let effects = step(
        &mut s,
        Observation::StoreWritable {
            since: t(0),
            reason: "disk full".into(),
            late: 2,
        },
        at(base, 30),
    );
    let sent = alerts(&effects);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        (
            sent[0].kind,
            sent[0].component.as_str(),
            sent[0].check.as_str()
        ),
        (AlertKind::Critical, "medic", "store")
    );
    assert_eq!(
        sent[0].error.as_deref(),
        Some("the state store could not be written for 30s: disk full")
    );
    assert!(sent[0]
        .action
        .ends_with("; 2 restarts made meanwhile were recorded late"));
    assert_eq!(sent[0].at, t(0));
    assert_eq!(sent[1].kind, AlertKind::Recovered);
    assert_eq!(sent[1].action, "the state store takes writes again");
    let lost = step(
        &mut s,
        Observation::StoreLost {
            what: "the store was deleted".into(),
            late: 1,
        },
        at(base, 40),
    );
    assert!(alerts(&lost)[0]
        .action
        .ends_with("; 1 restart made meanwhile was recorded late"));
}

#[test]
fn snapshot_keeps_the_watched_containers_and_reads_their_health() {
    let base = tokio::time::Instant::now();
    let mut s = state();
    let mut web = container("web");
    web.health = Health::Unhealthy;
    let mut other = container("x");
    other
        .labels
        .insert(crate::docker::LABEL_PROJECT.into(), "other".into());
    let effects = step(&mut s, Observation::Snapshot(vec![web, other]), at(base, 0));
    assert_eq!(effects[0], Effect::RefreshProbes);
    assert_eq!(
        s.containers.len(),
        1,
        "the other project's container is not kept"
    );
    assert_eq!(restarts(&effects).len(), 1);
}
