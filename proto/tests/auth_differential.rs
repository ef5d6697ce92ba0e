//! Differential tests: our auth rules against ruma-state-res on thousands of
//! random rooms and candidate events, for room versions 10, 11 and 12.
//!
//! Each case builds a room state (create event with or without
//! `additional_creators` and `m.federate`, random power levels, join rule,
//! memberships, a third-party invite) and a candidate event (joins, leaves,
//! kicks, bans, unbans, invites incl. third-party ones, knocks, power level
//! changes, other state, messages, create events) by a random sender, and
//! asserts that `auth::check` and ruma's state-dependent rules (its
//! state-independent ones for create events) agree on allow or reject. It
//! also gives the candidate a random `auth_events` list and compares
//! `auth::check_auth_events` with ruma's state-independent rules.
//!
//! Where ruma departs from the spec or from Synapse, the case is recognised
//! narrowly ([`known_divergence`]) and ruma's differing answer asserted, so
//! the test still fails if either side changes.
//!
//! The seed is fixed so CI is reproducible; set `PROPTEST_RNG_SEED` (and
//! `PROPTEST_CASES`) to explore other cases.

#[path = "auth_support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::OnceLock;

use myelin_proto::auth::{self, LEVEL_FIELDS, PowerLevels, UserPowerLevel};
use myelin_proto::canonical_json::{Object, Value};
use myelin_proto::signing::KeyPair;
use myelin_proto::{Pdu, RoomVersion};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::AuthorizationRules;
use ruma::state_res::{self, Event};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, UInt, UserId};
use serde_json::value::RawValue;
use support::{Room, Spec, obj, server_of};

const USERS: [&str; 6] = [
    "@alice:a.test",
    "@bob:a.test",
    "@carol:b.test",
    "@dave:b.test",
    "@eve:c.test",
    "@frank:c.test",
];
const LEVELS: [i64; 9] = [-1, 0, 1, 49, 50, 51, 99, 100, 101];
/// Event types that power levels may name, and candidates may have.
const EVENT_TYPES: [&str; 6] = [
    "m.room.name",
    "m.room.power_levels",
    "m.room.message",
    "m.room.topic",
    "m.room.third_party_invite",
    "org.example.custom",
];
const MEMBERSHIPS: [&str; 6] = [
    "join",
    "invite",
    "leave",
    "ban",
    "knock",
    "org.example.custom",
];
const JOIN_RULES: [&str; 6] = [
    "public",
    "invite",
    "knock",
    "restricted",
    "knock_restricted",
    "private",
];
const TOKEN: &str = "tok";
/// A syntactically valid event ID that names no event.
const UNKNOWN_EVENT: &str = "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

// ---------------------------------------------------------------------------
// ruma's view of our PDUs

/// A `Pdu` as ruma-state-res's `Event` trait wants it.
struct RumaEvent {
    pdu: Pdu,
    id: OwnedEventId,
    room_id: Option<OwnedRoomId>,
    kind: TimelineEventType,
    content: Box<RawValue>,
    redacts: Option<OwnedEventId>,
}

impl RumaEvent {
    fn new(pdu: &Pdu) -> Self {
        // A v12 create event has no room_id; ours derives one for it.
        let room_id =
            if pdu.rules().room_id_from_create_event && pdu.is_state_of("m.room.create", "") {
                None
            } else {
                Some(pdu.room_id().to_owned())
            };
        Self {
            pdu: pdu.clone(),
            id: pdu.event_id().to_owned(),
            room_id,
            kind: TimelineEventType::from(pdu.event_type()),
            content: serde_json::value::to_raw_value(&Value::Object(pdu.content().clone()))
                .expect("content serializes"),
            redacts: pdu.redacts().map(ToOwned::to_owned),
        }
    }
}

impl Event for RumaEvent {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        self.pdu.sender()
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        MilliSecondsSinceUnixEpoch(UInt::try_from(self.pdu.origin_server_ts()).expect("ts"))
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.pdu.state_key()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.pdu.prev_events().iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.pdu.auth_events().iter())
    }

    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        false
    }
}

fn ruma_rules(version: RoomVersion) -> &'static AuthorizationRules {
    match version {
        RoomVersion::V10 => &AuthorizationRules::V10,
        RoomVersion::V11 => &AuthorizationRules::V11,
        RoomVersion::V12 => &AuthorizationRules::V12,
    }
}

// ---------------------------------------------------------------------------
// Third-party invites, signed once

struct ThirdParty {
    public_key: String,
    /// `signed` objects for each user of `USERS`, really signed.
    signed: Vec<Object>,
    /// Signed by a key the invite event does not publish.
    forged: Vec<Object>,
}

fn third_party() -> &'static ThirdParty {
    static TP: OnceLock<ThirdParty> = OnceLock::new();
    TP.get_or_init(|| {
        let key = KeyPair::from_seed("0", &[9; 32]).expect("key");
        let other = KeyPair::from_seed("0", &[10; 32]).expect("key");
        let sign = |k: &KeyPair, mxid: &str| {
            let mut signed = obj(&format!(r#"{{"mxid":"{mxid}","token":"{TOKEN}"}}"#));
            k.sign_json("id.test", &mut signed);
            signed
        };
        ThirdParty {
            public_key: key.public_key().to_base64(),
            signed: USERS.iter().map(|u| sign(&key, u)).collect(),
            forged: USERS.iter().map(|u| sign(&other, u)).collect(),
        }
    })
}

// ---------------------------------------------------------------------------
// What a case is made of

#[derive(Clone, Debug)]
struct PlSpec {
    users: [Option<i64>; 6],
    fields: [Option<i64>; 7],
    events: [Option<i64>; 6],
    notifications: Option<i64>,
}

impl PlSpec {
    /// The content; users for whom `skip(user)` holds are left out.
    fn content(&self, skip: impl Fn(&str) -> bool) -> Object {
        let mut c = Object::new();
        let mut users = Object::new();
        for (u, l) in USERS.iter().zip(self.users) {
            if let Some(l) = l
                && !skip(u)
            {
                users.insert((*u).to_owned(), Value::Integer(l));
            }
        }
        c.insert("users".into(), Value::Object(users));
        for ((name, _), l) in LEVEL_FIELDS.iter().zip(self.fields) {
            if let Some(l) = l {
                c.insert((*name).to_owned(), Value::Integer(l));
            }
        }
        if self.events.iter().any(Option::is_some) {
            let mut events = Object::new();
            for (t, l) in EVENT_TYPES.iter().zip(self.events) {
                if let Some(l) = l {
                    events.insert((*t).to_owned(), Value::Integer(l));
                }
            }
            c.insert("events".into(), Value::Object(events));
        }
        if let Some(n) = self.notifications {
            c.insert(
                "notifications".into(),
                Value::Object(obj(&format!(r#"{{"room":{n}}}"#))),
            );
        }
        c
    }

    fn apply(&mut self, edit: &PlEdit) {
        match *edit {
            PlEdit::User(i, l) => self.users[i] = l,
            PlEdit::Field(i, l) => self.fields[i] = l,
            PlEdit::Event(i, l) => self.events[i] = l,
            PlEdit::Notifications(l) => self.notifications = l,
        }
    }
}

#[derive(Clone, Debug)]
enum PlEdit {
    User(usize, Option<i64>),
    Field(usize, Option<i64>),
    Event(usize, Option<i64>),
    Notifications(Option<i64>),
}

#[derive(Clone, Debug)]
enum Candidate {
    Member {
        sender: usize,
        target: usize,
        membership: usize,
        via: Option<usize>,
        /// `prev_events` is only the create event (rule 4.3.1).
        right_after_create: bool,
        /// A third-party invite; `true` for a valid signature.
        third_party: Option<bool>,
    },
    PowerLevels {
        sender: usize,
        edits: Vec<PlEdit>,
    },
    State {
        sender: usize,
        event_type: usize,
        /// 0: "", 1: the sender's ID, 2: `other`'s ID, 3: "x".
        key: usize,
        other: usize,
    },
    Message {
        sender: usize,
        event_type: usize,
    },
    ThirdPartyInvite {
        sender: usize,
        at_user: bool,
    },
    Create {
        sender: usize,
        prev_events: bool,
        /// v10/v11: the room ID's server differs from the sender's.
        foreign_room_id: bool,
        /// v10: leave out `creator`.
        no_creator: bool,
        /// v12: 0 none, 1 valid, 2 not an array, 3 an entry not a user ID.
        additional: usize,
    },
}

#[derive(Clone, Debug)]
enum AuthList {
    /// The events the selection picks from the state.
    Selection,
    /// Random state events (indices into the state, in key order); may
    /// repeat, miss the create event or fall outside the selection.
    Random(Vec<usize>),
}

#[derive(Clone, Debug)]
struct Case {
    version: RoomVersion,
    creator: usize,
    /// v10: the user `content.creator` names.
    v10_creator: usize,
    additional_creators: [bool; 6],
    federate: Option<bool>,
    power_levels: Option<PlSpec>,
    join_rule: Option<usize>,
    members: [Option<usize>; 6],
    third_party_inviter: Option<usize>,
    candidate: Candidate,
    auth_list: AuthList,
}

fn user() -> impl Strategy<Value = usize> {
    0..USERS.len()
}

fn level() -> impl Strategy<Value = i64> {
    prop::sample::select(LEVELS.to_vec())
}

fn pl_spec() -> impl Strategy<Value = PlSpec> {
    (
        prop::array::uniform6(prop::option::weighted(0.5, level())),
        prop::array::uniform7(prop::option::weighted(0.3, level())),
        prop::array::uniform6(prop::option::weighted(0.3, level())),
        prop::option::weighted(0.3, level()),
    )
        .prop_map(|(users, fields, events, notifications)| PlSpec {
            users,
            fields,
            events,
            notifications,
        })
}

fn pl_edit() -> impl Strategy<Value = PlEdit> {
    let maybe = || prop::option::weighted(0.7, level());
    prop_oneof![
        3 => (user(), maybe()).prop_map(|(i, l)| PlEdit::User(i, l)),
        3 => (0..LEVEL_FIELDS.len(), maybe()).prop_map(|(i, l)| PlEdit::Field(i, l)),
        2 => (0..EVENT_TYPES.len(), maybe()).prop_map(|(i, l)| PlEdit::Event(i, l)),
        1 => maybe().prop_map(PlEdit::Notifications),
    ]
}

fn candidate() -> impl Strategy<Value = Candidate> {
    prop_oneof![
        8 => (
            user(),
            user(),
            prop::sample::select(vec![0usize, 0, 0, 1, 1, 2, 2, 3, 4, 4, 5]),
            prop::option::weighted(0.4, user()),
            prop::bool::weighted(0.2),
            prop::option::weighted(0.15, any::<bool>()),
            // Joins, knocks and leaves are mostly one's own.
            prop::bool::weighted(0.5),
        )
            .prop_map(|(sender, target, membership, via, right_after_create, third_party, own)| {
                let target = if own { sender } else { target };
                Candidate::Member { sender, target, membership, via, right_after_create, third_party }
            }),
        4 => (user(), prop::collection::vec(pl_edit(), 0..4))
            .prop_map(|(sender, edits)| Candidate::PowerLevels { sender, edits }),
        2 => (user(), 0..EVENT_TYPES.len(), 0..4usize, user())
            .prop_map(|(sender, event_type, key, other)| Candidate::State { sender, event_type, key, other }),
        1 => (user(), 0..EVENT_TYPES.len())
            .prop_map(|(sender, event_type)| Candidate::Message { sender, event_type }),
        1 => (user(), any::<bool>())
            .prop_map(|(sender, at_user)| Candidate::ThirdPartyInvite { sender, at_user }),
        1 => (user(), prop::bool::weighted(0.2), prop::bool::weighted(0.2), prop::bool::weighted(0.2), 0..4usize)
            .prop_map(|(sender, prev_events, foreign_room_id, no_creator, additional)| Candidate::Create {
                sender, prev_events, foreign_room_id, no_creator, additional,
            }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let room = (
        prop::sample::select(RoomVersion::ALL.to_vec()),
        user(),
        user(),
        prop::array::uniform6(prop::bool::weighted(0.2)),
        prop::option::weighted(0.3, prop::bool::weighted(0.3)),
        prop::option::weighted(0.85, pl_spec()),
        prop::option::weighted(0.85, 0..JOIN_RULES.len()),
    );
    let rest = (
        prop::array::uniform6(prop::option::weighted(
            0.8,
            prop::sample::select(vec![0usize, 0, 0, 0, 0, 1, 2, 3, 4]),
        )),
        prop::option::weighted(0.3, user()),
        candidate(),
        prop_oneof![
            1 => Just(AuthList::Selection),
            1 => prop::collection::vec(0..12usize, 0..6).prop_map(AuthList::Random),
        ],
    );
    (room, rest).prop_map(
        |(
            (version, creator, v10_creator, additional_creators, federate, power_levels, join_rule),
            (members, third_party_inviter, candidate, auth_list),
        )| Case {
            version,
            creator,
            // Mostly the sender, as servers write it.
            v10_creator: if v10_creator % 3 == 0 {
                v10_creator
            } else {
                creator
            },
            additional_creators,
            federate,
            power_levels,
            join_rule,
            members,
            // A third-party invite is mostly redeemed by its inviter, so that
            // the signature checks are reached.
            third_party_inviter: third_party_inviter.map(|i| match &candidate {
                Candidate::Member {
                    third_party: Some(_),
                    sender,
                    ..
                } if i % 3 != 0 => *sender,
                _ => i,
            }),
            candidate,
            auth_list,
        },
    )
}

// ---------------------------------------------------------------------------
// Building a case

struct Built {
    room: Room,
    candidate: Pdu,
    /// The candidate's auth events, in the order it cites them.
    auth_events: Vec<Pdu>,
}

fn create_content(c: &Case) -> Object {
    let mut content = Object::new();
    content.insert("room_version".into(), c.version.as_str().into());
    if c.version == RoomVersion::V10 {
        content.insert("creator".into(), USERS[c.v10_creator].into());
    }
    if let Some(f) = c.federate {
        content.insert("m.federate".into(), Value::Bool(f));
    }
    if c.version == RoomVersion::V12 && c.additional_creators.iter().any(|b| *b) {
        let list = USERS
            .iter()
            .zip(c.additional_creators)
            .filter(|(_, on)| *on)
            .map(|(u, _)| Value::from(*u))
            .collect();
        content.insert("additional_creators".into(), Value::Array(list));
    }
    content
}

fn build_case(c: &Case) -> Built {
    let creator = USERS[c.creator];
    let mut room = Room::with_create(
        c.version,
        &Spec::new(creator, "m.room.create", Some(""), create_content(c)),
    );
    let is_v12_creator = |u: &str| {
        c.version == RoomVersion::V12
            && (u == creator
                || USERS
                    .iter()
                    .zip(c.additional_creators)
                    .any(|(a, on)| on && *a == u))
    };
    if let Some(pl) = &c.power_levels {
        // A v12 state never lists creators (rule 10.4 kept them out).
        let spec = Spec::new(
            creator,
            "m.room.power_levels",
            Some(""),
            pl.content(is_v12_creator),
        );
        let pdu = room.event(&spec);
        room.put(pdu);
    }
    if let Some(jr) = c.join_rule {
        room.join_rule(JOIN_RULES[jr]);
    }
    for (u, m) in USERS.iter().zip(c.members) {
        if let Some(m) = m {
            room.member(u, MEMBERSHIPS[m]);
        }
    }
    if let Some(inviter) = c.third_party_inviter {
        let content = format!(
            r#"{{"display_name":"x","public_key":"{}"}}"#,
            third_party().public_key
        );
        room.set(USERS[inviter], "m.room.third_party_invite", TOKEN, &content);
    }

    let mut spec = candidate_spec(c, &room);
    let is_create = matches!(c.candidate, Candidate::Create { .. });
    let auth_events: Vec<Pdu> = match &c.auth_list {
        // Create events cite nothing (and cannot be built as room events).
        _ if is_create => Vec::new(),
        AuthList::Selection => {
            let probe = room.event(&spec);
            auth::auth_types_for_event(
                room.rules,
                probe.event_type(),
                probe.sender(),
                probe.state_key(),
                probe.content(),
            )
            .iter()
            .filter_map(|(t, k)| room.get(t, k).cloned())
            .collect()
        }
        AuthList::Random(picks) => {
            let all: Vec<&Pdu> = room.state.values().collect();
            picks.iter().map(|i| all[i % all.len()].clone()).collect()
        }
    };
    spec.auth_events = auth_events
        .iter()
        .map(|e| e.event_id().to_owned())
        .collect();
    let candidate = if is_create {
        build_create_candidate(c, &spec)
    } else {
        room.event(&spec)
    };
    Built {
        room,
        candidate,
        auth_events,
    }
}

fn candidate_spec(c: &Case, room: &Room) -> Spec {
    let create_id = room.create.event_id().to_owned();
    match &c.candidate {
        Candidate::Member {
            sender,
            target,
            membership,
            via,
            right_after_create,
            third_party: tp,
        } => {
            let mut content = Object::new();
            content.insert("membership".into(), MEMBERSHIPS[*membership].into());
            let mut signers = Vec::new();
            if let Some(v) = via {
                content.insert("join_authorised_via_users_server".into(), USERS[*v].into());
                // Signatures are verified before auth; an honest authorising
                // server always signs.
                signers.push(server_of(USERS[*v]).to_owned());
            }
            if let Some(valid) = tp {
                let tp = third_party();
                let signed = if *valid {
                    &tp.signed[*target]
                } else {
                    &tp.forged[*target]
                };
                let mut t = Object::new();
                t.insert("display_name".into(), "x".into());
                t.insert("signed".into(), Value::Object(signed.clone()));
                content.insert("third_party_invite".into(), Value::Object(t));
            }
            let mut spec = Spec::new(
                USERS[*sender],
                "m.room.member",
                Some(USERS[*target]),
                content,
            );
            spec.signers = signers;
            spec.prev_events = Some(if *right_after_create {
                vec![create_id]
            } else {
                vec![
                    create_id,
                    OwnedEventId::try_from(UNKNOWN_EVENT).expect("id"),
                ]
            });
            spec
        }
        Candidate::PowerLevels { sender, edits } => {
            let mut pl = c.power_levels.clone().unwrap_or(PlSpec {
                users: [None; 6],
                fields: [None; 7],
                events: [None; 6],
                notifications: None,
            });
            for e in edits {
                pl.apply(e);
            }
            // Unlike the state's, a candidate may list creators (10.4).
            Spec::new(
                USERS[*sender],
                "m.room.power_levels",
                Some(""),
                pl.content(|_| false),
            )
        }
        Candidate::State {
            sender,
            event_type,
            key,
            other,
        } => {
            let key = match key {
                0 => "",
                1 => USERS[*sender],
                2 => USERS[*other],
                _ => "x",
            };
            let t = EVENT_TYPES[*event_type];
            // A power levels event here is a valid one (so rule 9's checks
            // are reached), with `key` as state key.
            let content = if t == "m.room.power_levels" {
                Object::new()
            } else {
                obj(r#"{"body":"x"}"#)
            };
            Spec::new(USERS[*sender], t, Some(key), content)
        }
        Candidate::Message { sender, event_type } => Spec::new(
            USERS[*sender],
            EVENT_TYPES[*event_type],
            None,
            obj(r#"{"body":"x"}"#),
        ),
        Candidate::ThirdPartyInvite { sender, at_user } => {
            let key = if *at_user {
                USERS[(*sender + 1) % USERS.len()]
            } else {
                "other-token"
            };
            let content = format!(
                r#"{{"display_name":"y","public_key":"{}"}}"#,
                third_party().public_key
            );
            Spec::new(
                USERS[*sender],
                "m.room.third_party_invite",
                Some(key),
                obj(&content),
            )
        }
        Candidate::Create {
            sender,
            prev_events,
            no_creator,
            additional,
            ..
        } => {
            let mut content = create_content(c);
            if *no_creator {
                content.remove("creator");
            }
            match additional {
                1 => {
                    content.insert(
                        "additional_creators".into(),
                        Value::Array(vec![USERS[2].into()]),
                    );
                }
                2 => {
                    content.insert("additional_creators".into(), USERS[2].into());
                }
                3 => {
                    content.insert(
                        "additional_creators".into(),
                        Value::Array(vec![USERS[2].into(), "not-a-user".into()]),
                    );
                }
                _ => {}
            }
            let mut spec = Spec::new(USERS[*sender], "m.room.create", Some(""), content);
            spec.prev_events = Some(if *prev_events {
                vec![create_id]
            } else {
                Vec::new()
            });
            spec
        }
    }
}

fn build_create_candidate(c: &Case, spec: &Spec) -> Pdu {
    let Candidate::Create {
        sender,
        foreign_room_id,
        ..
    } = &c.candidate
    else {
        unreachable!("only create candidates");
    };
    let room_id = match c.version {
        RoomVersion::V12 => None,
        _ if *foreign_room_id => Some("!new:elsewhere.test".to_owned()),
        _ => Some(format!("!new:{}", server_of(USERS[*sender]))),
    };
    let mut spec = spec.clone();
    spec.auth_events.clear();
    support::build(c.version, &spec, room_id.as_deref(), 1_000)
}

// ---------------------------------------------------------------------------
// Comparing

/// What ruma is known to answer differently, and why.
#[derive(Debug)]
enum Divergence {
    /// The room has no `m.room.join_rules` event and an invited (or joined)
    /// user joins. The spec does not say what join rule applies then;
    /// Synapse reads it as `invite` and allows (rule 4.3.4), as we do.
    /// ruma-state-res rejects every join that reaches the join rule.
    MissingJoinRules,
    /// A power levels change that adds or removes a top-level level (e.g.
    /// `ban`) whose *default* is above the sender's level. Rule 9.5 compares
    /// "the current value" and "the new value" of a property that was
    /// "added, changed or removed": an added property has no current value
    /// and a removed one no new value. Synapse compares only values that
    /// exist, as we do; ruma substitutes the defaults and rejects.
    PowerLevelDefaults,
}

fn known_divergence(c: &Case, b: &Built) -> Option<Divergence> {
    let rules = b.room.rules;
    let event = &b.candidate;
    let sender = event.sender().as_str();
    match &c.candidate {
        Candidate::Member {
            membership: 0,
            right_after_create,
            ..
        } => {
            let target = event.state_key()?;
            let creator = auth::RoomCreate::new(rules, &b.room.create).creator();
            let creator_first_join = *right_after_create && creator == Some(target);
            let current = auth::Membership::of(b.room.get("m.room.member", target));
            (b.room.get("m.room.join_rules", "").is_none()
                && !creator_first_join
                && sender == target
                && matches!(current, auth::Membership::Invite | auth::Membership::Join))
            .then_some(Divergence::MissingJoinRules)
        }
        Candidate::PowerLevels { .. } => {
            let current = b.room.get("m.room.power_levels", "")?;
            let power = PowerLevels::new(rules, Some(&b.room.create), Some(current));
            let level = power.user_level(event.sender());
            LEVEL_FIELDS
                .iter()
                .any(|(field, default)| {
                    let old = current.content().get(*field);
                    let new = event.content().get(*field);
                    old != new
                        && (old.is_none() || new.is_none())
                        && UserPowerLevel::Finite(*default) > level
                })
                .then_some(Divergence::PowerLevelDefaults)
        }
        _ => None,
    }
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let b = build_case(c);
    let rules = b.room.rules;
    let ruma_rules = ruma_rules(c.version);

    let ours = b.room.check(&b.candidate);
    let state: HashMap<(String, String), RumaEvent> = b
        .room
        .state
        .iter()
        .map(|(k, v)| (k.clone(), RumaEvent::new(v)))
        .collect();
    let by_id: HashMap<OwnedEventId, &RumaEvent> =
        state.values().map(|e| (e.id.clone(), e)).collect();
    let fetch_event = |id: &EventId| by_id.get(id).copied();
    let candidate = RumaEvent::new(&b.candidate);
    let is_create = b.candidate.event_type() == "m.room.create";

    let theirs = if is_create {
        state_res::check_state_independent_auth_rules(ruma_rules, &candidate, fetch_event)
    } else {
        state_res::check_state_dependent_auth_rules(
            ruma_rules,
            &candidate,
            |t: &StateEventType, k: &str| state.get(&(t.to_string(), k.to_owned())),
        )
    };

    match known_divergence(c, &b) {
        None => prop_assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "check disagrees with ruma: ours {:?}, ruma {:?}\ncandidate {:?}",
            ours,
            theirs,
            b.candidate.json()
        ),
        Some(d) => prop_assert!(
            theirs.is_err(),
            "ruma no longer diverges ({d:?}): ours {ours:?}"
        ),
    }

    if !is_create {
        let auth_refs: Vec<&Pdu> = b.auth_events.iter().collect();
        let ours = auth::check_auth_events(rules, &b.candidate, &auth_refs, Some(&b.room.create));
        let theirs =
            state_res::check_state_independent_auth_rules(ruma_rules, &candidate, fetch_event);
        prop_assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "check_auth_events disagrees with ruma: ours {:?}, ruma {:?}\ncandidate {:?}",
            ours,
            theirs,
            b.candidate.json()
        );
    }
    Ok(())
}

fn config(default_cases: u32, default_seed: u64) -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(default_seed);
    }
    config
}

/// Power level changes around the defaults, where ruma departs from the
/// spec: anyone may send power levels, levels sit near 50 and the edits
/// add, change or remove top-level levels. Checks that the departure is
/// exactly [`Divergence::PowerLevelDefaults`] and nothing wider.
fn power_level_default_case() -> impl Strategy<Value = Case> {
    let near = || prop::sample::select(vec![0i64, 40, 49, 50, 51, 60]);
    (
        prop::sample::select(RoomVersion::ALL.to_vec()),
        prop::array::uniform6(prop::option::weighted(0.7, near())),
        prop::array::uniform7(prop::option::weighted(0.5, near())),
        user(),
        prop::collection::vec(
            (0..LEVEL_FIELDS.len(), prop::option::weighted(0.5, near()))
                .prop_map(|(i, l)| PlEdit::Field(i, l)),
            1..3,
        ),
    )
        .prop_map(|(version, users, mut fields, sender, edits)| {
            // users_default stays low so levels come from `users`.
            fields[0] = None;
            let mut events = [None; 6];
            events[1] = Some(0);
            Case {
                version,
                creator: 0,
                v10_creator: 0,
                additional_creators: [false; 6],
                federate: None,
                power_levels: Some(PlSpec {
                    users,
                    fields,
                    events,
                    notifications: None,
                }),
                join_rule: Some(0),
                members: [Some(0); 6],
                third_party_inviter: None,
                candidate: Candidate::PowerLevels { sender, edits },
                auth_list: AuthList::Selection,
            }
        })
}

#[test]
fn power_level_defaults_diverge_exactly_where_expected() {
    let mut runner = TestRunner::new(config(1000, 11));
    let diverged = std::cell::Cell::new(0u32);
    let result = runner.run(&power_level_default_case(), |c| {
        let b = build_case(&c);
        if known_divergence(&c, &b).is_some() {
            diverged.set(diverged.get() + 1);
        }
        run_case(&c)
    });
    let diverged = diverged.get();
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        diverged >= 20,
        "the divergence was met only {diverged} times"
    );
}

#[test]
fn auth_rules_agree_with_ruma() {
    let mut runner = TestRunner::new(config(3000, 0x6d79_656c_696e));
    if let Err(e) = runner.run(&case(), |c| run_case(&c)) {
        panic!("{e}");
    }
}

/// Counts how often each side allows, so a generator that stops producing
/// allowed events (and so tests little) is noticed.
#[test]
fn cases_exercise_both_outcomes() {
    let mut runner = TestRunner::new(config(400, 7));
    let (mut allowed, mut rejected) = (0u32, 0u32);
    let mut rules_seen = std::collections::BTreeSet::new();
    for _ in 0..runner.config().cases {
        let c = case().new_tree(&mut runner).expect("case").current();
        let b = build_case(&c);
        match b.room.check(&b.candidate) {
            Ok(()) => allowed += 1,
            Err(e) => {
                rejected += 1;
                rules_seen.insert(e.rule);
            }
        }
    }
    assert!(
        allowed >= runner.config().cases / 10,
        "only {allowed} allowed"
    );
    assert!(
        rejected >= runner.config().cases / 10,
        "only {rejected} rejected"
    );
    assert!(
        rules_seen.len() >= 25,
        "few rules exercised: {rules_seen:?}"
    );
}
