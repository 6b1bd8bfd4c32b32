//! The demo stack medic heals: an upload app and a worker.
//!
//! Users run stacks of this shape: an HTTP app takes an upload, stores it in MongoDB and queues a
//! job on RabbitMQ; a worker extracts the text and stores it back. The failures that hurt are the
//! ones Docker cannot see (a worker that runs but no longer consumes, an app that answers
//! `/health` but cannot reach its queue), so the worker carries fault switches that break it in
//! exactly those ways while the process stays up.
//!
//! The two binaries (`demo-app`, `demo-worker`) are thin; everything they do lives here so the
//! tests can drive one step at a time:
//!
//! ```text
//! config -> store (MongoDB) ----------------> app (HTTP: upload, read, delete)
//!        -> queue (RabbitMQ: publish/consume) -> worker (consume, extract, store) + admin (faults)
//! ```

pub mod admin;
pub mod app;
pub mod backoff;
pub mod client;
pub mod config;
pub mod extract;
pub mod fault;
pub mod mask;
pub mod queue;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod worker;
