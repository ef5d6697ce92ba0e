//! Membership endpoints: join, invite, leave, forget, kick, ban, unban,
//! knock. Rooms this server is not in are joined, knocked on and left
//! through a resident server (`make_*` / `send_*`); users of other servers
//! are invited through theirs.

use axum::extract::State;
use myelin_proto::canonical_json::Object;
use ruma::api::client::knock::knock_room::v3 as knock_room;
use ruma::api::client::membership::invite_user::v3::{self as invite_user, InvitationRecipient};
use ruma::api::client::membership::{
    ban_user::v3 as ban_user, forget_room::v3 as forget_room,
    join_room_by_id::v3 as join_room_by_id, join_room_by_id_or_alias::v3 as join_by_alias,
    kick_user::v3 as kick_user, leave_room::v3 as leave_room, unban_user::v3 as unban_user,
};
use ruma::{OwnedRoomId, OwnedServerName, RoomId, RoomOrAliasId, UserId};

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::federation::{
    invite as fed_invite, join as fed_join, knock as fed_knock, leave as fed_leave,
};
use crate::rooms::membership::{membership_of, set_membership};
use crate::rooms::profile;
use crate::state::AppState;
use crate::storage::{memberships, rooms};

/// Whether a local user other than `except` is joined to the room: then
/// this server is resident and membership changes are local events.
async fn resident_here(
    state: &AppState,
    room_id: &RoomId,
    except: Option<&UserId>,
) -> Result<bool, ApiError> {
    let ours = state.server_name();
    Ok(memberships::members(state.db(), room_id.as_str())
        .await?
        .iter()
        .filter(|m| m.membership == "join")
        .filter(|m| except.is_none_or(|u| u.as_str() != m.user_id))
        .filter_map(|m| UserId::parse(&m.user_id).ok())
        .any(|u| u.server_name() == ours))
}

/// Where a room we are not resident in may be joined: the servers the
/// client named, then those we know of (an invite's sender, the room ID's
/// server). `None` for a local room we hold (joined locally).
async fn remote_servers(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    via: &[OwnedServerName],
) -> Result<Option<Vec<OwnedServerName>>, ApiError> {
    let known = rooms::get(state.db(), room_id.as_str()).await?.is_some();
    if known && resident_here(state, room_id, None).await? {
        return Ok(None);
    }
    let mut servers = via.to_vec();
    servers.extend(fed_leave::resident_servers(state, room_id, user_id).await?);
    let servers = fed_join::candidates(state, &servers);
    if servers.is_empty() {
        if known {
            // Our room, with nobody in it: a local join is judged locally.
            return Ok(None);
        }
        return Err(ApiError::not_found("Unknown room"));
    }
    Ok(Some(servers))
}

/// The room an ID or alias names, with the servers the alias's server
/// says are in it.
async fn room_id_of(
    state: &AppState,
    id: &RoomOrAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>), ApiError> {
    let alias = match <&RoomId>::try_from(id) {
        Ok(room_id) => return Ok((room_id.to_owned(), Vec::new())),
        Err(alias) => alias,
    };
    if alias.server_name() != state.server_name() {
        return crate::federation::query::remote_alias(state, alias).await;
    }
    let room_id = crate::api::client::directory::aliases::resolve_local(state.db(), alias).await?;
    Ok((room_id, Vec::new()))
}

async fn join(
    state: &AppState,
    auth: &Authed,
    room_id: &RoomId,
    reason: Option<&str>,
    via: &[OwnedServerName],
) -> Result<(), ApiError> {
    if membership_of(state.db(), room_id.as_str(), auth.user_id.as_str())
        .await?
        .as_deref()
        == Some("join")
    {
        // Already joined: nothing to change (Synapse sends no new event
        // unless the profile changed).
        return Ok(());
    }
    if let Some(servers) = remote_servers(state, &auth.user_id, room_id, via).await? {
        return fed_join::join_remote(state, &auth.user_id, room_id, &servers, reason).await;
    }
    set_membership(
        state,
        room_id,
        &auth.user_id,
        &auth.user_id,
        "join",
        reason,
        Object::new(),
    )
    .await?;
    Ok(())
}

pub async fn join_by_id(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<join_room_by_id::Request>,
) -> Result<RumaResponse<join_room_by_id::Response>, ApiError> {
    join(&state, &auth, &req.room_id, req.reason.as_deref(), &[]).await?;
    Ok(RumaResponse(join_room_by_id::Response::new(req.room_id)))
}

pub async fn join_by_id_or_alias(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<join_by_alias::Request>,
) -> Result<RumaResponse<join_by_alias::Response>, ApiError> {
    let (room_id, mut servers) = room_id_of(&state, &req.room_id_or_alias).await?;
    servers.splice(0..0, req.via.iter().cloned());
    join(&state, &auth, &room_id, req.reason.as_deref(), &servers).await?;
    Ok(RumaResponse(join_by_alias::Response::new(room_id)))
}

pub async fn knock(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<knock_room::Request>,
) -> Result<RumaResponse<knock_room::Response>, ApiError> {
    let (room_id, mut servers) = room_id_of(&state, &req.room_id_or_alias).await?;
    servers.splice(0..0, req.via.iter().cloned());
    if let Some(servers) = remote_servers(&state, &auth.user_id, &room_id, &servers).await? {
        fed_knock::knock_remote(
            &state,
            &auth.user_id,
            &room_id,
            &servers,
            req.reason.as_deref(),
        )
        .await?;
        return Ok(RumaResponse(knock_room::Response::new(room_id)));
    }
    set_membership(
        &state,
        &room_id,
        &auth.user_id,
        &auth.user_id,
        "knock",
        req.reason.as_deref(),
        Object::new(),
    )
    .await?;
    Ok(RumaResponse(knock_room::Response::new(room_id)))
}

/// Membership endpoints acting on a room the sender must be in: an
/// unknown room is a 403 like any room the sender is not in.
async fn existing_room(state: &AppState, room_id: &RoomId) -> Result<(), ApiError> {
    if rooms::get(state.db(), room_id.as_str()).await?.is_some() {
        Ok(())
    } else {
        Err(ApiError::forbidden("You are not in this room"))
    }
}

pub async fn invite(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<invite_user::Request>,
) -> Result<RumaResponse<invite_user::Response>, ApiError> {
    let InvitationRecipient::UserId(recipient) = &req.recipient else {
        return Err(ApiError::invalid_param(
            "third-party invites are not supported",
        ));
    };
    existing_room(&state, &req.room_id).await?;
    let target = &recipient.user_id;
    if target.server_name() != state.server_name() {
        fed_invite::invite_remote(
            &state,
            &req.room_id,
            &auth.user_id,
            target,
            recipient.reason.as_deref(),
            false,
        )
        .await?;
        return Ok(RumaResponse(invite_user::Response::new()));
    }
    if profile::local_profile(state.db(), target.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("unknown user {target}")));
    }
    set_membership(
        &state,
        &req.room_id,
        &auth.user_id,
        target,
        "invite",
        recipient.reason.as_deref(),
        Object::new(),
    )
    .await?;
    Ok(RumaResponse(invite_user::Response::new()))
}

pub async fn leave(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<leave_room::Request>,
) -> Result<RumaResponse<leave_room::Response>, ApiError> {
    let current = membership_of(state.db(), req.room_id.as_str(), auth.user_id.as_str()).await?;
    match current.as_deref() {
        // Leaving a room one is not in changes nothing.
        None | Some("leave") => {}
        // Nobody else here is in the room: only a resident server can
        // make the leave (or the rejected invite) known.
        Some("join" | "invite" | "knock")
            if !resident_here(&state, &req.room_id, Some(&auth.user_id)).await?
                && !fed_leave::resident_servers(&state, &req.room_id, &auth.user_id)
                    .await?
                    .is_empty() =>
        {
            fed_leave::leave_remote(&state, &auth.user_id, &req.room_id, req.reason.as_deref())
                .await?;
        }
        _ => {
            set_membership(
                &state,
                &req.room_id,
                &auth.user_id,
                &auth.user_id,
                "leave",
                req.reason.as_deref(),
                Object::new(),
            )
            .await?;
        }
    }
    Ok(RumaResponse(leave_room::Response::new()))
}

pub async fn forget(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<forget_room::Request>,
) -> Result<RumaResponse<forget_room::Response>, ApiError> {
    let db = state.db();
    let room = req.room_id.as_str();
    match membership_of(db, room, auth.user_id.as_str())
        .await?
        .as_deref()
    {
        None => {}
        Some("leave" | "ban") => {
            memberships::forget(db, room, auth.user_id.as_str()).await?;
        }
        Some(_) => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::Unknown,
                "You must leave the room before forgetting it",
            ));
        }
    }
    Ok(RumaResponse(forget_room::Response::new()))
}

pub async fn kick(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<kick_user::Request>,
) -> Result<RumaResponse<kick_user::Response>, ApiError> {
    existing_room(&state, &req.room_id).await?;
    let target = membership_of(state.db(), req.room_id.as_str(), req.user_id.as_str()).await?;
    if !matches!(target.as_deref(), Some("join" | "invite" | "knock")) {
        return Err(ApiError::forbidden("The target user is not in the room"));
    }
    set_membership(
        &state,
        &req.room_id,
        &auth.user_id,
        &req.user_id,
        "leave",
        req.reason.as_deref(),
        Object::new(),
    )
    .await?;
    Ok(RumaResponse(kick_user::Response::new()))
}

pub async fn ban(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<ban_user::Request>,
) -> Result<RumaResponse<ban_user::Response>, ApiError> {
    existing_room(&state, &req.room_id).await?;
    set_membership(
        &state,
        &req.room_id,
        &auth.user_id,
        &req.user_id,
        "ban",
        req.reason.as_deref(),
        Object::new(),
    )
    .await?;
    Ok(RumaResponse(ban_user::Response::new()))
}

pub async fn unban(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<unban_user::Request>,
) -> Result<RumaResponse<unban_user::Response>, ApiError> {
    existing_room(&state, &req.room_id).await?;
    let target = membership_of(state.db(), req.room_id.as_str(), req.user_id.as_str()).await?;
    if target.as_deref() != Some("ban") {
        return Err(ApiError::forbidden("The target user is not banned"));
    }
    set_membership(
        &state,
        &req.room_id,
        &auth.user_id,
        &req.user_id,
        "leave",
        req.reason.as_deref(),
        Object::new(),
    )
    .await?;
    Ok(RumaResponse(unban_user::Response::new()))
}
