//! Our users' device-list changes, durable until each remote server that
//! shares a room with the user has them:
//!
//! - `device_list_outbox`: one row per `(destination, change)`, written in
//!   the transaction that changed the user's devices or keys and deleted
//!   when the destination accepts the transaction carrying the
//!   `m.device_list_update` (or `m.signing_key_update`) built from it.
//!   `stream_id` is the change's device-list stream position, increasing
//!   per user; `device_id` is the device that changed, NULL for a change of
//!   the user's master or self-signing key.
//! - `device_list_outbound_sent`: the last `stream_id` of each user a
//!   destination accepted, which the next update carries as its `prev_id`
//!   so the receiver can tell whether it missed one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeviceListOutbox {
    Table,
    Destination,
    StreamId,
    UserId,
    DeviceId,
}

#[derive(DeriveIden)]
enum DeviceListOutboundSent {
    Table,
    Destination,
    UserId,
    StreamId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeviceListOutbox::Table)
                    .col(
                        ColumnDef::new(DeviceListOutbox::Destination)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceListOutbox::StreamId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(DeviceListOutbox::UserId).text().not_null())
                    .col(ColumnDef::new(DeviceListOutbox::DeviceId).text().null())
                    .primary_key(
                        Index::create()
                            .col(DeviceListOutbox::Destination)
                            .col(DeviceListOutbox::StreamId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeviceListOutboundSent::Table)
                    .col(
                        ColumnDef::new(DeviceListOutboundSent::Destination)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceListOutboundSent::UserId)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceListOutboundSent::StreamId)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(DeviceListOutboundSent::Destination)
                            .col(DeviceListOutboundSent::UserId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeviceListOutbox::Table).to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(DeviceListOutboundSent::Table)
                    .to_owned(),
            )
            .await
    }
}
