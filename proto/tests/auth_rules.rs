//! One test (or more) per authorization rule and per difference between
//! room versions 10, 11 and 12. Each assertion names the rule number the
//! rejection must carry, so a rule firing for the wrong reason fails too.

#[path = "auth_support.rs"]
mod support;

use myelin_proto::auth::{
    self, JoinRule, Membership, PowerLevels, RoomCreate, UserPowerLevel, auth_types_for_event,
    check_auth_events, restricted_allow_rooms,
};
use myelin_proto::canonical_json::{MAX_SAFE_INT, MIN_SAFE_INT, Object, Value};
use myelin_proto::signing::KeyPair;
use myelin_proto::{Pdu, RoomVersion};
use support::{Room, Spec, obj, user_id};

const ALICE: &str = "@alice:a.test";
const BOB: &str = "@bob:a.test";
const CAROL: &str = "@carol:b.test";
const DAVE: &str = "@dave:c.test";

const ALL: [RoomVersion; 3] = RoomVersion::ALL;

/// The number a rule numbered `v10` in room versions 10 and 11 has in
/// `version`: v12 inserted rule 2 and rule 10.4.
fn rn(version: RoomVersion, v10: &str) -> String {
    if version != RoomVersion::V12 {
        return v10.to_owned();
    }
    let mut parts: Vec<u32> = v10.split('.').map(|p| p.parse().expect("number")).collect();
    if parts[0] == 9 && parts.len() > 1 && parts[1] >= 4 {
        parts[1] += 1;
    }
    if parts[0] >= 2 {
        parts[0] += 1;
    }
    parts
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn assert_rejected(room: &Room, pdu: &Pdu, v10_rule: &str) {
    let expected = rn(room.version, v10_rule);
    match room.check(pdu) {
        Ok(()) => panic!(
            "v{}: {pdu:?} allowed, expected rule {expected}",
            room.version
        ),
        Err(e) => assert_eq!(e.rule, expected, "v{}: {pdu:?}: {e}", room.version),
    }
}

fn assert_allowed(room: &Room, pdu: &Pdu) {
    if let Err(e) = room.check(pdu) {
        panic!("v{}: {pdu:?} rejected: {e}", room.version);
    }
}

/// A room of `version` created by Alice, who is joined; power levels give
/// Bob 50 (and Alice 100 before v12, where she is a creator instead).
fn room(version: RoomVersion, join_rule: &str) -> Room {
    let mut r = Room::new(version, ALICE, "{}");
    r.member(ALICE, "join");
    let pl = if version == RoomVersion::V12 {
        format!(r#"{{"users":{{"{BOB}":50}}}}"#)
    } else {
        format!(r#"{{"users":{{"{ALICE}":100,"{BOB}":50}}}}"#)
    };
    r.power_levels(ALICE, &pl);
    r.join_rule(join_rule);
    r
}

fn member_event(r: &mut Room, sender: &str, target: &str, content: &str) -> Pdu {
    r.ev(sender, "m.room.member", Some(target), content)
}

// ---------------------------------------------------------------------------
// Rule 1: m.room.create

#[test]
fn create_events_of_every_version_are_allowed() {
    for v in ALL {
        let r = Room::new(v, ALICE, "{}");
        assert_allowed(&r, &r.create);
    }
}

#[test]
fn create_with_prev_events_is_rejected() {
    for v in ALL {
        let base = Room::new(v, ALICE, "{}");
        let mut spec = Spec::new(
            ALICE,
            "m.room.create",
            Some(""),
            obj(r#"{"creator":"@alice:a.test"}"#),
        );
        spec.prev_events = Some(vec![base.create.event_id().to_owned()]);
        let r = Room::with_create(v, &spec);
        assert_rejected(&r, &r.create, "1.1");
    }
}

#[test]
fn create_room_id_rules() {
    // v10/v11: the room ID's server must be the sender's.
    for v in [RoomVersion::V10, RoomVersion::V11] {
        let mut spec = Spec::new(
            ALICE,
            "m.room.create",
            Some(""),
            obj(r#"{"creator":"@alice:a.test"}"#),
        );
        spec.room_id = Some("!room:b.test".into());
        let r = Room::with_create(v, &spec);
        assert_rejected(&r, &r.create, "1.2");
    }
    // v12: a create event may not have a room_id at all. The PDU parser
    // refuses one with state key ""; with another state key it parses, and
    // rule 1.2 rejects it.
    let mut r = Room::new(RoomVersion::V12, ALICE, "{}");
    let mut spec = Spec::new(ALICE, "m.room.create", Some("x"), Object::new());
    spec.prev_events = Some(Vec::new());
    let odd = r.event(&spec);
    assert!(odd.json().contains_key("room_id"));
    assert_eq!(r.rejected_by(&odd), Some("1.2"));
}

#[test]
fn create_room_version_must_be_this_rooms() {
    for v in ALL {
        for (content, ok) in [
            (r#"{"room_version":"99"}"#, false),
            (r#"{"room_version":10}"#, false),
            (r#"{"room_version":"1"}"#, false),
            ("{}", true),
        ] {
            let mut content = obj(content);
            content.insert("creator".into(), ALICE.into());
            let r = Room::with_create(v, &Spec::new(ALICE, "m.room.create", Some(""), content));
            if ok {
                assert_allowed(&r, &r.create);
            } else {
                assert_rejected(&r, &r.create, "1.3");
            }
        }
        // Another version we support, but not this room's.
        let other = if v == RoomVersion::V10 { "11" } else { "10" };
        let content = obj(&format!(
            r#"{{"room_version":"{other}","creator":"{ALICE}"}}"#
        ));
        let r = Room::with_create(v, &Spec::new(ALICE, "m.room.create", Some(""), content));
        assert_rejected(&r, &r.create, "1.3");
    }
}

#[test]
fn v10_create_requires_creator_and_v11_does_not() {
    let no_creator = Spec::new(ALICE, "m.room.create", Some(""), Object::new());
    let r = Room::with_create(RoomVersion::V10, &no_creator);
    assert_rejected(&r, &r.create, "1.4");
    for v in [RoomVersion::V11, RoomVersion::V12] {
        let r = Room::with_create(v, &no_creator);
        assert_allowed(&r, &r.create);
    }
    // Only presence counts: a creator that is not a user ID is allowed here
    // and makes nobody the creator later.
    let odd = Spec::new(ALICE, "m.room.create", Some(""), obj(r#"{"creator":5}"#));
    let r = Room::with_create(RoomVersion::V10, &odd);
    assert_allowed(&r, &r.create);
    assert_eq!(RoomCreate::new(r.rules, &r.create).creator(), None);
}

#[test]
fn v12_additional_creators_must_be_user_ids() {
    let cases = [
        (
            r#"{"additional_creators":["@bob:a.test","@carol:b.test"]}"#,
            true,
        ),
        (r#"{"additional_creators":[]}"#, true),
        (r#"{"additional_creators":"@bob:a.test"}"#, false),
        (r#"{"additional_creators":["@bob:a.test",5]}"#, false),
        (r#"{"additional_creators":["bob"]}"#, false),
        (r#"{"additional_creators":["@bob"]}"#, false),
        (r#"{"additional_creators":null}"#, false),
    ];
    for (content, ok) in cases {
        let r = Room::with_create(
            RoomVersion::V12,
            &Spec::new(ALICE, "m.room.create", Some(""), obj(content)),
        );
        assert_eq!(r.check(&r.create).is_ok(), ok, "{content}");
        if !ok {
            assert_eq!(r.rejected_by(&r.create), Some("1.4"));
        }
        // Before v12 the property means nothing and is not checked.
        let r = Room::with_create(
            RoomVersion::V11,
            &Spec::new(ALICE, "m.room.create", Some(""), obj(content)),
        );
        assert_allowed(&r, &r.create);
    }
}

// ---------------------------------------------------------------------------
// Rules 2 / 3: the auth events list, and v12's room ID

fn auth_types(r: &Room, pdu: &Pdu) -> Vec<(String, String)> {
    let mut t = auth_types_for_event(
        r.rules,
        pdu.event_type(),
        pdu.sender(),
        pdu.state_key(),
        pdu.content(),
    );
    t.sort();
    t
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn auth_events_selection() {
    for v in ALL {
        let mut r = room(v, "public");
        let create = if v == RoomVersion::V12 {
            vec![]
        } else {
            vec![("m.room.create", "")]
        };
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut l = create.clone();
            l.extend_from_slice(extra);
            pairs(&l)
        };
        let msg = r.ev(BOB, "m.room.message", None, "{}");
        assert_eq!(
            auth_types(&r, &msg),
            with(&[("m.room.power_levels", ""), ("m.room.member", BOB)])
        );
        assert!(auth_types(&r, &r.create.clone()).is_empty());
        // Own join: no duplicate member entry; join rules included.
        let join = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
        assert_eq!(
            auth_types(&r, &join),
            with(&[
                ("m.room.power_levels", ""),
                ("m.room.member", BOB),
                ("m.room.join_rules", "")
            ])
        );
        let kick = member_event(&mut r, ALICE, BOB, r#"{"membership":"leave"}"#);
        assert_eq!(
            auth_types(&r, &kick),
            with(&[
                ("m.room.power_levels", ""),
                ("m.room.member", ALICE),
                ("m.room.member", BOB)
            ])
        );
        let tpi = member_event(
            &mut r,
            ALICE,
            CAROL,
            r#"{"membership":"invite","third_party_invite":{"signed":{"token":"tok","mxid":"@carol:b.test"}}}"#,
        );
        assert_eq!(
            auth_types(&r, &tpi),
            with(&[
                ("m.room.power_levels", ""),
                ("m.room.member", ALICE),
                ("m.room.member", CAROL),
                ("m.room.join_rules", ""),
                ("m.room.third_party_invite", "tok"),
            ])
        );
        let mut spec = Spec::new(
            CAROL,
            "m.room.member",
            Some(CAROL),
            obj(r#"{"membership":"join","join_authorised_via_users_server":"@bob:a.test"}"#),
        );
        spec.signers.push("a.test".into());
        let restricted = r.event(&spec);
        assert_eq!(
            auth_types(&r, &restricted),
            with(&[
                ("m.room.power_levels", ""),
                ("m.room.member", CAROL),
                ("m.room.join_rules", ""),
                ("m.room.member", BOB),
            ])
        );
        // The authorising user is selected for joins only.
        let leave_via = member_event(
            &mut r,
            CAROL,
            CAROL,
            r#"{"membership":"leave","join_authorised_via_users_server":"@bob:a.test"}"#,
        );
        assert_eq!(
            auth_types(&r, &leave_via),
            with(&[("m.room.power_levels", ""), ("m.room.member", CAROL)])
        );
        // Malformed fields select nothing extra.
        let odd = member_event(&mut r, CAROL, CAROL, r#"{"membership":5}"#);
        assert_eq!(
            auth_types(&r, &odd),
            with(&[("m.room.power_levels", ""), ("m.room.member", CAROL)])
        );
    }
}

/// The auth events of `pdu` chosen from `r`'s state by the selection.
fn selected<'a>(r: &'a Room, pdu: &Pdu) -> Vec<&'a Pdu> {
    auth_types(r, pdu)
        .iter()
        .filter_map(|(t, k)| r.get(t, k))
        .collect()
}

#[test]
fn auth_events_list_rules() {
    for v in ALL {
        let mut r = room(v, "public");
        r.member(BOB, "join");
        let msg = r.ev(BOB, "m.room.message", None, "{}");
        // Events the list might wrongly cite, built before borrowing the state.
        let other_pl = r.ev(ALICE, "m.room.power_levels", Some(""), "{}");
        let name = r.set(ALICE, "m.room.name", "", r#"{"name":"x"}"#);
        let not_state = r.ev(BOB, "m.room.message", None, r#"{"body":"x"}"#);
        let good = selected(&r, &msg);
        assert_eq!(good.len(), if v == RoomVersion::V12 { 2 } else { 3 });
        let create = Some(&r.create);
        assert_eq!(check_auth_events(r.rules, &msg, &good, create), Ok(()));

        let rule = |res: Result<(), auth::AuthError>| res.err().map(|e| e.rule.to_owned());
        // 2.1 duplicates
        let mut dup = good.clone();
        dup.push(good[0]);
        assert_eq!(
            rule(check_auth_events(r.rules, &msg, &dup, create)),
            Some(rn(v, "2.1"))
        );
        // Two different events for one key are duplicates too.
        let mut dup2 = good.clone();
        dup2.push(&other_pl);
        assert_eq!(
            rule(check_auth_events(r.rules, &msg, &dup2, create)),
            Some(rn(v, "2.1"))
        );
        // 2.2 outside the selection
        let mut extra = good.clone();
        extra.push(&name);
        assert_eq!(
            rule(check_auth_events(r.rules, &msg, &extra, create)),
            Some(rn(v, "2.2"))
        );
        let jr = r.get("m.room.join_rules", "").expect("jr").clone();
        let mut extra = good.clone();
        extra.push(&jr);
        assert_eq!(
            rule(check_auth_events(r.rules, &msg, &extra, create)),
            Some(rn(v, "2.2"))
        );
        assert_eq!(
            rule(check_auth_events(r.rules, &msg, &[&not_state], create)),
            Some(rn(v, "2.2"))
        );
        // 2.5 other room
        let mut other_room = Room::new(v, CAROL, "{}");
        other_room.member(CAROL, "join");
        let foreign_pl = other_room.power_levels(CAROL, "{}");
        let mut mixed: Vec<&Pdu> = good
            .iter()
            .copied()
            .filter(|p| p.event_type() != "m.room.power_levels")
            .collect();
        mixed.push(&foreign_pl);
        assert_eq!(
            rule(check_auth_events(r.rules, &msg, &mixed, create)),
            Some(rn(v, "2.5"))
        );

        if v == RoomVersion::V12 {
            // 3.2: the create event is never selected in v12.
            let mut with_create = good.clone();
            with_create.push(&r.create);
            assert_eq!(
                rule(check_auth_events(r.rules, &msg, &with_create, create)),
                Some("3.2".into())
            );
            // 2: the room's create event must be known and named by the room ID.
            assert_eq!(
                rule(check_auth_events(r.rules, &msg, &good, None)),
                Some("2".into())
            );
            assert_eq!(
                rule(check_auth_events(
                    r.rules,
                    &msg,
                    &good,
                    Some(&other_room.create)
                )),
                Some("2".into())
            );
            // An empty list is fine in v12 (a message still needs its member
            // event in the state, which `check` sees).
            assert_eq!(check_auth_events(r.rules, &msg, &[], create), Ok(()));
        } else {
            // 2.4: the create event must be there.
            let no_create: Vec<&Pdu> = good
                .iter()
                .copied()
                .filter(|p| p.event_type() != "m.room.create")
                .collect();
            assert_eq!(
                rule(check_auth_events(r.rules, &msg, &no_create, create)),
                Some("2.4".into())
            );
            assert_eq!(
                rule(check_auth_events(r.rules, &msg, &no_create, None)),
                Some("2.4".into())
            );
            // ... and be the room's own when the caller knows it.
            let same_id_other_create = Room::with_create(
                v,
                &Spec::new(
                    ALICE,
                    "m.room.create",
                    Some(""),
                    // A content that survives v10 redaction (which keeps only
                    // `creator`), so the event ID differs.
                    obj(r#"{"creator":"@bob:a.test"}"#),
                ),
            );
            assert_eq!(same_id_other_create.room_id, r.room_id);
            let mut swapped = no_create.clone();
            swapped.push(&same_id_other_create.create);
            assert_eq!(check_auth_events(r.rules, &msg, &swapped, None), Ok(()));
            assert_eq!(
                rule(check_auth_events(r.rules, &msg, &swapped, create)),
                Some("2.4".into())
            );
        }
        // Create events have no auth events to check.
        assert_eq!(
            check_auth_events(r.rules, &r.create, &[&name], None),
            Ok(())
        );
    }
}

#[test]
fn v12_room_id_must_name_the_states_create_event() {
    let r = room(RoomVersion::V12, "public");
    // A second room of the same creator, with a create event of its own.
    let mut other = Room::new(RoomVersion::V12, ALICE, r#"{"x":1}"#);
    other.member(ALICE, "join");
    assert_ne!(other.room_id, r.room_id);
    let msg = other.ev(ALICE, "m.room.message", None, "{}");
    assert_allowed(&other, &msg);
    // The same event against a state whose create event is another room's.
    assert_eq!(r.rejected_by(&msg), Some("2"));
    // No create event in the state at all.
    let empty = |_: &str, _: &str| None;
    assert_eq!(
        auth::check(r.rules, &msg, empty).map_err(|e| e.rule),
        Err("2")
    );
    for v in [RoomVersion::V10, RoomVersion::V11] {
        let mut r = room(v, "public");
        let msg = r.ev(ALICE, "m.room.message", None, "{}");
        assert_eq!(
            auth::check(r.rules, &msg, empty).map_err(|e| e.rule),
            Err("2.4")
        );
        // A state of another room (same user, so a different room ID).
        let mut elsewhere = Room::new(v, CAROL, "{}");
        elsewhere.member(ALICE, "join");
        assert_eq!(elsewhere.rejected_by(&msg), Some("2.5"));
    }
}

// ---------------------------------------------------------------------------
// Rule 3: m.federate

#[test]
fn unfederated_rooms_refuse_other_servers() {
    for v in ALL {
        let mut r = Room::new(v, ALICE, r#"{"m.federate":false}"#);
        r.member(ALICE, "join");
        r.join_rule("public");
        let bob_join = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
        assert_allowed(&r, &bob_join);
        let carol_join = member_event(&mut r, CAROL, CAROL, r#"{"membership":"join"}"#);
        assert_rejected(&r, &carol_join, "3");
        r.member(CAROL, "join");
        let carol_msg = r.ev(CAROL, "m.room.message", None, "{}");
        assert_rejected(&r, &carol_msg, "3");

        // Only `false` restricts: other values leave the room federated.
        for federate in ["true", r#""false""#, "0", "null"] {
            let mut r = Room::new(v, ALICE, &format!(r#"{{"m.federate":{federate}}}"#));
            r.join_rule("public");
            let carol_join = member_event(&mut r, CAROL, CAROL, r#"{"membership":"join"}"#);
            assert_allowed(&r, &carol_join);
        }
    }
}

// ---------------------------------------------------------------------------
// Rule 4: m.room.member

#[test]
fn member_events_need_state_key_membership_and_a_user_target() {
    for v in ALL {
        let mut r = room(v, "public");
        let no_key = r.ev(BOB, "m.room.member", None, r#"{"membership":"join"}"#);
        assert_rejected(&r, &no_key, "4.1");
        for content in [
            "{}",
            r#"{"membership":null}"#,
            r#"{"membership":["join"]}"#,
            r#"{"membership":1}"#,
        ] {
            let e = member_event(&mut r, BOB, BOB, content);
            assert_rejected(&r, &e, "4.1");
        }
        for target in ["bob", "", "@bob", "!room:a.test"] {
            let e = r.ev(
                BOB,
                "m.room.member",
                Some(target),
                r#"{"membership":"join"}"#,
            );
            assert_rejected(&r, &e, "4.1");
        }
        // 4.8
        for m in ["joined", "JOIN", "", "private"] {
            let e = member_event(&mut r, BOB, BOB, &format!(r#"{{"membership":"{m}"}}"#));
            assert_rejected(&r, &e, "4.8");
        }
    }
}

#[test]
fn authorising_user_must_have_signed() {
    for v in ALL {
        let mut r = room(v, "restricted");
        r.member(BOB, "join");
        let content =
            obj(r#"{"membership":"join","join_authorised_via_users_server":"@bob:a.test"}"#);
        let unsigned = r.event(&Spec::new(
            CAROL,
            "m.room.member",
            Some(CAROL),
            content.clone(),
        ));
        assert_rejected(&r, &unsigned, "4.2.1");
        let mut spec = Spec::new(CAROL, "m.room.member", Some(CAROL), content);
        spec.signers.push("a.test".into());
        let signed = r.event(&spec);
        assert_allowed(&r, &signed);
        // Not a user ID: no server can have signed for it.
        for via in ["5", r#""bob""#, "null"] {
            let c = obj(&format!(
                r#"{{"membership":"join","join_authorised_via_users_server":{via}}}"#
            ));
            let e = r.event(&Spec::new(CAROL, "m.room.member", Some(CAROL), c));
            assert_rejected(&r, &e, "4.2.1");
        }
        // The spec applies 4.2 to every membership, not only joins.
        r.member(CAROL, "join");
        let leave = r.event(&Spec::new(
            CAROL,
            "m.room.member",
            Some(CAROL),
            obj(r#"{"membership":"leave","join_authorised_via_users_server":"@dave:c.test"}"#),
        ));
        assert_rejected(&r, &leave, "4.2.1");
    }
}

#[test]
fn creator_joins_right_after_create() {
    for v in ALL {
        let mut r = Room::new(v, ALICE, "{}");
        let join = member_event(&mut r, ALICE, ALICE, r#"{"membership":"join"}"#);
        assert_allowed(&r, &join);
        // Not right after the create event: the normal rules apply, and
        // without join rules (read as invite) Alice is not invited.
        let mut spec = Spec::new(
            ALICE,
            "m.room.member",
            Some(ALICE),
            obj(r#"{"membership":"join"}"#),
        );
        spec.prev_events = Some(vec![
            r.create.event_id().to_owned(),
            join.event_id().to_owned(),
        ]);
        let late = r.event(&spec);
        assert_rejected(&r, &late, "4.3.7");
        spec.prev_events = Some(vec![join.event_id().to_owned()]);
        let late = r.event(&spec);
        assert_rejected(&r, &late, "4.3.7");
        // Someone else joining right after the create event gets no favour.
        let bob = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
        assert_rejected(&r, &bob, "4.3.7");
    }
    // v10: the creator is content.creator, not the sender.
    let mut r = Room::new(RoomVersion::V10, ALICE, r#"{"creator":"@bob:a.test"}"#);
    let bob = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
    assert_allowed(&r, &bob);
    let alice = member_event(&mut r, ALICE, ALICE, r#"{"membership":"join"}"#);
    assert_rejected(&r, &alice, "4.3.7");
    // v11: `creator` means nothing any more; the sender is the creator.
    let mut r = Room::new(RoomVersion::V11, ALICE, r#"{"creator":"@bob:a.test"}"#);
    let bob = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
    assert_rejected(&r, &bob, "4.3.7");
    let alice = member_event(&mut r, ALICE, ALICE, r#"{"membership":"join"}"#);
    assert_allowed(&r, &alice);
    // v12: additional creators do not get the first join.
    let mut r = Room::new(
        RoomVersion::V12,
        ALICE,
        r#"{"additional_creators":["@bob:a.test"]}"#,
    );
    let bob = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
    assert_rejected(&r, &bob, "4.3.7");
    // The special case does not require sender == state_key (spec 4.3.1
    // only names the state_key), matching Synapse and ruma.
    let mut r = Room::new(RoomVersion::V11, ALICE, "{}");
    let forced = member_event(&mut r, BOB, ALICE, r#"{"membership":"join"}"#);
    assert_allowed(&r, &forced);
}

#[test]
fn joins_by_join_rule() {
    for v in ALL {
        for rule in [
            "public",
            "invite",
            "knock",
            "restricted",
            "knock_restricted",
            "private",
            "custom",
        ] {
            let mut r = room(v, rule);
            // 4.3.2
            let forced = member_event(&mut r, ALICE, BOB, r#"{"membership":"join"}"#);
            assert_rejected(&r, &forced, "4.3.2");
            // Fresh user, no invite.
            let join = member_event(&mut r, CAROL, CAROL, r#"{"membership":"join"}"#);
            match rule {
                "public" => assert_allowed(&r, &join),
                "restricted" | "knock_restricted" => assert_rejected(&r, &join, "4.3.5.2"),
                _ => assert_rejected(&r, &join, "4.3.7"),
            }
            // Invited, or already joined (a profile change).
            for m in ["invite", "join"] {
                r.member(CAROL, m);
                let join = member_event(&mut r, CAROL, CAROL, r#"{"membership":"join"}"#);
                if matches!(rule, "private" | "custom") {
                    assert_rejected(&r, &join, "4.3.7");
                } else {
                    assert_allowed(&r, &join);
                }
            }
            // Knocked or left: like a fresh user.
            for m in ["knock", "leave"] {
                r.member(CAROL, m);
                let join = member_event(&mut r, CAROL, CAROL, r#"{"membership":"join"}"#);
                assert_eq!(r.check(&join).is_ok(), rule == "public", "{rule} from {m}");
            }
            // 4.3.3: banned users cannot join, even public rooms.
            r.member(CAROL, "ban");
            let join = member_event(&mut r, CAROL, CAROL, r#"{"membership":"join"}"#);
            assert_rejected(&r, &join, "4.3.3");
        }
    }
}

#[test]
fn missing_join_rules_read_as_invite() {
    for v in ALL {
        let mut r = Room::new(v, ALICE, "{}");
        r.member(ALICE, "join");
        let join = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
        assert_rejected(&r, &join, "4.3.7");
        r.member(BOB, "invite");
        let join = member_event(&mut r, BOB, BOB, r#"{"membership":"join"}"#);
        assert_allowed(&r, &join);
        // A join rules event without join_rule reads the same.
        r.set(ALICE, "m.room.join_rules", "", "{}");
        assert_allowed(&r, &join);
        let knock = member_event(&mut r, CAROL, CAROL, r#"{"membership":"knock"}"#);
        assert_rejected(&r, &knock, "4.7.1");
        // A join_rule that is not a string allows nothing.
        r.set(
            ALICE,
            "m.room.join_rules",
            "",
            r#"{"join_rule":["public"]}"#,
        );
        assert_rejected(&r, &join, "4.3.7");
    }
}

fn restricted_join(r: &mut Room, user: &str, via: &str) -> Pdu {
    let mut spec = Spec::new(
        user,
        "m.room.member",
        Some(user),
        obj(&format!(
            r#"{{"membership":"join","join_authorised_via_users_server":"{via}"}}"#
        )),
    );
    spec.signers.push(support::server_of(via).to_owned());
    r.event(&spec)
}

#[test]
fn restricted_joins_need_a_joined_authoriser_who_can_invite() {
    for v in ALL {
        for rule in ["restricted", "knock_restricted"] {
            let mut r = room(v, rule);
            // Bob (50) is not joined yet.
            let e = restricted_join(&mut r, CAROL, BOB);
            assert_rejected(&r, &e, "4.3.5.2");
            r.member(BOB, "join");
            assert_allowed(&r, &e);
            // Invite level above Bob's.
            let pl = if v == RoomVersion::V12 {
                format!(r#"{{"users":{{"{BOB}":50}},"invite":51}}"#)
            } else {
                format!(r#"{{"users":{{"{ALICE}":100,"{BOB}":50}},"invite":51}}"#)
            };
            r.power_levels(ALICE, &pl);
            assert_rejected(&r, &e, "4.3.5.2");
            // Alice can still authorise; in v12 through creator power alone.
            let e = restricted_join(&mut r, CAROL, ALICE);
            assert_allowed(&r, &e);
            // An authoriser who left or was banned cannot.
            r.member(ALICE, "leave");
            assert_rejected(&r, &e, "4.3.5.2");
            // Invited users need no authoriser (and a bad one is ignored).
            r.member(CAROL, "invite");
            assert_allowed(&r, &e);
        }
    }
}

#[test]
fn v12_additional_creator_authorises_with_infinite_power() {
    let mut r = Room::new(
        RoomVersion::V12,
        ALICE,
        r#"{"additional_creators":["@dave:c.test"]}"#,
    );
    r.member(ALICE, "join");
    r.member(DAVE, "join");
    r.power_levels(
        ALICE,
        r#"{"invite":1000000,"users":{"@bob:a.test":999999}}"#,
    );
    r.join_rule("restricted");
    r.member(BOB, "join");
    let via_dave = restricted_join(&mut r, CAROL, DAVE);
    assert_allowed(&r, &via_dave);
    let via_bob = restricted_join(&mut r, CAROL, BOB);
    assert_rejected(&r, &via_bob, "4.3.5.2");
}

#[test]
fn invites() {
    for v in ALL {
        let mut r = room(v, "invite");
        let invite = member_event(&mut r, ALICE, CAROL, r#"{"membership":"invite"}"#);
        assert_allowed(&r, &invite);
        // 4.4.2: the inviter must be joined.
        let by_bob = member_event(&mut r, BOB, CAROL, r#"{"membership":"invite"}"#);
        assert_rejected(&r, &by_bob, "4.4.2");
        r.member(BOB, "invite");
        assert_rejected(&r, &by_bob, "4.4.2");
        r.member(BOB, "join");
        assert_allowed(&r, &by_bob);
        // 4.4.3
        for m in ["join", "ban"] {
            r.member(CAROL, m);
            assert_rejected(&r, &invite, "4.4.3");
        }
        for m in ["invite", "leave", "knock"] {
            r.member(CAROL, m);
            assert_allowed(&r, &invite);
        }
        // 4.4.5
        let pl = if v == RoomVersion::V12 {
            format!(r#"{{"users":{{"{BOB}":50}},"invite":51}}"#)
        } else {
            format!(r#"{{"users":{{"{ALICE}":100,"{BOB}":50}},"invite":51}}"#)
        };
        r.power_levels(ALICE, &pl);
        assert_rejected(&r, &by_bob, "4.4.5");
        assert_allowed(&r, &invite);
        // Self-invites follow the same rules.
        let self_invite = member_event(&mut r, BOB, BOB, r#"{"membership":"invite"}"#);
        assert_rejected(&r, &self_invite, "4.4.3");
    }
}

struct IdentityServer {
    key: KeyPair,
}

impl IdentityServer {
    fn new(seed: u8) -> Self {
        Self {
            key: KeyPair::from_seed("0", &[seed; 32]).expect("key"),
        }
    }

    fn public(&self) -> String {
        self.key.public_key().to_base64()
    }

    /// `signed` for inviting `mxid` with `token`, really signed.
    fn signed(&self, mxid: &str, token: &str) -> Object {
        let mut signed = obj(&format!(
            r#"{{"mxid":"{mxid}","token":"{token}","sender":"{ALICE}"}}"#
        ));
        self.key.sign_json("id.test", &mut signed);
        signed
    }
}

fn tpi_invite(r: &mut Room, sender: &str, target: &str, third_party_invite: Value) -> Pdu {
    let mut content = obj(r#"{"membership":"invite"}"#);
    content.insert("third_party_invite".into(), third_party_invite);
    r.event(&Spec::new(sender, "m.room.member", Some(target), content))
}

fn wrap_signed(signed: Object) -> Value {
    let mut t = Object::new();
    t.insert("display_name".into(), "c...@example.org".into());
    t.insert("signed".into(), Value::Object(signed));
    Value::Object(t)
}

#[test]
fn third_party_invites_with_real_signatures() {
    let is = IdentityServer::new(3);
    let other = IdentityServer::new(4);
    for v in ALL {
        let mut r = room(v, "invite");
        r.set(
            ALICE,
            "m.room.third_party_invite",
            "tok",
            &format!(r#"{{"display_name":"c","public_key":"{}"}}"#, is.public()),
        );
        let good = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(is.signed(CAROL, "tok")));
        assert_allowed(&r, &good);
        // Rule 4.4.1 allows without the inviter being joined (4.4.2 is not
        // reached) or having the invite level.
        r.member(ALICE, "leave");
        assert_allowed(&r, &good);
        r.member(ALICE, "join");

        // 4.4.1.1
        r.member(CAROL, "ban");
        assert_rejected(&r, &good, "4.4.1.1");
        r.member(CAROL, "leave");
        // 4.4.1.2
        for bad in [obj("{}"), obj(r#"{"signed":"x"}"#)] {
            let e = tpi_invite(&mut r, ALICE, CAROL, Value::Object(bad));
            assert_rejected(&r, &e, "4.4.1.2");
        }
        for bad in [Value::Null, Value::String("x".into()), Value::Integer(1)] {
            let e = tpi_invite(&mut r, ALICE, CAROL, bad);
            assert_rejected(&r, &e, "4.4.1.2");
        }
        // 4.4.1.3
        let mut no_token = is.signed(CAROL, "tok");
        no_token.remove("token");
        let e = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(no_token));
        assert_rejected(&r, &e, "4.4.1.3");
        let mut int_mxid = is.signed(CAROL, "tok");
        int_mxid.insert("mxid".into(), Value::Integer(1));
        let e = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(int_mxid));
        assert_rejected(&r, &e, "4.4.1.3");
        // 4.4.1.4
        let e = tpi_invite(&mut r, ALICE, DAVE, wrap_signed(is.signed(CAROL, "tok")));
        assert_rejected(&r, &e, "4.4.1.4");
        // 4.4.1.5
        let e = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(is.signed(CAROL, "other")));
        assert_rejected(&r, &e, "4.4.1.5");
        // 4.4.1.6
        r.member(BOB, "join");
        let e = tpi_invite(&mut r, BOB, CAROL, wrap_signed(is.signed(CAROL, "tok")));
        assert_rejected(&r, &e, "4.4.1.6");
        // 4.4.1.8: signed by a key the invite does not publish.
        let e = tpi_invite(
            &mut r,
            ALICE,
            CAROL,
            wrap_signed(other.signed(CAROL, "tok")),
        );
        assert_rejected(&r, &e, "4.4.1.8");
        // Tampered after signing.
        let mut tampered = is.signed(CAROL, "tok");
        tampered.insert("extra".into(), Value::Bool(true));
        let e = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(tampered));
        assert_rejected(&r, &e, "4.4.1.8");
        // No signatures at all.
        let mut unsigned = is.signed(CAROL, "tok");
        unsigned.remove("signatures");
        let e = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(unsigned));
        assert_rejected(&r, &e, "4.4.1.8");
        // A valid signature under a non-ed25519 key ID is not considered.
        let mut renamed = is.signed(CAROL, "tok");
        let sig = renamed
            .get("signatures")
            .and_then(Value::as_object)
            .and_then(|s| s.get("id.test"))
            .and_then(Value::as_object)
            .and_then(|s| s.get("ed25519:0"))
            .cloned()
            .expect("signature");
        renamed.insert(
            "signatures".into(),
            Value::Object(obj(&format!(r#"{{"id.test":{{"curve25519:0":{sig}}}}}"#))),
        );
        let e = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(renamed));
        assert_rejected(&r, &e, "4.4.1.8");
        // `unsigned` inside signed is not covered by the signature.
        let mut with_unsigned = is.signed(CAROL, "tok");
        with_unsigned.insert("unsigned".into(), Value::Object(obj(r#"{"age":1}"#)));
        let e = tpi_invite(&mut r, ALICE, CAROL, wrap_signed(with_unsigned));
        assert_allowed(&r, &e);

        // Keys in public_keys count; malformed entries are skipped.
        r.set(
            ALICE,
            "m.room.third_party_invite",
            "tok",
            &format!(
                r#"{{"public_key":"not base64!","public_keys":[{{"public_key":5}},{{"nope":1}},{{"public_key":"{}"}},{{"public_key":"{}"}}]}}"#,
                other.public(),
                is.public()
            ),
        );
        assert_allowed(&r, &good);
        // A URL-safe encoding of the key works too.
        let url_safe = is.public().replace('+', "-").replace('/', "_");
        r.set(
            ALICE,
            "m.room.third_party_invite",
            "tok",
            &format!(r#"{{"public_keys":[{{"public_key":"{url_safe}"}}]}}"#),
        );
        assert_allowed(&r, &good);
        // No usable key.
        r.set(
            ALICE,
            "m.room.third_party_invite",
            "tok",
            r#"{"public_keys":"x"}"#,
        );
        assert_rejected(&r, &good, "4.4.1.8");
    }
}

#[test]
fn leaving_and_kicking() {
    for v in ALL {
        let mut r = room(v, "public");
        // 4.5.1: own leave from invite, join or knock.
        for (m, ok) in [
            ("invite", true),
            ("join", true),
            ("knock", true),
            ("leave", false),
            ("ban", false),
        ] {
            r.member(CAROL, m);
            let leave = member_event(&mut r, CAROL, CAROL, r#"{"membership":"leave"}"#);
            if ok {
                assert_allowed(&r, &leave);
            } else {
                assert_rejected(&r, &leave, "4.5.1");
            }
        }
        let leave = member_event(&mut r, DAVE, DAVE, r#"{"membership":"leave"}"#);
        assert_rejected(&r, &leave, "4.5.1");
        // 4.5.2: kicking needs the kicker joined.
        r.member(CAROL, "join");
        let kick = member_event(&mut r, BOB, CAROL, r#"{"membership":"leave"}"#);
        assert_rejected(&r, &kick, "4.5.2");
        r.member(BOB, "join");
        // Bob (50) >= kick (50), Carol (0) < 50.
        assert_allowed(&r, &kick);
        // Target at the sender's level.
        let kick_alice = member_event(&mut r, BOB, ALICE, r#"{"membership":"leave"}"#);
        assert_rejected(&r, &kick_alice, "4.5.5");
        // Kicking someone not in the room is still a kick.
        let kick_dave = member_event(&mut r, BOB, DAVE, r#"{"membership":"leave"}"#);
        assert_allowed(&r, &kick_dave);
        // 4.5.3: unbanning needs the ban level.
        r.member(CAROL, "ban");
        assert_allowed(&r, &kick);
        let pl = if v == RoomVersion::V12 {
            format!(r#"{{"users":{{"{BOB}":50}},"ban":51}}"#)
        } else {
            format!(r#"{{"users":{{"{ALICE}":100,"{BOB}":50}},"ban":51}}"#)
        };
        r.power_levels(ALICE, &pl);
        assert_rejected(&r, &kick, "4.5.3");
        // ... and then the kick level and a higher level than the target.
        let pl = if v == RoomVersion::V12 {
            format!(r#"{{"users":{{"{BOB}":50,"{CAROL}":50}},"ban":10,"kick":10}}"#)
        } else {
            format!(r#"{{"users":{{"{ALICE}":100,"{BOB}":50,"{CAROL}":50}},"ban":10,"kick":10}}"#)
        };
        r.power_levels(ALICE, &pl);
        assert_rejected(&r, &kick, "4.5.5");
        let pl = if v == RoomVersion::V12 {
            format!(r#"{{"users":{{"{BOB}":50}},"ban":10,"kick":51}}"#)
        } else {
            format!(r#"{{"users":{{"{ALICE}":100,"{BOB}":50}},"ban":10,"kick":51}}"#)
        };
        r.power_levels(ALICE, &pl);
        assert_rejected(&r, &kick, "4.5.5");
    }
}

#[test]
fn banning() {
    for v in ALL {
        let mut r = room(v, "public");
        r.member(CAROL, "join");
        let ban = member_event(&mut r, BOB, CAROL, r#"{"membership":"ban"}"#);
        assert_rejected(&r, &ban, "4.6.1");
        r.member(BOB, "join");
        assert_allowed(&r, &ban);
        // Banning users not in the room is allowed (pre-emptive bans).
        let ban_dave = member_event(&mut r, BOB, DAVE, r#"{"membership":"ban"}"#);
        assert_allowed(&r, &ban_dave);
        let ban_alice = member_event(&mut r, BOB, ALICE, r#"{"membership":"ban"}"#);
        assert_rejected(&r, &ban_alice, "4.6.3");
        let self_ban = member_event(&mut r, BOB, BOB, r#"{"membership":"ban"}"#);
        assert_rejected(&r, &self_ban, "4.6.3");
        let pl = if v == RoomVersion::V12 {
            format!(r#"{{"users":{{"{BOB}":50}},"ban":51}}"#)
        } else {
            format!(r#"{{"users":{{"{ALICE}":100,"{BOB}":50}},"ban":51}}"#)
        };
        r.power_levels(ALICE, &pl);
        assert_rejected(&r, &ban, "4.6.3");
        let by_alice = member_event(&mut r, ALICE, CAROL, r#"{"membership":"ban"}"#);
        assert_allowed(&r, &by_alice);
    }
}

#[test]
fn v12_creators_outrank_everyone_and_each_other_equally() {
    let mut r = Room::new(
        RoomVersion::V12,
        ALICE,
        r#"{"additional_creators":["@dave:c.test"]}"#,
    );
    r.member(ALICE, "join");
    r.member(DAVE, "join");
    r.member(BOB, "join");
    r.power_levels(
        ALICE,
        &format!(
            r#"{{"users":{{"{BOB}":{MAX_SAFE_INT}}},"ban":{MAX_SAFE_INT},"kick":{MAX_SAFE_INT}}}"#
        ),
    );
    r.join_rule("public");
    let ban_bob = member_event(&mut r, DAVE, BOB, r#"{"membership":"ban"}"#);
    assert_allowed(&r, &ban_bob);
    let kick_bob = member_event(&mut r, ALICE, BOB, r#"{"membership":"leave"}"#);
    assert_allowed(&r, &kick_bob);
    // Infinite is not less than infinite: creators cannot remove each other.
    let ban_dave = member_event(&mut r, ALICE, DAVE, r#"{"membership":"ban"}"#);
    assert_eq!(r.rejected_by(&ban_dave), Some("5.6.3"));
    let kick_alice = member_event(&mut r, DAVE, ALICE, r#"{"membership":"leave"}"#);
    assert_eq!(r.rejected_by(&kick_alice), Some("5.5.5"));
    // Nobody with a finite level touches a creator.
    let ban_alice = member_event(&mut r, BOB, ALICE, r#"{"membership":"ban"}"#);
    assert_eq!(r.rejected_by(&ban_alice), Some("5.6.3"));
    // In v11, additional_creators is meaningless and levels decide.
    let mut r = Room::new(
        RoomVersion::V11,
        ALICE,
        r#"{"additional_creators":["@dave:c.test"]}"#,
    );
    r.member(ALICE, "join");
    r.member(DAVE, "join");
    r.power_levels(ALICE, r#"{"users":{"@alice:a.test":100}}"#);
    let ban_alice = member_event(&mut r, DAVE, ALICE, r#"{"membership":"ban"}"#);
    assert_eq!(r.rejected_by(&ban_alice), Some("4.6.3"));
    let ban_dave = member_event(&mut r, ALICE, DAVE, r#"{"membership":"ban"}"#);
    assert_allowed(&r, &ban_dave);
}

#[test]
fn knocking() {
    for v in ALL {
        for rule in [
            "public",
            "invite",
            "restricted",
            "private",
            "knock",
            "knock_restricted",
        ] {
            let mut r = room(v, rule);
            let knock = member_event(&mut r, CAROL, CAROL, r#"{"membership":"knock"}"#);
            if rule.starts_with("knock") {
                assert_allowed(&r, &knock);
            } else {
                assert_rejected(&r, &knock, "4.7.1");
            }
        }
        let mut r = room(v, "knock");
        let for_other = member_event(&mut r, ALICE, CAROL, r#"{"membership":"knock"}"#);
        assert_rejected(&r, &for_other, "4.7.2");
        let knock = member_event(&mut r, CAROL, CAROL, r#"{"membership":"knock"}"#);
        for (m, ok) in [
            ("ban", false),
            ("invite", false),
            ("join", false),
            ("leave", true),
            ("knock", true),
        ] {
            r.member(CAROL, m);
            if ok {
                assert_allowed(&r, &knock);
            } else {
                assert_rejected(&r, &knock, "4.7.4");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Rules 5 to 8

#[test]
fn senders_must_be_joined() {
    for v in ALL {
        let mut r = room(v, "public");
        let msg = r.ev(CAROL, "m.room.message", None, r#"{"body":"hi"}"#);
        for m in ["invite", "leave", "ban", "knock"] {
            r.member(CAROL, m);
            assert_rejected(&r, &msg, "5");
        }
        r.member(CAROL, "join");
        assert_allowed(&r, &msg);
        // Redactions are ordinary events here: the redact level is not an
        // auth rule.
        r.power_levels(ALICE, r#"{"redact":100}"#);
        let redaction = r.ev(CAROL, "m.room.redaction", None, "{}");
        assert_allowed(&r, &redaction);
    }
}

#[test]
fn third_party_invite_events_need_the_invite_level() {
    for v in ALL {
        let mut r = room(v, "invite");
        r.member(CAROL, "join");
        // Rule 6 allows outright: neither rule 7 (state_default 50) nor rule
        // 8 (a state key starting with @) applies.
        let tpi = r.ev(CAROL, "m.room.third_party_invite", Some("@token"), "{}");
        assert_allowed(&r, &tpi);
        let pl = if v == RoomVersion::V12 {
            r#"{"invite":1}"#.to_owned()
        } else {
            format!(r#"{{"users":{{"{ALICE}":100}},"invite":1}}"#)
        };
        r.power_levels(ALICE, &pl);
        assert_rejected(&r, &tpi, "6.1");
    }
}

#[test]
fn required_power_levels() {
    for v in ALL {
        let mut r = room(v, "public");
        r.member(CAROL, "join");
        r.member(BOB, "join");
        let name_by_carol = r.ev(CAROL, "m.room.name", Some(""), r#"{"name":"x"}"#);
        let name_by_bob = r.ev(BOB, "m.room.name", Some(""), r#"{"name":"x"}"#);
        let msg = r.ev(CAROL, "m.room.message", None, "{}");
        // state_default 50, events_default 0.
        assert_rejected(&r, &name_by_carol, "7");
        assert_allowed(&r, &name_by_bob);
        assert_allowed(&r, &msg);
        let base = if v == RoomVersion::V12 {
            String::new()
        } else {
            format!(r#""users":{{"{ALICE}":100,"{BOB}":50}},"#)
        };
        let base12 = if v == RoomVersion::V12 {
            format!(r#""users":{{"{BOB}":50}},"#)
        } else {
            base.clone()
        };
        r.power_levels(
            ALICE,
            &format!(
                r#"{{{base12}"events_default":1,"state_default":0,"events":{{"m.room.name":51}}}}"#
            ),
        );
        assert_rejected(&r, &msg, "7");
        assert_rejected(&r, &name_by_bob, "7");
        let topic = r.ev(CAROL, "m.room.topic", Some(""), "{}");
        assert_allowed(&r, &topic);
        // `events` applies to the type whether or not it is state.
        let name_msg = r.ev(BOB, "m.room.name", None, "{}");
        assert_rejected(&r, &name_msg, "7");
    }
}

#[test]
fn levels_without_power_levels_event() {
    for v in ALL {
        let mut r = Room::new(v, ALICE, "{}");
        r.member(ALICE, "join");
        r.member(BOB, "join");
        let by_alice = r.ev(ALICE, "m.room.name", Some(""), "{}");
        let by_bob = r.ev(BOB, "m.room.name", Some(""), "{}");
        assert_allowed(&r, &by_alice);
        assert_rejected(&r, &by_bob, "7");
        let power = PowerLevels::new(r.rules, Some(&r.create), None);
        let expected = if v == RoomVersion::V12 {
            UserPowerLevel::Infinite
        } else {
            UserPowerLevel::Finite(100)
        };
        assert_eq!(power.user_level(user_id(ALICE)), expected);
        assert_eq!(power.user_level(user_id(BOB)), UserPowerLevel::Finite(0));
        assert_eq!(
            (power.invite(), power.kick(), power.ban(), power.redact()),
            (0, 50, 50, 50)
        );
        assert_eq!(power.event_level("m.room.name", true), 50);
        assert_eq!(power.event_level("m.room.message", false), 0);
        assert!(!power.exists());
    }
    // v10: the 100 goes to content.creator.
    let r = Room::new(RoomVersion::V10, ALICE, r#"{"creator":"@bob:a.test"}"#);
    let power = PowerLevels::new(r.rules, Some(&r.create), None);
    assert_eq!(power.user_level(user_id(BOB)), UserPowerLevel::Finite(100));
    assert_eq!(power.user_level(user_id(ALICE)), UserPowerLevel::Finite(0));
    // Without a create event nobody is the creator.
    let power = PowerLevels::new(r.rules, None, None);
    assert_eq!(power.user_level(user_id(BOB)), UserPowerLevel::Finite(0));
}

#[test]
fn state_keys_of_other_users_are_protected() {
    for v in ALL {
        let mut r = room(v, "public");
        r.power_levels(
            ALICE,
            &if v == RoomVersion::V12 {
                r#"{"state_default":0}"#.to_owned()
            } else {
                format!(r#"{{"users":{{"{ALICE}":100}},"state_default":0}}"#)
            },
        );
        r.member(CAROL, "join");
        let own = r.ev(CAROL, "org.example.status", Some(CAROL), "{}");
        assert_allowed(&r, &own);
        let others = r.ev(CAROL, "org.example.status", Some(BOB), "{}");
        assert_rejected(&r, &others, "8");
        // Even the most powerful user cannot.
        let by_alice = r.ev(ALICE, "org.example.status", Some(BOB), "{}");
        assert_rejected(&r, &by_alice, "8");
        let not_user = r.ev(CAROL, "org.example.status", Some("bob"), "{}");
        assert_allowed(&r, &not_user);
    }
}

// ---------------------------------------------------------------------------
// Rule 9: m.room.power_levels

fn pl_room(v: RoomVersion, current: &str) -> Room {
    let mut r = Room::new(v, ALICE, "{}");
    r.member(ALICE, "join");
    r.member(BOB, "join");
    r.member(CAROL, "join");
    r.power_levels(ALICE, current);
    r
}

/// A power levels event by `sender` with `content`.
fn pl(r: &mut Room, sender: &str, content: &str) -> Pdu {
    r.ev(sender, "m.room.power_levels", Some(""), content)
}

#[test]
fn v10_plus_power_levels_must_be_integers() {
    for v in ALL {
        let mut r = pl_room(v, r#"{"users":{"@bob:a.test":100}}"#);
        for content in [
            r#"{"ban":"50"}"#,
            r#"{"users_default":true}"#,
            r#"{"kick":null}"#,
            r#"{"invite":[0]}"#,
            r#"{"state_default":{}}"#,
        ] {
            let e = pl(&mut r, BOB, content);
            assert_rejected(&r, &e, "9.1");
        }
        for content in [
            r#"{"events":{"m.room.name":"50"}}"#,
            r#"{"events":[]}"#,
            r#"{"events":null}"#,
            r#"{"notifications":{"room":"50"}}"#,
            r#"{"notifications":5}"#,
        ] {
            let e = pl(&mut r, BOB, content);
            assert_rejected(&r, &e, "9.2");
        }
        for content in [
            r#"{"users":[]}"#,
            r#"{"users":{"bob":10}}"#,
            r#"{"users":{"@bob:a.test":"100"}}"#,
            r#"{"users":{"@bob:a.test":100,"@carol":1}}"#,
        ] {
            let e = pl(&mut r, BOB, content);
            assert_rejected(&r, &e, "9.3");
        }
        // Bounds of canonical JSON are fine.
        let e = pl(
            &mut r,
            BOB,
            &format!(
                r#"{{"users":{{"@bob:a.test":100,"@carol:b.test":{MIN_SAFE_INT}}},"ban":{MIN_SAFE_INT}}}"#
            ),
        );
        assert_allowed(&r, &e);
    }
}

#[test]
fn v12_power_levels_may_not_list_creators() {
    let mut r = Room::new(
        RoomVersion::V12,
        ALICE,
        r#"{"additional_creators":["@dave:c.test"]}"#,
    );
    r.member(ALICE, "join");
    r.member(BOB, "join");
    for (content, rule) in [
        (r#"{"users":{"@alice:a.test":100}}"#, Some("10.4")),
        (r#"{"users":{"@dave:c.test":100}}"#, Some("10.4")),
        (r#"{"users":{"@bob:a.test":100}}"#, None),
        ("{}", None),
    ] {
        let e = pl(&mut r, ALICE, content);
        assert_eq!(r.rejected_by(&e), rule, "{content}");
    }
    // v11 has no such rule.
    let mut r = pl_room(RoomVersion::V11, r#"{"users":{"@alice:a.test":100}}"#);
    let e = pl(&mut r, ALICE, r#"{"users":{"@alice:a.test":100}}"#);
    assert_allowed(&r, &e);
}

#[test]
fn first_power_levels_may_set_anything() {
    for v in ALL {
        let mut r = Room::new(v, ALICE, "{}");
        r.member(ALICE, "join");
        let e = pl(
            &mut r,
            ALICE,
            &format!(r#"{{"users":{{"{BOB}":{MAX_SAFE_INT}}},"ban":{MAX_SAFE_INT}}}"#),
        );
        assert_allowed(&r, &e);
    }
}

#[test]
fn changing_top_level_levels() {
    for v in ALL {
        // Bob has 50.
        let current = r#"{"users":{"@bob:a.test":50},"kick":60,"ban":40}"#;
        let mut r = pl_room(v, current);
        let keep = |extra: &str| format!(r#"{{"users":{{"@bob:a.test":50}},{extra}}}"#);
        // 9.5.1: changing a level above one's own.
        let e = pl(&mut r, BOB, &keep(r#""kick":50,"ban":40"#));
        assert_rejected(&r, &e, "9.5.1");
        let e = pl(&mut r, BOB, &keep(r#""ban":40"#));
        assert_rejected(&r, &e, "9.5.1");
        // 9.5.2: setting a level above one's own.
        let e = pl(&mut r, BOB, &keep(r#""kick":60,"ban":51"#));
        assert_rejected(&r, &e, "9.5.2");
        let e = pl(
            &mut r,
            BOB,
            &keep(r#""kick":60,"ban":40,"state_default":51"#),
        );
        assert_rejected(&r, &e, "9.5.2");
        // Up to one's own level is fine; unchanged high values are too.
        let e = pl(&mut r, BOB, &keep(r#""kick":60,"ban":50,"invite":50"#));
        assert_allowed(&r, &e);
        // Adding or removing compares only the side that has a value (spec
        // wording; Synapse): Bob (50) may add "redact": 10, and may remove
        // "ban": 40 although the default that then applies is 50.
        let e = pl(&mut r, BOB, &keep(r#""kick":60,"ban":40,"redact":10"#));
        assert_allowed(&r, &e);
        let e = pl(&mut r, BOB, &keep(r#""kick":60"#));
        assert_allowed(&r, &e);
    }
}

#[test]
fn adding_a_level_below_a_default_above_the_sender() {
    // The case where Synapse and ruma-state-res differ: Bob (40) adds
    // "state_default": 30, replacing the default 50 which is above him.
    // The property had no current value, so rule 9.5.1 has nothing to
    // compare; Synapse allows, as do we (ruma compares the default).
    for v in ALL {
        // Bob may send power levels at all (rule 7) thanks to `events`.
        let users = r#""users":{"@bob:a.test":40},"events":{"m.room.power_levels":40}"#;
        let mut r = pl_room(v, &format!("{{{users}}}"));
        let e = pl(&mut r, BOB, &format!(r#"{{{users},"state_default":30}}"#));
        assert_allowed(&r, &e);
        // Above his own level it is refused by 9.5.2 as usual.
        let e = pl(&mut r, BOB, &format!(r#"{{{users},"state_default":41}}"#));
        assert_rejected(&r, &e, "9.5.2");
        // Removing "kick": 30 (the default 50 comes back) likewise.
        let mut r = pl_room(v, &format!(r#"{{{users},"kick":30}}"#));
        let e = pl(&mut r, BOB, &format!("{{{users}}}"));
        assert_allowed(&r, &e);
    }
}

#[test]
fn changing_event_and_notification_levels() {
    for v in ALL {
        let current =
            r#"{"users":{"@bob:a.test":50},"events":{"a":60,"b":40},"notifications":{"room":60}}"#;
        let mut r = pl_room(v, current);
        let with = |events: &str, notifications: &str| {
            format!(
                r#"{{"users":{{"@bob:a.test":50}},"events":{events},"notifications":{notifications}}}"#
            )
        };
        let cases = [
            // 9.6.1: changed or removed entries above the sender.
            (with(r#"{"a":50,"b":40}"#, r#"{"room":60}"#), Some("9.6.1")),
            (with(r#"{"b":40}"#, r#"{"room":60}"#), Some("9.6.1")),
            (with(r#"{"a":60,"b":40}"#, r#"{"room":10}"#), Some("9.6.1")),
            (with(r#"{"a":60,"b":40}"#, "{}"), Some("9.6.1")),
            // 9.7.1: added or changed entries above the sender.
            (with(r#"{"a":60,"b":51}"#, r#"{"room":60}"#), Some("9.7.1")),
            (
                with(r#"{"a":60,"b":40,"c":51}"#, r#"{"room":60}"#),
                Some("9.7.1"),
            ),
            (
                with(r#"{"a":60,"b":40}"#, r#"{"room":60,"x":51}"#),
                Some("9.7.1"),
            ),
            // Allowed changes.
            (
                with(r#"{"a":60,"b":50,"c":50}"#, r#"{"room":60,"x":0}"#),
                None,
            ),
            (with(r#"{"a":60}"#, r#"{"room":60}"#), None),
            (with(r#"{"a":60,"b":40}"#, r#"{"room":60}"#), None),
        ];
        for (content, rule) in cases {
            let e = pl(&mut r, BOB, &content);
            assert_eq!(
                r.rejected_by(&e).map(str::to_owned),
                rule.map(|n| rn(v, n)),
                "v{v} {content}"
            );
        }
        // 9.6 is checked before 9.7 over both maps.
        let e = pl(&mut r, BOB, &with(r#"{"a":60,"b":51}"#, r#"{"room":10}"#));
        assert_rejected(&r, &e, "9.6.1");
    }
}

#[test]
fn changing_user_levels() {
    for v in ALL {
        let current = r#"{"users":{"@bob:a.test":50,"@carol:b.test":50,"@dave:c.test":10}}"#;
        let mut r = pl_room(v, current);
        let cases = [
            // 9.8.1: a peer at the sender's level.
            (
                r#"{"users":{"@bob:a.test":50,"@carol:b.test":49,"@dave:c.test":10}}"#,
                Some("9.8.1"),
            ),
            (
                r#"{"users":{"@bob:a.test":50,"@dave:c.test":10}}"#,
                Some("9.8.1"),
            ),
            // 9.9.1: above the sender's level.
            (
                r#"{"users":{"@bob:a.test":50,"@carol:b.test":50,"@dave:c.test":51}}"#,
                Some("9.9.1"),
            ),
            (
                r#"{"users":{"@bob:a.test":51,"@carol:b.test":50,"@dave:c.test":10}}"#,
                Some("9.9.1"),
            ),
            (
                r#"{"users":{"@bob:a.test":50,"@carol:b.test":50,"@dave:c.test":10,"@eve:e.test":51}}"#,
                Some("9.9.1"),
            ),
            // Allowed: lower users up to one's own level, demote oneself.
            (
                r#"{"users":{"@bob:a.test":50,"@carol:b.test":50,"@dave:c.test":50}}"#,
                None,
            ),
            (r#"{"users":{"@bob:a.test":50,"@carol:b.test":50}}"#, None),
            (
                r#"{"users":{"@bob:a.test":0,"@carol:b.test":50,"@dave:c.test":10}}"#,
                None,
            ),
            (r#"{"users":{"@carol:b.test":50,"@dave:c.test":10}}"#, None),
        ];
        for (content, rule) in cases {
            let e = pl(&mut r, BOB, content);
            assert_eq!(
                r.rejected_by(&e).map(str::to_owned),
                rule.map(|n| rn(v, n)),
                "v{v} {content}"
            );
        }
    }
}

#[test]
fn v12_creators_change_any_level() {
    let mut r = Room::new(
        RoomVersion::V12,
        ALICE,
        r#"{"additional_creators":["@dave:c.test"]}"#,
    );
    r.member(ALICE, "join");
    r.member(DAVE, "join");
    r.member(BOB, "join");
    r.power_levels(ALICE, &format!(r#"{{"users":{{"{BOB}":{MAX_SAFE_INT}}},"ban":{MAX_SAFE_INT},"events":{{"x":{MAX_SAFE_INT}}}}}"#));
    let e = pl(&mut r, DAVE, r#"{"users":{"@bob:a.test":0}}"#);
    assert_allowed(&r, &e);
    // Bob, at the largest finite level, cannot touch the creators (they are
    // not in `users`) but may demote himself.
    let e = pl(
        &mut r,
        BOB,
        &format!(
            r#"{{"users":{{"{BOB}":1}},"ban":{MAX_SAFE_INT},"events":{{"x":{MAX_SAFE_INT}}}}}"#
        ),
    );
    assert_allowed(&r, &e);
}

#[test]
fn power_levels_with_other_state_keys_are_compared_with_the_rooms() {
    for v in ALL {
        let mut r = pl_room(v, r#"{"users":{"@bob:a.test":50},"ban":60}"#);
        let e = r.ev(
            BOB,
            "m.room.power_levels",
            Some("x"),
            r#"{"users":{"@bob:a.test":50}}"#,
        );
        assert_rejected(&r, &e, "9.5.1");
    }
}

// ---------------------------------------------------------------------------
// Helpers

#[test]
fn user_power_level_order() {
    use UserPowerLevel::*;
    assert!(Infinite > Finite(MAX_SAFE_INT));
    assert!(Finite(MIN_SAFE_INT) < Finite(0));
    assert!(Infinite.at_least(MAX_SAFE_INT));
    assert!(!Finite(49).at_least(50));
    assert!(Finite(50).at_least(50));
    assert!(Finite(50) == 50);
    assert!(Finite(50) < 51);
    assert_eq!(Infinite.to_string(), "infinite (room creator)");
}

#[test]
fn power_levels_reads() {
    let mut r = pl_room(
        RoomVersion::V11,
        r#"{"users":{"@bob:a.test":7},"users_default":3,"events":{"m.room.name":9},"notifications":{"room":20},"kick":"bad"}"#,
    );
    let p = PowerLevels::new(r.rules, Some(&r.create), r.get("m.room.power_levels", ""));
    assert!(p.exists());
    assert_eq!(p.user_level(user_id(BOB)), 7);
    assert_eq!(p.user_level(user_id(ALICE)), 3);
    assert_eq!(p.event_level("m.room.name", false), 9);
    assert_eq!(p.notification_level("room"), 20);
    assert_eq!(p.notification_level("other"), 0);
    // A malformed value in state (never accepted in practice) reads as absent.
    assert_eq!(p.kick(), 50);
    let empty_pl = r.ev(ALICE, "m.room.power_levels", Some(""), "{}");
    let empty = PowerLevels::new(r.rules, Some(&r.create), Some(&empty_pl));
    assert_eq!(empty.notification_level("room"), 50);
}

#[test]
fn room_create_helpers() {
    let r = Room::new(
        RoomVersion::V12,
        ALICE,
        r#"{"additional_creators":["@dave:c.test"],"m.federate":false}"#,
    );
    let c = RoomCreate::new(r.rules, &r.create);
    assert_eq!(c.creators().collect::<Vec<_>>(), vec![ALICE, DAVE]);
    assert!(c.has_infinite_power(DAVE));
    assert!(!c.has_infinite_power(BOB));
    assert!(!c.federate());
    let r = Room::new(
        RoomVersion::V11,
        ALICE,
        r#"{"additional_creators":["@dave:c.test"]}"#,
    );
    let c = RoomCreate::new(r.rules, &r.create);
    assert_eq!(c.creators().collect::<Vec<_>>(), vec![ALICE]);
    assert!(!c.has_infinite_power(ALICE));
    assert!(c.federate());
}

#[test]
fn join_rule_helpers() {
    let mut r = room(RoomVersion::V12, "restricted");
    assert_eq!(
        JoinRule::of(r.get("m.room.join_rules", "")),
        JoinRule::Restricted
    );
    assert_eq!(JoinRule::of(None), JoinRule::Invite);
    assert!(
        JoinRule::KnockRestricted.is_restricted() && JoinRule::KnockRestricted.allows_knocking()
    );
    assert!(!JoinRule::Public.allows_knocking());
    let jr = r.set(
        ALICE,
        "m.room.join_rules",
        "",
        r##"{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!space:a.test"},{"type":"m.other","room_id":"!x:a.test"},{"type":"m.room_membership"},5,{"type":"m.room_membership","room_id":"#alias:a.test"}]}"##,
    );
    assert_eq!(
        restricted_allow_rooms(&jr).collect::<Vec<_>>(),
        vec!["!space:a.test"]
    );
    assert_eq!(Membership::of(None), Membership::Leave);
    assert_eq!(Membership::parse("knock"), Membership::Knock);
    assert_eq!(Membership::parse("Join"), Membership::Unknown);
}

#[test]
fn rejection_messages_name_the_rule() {
    let mut r = room(RoomVersion::V12, "invite");
    let e = member_event(&mut r, CAROL, CAROL, r#"{"membership":"join"}"#);
    let err = r.check(&e).expect_err("not invited");
    assert_eq!(err.rule, "5.3.7");
    assert!(
        err.to_string().starts_with("rejected by auth rule 5.3.7: "),
        "{err}"
    );
    assert!(err.reason.contains(CAROL), "{err}");
}
