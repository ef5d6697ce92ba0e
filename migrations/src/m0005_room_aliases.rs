//! Room aliases, plus three account-lifecycle columns:
//!
//! - `room_aliases`: local aliases (`#name:ourserver`) and the room each
//!   points to, with the user who created it (Synapse lets the creator
//!   delete it without room power).
//! - `users.erased`: the account was deactivated with `erase: true`.
//! - `pushers.device_id`: the device that created the pusher; logging that
//!   device out or deleting it removes the pusher, as in Synapse. Pushers
//!   created before this column existed have none and stay until removed.
//! - `access_tokens.pending_refresh`: the refresh token this access token
//!   was issued for; it stays usable until this access token is first
//!   used, so a client that lost the response to `/refresh` can retry.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoomAliases {
    Table,
    RoomAlias,
    RoomId,
    Creator,
    CreatedTs,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Erased,
}

#[derive(DeriveIden)]
enum Pushers {
    Table,
    DeviceId,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    PendingRefresh,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoomAliases::Table)
                    .col(
                        ColumnDef::new(RoomAliases::RoomAlias)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RoomAliases::RoomId).text().not_null())
                    .col(ColumnDef::new(RoomAliases::Creator).text().not_null())
                    .col(
                        ColumnDef::new(RoomAliases::CreatedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // "The aliases of room R" (`/rooms/{roomId}/aliases`, the directory).
        manager
            .create_index(
                Index::create()
                    .name("room_aliases_room")
                    .table(RoomAliases::Table)
                    .col(RoomAliases::RoomId)
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::Erased)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Pushers::Table)
                    .add_column(ColumnDef::new(Pushers::DeviceId).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .add_column(ColumnDef::new(AccessTokens::PendingRefresh).text().null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .drop_column(AccessTokens::PendingRefresh)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Pushers::Table)
                    .drop_column(Pushers::DeviceId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::Erased)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(RoomAliases::Table).to_owned())
            .await
    }
}
