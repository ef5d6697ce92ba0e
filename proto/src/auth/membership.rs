//! Rule 4 (v12: rule 5): `m.room.member` events.

use ruma::UserId;

use super::AuthError;
use super::create::RoomCreate;
use super::join_rules::JoinRule;
use super::power_levels::PowerLevels;
use super::rule::Rule;
use super::state::{Membership, State};
use super::third_party_invite;
use crate::canonical_json::Value;
use crate::pdu::Pdu;
use crate::room_version::RoomVersionRules;

/// What the membership rules read from the room state.
pub(super) struct Context<'r, 'a, 's> {
    pub rules: &'r RoomVersionRules,
    pub state: State<'a, 's>,
    pub create: RoomCreate<'r>,
    pub power: PowerLevels<'r>,
}

pub(super) fn check(cx: &Context<'_, '_, '_>, event: &Pdu) -> Result<(), AuthError> {
    let rules = cx.rules;
    // 4.1
    let Some(target) = event.state_key() else {
        return Err(Rule::MemberShape.reject(rules, "member event without state_key"));
    };
    let membership = match event.content().get("membership") {
        Some(Value::String(m)) => m.as_str(),
        None => return Err(Rule::MemberShape.reject(rules, "member event without membership")),
        Some(other) => {
            return Err(
                Rule::MemberShape.reject(rules, format!("membership {other} is not a string"))
            );
        }
    };
    // The *target user* is the user the state_key names; a state_key that is
    // no user ID names nobody, and Synapse and ruma refuse it too.
    if <&UserId>::try_from(target).is_err() {
        return Err(Rule::MemberShape.reject(
            rules,
            format!("member state_key {target:?} is not a user ID"),
        ));
    }

    // 4.2: the spec applies this to every membership. Signatures were
    // verified on receipt, before auth; what is left is that one from the
    // authorising user's server is present.
    if let Some(via) = event.content().get("join_authorised_via_users_server") {
        let server = via
            .as_str()
            .and_then(|s| <&UserId>::try_from(s).ok())
            .map(UserId::server_name);
        match server {
            None => {
                return Err(Rule::MemberAuthoriserSignature.reject(
                    rules,
                    format!("join_authorised_via_users_server {via} is not a user ID"),
                ));
            }
            Some(server) if !event.has_signature_from(server) => {
                return Err(Rule::MemberAuthoriserSignature.reject(
                    rules,
                    format!("not signed by {server}, the authorising user's server"),
                ));
            }
            Some(_) => {}
        }
    }

    match Membership::parse(membership) {
        Membership::Join => join(cx, event, target),
        Membership::Invite => invite(cx, event, target),
        Membership::Leave => leave(cx, event, target),
        Membership::Ban => ban(cx, event, target),
        Membership::Knock => knock(cx, event, target),
        // 4.8
        Membership::Unknown => {
            Err(Rule::UnknownMembership.reject(rules, format!("unknown membership {membership:?}")))
        }
    }
}

/// 4.3
fn join(cx: &Context<'_, '_, '_>, event: &Pdu, target: &str) -> Result<(), AuthError> {
    let rules = cx.rules;
    // 4.3.1: the creator's own join right after the create event.
    if let [only] = event.prev_events()
        && only.as_str() == cx.create.event().event_id().as_str()
        && cx.create.creator() == Some(target)
    {
        return Ok(());
    }
    // 4.3.2
    if event.sender().as_str() != target {
        return Err(Rule::JoinSenderIsNotTarget.reject(
            rules,
            format!("{} cannot join {target} to the room", event.sender()),
        ));
    }
    let current = cx.state.membership(target);
    // 4.3.3
    if current == Membership::Ban {
        return Err(Rule::JoinBanned.reject(rules, format!("{target} is banned")));
    }
    let invited_or_joined = matches!(current, Membership::Invite | Membership::Join);
    let join_rule = JoinRule::of(cx.state.get("m.room.join_rules", ""));
    match join_rule {
        // 4.3.4; when not invited, 4.3.5 and 4.3.6 do not apply and 4.3.7 rejects.
        JoinRule::Invite | JoinRule::Knock if invited_or_joined => Ok(()),
        // 4.3.5
        JoinRule::Restricted | JoinRule::KnockRestricted => {
            if invited_or_joined {
                return Ok(());
            }
            let via = event
                .content()
                .get("join_authorised_via_users_server")
                .and_then(Value::as_str);
            let Some(via) = via else {
                return Err(Rule::JoinAuthoriser.reject(
                    rules,
                    "restricted join without invite or join_authorised_via_users_server",
                ));
            };
            if cx.state.membership(via) != Membership::Join {
                return Err(Rule::JoinAuthoriser
                    .reject(rules, format!("authorising user {via} is not joined")));
            }
            let level = cx.power.user_level_str(via);
            if !level.at_least(cx.power.invite()) {
                return Err(Rule::JoinAuthoriser.reject(
                    rules,
                    format!(
                        "authorising user {via} has level {level}, below the invite level {}",
                        cx.power.invite()
                    ),
                ));
            }
            Ok(())
        }
        // 4.3.6
        JoinRule::Public => Ok(()),
        // 4.3.7
        _ => Err(Rule::JoinNotAllowed.reject(
            rules,
            format!("join rule {join_rule:?} does not let {target} join from {current:?}"),
        )),
    }
}

/// 4.4
fn invite(cx: &Context<'_, '_, '_>, event: &Pdu, target: &str) -> Result<(), AuthError> {
    let rules = cx.rules;
    // 4.4.1: the key's presence decides, whatever its value.
    if event.content().contains_key("third_party_invite") {
        return third_party_invite::check(rules, event, target, &cx.state);
    }
    let sender = event.sender().as_str();
    // 4.4.2
    if cx.state.membership(sender) != Membership::Join {
        return Err(
            Rule::InviteSenderNotJoined.reject(rules, format!("inviter {sender} is not joined"))
        );
    }
    // 4.4.3
    let current = cx.state.membership(target);
    if matches!(current, Membership::Join | Membership::Ban) {
        return Err(Rule::InviteTargetJoinedOrBanned.reject(
            rules,
            format!("{target} is {current:?} and cannot be invited"),
        ));
    }
    // 4.4.4, 4.4.5
    let level = cx.power.user_level_str(sender);
    if level.at_least(cx.power.invite()) {
        Ok(())
    } else {
        Err(Rule::InviteLevel.reject(
            rules,
            format!(
                "{sender} has level {level}, below the invite level {}",
                cx.power.invite()
            ),
        ))
    }
}

/// 4.5
fn leave(cx: &Context<'_, '_, '_>, event: &Pdu, target: &str) -> Result<(), AuthError> {
    let rules = cx.rules;
    let sender = event.sender().as_str();
    let sender_membership = cx.state.membership(sender);
    // 4.5.1
    if sender == target {
        return if matches!(
            sender_membership,
            Membership::Invite | Membership::Join | Membership::Knock
        ) {
            Ok(())
        } else {
            Err(Rule::LeaveSelf.reject(
                rules,
                format!("{sender} cannot leave from {sender_membership:?}"),
            ))
        };
    }
    // 4.5.2
    if sender_membership != Membership::Join {
        return Err(Rule::LeaveSenderNotJoined.reject(rules, format!("{sender} is not joined")));
    }
    let sender_level = cx.power.user_level_str(sender);
    // 4.5.3
    if cx.state.membership(target) == Membership::Ban && !sender_level.at_least(cx.power.ban()) {
        return Err(Rule::Unban.reject(
            rules,
            format!(
                "{sender} has level {sender_level}, below the ban level {}",
                cx.power.ban()
            ),
        ));
    }
    // 4.5.4, 4.5.5
    let target_level = cx.power.user_level_str(target);
    if sender_level.at_least(cx.power.kick()) && target_level < sender_level {
        Ok(())
    } else {
        Err(Rule::Kick.reject(
            rules,
            format!(
                "{sender} (level {sender_level}, kick level {}) cannot kick {target} (level {target_level})",
                cx.power.kick()
            ),
        ))
    }
}

/// 4.6
fn ban(cx: &Context<'_, '_, '_>, event: &Pdu, target: &str) -> Result<(), AuthError> {
    let rules = cx.rules;
    let sender = event.sender().as_str();
    // 4.6.1
    if cx.state.membership(sender) != Membership::Join {
        return Err(Rule::BanSenderNotJoined.reject(rules, format!("{sender} is not joined")));
    }
    // 4.6.2, 4.6.3
    let sender_level = cx.power.user_level_str(sender);
    let target_level = cx.power.user_level_str(target);
    if sender_level.at_least(cx.power.ban()) && target_level < sender_level {
        Ok(())
    } else {
        Err(Rule::BanLevel.reject(
            rules,
            format!(
                "{sender} (level {sender_level}, ban level {}) cannot ban {target} (level {target_level})",
                cx.power.ban()
            ),
        ))
    }
}

/// 4.7
fn knock(cx: &Context<'_, '_, '_>, event: &Pdu, target: &str) -> Result<(), AuthError> {
    let rules = cx.rules;
    // 4.7.1
    let join_rule = JoinRule::of(cx.state.get("m.room.join_rules", ""));
    if !join_rule.allows_knocking() {
        return Err(Rule::KnockNotAllowed.reject(
            rules,
            format!("join rule {join_rule:?} does not allow knocking"),
        ));
    }
    let sender = event.sender().as_str();
    // 4.7.2
    if sender != target {
        return Err(Rule::KnockSenderIsNotTarget
            .reject(rules, format!("{sender} cannot knock for {target}")));
    }
    // 4.7.3, 4.7.4
    let current = cx.state.membership(sender);
    if matches!(
        current,
        Membership::Ban | Membership::Invite | Membership::Join
    ) {
        Err(Rule::KnockMembership.reject(rules, format!("{sender} cannot knock from {current:?}")))
    } else {
        Ok(())
    }
}
