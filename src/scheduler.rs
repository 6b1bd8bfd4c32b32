//! Runs every probe on its own schedule, each on its own task.
//!
//! A probe that hangs only delays itself: every run is bounded by the probe's timeout inside
//! [`crate::probe::run`], and the loops are independent. A semaphore bounds how many probes run
//! at once; start times are spread by a jitter derived from the probe's name, so probes declared
//! together do not all fire in the same instant.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::probe::{ProbeContext, ProbeResult, ProbeSpec, Schedule};

/// One finished run of a probe.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The probe as it was configured for this run.
    pub spec: Arc<ProbeSpec>,
    /// What it found; shared with the API's views, which show it until the next run.
    pub result: Arc<ProbeResult>,
    /// How late the run started against its schedule: timer slack plus any wait for a free
    /// slot under the concurrency limit. Zero for runs made on request.
    pub lag: Duration,
}

/// The running probe loops.
pub struct Scheduler {
    ctx: ProbeContext,
    tx: mpsc::Sender<ProbeReport>,
    permits: Arc<Semaphore>,
    /// Per probe name: the configuration it runs with (shared with its loop) and the token that
    /// stops it. Compared field by field, secrets included: a changed password restarts it.
    running: HashMap<String, (Arc<ProbeSpec>, CancellationToken)>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// How many probes may run at the same moment.
pub const DEFAULT_CONCURRENCY: usize = 32;

impl Scheduler {
    /// A scheduler whose results go to `tx`; its loops stop with `shutdown`.
    pub fn new(
        ctx: ProbeContext,
        tx: mpsc::Sender<ProbeReport>,
        concurrency: usize,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Scheduler {
        Scheduler {
            ctx,
            tx,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            running: HashMap::new(),
            tracker,
            shutdown,
        }
    }

    /// Makes the running set match `specs`: starts new probes, stops removed ones, and restarts
    /// those whose configuration changed.
    pub fn set(&mut self, specs: &[ProbeSpec]) {
        let wanted: HashMap<&str, &ProbeSpec> =
            specs.iter().map(|s| (s.name.as_str(), s)).collect();
        self.running.retain(|name, (_, stop)| {
            let keep = wanted.contains_key(name.as_str());
            if !keep {
                info!(probe = %name, "probe removed");
                stop.cancel();
            }
            keep
        });
        for spec in specs {
            if let Some((current, stop)) = self.running.get(&spec.name) {
                if **current == *spec {
                    continue;
                }
                stop.cancel();
                info!(probe = %spec.name, "probe configuration changed");
            } else {
                info!(probe = %spec.name, kind = spec.kind.type_name(), component = %spec.component, "probe scheduled");
            }
            let stop = self.shutdown.child_token();
            let spec = Arc::new(spec.clone());
            self.tracker.spawn(probe_loop(
                spec.clone(),
                self.ctx.clone(),
                self.permits.clone(),
                self.tx.clone(),
                stop.clone(),
            ));
            self.running.insert(spec.name.clone(), (spec, stop));
        }
    }

    /// Names of the probes running.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The first run's offset: up to a tenth of the interval, at most 10 s, fixed per name.
fn jitter(name: &str, interval: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    let span = (interval / 10).min(Duration::from_secs(10)).as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(hasher.finish() % span)
}

/// The wait until the next run.
fn next_wait(schedule: &Schedule, name: &str, first: bool, since_start: Duration) -> Duration {
    match schedule {
        Schedule::Interval(every) if first => jitter(name, *every),
        Schedule::Interval(every) => every.saturating_sub(since_start),
        Schedule::Cron(cron) => {
            let now = Utc::now();
            cron.next_after(&now)
                .and_then(|next| (next - now).to_std().ok())
                .unwrap_or(Duration::from_secs(3600))
        }
    }
}

async fn probe_loop(
    spec: Arc<ProbeSpec>,
    ctx: ProbeContext,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<ProbeReport>,
    stop: CancellationToken,
) {
    let mut first = true;
    let mut last_run = Duration::ZERO;
    loop {
        let wait = next_wait(&spec.schedule, &spec.name, first, last_run);
        first = false;
        let due = tokio::time::Instant::now() + wait;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let started = tokio::time::Instant::now();
        let lag = started.saturating_duration_since(due);
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = crate::probe::run(&spec, &ctx) => result,
        };
        drop(permit);
        last_run = started.elapsed();
        if tx
            .send(ProbeReport {
                spec: spec.clone(),
                result: Arc::new(result),
                lag,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded_and_stable() {
        let every = Duration::from_secs(300);
        let a = jitter("upload", every);
        assert!(a < Duration::from_secs(10));
        assert_eq!(a, jitter("upload", every));
        assert!(jitter("x", Duration::from_secs(5)) < Duration::from_millis(500));
        assert_eq!(jitter("x", Duration::from_millis(5)), Duration::ZERO);
    }

    #[test]
    fn intervals_count_from_the_start_of_the_last_run() {
        let s = Schedule::Interval(Duration::from_secs(10));
        assert_eq!(
            next_wait(&s, "p", false, Duration::from_secs(3)),
            Duration::from_secs(7)
        );
        assert_eq!(
            next_wait(&s, "p", false, Duration::from_secs(30)),
            Duration::ZERO
        );
    }
}
