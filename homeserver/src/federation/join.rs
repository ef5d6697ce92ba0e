//! Joining a room of another server (the joining side of `make_join` /
//! `send_join`), and what every membership handshake shares: the room
//! versions we speak, templates, the keys a set of events needs, and how
//! a remote server's refusal reaches the client.

use std::str::FromStr;

use http::StatusCode;
use myelin_federation::client::ClientError;
use myelin_federation::discovery::DiscoveryError;
use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::pdu::parse_event_id;
use myelin_proto::signing::{KeyPair, signatures_of};
use myelin_proto::{Pdu, PduBuilder, RoomVersion};
use ruma::api::error::{ErrorKind, IncompatibleRoomVersionErrorData};
use ruma::api::federation::membership::{create_join_event, prepare_join_event};
use ruma::{OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::value::RawValue;

use super::keys::MemoryKeyRing;
use crate::api::error::ApiError;
use crate::rooms::ingest::RoomStateAnswer;
use crate::rooms::profile;
use crate::state::AppState;

/// The room versions we can join (the versions `proto` implements).
pub const SUPPORTED_VERSIONS: [RoomVersion; 3] =
    [RoomVersion::V10, RoomVersion::V11, RoomVersion::V12];

/// Largest template answer read (`make_*`, a single event).
const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// Most servers tried for one join.
const MAX_SERVERS_TRIED: usize = 10;

/// The room versions we speak, as ruma names them (for `ver=`).
pub fn supported_version_ids() -> Vec<RoomVersionId> {
    SUPPORTED_VERSIONS
        .iter()
        .filter_map(|v| RoomVersionId::try_from(v.as_str()).ok())
        .collect()
}

/// A room version named by another server, if we speak it.
pub fn supported(version: &RoomVersionId) -> Option<RoomVersion> {
    RoomVersion::from_str(version.as_str())
        .ok()
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
}

/// `M_INCOMPATIBLE_ROOM_VERSION` for a room of `version`.
pub fn incompatible(version: &str) -> ApiError {
    let kind = match RoomVersionId::try_from(version) {
        Ok(v) => ErrorKind::IncompatibleRoomVersion(IncompatibleRoomVersionErrorData::new(v)),
        Err(_) => ErrorKind::Unknown,
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        kind,
        format!("Your homeserver does not support room version {version}"),
    )
}

/// An event as another server is offered it for filling in: the event
/// without hashes, signatures and unsigned data.
pub fn template_of(pdu: &Pdu) -> Object {
    pdu.json()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "hashes" | "signatures" | "unsigned"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A PDU as a raw JSON body value.
pub fn raw_pdu(pdu: &Pdu) -> Result<Box<RawValue>, ApiError> {
    raw_object(pdu.json())
}

/// A canonical JSON object as a raw JSON value.
pub fn raw_object(obj: &Object) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(Value::Object(obj.clone()).to_canonical_string())
        .map_err(|e| ApiError::internal("canonical JSON unreadable", e))
}

/// A raw JSON value as a canonical JSON object (`Err` says why not).
pub fn object_of(raw: &RawValue) -> Result<Object, String> {
    canonical_json::parse_object(raw.get().as_bytes()).map_err(|e| e.to_string())
}

/// The signing keys the required signers of `pdus` used, for
/// [`super::KeyFetcher::keyring_for`].
pub fn keys_needed<'a>(
    pdus: impl IntoIterator<Item = &'a Pdu>,
) -> Vec<(OwnedServerName, String, i64)> {
    let mut out = Vec::new();
    for pdu in pdus {
        for server in pdu.required_signers() {
            if let Ok(sigs) = signatures_of(pdu.json(), server.as_str()) {
                for key_id in sigs.keys() {
                    let entry = (server.clone(), (*key_id).to_owned(), pdu.origin_server_ts());
                    if !out.contains(&entry) {
                        out.push(entry);
                    }
                }
            }
        }
    }
    out
}

/// A key ring for verifying `pdus` (keys fetched as needed).
pub async fn keyring_for<'a>(
    state: &AppState,
    pdus: impl IntoIterator<Item = &'a Pdu>,
) -> MemoryKeyRing {
    state
        .federation()
        .keys()
        .keyring_for(&keys_needed(pdus))
        .await
}

/// Why a remote server's answer is refused (a 502: the remote misbehaved).
pub fn bad_answer(server: &ServerName, why: impl std::fmt::Display) -> ApiError {
    tracing::info!(%server, reason = %why, "membership answer refused");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorKind::Unknown,
        format!("{server} answered with something we cannot use: {why}"),
    )
}

/// A failed request to a resident server, as the client sees it: the
/// remote's refusal (403, incompatible version, not found) is passed on;
/// anything else is a 502.
pub fn remote_failure(server: &ServerName, e: &ClientError) -> ApiError {
    tracing::info!(%server, error = %e, "membership request failed");
    // A server name that does not resolve names no server: nothing to
    // join there (as for queries).
    if let ClientError::Discovery {
        source: DiscoveryError::Dns(_) | DiscoveryError::InvalidServerName(_),
        ..
    } = e
    {
        return ApiError::not_found(format!("{server} does not exist"));
    }
    match (e.remote_status(), e.errcode()) {
        (Some(StatusCode::FORBIDDEN), _) => ApiError::forbidden(format!("{server} refused: {e}")),
        (Some(StatusCode::BAD_REQUEST), Some("M_INCOMPATIBLE_ROOM_VERSION")) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::Unknown,
            format!("{server} offers only room versions we do not support"),
        ),
        (Some(StatusCode::NOT_FOUND), _) => ApiError::not_found(format!("{server}: {e}")),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::Unknown,
            format!("{server} could not be asked: {e}"),
        ),
    }
}

/// Our member event built on a resident server's template: only the graph
/// fields (`prev_events`, `auth_events`, `depth`) come from the template,
/// after checking it is the event we asked for; the content is ours, plus
/// the `join_authorised_via_users_server` the resident chose (restricted
/// rooms).
pub fn event_from_template(
    origin: &ServerName,
    key: &KeyPair,
    version: RoomVersion,
    room_id: &RoomId,
    user_id: &UserId,
    template: &Object,
    mut content: Object,
) -> Result<Pdu, String> {
    let membership = content
        .get("membership")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let str_field = |k: &str| template.get(k).and_then(Value::as_str);
    if str_field("type") != Some("m.room.member")
        || str_field("state_key") != Some(user_id.as_str())
        || str_field("sender") != Some(user_id.as_str())
    {
        return Err("the template is not our member event".to_owned());
    }
    if str_field("room_id") != Some(room_id.as_str()) {
        return Err("the template is of another room".to_owned());
    }
    let template_content = template.get("content").and_then(Value::as_object);
    if template_content
        .and_then(|c| c.get("membership"))
        .and_then(Value::as_str)
        != Some(membership.as_str())
    {
        return Err(format!("the template is not a {membership}"));
    }
    if let Some(via) = template_content
        .and_then(|c| c.get("join_authorised_via_users_server"))
        .and_then(Value::as_str)
    {
        content.insert("join_authorised_via_users_server".into(), Value::from(via));
    }
    let ids = |field: &'static str| -> Result<Vec<OwnedEventId>, String> {
        template
            .get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("the template has no {field}"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("bad {field}"))
                    .and_then(|s| parse_event_id(field, s).map_err(|e| e.to_string()))
            })
            .collect()
    };
    let depth = template
        .get("depth")
        .and_then(Value::as_integer)
        .ok_or("the template has no depth")?;
    let mut builder = PduBuilder::new(
        "m.room.member",
        Some(user_id.as_str()),
        content,
        user_id,
        Some(room_id),
    );
    builder.prev_events = ids("prev_events")?;
    builder.auth_events = ids("auth_events")?;
    builder.depth = depth;
    builder.origin_server_ts = crate::time::now_ms();
    builder
        .build(version, origin.as_str(), key)
        .map_err(|e| e.to_string())
}

/// Our member event's content: `membership`, the user's profile (for
/// joins and knocks) and the reason.
pub async fn member_content(
    state: &AppState,
    user_id: &UserId,
    membership: &str,
    reason: Option<&str>,
) -> Result<Object, ApiError> {
    let mut content = Object::new();
    content.insert("membership".into(), Value::from(membership));
    if let Some(reason) = reason {
        content.insert("reason".into(), Value::from(reason));
    }
    if matches!(membership, "join" | "knock")
        && let Some(p) = profile::local_profile(state.db(), user_id.as_str()).await?
    {
        if let Some(name) = p.displayname {
            content.insert("displayname".into(), Value::from(name));
        }
        if let Some(url) = p.avatar_url {
            content.insert("avatar_url".into(), Value::from(url));
        }
    }
    Ok(content)
}

/// The servers to try, in order, without duplicates or ourselves.
pub fn candidates(state: &AppState, servers: &[OwnedServerName]) -> Vec<OwnedServerName> {
    let mut out: Vec<OwnedServerName> = Vec::new();
    for s in servers {
        if s != state.server_name() && !out.contains(s) {
            out.push(s.clone());
        }
    }
    out.truncate(MAX_SERVERS_TRIED);
    out
}

/// Joins `user_id` to a room of other servers, asking `servers` in turn:
/// `make_join`, our event on its template, `send_join`, then the answer
/// checked and stored (see [`crate::rooms::RoomGuard::enter_room`]).
pub async fn join_remote(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    servers: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let servers = candidates(state, servers);
    first_that_answers(
        &servers,
        "No known servers to join the room through",
        |server| join_through(state, user_id, room_id, server, reason),
    )
    .await
}

/// Runs `attempt` with each server in turn until one succeeds; otherwise
/// the last failure (`none`, as not found, when there is no server).
pub(super) async fn first_that_answers<'a, Fut>(
    servers: &'a [OwnedServerName],
    none: &str,
    mut attempt: impl FnMut(&'a ServerName) -> Fut,
) -> Result<(), ApiError>
where
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    let mut last = ApiError::not_found(none);
    for server in servers {
        match attempt(server).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn join_through(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    server: &ServerName,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let client = state.federation().client();
    let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
    request.ver = supported_version_ids();
    let answer = client
        .send_with_limit(server, request, MAX_TEMPLATE_BYTES)
        .await
        .map_err(|e| remote_failure(server, &e))?;
    // Servers before room version 3 left the version out; we speak none of those.
    let version_id = answer.room_version.unwrap_or(RoomVersionId::V1);
    let version = supported(&version_id).ok_or_else(|| incompatible(version_id.as_str()))?;
    let template = object_of(&answer.event).map_err(|e| bad_answer(server, e))?;
    let content = member_content(state, user_id, "join", reason).await?;
    let ours = event_from_template(
        state.server_name(),
        state.signing_key(),
        version,
        room_id,
        user_id,
        &template,
        content,
    )
    .map_err(|e| bad_answer(server, e))?;

    let request = create_join_event::v2::Request::new(
        room_id.to_owned(),
        ours.event_id().to_owned(),
        raw_pdu(&ours)?,
    );
    let answer = client
        .send(server, request)
        .await
        .map_err(|e| remote_failure(server, &e))?
        .room_state;

    // The resident may have signed our event (restricted rooms): take its
    // copy when it is the same event.
    let member_event = match answer.event.as_deref().map(object_of) {
        Some(Ok(obj)) => match Pdu::from_object(version, obj) {
            Ok(p) if p.event_id() == ours.event_id() => p,
            _ => return Err(bad_answer(server, "the returned join is not ours")),
        },
        _ => ours,
    };
    let parse = |list: Vec<Box<RawValue>>| -> Vec<Pdu> {
        list.iter()
            .filter_map(|raw| object_of(raw).ok())
            .filter_map(|obj| Pdu::from_object(version, obj).ok())
            .collect()
    };
    let room_state = RoomStateAnswer {
        state: parse(answer.state),
        auth_chain: parse(answer.auth_chain),
        member_event,
    };
    // Bounded before any key is fetched for it.
    room_state
        .signing_servers()
        .map_err(|e| bad_answer(server, e))?;
    let keys = keyring_for(
        state,
        room_state
            .state
            .iter()
            .chain(&room_state.auth_chain)
            .chain([&room_state.member_event]),
    )
    .await;
    let guard = state.rooms().lock(room_id).await;
    guard
        .enter_room(state, version, room_state, &keys)
        .await?
        .map_err(|e| bad_answer(server, e))
}

#[cfg(test)]
mod tests {
    use myelin_proto::canonical_json::{Object, Value};
    use myelin_proto::signing::KeyPair;
    use myelin_proto::{PduBuilder, RoomVersion};
    use ruma::{owned_room_id, owned_user_id, server_name};

    use super::{event_from_template, template_of};

    fn content(membership: &str) -> Object {
        let mut c = Object::new();
        c.insert("membership".into(), Value::from(membership));
        c
    }

    /// A template as a resident server would offer it.
    fn template(user: &str, room: &str, membership: &str, extra: Option<(&str, &str)>) -> Object {
        let key = KeyPair::from_seed("r", &[3; 32]).expect("key");
        let mut c = content(membership);
        if let Some((k, v)) = extra {
            c.insert(k.into(), Value::from(v));
        }
        let user = ruma::UserId::parse(user).expect("user");
        let room = ruma::RoomId::parse(room).expect("room");
        let mut b = PduBuilder::new("m.room.member", Some(user.as_str()), c, &user, Some(&room));
        b.prev_events = vec![
            "$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .try_into()
                .expect("id"),
        ];
        b.auth_events = vec![
            "$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
                .try_into()
                .expect("id"),
        ];
        b.depth = 7;
        let pdu = b.build(RoomVersion::V11, "beta.test", &key).expect("pdu");
        template_of(&pdu)
    }

    #[test]
    fn our_event_takes_only_the_graph_from_the_template() {
        let key = KeyPair::from_seed("a", &[1; 32]).expect("key");
        let user = owned_user_id!("@alice:alpha.test");
        let room = owned_room_id!("!r:beta.test");
        let t = template(
            user.as_str(),
            room.as_str(),
            "join",
            Some(("join_authorised_via_users_server", "@bob:beta.test")),
        );
        assert!(!t.contains_key("signatures") && !t.contains_key("hashes"));
        let mut ours = content("join");
        ours.insert("displayname".into(), Value::from("Alice"));
        let pdu = event_from_template(
            server_name!("alpha.test"),
            &key,
            RoomVersion::V11,
            &room,
            &user,
            &t,
            ours,
        )
        .expect("event");
        assert_eq!(pdu.depth(), 7);
        assert_eq!(pdu.prev_events()[0].as_str().as_bytes()[1], b'a');
        assert_eq!(pdu.auth_events()[0].as_str().as_bytes()[1], b'b');
        assert_eq!(
            pdu.content().get("displayname").and_then(Value::as_str),
            Some("Alice")
        );
        assert_eq!(
            pdu.content()
                .get("join_authorised_via_users_server")
                .and_then(Value::as_str),
            Some("@bob:beta.test")
        );
        assert!(pdu.has_signature_from(server_name!("alpha.test")));
        assert!(!pdu.has_signature_from(server_name!("beta.test")));
    }

    #[test]
    fn templates_for_something_else_are_refused() {
        let key = KeyPair::from_seed("a", &[1; 32]).expect("key");
        let user = owned_user_id!("@alice:alpha.test");
        let room = owned_room_id!("!r:beta.test");
        let build = |t: &Object, membership: &str| {
            event_from_template(
                server_name!("alpha.test"),
                &key,
                RoomVersion::V11,
                &room,
                &user,
                t,
                content(membership),
            )
        };
        // Another user's event, another room, another membership.
        assert!(
            build(
                &template("@eve:alpha.test", room.as_str(), "join", None),
                "join"
            )
            .is_err()
        );
        assert!(
            build(
                &template(user.as_str(), "!other:beta.test", "join", None),
                "join"
            )
            .is_err()
        );
        assert!(
            build(
                &template(user.as_str(), room.as_str(), "leave", None),
                "join"
            )
            .is_err()
        );
        // Without its graph fields.
        let mut t = template(user.as_str(), room.as_str(), "join", None);
        t.remove("prev_events");
        assert!(build(&t, "join").is_err());
        let mut t = template(user.as_str(), room.as_str(), "join", None);
        t.insert("depth".into(), Value::from("7"));
        assert!(build(&t, "join").is_err());
        assert!(
            build(
                &template(user.as_str(), room.as_str(), "join", None),
                "join"
            )
            .is_ok()
        );
    }
}
