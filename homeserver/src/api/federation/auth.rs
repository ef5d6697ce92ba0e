//! `X-Matrix` request authentication as a layer: the body is read (within the body limit),
//! the header parsed, the origin's key looked up (fetched when unknown) and the signature
//! checked; only then does the handler run, with the verified [`Origin`] in the request.
//! Every failure is `401 M_UNAUTHORIZED`, as the spec asks.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use myelin_federation::request_auth::{self, SignedRequest};
use ruma::OwnedServerName;
use ruma::api::error::ErrorKind;

use crate::api::error::ApiError;
use crate::state::AppState;

/// The server a request was verified to come from.
#[derive(Debug, Clone)]
pub struct Origin(pub OwnedServerName);

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, message)
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Only present when the layer verified the request; a route without the layer
        // must not be able to act for a server.
        parts
            .extensions
            .get::<Origin>()
            .cloned()
            .ok_or_else(|| unauthorized("Missing X-Matrix authentication"))
    }
}

/// Middleware: verifies the request's `X-Matrix` signature before the handler runs.
pub async fn require_x_matrix(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let header = match request_auth::parse_header(parts.headers.get(http::header::AUTHORIZATION)) {
        Ok(h) => h,
        Err(e) => return unauthorized(e.to_string()).into_response(),
    };
    let limit = state.config().limits.max_request_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return ApiError::too_large("Request body is too large").into_response(),
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let signed = SignedRequest {
        method: parts.method.as_str(),
        uri: &uri,
        body: &bytes,
    };
    if let Err(e) = state
        .federation()
        .keys()
        .verify_request(&header, signed)
        .await
    {
        tracing::info!(origin = %header.origin, key = %header.key, error = %e, "federation request refused");
        return unauthorized(e.to_string()).into_response();
    }
    // A server that talks to us is up: end any back-off towards it.
    state.federation().sender().on_inbound(&header.origin).await;
    parts.extensions.insert(Origin(header.origin));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
