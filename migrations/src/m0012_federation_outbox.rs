//! The outbound federation queue, so that nothing we accept for another
//! server is lost across failures and restarts:
//!
//! - `federation_outbox`: one row per `(destination, event)` for each of our
//!   own timeline events that a remote server in the room has not received
//!   yet, written in the event's own transaction and deleted when the
//!   destination acknowledges the transaction carrying it. `room_id` lets a
//!   long backlog be cut down to the newest event of each room (the
//!   destination fetches the rest with `get_missing_events`).
//! - `federation_destinations`: each destination's delivery health, for the
//!   retry back-off: consecutive failures, the back-off interval, when the
//!   next attempt may be made, and the last success.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FederationOutbox {
    Table,
    Destination,
    StreamOrdering,
    RoomId,
}

#[derive(DeriveIden)]
enum FederationDestinations {
    Table,
    Destination,
    Failures,
    RetryIntervalMs,
    RetryAtTs,
    LastSuccessTs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FederationOutbox::Table)
                    .col(
                        ColumnDef::new(FederationOutbox::Destination)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederationOutbox::StreamOrdering)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(FederationOutbox::RoomId).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(FederationOutbox::Destination)
                            .col(FederationOutbox::StreamOrdering),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FederationDestinations::Table)
                    .col(
                        ColumnDef::new(FederationDestinations::Destination)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(FederationDestinations::Failures)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederationDestinations::RetryIntervalMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederationDestinations::RetryAtTs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederationDestinations::LastSuccessTs)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(FederationOutbox::Table).to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(FederationDestinations::Table)
                    .to_owned(),
            )
            .await
    }
}
