//! Rooms on one server: the event store, the room state snapshots, current
//! state, memberships and transaction IDs. The design is documented in
//! `homeserver/src/storage/events.rs` (events and streams) and
//! `homeserver/src/storage/state.rs` (state snapshots).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rooms {
    Table,
    RoomId,
    RoomVersion,
    Creator,
    IsPublic,
    CreatedTs,
    CurrentSnapshot,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    EventNid,
    EventId,
    StreamOrdering,
    RoomId,
    EventType,
    StateKey,
    Sender,
    OriginServerTs,
    Depth,
    Json,
    Redacts,
    RedactedBy,
    ReplacesState,
    StateBefore,
    StateAfter,
    Outlier,
    SoftFailed,
    RejectedReason,
    ReceivedTs,
}

#[derive(DeriveIden)]
enum EventEdges {
    Table,
    EventNid,
    TargetEventId,
    IsAuth,
}

#[derive(DeriveIden)]
enum ForwardExtremities {
    Table,
    RoomId,
    EventId,
}

#[derive(DeriveIden)]
enum StateKeys {
    Table,
    StateKeyNid,
    EventType,
    StateKey,
}

#[derive(DeriveIden)]
enum StateSnapshots {
    Table,
    SnapshotNid,
    RoomId,
    Parent,
    ChainDepth,
}

#[derive(DeriveIden)]
enum StateSnapshotEntries {
    Table,
    SnapshotNid,
    StateKeyNid,
    EventNid,
}

#[derive(DeriveIden)]
enum CurrentState {
    Table,
    RoomId,
    EventType,
    StateKey,
    EventNid,
    EventId,
}

#[derive(DeriveIden)]
enum RoomMemberships {
    Table,
    RoomId,
    UserId,
    Membership,
    EventId,
    StreamOrdering,
    Forgotten,
}

#[derive(DeriveIden)]
enum EventTxnIds {
    Table,
    UserId,
    DeviceId,
    TxnId,
    EventId,
    CreatedTs,
}

fn index(name: &str) -> IndexCreateStatement {
    Index::create().name(name).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rooms::Table)
                    .col(
                        ColumnDef::new(Rooms::RoomId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Rooms::RoomVersion).text().not_null())
                    .col(ColumnDef::new(Rooms::Creator).text().not_null())
                    .col(
                        ColumnDef::new(Rooms::IsPublic)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Rooms::CreatedTs).big_integer().not_null())
                    .col(ColumnDef::new(Rooms::CurrentSnapshot).big_integer().null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(
                        ColumnDef::new(Events::EventNid)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Events::EventId).text().not_null())
                    .col(ColumnDef::new(Events::StreamOrdering).big_integer().null())
                    .col(ColumnDef::new(Events::RoomId).text().not_null())
                    .col(ColumnDef::new(Events::EventType).text().not_null())
                    .col(ColumnDef::new(Events::StateKey).text().null())
                    .col(ColumnDef::new(Events::Sender).text().not_null())
                    .col(
                        ColumnDef::new(Events::OriginServerTs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Events::Depth).big_integer().not_null())
                    .col(ColumnDef::new(Events::Json).text().not_null())
                    .col(ColumnDef::new(Events::Redacts).text().null())
                    .col(ColumnDef::new(Events::RedactedBy).text().null())
                    .col(ColumnDef::new(Events::ReplacesState).text().null())
                    .col(ColumnDef::new(Events::StateBefore).big_integer().null())
                    .col(ColumnDef::new(Events::StateAfter).big_integer().null())
                    .col(
                        ColumnDef::new(Events::Outlier)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Events::SoftFailed)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Events::RejectedReason).text().null())
                    .col(ColumnDef::new(Events::ReceivedTs).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("events_event_id")
                    .table(Events::Table)
                    .col(Events::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("events_stream_ordering")
                    .table(Events::Table)
                    .col(Events::StreamOrdering)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Pagination and sync read a room's timeline in stream order.
        manager
            .create_index(
                index("events_room_stream")
                    .table(Events::Table)
                    .col(Events::RoomId)
                    .col(Events::StreamOrdering)
                    .to_owned(),
            )
            .await?;
        // A redaction that arrives before its target (federation) is found
        // by the target's ID when the target comes.
        manager
            .create_index(
                index("events_redacts")
                    .table(Events::Table)
                    .col(Events::Redacts)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EventEdges::Table)
                    .col(
                        ColumnDef::new(EventEdges::EventNid)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(EventEdges::TargetEventId).text().not_null())
                    .col(ColumnDef::new(EventEdges::IsAuth).boolean().not_null())
                    .primary_key(
                        Index::create()
                            .col(EventEdges::EventNid)
                            .col(EventEdges::IsAuth)
                            .col(EventEdges::TargetEventId),
                    )
                    .to_owned(),
            )
            .await?;
        // Backfill and get_missing_events walk edges backwards: "who cites X".
        manager
            .create_index(
                index("event_edges_target")
                    .table(EventEdges::Table)
                    .col(EventEdges::TargetEventId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ForwardExtremities::Table)
                    .col(ColumnDef::new(ForwardExtremities::RoomId).text().not_null())
                    .col(
                        ColumnDef::new(ForwardExtremities::EventId)
                            .text()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ForwardExtremities::RoomId)
                            .col(ForwardExtremities::EventId),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StateKeys::Table)
                    .col(
                        ColumnDef::new(StateKeys::StateKeyNid)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(StateKeys::EventType).text().not_null())
                    .col(ColumnDef::new(StateKeys::StateKey).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("state_keys_type_key")
                    .table(StateKeys::Table)
                    .col(StateKeys::EventType)
                    .col(StateKeys::StateKey)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StateSnapshots::Table)
                    .col(
                        ColumnDef::new(StateSnapshots::SnapshotNid)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(StateSnapshots::RoomId).text().not_null())
                    .col(ColumnDef::new(StateSnapshots::Parent).big_integer().null())
                    .col(
                        ColumnDef::new(StateSnapshots::ChainDepth)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StateSnapshotEntries::Table)
                    .col(
                        ColumnDef::new(StateSnapshotEntries::SnapshotNid)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StateSnapshotEntries::StateKeyNid)
                            .big_integer()
                            .not_null(),
                    )
                    // NULL: the key is removed from the parent's state.
                    .col(
                        ColumnDef::new(StateSnapshotEntries::EventNid)
                            .big_integer()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(StateSnapshotEntries::SnapshotNid)
                            .col(StateSnapshotEntries::StateKeyNid),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CurrentState::Table)
                    .col(ColumnDef::new(CurrentState::RoomId).text().not_null())
                    .col(ColumnDef::new(CurrentState::EventType).text().not_null())
                    .col(ColumnDef::new(CurrentState::StateKey).text().not_null())
                    .col(
                        ColumnDef::new(CurrentState::EventNid)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CurrentState::EventId).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(CurrentState::RoomId)
                            .col(CurrentState::EventType)
                            .col(CurrentState::StateKey),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoomMemberships::Table)
                    .col(ColumnDef::new(RoomMemberships::RoomId).text().not_null())
                    .col(ColumnDef::new(RoomMemberships::UserId).text().not_null())
                    .col(
                        ColumnDef::new(RoomMemberships::Membership)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RoomMemberships::EventId).text().not_null())
                    .col(
                        ColumnDef::new(RoomMemberships::StreamOrdering)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RoomMemberships::Forgotten)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .primary_key(
                        Index::create()
                            .col(RoomMemberships::RoomId)
                            .col(RoomMemberships::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        // "Rooms user U is joined to / invited to": one index range.
        manager
            .create_index(
                index("room_memberships_user")
                    .table(RoomMemberships::Table)
                    .col(RoomMemberships::UserId)
                    .col(RoomMemberships::Membership)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EventTxnIds::Table)
                    .col(ColumnDef::new(EventTxnIds::UserId).text().not_null())
                    .col(ColumnDef::new(EventTxnIds::DeviceId).text().not_null())
                    .col(ColumnDef::new(EventTxnIds::TxnId).text().not_null())
                    .col(ColumnDef::new(EventTxnIds::EventId).text().not_null())
                    .col(
                        ColumnDef::new(EventTxnIds::CreatedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(EventTxnIds::UserId)
                            .col(EventTxnIds::DeviceId)
                            .col(EventTxnIds::TxnId),
                    )
                    .to_owned(),
            )
            .await?;
        // Serving an event to its sender's device adds its transaction ID.
        manager
            .create_index(
                index("event_txn_ids_event")
                    .table(EventTxnIds::Table)
                    .col(EventTxnIds::EventId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EventTxnIds::Table.into_iden(),
            RoomMemberships::Table.into_iden(),
            CurrentState::Table.into_iden(),
            StateSnapshotEntries::Table.into_iden(),
            StateSnapshots::Table.into_iden(),
            StateKeys::Table.into_iden(),
            ForwardExtremities::Table.into_iden(),
            EventEdges::Table.into_iden(),
            Events::Table.into_iden(),
            Rooms::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
