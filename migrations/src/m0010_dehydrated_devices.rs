//! Dehydrated devices (MSC3814): at most one per user, a device that no
//! client runs, kept so that room keys sent while the user has no device
//! logged in reach a future device. The device itself is an ordinary row of
//! `devices` (so keys, one-time keys and to-device messages work as for any
//! device); this table marks which device it is and keeps the encrypted
//! device data the client uploaded, served back as uploaded.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DehydratedDevices {
    Table,
    UserId,
    DeviceId,
    DeviceData,
    CreatedTs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DehydratedDevices::Table)
                    .col(
                        ColumnDef::new(DehydratedDevices::UserId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DehydratedDevices::DeviceId)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DehydratedDevices::DeviceData)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DehydratedDevices::CreatedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DehydratedDevices::Table).to_owned())
            .await
    }
}
