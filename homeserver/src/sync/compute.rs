//! One sync response, computed from the user's memberships and the
//! positions of every stream "now" (the next token): what changed after
//! the request's token, or everything for an initial sync.
//!
//! Reads are batched over all rooms of the response: one query for the
//! timelines of all joined rooms, one for their state keys, one for the
//! state events, one for member counts, one for heroes, one each for
//! account data, receipts and unread counts. Only rooms that need a
//! history-visibility check (a timeline reaching back before the user's
//! join) and left rooms cost queries of their own.
//!
//! # State
//! `state` is the state at the start of the timeline, sent as the state
//! entries the timeline does not carry: for a room sent whole, its
//! current state minus the timeline's state events; for an incremental
//! update, the state changes after the token that are still current and
//! not in the timeline (what a gap in a limited timeline changed, as
//! Synapse sends). Left rooms read the state as of the leave.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ruma::api::client::filter::{FilterDefinition, LazyLoadOptions};
use ruma::api::client::sync::sync_events::v3 as sync_events;
use ruma::serde::Raw;
use ruma::{DeviceId, OwnedRoomId, RoomId, UInt, UserId};
use serde_json::Value as Json;

use super::assemble::{self, StateKey};
use super::e2ee;
use super::filter;
use super::lazy_members::{self, Change, Held, LoopKey};
use super::plan::{RoomTimeline, plan, prev_batch, split_timelines};
use super::token::SyncToken;
use crate::api::error::ApiError;
use crate::ignored_users;
use crate::rooms::format::{self, Viewer};
use crate::rooms::membership::stripped_state;
use crate::rooms::visibility::{self, Access};
use crate::state::AppState;
use crate::storage::Db;
use crate::storage::events::{self, EventRow};
use crate::storage::memberships::{self, MembershipRow};
use crate::storage::streams::{self, Stream};
use crate::storage::{account_data, push_actions, receipts, state as state_store};

/// What a sync request asks for.
pub struct SyncParams<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    pub since: Option<SyncToken>,
    pub full_state: bool,
    pub filter: &'a FilterDefinition,
    /// The filter's JSON: with the user and device, what names the sync
    /// loop whose lazy-loaded members are remembered.
    pub filter_json: &'a str,
}

/// The positions of every stream now: the `next_batch` of a response.
/// All are kept in memory (`db` is read once, for the first), each
/// published once what it counts is committed: a read snapshot taken
/// after this call holds everything up to them.
pub async fn current_token(state: &AppState, db: &Db) -> Result<SyncToken, ApiError> {
    let timeline = state.rooms().streams(db).await?.current();
    let typing = i64::try_from(state.typing().position()).unwrap_or(i64::MAX);
    let presence = i64::try_from(state.presence().position()).unwrap_or(i64::MAX);
    let [account_data, receipts, to_device, device_lists] = streams::committed_positions(
        db,
        [
            Stream::AccountData,
            Stream::Receipts,
            Stream::ToDevice,
            Stream::DeviceLists,
        ],
    )
    .await?;
    Ok(SyncToken {
        timeline,
        account_data,
        receipts,
        typing,
        to_device,
        device_lists,
        presence,
    })
}

fn uint(n: u64) -> UInt {
    UInt::new_saturating(n)
}

fn ids<'a>(rows: impl IntoIterator<Item = &'a MembershipRow>) -> Vec<&'a str> {
    rows.into_iter().map(|m| m.room_id.as_str()).collect()
}

/// Everything read for the rooms of a response, before it is formatted.
#[derive(Default)]
struct Gathered {
    timelines: HashMap<String, RoomTimeline>,
    /// State events to send, by room.
    state: HashMap<String, Vec<EventRow>>,
}

/// Computes one response, reading from `db` (the same handle `now` was
/// read from). `memberships` are the user's, read before `now` was taken.
pub async fn compute(
    state: &AppState,
    db: &Db,
    p: &SyncParams<'_>,
    memberships: Vec<MembershipRow>,
    now: SyncToken,
) -> Result<sync_events::Response, ApiError> {
    let user = p.user_id.as_str();
    let since_tl = p.since.map(|s| s.timeline);
    // State, memberships included, changes only with state events: none
    // after this position (read after `now`, so it covers all up to it).
    let state_until = now
        .timeline
        .min(state.rooms().streams(db).await?.last_state());
    let plan = plan(memberships, since_tl, now.timeline, p.full_state, p.filter);
    let limit = filter::timeline_limit(p.filter);
    let tl_filter = &p.filter.room.timeline;
    let state_filter = &p.filter.room.state;
    let lazy = !state_filter.lazy_load_options.is_disabled();
    // Members the loop holds are left out, unless it asked for them.
    let loop_key = matches!(
        state_filter.lazy_load_options,
        LazyLoadOptions::Enabled {
            include_redundant_members: false
        }
    )
    .then(|| LoopKey {
        user_id: user.to_owned(),
        device_id: p.device_id.as_str().to_owned(),
        filter: p.filter_json.to_owned(),
    });
    let held: Arc<Held> = match &loop_key {
        Some(key) => state
            .lazy_members()
            .begin(key, p.since, p.since.is_none() || p.full_state),
        None => Arc::default(),
    };
    // Ignored users' non-state events are withheld, along with their invites.
    let ignored = ignored_users::of(db, user).await?;
    let first = events::LATEST_PER_ROOM_FIRST_PARAM;
    let cond = ignored_users::exclude_from_timeline(
        filter::timeline_sql(tl_filter, first),
        &ignored,
        first,
    );
    let tl_ok = |room: &str| {
        RoomId::parse(room).is_ok_and(|r| filter::event_filter_allows_room(tl_filter, &r))
    };
    let st_ok = |room: &str| {
        RoomId::parse(room).is_ok_and(|r| filter::event_filter_allows_room(state_filter, &r))
    };
    let mut g = Gathered::default();

    // Timelines of joined rooms: one read for the rooms sent whole, one
    // for the incremental ones.
    let full_ids = ids(&plan.full);
    let incr_ids = ids(&plan.incremental);
    let full_tl: Vec<&str> = full_ids.iter().copied().filter(|r| tl_ok(r)).collect();
    let mut rows =
        events::latest_per_room(db, &full_tl, (0, now.timeline), limit + 1, cond.as_ref()).await?;
    if let Some(since) = since_tl {
        let incr_tl: Vec<&str> = incr_ids.iter().copied().filter(|r| tl_ok(r)).collect();
        rows.extend(
            events::latest_per_room(
                db,
                &incr_tl,
                (since, now.timeline),
                limit + 1,
                cond.as_ref(),
            )
            .await?,
        );
    }
    g.timelines = split_timelines(rows, limit);
    // A joined user sees everything from their (current) join on, and
    // everything before it in a room whose history was always shared.
    // Only other timelines reaching back before the join need the
    // per-event history-visibility check.
    let reaching_back: Vec<&str> = plan
        .full
        .iter()
        .filter(|m| {
            g.timelines.get(&m.room_id).is_some_and(|t| {
                t.rows
                    .first()
                    .and_then(|r| r.stream_ordering)
                    .is_some_and(|s| s < m.stream_ordering)
            })
        })
        .map(|m| m.room_id.as_str())
        .collect();
    let restricted: HashSet<String> = events::history_visibility_events(db, &reaching_back)
        .await?
        .into_iter()
        .filter(|(_, json)| !assemble::history_always_visible_to_members(json))
        .map(|(room, _)| room)
        .collect();
    for room in reaching_back.iter().filter(|r| restricted.contains(**r)) {
        if let Some(t) = g.timelines.get_mut(*room) {
            let rows = std::mem::take(&mut t.rows);
            t.rows = visibility::filter_events(db, user, &Access::Joined, rows).await?;
        }
    }
    // Left rooms: each read up to the leave, as the user may see it.
    for (m, whole) in &plan.left {
        let after = if *whole { 0 } else { since_tl.unwrap_or(0) };
        let access = visibility::room_access(db, &m.room_id, user).await?;
        let rows = if tl_ok(&m.room_id) {
            events::latest_per_room(
                db,
                &[m.room_id.as_str()],
                (after, m.stream_ordering.min(now.timeline)),
                limit + 1,
                cond.as_ref(),
            )
            .await?
        } else {
            Vec::new()
        };
        let mut t = split_timelines(rows, limit)
            .remove(&m.room_id)
            .unwrap_or_default();
        t.rows = visibility::filter_events(db, user, &access, t.rows).await?;
        g.timelines.insert(m.room_id.clone(), t);
    }

    // Per room: who sent the timeline's events, and which events it holds.
    let senders: HashMap<&str, HashSet<String>> = g
        .timelines
        .iter()
        .map(|(room, t)| {
            (
                room.as_str(),
                t.rows.iter().map(|r| r.sender.clone()).collect(),
            )
        })
        .collect();
    let timeline_nids: HashMap<&str, HashSet<i64>> = g
        .timelines
        .iter()
        .map(|(room, t)| (room.as_str(), t.rows.iter().map(|r| r.event_nid).collect()))
        .collect();
    let (no_senders, no_nids) = (HashSet::new(), HashSet::new());
    let senders_of = |room: &str| senders.get(room).unwrap_or(&no_senders);
    let in_timeline = |room: &str| timeline_nids.get(room).unwrap_or(&no_nids);

    // Summaries: rooms sent whole, and incremental rooms whose membership
    // changed in the timeline.
    let summary_rooms: Vec<&str> = full_ids
        .iter()
        .copied()
        .chain(incr_ids.iter().copied().filter(|r| {
            g.timelines
                .get(*r)
                .is_some_and(|t| t.rows.iter().any(|e| e.event_type == "m.room.member"))
        }))
        .collect();
    let counts = memberships::member_counts(db, &summary_rooms).await?;
    let hero_rows = memberships::hero_candidates(
        db,
        &summary_rooms,
        user,
        i64::try_from(assemble::MAX_HEROES).unwrap_or(5),
    )
    .await?;
    let heroes: HashMap<String, Vec<ruma::OwnedUserId>> = assemble::group_candidates(hero_rows)
        .into_iter()
        .map(|(room, c)| (room, assemble::heroes(&c)))
        .collect();

    // State of the rooms sent whole.
    let full_st: Vec<&str> = full_ids.iter().copied().filter(|r| st_ok(r)).collect();
    let mut keys: HashMap<String, Vec<StateKey>> = HashMap::new();
    for (room, event_type, state_key, event_nid) in
        state_store::current_keys_of_rooms(db, &full_st, lazy).await?
    {
        keys.entry(room).or_default().push(StateKey {
            event_type,
            state_key,
            event_nid,
        });
    }
    if lazy {
        // Members the client needs: timeline senders, the user, and for
        // rooms without a name the heroes it is named after.
        let named: HashSet<&str> = keys
            .iter()
            .filter(|(_, entries)| {
                entries.iter().any(|e| {
                    matches!(
                        e.event_type.as_str(),
                        "m.room.name" | "m.room.canonical_alias"
                    )
                })
            })
            .map(|(room, _)| room.as_str())
            .collect();
        let mut needed: HashMap<&str, HashSet<String>> = HashMap::new();
        for room in full_st.iter().copied() {
            let mut set = senders_of(room).clone();
            set.insert(user.to_owned());
            if let Some(h) = heroes.get(room).filter(|_| !named.contains(room)) {
                set.extend(h.iter().map(ToString::to_string));
            }
            needed.insert(room, set);
        }
        let users: HashSet<&str> = needed.values().flatten().map(String::as_str).collect();
        let users: Vec<&str> = users.into_iter().collect();
        for (room, member, nid) in state_store::current_members_of(db, &full_st, &users).await? {
            if needed
                .get(room.as_str())
                .is_some_and(|s| s.contains(&member))
            {
                keys.entry(room).or_default().push(StateKey {
                    event_type: "m.room.member".to_owned(),
                    state_key: member,
                    event_nid: nid,
                });
            }
        }
    }
    let mut wanted: Vec<i64> = Vec::new();
    for (room, entries) in &keys {
        wanted.extend(assemble::wanted_state(
            entries,
            state_filter,
            None,
            in_timeline(room),
        ));
    }
    let mut state_rows = events::get_many_by_nid(db, &wanted).await?;

    // State changes of incremental rooms; their member changes, as (room,
    // user, event).
    let mut changed_members: Vec<(String, Option<String>, String)> = Vec::new();
    if let Some(since) = since_tl {
        let incr_st: Vec<&str> = incr_ids.iter().copied().filter(|r| st_ok(r)).collect();
        let changed = if since < state_until {
            events::current_state_changed_in(db, &incr_st, (since, state_until)).await?
        } else {
            Vec::new()
        };
        let mut sent: HashSet<i64> = HashSet::new();
        for row in changed {
            if row.event_type == "m.room.member" {
                changed_members.push((
                    row.room_id.clone(),
                    row.state_key.clone(),
                    row.event_id.clone(),
                ));
            }
            let lazy_skip = lazy
                && row.event_type == "m.room.member"
                && !senders_of(&row.room_id).contains(row.state_key.as_deref().unwrap_or(""));
            if !lazy_skip && !in_timeline(&row.room_id).contains(&row.event_nid) {
                sent.insert(row.event_nid);
                state_rows.push(row);
            }
        }
        if lazy {
            // The members of the timeline's senders that the loop does not
            // hold (with redundant members asked for, it holds none).
            let needs = |room: &str, member: &str| {
                senders_of(room).contains(member) && !lazy_members::holds(&held, room, member)
            };
            let mut active: Vec<&str> = Vec::new();
            let mut users: HashSet<&str> = HashSet::new();
            for room in incr_st.iter().copied() {
                let needed = senders_of(room).iter().map(String::as_str);
                let needed: Vec<&str> = needed.filter(|u| needs(room, u)).collect();
                if !needed.is_empty() {
                    active.push(room);
                    users.extend(needed);
                }
            }
            let users: Vec<&str> = users.into_iter().collect();
            let rows = if users.is_empty() {
                Vec::new()
            } else {
                events::current_member_events(db, &active, &users).await?
            };
            for row in rows {
                let member = row.state_key.as_deref().unwrap_or_default();
                if needs(&row.room_id, member)
                    && !in_timeline(&row.room_id).contains(&row.event_nid)
                    && sent.insert(row.event_nid)
                {
                    state_rows.push(row);
                }
            }
        }
    }

    // State of left rooms, as of the leave.
    for (m, whole) in &plan.left {
        if !st_ok(&m.room_id) {
            continue;
        }
        let Some(snapshot) = events::get(db, &m.event_id)
            .await?
            .and_then(|e| e.state_after)
        else {
            continue;
        };
        let mut needed = senders_of(&m.room_id).clone();
        needed.insert(user.to_owned());
        let entries: Vec<StateKey> = state_store::load_snapshot(db, snapshot, None)
            .await?
            .into_iter()
            .map(|e| StateKey {
                event_type: e.event_type,
                state_key: e.state_key,
                event_nid: e.event_nid,
            })
            .collect();
        let nids = assemble::wanted_state(
            &entries,
            state_filter,
            lazy.then_some(&needed),
            in_timeline(&m.room_id),
        );
        let after = if *whole { 0 } else { since_tl.unwrap_or(0) };
        state_rows.extend(
            events::get_many_by_nid(db, &nids)
                .await?
                .into_iter()
                .filter(|r| r.stream_ordering.is_none_or(|s| s > after)),
        );
    }
    for row in state_rows {
        if filter::event_matches(state_filter, &row.event_type, Some(&row.sender)) {
            g.state.entry(row.room_id.clone()).or_default().push(row);
        }
    }
    for rows in g.state.values_mut() {
        rows.sort_by_key(|r| r.stream_ordering);
    }
    let lazy_changes = loop_key.as_ref().map(|_| {
        let whole = full_ids
            .iter()
            .copied()
            .chain(plan.left.iter().map(|(m, _)| m.room_id.as_str()));
        held_changes(whole, &changed_members, &g.state)
    });

    // Every event of the response in client format, in one batch.
    let all_rows: Vec<EventRow> = g
        .timelines
        .values()
        .flat_map(|t| t.rows.iter().cloned())
        .chain(g.state.values().flatten().cloned())
        .collect();
    let viewer = Viewer {
        user_id: user,
        device_id: p.device_id.as_str(),
    };
    let formatted = format::client_events(db, Some(viewer), &all_rows).await?;
    let mut by_id: HashMap<String, Json> = HashMap::with_capacity(formatted.len());
    for (row, mut ev) in all_rows.iter().zip(formatted) {
        // Sync's events are "without room ID": the room is the map key.
        if let Some(obj) = ev.as_object_mut() {
            obj.remove("room_id");
        }
        by_id.insert(row.event_id.clone(), ev);
    }

    // Account data: all of it for rooms sent whole, the changes otherwise.
    let ad_since = p
        .since
        .filter(|_| !p.full_state)
        .map_or(0, |s| s.account_data);
    let full_set: HashSet<&str> = full_ids.iter().copied().collect();
    let read_from = if full_set.is_empty() { ad_since } else { 0 };
    let mut global_ad = Vec::new();
    let mut room_ad: HashMap<String, Vec<Json>> = HashMap::new();
    // Nothing to read when the stream has not moved past what is read from
    // (an incremental sync woken by a message, typically).
    let ad_rows = if read_from < now.account_data {
        account_data::changed_since(db, user, read_from).await?
    } else {
        Vec::new()
    };
    for row in ad_rows {
        if row.stream_position > now.account_data {
            continue;
        }
        let whole = row.room_id.as_deref().is_some_and(|r| full_set.contains(r));
        if row.stream_position <= ad_since && !whole {
            continue;
        }
        let content: Json = serde_json::from_str(&row.content)
            .map_err(|e| ApiError::internal("corrupt account data", e))?;
        let event = serde_json::json!({ "type": row.event_type, "content": content });
        match row.room_id {
            None => {
                if filter::global_account_data_matches(p.filter, &row.event_type) {
                    global_ad.push(event);
                }
            }
            Some(room) => {
                let f = &p.filter.room.account_data;
                let room_ok =
                    RoomId::parse(&room).is_ok_and(|r| filter::event_filter_allows_room(f, &r));
                if room_ok && filter::event_matches(f, &row.event_type, None) {
                    room_ad.entry(room).or_default().push(event);
                }
            }
        }
    }

    // Ephemeral events: everything current for rooms sent whole, changes
    // for the others.
    let since_typing = p.since.map_or(0, |s| u64::try_from(s.typing).unwrap_or(0));
    let full_room_ids = room_ids(&plan.full);
    let incr_room_ids = room_ids(&plan.incremental);
    let mut typing = state.typing().changed_since(0, &full_room_ids);
    let mut receipts_all = receipts::for_sync(db, user, &full_ids, 0, now.receipts).await?;
    if let Some(since) = p.since {
        typing.extend(state.typing().changed_since(since_typing, &incr_room_ids));
        if since.receipts < now.receipts {
            receipts_all.extend(
                receipts::for_sync(db, user, &incr_ids, since.receipts, now.receipts).await?,
            );
        }
    }
    let mut ephemeral = assemble::ephemeral_by_room(typing, receipts_all, &p.filter.room.ephemeral);

    // Joined rooms.
    let mut join: BTreeMap<OwnedRoomId, sync_events::JoinedRoom> = BTreeMap::new();
    for (m, whole) in plan
        .full
        .iter()
        .map(|m| (m, true))
        .chain(plan.incremental.iter().map(|m| (m, false)))
    {
        let Ok(room_id) = OwnedRoomId::try_from(m.room_id.as_str()) else {
            continue;
        };
        let mut room = sync_events::JoinedRoom::new();
        let t = g.timelines.get(&m.room_id);
        let empty = RoomTimeline::default();
        let t = t.unwrap_or(&empty);
        room.timeline.events = raws(&by_id, &t.rows)?;
        room.timeline.limited = t.limited;
        let state_rows = g.state.get(&m.room_id).map_or(&[][..], Vec::as_slice);
        room.state = sync_events::State::Before(raws(&by_id, state_rows)?.into());
        room.account_data.events = room_ad
            .remove(&m.room_id)
            .unwrap_or_default()
            .iter()
            .map(format::raw)
            .collect::<Result<_, _>>()?;
        room.ephemeral.events = ephemeral
            .remove(&m.room_id)
            .unwrap_or_default()
            .iter()
            .map(format::raw)
            .collect::<Result<_, _>>()?;
        let changed = !room.timeline.events.is_empty()
            || !room.state.is_empty()
            || !room.account_data.is_empty()
            || !room.ephemeral.is_empty()
            || t.limited;
        if !whole && !changed {
            continue;
        }
        room.timeline.prev_batch = Some(prev_batch(t, now.timeline));
        if summary_rooms.contains(&m.room_id.as_str()) {
            let (joined, invited) = counts.get(&m.room_id).copied().unwrap_or_default();
            room.summary.joined_member_count = Some(uint(joined));
            room.summary.invited_member_count = Some(uint(invited));
            room.summary.heroes = heroes.get(&m.room_id).cloned().unwrap_or_default();
        }
        join.insert(room_id, room);
    }
    let join_ids: Vec<&str> = join.keys().map(|r| r.as_str()).collect();
    let unread = push_actions::unread_counts(db, user, &join_ids).await?;
    for (room_id, room) in join.iter_mut() {
        room.unread_notifications = assemble::unread_notifications(unread.get(room_id.as_str()));
    }

    // Left rooms.
    let mut leave = BTreeMap::new();
    for (m, _) in &plan.left {
        let Ok(room_id) = OwnedRoomId::try_from(m.room_id.as_str()) else {
            continue;
        };
        let mut room = sync_events::LeftRoom::new();
        if let Some(t) = g.timelines.get(&m.room_id) {
            room.timeline.events = raws(&by_id, &t.rows)?;
            room.timeline.limited = t.limited;
            room.timeline.prev_batch = Some(prev_batch(t, m.stream_ordering));
        }
        let state_rows = g.state.get(&m.room_id).map_or(&[][..], Vec::as_slice);
        room.state = sync_events::State::Before(raws(&by_id, state_rows)?.into());
        room.account_data.events = room_ad
            .remove(&m.room_id)
            .unwrap_or_default()
            .iter()
            .map(format::raw)
            .collect::<Result<_, _>>()?;
        leave.insert(room_id, room);
    }

    // Invites and knocks, as stripped state.
    let now_ms = crate::time::now_ms();
    let stripped_ids: Vec<&str> = plan
        .invited
        .iter()
        .chain(&plan.knocked)
        .map(|m| m.event_id.as_str())
        .collect();
    let member_events: HashMap<String, EventRow> = events::get_many(db, &stripped_ids)
        .await?
        .into_iter()
        .map(|r| (r.event_id.clone(), r))
        .collect();
    let mut invite = BTreeMap::new();
    for m in &plan.invited {
        let (Ok(room_id), Some(row)) = (
            OwnedRoomId::try_from(m.room_id.as_str()),
            member_events.get(&m.event_id),
        ) else {
            continue;
        };
        if ignored.contains(&row.sender) {
            continue;
        }
        let ev = Json::Object(format::bare(row, now_ms)?);
        let events = assemble::invite_state(&ev)
            .iter()
            .map(format::raw)
            .collect::<Result<Vec<_>, _>>()?;
        invite.insert(
            room_id,
            sync_events::InvitedRoom::from(sync_events::InviteState::from(events)),
        );
    }
    let mut knock = BTreeMap::new();
    for m in &plan.knocked {
        let (Ok(room_id), Some(row)) = (
            OwnedRoomId::try_from(m.room_id.as_str()),
            member_events.get(&m.event_id),
        ) else {
            continue;
        };
        let ev = Json::Object(format::bare(row, now_ms)?);
        // A knock on another server's room carries the resident's stripped
        // state (we hold none of the room's); else the state we hold.
        let remote = ev
            .get("unsigned")
            .and_then(|u| u.get("knock_room_state"))
            .and_then(Json::as_array);
        let mut events: Vec<Json> = match remote {
            Some(remote) => remote.iter().map(assemble::stripped).collect(),
            None => stripped_state(db, &m.room_id)
                .await?
                .into_iter()
                .map(Json::from)
                .collect(),
        };
        events.retain(|e| !(e["type"] == ev["type"] && e["state_key"] == ev["state_key"]));
        events.push(assemble::stripped(&ev));
        let mut state = sync_events::KnockState::new();
        state.events = events.iter().map(format::raw).collect::<Result<_, _>>()?;
        knock.insert(room_id, sync_events::KnockedRoom::from(state));
    }

    let mut resp = sync_events::Response::new(String::new());
    resp.rooms.join = join;
    resp.rooms.leave = leave;
    resp.rooms.invite = invite;
    resp.rooms.knock = knock;
    resp.account_data.events = global_ad
        .iter()
        .map(format::raw)
        .collect::<Result<_, _>>()?;
    let since_presence = p.since.map(|s| s.presence);
    crate::presence::fill_sync(
        state,
        db,
        p.user_id,
        since_presence,
        now.presence,
        &p.filter.presence,
        &mut resp.presence,
    )
    .await?;
    // To-device messages may stop short of `now` (a full batch).
    let mut next = now;
    next.to_device = e2ee::fill(
        db,
        p.user_id,
        p.device_id,
        p.since.as_ref(),
        &now,
        state_until,
        &mut resp,
    )
    .await?;
    resp.next_batch = next.to_string();
    if let (Some(key), Some(changes)) = (&loop_key, lazy_changes) {
        state.lazy_members().record(key, p.since, next, changes);
    }
    Ok(resp)
}

/// What a response changes in the members its loop holds: rooms sent
/// `whole` (or left) are forgotten, member changes left out of the
/// response's state are forgotten, and the members its state carries are
/// held.
fn held_changes<'a>(
    whole: impl Iterator<Item = &'a str>,
    changed_members: &[(String, Option<String>, String)],
    state: &HashMap<String, Vec<EventRow>>,
) -> Vec<Change> {
    let mut changes: Vec<Change> = whole.map(|r| Change::ForgetRoom(r.to_owned())).collect();
    let sent: HashSet<&str> = state
        .values()
        .flatten()
        .map(|r| r.event_id.as_str())
        .collect();
    for (room, user, event_id) in changed_members {
        if let Some(user) = user.as_ref().filter(|_| !sent.contains(event_id.as_str())) {
            changes.push(Change::Forget(room.clone(), user.clone()));
        }
    }
    for row in state.values().flatten() {
        if let (true, Some(user)) = (row.event_type == "m.room.member", &row.state_key) {
            changes.push(Change::Hold(
                row.room_id.clone(),
                user.clone(),
                row.event_id.clone(),
            ));
        }
    }
    changes
}

fn room_ids(rows: &[MembershipRow]) -> Vec<&RoomId> {
    rows.iter()
        .filter_map(|m| <&RoomId>::try_from(m.room_id.as_str()).ok())
        .collect()
}

/// The events of `rows` in client format (from `by_id`), as ruma `Raw`s.
fn raws<T>(by_id: &HashMap<String, Json>, rows: &[EventRow]) -> Result<Vec<Raw<T>>, ApiError> {
    rows.iter()
        .filter_map(|r| by_id.get(&r.event_id))
        .map(format::raw)
        .collect()
}

/// Whether any stream this request can see moved between `since` and
/// `now`. Presence moves with every user's activity; a filter that drops
/// presence (as bots and load tools set) would otherwise compute a response
/// for each, to find it empty.
pub fn moved_for(
    state: &AppState,
    params: &SyncParams<'_>,
    since: SyncToken,
    now: SyncToken,
) -> bool {
    let mut seen = now;
    let presence = &params.filter.presence;
    let wants_presence = state.presence().enabled()
        && filter::matches(
            presence.types.as_deref(),
            &presence.not_types,
            None,
            &[],
            "m.presence",
            None,
        );
    if !wants_presence {
        seen.presence = since.presence;
    }
    seen != since
}

/// Whether a response carries nothing but its token (a long-poll keeps
/// waiting then).
pub fn is_empty(resp: &sync_events::Response) -> bool {
    resp.rooms.is_empty()
        && resp.account_data.is_empty()
        && resp.presence.is_empty()
        && resp.to_device.is_empty()
        && resp.device_lists.is_empty()
}
