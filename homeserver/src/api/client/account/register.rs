//! Account registration: `POST /register` (user-interactive auth with the
//! `m.login.dummy` flow) and `GET /register/available`.

use std::time::Duration;

use axum::extract::State;
use ruma::api::client::account::register::RegistrationKind;
use ruma::api::client::account::{get_username_availability, register};
use ruma::api::client::uiaa::{AuthFlow, AuthType};
use ruma::api::error::ErrorKind;
use ruma::{OwnedUserId, UserId};

use super::client_ip::ClientIp;
use super::username::new_user_id;
use super::{session_request, uiaa};
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::ratelimit::Limit;
use crate::state::AppState;
use crate::storage::accounts::{self, UserInUse};

/// Registration asks for no proof beyond completing the session: there is
/// no captcha, email or token configuration (yet).
fn registration_flows() -> Vec<AuthFlow> {
    vec![AuthFlow::new(vec![AuthType::Dummy])]
}

fn registration_disabled() -> ApiError {
    ApiError::forbidden("Registration has been disabled")
}

fn user_in_use() -> ApiError {
    ApiError::new(
        http::StatusCode::BAD_REQUEST,
        ErrorKind::UserInUse,
        "User ID already taken.",
    )
}

/// A localpart that is free and allowed, or the spec error saying why not.
async fn available_user_id(state: &AppState, localpart: &str) -> Result<OwnedUserId, ApiError> {
    let user_id = new_user_id(localpart, state.server_name())?;
    if accounts::user_exists(state.db(), user_id.as_str()).await? {
        return Err(user_in_use());
    }
    Ok(user_id)
}

/// A random free user ID for registrations without a username. Synapse
/// counts upwards; random IDs do not reveal how many accounts exist.
async fn generated_user_id(state: &AppState) -> Result<OwnedUserId, ApiError> {
    for _ in 0..10 {
        // A leading letter keeps it clear of the numeric (guest) namespace.
        let localpart = format!("u{}", crate::random::lower_alnum(11));
        let user_id = UserId::parse_with_server_name(localpart.as_str(), state.server_name())
            .map_err(|e| ApiError::internal("generated an invalid user ID", e))?;
        if !accounts::user_exists(state.db(), user_id.as_str()).await? {
            return Ok(user_id);
        }
    }
    Err(ApiError::internal(
        "cannot generate a free user ID",
        "ten collisions",
    ))
}

/// `POST /_matrix/client/v3/register`
pub async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    Ruma(req): Ruma<register::v3::Request>,
) -> Result<RumaResponse<register::v3::Response>, ApiError> {
    state.rate_limiter().check(Limit::Registration, &ip.key())?;
    match req.kind {
        RegistrationKind::User => {}
        RegistrationKind::Guest => {
            return Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                ErrorKind::GuestAccessForbidden,
                "Guest access is disabled",
            ));
        }
        _ => return Err(ApiError::invalid_param("Invalid registration kind")),
    }
    if !state.config().registration.enabled {
        return Err(registration_disabled());
    }
    if req.login_type.is_some() {
        // `m.login.application_service`: there are no application services.
        return Err(ApiError::forbidden(
            "Application service registration is not supported",
        ));
    }
    if req
        .password
        .as_ref()
        .is_some_and(|p| p.len() > crate::password::MAX_PASSWORD_LEN)
    {
        return Err(ApiError::invalid_param("Password is too long"));
    }
    if let Some(device_id) = &req.device_id {
        super::validate_device_id(device_id.as_str())?;
    }
    // As Synapse: usernames are lower-cased, and a bad or taken one is
    // reported before the client goes through the auth flow.
    let requested = match &req.username {
        Some(name) => Some(available_user_id(&state, &name.to_lowercase()).await?),
        None => None,
    };

    uiaa::authenticate(
        &state,
        "register",
        None,
        &registration_flows(),
        req.auth.as_ref(),
    )
    .await?;

    let Some(password) = req.password else {
        return Err(ApiError::missing_param("Missing params: password"));
    };
    let user_id = match requested {
        Some(id) => id,
        None => generated_user_id(&state).await?,
    };
    let password_hash = crate::password::hash(password).await?;
    let refreshable = req.refresh_token.then(|| {
        Duration::from_millis(state.config().sessions.refreshable_access_token_lifetime_ms)
    });
    let session = (!req.inhibit_login).then(|| {
        session_request(
            req.device_id.as_ref().map(|d| d.to_string()),
            req.initial_device_display_name,
            ip,
            refreshable,
        )
    });
    let session = match accounts::create_user(
        state.db(),
        user_id.as_str(),
        Some(&password_hash),
        false,
        None,
        session,
    )
    .await?
    {
        Ok(session) => session,
        // Taken between the check and the insert by a concurrent request.
        Err(UserInUse) => return Err(user_in_use()),
    };
    tracing::info!(%user_id, "registered");
    let mut resp = register::v3::Response::new(user_id);
    if let Some(session) = session {
        resp.access_token = Some(session.access_token);
        resp.device_id = Some(session.device_id);
        resp.refresh_token = session.refresh_token;
        resp.expires_in = session.expires_in;
    }
    Ok(RumaResponse(resp))
}

/// `GET /_matrix/client/v3/register/available`
pub async fn available(
    State(state): State<AppState>,
    ip: ClientIp,
    Ruma(req): Ruma<get_username_availability::v3::Request>,
) -> Result<RumaResponse<get_username_availability::v3::Response>, ApiError> {
    state.rate_limiter().check(Limit::Registration, &ip.key())?;
    if !state.config().registration.enabled {
        return Err(registration_disabled());
    }
    available_user_id(&state, &req.username).await?;
    Ok(RumaResponse(get_username_availability::v3::Response::new(
        true,
    )))
}
