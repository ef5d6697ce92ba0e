//! Server-server API: discovery, keys, request signing, transactions, joins, backfill.

pub mod client;
pub mod discovery;
pub mod request_auth;
pub mod server_keys;
