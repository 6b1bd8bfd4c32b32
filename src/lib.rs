//! medic: a Docker-native sidecar that keeps a docker compose stack healthy.
//!
//! Data flows one way: [`config`] → [`docker`] (discovery and events) → [`policy`] (pure
//! decisions) → [`heal`] (restarts) and [`store`] (durable state) → [`api`].

pub mod api;
pub mod app;
pub mod backoff;
pub mod commands;
pub mod config;
pub mod docker;
pub mod heal;
pub mod model;
pub mod notify;
pub mod policy;
pub mod probe;
pub mod redact;
pub mod report;
pub mod scheduler;
pub mod status;
pub mod store;
