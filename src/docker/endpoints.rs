//! Every Engine API call medic makes, and what a socket proxy must allow for each.
//!
//! Users who put a proxy in front of the Docker socket (Tecnativa's docker-socket-proxy and its
//! forks: HAProxy rules switched on by environment variables) allow only what a tool needs. This
//! list is the one place that names medic's calls: errors use it to say which variable to set
//! when the proxy denies one, and the README's least-privilege table lists the same calls.
//!
//! The variables follow that proxy's rules: any method but GET (and HEAD) needs `POST=1`, and
//! each path prefix needs its section's variable (`CONTAINERS`, `EVENTS`, `EXEC`, `VERSION`).

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

/// One Engine API call, as a socket proxy's rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The HTTP method.
    pub method: &'static str,
    /// The path without the API version prefix, `{id}` standing for a container or exec id.
    pub path: &'static str,
    /// What to set on the proxy so it lets this call through.
    pub allow: &'static str,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The engine's version: the first call after every (re)connect, and how the API version is
/// negotiated.
pub const VERSION: Endpoint = Endpoint {
    method: "GET",
    path: "/version",
    allow: "set VERSION=1",
};

/// The watched containers: every reconcile, and `exec` probes that name a service.
pub const LIST_CONTAINERS: Endpoint = Endpoint {
    method: "GET",
    path: "/containers/json",
    allow: "set CONTAINERS=1",
};

/// One container: finding medic's own, and the look right before every restart.
pub const INSPECT_CONTAINER: Endpoint = Endpoint {
    method: "GET",
    path: "/containers/{id}/json",
    allow: "set CONTAINERS=1",
};

/// The restart itself.
pub const RESTART_CONTAINER: Endpoint = Endpoint {
    method: "POST",
    path: "/containers/{id}/restart",
    allow: "set POST=1 (a restart is a POST; with it the proxy lets restarts through under \
            CONTAINERS=1 or ALLOW_RESTARTS=1)",
};

/// The event stream that makes healing immediate.
pub const EVENTS: Endpoint = Endpoint {
    method: "GET",
    path: "/events",
    allow: "set EVENTS=1",
};

/// `exec` probes: creating the command in the container.
pub const CREATE_EXEC: Endpoint = Endpoint {
    method: "POST",
    path: "/containers/{id}/exec",
    allow: "set POST=1 and CONTAINERS=1 (exec probes)",
};

/// `exec` probes: running it and reading its output.
pub const START_EXEC: Endpoint = Endpoint {
    method: "POST",
    path: "/exec/{id}/start",
    allow: "set EXEC=1 and POST=1 (exec probes)",
};

/// `exec` probes: its exit code.
pub const INSPECT_EXEC: Endpoint = Endpoint {
    method: "GET",
    path: "/exec/{id}/json",
    allow: "set EXEC=1 (exec probes)",
};

/// Every call medic makes, in the order the README's table lists them.
pub const ALL: &[Endpoint] = &[
    VERSION,
    LIST_CONTAINERS,
    INSPECT_CONTAINER,
    EVENTS,
    RESTART_CONTAINER,
    CREATE_EXEC,
    START_EXEC,
    INSPECT_EXEC,
];

/// True when a 403 answer came from a socket proxy's rules rather than from the engine: HAProxy
/// answers with its own HTML page ("403 Forbidden ... Request forbidden by administrative
/// rules"), other proxies with a bare "Forbidden". The engine's own 403s (an authorization
/// plugin) carry a JSON message, which bollard has already unwrapped into plain words.
pub(crate) fn is_proxy_denial(status: u16, message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    status == 403 && (lower.contains("<html") || lower.trim() == "forbidden" || lower.is_empty())
}

/// Which denied endpoints were already reported, so each is logged once and not on every
/// attempt (a reconcile every second would otherwise flood the log).
#[derive(Debug, Default)]
pub struct Denials {
    /// The endpoints (`METHOD /path`) reported so far.
    reported: Mutex<HashSet<String>>,
}

impl Denials {
    /// True the first time `endpoint` is seen, false after.
    pub fn first(&self, endpoint: &str) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint.to_string())
    }

    /// Logs a denial at ERROR the first time its endpoint is denied and at DEBUG after; returns
    /// false (and logs nothing) for any other error, which the caller reports as before.
    pub fn report(&self, error: &super::EngineError) -> bool {
        let super::EngineError::Denied { endpoint, .. } = error else {
            return false;
        };
        if self.first(endpoint) {
            tracing::error!(%endpoint, "{error}; medic goes on with what the proxy allows");
        } else {
            tracing::debug!(%endpoint, "denied again by the socket proxy");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_denials_are_told_from_the_engine_s_own_403() {
        let haproxy = "<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n";
        assert!(is_proxy_denial(403, haproxy));
        assert!(is_proxy_denial(403, "Forbidden\n"));
        assert!(!is_proxy_denial(
            403,
            "authorization denied by plugin opa: no"
        ));
        assert!(!is_proxy_denial(500, haproxy));
    }

    #[test]
    fn each_endpoint_is_reported_once() {
        let denials = Denials::default();
        assert!(denials.first("POST /containers/{id}/restart"));
        assert!(!denials.first("POST /containers/{id}/restart"));
        assert!(denials.first("GET /events"));
    }

    #[test]
    fn every_call_names_a_variable_to_set() {
        for endpoint in ALL {
            assert!(endpoint.allow.starts_with("set "), "{endpoint}");
            if endpoint.method != "GET" {
                assert!(endpoint.allow.contains("POST=1"), "{endpoint}");
            }
        }
    }
}
