//! User-interactive authentication (UIA): endpoints that need proof beyond
//! an access token (registration, deleting devices, changing the password,
//! deactivation, issuing login tokens) answer 401 with the flows a client
//! can complete and a `session` ID, then accept one stage per request until
//! a flow is complete.
//!
//! Sessions live in memory with an expiry (see `sessions` in the config).
//! A session is bound to the operation and user that started it, so a
//! session completed to delete one device cannot authorise deactivation,
//! nor be used by another user. A successful session is consumed.

use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo};
use ruma::api::error::{ErrorKind, StandardErrorBody};
use ruma::{OwnedUserId, UserId};

use super::credentials::{self, PasswordCheck};
use crate::api::error::ApiError;
use crate::state::AppState;

/// Server-side state of one UIA session.
#[derive(Debug, Clone)]
pub struct UiaaSession {
    purpose: &'static str,
    user_id: Option<OwnedUserId>,
    completed: Vec<AuthType>,
}

/// The flow of operations on one's own account: confirm the password.
pub fn password_flows() -> Vec<AuthFlow> {
    vec![AuthFlow::new(vec![AuthType::Password])]
}

/// The 401 response telling the client what to do next.
fn challenge(
    flows: &[AuthFlow],
    session: String,
    completed: Vec<AuthType>,
    error: Option<(ErrorKind, &str)>,
) -> ApiError {
    let mut info = UiaaInfo::new(flows.to_vec());
    info.completed = completed;
    info.session = Some(session);
    // Clients index into `params` per stage; none of our stages has any,
    // but an empty object is what Synapse sends and clients expect.
    info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
    info.auth_error =
        error.map(|(kind, msg)| Box::new(StandardErrorBody::new(kind, msg.to_owned())));
    ApiError::Uiaa(Box::new(info))
}

/// Runs one step of UIA for `purpose` (a fixed name of the operation) on
/// behalf of `user` (`None` for registration). `Ok(())` means a flow is
/// complete and the operation may proceed; otherwise the error is the 401
/// challenge (or a 4xx for a broken session).
pub async fn authenticate(
    state: &AppState,
    purpose: &'static str,
    user: Option<&UserId>,
    flows: &[AuthFlow],
    auth: Option<&AuthData>,
) -> Result<(), ApiError> {
    let sessions = state.uiaa_sessions();
    let Some(auth) = auth else {
        let id = crate::random::lower_alnum(24);
        sessions.insert(
            id.clone(),
            UiaaSession {
                purpose,
                user_id: user.map(ToOwned::to_owned),
                completed: Vec::new(),
            },
        );
        return Err(challenge(flows, id, Vec::new(), None));
    };
    // A first request may already carry a stage without a session (as
    // Synapse allows); it starts one.
    let (id, mut session) = match auth.session() {
        Some(id) => match sessions.take(id) {
            Some(session) => (id.to_owned(), session),
            None => {
                return Err(ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    ErrorKind::Unknown,
                    "Unknown or expired user-interactive auth session",
                ));
            }
        },
        None => (
            crate::random::lower_alnum(24),
            UiaaSession {
                purpose,
                user_id: user.map(ToOwned::to_owned),
                completed: Vec::new(),
            },
        ),
    };
    if session.purpose != purpose || session.user_id.as_deref() != user {
        // The session stays usable for what it was started for.
        sessions.insert(id, session);
        return Err(ApiError::forbidden(
            "Requested operation has changed during the UI authentication session.",
        ));
    }

    let stage_error = match run_stage(state, user, auth).await? {
        Ok(Some(stage)) => {
            if !session.completed.contains(&stage) {
                session.completed.push(stage);
            }
            None
        }
        Ok(None) => None,
        Err(e) => Some(e),
    };
    let done = flows
        .iter()
        .any(|f| f.stages.iter().all(|s| session.completed.contains(s)));
    if done && stage_error.is_none() {
        return Ok(());
    }
    let completed = session.completed.clone();
    sessions.insert(id.clone(), session);
    Err(challenge(
        flows,
        id,
        completed,
        stage_error.as_ref().map(|(k, m)| (k.clone(), *m)),
    ))
}

/// Checks the stage a request carries: `Ok(Ok(Some(stage)))` when it
/// passed, `Ok(Ok(None))` when it carried no stage (fallback
/// acknowledgement), `Ok(Err(..))` for a failed stage, reported inside the
/// 401 so the client can try again.
async fn run_stage(
    state: &AppState,
    user: Option<&UserId>,
    auth: &AuthData,
) -> Result<Result<Option<AuthType>, (ErrorKind, &'static str)>, ApiError> {
    Ok(match auth {
        AuthData::Dummy(_) => Ok(Some(AuthType::Dummy)),
        AuthData::Password(p) => {
            let Some(user) = user else {
                // Registration has no account to confirm a password for.
                return Ok(Err((
                    ErrorKind::Unrecognized,
                    "Password auth is not available here",
                )));
            };
            let claimed = credentials::identified_user(state, &p.identifier);
            if claimed.as_deref() != Some(user) {
                return Ok(Err((ErrorKind::Forbidden, "Invalid password")));
            }
            match credentials::check_password(state, user, &p.password).await? {
                PasswordCheck::Valid(_) => Ok(Some(AuthType::Password)),
                PasswordCheck::Invalid => Err((ErrorKind::Forbidden, "Invalid password")),
                PasswordCheck::Deactivated => Err((
                    ErrorKind::UserDeactivated,
                    "This account has been deactivated",
                )),
            }
        }
        AuthData::FallbackAcknowledgement(_) => Ok(None),
        _ => Err((ErrorKind::Unrecognized, "Unsupported authentication type")),
    })
}
