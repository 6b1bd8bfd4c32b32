//! HTTP views benchmark (not a test): how long `/metrics`, `/health/detailed` and the status
//! page take to build with many components, and how big they are.
//!
//! ```text
//! cargo bench --bench http_views                        # 1,000 components
//! cargo bench --bench http_views -- --components 100    # another count
//! ```
//!
//! Every component is a compose service with one container and two probes (one passing, one
//! failing with an error, as in bench/http.sh), a restart record and a check tally; each probe
//! has run 20 times so its histogram and counters exist. The page's history comes from a real
//! store in a temporary folder holding 24 hours of history: every failing probe recorded every
//! 5 minutes (the supervisor writes a `probe_failed` row for each failed run) and a restart an
//! hour for a tenth of the components. Each view is built the way its handler builds it, on one
//! thread, and timed over repeated runs after a warm-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use medic::api::{detailed, metrics, page};
use medic::docker::{Health, RunState};
use medic::policy::CheckState;
use medic::probe::{ProbeResult, Severity, StepResult};
use medic::status::{ComponentView, ContainerView, LastCheck, Level, RestartView, Status};
use medic::store::Store;

fn probe(component: &str, name: &str, ok: bool) -> Arc<ProbeResult> {
    let error = (!ok).then(|| {
        format!("step `connect` failed: cannot connect to 127.0.0.1:1 ({component}): connection refused")
    });
    Arc::new(ProbeResult {
        name: name.into(),
        kind: "tcp",
        component: component.into(),
        ok,
        severity: if ok { Severity::Ok } else { Severity::Critical },
        latency: Duration::from_millis(3),
        error: error.clone(),
        steps: vec![StepResult {
            name: "connect".into(),
            ok,
            latency: Duration::from_millis(3),
            detail: error,
        }],
        details: serde_json::Map::new(),
        checked_at: Utc::now(),
    })
}

fn component(i: usize, status: &Status) -> ComponentView {
    let name = format!("service-{i:04}");
    // Every other component has a failing probe.
    let healthy = i.is_multiple_of(2);
    let now = Utc::now();
    let mut view = ComponentView {
        name: name.clone(),
        status: if healthy {
            Level::Healthy
        } else {
            Level::Unhealthy
        },
        consecutive_failures: if healthy { 0 } else { 3 },
        last_check: Some(LastCheck {
            check: format!("probe:{name}-down"),
            at: now,
            ok: healthy,
            latency_ms: Some(3),
            error: (!healthy).then(|| "step `connect` failed: connection refused".into()),
        }),
        checks: Default::default(),
        probes: Default::default(),
        containers: vec![ContainerView {
            name: format!("shop-{name}-1"),
            state: RunState::Running,
            health: Health::Healthy,
        }],
        restarts: Some(RestartView {
            service: format!("shop/{name}"),
            last: Some(now),
            count_24h: 1,
            total: 4,
            cooldown_until: None,
            budget_left: 2,
            gave_up: false,
        }),
        silenced_until: None,
    };
    for (probe_name, ok) in [
        (format!("{name}-up"), true),
        (format!("{name}-down"), healthy),
    ] {
        let result = probe(&name, &probe_name, ok);
        for _ in 0..20 {
            status
                .metrics
                .probe_ran(&result, Duration::from_micros(300));
        }
        view.checks.insert(
            format!("probe:{probe_name}"),
            CheckState {
                consecutive_failures: if ok { 0 } else { 3 },
                failing_since: (!ok).then_some(now),
                last_error: result.error.clone(),
                last_checked: Some(now),
                last_ok: ok.then_some(now),
            },
        );
        view.probes.insert(probe_name, result);
    }
    view
}

/// Fills the store with 24 hours of history for `components` components.
fn fill_store(store_dir: &std::path::Path, components: usize) -> usize {
    let db = store_dir.join("medic.db");
    let conn = rusqlite::Connection::open(&db).expect("open the bench store");
    let now = Utc::now();
    let mut rows = 0;
    conn.execute_batch("BEGIN").unwrap();
    {
        let mut history = conn
            .prepare("INSERT INTO history (at, component, kind, message) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        let mut restarts = conn
            .prepare(
                "INSERT INTO restarts (at, service, container, reason, error) \
                 VALUES (?1, ?2, ?3, 'probe failed', NULL)",
            )
            .unwrap();
        for minute in (0..24 * 60).step_by(5) {
            let at = (now - chrono::Duration::minutes(minute)).to_rfc3339();
            for i in (1..components).step_by(2) {
                let name = format!("service-{i:04}");
                history
                    .execute(rusqlite::params![
                        at,
                        name,
                        "probe_failed",
                        "probe down: step `connect` failed: connection refused"
                    ])
                    .unwrap();
                rows += 1;
                if minute % 60 == 0 && i % 10 == 1 {
                    restarts
                        .execute(rusqlite::params![
                            at,
                            format!("shop/{name}"),
                            format!("shop-{name}-1")
                        ])
                        .unwrap();
                    rows += 1;
                }
            }
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    rows
}

struct Timing {
    label: &'static str,
    runs: Vec<f64>,
    bytes: usize,
}

fn time(label: &'static str, runs: usize, mut f: impl FnMut() -> usize) -> Timing {
    let bytes = f();
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        std::hint::black_box(f());
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Timing {
        label,
        runs: out,
        bytes,
    }
}

fn main() {
    let mut components = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--components" {
            components = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--components N");
        }
    }
    let status = Status::new(Duration::from_secs(30));
    status.publish(
        (0..components)
            .map(|i| (format!("service-{i:04}"), component(i, &status)))
            .collect::<BTreeMap<_, _>>(),
    );

    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path()).expect("open the store");
    let filled = Instant::now();
    let rows = fill_store(dir.path(), components);
    eprintln!(
        "store: {rows} history and restart rows over 24 h, written in {:.1}s",
        filled.elapsed().as_secs_f64()
    );

    let since = Utc::now() - chrono::Duration::hours(24);
    // The page reads the store at most once per page::STRIPS_FOR; its renders reuse this.
    let history = page::history_since(&store, since).expect("history");
    let timings = [
        time("/metrics (render)", 50, || {
            metrics::render(&status).expect("metrics").len()
        }),
        time("/health/detailed (serialize)", 50, || {
            serde_json::to_vec(&detailed::snapshot(&status))
                .expect("json")
                .len()
        }),
        time("/ (store read, 24 h)", 10, || {
            page::history_since(&store, since).expect("history").len()
        }),
        time("/ (render, 100 cards)", 50, || {
            page::render(&detailed::snapshot(&status), &history, Utc::now()).len()
        }),
        time("/?all (render, every card)", 20, || {
            page::render_cards(&detailed::snapshot(&status), &history, Utc::now(), None).len()
        }),
    ];
    println!("{components} components, 2 probes each (half failing); {rows} store rows in 24 h");
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>11}",
        "view", "p50 ms", "p99 ms", "max ms", "bytes"
    );
    for t in &timings {
        let p = |q: f64| t.runs[((t.runs.len() - 1) as f64 * q).round() as usize];
        println!(
            "{:<32} {:>9.2} {:>9.2} {:>9.2} {:>11}",
            t.label,
            p(0.5),
            p(0.99),
            t.runs[t.runs.len() - 1],
            t.bytes
        );
    }
}
