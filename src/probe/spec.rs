//! What a probe is: its typed settings, parsed once from the YAML file (`MEDIC_CONFIG`) or from
//! container labels (`medic.probe.<name>.<key>=<value>`).
//!
//! Both sources go through one path: the text is read into a flat raw record whose every key is
//! known (`deny_unknown_fields`, so a typo fails with the file, line and column), `${VAR}`
//! references are substituted ([`super::vars`]), and the record is resolved into a
//! [`ProbeSpec`] whose [`ProbeKind`] carries the settings of its type. Keys that exist but do not
//! belong to the probe's type are rejected too, naming the key and the type.
//!
//! Every error is a [`ProbeConfigError`] that names where the value came from: `file:line:column`
//! for YAML, the container and the full label for labels, and always the probe and the key.
//!
//! The two sources are not trusted alike: the file expands any `${VAR}` of medic's environment,
//! labels only those the operator allowed ([`LabelVariables`], `MEDIC_LABEL_VARIABLES`), since
//! whoever can deploy a labelled service must not be able to read medic's secrets.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::secret::{Secret, SecretUri};
use super::vars::{self, LabelVariables, Substituted};

/// How often a probe runs when neither `interval` nor `cron` is set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How long one run may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Label prefix of probe labels: `medic.probe.<name>.<key>`.
pub const LABEL_PREFIX: &str = "medic.probe.";
/// The shortest probe `interval` and `timeout`: shorter ones spin a core and the engine (`1ns`
/// was accepted once) without telling anything a one-second probe would not.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One configured probe, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// Unique name (the key under `probes:` or the `<name>` of the labels).
    pub name: String,
    /// The probe type and its settings.
    pub kind: ProbeKind,
    /// When it runs: a fixed interval (default 5m) or a cron expression.
    pub schedule: Schedule,
    /// How long one run may take before it counts as failed (default 30s).
    pub timeout: Duration,
    /// Compose services to restart after `failure_threshold` consecutive failures; empty means
    /// alert only. Always empty for informational probes.
    pub restart: Vec<String>,
    /// Consecutive failures before acting; `None` uses the global `MEDIC_FAILURE_THRESHOLD`.
    pub failure_threshold: Option<u32>,
    /// The component (compose service) whose status this probe feeds.
    pub component: String,
    /// Where it was declared, for messages: the file path, or `container <name>`.
    pub declared_in: String,
    /// The compose project its services (`restart`, an `exec` probe's `service`) belong to:
    /// the labelled container's project for label probes; `None` for the file, whose services
    /// are those of the watched project.
    pub project: Option<String>,
}

impl ProbeSpec {
    /// True for `git`, `disk` and `memory`: they inform and alert but never restart.
    pub fn is_informational(&self) -> bool {
        self.kind.is_informational()
    }
}

/// When a probe runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every so often, from medic's start.
    Interval(Duration),
    /// At the times of a cron expression (boxed: the parsed schedule is large).
    Cron(Box<CronSchedule>),
}

impl fmt::Display for Schedule {
    /// `every 5m` or `cron 0 3 * * *`, for tables and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => write!(f, "cron {}", c.expression()),
        }
    }
}

/// A parsed cron expression. Five fields (`m h dom mon dow`) as users write them, or six/seven
/// with seconds (and years) as the `cron` crate reads them.
#[derive(Clone)]
pub struct CronSchedule {
    /// The expression as written, for messages.
    expression: String,
    /// The parsed schedule.
    schedule: cron::Schedule,
}

impl CronSchedule {
    /// Parses an expression; the error says what is wrong with it.
    pub fn parse(expression: &str) -> Result<CronSchedule, String> {
        let trimmed = expression.trim();
        let fields = trimmed.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {trimmed}"),
            6 | 7 => trimmed.to_string(),
            n => {
                return Err(format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), \
                     this one has {n}"
                ))
            }
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| e.to_string())?;
        Ok(CronSchedule {
            expression: trimmed.to_string(),
            schedule,
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first firing time strictly after `after`, in `after`'s time zone.
    pub fn next_after<Tz: chrono::TimeZone>(
        &self,
        after: &chrono::DateTime<Tz>,
    ) -> Option<chrono::DateTime<Tz>> {
        self.schedule.after(after).next()
    }
}

/// Two schedules are the same when their expressions are: the schedule is parsed from it.
impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.expression)
    }
}

/// The probe types of SPEC "Probes", each with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    /// An HTTP request with expectations.
    Http(HttpSettings),
    /// A TCP connection opens.
    Tcp(TcpSettings),
    /// Insert, read back and delete a document.
    Mongodb(MongodbSettings),
    /// Queues exist, are drained and consumed.
    Rabbitmq(RabbitmqSettings),
    /// A real model call answers OK.
    Ai(AiSettings),
    /// The app's whole upload pipeline.
    Upload(UploadSettings),
    /// A command inside a container exits 0.
    Exec(ExecSettings),
    /// Informational: a mounted repository's branch, commit, changes and remote.
    Git(GitSettings),
    /// Informational: free space of a path.
    Disk(DiskSettings),
    /// Informational: available memory.
    Memory(MemorySettings),
}

impl ProbeKind {
    /// The `type` value of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Mongodb(_) => "mongodb",
            ProbeKind::Rabbitmq(_) => "rabbitmq",
            ProbeKind::Ai(_) => "ai",
            ProbeKind::Upload(_) => "upload",
            ProbeKind::Exec(_) => "exec",
            ProbeKind::Git(_) => "git",
            ProbeKind::Disk(_) => "disk",
            ProbeKind::Memory(_) => "memory",
        }
    }

    /// True for types that inform and never restart.
    pub fn is_informational(&self) -> bool {
        matches!(
            self,
            ProbeKind::Git(_) | ProbeKind::Disk(_) | ProbeKind::Memory(_)
        )
    }

    /// A short human description of the target, secrets masked (for tables and logs).
    pub fn target(&self) -> String {
        match self {
            ProbeKind::Http(s) => {
                format!("{} {}", s.method, super::secret::mask_url(s.url.as_str()))
            }
            ProbeKind::Tcp(s) => format!("{}:{}", s.host, s.port),
            ProbeKind::Mongodb(s) => format!("{} {}.{}", s.uri, s.database, s.collection),
            ProbeKind::Rabbitmq(s) => format!("{} queues {}", s.uri, s.queues.join(",")),
            ProbeKind::Ai(s) => format!("{} {} at {}", s.provider, s.model, s.base_url),
            ProbeKind::Upload(s) => super::secret::mask_url(s.url.as_str()),
            ProbeKind::Exec(s) => format!("{} `{}`", s.target, s.command.join(" ")),
            ProbeKind::Git(s) => s.path.display().to_string(),
            ProbeKind::Disk(s) => s.path.display().to_string(),
            ProbeKind::Memory(s) => s.meminfo.display().to_string(),
        }
    }

    /// Every secret value these settings hold, as it might appear in an error text, so results
    /// can be scrubbed of them.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        let headers = |out: &mut Vec<String>, headers: &[Header]| {
            for h in headers.iter().filter(|h| h.sensitive) {
                out.push(h.value.expose().to_string());
                if let Some(token) = h.value.expose().split_whitespace().nth(1) {
                    out.push(token.to_string());
                }
            }
        };
        match self {
            ProbeKind::Http(s) => {
                headers(&mut out, &s.headers);
                out.extend(SecretUri::new(s.url.as_str()).password_forms());
            }
            ProbeKind::Upload(s) => {
                headers(&mut out, &s.headers);
                out.extend(SecretUri::new(s.url.as_str()).password_forms());
            }
            ProbeKind::Mongodb(s) => out.extend(s.uri.password_forms()),
            ProbeKind::Rabbitmq(s) => out.extend(s.uri.password_forms()),
            ProbeKind::Ai(s) => out.extend(s.api_key.iter().map(|k| k.expose().to_string())),
            _ => {}
        }
        out
    }
}

/// An HTTP header to send. Its value is kept as a [`Secret`] because headers are where tokens go.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value (masked when printed).
    pub value: Secret,
    /// True when the value is a credential (an `Authorization`-like name, or a value taken from
    /// the environment): results are scrubbed of it.
    pub sensitive: bool,
}

/// Settings of an `http` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Request method (default GET).
    pub method: reqwest::Method,
    /// Absolute http(s) URL.
    pub url: reqwest::Url,
    /// Extra request headers.
    pub headers: Vec<Header>,
    /// Request body, if any.
    pub body: Option<String>,
    /// Expected status code (default 200).
    pub expect_status: u16,
    /// Text the body must contain.
    pub expect_body: Option<String>,
    /// A JSON pointer into the body and the value it must equal (compared as text, so `42`,
    /// `true` and `ok` all work).
    pub expect_json: Option<(String, String)>,
    /// The whole request (headers and body) must complete within this.
    pub max_latency: Option<Duration>,
}

/// Settings of a `tcp` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSettings {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Settings of a `mongodb` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct MongodbSettings {
    /// Connection string (`mongodb://…`), password masked when printed.
    pub uri: SecretUri,
    /// Database of the probe collection (default `medic_probe`).
    pub database: String,
    /// Probe collection (default `probes`).
    pub collection: String,
}

/// Settings of a `rabbitmq` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitmqSettings {
    /// AMQP URI (`amqp://user:pass@host:5672/vhost`), password masked when printed.
    pub uri: SecretUri,
    /// Queues that must exist; never declared, only checked passively.
    pub queues: Vec<String>,
    /// Most ready messages a queue may hold; `None` checks nothing.
    pub max_messages: Option<u32>,
    /// Fewest consumers a queue must have (default 1).
    pub min_consumers: u32,
}

/// Which model API an `ai` probe calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiProvider {
    /// OpenAI chat completions.
    OpenAi,
    /// Google Gemini generateContent.
    Gemini,
    /// Any server with the OpenAI chat-completions shape (Ollama, vLLM, LM Studio).
    OpenAiCompatible,
}

impl fmt::Display for AiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AiProvider::OpenAi => "openai",
            AiProvider::Gemini => "gemini",
            AiProvider::OpenAiCompatible => "openai-compatible",
        })
    }
}

/// Settings of an `ai` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct AiSettings {
    /// The API shape.
    pub provider: AiProvider,
    /// Base URL without the API path (`https://api.openai.com`, `http://ollama:11434/v1`).
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key; optional only for `openai-compatible`.
    pub api_key: Option<Secret>,
    /// Word the reply must contain, case-insensitively and as a whole word (default `OK`).
    pub expect: String,
}

/// Settings of an `upload` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSettings {
    /// Where the multipart POST goes.
    pub url: reqwest::Url,
    /// Headers sent with every request (authentication).
    pub headers: Vec<Header>,
    /// Multipart field name (default `file`).
    pub field: String,
    /// File name of the generated file (default `medic-probe.txt`).
    pub filename: String,
    /// JSON pointer to the id in the upload's answer (default `/id`).
    pub id_pointer: String,
    /// Status URL template with `{id}`; absolute, or a path resolved against `url`.
    pub status_url: String,
    /// JSON pointer to the status in the status answer (default `/status`).
    pub status_pointer: String,
    /// Status value meaning processed (default `done`).
    pub done_value: String,
    /// Status values meaning processing failed, which stop polling at once (default `failed`,
    /// `error`).
    pub failed_values: Vec<String>,
    /// JSON pointer to the extracted text (default `/text`).
    pub text_pointer: String,
    /// DELETE URL template with `{id}` (default: the status URL).
    pub delete_url: String,
    /// Pause between two status polls (default 1s).
    pub poll_interval: Duration,
}

/// Which container an `exec` probe runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecTarget {
    /// A container name or id.
    Container(String),
    /// A running container of a compose service, in `project` or else the watched project.
    Service {
        /// The compose service.
        service: String,
        /// The compose project, when it must be pinned.
        project: Option<String>,
    },
}

impl fmt::Display for ExecTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecTarget::Container(name) => write!(f, "container {name}"),
            ExecTarget::Service { service, .. } => write!(f, "service {service}"),
        }
    }
}

/// Settings of an `exec` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSettings {
    /// Where the command runs.
    pub target: ExecTarget,
    /// The command: a YAML list runs as is; a string runs through `/bin/sh -c`.
    pub command: Vec<String>,
}

/// Settings of a `disk` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSettings {
    /// A path on the filesystem to measure (default `/`).
    pub path: PathBuf,
    /// Warning under this many free bytes (default 1 GiB).
    pub warning_bytes: u64,
    /// Critical under this many free bytes (default 512 MiB).
    pub critical_bytes: u64,
}

/// Settings of a `memory` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySettings {
    /// The meminfo file (default `/proc/meminfo`).
    pub meminfo: PathBuf,
    /// Warning when available memory is under this percentage of the total (default 10).
    pub warning_percent: f64,
    /// Critical under this percentage (default 5).
    pub critical_percent: f64,
}

/// Settings of a `git` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct GitSettings {
    /// The repository's work tree (the directory holding `.git`).
    pub path: PathBuf,
    /// Remote whose host must be reachable (default `origin`).
    pub remote: String,
    /// Whether to try a TCP connection to the remote's host (default true).
    pub check_remote: bool,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Where a bad value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// The YAML file, with the position when it is known.
    File {
        /// The file's path as given.
        path: String,
        /// 1-based line.
        line: Option<u32>,
        /// 1-based column.
        column: Option<u32>,
    },
    /// A container label.
    Label {
        /// The container's name.
        container: String,
        /// The full label name (`medic.probe.db.timeout`).
        label: String,
    },
}

/// A probe configuration a user must fix. Its text names the file and line, or the container
/// and label, then the probe and key, then what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfigError {
    /// Where the value came from.
    pub origin: ConfigOrigin,
    /// The probe, when the error is inside one.
    pub probe: Option<String>,
    /// The key at fault, when one is.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ProbeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            ConfigOrigin::File { path, line, column } => {
                write!(f, "{path}")?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                    if let Some(column) = column {
                        write!(f, ":{column}")?;
                    }
                }
                write!(f, ": ")?;
            }
            ConfigOrigin::Label { container, label } => {
                write!(f, "container {container:?}, label {label:?}: ")?;
            }
        }
        match (&self.probe, &self.key) {
            (Some(p), Some(k)) => write!(f, "probe `{p}`, key `{k}`: ")?,
            (Some(p), None) => write!(f, "probe `{p}`: ")?,
            (None, Some(k)) => write!(f, "key `{k}`: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProbeConfigError {}

// ---------------------------------------------------------------------------------------------
// The raw record both sources are read into

/// A scalar written as a string, number or boolean; kept as text until `${VAR}` substitution.
#[derive(Debug, Clone, PartialEq)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list written as a YAML sequence or as one comma-separated string (labels).
#[derive(Debug, Clone, PartialEq)]
struct List(Vec<Scalar>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list, or a comma-separated string")
            }
            fn visit_str<E>(self, v: &str) -> Result<List, E> {
                Ok(List(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Scalar(s.to_string()))
                        .collect(),
                ))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Scalar>()? {
                    items.push(item);
                }
                Ok(List(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: a sequence runs as is, a string runs through a shell.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    /// `/bin/sh -c <string>`.
    Shell(Scalar),
    /// argv.
    Argv(Vec<Scalar>),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_str<E>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Shell(Scalar(v.to_string())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Command, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Scalar>()? {
                    items.push(item);
                }
                Ok(Command::Argv(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// Declares the raw record and the list of its keys from one list of fields, so the two can
/// never disagree.
macro_rules! raw_probe {
    ($($field:ident : $ty:ty),* $(,)?) => {
        /// Every key any probe type accepts; which ones a type accepts is checked afterwards.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawProbe {
            $(
                #[serde(default)]
                $field: Option<$ty>,
            )*
        }

        impl RawProbe {
            /// All key names, as written in files and labels.
            const KEYS: &'static [&'static str] = &[$(raw_key(stringify!($field))),*];

            /// The keys that are set.
            fn present(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(
                    if self.$field.is_some() {
                        keys.push(raw_key(stringify!($field)));
                    }
                )*
                keys
            }
        }
    };
}

/// `r#type` is written `type`.
const fn raw_key(field: &'static str) -> &'static str {
    match field.as_bytes() {
        [b'r', b'#', ..] => "type",
        _ => field,
    }
}

raw_probe! {
    r#type: Scalar,
    interval: Scalar,
    cron: Scalar,
    timeout: Scalar,
    restart: List,
    failure_threshold: Scalar,
    component: Scalar,
    url: Scalar,
    method: Scalar,
    headers: BTreeMap<String, Scalar>,
    body: Scalar,
    expect_status: Scalar,
    expect_body: Scalar,
    expect_json_pointer: Scalar,
    expect_json_value: Scalar,
    max_latency: Scalar,
    host: Scalar,
    port: Scalar,
    uri: Scalar,
    database: Scalar,
    collection: Scalar,
    queues: List,
    max_messages: Scalar,
    min_consumers: Scalar,
    provider: Scalar,
    model: Scalar,
    base_url: Scalar,
    api_key: Scalar,
    expect: Scalar,
    field: Scalar,
    filename: Scalar,
    id_pointer: Scalar,
    status_url: Scalar,
    status_pointer: Scalar,
    done_value: Scalar,
    failed_values: List,
    text_pointer: Scalar,
    delete_url: Scalar,
    poll_interval: Scalar,
    container: Scalar,
    service: Scalar,
    project: Scalar,
    command: Command,
    path: Scalar,
    warning: Scalar,
    critical: Scalar,
    meminfo: Scalar,
    warning_percent: Scalar,
    critical_percent: Scalar,
    remote: Scalar,
    check_remote: Scalar,
}

/// Keys every type accepts.
const COMMON_KEYS: &[&str] = &[
    "type",
    "interval",
    "cron",
    "timeout",
    "restart",
    "failure_threshold",
    "component",
];

/// The probe types and the keys each accepts beyond [`COMMON_KEYS`].
const TYPE_KEYS: &[(&str, &[&str])] = &[
    (
        "http",
        &[
            "url",
            "method",
            "headers",
            "body",
            "expect_status",
            "expect_body",
            "expect_json_pointer",
            "expect_json_value",
            "max_latency",
        ],
    ),
    ("tcp", &["host", "port"]),
    ("mongodb", &["uri", "database", "collection"]),
    (
        "rabbitmq",
        &["uri", "queues", "max_messages", "min_consumers"],
    ),
    (
        "ai",
        &["provider", "model", "base_url", "api_key", "expect"],
    ),
    (
        "upload",
        &[
            "url",
            "headers",
            "field",
            "filename",
            "id_pointer",
            "status_url",
            "status_pointer",
            "done_value",
            "failed_values",
            "text_pointer",
            "delete_url",
            "poll_interval",
        ],
    ),
    ("exec", &["container", "service", "project", "command"]),
    ("git", &["path", "remote", "check_remote"]),
    ("disk", &["path", "warning", "critical"]),
    (
        "memory",
        &["meminfo", "warning_percent", "critical_percent"],
    ),
];

fn type_names() -> String {
    TYPE_KEYS
        .iter()
        .map(|(t, _)| *t)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = if ca == *cb {
                    prev
                } else {
                    1 + prev.min(row[j]).min(row[j + 1])
                };
                prev = cur;
            }
        }
        row[b.len()]
    }
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn unknown_key_message(key: &str, valid: &[&str]) -> String {
    match closest(key, valid.iter().copied()) {
        Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
        None => format!("unknown key `{key}`; valid keys: {}", valid.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing the sources

/// The top of the YAML file. Only `probes:` is read here; other top-level sections belong to
/// other parts of medic.
#[derive(Debug, Deserialize)]
struct RawFile {
    /// name → settings.
    #[serde(default)]
    probes: Option<ProbeMap>,
}

/// The probes of the file by name, refusing a name written twice: a YAML map would silently
/// keep the last one, and the first probe would never run.
#[derive(Debug, Default)]
struct ProbeMap(BTreeMap<String, RawProbe>);

impl<'de> Deserialize<'de> for ProbeMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ProbeMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of probe names to their settings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ProbeMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.contains_key(&name) {
                        return Err(serde::de::Error::custom(format!(
                            "probe `{name}` is declared twice in this file; rename one"
                        )));
                    }
                    let probe: RawProbe = map.next_value()?;
                    out.insert(name, probe);
                }
                Ok(ProbeMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses the `probes:` section of the YAML configuration file. `source` is the file's path,
/// used in messages; `env` looks up `${VAR}` references.
pub fn parse_yaml(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ProbeSpec>, ProbeConfigError> {
    let file_error = |line, column, probe, key, message| ProbeConfigError {
        origin: ConfigOrigin::File {
            path: source.to_string(),
            line,
            column,
        },
        probe,
        key,
        message,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: RawFile = yaml_serde::from_str(text).map_err(|e| {
        let location = e.location();
        let (probe, key, message) = explain_yaml_error(&e.to_string());
        let (mut line, mut column) = (
            location.as_ref().map(|l| l.line() as u32),
            location.as_ref().map(|l| l.column() as u32),
        );
        let mut message = message;
        // The parser points at the `probes:` map; name the lines of both declarations.
        if let Some(name) = message
            .strip_prefix("probe `")
            .filter(|_| message.contains("is declared twice"))
            .and_then(|rest| rest.split('`').next())
        {
            let mut lines: Vec<(u32, u32)> = text
                .lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let trimmed = l.trim_start();
                    let indent = l.len() - trimmed.len();
                    (indent > 0 && trimmed.strip_prefix(name)?.trim_start().starts_with(':'))
                        .then_some(((i + 1) as u32, (indent + 1) as u32))
                })
                .collect();
            // Probe names sit at one indent; a key of the same name inside a probe does not.
            if let Some(&(_, probe_column)) = lines.first() {
                lines.retain(|(_, c)| *c == probe_column);
            }
            if let [first, second, ..] = lines[..] {
                (line, column) = (Some(second.0), Some(second.1));
                message = format!(
                    "probe `{name}` is declared twice in this file, on lines {} and {}; rename one",
                    first.0, second.0
                );
            }
        }
        file_error(line, column, probe, key, message)
    })?;
    let origin = Origin::File { path: source, text };
    let mut specs = Vec::new();
    for (name, probe) in raw.probes.unwrap_or_default().0 {
        if !valid_probe_name(&name) {
            let (line, column) = locate(text, &name, None).unzip();
            return Err(file_error(
                line,
                column,
                Some(name),
                None,
                "a probe name has only letters, digits, '-' and '_'".into(),
            ));
        }
        let resolver = Resolver {
            origin: &origin,
            probe: &name,
            env,
            allowed: None,
        };
        specs.push(resolver.resolve(probe)?);
    }
    Ok(specs)
}

/// Turns a yaml_serde message (`probes.db: unknown field `urll`, expected one of … at line 4
/// column 5`) into the probe, the key and a short message.
fn explain_yaml_error(text: &str) -> (Option<String>, Option<String>, String) {
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    };
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (Some(path), message),
        _ => (None, text),
    };
    let probe = path
        .and_then(|p| p.strip_prefix("probes."))
        .map(|p| p.split('.').next().unwrap_or(p).to_string());
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(key) = rest.split('`').next() {
            return (
                probe,
                Some(key.to_string()),
                unknown_key_message(key, RawProbe::KEYS),
            );
        }
    }
    let key = path
        .and_then(|p| p.strip_prefix("probes."))
        .and_then(|p| p.split_once('.'))
        .map(|(_, k)| k.to_string());
    (probe, key, message.to_string())
}

/// Parses the `medic.probe.<name>.<key>` labels of one container. `container` is its name (for
/// messages), `service` its compose service: the default component, restart target, `tcp` host
/// and `exec` target (`container` then). `${VAR}` in a value reads `env` only for the variables
/// in `allowed` (the trust boundary, see the module docs); any other is an error on the label.
/// The first error fails the whole container; [`parse_labels_each`] keeps the good probes.
pub fn parse_labels(
    container: &str,
    service: &str,
    labels: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
    allowed: &LabelVariables,
) -> Result<Vec<ProbeSpec>, ProbeConfigError> {
    let (specs, mut errors) = parse_labels_each(container, service, labels, env, allowed);
    match errors.is_empty() {
        true => Ok(specs),
        false => Err(errors.remove(0)),
    }
}

/// Like [`parse_labels`], but one probe's error does not cost the container's other probes:
/// the daemon runs every probe that parses and reports each one that does not.
pub fn parse_labels_each(
    container: &str,
    service: &str,
    labels: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
    allowed: &LabelVariables,
) -> (Vec<ProbeSpec>, Vec<ProbeConfigError>) {
    let label_error =
        |label: &str, probe: Option<&str>, key: Option<&str>, message: String| ProbeConfigError {
            origin: ConfigOrigin::Label {
                container: container.to_string(),
                label: label.to_string(),
            },
            probe: probe.map(str::to_string),
            key: key.map(str::to_string),
            message,
        };
    let mut errors = Vec::new();
    // Probes with a malformed label: reported once, not resolved from their other labels.
    let mut broken: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    // name → key → value, in label order.
    let mut probes: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    let mut sorted: Vec<_> = labels.iter().collect();
    sorted.sort();
    for (label, value) in sorted {
        let Some(rest) = label.strip_prefix(LABEL_PREFIX) else {
            continue;
        };
        let Some((name, key)) = rest
            .split_once('.')
            .filter(|(n, k)| !n.is_empty() && !k.is_empty())
        else {
            errors.push(label_error(
                label,
                None,
                None,
                "a probe label is medic.probe.<name>.<key>=<value>, e.g. medic.probe.db.type=mongodb"
                    .into(),
            ));
            continue;
        };
        if broken.contains(name) {
            continue;
        }
        let problem = if !valid_probe_name(name) {
            Some((
                None,
                "a probe name has only letters, digits, '-' and '_'".to_string(),
            ))
        } else {
            let top = key.split('.').next().unwrap_or(key);
            if !RawProbe::KEYS.contains(&top) {
                Some((Some(key), unknown_key_message(top, RawProbe::KEYS)))
            } else {
                match (top, key.contains('.')) {
                    ("headers", false) => Some((
                        Some(key),
                        "write one label per header: medic.probe.<name>.headers.<Header-Name>=<value>"
                            .to_string(),
                    )),
                    (other, true) if other != "headers" => Some((
                        Some(key),
                        format!("`{other}` takes no sub-key; only headers.<Header-Name> does"),
                    )),
                    _ => None,
                }
            }
        };
        if let Some((key, message)) = problem {
            errors.push(label_error(label, Some(name), key, message));
            broken.insert(name);
            probes.remove(name);
            continue;
        }
        probes.entry(name).or_default().insert(key, value.as_str());
    }

    let origin = Origin::Labels {
        container,
        service,
        project: labels.get("com.docker.compose.project").map(String::as_str),
    };
    let mut specs = Vec::new();
    for (name, keys) in probes {
        let mut object = serde_json::Map::new();
        let mut headers = serde_json::Map::new();
        for (key, value) in keys {
            match key.strip_prefix("headers.") {
                Some(header) => {
                    headers.insert(header.to_string(), value.into());
                }
                None => {
                    object.insert(key.to_string(), value.into());
                }
            }
        }
        if !headers.is_empty() {
            object.insert("headers".into(), headers.into());
        }
        let raw: RawProbe = match serde_json::from_value(object.into()) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(label_error(
                    &format!("{LABEL_PREFIX}{name}"),
                    Some(name),
                    None,
                    e.to_string(),
                ));
                continue;
            }
        };
        let resolver = Resolver {
            origin: &origin,
            probe: name,
            env,
            allowed: Some(allowed),
        };
        match resolver.resolve(raw) {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.push(e),
        }
    }
    (specs, errors)
}

fn valid_probe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Best effort: the line and column of `key` inside probe `probe` of a block-style YAML file,
/// for errors found after parsing (a bad duration, a key of the wrong type). Without `key`, the
/// probe's own line.
fn locate(text: &str, probe: &str, key: Option<&str>) -> Option<(u32, u32)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key = |l: &str, k: &str| {
        let t = l.trim_start();
        let t = t.strip_prefix("- ").unwrap_or(t);
        let unquoted = t
            .strip_prefix(k)
            .or_else(|| t.strip_prefix(&format!("\"{k}\"")))
            .or_else(|| t.strip_prefix(&format!("'{k}'")));
        matches!(unquoted, Some(rest) if rest.trim_start().starts_with(':'))
    };
    let probes_line = lines
        .iter()
        .position(|l| indent(l) == 0 && is_key(l, "probes"))?;
    let (probe_line, probe_indent) = lines
        .iter()
        .enumerate()
        .skip(probes_line + 1)
        .take_while(|(_, l)| {
            l.trim().is_empty() || l.starts_with(char::is_whitespace) || l.starts_with('#')
        })
        .find(|(_, l)| is_key(l, probe))
        .map(|(i, l)| (i, indent(l)))?;
    let Some(key) = key else {
        return Some(((probe_line + 1) as u32, (probe_indent + 1) as u32));
    };
    let top = key.split('.').next().unwrap_or(key);
    lines
        .iter()
        .enumerate()
        .skip(probe_line + 1)
        .take_while(|(_, l)| {
            l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > probe_indent
        })
        .find(|(_, l)| is_key(l, top))
        .map(|(i, l)| ((i + 1) as u32, (indent(l) + 1) as u32))
}

// ---------------------------------------------------------------------------------------------
// Resolving a raw record into a spec

/// Where the record being resolved came from.
enum Origin<'a> {
    /// The YAML file: its path and text.
    File {
        /// Path for messages.
        path: &'a str,
        /// The text, to locate keys in.
        text: &'a str,
    },
    /// A container's labels.
    Labels {
        /// Container name.
        container: &'a str,
        /// Its compose service.
        service: &'a str,
        /// Its compose project, if it belongs to one.
        project: Option<&'a str>,
    },
}

/// Resolves one probe's raw record, building errors that point at the right place.
struct Resolver<'a> {
    /// The source.
    origin: &'a Origin<'a>,
    /// The probe's name.
    probe: &'a str,
    /// Variable lookup for `${VAR}`.
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The variables `${VAR}` may read: all for the file (`None`), the operator's allow-list
    /// for labels.
    allowed: Option<&'a LabelVariables>,
}

type Res<T> = Result<T, ProbeConfigError>;

impl Resolver<'_> {
    fn err(&self, key: Option<&str>, message: impl Into<String>) -> ProbeConfigError {
        let origin = match self.origin {
            Origin::File { path, text } => {
                let (line, column) = locate(text, self.probe, key).unzip();
                ConfigOrigin::File {
                    path: path.to_string(),
                    line,
                    column,
                }
            }
            Origin::Labels { container, .. } => ConfigOrigin::Label {
                container: container.to_string(),
                label: match key {
                    Some(k) => format!("{LABEL_PREFIX}{}.{k}", self.probe),
                    None => format!("{LABEL_PREFIX}{}", self.probe),
                },
            },
        };
        ProbeConfigError {
            origin,
            probe: Some(self.probe.to_string()),
            key: key.map(str::to_string),
            message: message.into(),
        }
    }

    fn labels(&self) -> Option<(&str, &str)> {
        match self.origin {
            Origin::Labels {
                container, service, ..
            } => Some((container, service)),
            Origin::File { .. } => None,
        }
    }

    fn subst(&self, key: &str, value: Scalar) -> Res<Substituted> {
        vars::substitute_within(&value.0, self.env, self.allowed)
            .map_err(|e| self.err(Some(key), e.to_string()))
    }

    fn text(&self, key: &str, value: Option<Scalar>) -> Res<Option<String>> {
        value
            .map(|v| self.subst(key, v).map(|s| s.value.trim().to_string()))
            .transpose()
    }

    fn text_or(&self, key: &str, value: Option<Scalar>, default: &str) -> Res<String> {
        Ok(self
            .text(key, value)?
            .unwrap_or_else(|| default.to_string()))
    }

    fn required(&self, key: &str, value: Option<Scalar>, what: &str) -> Res<String> {
        match self.text(key, value)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.err(Some(key), format!("is required: {what}"))),
        }
    }

    fn duration(&self, key: &str, value: Option<Scalar>) -> Res<Option<Duration>> {
        let Some(text) = self.text(key, value)? else {
            return Ok(None);
        };
        let d = crate::config::parse_duration(key, &text)
            .map_err(|e| self.err(Some(key), e.to_string()))?;
        if d.is_zero() {
            return Err(self.err(
                Some(key),
                format!("{key}={text:?} must be longer than zero"),
            ));
        }
        Ok(Some(d))
    }

    /// A duration of at least [`MIN_PROBE_INTERVAL`], for `interval` and `timeout`.
    fn at_least_a_second(&self, key: &str, value: Option<Scalar>) -> Res<Option<Duration>> {
        let d = self.duration(key, value)?;
        match d {
            Some(d) if d < MIN_PROBE_INTERVAL => Err(self.err(
                Some(key),
                format!(
                    "{key} {} is too short: the shortest is {}, since shorter ones keep a core \
                     and the engine busy",
                    humantime::format_duration(d),
                    humantime::format_duration(MIN_PROBE_INTERVAL)
                ),
            )),
            d => Ok(d),
        }
    }

    /// The labelled container's compose project, for label probes.
    fn label_project(&self) -> Option<&str> {
        match self.origin {
            Origin::Labels { project, .. } => *project,
            Origin::File { .. } => None,
        }
    }

    fn number<T: FromStr>(
        &self,
        key: &str,
        value: Option<Scalar>,
        expected: &str,
    ) -> Res<Option<T>> {
        let Some(text) = self.text(key, value)? else {
            return Ok(None);
        };
        text.parse::<T>().map(Some).map_err(|_| {
            self.err(
                Some(key),
                format!("{key}={text:?} is invalid: expected {expected}"),
            )
        })
    }

    fn boolean(&self, key: &str, value: Option<Scalar>, default: bool) -> Res<bool> {
        match self.text(key, value)?.as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(other) => Err(self.err(
                Some(key),
                format!("{key}={other:?} is invalid: expected true or false"),
            )),
        }
    }

    fn list(&self, key: &str, value: Option<List>) -> Res<Option<Vec<String>>> {
        value
            .map(|l| {
                l.0.into_iter()
                    .map(|s| self.subst(key, s).map(|s| s.value.trim().to_string()))
                    .filter(|s| !matches!(s, Ok(v) if v.is_empty()))
                    .collect::<Res<Vec<_>>>()
            })
            .transpose()
    }

    fn url(&self, key: &str, value: Option<Scalar>, what: &str) -> Res<reqwest::Url> {
        let text = self.required(key, value, what)?;
        let url = reqwest::Url::parse(&text).map_err(|e| {
            self.err(
                Some(key),
                format!(
                    "{key}={:?} is not a URL ({e}); expected http://host:port/path",
                    super::secret::mask_uri(&text)
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.err(
                Some(key),
                format!(
                    "expected an http:// or https:// URL, got {}://",
                    url.scheme()
                ),
            ));
        }
        Ok(url)
    }

    fn pointer(&self, key: &str, value: Option<Scalar>, default: &str) -> Res<String> {
        let p = self.text_or(key, value, default)?;
        if !p.is_empty() && !p.starts_with('/') {
            return Err(self.err(
                Some(key),
                format!("{key}={p:?} is not a JSON pointer; write it like /data/0/id"),
            ));
        }
        Ok(p)
    }

    fn headers(&self, value: Option<BTreeMap<String, Scalar>>) -> Res<Vec<Header>> {
        let mut out = Vec::new();
        for (name, value) in value.unwrap_or_default() {
            let key = format!("headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.err(Some(&key), format!("{name:?} is not a valid header name")));
            }
            let s = self.subst(&key, value)?;
            if reqwest::header::HeaderValue::from_str(&s.value).is_err() {
                return Err(self.err(
                    Some(&key),
                    "the value holds characters a header cannot carry (newlines, control characters)",
                ));
            }
            let lower = name.to_ascii_lowercase();
            let sensitive = s.from_env
                || [
                    "auth", "token", "key", "secret", "cookie", "password", "session",
                ]
                .iter()
                .any(|w| lower.contains(w));
            out.push(Header {
                name,
                value: Secret::new(s.value),
                sensitive,
            });
        }
        Ok(out)
    }

    fn resolve(&self, mut raw: RawProbe) -> Res<ProbeSpec> {
        let type_name = self.required(
            "type",
            raw.r#type.take(),
            &format!("the probe type, one of {}", type_names()),
        )?;
        let Some((type_name, type_keys)) = TYPE_KEYS.iter().find(|(t, _)| *t == type_name) else {
            let hint = closest(&type_name, TYPE_KEYS.iter().map(|(t, _)| *t))
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            return Err(self.err(
                Some("type"),
                format!(
                    "unknown probe type {type_name:?}; {hint}types: {}",
                    type_names()
                ),
            ));
        };
        // Keys valid for some other type only.
        for key in raw.present() {
            if key != "type" && !COMMON_KEYS.contains(&key) && !type_keys.contains(&key) {
                let mut valid: Vec<&str> = COMMON_KEYS.to_vec();
                valid.extend_from_slice(type_keys);
                return Err(self.err(
                    Some(key),
                    format!(
                        "`{key}` is not a key of a {type_name} probe; its keys are: {}",
                        valid.join(", ")
                    ),
                ));
            }
        }

        let informational = matches!(*type_name, "git" | "disk" | "memory");
        let interval = self.at_least_a_second("interval", raw.interval.take())?;
        let cron = self.text("cron", raw.cron.take())?;
        let schedule = match (interval, cron) {
            (Some(_), Some(_)) => {
                return Err(self.err(Some("cron"), "set either interval or cron, not both"))
            }
            (None, Some(expr)) => {
                Schedule::Cron(Box::new(CronSchedule::parse(&expr).map_err(|e| {
                    self.err(Some("cron"), format!("cron={expr:?} is invalid: {e}"))
                })?))
            }
            (interval, None) => Schedule::Interval(interval.unwrap_or(DEFAULT_INTERVAL)),
        };
        let timeout = self
            .at_least_a_second("timeout", raw.timeout.take())?
            .unwrap_or(DEFAULT_TIMEOUT);
        let failure_threshold: Option<u32> = self.number(
            "failure_threshold",
            raw.failure_threshold.take(),
            "a whole number of at least 1",
        )?;
        if failure_threshold == Some(0) {
            return Err(self.err(Some("failure_threshold"), "must be at least 1"));
        }
        let restart_given = raw.restart.is_some();
        let restart = self.list("restart", raw.restart.take())?;
        if informational && restart_given {
            return Err(self.err(
                Some("restart"),
                format!(
                    "a {type_name} probe is informational: it alerts but never restarts; remove `restart`"
                ),
            ));
        }
        let restart = match (restart, self.labels()) {
            (Some(r), _) => r,
            (None, Some((_, service))) if !informational => vec![service.to_string()],
            (None, _) => Vec::new(),
        };
        let component = match (self.text("component", raw.component.take())?, self.labels()) {
            (Some(c), _) if !c.is_empty() => c,
            (_, Some((_, service))) => service.to_string(),
            _ => restart
                .first()
                .cloned()
                .unwrap_or_else(|| self.probe.to_string()),
        };

        let kind = match *type_name {
            "http" => self.http(&mut raw)?,
            "tcp" => self.tcp(&mut raw)?,
            "mongodb" => ProbeKind::Mongodb(MongodbSettings {
                uri: self.uri(
                    &mut raw,
                    &["mongodb", "mongodb+srv"],
                    "mongodb://user:pass@mongo:27017",
                )?,
                database: self.text_or("database", raw.database.take(), "medic_probe")?,
                collection: self.text_or("collection", raw.collection.take(), "probes")?,
            }),
            "rabbitmq" => self.rabbitmq(&mut raw)?,
            "ai" => self.ai(&mut raw)?,
            "upload" => self.upload(&mut raw)?,
            "exec" => self.exec(&mut raw)?,
            "git" => ProbeKind::Git(GitSettings {
                path: PathBuf::from(self.required(
                    "path",
                    raw.path.take(),
                    "the repository's directory as mounted into medic",
                )?),
                remote: self.text_or("remote", raw.remote.take(), "origin")?,
                check_remote: self.boolean("check_remote", raw.check_remote.take(), true)?,
            }),
            "disk" => self.disk(&mut raw)?,
            "memory" => self.memory(&mut raw)?,
            other => unreachable!("type {other} is in TYPE_KEYS but has no resolver"),
        };
        Ok(ProbeSpec {
            name: self.probe.to_string(),
            kind,
            schedule,
            timeout,
            restart,
            failure_threshold,
            component,
            declared_in: match self.origin {
                Origin::File { path, .. } => path.to_string(),
                Origin::Labels { container, .. } => format!("container {container}"),
            },
            project: self.label_project().map(str::to_string),
        })
    }

    fn uri(&self, raw: &mut RawProbe, schemes: &[&str], example: &str) -> Res<SecretUri> {
        let uri = self.required(
            "uri",
            raw.uri.take(),
            &format!("a connection URI such as {example}"),
        )?;
        let scheme = uri.split("://").next().unwrap_or("");
        if !uri.contains("://") || !schemes.contains(&scheme) {
            return Err(self.err(
                Some("uri"),
                format!(
                    "{:?} is not a {} URI; expected {example}",
                    super::secret::mask_uri(&uri),
                    schemes.join(" or ")
                ),
            ));
        }
        Ok(SecretUri::new(uri))
    }

    fn http(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let method = self
            .text_or("method", raw.method.take(), "GET")?
            .to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| self.err(Some("method"), format!("{method:?} is not an HTTP method")))?;
        let url = self.url(
            "url",
            raw.url.take(),
            "the URL to request, e.g. http://app:8000/health",
        )?;
        let expect_status: u16 = self
            .number(
                "expect_status",
                raw.expect_status.take(),
                "an HTTP status such as 200",
            )?
            .unwrap_or(200);
        if !(100..=599).contains(&expect_status) {
            return Err(self.err(
                Some("expect_status"),
                "expected an HTTP status between 100 and 599",
            ));
        }
        let pointer = match raw.expect_json_pointer.take() {
            Some(p) => Some(self.pointer("expect_json_pointer", Some(p), "")?),
            None => None,
        };
        let value = self.text("expect_json_value", raw.expect_json_value.take())?;
        let expect_json = match (pointer, value) {
            (Some(p), Some(v)) => Some((p, v)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.err(
                    Some("expect_json_pointer"),
                    "needs expect_json_value, the value the pointer must equal",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(
                    Some("expect_json_value"),
                    "needs expect_json_pointer, where in the JSON body to look (e.g. /status)",
                ))
            }
        };
        Ok(ProbeKind::Http(HttpSettings {
            method,
            url,
            headers: self.headers(raw.headers.take())?,
            body: self.text("body", raw.body.take())?,
            expect_status,
            expect_body: self.text("expect_body", raw.expect_body.take())?,
            expect_json,
            max_latency: self.duration("max_latency", raw.max_latency.take())?,
        }))
    }

    fn tcp(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let host = match (self.text("host", raw.host.take())?, self.labels()) {
            (Some(h), _) if !h.is_empty() => h,
            (_, Some((_, service))) => service.to_string(),
            _ => {
                return Err(self.err(
                    Some("host"),
                    "is required: the host name or address to connect to",
                ))
            }
        };
        let port: u16 = self
            .number("port", raw.port.take(), "a port number between 1 and 65535")?
            .ok_or_else(|| self.err(Some("port"), "is required: the port to connect to"))?;
        if port == 0 {
            return Err(self.err(Some("port"), "expected a port number between 1 and 65535"));
        }
        Ok(ProbeKind::Tcp(TcpSettings { host, port }))
    }

    fn rabbitmq(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let uri = self.uri(raw, &["amqp"], "amqp://user:pass@rabbitmq:5672/%2f")?;
        let queues = self.list("queues", raw.queues.take())?.unwrap_or_default();
        if queues.is_empty() {
            return Err(self.err(
                Some("queues"),
                "is required: the queues to check, e.g. [uploads]",
            ));
        }
        Ok(ProbeKind::Rabbitmq(RabbitmqSettings {
            uri,
            queues,
            max_messages: self.number("max_messages", raw.max_messages.take(), "a whole number")?,
            min_consumers: self
                .number("min_consumers", raw.min_consumers.take(), "a whole number")?
                .unwrap_or(1),
        }))
    }

    fn ai(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let provider_text = self.required(
            "provider",
            raw.provider.take(),
            "openai, gemini or openai-compatible",
        )?;
        let provider = match provider_text.as_str() {
            "openai" => AiProvider::OpenAi,
            "gemini" => AiProvider::Gemini,
            "openai-compatible" | "openai_compatible" => AiProvider::OpenAiCompatible,
            other => {
                return Err(self.err(
                    Some("provider"),
                    format!(
                        "unknown provider {other:?}; expected openai, gemini or openai-compatible"
                    ),
                ))
            }
        };
        let (default_base, default_model, key_var) = match provider {
            AiProvider::OpenAi => (
                Some("https://api.openai.com"),
                Some("gpt-4o-mini"),
                Some("OPENAI_API_KEY"),
            ),
            AiProvider::Gemini => (
                Some("https://generativelanguage.googleapis.com"),
                Some("gemini-2.0-flash"),
                Some("GEMINI_API_KEY"),
            ),
            AiProvider::OpenAiCompatible => (None, None, None),
        };
        let base_url = match (self.text("base_url", raw.base_url.take())?, default_base) {
            (Some(b), _) if !b.is_empty() => b,
            (_, Some(d)) => d.to_string(),
            _ => return Err(self.err(
                Some("base_url"),
                "is required for openai-compatible: the server's URL, e.g. http://ollama:11434/v1",
            )),
        };
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| self.err(Some("base_url"), format!("{base_url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(self.err(Some("base_url"), "expected an http:// or https:// URL"));
        }
        let model = match (self.text("model", raw.model.take())?, default_model) {
            (Some(m), _) if !m.is_empty() => m,
            (_, Some(d)) => d.to_string(),
            _ => {
                return Err(self.err(
                    Some("model"),
                    "is required for openai-compatible: the model name",
                ))
            }
        };
        let api_key = match (self.text("api_key", raw.api_key.take())?, key_var) {
            (Some(k), _) if !k.is_empty() => Some(Secret::new(k)),
            (_, Some(var)) if self.allowed.is_some_and(|a| !a.allows(var)) => {
                return Err(self.err(
                    Some("api_key"),
                    format!(
                        "a probe declared by labels does not read {var} from medic's \
                         environment; {}",
                        vars::VarError::NotAllowed(var.to_string())
                    ),
                ))
            }
            (_, Some(var)) => match vars::lookup(var, self.env) {
                Ok(Some(k)) if !k.is_empty() => Some(Secret::new(k)),
                Ok(_) => {
                    return Err(self.err(
                        Some("api_key"),
                        format!("no API key: set {var} (or {var}_FILE) in medic's environment, or api_key: ${{VAR}}"),
                    ))
                }
                Err(e) => return Err(self.err(Some("api_key"), e.to_string())),
            },
            _ => None,
        };
        Ok(ProbeKind::Ai(AiSettings {
            provider,
            base_url: base_url.trim_end_matches('/').to_string(),
            model,
            api_key,
            expect: self.text_or("expect", raw.expect.take(), "OK")?,
        }))
    }

    fn upload(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let url = self.url(
            "url",
            raw.url.take(),
            "where to POST the file, e.g. http://app:8000/api/upload",
        )?;
        let template = |key: &str, value: Option<Scalar>| -> Res<Option<String>> {
            let Some(t) = self.text(key, value)? else {
                return Ok(None);
            };
            if !t.contains("{id}") {
                return Err(self.err(
                    Some(key),
                    format!("{t:?} must contain {{id}}, where the upload's id goes"),
                ));
            }
            if !t.starts_with('/') && reqwest::Url::parse(&t.replace("{id}", "x")).is_err() {
                return Err(self.err(
                    Some(key),
                    format!("{t:?} is neither an absolute URL nor a path starting with /"),
                ));
            }
            Ok(Some(t))
        };
        let status_url = template("status_url", raw.status_url.take())?.ok_or_else(|| {
            self.err(
                Some("status_url"),
                "is required: where to poll, e.g. /api/documents/{id}",
            )
        })?;
        let delete_url =
            template("delete_url", raw.delete_url.take())?.unwrap_or_else(|| status_url.clone());
        Ok(ProbeKind::Upload(UploadSettings {
            url,
            headers: self.headers(raw.headers.take())?,
            field: self.text_or("field", raw.field.take(), "file")?,
            filename: self.text_or("filename", raw.filename.take(), "medic-probe.txt")?,
            id_pointer: self.pointer("id_pointer", raw.id_pointer.take(), "/id")?,
            status_url,
            status_pointer: self.pointer("status_pointer", raw.status_pointer.take(), "/status")?,
            done_value: self.text_or("done_value", raw.done_value.take(), "done")?,
            failed_values: self
                .list("failed_values", raw.failed_values.take())?
                .unwrap_or_else(|| vec!["failed".into(), "error".into()]),
            text_pointer: self.pointer("text_pointer", raw.text_pointer.take(), "/text")?,
            delete_url,
            poll_interval: self
                .duration("poll_interval", raw.poll_interval.take())?
                .unwrap_or(Duration::from_secs(1)),
        }))
    }

    fn exec(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let container = self.text("container", raw.container.take())?;
        let service = self.text("service", raw.service.take())?;
        let project = self.text("project", raw.project.take())?;
        let target = match (container, service, self.labels()) {
            (Some(_), Some(_), _) => {
                return Err(self.err(Some("service"), "set either container or service, not both"))
            }
            (Some(c), None, _) => ExecTarget::Container(c),
            (None, Some(s), _) => ExecTarget::Service {
                service: s,
                project: project.or_else(|| self.label_project().map(str::to_string)),
            },
            (None, None, Some((container, _))) => ExecTarget::Container(container.to_string()),
            (None, None, None) => {
                return Err(self.err(
                    Some("service"),
                    "is required: the compose service (or `container`) to run the command in",
                ))
            }
        };
        let command = match raw.command.take() {
            None => Vec::new(),
            Some(Command::Shell(s)) => {
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    self.subst("command", s)?.value,
                ]
            }
            Some(Command::Argv(args)) => args
                .into_iter()
                .map(|a| self.subst("command", a).map(|s| s.value))
                .collect::<Res<Vec<_>>>()?,
        };
        if command.is_empty() || command.iter().all(|c| c.trim().is_empty()) {
            return Err(self.err(
                Some("command"),
                "is required: the command to run, e.g. [pg_isready] or \"test -f /tmp/ok\"",
            ));
        }
        Ok(ProbeKind::Exec(ExecSettings { target, command }))
    }

    fn disk(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let size = |key: &str, value: Option<Scalar>, default: u64| -> Res<u64> {
            match self.text(key, value)? {
                None => Ok(default),
                Some(t) => parse_size(&t)
                    .map_err(|e| self.err(Some(key), format!("{key}={t:?} is invalid: {e}"))),
            }
        };
        let warning_bytes = size("warning", raw.warning.take(), 1 << 30)?;
        let critical_bytes = size("critical", raw.critical.take(), 512 << 20)?;
        if critical_bytes > warning_bytes {
            return Err(self.err(Some("critical"), "must not be larger than `warning`"));
        }
        Ok(ProbeKind::Disk(DiskSettings {
            path: PathBuf::from(self.text_or("path", raw.path.take(), "/")?),
            warning_bytes,
            critical_bytes,
        }))
    }

    fn memory(&self, raw: &mut RawProbe) -> Res<ProbeKind> {
        let percent = |key: &str, value: Option<Scalar>, default: f64| -> Res<f64> {
            let p: f64 = self
                .number(key, value, "a percentage between 0 and 100")?
                .unwrap_or(default);
            if !(0.0..=100.0).contains(&p) {
                return Err(self.err(Some(key), "expected a percentage between 0 and 100"));
            }
            Ok(p)
        };
        let warning_percent = percent("warning_percent", raw.warning_percent.take(), 10.0)?;
        let critical_percent = percent("critical_percent", raw.critical_percent.take(), 5.0)?;
        if critical_percent > warning_percent {
            return Err(self.err(
                Some("critical_percent"),
                "must not be larger than `warning_percent`",
            ));
        }
        Ok(ProbeKind::Memory(MemorySettings {
            meminfo: PathBuf::from(self.text_or("meminfo", raw.meminfo.take(), "/proc/meminfo")?),
            warning_percent,
            critical_percent,
        }))
    }
}

/// Parses a size such as `1GB`, `512MB`, `1.5G` or a bare number of bytes. Units are binary
/// (1 KB = 1024 bytes), as in Docker's own flags; `KiB`/`MiB`/`GiB`/`TiB` are the same.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "expected a size such as 1GB, 512MB or 2048".to_string())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}; use B, KB, MB, GB or TB")),
    };
    Ok((number * multiplier as f64) as u64)
}

/// Formats a byte count for people: `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_changed_secret_makes_a_different_probe_though_it_prints_the_same() {
        // The scheduler restarts a probe whose spec changed; a new password in a label (the
        // container recreated with it) must count as a change though both print masked.
        let spec = |password: &str| {
            let labels = HashMap::from([
                ("medic.probe.db.type".to_string(), "mongodb".to_string()),
                (
                    "medic.probe.db.uri".to_string(),
                    format!("mongodb://medic:{password}@db:27017/shop"),
                ),
            ]);
            parse_labels(
                "shop-db-1",
                "db",
                &labels,
                &no_env,
                &LabelVariables::default(),
            )
            .unwrap()
            .remove(0)
        };
        let (old, new) = (spec("first-secret"), spec("second-secret"));
        assert_eq!(format!("{old:?}"), format!("{new:?}"));
        assert!(!format!("{old:?}").contains("secret"));
        assert_ne!(old, new);
        assert_eq!(old, spec("first-secret"));
    }

    #[test]
    fn type_keys_are_all_raw_keys() {
        for (_, keys) in TYPE_KEYS {
            for key in keys.iter().chain(COMMON_KEYS) {
                assert!(RawProbe::KEYS.contains(key), "{key}");
            }
        }
        assert!(RawProbe::KEYS.contains(&"type"));
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("2048").unwrap(), 2048);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1PB").is_err());
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
    }

    #[test]
    fn five_field_cron_is_accepted() {
        let c = CronSchedule::parse("*/5 * * * *").unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:01:30Z").unwrap();
        assert_eq!(
            c.next_after(&t).unwrap().to_rfc3339(),
            "2026-01-01T10:05:00+00:00"
        );
        assert!(CronSchedule::parse("* *").is_err());
        assert!(CronSchedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn yaml_error_text_is_explained() {
        let (p, k, m) = explain_yaml_error(
            "probes.db: unknown field `urll`, expected one of `type`, `url` at line 4 column 5",
        );
        assert_eq!(p.as_deref(), Some("db"));
        assert_eq!(k.as_deref(), Some("urll"));
        assert_eq!(m, "unknown key `urll`; did you mean `url`?");
    }

    #[test]
    fn locate_finds_probe_and_key_lines() {
        let text = "other: 1\nprobes:\n  db:\n    type: mongodb\n    timeout: 3x\n  web:\n    timeout: 1s\n";
        assert_eq!(locate(text, "db", Some("timeout")), Some((5, 5)));
        assert_eq!(locate(text, "web", Some("timeout")), Some((7, 5)));
        assert_eq!(locate(text, "web", None), Some((6, 3)));
        assert_eq!(locate(text, "db", Some("url")), None);
    }

    #[test]
    fn an_empty_probe_asks_for_its_type() {
        let e = parse_yaml("probes:\n  db:\n", "m.yaml", &no_env).unwrap_err();
        assert!(e.to_string().contains("probe `db`"), "{e}");
        assert!(e.to_string().contains("type"), "{e}");
        assert!(!e.to_string().contains("RawProbe"), "{e}");
        let e = parse_yaml("probes:\n  - db\n", "m.yaml", &no_env).unwrap_err();
        assert!(e.to_string().starts_with("m.yaml:2:"), "{e}");
    }

    #[test]
    fn minimal_yaml_gets_the_defaults() {
        let text = "probes:\n  web:\n    type: http\n    url: http://app:8000/health\n    restart: [app, worker]\n";
        let specs = parse_yaml(text, "medic.yaml", &no_env).unwrap();
        assert_eq!(specs.len(), 1);
        let s = &specs[0];
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert!(matches!(s.schedule, Schedule::Interval(d) if d == DEFAULT_INTERVAL));
        assert_eq!(s.schedule.to_string(), "every 5m");
        assert_eq!(s.restart, vec!["app", "worker"]);
        assert_eq!(s.component, "app");
        let ProbeKind::Http(h) = &s.kind else {
            panic!()
        };
        assert_eq!(h.method, reqwest::Method::GET);
        assert_eq!(h.expect_status, 200);
    }

    /// Found by fuzzing: a timeout this long parsed, and `medic probe` then panicked computing
    /// the run's deadline ("overflow when adding duration to instant").
    #[test]
    fn a_timeout_too_long_for_the_clock_is_a_config_error() {
        let text = "probes:\n  d:\n    type: disk\n    timeout: 18446744073709551615\n";
        let e = parse_yaml(text, "m.yaml", &no_env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.yaml:4:5: probe `d`, key `timeout`"),
            "{e}"
        );
        assert!(e.to_string().contains("100 years"), "{e}");
    }

    fn label_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_read_only_the_allowed_variables_and_the_file_reads_all() {
        let env = |name: &str| match name {
            "MAIL_PASSWORD" => Some("hunter2".to_string()),
            "API_HOST" => Some("api.internal".to_string()),
            "OPENAI_API_KEY" => Some("sk-live".to_string()),
            _ => None,
        };
        let leak = label_map(&[
            ("medic.probe.leak.type", "http"),
            (
                "medic.probe.leak.url",
                "http://collector:9000/?p=${MAIL_PASSWORD}",
            ),
        ]);
        let allowed = LabelVariables::of(["API_HOST"]);
        let e = parse_labels("shop-web-1", "web", &leak, &env, &allowed).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "container \"shop-web-1\", label \"medic.probe.leak.url\": probe `leak`, key `url`"
            ),
            "{text}"
        );
        assert!(text.contains("${MAIL_PASSWORD}"), "{text}");
        assert!(text.contains("MEDIC_LABEL_VARIABLES"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let fine = label_map(&[
            ("medic.probe.api.type", "http"),
            ("medic.probe.api.url", "http://${API_HOST}/health"),
        ]);
        let specs = parse_labels("shop-web-1", "web", &fine, &env, &allowed).unwrap();
        let ProbeKind::Http(h) = &specs[0].kind else {
            panic!()
        };
        assert_eq!(h.url.as_str(), "http://api.internal/health");

        // An ai probe without api_key would read the provider's variable: not from labels.
        let ai = label_map(&[
            ("medic.probe.model.type", "ai"),
            ("medic.probe.model.provider", "openai"),
            ("medic.probe.model.base_url", "http://collector:9000"),
        ]);
        let e = parse_labels("shop-web-1", "web", &ai, &env, &allowed).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("api_key"));
        assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
        assert!(!e.to_string().contains("sk-live"), "{e}");
        let specs = parse_labels(
            "shop-web-1",
            "web",
            &ai,
            &env,
            &LabelVariables::of(["OPENAI_API_KEY"]),
        )
        .unwrap();
        assert_eq!(specs.len(), 1);

        // The file is the operator's: it reads any variable.
        let text = "probes:\n  leak:\n    type: http\n    url: http://collector:9000/?p=${MAIL_PASSWORD}\n";
        assert!(parse_yaml(text, "m.yaml", &env).is_ok());
    }

    #[test]
    fn label_probes_belong_to_their_containers_project() {
        let l = label_map(&[
            ("com.docker.compose.project", "shop"),
            ("medic.probe.ping.type", "exec"),
            ("medic.probe.ping.service", "db"),
            ("medic.probe.ping.command", "true"),
        ]);
        let spec = parse_labels("shop-web-1", "web", &l, &no_env, &LabelVariables::default())
            .unwrap()
            .remove(0);
        assert_eq!(spec.project.as_deref(), Some("shop"));
        let ProbeKind::Exec(e) = &spec.kind else {
            panic!()
        };
        assert_eq!(
            e.target,
            ExecTarget::Service {
                service: "db".into(),
                project: Some("shop".into())
            }
        );
        let text = "probes:\n  ping:\n    type: exec\n    service: db\n    command: \"true\"\n";
        assert_eq!(
            parse_yaml(text, "m.yaml", &no_env).unwrap()[0].project,
            None
        );
    }

    #[test]
    fn intervals_and_timeouts_below_a_second_are_refused() {
        for (key, value) in [
            ("interval", "1ns"),
            ("interval", "999ms"),
            ("timeout", "1ns"),
            ("timeout", "500ms"),
        ] {
            let text = format!(
                "probes:\n  web:\n    type: tcp\n    host: db\n    port: 1\n    {key}: {value}\n"
            );
            let e = parse_yaml(&text, "m.yaml", &no_env).unwrap_err();
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("m.yaml:6:5: probe `web`, key `{key}`")),
                "{message}"
            );
            assert!(message.contains("the shortest is 1s"), "{message}");
        }
        let text = "probes:\n  web:\n    type: tcp\n    host: db\n    port: 1\n    interval: 1s\n    timeout: 1s\n";
        let spec = parse_yaml(text, "m.yaml", &no_env).unwrap().remove(0);
        assert_eq!(spec.schedule, Schedule::Interval(MIN_PROBE_INTERVAL));
        assert_eq!(spec.timeout, MIN_PROBE_INTERVAL);
    }
}
