//! Read receipts and per-user push actions (what unread counts are counted
//! from). Owned by `homeserver/src/storage/receipts.rs` and
//! `homeserver/src/storage/push_actions.rs`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Receipts {
    Table,
    RoomId,
    UserId,
    ReceiptType,
    /// `''` for an unthreaded receipt, else `main` or a thread root's ID.
    ThreadId,
    EventId,
    /// The receipted event's timeline position: receipts only move forward
    /// and unread counts start after it.
    EventStreamOrdering,
    Ts,
    /// The `receipts` stream position of the latest change.
    StreamPosition,
}

#[derive(DeriveIden)]
enum EventPushActions {
    Table,
    UserId,
    RoomId,
    StreamOrdering,
    Notify,
    Highlight,
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
                    .table(Receipts::Table)
                    .col(ColumnDef::new(Receipts::RoomId).text().not_null())
                    .col(ColumnDef::new(Receipts::UserId).text().not_null())
                    .col(ColumnDef::new(Receipts::ReceiptType).text().not_null())
                    .col(ColumnDef::new(Receipts::ThreadId).text().not_null())
                    .col(ColumnDef::new(Receipts::EventId).text().not_null())
                    .col(
                        ColumnDef::new(Receipts::EventStreamOrdering)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Receipts::Ts).big_integer().not_null())
                    .col(
                        ColumnDef::new(Receipts::StreamPosition)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(Receipts::RoomId)
                            .col(Receipts::UserId)
                            .col(Receipts::ReceiptType)
                            .col(Receipts::ThreadId),
                    )
                    .to_owned(),
            )
            .await?;
        // Incremental sync: "receipts of these rooms changed after P".
        manager
            .create_index(
                index("receipts_room_position")
                    .table(Receipts::Table)
                    .col(Receipts::RoomId)
                    .col(Receipts::StreamPosition)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EventPushActions::Table)
                    .col(ColumnDef::new(EventPushActions::UserId).text().not_null())
                    .col(ColumnDef::new(EventPushActions::RoomId).text().not_null())
                    .col(
                        ColumnDef::new(EventPushActions::StreamOrdering)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EventPushActions::Notify)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EventPushActions::Highlight)
                            .boolean()
                            .not_null(),
                    )
                    // Counting and pruning read one user's rows of one room
                    // after (or up to) a stream ordering: one index range.
                    .primary_key(
                        Index::create()
                            .col(EventPushActions::UserId)
                            .col(EventPushActions::RoomId)
                            .col(EventPushActions::StreamOrdering),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EventPushActions::Table.into_iden(),
            Receipts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
