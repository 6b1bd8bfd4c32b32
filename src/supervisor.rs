//! The supervisor's public face, kept for its callers: the healing itself lives in
//! [`crate::heal`].

pub use crate::heal::{spawn, Command, CommandError, SupervisorSettings};
