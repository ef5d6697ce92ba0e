//! A cache of the device lists of other servers' users who share a room
//! with one of ours, so our clients' `/keys/query` need not ask the remote
//! server every time:
//!
//! - `remote_device_lists`: one row per tracked remote user: the last
//!   `stream_id` of theirs we applied, whether the cache is `stale` (an
//!   update was missed: refetch the whole list), a `generation` bumped each
//!   time it goes stale (a refetch that started before that does not clear
//!   it), and the master and self-signing keys (JSON, NULL if none).
//! - `remote_devices`: the user's devices, with name and keys (JSON, NULL
//!   for a device without keys).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RemoteDeviceLists {
    Table,
    UserId,
    StreamId,
    Stale,
    Generation,
    MasterKey,
    SelfSigningKey,
}

#[derive(DeriveIden)]
enum RemoteDevices {
    Table,
    UserId,
    DeviceId,
    DisplayName,
    KeysJson,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RemoteDeviceLists::Table)
                    .col(
                        ColumnDef::new(RemoteDeviceLists::UserId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RemoteDeviceLists::StreamId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RemoteDeviceLists::Stale)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RemoteDeviceLists::Generation)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RemoteDeviceLists::MasterKey).text().null())
                    .col(
                        ColumnDef::new(RemoteDeviceLists::SelfSigningKey)
                            .text()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RemoteDevices::Table)
                    .col(ColumnDef::new(RemoteDevices::UserId).text().not_null())
                    .col(ColumnDef::new(RemoteDevices::DeviceId).text().not_null())
                    .col(ColumnDef::new(RemoteDevices::DisplayName).text().null())
                    .col(ColumnDef::new(RemoteDevices::KeysJson).text().null())
                    .primary_key(
                        Index::create()
                            .col(RemoteDevices::UserId)
                            .col(RemoteDevices::DeviceId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RemoteDeviceLists::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RemoteDevices::Table).to_owned())
            .await
    }
}
