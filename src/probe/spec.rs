//! What a probe is, gathered under one name for callers: its spec and schedule
//! ([`super::common`]), its type and settings ([`super::kinds`]), reading it from the YAML file
//! or labels ([`super::parse`]) and the errors that name where a bad value was written
//! ([`super::error`]).

pub use super::common::{
    CronSchedule, ProbeSpec, Schedule, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, LABEL_PREFIX,
    MIN_PROBE_INTERVAL,
};
pub use super::error::{ConfigOrigin, ProbeConfigError};
pub use super::kinds::ai::{AiProvider, AiSettings};
pub use super::kinds::disk::DiskSettings;
pub use super::kinds::exec::{ExecSettings, ExecTarget};
pub use super::kinds::git::GitSettings;
pub use super::kinds::http::HttpSettings;
pub use super::kinds::memory::MemorySettings;
pub use super::kinds::mongodb::MongodbSettings;
pub use super::kinds::rabbitmq::RabbitmqSettings;
pub use super::kinds::tcp::TcpSettings;
pub use super::kinds::upload::UploadSettings;
pub use super::kinds::ProbeKind;
pub use super::parse::{parse_labels, parse_labels_each, parse_yaml};
pub use super::reply::Header;
pub use super::size::{format_size, parse_size};
