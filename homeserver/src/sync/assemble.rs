//! Pure pieces of a sync response: which state entries a room sends, the
//! room summary, ephemeral and stripped events. No database here, so each
//! rule is unit-tested on its own.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::api::client::filter::RoomEventFilter;
use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::{OwnedRoomId, OwnedUserId, UInt};
use serde_json::{Map, Value as Json, json};

use super::filter;
use crate::storage::push_actions::UnreadCounts;

/// Most heroes a summary names (the spec's "up to 5").
pub const MAX_HEROES: usize = 5;

/// One entry of a room's state, before its event is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey {
    pub event_type: String,
    pub state_key: String,
    pub event_nid: i64,
}

/// Which lazy-loaded members a room needs: `None` sends every member.
pub type NeededMembers<'a> = Option<&'a HashSet<String>>;

/// The state entries a room's `state` section carries: those the state
/// filter's types allow, except events the timeline already carries and,
/// when lazy-loading, members nobody needs. (Sender conditions are checked
/// once the events are read.)
pub fn wanted_state(
    entries: &[StateKey],
    state_filter: &RoomEventFilter,
    needed_members: NeededMembers<'_>,
    in_timeline: &HashSet<i64>,
) -> Vec<i64> {
    entries
        .iter()
        .filter(|e| !in_timeline.contains(&e.event_nid))
        .filter(|e| {
            e.event_type != "m.room.member"
                || needed_members.is_none_or(|m| m.contains(&e.state_key))
        })
        .filter(|e| filter::event_matches(state_filter, &e.event_type, None))
        .map(|e| e.event_nid)
        .collect()
}

/// A room's heroes from candidates in Synapse's order (joined, invited,
/// then departed members): departed members only name a room nobody else
/// is in.
pub fn heroes(candidates: &[(String, String)]) -> Vec<OwnedUserId> {
    let present: Vec<&(String, String)> = candidates
        .iter()
        .filter(|(_, m)| matches!(m.as_str(), "join" | "invite"))
        .collect();
    let chosen: Vec<&(String, String)> = if present.is_empty() {
        candidates.iter().collect()
    } else {
        present
    };
    chosen
        .into_iter()
        .filter_map(|(u, _)| OwnedUserId::try_from(u.as_str()).ok())
        .take(MAX_HEROES)
        .collect()
}

/// Hero candidates `(room, user, membership)` grouped by room, in order.
pub fn group_candidates(
    rows: Vec<(String, String, String)>,
) -> HashMap<String, Vec<(String, String)>> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (room, user, membership) in rows {
        out.entry(room).or_default().push((user, membership));
    }
    out
}

/// The `m.typing` event of a room.
pub fn typing_event(user_ids: &[OwnedUserId]) -> Json {
    json!({ "type": "m.typing", "content": { "user_ids": user_ids } })
}

/// The `m.receipt` event of a room.
pub fn receipt_event(content: Json) -> Json {
    json!({ "type": "m.receipt", "content": content })
}

/// Ephemeral events by room: typing then receipts, each kept only when the
/// ephemeral filter allows its type and room.
pub fn ephemeral_by_room(
    typing: Vec<(OwnedRoomId, Vec<OwnedUserId>)>,
    receipts: Vec<(String, Json)>,
    ephemeral_filter: &RoomEventFilter,
) -> BTreeMap<String, Vec<Json>> {
    let mut out: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    let room_ok = |room: &str| {
        ruma::RoomId::parse(room)
            .is_ok_and(|r| filter::event_filter_allows_room(ephemeral_filter, &r))
    };
    if filter::event_matches(ephemeral_filter, "m.typing", None) {
        for (room, users) in typing {
            if room_ok(room.as_str()) {
                out.entry(room.to_string())
                    .or_default()
                    .push(typing_event(&users));
            }
        }
    }
    if filter::event_matches(ephemeral_filter, "m.receipt", None) {
        for (room, content) in receipts {
            let empty = content.as_object().is_some_and(Map::is_empty);
            if !empty && room_ok(&room) {
                out.entry(room).or_default().push(receipt_event(content));
            }
        }
    }
    out
}

/// An event reduced to stripped state (`type`, `state_key`, `content`,
/// `sender`), as invites and knocks show rooms.
pub fn stripped(event: &Json) -> Json {
    let mut out = Map::new();
    if let Some(obj) = event.as_object() {
        for key in ["type", "state_key", "content", "sender"] {
            if let Some(v) = obj.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
    }
    Json::Object(out)
}

/// The `invite_state` of an invite: the room state the invite event
/// carries in `unsigned.invite_room_state`, then the invite itself
/// (clients read the inviter and `is_direct` from it).
pub fn invite_state(invite: &Json) -> Vec<Json> {
    let mut out: Vec<Json> = invite
        .get("unsigned")
        .and_then(|u| u.get("invite_room_state"))
        .and_then(Json::as_array)
        .map(|a| a.iter().map(stripped).collect())
        .unwrap_or_default();
    out.retain(|e| !(e["type"] == invite["type"] && e["state_key"] == invite["state_key"]));
    out.push(stripped(invite));
    out
}

/// A room's `unread_notifications`, always with both counts (0 when the
/// room has nothing unread), as Synapse sends them.
pub fn unread_notifications(counts: Option<&UnreadCounts>) -> UnreadNotificationsCount {
    let counts = counts.copied().unwrap_or_default();
    let mut out = UnreadNotificationsCount::new();
    out.notification_count = Some(UInt::new_saturating(counts.notification_count));
    out.highlight_count = Some(UInt::new_saturating(counts.highlight_count));
    out
}

/// Whether an `m.room.history_visibility` event (its JSON) lets members
/// read everything sent while it was in force, also from before they
/// joined: `shared` and `world_readable` do; anything else, or content
/// that cannot be read, does not.
pub fn history_always_visible_to_members(event_json: &str) -> bool {
    serde_json::from_str::<Json>(event_json).is_ok_and(|e| {
        matches!(
            e["content"]["history_visibility"].as_str(),
            Some("shared" | "world_readable")
        )
    })
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_id, owned_user_id};

    use super::*;

    fn key(t: &str, k: &str, nid: i64) -> StateKey {
        StateKey {
            event_type: t.to_owned(),
            state_key: k.to_owned(),
            event_nid: nid,
        }
    }

    #[test]
    fn lazy_loading_keeps_only_needed_members() {
        let entries = vec![
            key("m.room.create", "", 1),
            key("m.room.member", "@a:x", 2),
            key("m.room.member", "@b:x", 3),
            key("m.room.name", "", 4),
        ];
        let none = HashSet::new();
        let all = wanted_state(&entries, &RoomEventFilter::default(), None, &none);
        assert_eq!(all, vec![1, 2, 3, 4]);
        let needed: HashSet<String> = ["@b:x".to_owned()].into();
        let lazy = wanted_state(&entries, &RoomEventFilter::default(), Some(&needed), &none);
        assert_eq!(lazy, vec![1, 3, 4]);
        let in_timeline: HashSet<i64> = [4].into();
        let mut f = RoomEventFilter::default();
        f.not_types = vec!["m.room.create".to_owned()];
        assert_eq!(
            wanted_state(&entries, &f, Some(&needed), &in_timeline),
            vec![3]
        );
    }

    #[test]
    fn heroes_prefer_present_members() {
        let c = |u: &str, m: &str| (u.to_owned(), m.to_owned());
        assert_eq!(
            heroes(&[c("@a:x", "join"), c("@b:x", "invite"), c("@c:x", "leave")]),
            vec![owned_user_id!("@a:x"), owned_user_id!("@b:x")]
        );
        assert_eq!(heroes(&[c("@c:x", "leave")]), vec![owned_user_id!("@c:x")]);
        let many: Vec<(String, String)> = (0..8).map(|i| c(&format!("@u{i}:x"), "join")).collect();
        assert_eq!(heroes(&many).len(), MAX_HEROES);
    }

    #[test]
    fn ephemeral_events_follow_the_filter() {
        let room = owned_room_id!("!r:x");
        let typing = vec![(room.clone(), vec![owned_user_id!("@a:x")])];
        let receipts = vec![
            (
                room.to_string(),
                json!({"$e": {"m.read": {"@a:x": {"ts": 1}}}}),
            ),
            ("!empty:x".to_owned(), json!({})),
        ];
        let all = ephemeral_by_room(
            typing.clone(),
            receipts.clone(),
            &RoomEventFilter::default(),
        );
        assert_eq!(all.len(), 1, "{all:?}");
        let events = &all[room.as_str()];
        assert_eq!(events[0]["type"], "m.typing");
        assert_eq!(events[0]["content"]["user_ids"][0], "@a:x");
        assert_eq!(events[1]["type"], "m.receipt");
        assert_eq!(events[1]["content"]["$e"]["m.read"]["@a:x"]["ts"], 1);

        let mut f = RoomEventFilter::default();
        f.not_types = vec!["m.typing".to_owned()];
        let only_receipts = ephemeral_by_room(typing.clone(), receipts.clone(), &f);
        assert_eq!(only_receipts[room.as_str()].len(), 1);
        assert_eq!(only_receipts[room.as_str()][0]["type"], "m.receipt");
        f.not_rooms = vec![room.clone()];
        assert!(ephemeral_by_room(typing, receipts, &f).is_empty());
    }

    #[test]
    fn unread_counts_are_always_sent() {
        let n = unread_notifications(None);
        assert_eq!(n.notification_count, Some(UInt::MIN));
        assert_eq!(n.highlight_count, Some(UInt::MIN));
        let counts = UnreadCounts {
            notification_count: 4,
            highlight_count: 1,
        };
        let n = unread_notifications(Some(&counts));
        assert_eq!(n.notification_count, Some(UInt::from(4u32)));
        assert_eq!(n.highlight_count, Some(UInt::from(1u32)));
        let json = serde_json::to_value(&n).expect("serialise");
        assert_eq!(json, json!({"notification_count": 4, "highlight_count": 1}));
    }

    #[test]
    fn shared_history_needs_no_per_event_check() {
        let hv = |v: &str| json!({"content": {"history_visibility": v}}).to_string();
        assert!(history_always_visible_to_members(&hv("shared")));
        assert!(history_always_visible_to_members(&hv("world_readable")));
        assert!(!history_always_visible_to_members(&hv("joined")));
        assert!(!history_always_visible_to_members(&hv("invited")));
        assert!(!history_always_visible_to_members(r#"{"content": {}}"#));
        assert!(!history_always_visible_to_members("not json"));
    }

    #[test]
    fn invite_state_ends_with_the_invite() {
        let invite = json!({
            "type": "m.room.member", "state_key": "@b:x", "sender": "@a:x",
            "content": {"membership": "invite", "is_direct": true},
            "event_id": "$i",
            "unsigned": {"invite_room_state": [
                {"type": "m.room.name", "state_key": "", "sender": "@a:x", "content": {"name": "Tea"}},
            ]},
        });
        let state = invite_state(&invite);
        assert_eq!(state.len(), 2);
        assert_eq!(state[0]["content"]["name"], "Tea");
        assert_eq!(state[1]["content"]["membership"], "invite");
        assert!(state[1].get("event_id").is_none(), "stripped");
    }
}
