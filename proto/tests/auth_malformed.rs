//! Malformed content must be rejected (or ignored where the spec ignores
//! it), never panic: wrong types, missing fields, non-object fields, the
//! largest and smallest integers canonical JSON allows, in the candidate
//! event and in every state event the rules read.

#[path = "auth_support.rs"]
mod support;

use myelin_proto::auth::{
    self, JoinRule, LEVEL_FIELDS, Membership, PowerLevels, RoomCreate, restricted_allow_rooms,
};
use myelin_proto::canonical_json::{MAX_SAFE_INT, MIN_SAFE_INT, Object, Value};
use myelin_proto::{Pdu, RoomVersion};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use support::{Room, Spec};

const USERS: [&str; 4] = ["@alice:a.test", "@bob:a.test", "@carol:b.test", "@x"];
const KEYS: [&str; 32] = [
    "membership",
    "third_party_invite",
    "signed",
    "mxid",
    "token",
    "signatures",
    "join_authorised_via_users_server",
    "users",
    "users_default",
    "events",
    "notifications",
    "ban",
    "kick",
    "invite",
    "state_default",
    "events_default",
    "redact",
    "creator",
    "additional_creators",
    "m.federate",
    "room_version",
    "join_rule",
    "allow",
    "public_key",
    "public_keys",
    "@alice:a.test",
    "@bob:a.test",
    "m.room.name",
    "room",
    "id.test",
    "ed25519:0",
    "type",
];
const STRINGS: [&str; 18] = [
    "",
    "join",
    "invite",
    "leave",
    "ban",
    "knock",
    "public",
    "restricted",
    "knock_restricted",
    "@alice:a.test",
    "@bob:a.test",
    "@x",
    "tok",
    "ed25519:0",
    "!room:a.test",
    "50",
    "m.room_membership",
    "AAAA",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![0, 1, -1, 49, 50, 100, MAX_SAFE_INT, MIN_SAFE_INT])
            .prop_map(Value::Integer),
        prop::sample::select(STRINGS.to_vec()).prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(Value::Object),
        ]
    })
}

fn content() -> impl Strategy<Value = Object> {
    prop::collection::btree_map(
        prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
        value(),
        0..6,
    )
}

#[derive(Clone, Debug)]
struct Case {
    version: RoomVersion,
    create: Object,
    power_levels: Option<Object>,
    join_rules: Option<Object>,
    members: Vec<(usize, Object)>,
    third_party_invite: Option<Object>,
    event_type: &'static str,
    sender: usize,
    state_key: Option<&'static str>,
    content: Object,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            prop::sample::select(RoomVersion::ALL.to_vec()),
            content(),
            prop::option::of(content()),
            prop::option::of(content()),
            prop::collection::vec((0..USERS.len(), content()), 0..4),
            prop::option::of(content()),
        ),
        (
            prop::sample::select(vec![
                "m.room.member",
                "m.room.member",
                "m.room.power_levels",
                "m.room.power_levels",
                "m.room.create",
                "m.room.third_party_invite",
                "m.room.join_rules",
                "m.room.message",
            ]),
            0..3usize,
            prop::sample::select(vec![
                Some("@alice:a.test"),
                Some("@bob:a.test"),
                Some("@carol:b.test"),
                Some("@x"),
                Some(""),
                Some("tok"),
                None,
            ]),
            content(),
        ),
    )
        .prop_map(
            |(
                (version, create, power_levels, join_rules, members, third_party_invite),
                (event_type, sender, state_key, content),
            )| Case {
                version,
                create,
                power_levels,
                join_rules,
                members,
                third_party_invite,
                event_type,
                sender,
                state_key,
                content,
            },
        )
}

fn state_event(room: &mut Room, sender: &str, t: &str, key: &str, content: &Object) -> Pdu {
    let pdu = room.event(&Spec::new(sender, t, Some(key), content.clone()));
    room.put(pdu)
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let alice = USERS[0];
    let mut room = Room::with_create(
        c.version,
        &Spec::new(alice, "m.room.create", Some(""), c.create.clone()),
    );
    if let Some(pl) = &c.power_levels {
        state_event(&mut room, alice, "m.room.power_levels", "", pl);
    }
    if let Some(jr) = &c.join_rules {
        state_event(&mut room, alice, "m.room.join_rules", "", jr);
    }
    for (u, content) in &c.members {
        // Sent by Alice: "@x" is no valid sender, only a state key.
        state_event(&mut room, alice, "m.room.member", USERS[*u], content);
    }
    if let Some(tpi) = &c.third_party_invite {
        state_event(&mut room, alice, "m.room.third_party_invite", "tok", tpi);
    }

    let sender = USERS[c.sender];
    let spec = Spec::new(sender, c.event_type, c.state_key, c.content.clone());
    let is_v12_create =
        c.version == RoomVersion::V12 && c.event_type == "m.room.create" && c.state_key == Some("");
    let event = if is_v12_create {
        support::build(c.version, &spec, None, 99)
    } else {
        room.event(&spec)
    };
    let rules = room.rules;

    // None of these may panic, whatever the content.
    let result = room.check(&event);
    let types = auth::auth_types_for_event(
        rules,
        event.event_type(),
        event.sender(),
        event.state_key(),
        event.content(),
    );
    let state: Vec<&Pdu> = room.state.values().collect();
    let _ = auth::check_auth_events(rules, &event, &state, Some(&room.create));
    let selected: Vec<&Pdu> = types.iter().filter_map(|(t, k)| room.get(t, k)).collect();
    let _ = auth::check_auth_events(rules, &event, &selected, Some(&room.create));
    let power = PowerLevels::new(
        rules,
        Some(&room.create),
        room.get("m.room.power_levels", ""),
    );
    for u in USERS.iter().take(3) {
        let _ = power.user_level(support::user_id(u));
    }
    let _ = (power.ban(), power.kick(), power.invite(), power.redact());
    let _ = power.event_level(event.event_type(), event.is_state());
    let _ = power.notification_level("room");
    let create = RoomCreate::new(rules, &room.create);
    let _ = (
        create.creators().count(),
        create.federate(),
        create.creator(),
    );
    let _ = JoinRule::of(room.get("m.room.join_rules", ""));
    if let Some(jr) = room.get("m.room.join_rules", "") {
        let _ = restricted_allow_rooms(jr).count();
    }
    for (_, content) in &c.members {
        let _ = content
            .get("membership")
            .and_then(Value::as_str)
            .map(Membership::parse);
    }

    // And what is malformed in the candidate is rejected.
    let content = event.content();
    if c.event_type == "m.room.member" {
        let membership_ok = matches!(content.get("membership"), Some(Value::String(_)));
        let key_ok = c
            .state_key
            .is_some_and(|k| k.starts_with('@') && k.contains(':'));
        if !membership_ok || !key_ok {
            prop_assert!(
                result.is_err(),
                "malformed member event allowed: {content:?}"
            );
        }
    }
    if c.event_type == "m.room.power_levels" {
        let bad_field = LEVEL_FIELDS
            .iter()
            .any(|(f, _)| content.get(*f).is_some_and(|v| v.as_integer().is_none()));
        let bad_map = ["events", "notifications", "users"].iter().any(|f| {
            content.get(*f).is_some_and(|v| {
                v.as_object()
                    .is_none_or(|m| m.values().any(|l| l.as_integer().is_none()))
            })
        });
        if bad_field || bad_map {
            prop_assert!(
                result.is_err(),
                "malformed power levels allowed: {content:?}"
            );
        }
    }
    if c.event_type == "m.room.create"
        && c.version == RoomVersion::V12
        && let Some(list) = content.get("additional_creators")
    {
        let ok = list.as_array().is_some_and(|l| {
            l.iter().all(|u| {
                u.as_str()
                    .is_some_and(|s| s.starts_with('@') && s.contains(':'))
            })
        });
        if !ok {
            prop_assert!(result.is_err(), "malformed additional_creators allowed");
        }
    }
    Ok(())
}

#[test]
fn malformed_content_never_panics() {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2000;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x6d61_6c66);
    }
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&case(), |c| run_case(&c)) {
        panic!("{e}");
    }
}

/// Hand-picked malformed events, each with the rule that must reject it.
#[test]
fn malformed_events_are_rejected_by_the_right_rule() {
    for v in RoomVersion::ALL {
        let mut r = Room::new(v, USERS[0], "{}");
        r.member(USERS[0], "join");
        let v12 = v == RoomVersion::V12;
        // Alice may send power levels (rule 7) so that rule 9 is reached.
        r.power_levels(
            USERS[0],
            if v12 {
                "{}"
            } else {
                r#"{"users":{"@alice:a.test":100}}"#
            },
        );
        let n = |v10: &'static str, v12n: &'static str| if v12 { v12n } else { v10 };
        let cases: [(&str, Option<&str>, &str, &str); 10] = [
            ("m.room.member", Some(USERS[1]), "{}", n("4.1", "5.1")),
            (
                "m.room.member",
                Some(USERS[1]),
                r#"{"membership":{"join":true}}"#,
                n("4.1", "5.1"),
            ),
            (
                "m.room.member",
                Some(USERS[3]),
                r#"{"membership":"join"}"#,
                n("4.1", "5.1"),
            ),
            (
                "m.room.member",
                None,
                r#"{"membership":"join"}"#,
                n("4.1", "5.1"),
            ),
            (
                "m.room.power_levels",
                Some(""),
                r#"{"ban":{}}"#,
                n("9.1", "10.1"),
            ),
            (
                "m.room.power_levels",
                Some(""),
                r#"{"events":{"a":null}}"#,
                n("9.2", "10.2"),
            ),
            (
                "m.room.power_levels",
                Some(""),
                r#"{"notifications":[1]}"#,
                n("9.2", "10.2"),
            ),
            (
                "m.room.power_levels",
                Some(""),
                r#"{"users":{"@alice:a.test":1.5e0}}"#,
                "",
            ),
            (
                "m.room.power_levels",
                Some(""),
                r#"{"users":5}"#,
                n("9.3", "10.3"),
            ),
            (
                "m.room.power_levels",
                Some(""),
                r#"{"users":{"":1}}"#,
                n("9.3", "10.3"),
            ),
        ];
        for (t, key, content, rule) in cases {
            let Ok(content) = myelin_proto::canonical_json::parse_object(content.as_bytes()) else {
                // Floats are not canonical JSON: such an event never parses.
                assert!(rule.is_empty());
                continue;
            };
            let sender = if t == "m.room.member" && key == Some(USERS[1]) {
                USERS[1]
            } else {
                USERS[0]
            };
            let e = r.event(&Spec::new(sender, t, key, content));
            assert_eq!(r.rejected_by(&e), Some(rule), "v{v} {t} {e:?}");
        }
        // Content of state events that accepted events never have is read
        // leniently, not panicked on: a member event without membership,
        // a join rules event with an object join_rule, a create event whose
        // additional_creators is a string.
        r.set(
            USERS[1],
            "m.room.member",
            USERS[1],
            r#"{"membership":null}"#,
        );
        r.set(
            USERS[0],
            "m.room.join_rules",
            "",
            r#"{"join_rule":{"x":1}}"#,
        );
        let join = r.ev(
            USERS[1],
            "m.room.member",
            Some(USERS[1]),
            r#"{"membership":"join"}"#,
        );
        assert!(r.check(&join).is_err());
        let msg = r.ev(USERS[1], "m.room.message", None, "{}");
        assert_eq!(r.rejected_by(&msg), Some(n("5", "6")));
    }
}
