//! Synthetic probes: checks that prove a service really works, not just that its process runs.
//!
//! A probe is a [`ProbeSpec`] (parsed once from the YAML file or container labels, see
//! [`spec`]) and is run by [`run`], which returns a plain-data [`ProbeResult`]: ok or not, how
//! long it took, which step failed and why, and details for the report. [`run`] never hangs and
//! never panics: every run is bounded by the probe's `timeout`, and a run that hits it fails
//! naming the step that hung.
//!
//! Each type lives in its own file under [`kinds`], listed once in its registry; what every
//! probe shares (schedule, timeout, restart, threshold, component) is in [`common`].
//!
//! Secrets never leave this module in clear: settings hold them in [`Secret`]/[`SecretUri`], and
//! every string of a result is scrubbed of the probe's secret values before it is returned.

mod common;
mod error;
pub mod kinds;
mod parse;
mod raw;
mod reply;
mod resolve;
pub mod secret;
mod size;
pub mod spec;
pub mod vars;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;

pub(crate) use reply::{describe, read_prefix, ERROR_BODY};
pub use secret::{mask_uri, Secret, SecretUri};
pub use spec::{
    parse_labels, parse_labels_each, parse_yaml, AiProvider, AiSettings, ConfigOrigin,
    CronSchedule, DiskSettings, ExecSettings, ExecTarget, GitSettings, Header, HttpSettings,
    MemorySettings, MongodbSettings, ProbeConfigError, ProbeKind, ProbeSpec, RabbitmqSettings,
    Schedule, TcpSettings, UploadSettings, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, LABEL_PREFIX,
};

/// How bad a result is. Probes that restart are `Ok` or `Critical`; informational probes
/// (`disk`, `memory`, `git`) also use `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing to report.
    Ok,
    /// Worth telling someone; nothing is broken yet.
    Warning,
    /// Broken.
    Critical,
}

/// One step of a probe run (connect, insert, find, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// What the step did.
    pub name: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Duration,
    /// What it found, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The outcome of one probe run: plain data for the policy, the store, the API and reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// Its type (`http`, `mongodb`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The component it belongs to.
    pub component: String,
    /// True when nothing needs attention: the probe passed (and, for informational probes, no
    /// threshold was crossed).
    pub ok: bool,
    /// `critical` when it failed; `warning` for an informational probe's warning threshold.
    pub severity: Severity,
    /// Wall time of the whole run.
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Duration,
    /// Why it is not ok, naming the failed step; `None` when ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each step in order, with its latency.
    pub steps: Vec<StepResult>,
    /// Type-specific findings (status code, queue depths, branch, free bytes, …).
    pub details: serde_json::Map<String, serde_json::Value>,
    /// When the run started.
    pub checked_at: chrono::DateTime<chrono::Utc>,
}

impl ProbeResult {
    /// The first step that failed, if any.
    pub fn failed_step(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| !s.ok)
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// What probes share: clients that are costly to build and the Docker connection.
#[derive(Clone)]
pub struct ProbeContext {
    /// One HTTP client for every `http`, `ai` and `upload` probe (connection pools, TLS roots).
    pub http: reqwest::Client,
    /// The Docker engine, needed by `exec` probes only.
    pub docker: Option<bollard::Docker>,
    /// The compose project medic watches; `exec` probes that name a service look there.
    pub project: Option<String>,
    /// Which containers are medic's: `exec` probes run only in those, never in medic's own
    /// container. Without a scope no `exec` probe runs.
    pub scope: Option<crate::docker::scope::Scope>,
}

impl fmt::Debug for ProbeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeContext")
            .field("docker", &self.docker.is_some())
            .field("project", &self.project)
            .field("scope", &self.scope)
            .finish()
    }
}

impl Default for ProbeContext {
    fn default() -> Self {
        ProbeContext::new()
    }
}

impl ProbeContext {
    /// A context with an HTTP client and no Docker client.
    pub fn new() -> ProbeContext {
        let http = reqwest::Client::builder()
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            // Only a TLS backend that cannot initialise fails here; rustls with built-in roots
            // always does.
            .expect("the HTTP client builds");
        ProbeContext {
            http,
            docker: None,
            project: None,
            scope: None,
        }
    }

    /// Adds a Docker client (for `exec` probes).
    pub fn with_docker(mut self, docker: bollard::Docker) -> ProbeContext {
        self.docker = Some(docker);
        self
    }

    /// Sets the compose project `exec` probes look for services in, and the scope to that
    /// project (plus `medic.enable=true` containers), with medic's own container unknown: for
    /// callers outside a container. Inside one, use [`ProbeContext::with_scope`].
    pub fn with_project(mut self, project: impl Into<String>) -> ProbeContext {
        let project = project.into();
        self.project = Some(project.clone());
        self.scope = Some(crate::docker::scope::Scope {
            project: Some(project),
            own_id: None,
        });
        self
    }

    /// Sets the scope `exec` probes are confined to (and its project, where services are
    /// looked for), as discovered by [`crate::docker::scope::discover`].
    pub fn with_scope(mut self, scope: crate::docker::scope::Scope) -> ProbeContext {
        self.project = scope.project.clone();
        self.scope = Some(scope);
        self
    }

    /// Connects to `DOCKER_HOST` (unix://, tcp://, http:// or a socket path) or the local socket
    /// and negotiates the API version, so older and newer engines both work.
    pub async fn connect_docker(docker_host: Option<&str>) -> Result<bollard::Docker, String> {
        let docker = match docker_host {
            Some(host) if host.starts_with('/') => {
                bollard::Docker::connect_with_host(&format!("unix://{host}"))
            }
            Some(host) => bollard::Docker::connect_with_host(host),
            None => bollard::Docker::connect_with_socket_defaults(),
        }
        .map_err(|e| format!("cannot use the Docker endpoint: {e}"))?;
        docker
            .negotiate_version()
            .await
            .map_err(|e| format!("the Docker engine does not answer: {e}"))
    }
}

/// Why a probe failed, as its run function reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The step that failed, if the failure belongs to one.
    step: Option<String>,
    /// What went wrong.
    message: String,
}

impl Failure {
    /// A failure outside any step (missing Docker client, …).
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure {
            step: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "step `{step}` failed: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Records the steps of one run as they happen, so a run cut short by its timeout still says
/// which step was running.
pub(crate) struct Recorder {
    /// The probe's name (the mongodb probe tags its documents with it).
    probe: String,
    /// When the whole run must be over.
    deadline: Instant,
    /// Time kept back from each step for cleanup (deleting what the probe made).
    reserve: Duration,
    /// What happened so far.
    state: Mutex<RecorderState>,
}

/// The mutable part of a [`Recorder`].
#[derive(Default)]
struct RecorderState {
    /// Finished steps.
    steps: Vec<StepResult>,
    /// The step running now and when it started.
    current: Option<(String, Instant)>,
    /// Findings.
    details: serde_json::Map<String, serde_json::Value>,
    /// A warning or critical finding of an informational probe that otherwise ran fine.
    finding: Option<(Severity, String)>,
}

impl Recorder {
    fn new(probe: &str, timeout: Duration) -> Recorder {
        Recorder {
            probe: probe.to_string(),
            deadline: Instant::now() + timeout,
            // A quarter of the timeout, at most 5s: enough for one DELETE.
            reserve: (timeout / 4).min(Duration::from_secs(5)),
            state: Mutex::new(RecorderState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderState> {
        // A panic inside a probe is caught by `run`; the state it left is still worth reading.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The probe's name.
    pub(crate) fn probe(&self) -> &str {
        &self.probe
    }

    /// Time left for ordinary steps (the cleanup reserve excluded).
    pub(crate) fn budget(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.reserve)
    }

    /// Time left before the hard deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs one step within the budget and records it.
    pub(crate) async fn step<T, E: fmt::Display>(
        &self,
        name: &str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Failure> {
        let limit = self.budget();
        self.timed(name, limit, work).await
    }

    /// Runs a cleanup step: it may use the reserve, so it still runs after a step timed out.
    pub(crate) async fn cleanup<T, E: fmt::Display>(
        &self,
        name: &str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Failure> {
        let limit = self.remaining();
        self.timed(name, limit, work).await
    }

    async fn timed<T, E: fmt::Display>(
        &self,
        name: &str,
        limit: Duration,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Failure> {
        let started = Instant::now();
        self.lock().current = Some((name.to_string(), started));
        let outcome = tokio::time::timeout(limit, work).await;
        let latency = started.elapsed();
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}", human(limit))),
        };
        let mut state = self.lock();
        state.current = None;
        state.steps.push(StepResult {
            name: name.to_string(),
            ok: result.is_ok(),
            latency,
            detail: result.as_ref().err().cloned(),
        });
        result.map_err(|message| Failure {
            step: Some(name.to_string()),
            message,
        })
    }

    /// Sets the detail of the last finished step (what a successful step found).
    pub(crate) fn note(&self, detail: impl Into<String>) {
        if let Some(step) = self.lock().steps.last_mut() {
            step.detail = Some(detail.into());
        }
    }

    /// Records a finding for the result's `details`.
    pub(crate) fn detail(&self, key: &str, value: impl Into<serde_json::Value>) {
        self.lock().details.insert(key.to_string(), value.into());
    }

    /// Reports a threshold crossed by an informational probe that otherwise ran.
    pub(crate) fn finding(&self, severity: Severity, message: impl Into<String>) {
        let mut state = self.lock();
        let worse = state.finding.as_ref().is_none_or(|(s, _)| severity > *s);
        if worse {
            state.finding = Some((severity, message.into()));
        }
    }

    /// Closes the step that was running when the timeout hit; returns its name.
    fn abandon(&self, reason: &str) -> Option<String> {
        let mut state = self.lock();
        let (name, started) = state.current.take()?;
        state.steps.push(StepResult {
            name: name.clone(),
            ok: false,
            latency: started.elapsed(),
            detail: Some(reason.to_string()),
        });
        Some(name)
    }
}

/// Formats a duration for messages: `2s`, `1.5s`, `250ms`.
pub(crate) fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        let secs = d.as_secs_f64();
        if secs.fract() < 0.05 {
            format!("{secs:.0}s")
        } else {
            format!("{secs:.1}s")
        }
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Runs one probe once, within its timeout. Never hangs, never panics; a failure is a result.
pub async fn run(spec: &ProbeSpec, ctx: &ProbeContext) -> ProbeResult {
    let checked_at = chrono::Utc::now();
    let started = Instant::now();
    let recorder = Recorder::new(&spec.name, spec.timeout);
    let span = tracing::info_span!(
        "probe",
        probe = %spec.name,
        component = %spec.component,
        kind = spec.kind.type_name()
    );
    // Boxed: the largest probe futures (mongodb, amqp) are tens of KiB; inline, every probe's
    // idle loop task would carry that much between runs.
    let work = AssertUnwindSafe(Box::pin(spec.kind.run(ctx, &recorder))).catch_unwind();
    let outcome = tokio::time::timeout(spec.timeout, work)
        .instrument(span.clone())
        .await;
    let latency = started.elapsed();

    let (severity, error) = match outcome {
        Ok(Ok(Ok(()))) => match recorder.lock().finding.take() {
            Some((severity, message)) => (severity, Some(message)),
            None => (Severity::Ok, None),
        },
        Ok(Ok(Err(failure))) => (Severity::Critical, Some(failure.to_string())),
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let reason = format!("the probe crashed: {what}");
            recorder.abandon(&reason);
            (Severity::Critical, Some(reason))
        }
        Err(_) => {
            let reason = format!("timed out after {}", human(spec.timeout));
            let message = match recorder.abandon(&reason) {
                Some(step) => format!("{reason} during step `{step}`"),
                None => reason,
            };
            (Severity::Critical, Some(message))
        }
    };

    let state = std::mem::take(&mut *recorder.lock());
    let mut result = ProbeResult {
        name: spec.name.clone(),
        kind: spec.kind.type_name(),
        component: spec.component.clone(),
        ok: severity == Severity::Ok,
        severity,
        latency,
        error,
        steps: state.steps,
        details: state.details,
        checked_at,
    };
    // The settings' constructors registered their secrets with crate::redact; a password
    // written in an http or upload URL is held in a plain URL, and is registered by its
    // kind's `secret_values`.
    scrub_result(&mut result, &spec.kind.secret_values());
    span.in_scope(|| match &result.error {
        None => tracing::debug!(latency_ms = latency.as_millis() as u64, "probe passed"),
        Some(error) => tracing::info!(
            latency_ms = latency.as_millis() as u64,
            severity = ?result.severity,
            error = %error,
            "probe not ok"
        ),
    });
    result
}

/// Runs several probes at once (for `medic probe` and `medic check`); results in input order.
pub async fn run_all(specs: &[ProbeSpec], ctx: &ProbeContext) -> Vec<ProbeResult> {
    futures_util::future::join_all(specs.iter().map(|spec| run(spec, ctx))).await
}

fn scrub_result(result: &mut ProbeResult, secrets: &[String]) {
    if let Some(e) = result.error.as_mut() {
        *e = scrub_text(e, secrets);
    }
    for step in &mut result.steps {
        if let Some(d) = step.detail.as_mut() {
            *d = scrub_text(d, secrets);
        }
    }
    for value in result.details.values_mut() {
        scrub_value(value, secrets);
    }
}

/// [`secret::scrub`], and also what is left of a secret that a snippet of a reply cut short:
/// a text that ends in `…` right after the first part of a secret (4 characters or more) would
/// otherwise show that part, and a server that quotes the key it got (many do, in their error
/// messages) would leak most of a long key.
fn scrub_text(text: &str, secrets: &[String]) -> String {
    // The spec's own secrets and every other secret medic knows (a reply may quote anything).
    let text = secret::scrub(text, secrets);
    if !text.contains('…') {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find('…') {
        let before = &rest[..at];
        let cut = secrets
            .iter()
            .flat_map(|secret| {
                (4..secret.len())
                    .filter(|&k| secret.is_char_boundary(k))
                    .filter(|&k| before.ends_with(&secret[..k]))
            })
            .max()
            .unwrap_or(0);
        out.push_str(&before[..before.len() - cut]);
        if cut > 0 {
            out.push_str(secret::MASK);
        }
        out.push('…');
        rest = &rest[at + '…'.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// [`scrub_text`] on every string inside a JSON value.
fn scrub_value(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(s) => *s = scrub_text(s, secrets),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, secrets)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| scrub_value(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hung_step_is_named_and_cleanup_still_runs() {
        let rec = Recorder::new("t", Duration::from_secs(8));
        let hung = rec
            .step("find", std::future::pending::<Result<(), String>>())
            .await
            .unwrap_err();
        assert_eq!(hung.step.as_deref(), Some("find"));
        assert!(hung.message.contains("no answer within 6s"), "{hung}");
        rec.cleanup("delete", async { Ok::<_, String>(()) })
            .await
            .unwrap();
        let state = rec.lock();
        assert_eq!(state.steps.len(), 2);
        assert!(!state.steps[0].ok && state.steps[1].ok);
    }

    #[tokio::test(start_paused = true)]
    async fn the_outer_timeout_names_the_running_step() {
        let rec = Recorder::new("t", Duration::from_secs(4));
        let work = rec.cleanup("hang", std::future::pending::<Result<(), String>>());
        assert!(tokio::time::timeout(Duration::from_secs(1), work)
            .await
            .is_err());
        assert_eq!(rec.abandon("timed out").as_deref(), Some("hang"));
        assert_eq!(rec.lock().steps[0].name, "hang");
    }

    #[test]
    fn a_run_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let spec = spec::parse_yaml(
            "probes:\n  p:\n    type: tcp\n    host: h\n    port: 1\n",
            "t.yaml",
            &|_| None,
        )
        .unwrap()
        .remove(0);
        let ctx = ProbeContext::new();
        assert_send(&run(&spec, &ctx));
    }

    #[test]
    fn a_secret_cut_short_by_a_snippet_is_masked_too() {
        let secrets = vec![
            "Zk93hQ0pLmN4".to_string(),
            "Bearer Zk93hQ0pLmN4".to_string(),
        ];
        assert_eq!(
            scrub_text("got Zk93hQ0pLmN4 and Zk93hQ0p…", &secrets),
            "got *** and ***…"
        );
        assert_eq!(scrub_text("Bearer Zk9…", &secrets), "***…");
        // Fewer than 4 characters of it, or no cut: left alone.
        assert_eq!(scrub_text("a Zk9…", &secrets), "a Zk9…");
        assert_eq!(scrub_text("Zk93hQ0p", &secrets), "Zk93hQ0p");
        let mut json = serde_json::json!({"reply": ["x Zk93h…"]});
        scrub_value(&mut json, &secrets);
        assert_eq!(json, serde_json::json!({"reply": ["x ***…"]}));
    }

    #[test]
    fn results_serialize_with_millis_and_lowercase_severity() {
        let r = ProbeResult {
            name: "n".into(),
            kind: "tcp",
            component: "c".into(),
            ok: false,
            severity: Severity::Warning,
            latency: Duration::from_millis(1500),
            error: Some("x".into()),
            steps: vec![],
            details: Default::default(),
            checked_at: chrono::Utc::now(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["latency_ms"], 1500);
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["type"], "tcp");
    }
}
