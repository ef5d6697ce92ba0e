//! Which localparts can be registered: Synapse's rules, which are stricter
//! than the grammar of user IDs (the historical characters are not
//! accepted for new accounts).

use ruma::api::error::ErrorKind;
use ruma::{OwnedUserId, ServerName, UserId};

use crate::api::error::ApiError;

/// A localpart that cannot be registered, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidUsername(pub &'static str);

impl From<InvalidUsername> for ApiError {
    fn from(e: InvalidUsername) -> Self {
        ApiError::new(
            http::StatusCode::BAD_REQUEST,
            ErrorKind::InvalidUsername,
            e.0,
        )
    }
}

/// The user ID `localpart` would have, if it may be registered.
pub fn new_user_id(localpart: &str, server: &ServerName) -> Result<OwnedUserId, InvalidUsername> {
    if localpart.is_empty() {
        return Err(InvalidUsername("User ID cannot be empty"));
    }
    if !localpart
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b))
    {
        return Err(InvalidUsername(
            "User ID can only contain characters a-z, 0-9, or '=_-./+'",
        ));
    }
    // Application services own the `_` namespace by convention.
    if localpart.starts_with('_') {
        return Err(InvalidUsername("User ID may not begin with _"));
    }
    // Synapse gives guests numeric IDs; keeping them free avoids clashes
    // with accounts imported from it.
    if localpart.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidUsername(
            "Numeric user IDs are reserved for guest users.",
        ));
    }
    let user_id = UserId::parse_with_server_name(localpart, server)
        .map_err(|_| InvalidUsername("Invalid user ID"))?;
    if user_id.as_str().len() > 255 {
        return Err(InvalidUsername(
            "User ID may not be longer than 255 characters",
        ));
    }
    Ok(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synapse_rules() {
        let server = <&ServerName>::try_from("example.org").expect("server name");
        assert_eq!(
            new_user_id("alice.b-c_d=e/f+g", server)
                .expect("valid")
                .as_str(),
            "@alice.b-c_d=e/f+g:example.org"
        );
        for bad in ["", "Alice", "al ice", "al:ice", "_bridge", "12345", "é"] {
            assert!(new_user_id(bad, server).is_err(), "{bad:?}");
        }
        assert!(new_user_id(&"a".repeat(240), server).is_ok());
        assert!(new_user_id(&"a".repeat(250), server).is_err());
    }
}
