//! TCP + TLS connections to resolved addresses, with the private-address filter applied.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName as TlsName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::DiscoveryError;

/// Tries `addrs` in order and returns the first TLS connection whose certificate is valid for
/// `tls_name` (rustls checks IP-address names against the certificate's IP SANs, and DNS
/// names against its DNS SANs, as the spec's steps require).
pub(crate) async fn connect_tls(
    tls: &Arc<rustls::ClientConfig>,
    addrs: &[SocketAddr],
    tls_name: &TlsName<'static>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, DiscoveryError> {
    let connector = TlsConnector::from(tls.clone());
    let mut last_error = None;
    for &addr in addrs {
        let attempt = async {
            let tcp = TcpStream::connect(addr).await?;
            // Federation requests are small and latency-bound.
            tcp.set_nodelay(true)?;
            connector.connect(tls_name.clone(), tcp).await
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "federation connect failed");
                last_error = Some(e.to_string());
            }
            Err(_) => {
                tracing::debug!(%addr, "federation connect timed out");
                last_error = Some(format!("connecting to {addr} timed out"));
            }
        }
    }
    Err(DiscoveryError::Connect(
        last_error.unwrap_or_else(|| "no addresses".to_owned()),
    ))
}
