//! Settings of both programs, read once from the environment.
//!
//! Every variable has a default that works against services on the host's loopback, so
//! `cargo run --bin demo-app` needs nothing set; the compose stack points them at its services.
//! Parsing takes a lookup function so tests can pass a map instead of mutating the process
//! environment.

use anyhow::{bail, Context};
use std::fmt;

use crate::fault::Fault;
use crate::mask::mask_uri;

/// Default `MONGODB_URL`: a MongoDB on the host's loopback.
pub const DEFAULT_MONGODB_URL: &str = "mongodb://127.0.0.1:27017";
/// Default `RABBITMQ_URL`: RabbitMQ's default vhost with its loopback-only guest account.
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default `MONGODB_DB`, used when neither the variable nor the URI names a database.
pub const DEFAULT_MONGODB_DB: &str = "demo";
/// Default `UPLOAD_QUEUE`: the queue name the issue and medic's probes expect.
pub const DEFAULT_UPLOAD_QUEUE: &str = "uploads";
/// Default `APP_PORT`.
pub const DEFAULT_APP_PORT: u16 = 8000;
/// Default `WORKER_ADMIN_PORT`.
pub const DEFAULT_WORKER_ADMIN_PORT: u16 = 8001;
/// Default `MAX_UPLOAD_BYTES`: 10 MiB, well under MongoDB's 16 MiB document limit.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

/// Where the services are: shared by the app and the worker.
#[derive(Clone)]
pub struct Backends {
    /// MongoDB connection string (`MONGODB_URL`, alias `MONGO_URI`). May hold a password, so it
    /// is only ever printed through [`mask_uri`].
    pub mongodb_url: String,
    /// Database holding the `documents` collection (`MONGODB_DB`; else the URI's database; else
    /// `demo`). Tests give each run its own.
    pub mongodb_db: Option<String>,
    /// AMQP URI of the broker carrying jobs (`RABBITMQ_URL`). May hold a password.
    pub rabbitmq_url: String,
    /// Durable queue the app publishes jobs to and the worker consumes (`UPLOAD_QUEUE`).
    /// Configurable so parallel tests do not steal each other's jobs.
    pub upload_queue: String,
}

/// Settings of `demo-app`.
#[derive(Clone, Debug)]
pub struct AppSettings {
    /// MongoDB and RabbitMQ.
    pub backends: Backends,
    /// TCP port the HTTP API listens on, on all interfaces (`APP_PORT`).
    pub port: u16,
    /// Largest accepted request body (`MAX_UPLOAD_BYTES`); bigger uploads get 413.
    pub max_upload_bytes: usize,
}

/// Settings of `demo-worker`.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// MongoDB and RabbitMQ.
    pub backends: Backends,
    /// TCP port of the admin API (health and fault switches), on all interfaces
    /// (`WORKER_ADMIN_PORT`).
    pub admin_port: u16,
    /// Fault switch position at start (`WORKER_FAULT`): lets a drill start a broken worker.
    pub initial_fault: Fault,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("mongodb_url", &mask_uri(&self.mongodb_url))
            .field("mongodb_db", &self.mongodb_db)
            .field("rabbitmq_url", &mask_uri(&self.rabbitmq_url))
            .field("upload_queue", &self.upload_queue)
            .finish()
    }
}

impl Backends {
    /// Reads the backend variables through `lookup` (a variable set to "" counts as unset).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mongodb_url = get("MONGODB_URL")
            .or_else(|| get("MONGO_URI"))
            .unwrap_or_else(|| DEFAULT_MONGODB_URL.to_owned());
        if !mongodb_url.starts_with("mongodb://") && !mongodb_url.starts_with("mongodb+srv://") {
            bail!(
                "MONGODB_URL must start with mongodb:// (got {}); example: mongodb://mongo:27017",
                mask_uri(&mongodb_url)
            );
        }
        let rabbitmq_url = get("RABBITMQ_URL").unwrap_or_else(|| DEFAULT_RABBITMQ_URL.to_owned());
        if !rabbitmq_url.starts_with("amqp://") && !rabbitmq_url.starts_with("amqps://") {
            bail!(
                "RABBITMQ_URL must start with amqp:// (got {}); example: amqp://guest:guest@rabbitmq:5672/%2f",
                mask_uri(&rabbitmq_url)
            );
        }
        Ok(Self {
            mongodb_url,
            mongodb_db: get("MONGODB_DB"),
            rabbitmq_url,
            upload_queue: get("UPLOAD_QUEUE").unwrap_or_else(|| DEFAULT_UPLOAD_QUEUE.to_owned()),
        })
    }
}

impl AppSettings {
    /// Reads the app's settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the app's settings through `lookup`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            backends: Backends::from_lookup(lookup)?,
            port: parse_or(lookup, "APP_PORT", DEFAULT_APP_PORT)?,
            max_upload_bytes: parse_or(lookup, "MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)?,
        })
    }
}

impl WorkerSettings {
    /// Reads the worker's settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the worker's settings through `lookup`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            backends: Backends::from_lookup(lookup)?,
            admin_port: parse_or(lookup, "WORKER_ADMIN_PORT", DEFAULT_WORKER_ADMIN_PORT)?,
            initial_fault: parse_or(lookup, "WORKER_FAULT", Fault::None)?,
        })
    }
}

/// Reads the port the app listens on, for `demo-app healthcheck`.
pub fn app_port_from_env() -> anyhow::Result<u16> {
    parse_or(
        &|name| std::env::var(name).ok(),
        "APP_PORT",
        DEFAULT_APP_PORT,
    )
}

/// Reads the worker's admin port, for `demo-worker healthcheck` and `demo-worker fault`.
pub fn worker_admin_port_from_env() -> anyhow::Result<u16> {
    parse_or(
        &|name| std::env::var(name).ok(),
        "WORKER_ADMIN_PORT",
        DEFAULT_WORKER_ADMIN_PORT,
    )
}

fn parse_or<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    match lookup(name).filter(|value| !value.trim().is_empty()) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| format!("{name}={value:?} is not valid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_point_at_loopback_services() {
        let app = AppSettings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(app.backends.mongodb_url, DEFAULT_MONGODB_URL);
        assert_eq!(app.backends.rabbitmq_url, DEFAULT_RABBITMQ_URL);
        assert_eq!(app.backends.mongodb_db, None);
        assert_eq!(app.backends.upload_queue, "uploads");
        assert_eq!(app.port, 8000);
        let worker = WorkerSettings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(worker.admin_port, 8001);
        assert_eq!(worker.initial_fault, Fault::None);
    }

    #[test]
    fn mongo_uri_is_an_alias_and_mongodb_url_wins() {
        let only_alias = lookup(&[("MONGO_URI", "mongodb://mongo:27017")]);
        assert_eq!(
            Backends::from_lookup(&only_alias).unwrap().mongodb_url,
            "mongodb://mongo:27017"
        );
        let both = lookup(&[
            ("MONGO_URI", "mongodb://alias:27017"),
            ("MONGODB_URL", "mongodb://main:27017"),
        ]);
        assert_eq!(
            Backends::from_lookup(&both).unwrap().mongodb_url,
            "mongodb://main:27017"
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_never_show_a_password() {
        let error = AppSettings::from_lookup(&lookup(&[("APP_PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("APP_PORT"), "{error}");
        let error =
            WorkerSettings::from_lookup(&lookup(&[("WORKER_FAULT", "explode")])).unwrap_err();
        assert!(format!("{error:#}").contains("WORKER_FAULT"), "{error:#}");
        let error = Backends::from_lookup(&lookup(&[("RABBITMQ_URL", "http://u:hunter2@h")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("RABBITMQ_URL") && !error.contains("hunter2"),
            "{error}"
        );
        let debug = format!(
            "{:?}",
            Backends::from_lookup(&lookup(&[("RABBITMQ_URL", "amqp://u:hunter2@h/%2f")])).unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
