//! The numbers the spec gives each authorization rule. Room version 12
//! inserted a rule 2 (the room ID names the create event) and a rule 10.4
//! (creators may not be listed in power levels), so most rules have one
//! number in versions 10 and 11 and another in 12. Rejections carry the
//! number of the version being checked, so a log line can be matched to the
//! spec text of that version directly.

use crate::room_version::RoomVersionRules;

/// One authorization rule that can reject an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `m.room.create` has `prev_events`.
    CreatePrevEvents,
    /// v10/v11: the `room_id` domain is not the sender's; v12: the create
    /// event has a `room_id` at all.
    CreateRoomId,
    /// `content.room_version` is not a version we recognise for this room.
    CreateRoomVersion,
    /// v10: the create event has no `creator`.
    CreateCreator,
    /// v12: `additional_creators` is not an array of user IDs.
    CreateAdditionalCreators,
    /// v12: the room ID does not name an accepted create event.
    RoomIdIsCreate,
    /// Two auth events share a `(type, state_key)`.
    AuthDuplicate,
    /// An auth event is outside the auth events selection.
    AuthSelection,
    /// No create event among the auth events (v10/v11).
    AuthNoCreate,
    /// An auth event belongs to another room.
    AuthRoom,
    /// `m.federate` is false and the sender is from another server.
    Federate,
    /// A member event without `state_key` or `membership`.
    MemberShape,
    /// `join_authorised_via_users_server` is not signed by that user's server.
    MemberAuthoriserSignature,
    JoinSenderIsNotTarget,
    JoinBanned,
    /// Restricted join whose authorising user cannot invite or is not joined.
    JoinAuthoriser,
    /// The join rule does not allow this join.
    JoinNotAllowed,
    TpiTargetBanned,
    TpiNoSigned,
    TpiNoMxidOrToken,
    TpiMxidMismatch,
    TpiNoInviteEvent,
    TpiSenderMismatch,
    TpiNoValidSignature,
    InviteSenderNotJoined,
    InviteTargetJoinedOrBanned,
    InviteLevel,
    LeaveSelf,
    LeaveSenderNotJoined,
    Unban,
    Kick,
    BanSenderNotJoined,
    BanLevel,
    KnockNotAllowed,
    KnockSenderIsNotTarget,
    KnockMembership,
    UnknownMembership,
    /// The sender is not joined (non-member events).
    SenderNotJoined,
    /// `m.room.third_party_invite` needs the invite level.
    ThirdPartyInviteLevel,
    /// The sender is below the event type's required power level.
    RequiredLevel,
    /// A `state_key` starting with `@` that is not the sender.
    StateKeyIsOtherUser,
    /// Power levels: a top-level level is not an integer.
    PlIntegerFields,
    /// Power levels: `events` or `notifications` is not a map of integers.
    PlIntegerMaps,
    /// Power levels: `users` is not a map of user IDs to integers.
    PlUsers,
    /// Power levels (v12): `users` lists a room creator.
    PlCreatorListed,
    /// A changed top-level level was above the sender's level.
    PlFieldCurrent,
    /// A changed top-level level is now above the sender's level.
    PlFieldNew,
    /// A changed or removed `events`/`notifications` entry was above the sender.
    PlMapCurrent,
    /// An added or changed `events`/`notifications` entry is above the sender.
    PlMapNew,
    /// A changed or removed user entry was at or above the sender's level.
    PlUserCurrent,
    /// An added or changed user entry is above the sender's level.
    PlUserNew,
}

impl Rule {
    /// The rule's number in the room version `rules` describes.
    pub(crate) fn number(self, rules: &RoomVersionRules) -> &'static str {
        let (v10, v12) = self.numbers();
        if rules.room_id_from_create_event {
            v12
        } else {
            v10
        }
    }

    /// `(number in v10 and v11, number in v12)`. Rules that exist in only
    /// one of them repeat the number they have there.
    fn numbers(self) -> (&'static str, &'static str) {
        use Rule::*;
        match self {
            CreatePrevEvents => ("1.1", "1.1"),
            CreateRoomId => ("1.2", "1.2"),
            CreateRoomVersion => ("1.3", "1.3"),
            CreateCreator => ("1.4", "1.4"),
            CreateAdditionalCreators => ("1.4", "1.4"),
            RoomIdIsCreate => ("2.4", "2"),
            AuthDuplicate => ("2.1", "3.1"),
            AuthSelection => ("2.2", "3.2"),
            // v12 has no such rule: its rule 2 requires the create event instead.
            AuthNoCreate => ("2.4", "2"),
            AuthRoom => ("2.5", "3.5"),
            Federate => ("3", "4"),
            MemberShape => ("4.1", "5.1"),
            MemberAuthoriserSignature => ("4.2.1", "5.2.1"),
            JoinSenderIsNotTarget => ("4.3.2", "5.3.2"),
            JoinBanned => ("4.3.3", "5.3.3"),
            JoinAuthoriser => ("4.3.5.2", "5.3.5.2"),
            JoinNotAllowed => ("4.3.7", "5.3.7"),
            TpiTargetBanned => ("4.4.1.1", "5.4.1.1"),
            TpiNoSigned => ("4.4.1.2", "5.4.1.2"),
            TpiNoMxidOrToken => ("4.4.1.3", "5.4.1.3"),
            TpiMxidMismatch => ("4.4.1.4", "5.4.1.4"),
            TpiNoInviteEvent => ("4.4.1.5", "5.4.1.5"),
            TpiSenderMismatch => ("4.4.1.6", "5.4.1.6"),
            TpiNoValidSignature => ("4.4.1.8", "5.4.1.8"),
            InviteSenderNotJoined => ("4.4.2", "5.4.2"),
            InviteTargetJoinedOrBanned => ("4.4.3", "5.4.3"),
            InviteLevel => ("4.4.5", "5.4.5"),
            LeaveSelf => ("4.5.1", "5.5.1"),
            LeaveSenderNotJoined => ("4.5.2", "5.5.2"),
            Unban => ("4.5.3", "5.5.3"),
            Kick => ("4.5.5", "5.5.5"),
            BanSenderNotJoined => ("4.6.1", "5.6.1"),
            BanLevel => ("4.6.3", "5.6.3"),
            KnockNotAllowed => ("4.7.1", "5.7.1"),
            KnockSenderIsNotTarget => ("4.7.2", "5.7.2"),
            KnockMembership => ("4.7.4", "5.7.4"),
            UnknownMembership => ("4.8", "5.8"),
            SenderNotJoined => ("5", "6"),
            ThirdPartyInviteLevel => ("6.1", "7.1"),
            RequiredLevel => ("7", "8"),
            StateKeyIsOtherUser => ("8", "9"),
            PlIntegerFields => ("9.1", "10.1"),
            PlIntegerMaps => ("9.2", "10.2"),
            PlUsers => ("9.3", "10.3"),
            PlCreatorListed => ("9.3", "10.4"),
            PlFieldCurrent => ("9.5.1", "10.6.1"),
            PlFieldNew => ("9.5.2", "10.6.2"),
            PlMapCurrent => ("9.6.1", "10.7.1"),
            PlMapNew => ("9.7.1", "10.8.1"),
            PlUserCurrent => ("9.8.1", "10.9.1"),
            PlUserNew => ("9.9.1", "10.10.1"),
        }
    }

    /// An [`AuthError`](super::AuthError) for this rule.
    pub(crate) fn reject(
        self,
        rules: &RoomVersionRules,
        reason: impl Into<String>,
    ) -> super::AuthError {
        super::AuthError {
            rule: self.number(rules),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rule::{self, *};
    use crate::room_version::RoomVersion;

    const ALL: [Rule; 51] = [
        CreatePrevEvents,
        CreateRoomId,
        CreateRoomVersion,
        CreateCreator,
        CreateAdditionalCreators,
        RoomIdIsCreate,
        AuthDuplicate,
        AuthSelection,
        AuthNoCreate,
        AuthRoom,
        Federate,
        MemberShape,
        MemberAuthoriserSignature,
        JoinSenderIsNotTarget,
        JoinBanned,
        JoinAuthoriser,
        JoinNotAllowed,
        TpiTargetBanned,
        TpiNoSigned,
        TpiNoMxidOrToken,
        TpiMxidMismatch,
        TpiNoInviteEvent,
        TpiSenderMismatch,
        TpiNoValidSignature,
        InviteSenderNotJoined,
        InviteTargetJoinedOrBanned,
        InviteLevel,
        LeaveSelf,
        LeaveSenderNotJoined,
        Unban,
        Kick,
        BanSenderNotJoined,
        BanLevel,
        KnockNotAllowed,
        KnockSenderIsNotTarget,
        KnockMembership,
        UnknownMembership,
        SenderNotJoined,
        ThirdPartyInviteLevel,
        RequiredLevel,
        StateKeyIsOtherUser,
        PlIntegerFields,
        PlIntegerMaps,
        PlUsers,
        PlCreatorListed,
        PlFieldCurrent,
        PlFieldNew,
        PlMapCurrent,
        PlMapNew,
        PlUserCurrent,
        PlUserNew,
    ];

    /// v12 renumbered by inserting rule 2 and rule 10.4; every rule that
    /// exists in both versions must follow that shift.
    #[test]
    fn v12_numbers_are_the_v10_numbers_shifted() {
        let only_one_version = [
            CreateCreator,
            CreateAdditionalCreators,
            RoomIdIsCreate,
            AuthNoCreate,
            PlCreatorListed,
        ];
        for rule in ALL {
            let v10 = rule.number(RoomVersion::V10.rules());
            assert_eq!(v10, rule.number(RoomVersion::V11.rules()));
            if only_one_version.contains(&rule) {
                continue;
            }
            let mut parts: Vec<u32> = v10.split('.').map(|p| p.parse().expect("number")).collect();
            if parts[0] == 9 && parts.len() > 1 && parts[1] >= 4 {
                parts[1] += 1;
            }
            if parts[0] >= 2 {
                parts[0] += 1;
            }
            let shifted = parts
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            assert_eq!(rule.number(RoomVersion::V12.rules()), shifted, "{rule:?}");
        }
        assert_eq!(RoomIdIsCreate.number(RoomVersion::V12.rules()), "2");
        assert_eq!(PlCreatorListed.number(RoomVersion::V12.rules()), "10.4");
    }
}
