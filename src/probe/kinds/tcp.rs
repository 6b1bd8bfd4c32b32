//! The `tcp` probe: a TCP connection to `host:port` opens within the timeout.

use tokio::net::TcpStream;

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::{Failure, ProbeContext, Recorder};

/// Settings of a `tcp` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSettings {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Kind for TcpSettings {
    const TYPE: &'static str = "tcp";
    const KEYS: &'static [Key] = &[("host", Shape::Scalar), ("port", Shape::Scalar)];

    /// A label probe connects to its own service when `host` is not set.
    fn resolve(r: &Resolver) -> Res<TcpSettings> {
        let host = match (r.text("host")?, r.labels()) {
            (Some(h), _) if !h.is_empty() => h,
            (_, Some((_, service))) => service.to_string(),
            _ => {
                return Err(r.err(
                    Some("host"),
                    "is required: the host name or address to connect to",
                ))
            }
        };
        let port: u16 = r
            .number("port", "a port number between 1 and 65535")?
            .ok_or_else(|| r.err(Some("port"), "is required: the port to connect to"))?;
        if port == 0 {
            return Err(r.err(Some("port"), "expected a port number between 1 and 65535"));
        }
        Ok(TcpSettings { host, port })
    }

    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn run(&self, _ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, rec).await
    }
}

async fn run(s: &TcpSettings, rec: &Recorder) -> Result<(), Failure> {
    let address = format!("{}:{}", s.host, s.port);
    rec.detail("address", address.clone());
    let stream = rec
        .step("connect", async {
            TcpStream::connect((s.host.as_str(), s.port))
                .await
                .map_err(|e| format!("cannot connect to {address}: {e}"))
        })
        .await?;
    if let Ok(peer) = stream.peer_addr() {
        rec.note(format!("connected to {peer}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::probe::kinds::from_yaml;

    #[test]
    fn a_port_is_required_and_not_zero() {
        let e = from_yaml("type: tcp\nhost: db").unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.yaml: probe `p`, key `port`: is required: the port to connect to"
        );
        let e = from_yaml("type: tcp\nhost: db\nport: 0").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("expected a port number between 1 and 65535"),
            "{e}"
        );
        let spec = from_yaml("type: tcp\nhost: db\nport: 5432").unwrap();
        assert_eq!(spec.kind.target(), "db:5432");
        assert!(spec.kind.secret_values().is_empty());
    }
}
