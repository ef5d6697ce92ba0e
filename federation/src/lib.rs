//! Server-server API: discovery, keys, request signing, transactions, joins, backfill.

pub mod discovery;
