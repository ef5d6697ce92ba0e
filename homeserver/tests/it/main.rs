//! The integration tests, as one binary (one link instead of one per file):
//! each module is a story played against the real `myelin` binary over
//! HTTP, on SQLite and on PostgreSQL (see `common`). Run one story with
//! `cargo test -p myelin-homeserver --test it <module>::`.

#[macro_use]
mod common;
mod e2ee_support;

mod account_data;
mod account_lifecycle;
mod admin_registration;
mod aliases;
mod bad_input_and_rate_limits;
mod deactivation;
mod deactivation_and_sessions;
mod devices;
mod e2ee_cross_signing_and_backup;
mod e2ee_dehydrated_device;
mod e2ee_device_deletion;
mod e2ee_olm_story;
mod e2ee_sync_story;
mod federation_auth;
mod federation_backfill;
mod federation_chat;
mod federation_device_lists;
mod federation_e2ee;
mod federation_keys;
mod federation_membership;
mod federation_public_rooms;
mod federation_read;
mod federation_send;
mod federation_sender;
mod federation_user_keys;
mod filters;
mod ignored_users;
mod monitoring_kit;
mod presence;
mod profile_propagation;
mod public_rooms;
mod push_rules;
mod pushers;
mod receipts;
mod register_and_login;
mod rooms_concurrent_sends;
mod rooms_create_and_errors;
mod rooms_durability;
mod rooms_state_history;
mod rooms_story;
mod server_basics;
mod sessions;
mod synapse_interop;
mod sync_filters;
mod sync_lazy_members;
mod sync_long_poll;
mod sync_memberships;
mod sync_story;
mod tags;
mod transaction_ids;
mod typing;
mod unread_counts;
mod user_directory;
