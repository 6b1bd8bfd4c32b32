//! Healing: every decision in one pure step ([`decide`]), and the loop that feeds it and
//! carries out what it decides ([`runner`]), beside the engine [`watcher`] and the
//! [`restart`] tasks.
//!
//! The path from an event to a restart: the watcher forwards an engine event; the runner turns
//! it into an [`decide::Observation`]; [`decide::step`] applies the rules and returns
//! [`decide::Effect`]s; the runner writes history, keeps alerts, saves state and spawns one
//! [`restart`] task per workload, whose completion comes back as an observation.

pub mod decide;
mod restart;
pub mod runner;
#[cfg(test)]
mod scripted;
pub mod state;
pub mod targets;
mod watcher;

pub use runner::{spawn, Command, CommandError, SupervisorSettings};
