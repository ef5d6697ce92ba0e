//! Unit tests of the pieces of state resolution, with a small stand-in for
//! the authorization rules so each case isolates one step of the algorithm.

use std::collections::HashSet;
use std::sync::Arc;

use ruma::OwnedEventId;
use serde_json::json;

use super::testing::{Room, member, state};
use super::*;
use crate::room_version::RoomVersion;

/// A few authorization rules, enough to make order matter: senders must be
/// joined, state needs power 50 and power levels 100 (when there are power
/// levels), kicks and bans need power 50 and more than the target, banned
/// users cannot join.
struct Toy;

impl Checker for Toy {
    fn allows<'a>(
        &self,
        rules: &RoomVersionRules,
        ev: &Pdu,
        state: &dyn Fn(&str, &str) -> Option<&'a Pdu>,
    ) -> bool {
        if ev.event_type() == T_CREATE {
            return true;
        }
        let Some(create) = state(T_CREATE, "") else {
            return false;
        };
        let pl = state(T_POWER_LEVELS, "");
        let power = |user: &str| -> i64 {
            if create.sender().as_str() == user && rules.creators_have_infinite_power {
                return i64::MAX;
            }
            match pl {
                Some(pl) => {
                    let c = pl.content();
                    c.get("users")
                        .and_then(|u| u.as_object())
                        .and_then(|u| u.get(user))
                        .or_else(|| c.get("users_default"))
                        .and_then(|v| v.as_integer())
                        .unwrap_or(0)
                }
                None if create.sender().as_str() == user => 100,
                None => 0,
            }
        };
        let membership = |user: &str| state(T_MEMBER, user).and_then(|m| m.membership());
        let sender = ev.sender().as_str();
        if ev.event_type() == T_MEMBER {
            let Some(target) = ev.state_key() else {
                return false;
            };
            return match (ev.membership(), target == sender) {
                (Some("join"), true) => membership(target) != Some("ban"),
                (Some("leave"), true) => membership(sender) == Some("join"),
                (Some("leave" | "ban"), false) => {
                    membership(sender) == Some("join")
                        && power(sender) >= 50
                        && power(sender) > power(target)
                }
                _ => false,
            };
        }
        let needed = if ev.event_type() == T_POWER_LEVELS {
            100
        } else {
            50
        };
        membership(sender) == Some("join") && (pl.is_none() || power(sender) >= needed)
    }
}

const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";
const CAROL: &str = "@carol:example.org";

fn pl(users: serde_json::Value) -> serde_json::Value {
    json!({ "users": users, "users_default": 0, "state_default": 50 })
}

fn id(p: &Arc<Pdu>) -> OwnedEventId {
    p.event_id().to_owned()
}

fn run(room: &Room, sets: &[StateMap], trace: &mut Trace) -> Result<StateMap, StateResError> {
    resolve_inner(
        room.version.rules(),
        sets,
        &room.store,
        Precomputed::default(),
        &Toy,
        Some(trace),
    )
}

fn sorted(mut v: Vec<OwnedEventId>) -> Vec<OwnedEventId> {
    v.sort();
    v
}

/// Brute-force auth difference straight from the definition.
fn naive_difference(room: &Room, sets: &[StateMap]) -> Vec<OwnedEventId> {
    let chains: Vec<HashSet<OwnedEventId>> = sets
        .iter()
        .map(|s| {
            s.values()
                .flat_map(|e| auth_chain(&room.store, e).expect("chain"))
                .collect()
        })
        .collect();
    let union: HashSet<_> = chains.iter().flatten().cloned().collect();
    sorted(
        union
            .into_iter()
            .filter(|e| !chains.iter().all(|c| c.contains(e)))
            .collect(),
    )
}

/// create, alice joins, power levels (alice 100, bob 50), public join
/// rules, bob joins.
fn base_room(version: RoomVersion) -> (Room, StateMap, Vec<Arc<Pdu>>) {
    let (mut room, s) = Room::new(version, ALICE);
    let create = Arc::clone(&room.create);
    let (j_alice, s) = room.send(&s, &[id(&create)], member(ALICE, ALICE, "join"));
    let (p1, s) = room.send(
        &s,
        &[id(&j_alice)],
        state(
            T_POWER_LEVELS,
            "",
            ALICE,
            pl(json!({ ALICE: 100, BOB: 50 })),
        ),
    );
    let (jr, s) = room.send(
        &s,
        &[id(&p1)],
        state(T_JOIN_RULES, "", ALICE, json!({ "join_rule": "public" })),
    );
    let (j_bob, s) = room.send(&s, &[id(&jr)], member(BOB, BOB, "join"));
    (room, s, vec![create, j_alice, p1, jr, j_bob])
}

#[test]
fn auth_chain_is_everything_reachable_through_auth_events() {
    let (room, _, ev) = base_room(RoomVersion::V11);
    let [create, j_alice, p1, jr, j_bob] = &ev[..] else {
        unreachable!()
    };
    let chain = auth_chain(&room.store, j_bob.event_id()).expect("chain");
    // bob's join cites create, power levels and join rules directly, and
    // alice's join only through them.
    let expected: HashSet<_> = [create, j_alice, p1, jr].into_iter().map(id).collect();
    assert_eq!(chain, expected);
    assert!(
        auth_chain(&room.store, create.event_id())
            .expect("chain")
            .is_empty()
    );
    let missing = OwnedEventId::try_from(format!("${}", "A".repeat(43))).expect("id");
    assert_eq!(
        auth_chain(&room.store, &missing),
        Err(StateResError::MissingEvent(missing.clone()))
    );
}

#[test]
fn auth_difference_counts_unconflicted_auth_chains() {
    for version in RoomVersion::ALL {
        let (mut room, s, ev) = base_room(version);
        let j_bob = &ev[4];
        // alice raises bob, then carol joins (citing the new power levels).
        let (p2, s) = room.send(
            &s,
            &[id(j_bob)],
            state(
                T_POWER_LEVELS,
                "",
                ALICE,
                pl(json!({ ALICE: 100, BOB: 60 })),
            ),
        );
        let (j_carol, s) = room.send(&s, &[id(&p2)], member(CAROL, CAROL, "join"));
        // Fork A: bob sets a topic. Fork B: alice changes power levels.
        let (topic, sa) = room.send(
            &s,
            &[id(&j_carol)],
            state("m.room.topic", "", BOB, json!({ "topic": "a" })),
        );
        let (p3, sb) = room.send(
            &s,
            &[id(&j_carol)],
            state(
                T_POWER_LEVELS,
                "",
                ALICE,
                pl(json!({ ALICE: 100, BOB: 70 })),
            ),
        );
        let sets = [sa, sb];
        let mut trace = Trace::default();
        run(&room, &sets, &mut trace).expect("resolve");
        // p2 is in p3's auth chain only on one side, but carol's join,
        // which both states hold, cites it: not in the difference.
        assert_eq!(
            sorted(trace.difference.clone()),
            naive_difference(&room, &sets)
        );
        assert!(!trace.difference.contains(&id(&p2)), "{version}");
        assert_eq!(
            sorted(trace.conflicted.clone()),
            sorted(vec![id(&topic), id(&p2), id(&p3)])
        );
    }
}

#[test]
fn auth_difference_has_what_only_some_states_reach() {
    for version in RoomVersion::ALL {
        let (mut room, s, ev) = base_room(version);
        let tip = id(&ev[4]);
        let (j_carol, sa) = room.send(&s, std::slice::from_ref(&tip), member(CAROL, CAROL, "join"));
        let (_, sa) = room.send(
            &sa,
            &[id(&j_carol)],
            state("m.room.topic", "", CAROL, json!({ "topic": "c" })),
        );
        let (_, sb) = room.send(
            &s,
            &[tip],
            state("m.room.name", "", BOB, json!({ "name": "b" })),
        );
        let sets = [sa, sb];
        let mut trace = Trace::default();
        run(&room, &sets, &mut trace).expect("resolve");
        let naive = naive_difference(&room, &sets);
        assert!(naive.contains(&id(&j_carol)));
        assert_eq!(sorted(trace.difference), naive, "{version}");
    }
}

/// MSC4297 "problem B" (the state reset behind CVE-2025-49090): a power
/// levels change authorised by an intermediate power levels event that is
/// in the auth chains of both states but in neither state.
fn problem_b(version: RoomVersion) -> (Room, [StateMap; 2], [Arc<Pdu>; 5]) {
    let (mut room, s, ev) = base_room(version);
    let (p1, jr, j_bob) = (Arc::clone(&ev[2]), Arc::clone(&ev[3]), Arc::clone(&ev[4]));
    // p2 makes bob an admin; bob's p3 is allowed only under p2.
    let (p2, s2) = room.send(
        &s,
        &[id(&j_bob)],
        state(
            T_POWER_LEVELS,
            "",
            ALICE,
            pl(json!({ ALICE: 100, BOB: 100 })),
        ),
    );
    let (p3, mut s3) = room.send(
        &s2,
        &[id(&p2)],
        state(
            T_POWER_LEVELS,
            "",
            BOB,
            pl(json!({ ALICE: 100, BOB: 100, CAROL: 50 })),
        ),
    );
    // A stale view: still p1, but with carol's join, which cites p2.
    let (j_carol, mut stale) = room.send(&s2, &[id(&p2)], member(CAROL, CAROL, "join"));
    stale.insert((T_POWER_LEVELS.into(), String::new()), id(&p1));
    s3.insert((T_MEMBER.into(), CAROL.into()), id(&j_carol));
    (room, [s3, stale], [p1, p2, p3, j_bob, jr])
}

#[test]
fn conflicted_subgraph_prevents_the_problem_b_state_reset() {
    let key = (T_POWER_LEVELS.to_owned(), String::new());

    // v2: p2 is in every auth chain, so not in the full conflicted set;
    // p3 is checked against p1, fails, and the power levels reset to p1.
    let (room, sets, [p1, p2, p3, j_bob, _]) = problem_b(RoomVersion::V11);
    let mut trace = Trace::default();
    let v2 = run(&room, &sets, &mut trace).expect("resolve");
    assert!(trace.subgraph.is_empty());
    assert_eq!(
        sorted(trace.difference.clone()),
        naive_difference(&room, &sets)
    );
    // bob's join is only in p3's chain: auth difference, and in X as p3's
    // auth event, ordered between p1 (which it cites) and p3.
    assert_eq!(trace.difference, vec![id(&j_bob)]);
    assert_eq!(trace.power_order, vec![id(&p1), id(&j_bob), id(&p3)]);
    assert!(!trace.power_order.contains(&id(&p2)));
    assert_eq!(v2.get(&key), Some(&id(&p1)));

    // v2.1: p2 lies on the path p3 -> p2 -> p1 between conflicted events,
    // so it is replayed before p3, which then passes.
    // bob's join and the join rules are on paths p3 -> ... -> p1 too.
    let (room, sets, [p1, p2, p3, j_bob, jr]) = problem_b(RoomVersion::V12);
    let mut trace = Trace::default();
    let v21 = run(&room, &sets, &mut trace).expect("resolve");
    assert_eq!(
        sorted(trace.subgraph.clone()),
        sorted(vec![id(&p1), id(&p2), id(&p3), id(&j_bob), id(&jr)])
    );
    // Once ready, alice's events (a creator: infinite power) go first, by
    // timestamp among themselves; then bob's.
    assert_eq!(
        trace.power_order,
        vec![id(&p1), id(&jr), id(&p2), id(&j_bob), id(&p3)]
    );
    assert_eq!(v21.get(&key), Some(&id(&p3)));
}

#[test]
fn power_ordering_breaks_ties_by_power_then_ts_then_event_id() {
    let (mut room, s, ev) = base_room(RoomVersion::V11);
    let tip = [id(&ev[4])];
    let jr = |sender| state(T_JOIN_RULES, "", sender, json!({ "join_rule": "invite" }));
    // Three concurrent join rules changes: bob (power 50) earliest, two
    // by alice (power 100) with the same timestamp.
    room.ts = 4;
    let (b, sb) = room.send(&s, &tip, jr(BOB));
    room.ts = 9;
    let (a1, sa1) = room.send(
        &s,
        &tip,
        state(T_JOIN_RULES, "", ALICE, json!({ "join_rule": "knock" })),
    );
    room.ts = 9;
    let (a2, sa2) = room.send(&s, &tip, jr(ALICE));
    assert_eq!(a1.origin_server_ts(), a2.origin_server_ts());
    let mut trace = Trace::default();
    run(&room, &[sb, sa1, sa2], &mut trace).expect("resolve");
    let (first, second) = if a1.event_id() < a2.event_id() {
        (&a1, &a2)
    } else {
        (&a2, &a1)
    };
    // bob's join is in the auth difference (only bob's change cites it)
    // and must precede his change; alice's power puts hers before both.
    assert_eq!(
        trace.power_order,
        vec![id(first), id(second), id(&ev[4]), id(&b)]
    );
}

#[test]
fn mainline_ordering_puts_older_power_levels_first() {
    let (mut room, s, ev) = base_room(RoomVersion::V11);
    let tip = [id(&ev[4])];
    let (p2, sa) = room.send(
        &s,
        &tip,
        state(
            T_POWER_LEVELS,
            "",
            ALICE,
            pl(json!({ ALICE: 100, BOB: 50 })),
        ),
    );
    // tA cites p2 and has the earlier timestamp; tB cites p1.
    room.ts = 100;
    let (t_a, sa) = room.send(
        &sa,
        &[id(&p2)],
        state("m.room.topic", "", BOB, json!({ "topic": "a" })),
    );
    room.ts = 200;
    let (t_b, sb) = room.send(
        &s,
        &tip,
        state("m.room.topic", "", BOB, json!({ "topic": "b" })),
    );
    let mut trace = Trace::default();
    let out = run(&room, &[sa, sb], &mut trace).expect("resolve");
    // Mainline of p2 is [p2, p1]: tB sits at position 1, tA at 0, and the
    // greater position sorts first whatever the timestamps say.
    assert_eq!(trace.mainline_order, vec![id(&t_b), id(&t_a)]);
    assert_eq!(
        out.get(&("m.room.topic".into(), String::new())),
        Some(&id(&t_a))
    );
}

#[test]
fn iterative_checks_fall_back_to_auth_events_unless_rejected() {
    let topic_key = ("m.room.topic".to_owned(), String::new());
    for rejected in [false, true] {
        let (mut room, s, ev) = base_room(RoomVersion::V12);
        // bob names the room on the common branch, so his join is in every
        // auth chain and stays out of the full conflicted set.
        let (name, s) = room.send(
            &s,
            &[id(&ev[4])],
            state("m.room.name", "", BOB, json!({ "name": "n" })),
        );
        let tip = [id(&name)];
        let (t_alice, sa) = room.send(
            &s,
            &tip,
            state("m.room.topic", "", ALICE, json!({ "topic": "a" })),
        );
        let (t_bob, sb) = room.send(
            &s,
            &tip,
            state("m.room.topic", "", BOB, json!({ "topic": "b" })),
        );
        if rejected {
            room.store.rejected.insert(id(&ev[4]));
        }
        // v2.1 starts from an empty state: bob's membership is not in it,
        // so his join comes from his topic's auth events, unless rejected.
        let out = run(&room, &[sa, sb], &mut Trace::default()).expect("resolve");
        let winner = if rejected { &t_alice } else { &t_bob };
        assert_eq!(
            out.get(&topic_key),
            Some(&id(winner)),
            "rejected: {rejected}"
        );
    }
}

#[test]
fn v2_starts_from_unconflicted_state_and_v2_1_from_empty() {
    let topic_key = ("m.room.topic".to_owned(), String::new());
    for version in [RoomVersion::V11, RoomVersion::V12] {
        let (mut room, s, ev) = base_room(version);
        // bob sets a topic (with a clock far ahead), alice then bans him
        // and sets her own topic on one branch only.
        room.ts = 1000;
        let (t_bob, s1) = room.send(
            &s,
            &[id(&ev[4])],
            state("m.room.topic", "", BOB, json!({ "topic": "b" })),
        );
        room.ts = 10;
        let (ban, s1) = room.send(&s1, &[id(&t_bob)], member(BOB, ALICE, "ban"));
        let (t_alice, s2) = room.send(
            &s1,
            &[id(&ban)],
            state("m.room.topic", "", ALICE, json!({ "topic": "a" })),
        );
        let out = run(&room, &[s1, s2], &mut Trace::default()).expect("resolve");
        // v2 checks bob's topic against the unconflicted ban and drops it;
        // v2.1 checks it against its own auth events (bob joined) and its
        // later timestamp wins the mainline ordering.
        let expected = if version == RoomVersion::V11 {
            &t_alice
        } else {
            &t_bob
        };
        assert_eq!(out.get(&topic_key), Some(&id(expected)), "{version}");
    }
}

#[test]
fn missing_and_foreign_events_are_errors() {
    let (mut room, s, ev) = base_room(RoomVersion::V11);
    let tip = [id(&ev[4])];
    let (t1, s1) = room.send(
        &s,
        &tip,
        state("m.room.topic", "", ALICE, json!({ "topic": "1" })),
    );
    let (_, s2) = room.send(
        &s,
        &tip,
        state("m.room.topic", "", ALICE, json!({ "topic": "2" })),
    );
    let mut store = room.store.clone();
    store.events.remove(t1.event_id());
    assert_eq!(
        resolve(room.version.rules(), &[s1.clone(), s2.clone()], &store),
        Err(StateResError::MissingEvent(id(&t1)))
    );
    // The same states resolve, and resolving them again agrees.
    let a = resolve(room.version.rules(), &[s1.clone(), s2.clone()], &room.store).expect("ok");
    let b = resolve(room.version.rules(), &[s2, s1], &room.store).expect("ok");
    assert_eq!(a, b);
    assert!(
        resolve(room.version.rules(), &[], &room.store)
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn precomputed_auth_data_gives_the_same_answer() {
    let (room, sets, _) = problem_b(RoomVersion::V12);
    let rules = room.version.rules();
    let plain = resolve(rules, &sets, &room.store).expect("plain");
    let chains: Vec<HashSet<OwnedEventId>> = sets
        .iter()
        .map(|s| {
            s.values()
                .flat_map(|e| auth_chain(&room.store, e).expect("chain"))
                .collect()
        })
        .collect();
    let with_chains = resolve_with(
        rules,
        &sets,
        &room.store,
        Precomputed {
            auth_chains: Some(&chains),
            ..Default::default()
        },
    );
    assert_eq!(with_chains.as_ref(), Ok(&plain));
    let diff = naive_difference(&room, &sets);
    let with_diff = resolve_with(
        rules,
        &sets,
        &room.store,
        Precomputed {
            auth_difference: Some(&diff),
            ..Default::default()
        },
    );
    assert_eq!(with_diff, Ok(plain));
    assert_eq!(
        resolve_with(
            rules,
            &sets,
            &room.store,
            Precomputed {
                auth_chains: Some(&chains[..1]),
                ..Default::default()
            }
        ),
        Err(StateResError::AuthChainCount {
            expected: 2,
            got: 1
        })
    );
}

/// Step 1 walks from power events through the full conflicted set only
/// (the reading Synapse and ruma share): carol's join is conflicted and in
/// the ban's auth chain, but reached only through the kick, which is in
/// both auth chains and so outside the set. It is ordered by mainline.
#[test]
fn x_walks_only_through_the_full_conflicted_set() {
    let (mut room, s, ev) = base_room(RoomVersion::V11);
    let tip = id(&ev[4]);
    // carol (75) joins, kicks bob; then the branches part.
    let (p75, s) = room.send(
        &s,
        &[tip],
        state(
            T_POWER_LEVELS,
            "",
            ALICE,
            pl(json!({ ALICE: 100, BOB: 50, CAROL: 75 })),
        ),
    );
    let (j_carol, s) = room.send(&s, &[id(&p75)], member(CAROL, CAROL, "join"));
    let (kick, s) = room.send(&s, &[id(&j_carol)], member(BOB, CAROL, "leave"));
    // Branch 1: alice bans bob (citing the kick, which cites carol's join).
    let (ban, s1) = room.send(&s, &[id(&kick)], member(BOB, ALICE, "ban"));
    // Branch 2: bob rejoins (also citing the kick); carol renames herself.
    let (_, s2) = room.send(&s, &[id(&kick)], member(BOB, BOB, "join"));
    let mut rename = member(CAROL, CAROL, "join");
    rename.content = json!({ "membership": "join", "displayname": "C" });
    let (_, s2) = room.send(&s2, &[id(&kick)], rename);
    let mut trace = Trace::default();
    let out = run(&room, &[s1, s2], &mut trace).expect("resolve");
    // The kick is in both auth chains and in neither state: not in the
    // full conflicted set. carol's join is conflicted and in the ban's
    // auth chain through the kick only.
    assert!(!trace.difference.contains(&id(&kick)));
    assert!(trace.conflicted.contains(&id(&j_carol)));
    assert_eq!(trace.power_order, vec![id(&ban)]);
    assert!(trace.mainline_order.contains(&id(&j_carol)));
    assert_eq!(out.get(&(T_MEMBER.into(), BOB.into())), Some(&id(&ban)));
}

/// A join rules (or power levels) event with a non-empty state key is not a
/// power event: the auth rules never consult it. It is sorted by mainline,
/// as Synapse and ruma do. The create event is one.
#[test]
fn power_events_need_an_empty_state_key() {
    let (mut room, s, ev) = base_room(RoomVersion::V11);
    let tip = [id(&ev[4])];
    let (keyed, sa) = room.send(
        &s,
        &tip,
        state(T_JOIN_RULES, "x", BOB, json!({ "join_rule": "invite" })),
    );
    let (topic, sb) = room.send(
        &s,
        &tip,
        state("m.room.topic", "", BOB, json!({ "topic": "t" })),
    );
    let mut trace = Trace::default();
    run(&room, &[sa, sb], &mut trace).expect("resolve");
    assert!(trace.power_order.is_empty());
    let mut mainline = trace.mainline_order.clone();
    mainline.sort();
    assert_eq!(mainline, sorted(vec![id(&keyed), id(&topic)]));
    let keyed_pl = build_like(&room, &keyed, T_POWER_LEVELS);
    assert!(!is_power_event(&keyed_pl));
    assert!(is_power_event(&room.create));
}

/// `template` with another event type.
fn build_like(room: &Room, template: &Pdu, ty: &str) -> Pdu {
    super::testing::build(
        room.version,
        Some(&room.room_id),
        ty,
        template.state_key(),
        template.sender().as_str(),
        template.content().clone(),
        template.auth_events(),
        template.prev_events(),
        template.depth(),
        template.origin_server_ts(),
    )
}

#[test]
fn split_finds_keys_that_differ_or_are_missing_anywhere() {
    let (mut room, s, ev) = base_room(RoomVersion::V11);
    let tip = [id(&ev[4])];
    let topic = |t: &str| state("m.room.topic", "", ALICE, json!({ "topic": t }));
    let (_, s1) = room.send(&s, &tip, topic("1"));
    let (_, s2) = room.send(&s, &tip, topic("2"));
    let (_, s2) = room.send(
        &s2,
        &tip,
        state("m.room.name", "", ALICE, json!({ "name": "n" })),
    );
    let (_, s3) = room.send(&s, &tip, topic("1"));
    let (_, mut s3) = room.send(
        &s3,
        &tip,
        state("m.room.name", "", ALICE, json!({ "name": "n" })),
    );
    // s3's topic is a different event with the same content as s1's.
    s3.insert(
        ("m.room.topic".into(), String::new()),
        s1[&("m.room.topic".into(), String::new())].clone(),
    );
    let s3_name = s3[&("m.room.name".into(), String::new())].clone();
    let mut s2 = s2;
    s2.insert(("m.room.name".into(), String::new()), s3_name);
    let sets = [s1, s2, s3];
    let split = split(&sets);
    let mut conflicted: Vec<_> = split.conflicted.iter().map(|k| k.0.as_str()).collect();
    conflicted.sort_unstable();
    // Topic differs in s2; the name is in s2 and s3 but not in s1.
    assert_eq!(conflicted, vec!["m.room.name", "m.room.topic"]);
    // Everything from before the forks is unconflicted.
    let mut unconflicted: Vec<_> = split.unconflicted.iter().map(|e| (*e).clone()).collect();
    unconflicted.sort();
    assert_eq!(unconflicted, sorted(ev.iter().map(id).collect()));
}
