//! Client-server API endpoints, one module per area of the spec.

pub mod account;
pub mod discovery;
pub mod keys;
pub mod rooms;
pub mod user_data;
