//! The outbound federation HTTP client: resolves the destination with [`discovery`], talks
//! HTTP/1.1 over TLS (certificate checked for the name discovery chose, `Host` header as
//! discovery says), signs every request with `X-Matrix`, bounds every request in time and
//! every response in size, and keeps a few idle connections per destination for reuse.
//!
//! Requests and responses are ruma's federation endpoint types: [`FederationClient::send`]
//! takes any of them.
//!
//! [`discovery`]: crate::discovery

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use myelin_proto::signing::KeyPair;
use ruma::api::error::IntoHttpError;
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponse, OutgoingBody as _, OutgoingRequest};
use ruma::{OwnedServerName, ServerName};

use crate::discovery::{DiscoveryError, Resolver};
use crate::request_auth::{SignedRequest, sign_request};

/// Limits of the client; defaults follow Synapse where it has one.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Whole request: resolution, connection, sending and reading the response
    /// (Synapse: 60 s).
    pub request_timeout: Duration,
    /// Largest response body read (Synapse caps JSON responses at 100 MiB for `/state`; most
    /// answers are tiny, so callers can lower it per request with [`FederationClient::send_with_limit`]).
    pub max_response_bytes: usize,
    /// Idle connections kept per destination.
    pub max_idle_per_destination: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            max_response_bytes: 100 * 1024 * 1024,
            max_idle_per_destination: 4,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Why a federation request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the request: {0}")]
    Request(String),
    #[error("cannot reach {destination}: {source}")]
    Discovery {
        destination: String,
        source: DiscoveryError,
    },
    #[error("transport error talking to {0}: {1}")]
    Transport(String, String),
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("response from {0} is larger than {1} bytes")]
    TooLarge(String, usize),
    /// The remote answered with an error status; `errcode` is the Matrix error code when
    /// the body had one.
    #[error("{destination} answered {status} {errcode:?}: {message}")]
    Remote {
        destination: String,
        status: StatusCode,
        errcode: Option<String>,
        message: String,
    },
    #[error("bad response from {0}: {1}")]
    BadResponse(String, String),
}

impl ClientError {
    /// The HTTP status the remote answered with, if it answered with an error.
    pub fn remote_status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Remote { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Matrix `errcode` the remote answered with, if any.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Remote { errcode, .. } => errcode.as_deref(),
            _ => None,
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Signs and sends federation requests; cheap to clone.
#[derive(Clone)]
pub struct FederationClient {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: Resolver,
    origin: OwnedServerName,
    key: KeyPair,
    config: ClientConfig,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

/// A raw response: status and body (already size-capped).
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl FederationClient {
    /// A client sending as `origin`, signing with `key`.
    pub fn new(
        resolver: Resolver,
        origin: OwnedServerName,
        key: KeyPair,
        config: ClientConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                resolver,
                origin,
                key,
                config,
                idle: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn origin(&self) -> &ServerName {
        &self.inner.origin
    }

    pub fn resolver(&self) -> &Resolver {
        &self.inner.resolver
    }

    /// Sends a ruma federation request to `destination` and parses its response.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
    {
        self.send_with_limit(destination, request, self.inner.config.max_response_bytes)
            .await
    }

    /// [`FederationClient::send`] with a smaller response size cap.
    pub async fn send_with_limit<R>(
        &self,
        destination: &ServerName,
        request: R,
        max_response_bytes: usize,
    ) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
    {
        let http_request = request
            .try_into_http_request_inner("", ())
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let (parts, body) = http_request.into_parts();
        let content_type = body.content_type();
        let body: Vec<u8> = body.try_into_buf().map_err(|e| {
            let e: IntoHttpError = e.into();
            ClientError::Request(e.to_string())
        })?;
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .ok_or_else(|| ClientError::Request("request without a path".to_owned()))?;
        let raw = self
            .request(
                destination,
                parts.method,
                &uri,
                Bytes::from(body),
                content_type,
                max_response_bytes,
            )
            .await?;
        let mut response = http::Response::builder()
            .status(raw.status)
            .body(raw.body.as_ref())
            .map_err(|e| ClientError::BadResponse(destination.to_string(), e.to_string()))?;
        *response.headers_mut() = raw.headers;
        R::IncomingResponse::try_from_http_response_inner(response)
            .map_err(|e| ClientError::BadResponse(destination.to_string(), e.to_string()))
    }

    /// Sends a signed request with a raw JSON body (empty for none). Error statuses become
    /// [`ClientError::Remote`].
    pub async fn request(
        &self,
        destination: &ServerName,
        method: Method,
        uri: &str,
        body: Bytes,
        content_type: Option<HeaderValue>,
        max_response_bytes: usize,
    ) -> Result<RawResponse, ClientError> {
        let dest = destination.to_string();
        let attempt = self.request_untimed(
            destination,
            method,
            uri,
            body,
            content_type,
            max_response_bytes,
        );
        let raw = tokio::time::timeout(self.inner.config.request_timeout, attempt)
            .await
            .map_err(|_| ClientError::Timeout(dest.clone()))??;
        if raw.status.is_client_error() || raw.status.is_server_error() {
            let (errcode, message) = error_body(&raw.body);
            return Err(ClientError::Remote {
                destination: dest,
                status: raw.status,
                errcode,
                message,
            });
        }
        Ok(raw)
    }

    async fn request_untimed(
        &self,
        destination: &ServerName,
        method: Method,
        uri: &str,
        body: Bytes,
        content_type: Option<HeaderValue>,
        max_response_bytes: usize,
    ) -> Result<RawResponse, ClientError> {
        let dest = destination.to_string();
        let authorization = sign_request(
            &self.inner.key,
            &self.inner.origin,
            destination,
            SignedRequest {
                method: method.as_str(),
                uri,
                body: &body,
            },
        )
        .map_err(|e| ClientError::Request(e.to_string()))?;
        let resolved = self
            .inner
            .resolver
            .resolve(destination.as_str())
            .await
            .map_err(|source| ClientError::Discovery {
                destination: dest.clone(),
                source,
            })?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, resolved.host_header.as_str())
            .header(http::header::AUTHORIZATION, authorization)
            .header(
                http::header::USER_AGENT,
                concat!("Myelin/", env!("CARGO_PKG_VERSION")),
            );
        if !body.is_empty() {
            builder = builder.header(
                http::header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static("application/json")),
            );
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Request(e.to_string()))?;

        let mut sender = match self.take_idle(&dest) {
            Some(sender) => sender,
            None => {
                let stream = self
                    .inner
                    .resolver
                    .connect(&resolved)
                    .await
                    .map_err(|source| ClientError::Discovery {
                        destination: dest.clone(),
                        source,
                    })?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| ClientError::Transport(dest.clone(), e.to_string()))?;
                let for_log = dest.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(destination = for_log, error = %e, "federation connection ended");
                    }
                });
                sender
            }
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Transport(dest.clone(), e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, max_response_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::TooLarge(dest.clone(), max_response_bytes)
                } else {
                    ClientError::Transport(dest.clone(), e.to_string())
                }
            })?
            .to_bytes();
        // The body was read to the end, so the connection can carry the next request.
        self.put_idle(&dest, sender);
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn take_idle(&self, destination: &str) -> Option<Sender> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(destination)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < self.inner.config.idle_timeout && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put_idle(&self, destination: &str, sender: Sender) {
        if sender.is_closed() || self.inner.config.max_idle_per_destination == 0 {
            return;
        }
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(destination.to_owned()).or_default();
        let timeout = self.inner.config.idle_timeout;
        list.retain(|e| e.since.elapsed() < timeout && !e.sender.is_closed());
        if list.len() < self.inner.config.max_idle_per_destination {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// The `errcode` and `error` of a Matrix error body, or the body's start as the message.
fn error_body(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        errcode: Option<String>,
        error: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.errcode, e.error.unwrap_or_default()),
        Err(_) => (
            None,
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    }
}
