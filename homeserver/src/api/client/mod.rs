//! Client-server API endpoints, one module per area of the spec.

pub mod account;
pub mod directory;
pub mod discovery;
pub mod keys;
pub mod presence;
pub mod receipts;
pub mod rooms;
pub mod sync;
pub mod user_data;
