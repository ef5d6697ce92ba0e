//! Synapse's shared-secret registration, `/_synapse/admin/v1/register`,
//! which admin tools (`register_new_matrix_user`) and test suites use to
//! create accounts, admins included, without the client registration flow.
//!
//! `GET` hands out a single-use nonce (valid 60 s); `POST` creates the
//! account if `mac` is the hex HMAC-SHA1, keyed with
//! `registration.shared_secret`, of
//! `nonce \0 username \0 password \0 ("admin" | "notadmin")`
//! (`\0 user_type` appended when a user type is given). It works whether
//! or not public registration is enabled, and is off when no secret is set.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use hmac::{Hmac, KeyInit, Mac};
use http::StatusCode;
use ruma::api::error::ErrorKind;
use serde_json::{Value, json};
use sha1::Sha1;

use super::client::account::client_ip::ClientIp;
use super::client::account::username::new_user_id;
use super::error::ApiError;
use crate::state::AppState;
use crate::storage::accounts::{self, SessionRequest, UserInUse};

/// Synapse's bound on the username and password of this endpoint.
const MAX_FIELD_LEN: usize = 512;

fn disabled() -> ApiError {
    // Synapse answers 400 (not 404) when no secret is configured.
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorKind::Unknown,
        "Shared secret registration is not enabled",
    )
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::Unknown, message)
}

/// `GET /_synapse/admin/v1/register`
pub async fn nonce(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.config().registration.shared_secret.is_empty() {
        return Err(disabled());
    }
    let nonce = crate::random::lower_alnum(64);
    state.admin_nonces().insert(nonce.clone(), ());
    Ok(Json(json!({ "nonce": nonce })))
}

/// A required string field of at most [`MAX_FIELD_LEN`] bytes, without NUL
/// (which would make the MAC input ambiguous).
fn string_field<'a>(
    body: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, ApiError> {
    match body.get(name) {
        None => Err(ApiError::bad_json(format!("{name} must be specified"))),
        Some(Value::String(s)) if s.len() <= MAX_FIELD_LEN && !s.contains('\0') => Ok(s),
        Some(_) => Err(bad_request(&format!("Invalid {name}"))),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Checks `mac` in constant time (a timing leak would let an attacker
/// forge it byte by byte).
fn mac_matches(secret: &str, parts: &[&[u8]], mac: &str) -> bool {
    let Ok(mut hmac) = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hmac.update(b"\0");
        }
        hmac.update(part);
    }
    match decode_hex(mac) {
        Some(given) => hmac.verify_slice(&given).is_ok(),
        None => false,
    }
}

/// `POST /_synapse/admin/v1/register`
pub async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let secret = &state.config().registration.shared_secret;
    if secret.is_empty() {
        return Err(disabled());
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("Request body is too large")
        } else {
            ApiError::bad_json(format!("cannot read the request body: {e}"))
        }
    })?;
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(ApiError::bad_json("the body must be a JSON object")),
        Err(e) => return Err(ApiError::not_json(format!("body is not valid JSON: {e}"))),
    };
    let nonce = match body.get("nonce") {
        Some(Value::String(n)) => n.as_str(),
        Some(_) => return Err(bad_request("unrecognised nonce")),
        None => return Err(ApiError::bad_json("nonce must be specified")),
    };
    // Taking the nonce uses it up even if what follows fails, as Synapse:
    // every MAC guess costs a fresh nonce.
    if state.admin_nonces().take(nonce).is_none() {
        return Err(bad_request("unrecognised nonce"));
    }
    let username = string_field(&body, "username")?;
    let password = string_field(&body, "password")?;
    let admin = match body.get("admin") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_json("admin must be a boolean")),
    };
    let user_type = match body.get("user_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if ["support", "bot"].contains(&t.as_str()) => Some(t.as_str()),
        Some(_) => return Err(bad_request("Invalid user type")),
    };
    let displayname = match body.get("displayname") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.chars().count() <= 256 => Some(d.clone()),
        Some(_) => return Err(bad_request("Invalid displayname")),
    };
    let Some(Value::String(mac)) = body.get("mac") else {
        return Err(ApiError::bad_json("mac must be specified"));
    };
    let mut parts: Vec<&[u8]> = vec![
        nonce.as_bytes(),
        username.as_bytes(),
        password.as_bytes(),
        if admin { b"admin" } else { b"notadmin" },
    ];
    if let Some(t) = user_type {
        parts.push(t.as_bytes());
    }
    if !mac_matches(secret, &parts, mac) {
        return Err(ApiError::forbidden("HMAC incorrect"));
    }

    let user_id = new_user_id(&username.to_lowercase(), state.server_name())?;
    let password_hash = crate::password::hash(password.to_owned()).await?;
    let session = SessionRequest {
        device_id: crate::random::device_id(),
        display_name: None,
        ip: ip.0.map(|ip| ip.to_string()),
        refreshable: None,
    };
    let created = accounts::create_user(
        state.db(),
        user_id.as_str(),
        Some(&password_hash),
        admin,
        displayname.as_deref(),
        Some(session),
    )
    .await?;
    let session = match created {
        Ok(Some(session)) => session,
        Ok(None) => return Err(ApiError::internal("registration made no session", user_id)),
        Err(UserInUse) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::UserInUse,
                "User ID already taken.",
            ));
        }
    };
    tracing::info!(%user_id, admin, "registered with the shared secret");
    Ok(Json(json!({
        "user_id": user_id,
        "home_server": state.server_name(),
        "access_token": session.access_token,
        "device_id": session.device_id,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_synapses() {
        // Python: hmac.new(b"secret", b"abc\0alice\0pw\0admin", hashlib.sha1).hexdigest()
        let expected = "dc5ed98b283077684552e3f72d67f26b3366bf58";
        let parts: [&[u8]; 4] = [b"abc", b"alice", b"pw", b"admin"];
        assert!(mac_matches("secret", &parts, expected));
        assert!(mac_matches("secret", &parts, &expected.to_uppercase()));
        assert!(!mac_matches("secret", &parts[..3], expected));
        assert!(!mac_matches("other", &parts, expected));
        assert!(!mac_matches("secret", &parts, "zz"));
        assert!(!mac_matches("secret", &parts, ""));
    }
}
