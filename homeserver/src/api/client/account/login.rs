//! Logging in: `GET /login` (the supported login types) and `POST /login`
//! with `m.login.password` or `m.login.token`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use ruma::OwnedUserId;
use ruma::api::client::session::{get_login_types, login};
use ruma::api::error::ErrorKind;

use super::client_ip::ClientIp;
use super::credentials::{self, PasswordCheck};
use super::session_request;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::ratelimit::Limit;
use crate::state::AppState;
use crate::storage::accounts;

/// `GET /_matrix/client/v3/login`
pub async fn login_types(
    Ruma(_): Ruma<get_login_types::v3::Request>,
) -> RumaResponse<get_login_types::v3::Response> {
    let mut token = get_login_types::v3::TokenLoginType::new();
    // Signed-in clients can mint login tokens (`/login/get_token`).
    token.get_login_token = true;
    RumaResponse(get_login_types::v3::Response::new(vec![
        get_login_types::v3::LoginType::Password(get_login_types::v3::PasswordLoginType::new()),
        get_login_types::v3::LoginType::Token(token),
    ]))
}

/// The `POST /login` request. ruma's parser indexes the body's `type`
/// field without checking it is there (a panic on `{}`), so the body is
/// checked for a string `type` first.
pub struct LoginRequest(login::v3::Request);

impl FromRequest<AppState> for LoginRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| {
                if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large("Request body is too large")
                } else {
                    ApiError::bad_json(format!("cannot read the request body: {e}"))
                }
            })?;
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Err(e) => return Err(ApiError::not_json(format!("body is not valid JSON: {e}"))),
            Ok(serde_json::Value::Object(map)) => {
                if !map.get("type").is_some_and(serde_json::Value::is_string) {
                    return Err(ApiError::bad_json("'type' must be a string"));
                }
            }
            Ok(_) => return Err(ApiError::bad_json("the body must be a JSON object")),
        }
        let Ruma(req) = Ruma::<login::v3::Request>::from_request(
            Request::from_parts(parts, Body::from(bytes)),
            state,
        )
        .await?;
        Ok(LoginRequest(req))
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::forbidden("Invalid username or password")
}

fn deactivated() -> ApiError {
    ApiError::new(
        http::StatusCode::FORBIDDEN,
        ErrorKind::UserDeactivated,
        "This account has been deactivated",
    )
}

/// Who an `m.login.password` request proves to be.
#[allow(deprecated)] // `user` is the pre-r0.4 way to name the user, still sent.
async fn password_login(
    state: &AppState,
    info: &login::v3::Password,
) -> Result<OwnedUserId, ApiError> {
    let user_id = match (&info.identifier, &info.user) {
        (Some(identifier), _) => credentials::identified_user(state, identifier),
        (None, Some(user)) => credentials::local_user_id(state, user),
        (None, None) => return Err(ApiError::missing_param("Missing param: identifier")),
    };
    let Some(user_id) = user_id else {
        return Err(invalid_credentials());
    };
    match credentials::check_password(state, &user_id, &info.password).await? {
        PasswordCheck::Valid(user) => Ok(user.user_id),
        PasswordCheck::Invalid => Err(invalid_credentials()),
        PasswordCheck::Deactivated => Err(deactivated()),
    }
}

/// Who an `m.login.token` request proves to be: the token is used up.
async fn token_login(state: &AppState, token: &str) -> Result<OwnedUserId, ApiError> {
    let Some(user_id) = state.login_tokens().take(&accounts::hash_token(token)) else {
        return Err(ApiError::forbidden("Invalid login token"));
    };
    match accounts::get_user(state.db(), user_id.as_str()).await? {
        Some(user) if user.deactivated => Err(deactivated()),
        Some(user) => Ok(user.user_id),
        None => Err(ApiError::forbidden("Invalid login token")),
    }
}

/// `POST /_matrix/client/v3/login`
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    LoginRequest(req): LoginRequest,
) -> Result<RumaResponse<login::v3::Response>, ApiError> {
    state.rate_limiter().check(Limit::Login, &ip.key())?;
    if let Some(device_id) = &req.device_id {
        super::validate_device_id(device_id.as_str())?;
    }
    let user_id = match &req.login_info {
        login::v3::LoginInfo::Password(info) => password_login(&state, info).await?,
        login::v3::LoginInfo::Token(info) => token_login(&state, &info.token).await?,
        other => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                format!("Unknown login type {}", other.login_type()),
            ));
        }
    };
    let refreshable = req.refresh_token.then(|| {
        Duration::from_millis(state.config().sessions.refreshable_access_token_lifetime_ms)
    });
    let session = accounts::login(
        state.db(),
        user_id.as_str(),
        session_request(
            req.device_id.map(|d| d.to_string()),
            req.initial_device_display_name,
            ip,
            refreshable,
        ),
    )
    .await?;
    tracing::info!(%user_id, device_id = %session.device_id, "logged in");
    let mut resp = login::v3::Response::new(user_id, session.access_token, session.device_id);
    resp.refresh_token = session.refresh_token;
    resp.expires_in = session.expires_in;
    #[allow(deprecated)] // Old clients still read it.
    {
        resp.home_server = Some(state.server_name().to_owned());
    }
    let base = &state.config().server.public_baseurl;
    if !base.is_empty() {
        resp.well_known = Some(login::v3::DiscoveryInfo::new(
            login::v3::HomeserverInfo::new(base.clone()),
        ));
    }
    Ok(RumaResponse(resp))
}
