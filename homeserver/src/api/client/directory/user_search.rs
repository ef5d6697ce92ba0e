//! `POST /user_directory/search`: local users whose user ID or display
//! name contains the search term (case-insensitive). By default, as in
//! Synapse, only users who share a room with the searcher or are in a
//! public room are found; `user_directory.search_all_users` finds every
//! user. Deactivated users are never found.

use axum::extract::State;
use ruma::api::client::user_directory::search_users;
use ruma::{OwnedMxcUri, OwnedUserId};

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::directory;

/// Synapse's cap on `limit`.
const MAX_LIMIT: u64 = 50;

/// Search terms longer than this are cut (they match nothing longer).
const MAX_TERM_CHARS: usize = 256;

pub async fn search(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<search_users::v3::Request>,
) -> Result<RumaResponse<search_users::v3::Response>, ApiError> {
    let limit = u64::from(req.limit).min(MAX_LIMIT);
    let term: String = req
        .search_term
        .trim()
        .chars()
        .take(MAX_TERM_CHARS)
        .collect();
    if term.is_empty() || limit == 0 {
        return Ok(RumaResponse(search_users::v3::Response::new(
            Vec::new(),
            false,
        )));
    }
    let all = state.config().user_directory.search_all_users;
    // One more than asked tells whether there are more.
    let mut hits =
        directory::search_users(state.db(), auth.user_id.as_str(), &term, limit + 1, all).await?;
    let limited = hits.len() as u64 > limit;
    hits.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let results = hits
        .into_iter()
        .filter_map(|hit| {
            let mut user = search_users::v3::User::new(OwnedUserId::try_from(hit.user_id).ok()?);
            user.display_name = hit.displayname;
            user.avatar_url = hit.avatar_url.map(OwnedMxcUri::from);
            Some(user)
        })
        .collect();
    Ok(RumaResponse(search_users::v3::Response::new(
        results, limited,
    )))
}
