//! The bridge between axum and ruma's endpoint types: [`Ruma<T>`] parses a
//! request into the ruma type of its endpoint (path arguments, query, body),
//! [`RumaResponse`] renders a ruma response. Handlers deal in the spec's
//! types only.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt};

use super::error::ApiError;

/// A request parsed into the ruma type of its endpoint.
pub struct Ruma<T>(pub T);

impl<S, T> FromRequest<S> for Ruma<T>
where
    S: Send + Sync,
    T: IncomingRequest,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| ApiError::invalid_param(format!("bad path: {e}")))?;
        let args: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
        // The body extractor enforces the configured size limit.
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(body_error)?;
        let http_req = http::Request::from_parts(parts, bytes.as_ref());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        T::try_from_http_request(http_req, &arg_refs)
            .map(Ruma)
            .map_err(|e| request_error(e, &bytes))
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("Request body is too large")
    } else {
        ApiError::bad_json(format!("cannot read the request body: {e}"))
    }
}

/// Maps ruma's parse failures to the spec's error codes: a body that is not
/// JSON at all is `M_NOT_JSON`, JSON of the wrong shape `M_BAD_JSON`, bad
/// query or path arguments `M_INVALID_PARAM`.
fn request_error(e: FromHttpRequestError, body: &[u8]) -> ApiError {
    match e {
        FromHttpRequestError::Deserialization(DeserializationError::Json(err)) => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                ApiError::not_json(format!("body is not valid JSON: {err}"))
            } else {
                ApiError::bad_json(format!("{err}"))
            }
        }
        FromHttpRequestError::Deserialization(err) => ApiError::invalid_param(err.to_string()),
        FromHttpRequestError::MethodMismatch { .. } => {
            ApiError::unrecognized(http::StatusCode::METHOD_NOT_ALLOWED)
        }
        other => ApiError::bad_json(other.to_string()),
    }
}

/// A ruma response rendered as HTTP.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(resp) => resp
                .map(|b| axum::body::Body::from(b.freeze()))
                .into_response(),
            Err(e) => ApiError::internal("cannot render a response", e).into_response(),
        }
    }
}
