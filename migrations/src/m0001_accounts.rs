//! Accounts: users, their devices, and the tokens devices authenticate with.
//! Tokens are stored only as SHA-256 hashes, so a database leak does not
//! leak sessions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    UserId,
    PasswordHash,
    IsAdmin,
    Deactivated,
    Displayname,
    AvatarUrl,
    CreatedTs,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    UserId,
    DeviceId,
    DisplayName,
    LastSeenTs,
    LastSeenIp,
    CreatedTs,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    TokenHash,
    UserId,
    DeviceId,
    CreatedTs,
    ExpiresTs,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    UserId,
    DeviceId,
    CreatedTs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(
                        ColumnDef::new(Users::UserId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Users::PasswordHash).text().null())
                    .col(
                        ColumnDef::new(Users::IsAdmin)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Users::Deactivated)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Users::Displayname).text().null())
                    .col(ColumnDef::new(Users::AvatarUrl).text().null())
                    .col(ColumnDef::new(Users::CreatedTs).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(ColumnDef::new(Devices::UserId).text().not_null())
                    .col(ColumnDef::new(Devices::DeviceId).text().not_null())
                    .col(ColumnDef::new(Devices::DisplayName).text().null())
                    .col(ColumnDef::new(Devices::LastSeenTs).big_integer().null())
                    .col(ColumnDef::new(Devices::LastSeenIp).text().null())
                    .col(ColumnDef::new(Devices::CreatedTs).big_integer().not_null())
                    .primary_key(Index::create().col(Devices::UserId).col(Devices::DeviceId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Devices::Table, Devices::UserId)
                            .to(Users::Table, Users::UserId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .col(
                        ColumnDef::new(AccessTokens::TokenHash)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AccessTokens::UserId).text().not_null())
                    .col(ColumnDef::new(AccessTokens::DeviceId).text().not_null())
                    .col(
                        ColumnDef::new(AccessTokens::CreatedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AccessTokens::ExpiresTs).big_integer().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                AccessTokens::Table,
                                (AccessTokens::UserId, AccessTokens::DeviceId),
                            )
                            .to(Devices::Table, (Devices::UserId, Devices::DeviceId))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_tokens_device")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::UserId)
                    .col(AccessTokens::DeviceId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(
                        ColumnDef::new(RefreshTokens::TokenHash)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RefreshTokens::UserId).text().not_null())
                    .col(ColumnDef::new(RefreshTokens::DeviceId).text().not_null())
                    .col(
                        ColumnDef::new(RefreshTokens::CreatedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                RefreshTokens::Table,
                                (RefreshTokens::UserId, RefreshTokens::DeviceId),
                            )
                            .to(Devices::Table, (Devices::UserId, Devices::DeviceId))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RefreshTokens::Table.into_iden(),
            AccessTokens::Table.into_iden(),
            Devices::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
