//! User data: stream positions (the counters sync uses to deliver changes
//! incrementally), account data (global and per room; tags and push rules
//! are account data too), stored filters, and pushers.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    UserId,
}

#[derive(DeriveIden)]
enum StreamPositions {
    Table,
    Stream,
    Position,
}

#[derive(DeriveIden)]
enum AccountData {
    Table,
    UserId,
    /// `''` for global account data, so the key can be a plain primary key
    /// (NULLs are never equal in a unique key).
    RoomId,
    Type,
    Content,
    StreamPosition,
}

#[derive(DeriveIden)]
enum Filters {
    Table,
    UserId,
    FilterId,
    Definition,
}

#[derive(DeriveIden)]
enum Pushers {
    Table,
    UserId,
    AppId,
    Pushkey,
    /// The pusher as the client-server API shows it, as JSON.
    Pusher,
    CreatedTs,
}

fn owned_by_user(from: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from_tbl(from)
        .from_col(Users::UserId)
        .to(Users::Table, Users::UserId)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StreamPositions::Table)
                    .col(
                        ColumnDef::new(StreamPositions::Stream)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(StreamPositions::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AccountData::Table)
                    .col(ColumnDef::new(AccountData::UserId).text().not_null())
                    .col(ColumnDef::new(AccountData::RoomId).text().not_null())
                    .col(ColumnDef::new(AccountData::Type).text().not_null())
                    .col(ColumnDef::new(AccountData::Content).text().not_null())
                    .col(
                        ColumnDef::new(AccountData::StreamPosition)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(AccountData::UserId)
                            .col(AccountData::RoomId)
                            .col(AccountData::Type),
                    )
                    .foreign_key(&mut owned_by_user(AccountData::Table))
                    .to_owned(),
            )
            .await?;
        // Sync asks "what changed for user U after position P".
        manager
            .create_index(
                Index::create()
                    .name("account_data_user_position")
                    .table(AccountData::Table)
                    .col(AccountData::UserId)
                    .col(AccountData::StreamPosition)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Filters::Table)
                    .col(ColumnDef::new(Filters::UserId).text().not_null())
                    .col(ColumnDef::new(Filters::FilterId).big_integer().not_null())
                    .col(ColumnDef::new(Filters::Definition).text().not_null())
                    .primary_key(Index::create().col(Filters::UserId).col(Filters::FilterId))
                    .foreign_key(&mut owned_by_user(Filters::Table))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Pushers::Table)
                    .col(ColumnDef::new(Pushers::UserId).text().not_null())
                    .col(ColumnDef::new(Pushers::AppId).text().not_null())
                    .col(ColumnDef::new(Pushers::Pushkey).text().not_null())
                    .col(ColumnDef::new(Pushers::Pusher).text().not_null())
                    .col(ColumnDef::new(Pushers::CreatedTs).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(Pushers::UserId)
                            .col(Pushers::AppId)
                            .col(Pushers::Pushkey),
                    )
                    .foreign_key(&mut owned_by_user(Pushers::Table))
                    .to_owned(),
            )
            .await?;
        // Setting a pusher without `append` removes the same app ID and
        // pushkey from other users.
        manager
            .create_index(
                Index::create()
                    .name("pushers_app_pushkey")
                    .table(Pushers::Table)
                    .col(Pushers::AppId)
                    .col(Pushers::Pushkey)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Pushers::Table.into_iden(),
            Filters::Table.into_iden(),
            AccountData::Table.into_iden(),
            StreamPositions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
