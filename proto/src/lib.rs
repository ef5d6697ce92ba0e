//! Myelin's protocol core: everything that decides whether an event is
//! well-formed, authentic and allowed, with no I/O. Canonical JSON, signing,
//! hashing, redaction, the PDU model, authorization rules and state
//! resolution all live here so they can be tested exhaustively in isolation.

pub mod auth;
pub mod base64;
pub mod canonical_json;
pub mod hashes;
pub mod pdu;
pub mod redaction;
pub mod room_version;
pub mod signing;
pub mod state_res;
pub mod verify;

pub use canonical_json::{Object, Value};
pub use pdu::{Pdu, PduBuilder, PduError};
pub use room_version::{RoomVersion, RoomVersionRules};
