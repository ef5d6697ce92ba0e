//! Errors as the client-server API defines them: an HTTP status and a JSON
//! body `{"errcode": "M_...", "error": "..."}` (plus fields some codes
//! carry, like `retry_after_ms`), or a user-interactive auth challenge.
//! Handlers return `Result<_, ApiError>`; nothing else writes error bodies.

use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::StatusCode;
use ruma::api::OutgoingResponseExt;
use ruma::api::client::uiaa::{UiaaInfo, UiaaResponse};
use ruma::api::error::{
    Error as MatrixError, ErrorBody, ErrorKind, LimitExceededErrorData, StandardErrorBody,
    UnknownTokenErrorData,
};

#[derive(Debug, Clone)]
pub enum ApiError {
    Matrix {
        status: StatusCode,
        kind: ErrorKind,
        message: String,
    },
    /// 401 with the flows the client must complete (user-interactive auth).
    Uiaa(Box<UiaaInfo>),
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError::Matrix {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::MissingToken,
            "Missing access token",
        )
    }

    pub fn unknown_token(soft_logout: bool) -> Self {
        let mut data = UnknownTokenErrorData::new();
        data.soft_logout = soft_logout;
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::UnknownToken(data),
            "Unknown or expired access token",
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    pub fn limit_exceeded(retry_after: std::time::Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(ruma::api::error::RetryAfter::Delay(retry_after));
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitExceeded(data),
            "Too many requests",
        )
    }

    pub fn unrecognized(status: StatusCode) -> Self {
        Self::new(status, ErrorKind::Unrecognized, "Unrecognized request")
    }

    /// A failure of ours (database, I/O). The details go to the log, not to
    /// the client.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unknown,
            "Internal server error",
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Matrix { status, .. } => *status,
            ApiError::Uiaa(_) => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        crate::metrics::DATABASE_ERRORS.inc();
        ApiError::internal("database error", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let rendered = match self {
            ApiError::Matrix {
                status,
                kind,
                message,
            } => MatrixError::new(
                status,
                ErrorBody::Standard(StandardErrorBody::new(kind, message)),
            )
            .try_into_http_response::<BytesMut>(),
            ApiError::Uiaa(info) => {
                UiaaResponse::AuthResponse(*info).try_into_http_response::<BytesMut>()
            }
        };
        match rendered {
            Ok(resp) => resp
                .map(|b| axum::body::Body::from(b.freeze()))
                .into_response(),
            Err(e) => {
                tracing::error!(%e, "cannot render an error response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
