//! Hand-built conflicts resolved with the real authorization rules, each
//! checked against what the spec says and against ruma-state-res.

mod common;

use std::sync::Arc;

use common::{ruma_input, ruma_resolve, sorted_ours, sorted_ruma};
use myelin_proto::Pdu;
use myelin_proto::room_version::RoomVersion;
use myelin_proto::state_res::testing::{Room, member, state};
use myelin_proto::state_res::{self, StateMap};
use ruma::OwnedEventId;
use serde_json::json;

const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";
const CAROL: &str = "@carol:example.org";
const ELLA: &str = "@ella:example.org";

fn id(p: &Arc<Pdu>) -> OwnedEventId {
    p.event_id().to_owned()
}

fn key(ty: &str, sk: &str) -> (String, String) {
    (ty.to_owned(), sk.to_owned())
}

fn pl(version: RoomVersion, users: &[(&str, i64)]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if version != RoomVersion::V12 {
        map.insert(ALICE.into(), json!(100));
    }
    for (u, l) in users {
        map.insert((*u).into(), json!(l));
    }
    json!({ "users": map, "state_default": 50, "ban": 50, "kick": 50 })
}

/// create, alice joins, power levels (bob 50), public join rules, bob
/// and carol join.
fn base(version: RoomVersion) -> (Room, StateMap, Vec<Arc<Pdu>>) {
    let (mut room, s) = Room::new(version, ALICE);
    let mut evs = vec![Arc::clone(&room.create)];
    let mut s = s;
    for ev in [
        member(ALICE, ALICE, "join"),
        state("m.room.power_levels", "", ALICE, pl(version, &[(BOB, 50)])),
        state(
            "m.room.join_rules",
            "",
            ALICE,
            json!({ "join_rule": "public" }),
        ),
        member(BOB, BOB, "join"),
        member(CAROL, CAROL, "join"),
    ] {
        let prev = id(evs.last().expect("an event"));
        let (e, s2) = room.send(&s, &[prev], ev);
        evs.push(e);
        s = s2;
    }
    (room, s, evs)
}

/// Resolves with both implementations, asserts they agree, returns ours.
fn resolve_both(room: &Room, sets: &[StateMap]) -> StateMap {
    let ours = state_res::resolve(room.version.rules(), sets, &room.store).expect("resolves");
    let theirs = ruma_resolve(&ruma_input(room.version, &room.store, sets)).expect("ruma");
    assert_eq!(
        sorted_ours(&ours),
        sorted_ruma(&theirs),
        "v{}",
        room.version
    );
    ours
}

#[test]
fn ban_beats_concurrent_power_change_by_the_banned() {
    for version in RoomVersion::ALL {
        let (mut room, s, evs) = base(version);
        let tip = [id(evs.last().expect("tip"))];
        let (ban, sa) = room.send(&s, &tip, member(BOB, ALICE, "ban"));
        let (bob_pl, sb) = room.send(
            &s,
            &tip,
            state(
                "m.room.power_levels",
                "",
                BOB,
                pl(version, &[(BOB, 50), (CAROL, 50)]),
            ),
        );
        let out = resolve_both(&room, &[sa, sb]);
        assert_eq!(
            out.get(&key("m.room.member", BOB)),
            Some(&id(&ban)),
            "v{version}"
        );
        assert_ne!(out.get(&key("m.room.power_levels", "")), Some(&id(&bob_pl)));
    }
}

#[test]
fn join_rules_change_beats_concurrent_join() {
    for version in RoomVersion::ALL {
        let (mut room, s, evs) = base(version);
        let tip = [id(evs.last().expect("tip"))];
        let (invite_only, sa) = room.send(
            &s,
            &tip,
            state(
                "m.room.join_rules",
                "",
                ALICE,
                json!({ "join_rule": "invite" }),
            ),
        );
        let (_, sb) = room.send(&s, &tip, member(ELLA, ELLA, "join"));
        let out = resolve_both(&room, &[sa, sb]);
        assert_eq!(
            out.get(&key("m.room.join_rules", "")),
            Some(&id(&invite_only))
        );
        assert_eq!(out.get(&key("m.room.member", ELLA)), None, "v{version}");
    }
}

#[test]
fn concurrent_joins_both_stay() {
    for version in RoomVersion::ALL {
        let (mut room, s, evs) = base(version);
        let tip = [id(evs.last().expect("tip"))];
        let (j_ella, sa) = room.send(&s, &tip, member(ELLA, ELLA, "join"));
        let dave = "@dave:example.org";
        let (j_dave, sb) = room.send(&s, &tip, member(dave, dave, "join"));
        let out = resolve_both(&room, &[sa, sb]);
        assert_eq!(out.get(&key("m.room.member", ELLA)), Some(&id(&j_ella)));
        assert_eq!(
            out.get(&key("m.room.member", dave)),
            Some(&id(&j_dave)),
            "v{version}"
        );
    }
}

/// MSC4297 problem B (the CVE-2025-49090 state reset): bob's power levels
/// change is authorised by p2, which both states' auth chains hold but
/// neither state does. v2 replays it against p1 and resets to p1; v2.1
/// puts p2 in the conflicted state subgraph and keeps p3.
#[test]
fn problem_b_state_reset_only_in_v2() {
    for version in RoomVersion::ALL {
        let (mut room, s, evs) = base(version);
        let p1 = Arc::clone(&evs[2]);
        let tip = [id(evs.last().expect("tip"))];
        let (p2, s2) = room.send(
            &s,
            &tip,
            state("m.room.power_levels", "", ALICE, pl(version, &[(BOB, 100)])),
        );
        let (p3, mut s3) = room.send(
            &s2,
            &[id(&p2)],
            state(
                "m.room.power_levels",
                "",
                BOB,
                pl(version, &[(BOB, 100), (CAROL, 50)]),
            ),
        );
        let (topic, mut stale) = room.send(
            &s2,
            &[id(&p2)],
            state("m.room.topic", "", CAROL, json!({ "topic": "stale" })),
        );
        // A stale view of the room: p1 with events that cite p2.
        stale.insert(key("m.room.power_levels", ""), id(&p1));
        s3.insert(key("m.room.topic", ""), id(&topic));
        let out = resolve_both(&room, &[s3, stale]);
        let expected = if version == RoomVersion::V12 {
            &p3
        } else {
            &p1
        };
        assert_eq!(
            out.get(&key("m.room.power_levels", "")),
            Some(&id(expected)),
            "v{version}"
        );
    }
}

/// v2 replays conflicted events on top of the unconflicted state (where
/// bob is banned); v2.1 starts from nothing, so bob's topic is checked
/// against its own auth events, passes, and wins on its later timestamp.
#[test]
fn banned_senders_topic_v2_vs_v2_1() {
    for version in RoomVersion::ALL {
        let (mut room, s, evs) = base(version);
        room.ts = 1000;
        let (t_bob, s1) = room.send(
            &s,
            &[id(evs.last().expect("tip"))],
            state("m.room.topic", "", BOB, json!({ "topic": "bob" })),
        );
        room.ts = 10;
        let (ban, s1) = room.send(&s1, &[id(&t_bob)], member(BOB, ALICE, "ban"));
        let (t_alice, s2) = room.send(
            &s1,
            &[id(&ban)],
            state("m.room.topic", "", ALICE, json!({ "topic": "alice" })),
        );
        let out = resolve_both(&room, &[s1, s2]);
        let expected = if version == RoomVersion::V12 {
            &t_bob
        } else {
            &t_alice
        };
        assert_eq!(
            out.get(&key("m.room.topic", "")),
            Some(&id(expected)),
            "v{version}"
        );
    }
}

/// An auth event the caller marks rejected is never used as a stand-in
/// for a key missing from the state.
#[test]
fn rejected_auth_events_are_not_used() {
    let topic = key("m.room.topic", "");
    for rejected in [false, true] {
        let (mut room, s, evs) = base(RoomVersion::V12);
        // bob names the room first so his join is in every auth chain and
        // stays out of the full conflicted set.
        let (name, s) = room.send(
            &s,
            &[id(evs.last().expect("tip"))],
            state("m.room.name", "", BOB, json!({ "name": "n" })),
        );
        let (t_alice, sa) = room.send(
            &s,
            &[id(&name)],
            state("m.room.topic", "", ALICE, json!({ "topic": "a" })),
        );
        let (t_bob, sb) = room.send(
            &s,
            &[id(&name)],
            state("m.room.topic", "", BOB, json!({ "topic": "b" })),
        );
        if rejected {
            room.store.rejected.insert(id(&evs[4]));
        }
        let out =
            state_res::resolve(room.version.rules(), &[sa, sb], &room.store).expect("resolves");
        let expected = if rejected { &t_alice } else { &t_bob };
        assert_eq!(out.get(&topic), Some(&id(expected)), "rejected: {rejected}");
    }
}
