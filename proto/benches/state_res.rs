//! State resolution of a 10,000-member room with 100 conflicting forks:
//! Myelin's resolver against ruma-state-res on the same input, same run.
//!
//! Every fork starts from the same point and changes the power levels
//! (raising one user), lets that user set the topic, bans one member and
//! adds a new one, so the conflicted state set has ~400 events and the
//! auth difference the forks' own auth events. Inputs (events, state maps,
//! and for ruma the per-state auth chains it requires) are built once,
//! outside the timed section.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::LazyLock;

use divan::Bencher;
use myelin_proto::room_version::RoomVersion;
use myelin_proto::state_res::testing::{Room, member, state};
use myelin_proto::state_res::{self, StateMap};
use serde_json::json;

const MEMBERS: usize = 10_000;
const FORKS: usize = 100;

struct Input {
    room: Room,
    sets: Vec<StateMap>,
    ruma: common::RumaInput,
}

fn build(version: RoomVersion) -> Input {
    let alice = common::user(0);
    let (mut room, mut st) = Room::new(version, &alice);
    let mut tip = room.create.event_id().to_owned();
    let send = |room: &mut Room, st: &mut StateMap, tip: &mut ruma::OwnedEventId, ev| {
        let pdu = room.send_mut(st, std::slice::from_ref(tip), ev);
        *tip = pdu.event_id().to_owned();
    };
    send(&mut room, &mut st, &mut tip, member(&alice, &alice, "join"));
    let pl = |raised: Option<usize>| {
        let mut users = serde_json::Map::new();
        if version != RoomVersion::V12 {
            users.insert(alice.clone(), json!(100));
        }
        if let Some(i) = raised {
            users.insert(common::user(i), json!(50));
        }
        json!({ "users": users, "state_default": 50, "ban": 50, "kick": 50 })
    };
    send(
        &mut room,
        &mut st,
        &mut tip,
        state("m.room.power_levels", "", &alice, pl(None)),
    );
    send(
        &mut room,
        &mut st,
        &mut tip,
        state(
            "m.room.join_rules",
            "",
            &alice,
            json!({ "join_rule": "public" }),
        ),
    );
    for i in 1..MEMBERS {
        let u = common::user(i);
        send(&mut room, &mut st, &mut tip, member(&u, &u, "join"));
    }
    let fork_point = tip.clone();
    let mut sets = Vec::with_capacity(FORKS);
    for f in 0..FORKS {
        let mut fs = st.clone();
        let mut ftip = fork_point.clone();
        let raised = 1 + f;
        let u = common::user(raised);
        let banned = common::user(5_000 + f);
        let newcomer = common::user(MEMBERS + f);
        send(
            &mut room,
            &mut fs,
            &mut ftip,
            state("m.room.power_levels", "", &alice, pl(Some(raised))),
        );
        send(
            &mut room,
            &mut fs,
            &mut ftip,
            state(
                "m.room.topic",
                "",
                &u,
                json!({ "topic": format!("fork {f}") }),
            ),
        );
        send(
            &mut room,
            &mut fs,
            &mut ftip,
            member(&banned, &alice, "ban"),
        );
        send(
            &mut room,
            &mut fs,
            &mut ftip,
            member(&newcomer, &newcomer, "join"),
        );
        sets.push(fs);
    }
    let ruma = common::ruma_input(version, &room.store, &sets);
    Input { room, sets, ruma }
}

static V11: LazyLock<Input> = LazyLock::new(|| checked(build(RoomVersion::V11)));
static V12: LazyLock<Input> = LazyLock::new(|| checked(build(RoomVersion::V12)));

/// Both resolvers must agree on the benchmark input, or the figures mean
/// nothing.
fn checked(input: Input) -> Input {
    let ours = state_res::resolve(input.room.version.rules(), &input.sets, &input.room.store)
        .expect("myelin resolves");
    let theirs = common::ruma_resolve(&input.ruma).expect("ruma resolves");
    assert_eq!(common::sorted_ours(&ours), common::sorted_ruma(&theirs));
    input
}

fn input(version: &str) -> &'static Input {
    if version == "12" { &V12 } else { &V11 }
}

#[divan::bench(args = ["11", "12"], sample_count = 20, sample_size = 1)]
fn myelin(bencher: Bencher, version: &str) {
    let input = input(version);
    let rules = input.room.version.rules();
    bencher.bench(|| state_res::resolve(rules, &input.sets, &input.room.store).expect("resolves"));
}

#[divan::bench(args = ["11", "12"], sample_count = 10, sample_size = 1)]
fn ruma(bencher: Bencher, version: &str) {
    let input = input(version);
    bencher.bench(|| common::ruma_resolve(&input.ruma).expect("resolves"));
}

fn main() {
    divan::main();
}
