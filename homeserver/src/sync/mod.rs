//! `/sync`: initial and incremental sync, and long-polling.
//!
//! - [`token`]: the sync token, one position per stream.
//! - [`filter`]: the request's filter and what it selects.
//! - [`plan`]: which rooms a response covers and how, timeline limits.
//! - [`compute`]: one response from the database and in-memory streams.
//! - [`lazy_members`]: the lazy-loaded members each sync loop holds.
//! - [`assemble`]: the pure rules of the response (state selection,
//!   summaries, ephemeral and stripped events).
//! - [`e2ee`]: to-device messages, device-list changes and key counts
//!   (its module docs list its choices).
//!
//! # Choices where the spec is silent (following Synapse)
//! - Timelines default to 10 events per room, at most 100.
//! - An initial sync, or one with `full_state`, returns at once; only an
//!   incremental sync long-polls.
//! - Rooms left after the token always appear under `leave`; rooms left
//!   before it only in an initial (or `full_state`) sync whose filter has
//!   `include_leave`. Forgotten rooms never.
//! - Lazy-loading: an initial sync sends the members of the timeline's
//!   senders, the user's own and, for rooms without a name, the heroes';
//!   an incremental sync sends the members of the timeline's senders that
//!   the sync loop (device and filter) does not hold yet
//!   ([`lazy_members`]), or all of them with `include_redundant_members`.
//! - `summary` (counts and heroes) is sent for rooms sent whole and for
//!   rooms whose timeline has membership changes; heroes are always
//!   listed, clients use them only for rooms without a name.
//! - `presence` carries the users sharing a room with the user, and the
//!   user, as `crate::presence` keeps them; `set_presence` is applied by
//!   the handler before computing.

pub mod assemble;
pub mod compute;
pub mod e2ee;
pub mod filter;
pub mod lazy_members;
pub mod plan;
pub mod token;

pub use compute::{SyncParams, compute, current_token, is_empty, moved_for};
pub use token::SyncToken;
