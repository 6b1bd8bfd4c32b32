//! The `tcp` probe: a TCP connection to `host:port` opens within the timeout.

use tokio::net::TcpStream;

use super::spec::TcpSettings;
use super::{Failure, Recorder};

pub(crate) async fn run(s: &TcpSettings, rec: &Recorder) -> Result<(), Failure> {
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
