//! Which rooms a sync response covers and how (the plan), and how each
//! room's timeline is cut to the filter's limit.

use std::collections::HashMap;

use ruma::RoomId;
use ruma::api::client::filter::FilterDefinition;

use super::filter;
use crate::storage::events::EventRow;
use crate::storage::memberships::MembershipRow;

/// Which rooms a response covers and how.
#[derive(Debug, Default)]
pub struct Plan {
    /// Joined rooms sent whole (initial sync, `full_state`, newly joined).
    pub full: Vec<MembershipRow>,
    /// Joined rooms sent as the changes after the token.
    pub incremental: Vec<MembershipRow>,
    pub invited: Vec<MembershipRow>,
    pub knocked: Vec<MembershipRow>,
    /// Left or banned rooms, and whether sent whole (initial sync with
    /// `include_leave`) or as the changes up to the leave.
    pub left: Vec<(MembershipRow, bool)>,
}

/// Sorts the user's memberships into the response's sections. A
/// membership set at a position the stream has not reached yet (an event
/// still committing) is left for the next sync, which will see it as a
/// change. Rooms left before the token appear only in an initial or
/// `full_state` sync with `include_leave`; rooms left after it always
/// do (Synapse), so the client learns of the leave.
pub fn plan(
    memberships: Vec<MembershipRow>,
    since: Option<i64>,
    now: i64,
    full_state: bool,
    filter: &FilterDefinition,
) -> Plan {
    let mut plan = Plan::default();
    for m in memberships {
        if m.stream_ordering > now {
            continue;
        }
        let Ok(room) = RoomId::parse(&m.room_id) else {
            continue;
        };
        if !filter::room_allowed(filter, &room) {
            continue;
        }
        let changed = since.is_none_or(|s| m.stream_ordering > s);
        match m.membership.as_str() {
            "join" if changed || full_state => plan.full.push(m),
            "join" => plan.incremental.push(m),
            "invite" if changed => plan.invited.push(m),
            "knock" if changed => plan.knocked.push(m),
            "leave" | "ban" if !m.forgotten => {
                if since.is_some() && changed {
                    plan.left.push((m, false));
                } else if (since.is_none() || full_state) && filter.room.include_leave {
                    plan.left.push((m, true));
                }
            }
            _ => {}
        }
    }
    plan
}

/// A room's timeline: the newest events of a range, and whether older ones
/// in the range were left out.
#[derive(Debug, Default)]
pub struct RoomTimeline {
    pub rows: Vec<EventRow>,
    pub limited: bool,
}

/// Splits events of many rooms (oldest first, at most `limit + 1` per
/// room) into per-room timelines of at most `limit` events: a room with
/// more is `limited`, its oldest dropped.
pub fn split_timelines(rows: Vec<EventRow>, limit: u64) -> HashMap<String, RoomTimeline> {
    let mut out: HashMap<String, RoomTimeline> = HashMap::new();
    for row in rows {
        out.entry(row.room_id.clone()).or_default().rows.push(row);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    for t in out.values_mut() {
        if t.rows.len() > limit {
            let excess = t.rows.len() - limit;
            t.rows.drain(..excess);
            t.limited = true;
        }
    }
    out
}

/// The `/messages` token just before a timeline: `t<S-1>` for a timeline
/// starting at position `S`, or the range's end when it is empty.
pub(super) fn prev_batch(t: &RoomTimeline, end: i64) -> String {
    let pos = t
        .rows
        .first()
        .and_then(|r| r.stream_ordering)
        .map_or(end, |s| s - 1);
    format!("t{}", pos.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(room: &str, m: &str, pos: i64) -> MembershipRow {
        MembershipRow {
            room_id: room.to_owned(),
            user_id: "@u:x".to_owned(),
            membership: m.to_owned(),
            event_id: format!("$e{pos}"),
            stream_ordering: pos,
            forgotten: false,
        }
    }

    fn rooms(rows: &[MembershipRow]) -> Vec<&str> {
        rows.iter().map(|m| m.room_id.as_str()).collect()
    }

    #[test]
    fn plan_sorts_memberships_into_sections() {
        let all = || {
            vec![
                membership("!old:x", "join", 1),
                membership("!new:x", "join", 8),
                membership("!inv:x", "invite", 9),
                membership("!oldinv:x", "invite", 2),
                membership("!left:x", "leave", 7),
                membership("!oldleft:x", "ban", 3),
                membership("!future:x", "join", 20),
            ]
        };
        let f = FilterDefinition::default();
        let p = plan(all(), Some(5), 10, false, &f);
        assert_eq!(rooms(&p.full), ["!new:x"]);
        assert_eq!(rooms(&p.incremental), ["!old:x"]);
        assert_eq!(rooms(&p.invited), ["!inv:x"]);
        assert_eq!(p.left.len(), 1);
        assert_eq!(p.left[0].0.room_id, "!left:x");
        assert!(!p.left[0].1);

        let p = plan(all(), None, 10, false, &f);
        assert_eq!(rooms(&p.full), ["!old:x", "!new:x"]);
        assert_eq!(rooms(&p.invited), ["!inv:x", "!oldinv:x"]);
        assert!(p.left.is_empty(), "no include_leave");

        let mut f = FilterDefinition::default();
        f.room.include_leave = true;
        f.room.not_rooms = vec![ruma::owned_room_id!("!new:x")];
        let p = plan(all(), None, 10, false, &f);
        assert_eq!(rooms(&p.full), ["!old:x"]);
        assert_eq!(p.left.len(), 2);
        assert!(p.left.iter().all(|(_, whole)| *whole));

        let mut forgotten = membership("!gone:x", "leave", 7);
        forgotten.forgotten = true;
        assert!(
            plan(vec![forgotten], Some(5), 10, false, &f)
                .left
                .is_empty()
        );
    }

    fn event(room: &str, pos: i64) -> EventRow {
        EventRow {
            event_nid: pos,
            event_id: format!("$e{pos}"),
            stream_ordering: Some(pos),
            room_id: room.to_owned(),
            event_type: "m.room.message".to_owned(),
            state_key: None,
            sender: "@u:x".to_owned(),
            origin_server_ts: 0,
            depth: pos,
            json: "{}".to_owned(),
            redacts: None,
            redacted_by: None,
            replaces_state: None,
            state_before: None,
            state_after: None,
        }
    }

    #[test]
    fn timelines_are_split_and_limited() {
        let rows = vec![
            event("!a:x", 1),
            event("!b:x", 2),
            event("!a:x", 3),
            event("!a:x", 4),
        ];
        let t = split_timelines(rows, 2);
        let a = &t["!a:x"];
        assert!(a.limited);
        let positions: Vec<i64> = a.rows.iter().filter_map(|r| r.stream_ordering).collect();
        assert_eq!(positions, [3, 4]);
        assert_eq!(prev_batch(a, 9), "t2");
        assert!(!t["!b:x"].limited);
        assert_eq!(prev_batch(&RoomTimeline::default(), 9), "t9");
    }
}
