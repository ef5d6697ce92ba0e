//! The address a request comes from, for per-IP rate limits and the
//! device list's "last seen" address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;

/// The peer address of the connection. `None` when the router runs
/// without connection info (in-process tests). Forwarding headers are not
/// trusted: behind a reverse proxy all clients share its address.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The key for per-IP rate limits.
    pub fn key(&self) -> String {
        self.0.map(|ip| ip.to_string()).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}
