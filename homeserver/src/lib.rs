//! The Myelin homeserver: client-server API, storage and sync, on top of
//! `myelin-proto` for everything that makes events correct.

pub mod api;
pub mod commands;
pub mod config;
pub mod e2ee;
pub mod expiring;
pub mod federation;
pub mod ignored_users;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod password;
pub mod presence;
pub mod push;
pub mod random;
pub mod ratelimit;
pub mod rooms;
pub mod server;
pub mod state;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod typing;
