//! `GET /metrics`: the Prometheus text format, encoded by `prometheus-client`.
//!
//! Counters that accumulate between scrapes (probe runs and durations, alerts) live in
//! [`crate::status::Metrics`]; everything else is derived at scrape time from the components
//! the brain last published, so a series disappears with its probe or container. Restart totals
//! come from the durable policy state, so they survive a restart of medic. A rendering is
//! served again for up to [`CACHE_FOR`], so scrapes in a loop cost one rendering a second.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ApiState;
use crate::status::{Level, ProbeLabels, Status};

/// The content type of the text format this module writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CheckLabels {
    component: String,
    check: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceLabels {
    component: String,
    service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    component: String,
    status: String,
}

/// Renders every metric in the text format.
pub fn render(status: &Status) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("medic");
    let components = status.components();

    let docker = Gauge::<i64>::default();
    docker.set(i64::from(status.docker().reachable));
    registry.register(
        "docker_reachable",
        "1 while the Docker engine answers",
        docker,
    );
    let up = Gauge::<i64>::default();
    up.set(i64::from(status.problem().is_none()));
    registry.register(
        "up",
        "1 while medic's own loop runs and its store is writable (as /health)",
        up,
    );

    let probe_success = Family::<ProbeLabels, Gauge>::default();
    let probe_latency = Family::<ProbeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let consecutive = Family::<CheckLabels, Gauge>::default();
    let component_status = Family::<StatusLabels, Gauge>::default();
    let silenced = Family::<ComponentLabels, Gauge>::default();
    let restarts = Family::<ServiceLabels, Counter>::default();
    let restarts_24h = Family::<ServiceLabels, Gauge>::default();
    let budget_left = Family::<ServiceLabels, Gauge>::default();
    let now = chrono::Utc::now();
    for (name, view) in components.iter() {
        for level in [
            Level::Healthy,
            Level::Unknown,
            Level::Degraded,
            Level::Unhealthy,
        ] {
            component_status
                .get_or_create(&StatusLabels {
                    component: name.clone(),
                    status: level.as_str().into(),
                })
                .set(i64::from(view.status == level));
        }
        silenced
            .get_or_create(&ComponentLabels {
                component: name.clone(),
            })
            .set(i64::from(view.silenced_until.is_some_and(|u| u > now)));
        for (check, state) in &view.checks {
            consecutive
                .get_or_create(&CheckLabels {
                    component: name.clone(),
                    check: check.clone(),
                })
                .set(i64::from(state.consecutive_failures));
        }
        for (probe, result) in &view.probes {
            let labels = ProbeLabels {
                probe: probe.clone(),
                component: name.clone(),
            };
            probe_success
                .get_or_create(&labels)
                .set(i64::from(result.ok));
            probe_latency
                .get_or_create(&labels)
                .set(result.latency.as_secs_f64());
        }
        if let Some(r) = &view.restarts {
            let labels = ServiceLabels {
                component: name.clone(),
                service: r.service.clone(),
            };
            restarts.get_or_create(&labels).inc_by(r.total);
            restarts_24h
                .get_or_create(&labels)
                .set(i64::from(r.count_24h));
            budget_left
                .get_or_create(&labels)
                .set(i64::from(r.budget_left));
        }
    }
    registry.register(
        "component_status",
        "1 for the component's current status (healthy, unknown, degraded, unhealthy)",
        component_status,
    );
    registry.register(
        "component_silenced",
        "1 while a person has silenced the component",
        silenced,
    );
    registry.register(
        "check_consecutive_failures",
        "Consecutive failures of a check (docker:<container> or probe:<name>)",
        consecutive,
    );
    registry.register(
        "probe_success",
        "1 when the probe's last run passed",
        probe_success,
    );
    registry.register(
        "probe_last_duration_seconds",
        "Duration of the probe's last run",
        probe_latency,
    );
    registry.register(
        "probe_duration_seconds",
        "Duration of probe runs since medic started",
        status.metrics.probe_duration.clone(),
    );
    registry.register(
        "probe_schedule_lag_seconds",
        "How late scheduled probe runs started (timer slack and waiting for a free run slot)",
        status.metrics.schedule_lag.clone(),
    );
    registry.register(
        "probe_runs",
        "Probe runs since medic started, by result (ok, warning, critical)",
        status.metrics.probe_runs.clone(),
    );
    registry.register(
        "restarts",
        "Restarts medic made of the service, ever (kept across restarts of medic)",
        restarts,
    );
    registry.register(
        "restarts_24h",
        "Restarts medic made of the service in the last 24 hours",
        restarts_24h,
    );
    registry.register(
        "restart_budget_left",
        "Restarts left in the service's rolling budget window",
        budget_left,
    );
    let sent = Counter::<u64>::default();
    sent.inc_by(status.metrics.alerts_sent.load(Ordering::Relaxed));
    registry.register(
        "alerts_sent",
        "Alert emails and webhook rounds handed to the outbox since medic started",
        sent,
    );
    let held = Family::<ReasonLabels, Counter>::default();
    for (reason, count) in [
        ("rate_limit", &status.metrics.alerts_held_rate_limit),
        ("silenced", &status.metrics.alerts_held_silenced),
    ] {
        held.get_or_create(&ReasonLabels {
            reason: reason.into(),
        })
        .inc_by(count.load(Ordering::Relaxed));
    }
    registry.register(
        "alerts_held",
        "Alerts held back since medic started: by the rate limit (summarised in the next email) or because the component is silenced",
        held,
    );
    let outbox = Gauge::<i64>::default();
    outbox.set(status.email().outbox_depth.unwrap_or(0) as i64);
    registry.register("outbox_depth", "Emails waiting in the outbox", outbox);

    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// How long a rendering of `/metrics` is served again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// The last rendering, the [`Status::generation`] it showed and when it was made. With 1,000 components `/metrics` is about 4 MB
/// of text (benches/http_views.rs); Prometheus scrapes every few seconds at most, so two
/// scrapers or a client asking in a loop get the same bytes within a second instead of each
/// costing a full rendering. The lock is held while rendering, so concurrent requests wait for
/// one rendering instead of making their own. A change of what the views show (a silence, a
/// new result) makes it stale at once; only counters between two changes can be a second old.
#[derive(Default)]
pub struct Cache(tokio::sync::Mutex<Option<(u64, Instant, Bytes)>>);

/// `GET /metrics`.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let mut cached = state.metrics_cache.0.lock().await;
    let generation = state.status.generation();
    let fresh = cached
        .as_ref()
        .filter(|(g, at, _)| *g == generation && at.elapsed() < CACHE_FOR)
        .map(|(_, _, body)| body.clone());
    let body = match fresh {
        Some(body) => body,
        None => match render(&state.status) {
            Ok(text) => {
                let body = Bytes::from(text);
                *cached = Some((generation, Instant::now(), body.clone()));
                body
            }
            Err(_) => {
                return super::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot encode the metrics",
                )
            }
        },
    };
    drop(cached);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}
