//! `GET /_matrix/client/v3/sync`: the handler and its long-poll.
//!
//! With a `since` token and a `timeout`, a request that finds nothing new
//! waits: it registers with the notifier (under the user and every room
//! they are joined to) *before* computing the response, so a change that
//! commits between that computation and the wait still wakes it. A wake-up
//! that turns out to carry nothing for this request (a filtered event, say)
//! computes again and goes back to waiting until the timeout.
//!
//! A `since` token also acknowledges the device's to-device messages up to
//! its to-device position (they are deleted once, before the first
//! computation): the client only sends a token it received.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use prometheus::IntGauge;
use ruma::RoomId;
use ruma::api::client::sync::sync_events::v3 as sync_events;

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::{self, memberships, push_rules};
use crate::sync::{self, SyncParams, SyncToken};

/// The longest a request may wait. Clients ask for 30 s; reverse proxies
/// cut connections after a minute or so anyway, and an unbounded wait would
/// let one client hold server resources at will.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Counts a waiting request in `sync_waiting` for as long as it lives:
/// dropped on every exit, including the client going away (the handler's
/// future is dropped mid-wait).
struct Waiting(IntGauge);

impl Waiting {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn sync_events(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<sync_events::Request>,
) -> Result<RumaResponse<sync_events::Response>, ApiError> {
    let db = state.db();
    let since = req
        .since
        .as_deref()
        .map(SyncToken::parse_param)
        .transpose()?;
    let filter = sync::filter::resolve(db, auth.user_id.as_str(), req.filter).await?;
    let filter_json = serde_json::to_string(&filter)
        .map_err(|e| ApiError::internal("filter not serialisable", e))?;
    // The user counts as syncing (online) until this request ends.
    let _syncing = crate::presence::sync_started(&state, &auth.user_id, &req.set_presence).await;
    if since.is_none() {
        // Push rules are stored on first access; do it before taking the
        // token so the initial sync carries them (clients need them).
        push_rules::ensure_stored(db, &auth.user_id).await?;
    }
    if let Some(since) = &since {
        sync::e2ee::acknowledge_to_device(db, &auth.user_id, &auth.device_id, since).await?;
    }
    let params = SyncParams {
        user_id: &auth.user_id,
        device_id: &auth.device_id,
        since,
        full_state: req.full_state,
        filter: &filter,
        filter_json: &filter_json,
    };
    let timeout = if since.is_none() || req.full_state {
        Duration::ZERO
    } else {
        req.timeout.unwrap_or(Duration::ZERO).min(MAX_TIMEOUT)
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting: Option<Waiting> = None;
    loop {
        let rows = memberships::all_of_user(db, auth.user_id.as_str()).await?;
        if timeout.is_zero() {
            return answer(&state, &params, rows).await;
        }
        let joined = rows
            .iter()
            .filter(|m| m.membership == "join")
            .filter_map(|m| <&RoomId>::try_from(m.room_id.as_str()).ok());
        let listener = state.notifier().listen(&auth.user_id, joined);
        if let Some(resp) = respond(&state, &params, rows, Empty::Wait).await? {
            return Ok(RumaResponse(resp));
        }
        waiting.get_or_insert_with(|| Waiting::new(&state.metrics().sync_waiting));
        match tokio::time::timeout_at(deadline, listener.woken()).await {
            Ok(()) => state.metrics().sync_woken.inc(),
            Err(_) => {
                // The empty answer still carries what every response does
                // (key counts, the next token).
                let rows = memberships::all_of_user(db, auth.user_id.as_str()).await?;
                return answer(&state, &params, rows).await;
            }
        }
    }
}

/// What [`respond`] does when there is nothing new.
#[derive(Clone, Copy, PartialEq)]
enum Empty {
    /// Answers all the same (no timeout, or it ran out).
    Answer,
    /// Returns `None`: the request goes on waiting.
    Wait,
}

/// The response for the streams' positions now, empty or not.
async fn answer(
    state: &AppState,
    params: &SyncParams<'_>,
    rows: Arc<Vec<memberships::MembershipRow>>,
) -> Result<RumaResponse<sync_events::Response>, ApiError> {
    respond(state, params, rows, Empty::Answer)
        .await?
        .map(RumaResponse)
        .ok_or_else(|| ApiError::internal("sync", "no response to answer with"))
}

/// The response for the streams' positions now, read from one snapshot
/// taken after them (released before any wait). With [`Empty::Wait`], `None` when nothing
/// is new: when no stream the request can see moved past the token (every
/// change moves one, so the response would be empty: a client long-polling
/// a busy server finds itself here after most responses, and nothing is
/// computed), or
/// when what moved is nothing for this request (a filtered event, say).
async fn respond(
    state: &AppState,
    params: &SyncParams<'_>,
    rows: Arc<Vec<memberships::MembershipRow>>,
    empty: Empty,
) -> Result<Option<sync_events::Response>, ApiError> {
    // The positions are kept in memory, and published once committed: a
    // snapshot taken after reading them holds everything up to them.
    let now = sync::current_token(state, state.db()).await?;
    if empty == Empty::Wait
        && params
            .since
            .is_some_and(|since| !sync::moved_for(state, params, since, now))
    {
        return Ok(None);
    }
    let snapshot = state.db().read_snapshot().await?;
    storage::holding_snapshot(async {
        let resp = compute(state, &snapshot, params, Arc::unwrap_or_clone(rows), now).await?;
        if empty == Empty::Wait && sync::is_empty(&resp) {
            return Ok(None);
        }
        Ok(Some(resp))
    })
    .await
}

/// Computes one response, timing it in `sync_compute_seconds`.
async fn compute(
    state: &AppState,
    db: &crate::storage::Db,
    params: &SyncParams<'_>,
    rows: Vec<memberships::MembershipRow>,
    now: SyncToken,
) -> Result<sync_events::Response, ApiError> {
    let started = std::time::Instant::now();
    let resp = sync::compute(state, db, params, rows, now).await?;
    let kind = if params.since.is_none() {
        "initial"
    } else {
        "incremental"
    };
    state
        .metrics()
        .sync_compute_seconds
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    Ok(resp)
}
