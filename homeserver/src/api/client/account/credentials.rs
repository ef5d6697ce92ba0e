//! Checking who a client claims to be: user identifiers (`alice` or
//! `@alice:server`) and passwords. Shared by `/login` and the
//! `m.login.password` stage of user-interactive auth.

use ruma::api::client::uiaa::UserIdentifier;
use ruma::{OwnedUserId, UserId};

use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::accounts::{self, User};

/// The local user ID a client means by `user`: a localpart or a full user
/// ID on this server. Localparts are matched lower-cased, since accounts
/// are only ever created lower-case (as Synapse, which matches them
/// case-insensitively). `None` for IDs on other servers and garbage.
pub fn local_user_id(state: &AppState, user: &str) -> Option<OwnedUserId> {
    let localpart = if user.starts_with('@') {
        let id = UserId::parse(user).ok()?;
        if id.server_name() != state.server_name() {
            return None;
        }
        id.localpart().to_lowercase()
    } else {
        user.to_lowercase()
    };
    UserId::parse_with_server_name(localpart.as_str(), state.server_name()).ok()
}

/// The user an `identifier` names, if it names a local user by ID.
/// Third-party identifiers (email, phone) name nobody: this server binds
/// none.
pub fn identified_user(state: &AppState, identifier: &UserIdentifier) -> Option<OwnedUserId> {
    match identifier {
        UserIdentifier::Matrix(m) => local_user_id(state, &m.user),
        _ => None,
    }
}

pub enum PasswordCheck {
    Valid(User),
    /// Unknown user, no password set, or the wrong password: one outcome,
    /// so that failures do not reveal which accounts exist.
    Invalid,
    Deactivated,
}

/// Checks `password` for `user_id`. A deactivated account is reported as
/// such whatever the password (as Synapse does: its hash is gone).
pub async fn check_password(
    state: &AppState,
    user_id: &UserId,
    password: &str,
) -> Result<PasswordCheck, ApiError> {
    let Some(user) = accounts::get_user(state.db(), user_id.as_str()).await? else {
        crate::password::verify_nothing(password.to_owned()).await;
        return Ok(PasswordCheck::Invalid);
    };
    if user.deactivated {
        return Ok(PasswordCheck::Deactivated);
    }
    if password.len() > crate::password::MAX_PASSWORD_LEN {
        return Ok(PasswordCheck::Invalid);
    }
    let Some(hash) = user.password_hash.clone() else {
        crate::password::verify_nothing(password.to_owned()).await;
        return Ok(PasswordCheck::Invalid);
    };
    if crate::password::verify(password.to_owned(), hash).await {
        Ok(PasswordCheck::Valid(user))
    } else {
        Ok(PasswordCheck::Invalid)
    }
}
