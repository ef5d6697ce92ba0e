//! `push_unread_counts`: each local member's unread counts per room, kept
//! in step with `event_push_actions` so that sync reads two numbers
//! instead of counting the rows (which grow with everything the user has
//! not read: in a busy room, sync cost grew with the backlog).
//!
//! A row counts the member's push actions still stored for the room that
//! notify, and those that highlight. The rows a read receipt covers are
//! deleted when it arrives, so what is stored is exactly what is unread.
//! Existing databases get the covered rows pruned and the counts summed
//! here, by the rule sync used until now: after the latest unthreaded or
//! `main` read receipt, or without one after the member's membership event.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PushUnreadCounts {
    Table,
    UserId,
    RoomId,
    NotifyCount,
    HighlightCount,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PushUnreadCounts::Table)
                    .col(ColumnDef::new(PushUnreadCounts::UserId).text().not_null())
                    .col(ColumnDef::new(PushUnreadCounts::RoomId).text().not_null())
                    .col(
                        ColumnDef::new(PushUnreadCounts::NotifyCount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PushUnreadCounts::HighlightCount)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(PushUnreadCounts::UserId)
                            .col(PushUnreadCounts::RoomId),
                    )
                    .to_owned(),
            )
            .await?;
        // Portable SQL, run as one batch on one connection.
        manager
            .get_connection()
            .execute_unprepared(
                "DELETE FROM event_push_actions WHERE stream_ordering <= COALESCE( \
                   (SELECT MAX(r.event_stream_ordering) FROM receipts r \
                    WHERE r.room_id = event_push_actions.room_id \
                    AND r.user_id = event_push_actions.user_id \
                    AND r.receipt_type IN ('m.read', 'm.read.private') \
                    AND r.thread_id IN ('', 'main')), \
                   (SELECT m.stream_ordering FROM room_memberships m \
                    WHERE m.room_id = event_push_actions.room_id \
                    AND m.user_id = event_push_actions.user_id), \
                   0); \
                 INSERT INTO push_unread_counts (user_id, room_id, notify_count, highlight_count) \
                 SELECT user_id, room_id, \
                 SUM(CASE WHEN notify THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN highlight THEN 1 ELSE 0 END) \
                 FROM event_push_actions GROUP BY user_id, room_id;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PushUnreadCounts::Table).to_owned())
            .await
    }
}
