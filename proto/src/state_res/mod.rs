//! State resolution v2 (room versions 10 and 11) and v2.1 (room version 12,
//! MSC4297): given the room states at the tips of a room's event graph,
//! compute the state of the room after them (`rooms/v12` "State
//! resolution", `rooms/fragments/v2-state-res`).
//!
//! # Using it
//!
//! ```ignore
//! let state = state_res::resolve(room_version.rules(), &[state_a, state_b], &store)?;
//! ```
//!
//! The caller supplies the state maps and an [`EventSource`] that can fetch
//! every event in them and in their auth chains. A store that indexes auth
//! chains can hand over the auth difference (or the per-state-set auth
//! chains) through [`resolve_with`] and [`Precomputed`]; otherwise the
//! needed parts of the auth chains are walked from the source.
//!
//! # Rejected events
//!
//! - Events rejected *against their auth chain* must not appear at all:
//!   not in the state maps and not as an auth event of anything in them.
//!   Ensuring that is the caller's duty (the storage layer never puts such
//!   an event in a state map; events citing one are rejected too).
//! - Events rejected against the state before them or the current state
//!   (soft failures included) take part as usual.
//! - In the iterative auth checks, a key the auth rules need but the state
//!   lacks is taken from the event's own auth events, *unless that auth
//!   event is rejected*: [`EventSource::is_rejected`] tells which. State
//!   map entries themselves are used as they are.
//!
//! # Readings of the spec
//!
//! Where the spec's words admit two readings, we take the one Synapse,
//! ruma and gomatrixserverlib share: servers that resolve differently split
//! rooms, so convergence with the deployed network decides.
//!
//! - Step 1's set X: from each power event, follow `auth_events` links only
//!   through events of the full conflicted set (the spec says "the events
//!   in the auth chain of P which also belong to the full conflicted set",
//!   which could also take one reached only through events outside it). X
//!   is ordered by the DAG of X's own `auth_events` links.
//! - A power event is `m.room.power_levels`, `m.room.join_rules` or
//!   `m.room.create` *with an empty state key*, or a kick or ban. The spec
//!   defines them by type; with another state key those events are never
//!   consulted by the auth rules, so they cannot remove anyone's ability,
//!   the property that defines power events.
//! - Each state map must hold an event only under that event's own
//!   `(type, state_key)`: the split into conflicted and unconflicted state
//!   relies on it (an event present in every map is unconflicted).
//!
//! # Errors
//!
//! Every event the algorithm needs must be available: a missing event,
//! a cycle in `auth_events`, an event of another room, a non-state event
//! where a state event must be, or malformed power levels among the auth
//! events of a conflicted power event (which the auth rules would have
//! rejected) give a [`StateResError`], never a panic.
//!
//! # How it is fast
//!
//! Events and state keys are interned into `u32` indices once; auth edges
//! are interned per event once. Only the *conflicted closure* (conflicted
//! events and their auth chains) is walked in full: the auth difference is
//! computed with per-state-set bitmasks over it, and the unconflicted state
//! is only walked down until every candidate of the difference is settled
//! (see [`auth_chain`]). Both orderings work on indices with precomputed
//! keys, and the iterative auth checks read an interned state map that
//! implicitly falls back to the caller's own unconflicted map.

mod auth_chain;
mod fx;
mod graph;
mod iterative;
mod ordering;
mod power;
/// Room builders for tests and benches (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::{EventId, OwnedEventId};

pub use auth_chain::auth_chain;
pub use fx::{FxBuildHasher, FxHasher};

use crate::pdu::Pdu;
use crate::room_version::{RoomVersionRules, StateResAlgorithm};
use fx::FxHashMap;
use graph::{Ev, EventGraph};
use power::Power;

pub(crate) const T_CREATE: &str = "m.room.create";
pub(crate) const T_POWER_LEVELS: &str = "m.room.power_levels";
pub(crate) const T_JOIN_RULES: &str = "m.room.join_rules";
pub(crate) const T_MEMBER: &str = "m.room.member";

/// `(event_type, state_key)`.
pub type StateKey = (String, String);

/// A room state: which event holds each `(event_type, state_key)`. Uses a
/// fast non-cryptographic hasher ([`FxBuildHasher`]); build one with
/// `StateMap::default()`.
pub type StateMap = HashMap<StateKey, OwnedEventId, FxBuildHasher>;

/// Where state resolution gets events from.
pub trait EventSource {
    /// The event with this ID, if the store has it.
    fn event(&self, id: &EventId) -> Option<Arc<Pdu>>;

    /// Whether the event was rejected. Only asked about auth events the
    /// iterative auth checks fall back to (see the module docs).
    fn is_rejected(&self, _id: &EventId) -> bool {
        false
    }
}

impl<H: std::hash::BuildHasher> EventSource for HashMap<OwnedEventId, Arc<Pdu>, H> {
    fn event(&self, id: &EventId) -> Option<Arc<Pdu>> {
        self.get(id).cloned()
    }
}

impl<T: EventSource + ?Sized> EventSource for &T {
    fn event(&self, id: &EventId) -> Option<Arc<Pdu>> {
        (**self).event(id)
    }

    fn is_rejected(&self, id: &EventId) -> bool {
        (**self).is_rejected(id)
    }
}

/// Auth chain data a store may already have. At most one is used: the
/// auth difference if given, else the per-state-set chains.
#[derive(Clone, Copy, Debug, Default)]
pub struct Precomputed<'a> {
    /// The auth difference of the state sets (`∪C_i − ∩C_i`), as an auth
    /// chain index computes it directly. The cheapest input.
    pub auth_difference: Option<&'a [OwnedEventId]>,
    /// The full auth chain `C_i` of each state set, in the order of the
    /// state sets. Costs a hash per entry; prefer `auth_difference`.
    pub auth_chains: Option<&'a [HashSet<OwnedEventId>]>,
}

/// Why a set of states could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateResError {
    #[error("event {0} is needed but the event source does not have it")]
    MissingEvent(OwnedEventId),
    #[error("the event source returned {got} when asked for {asked}")]
    WrongEvent {
        asked: OwnedEventId,
        got: OwnedEventId,
    },
    #[error("event {event_id} belongs to room {found}, not {expected}")]
    WrongRoom {
        event_id: OwnedEventId,
        expected: String,
        found: String,
    },
    #[error("room {0} has no create event ID (room version 12 room IDs name it)")]
    NoCreateEvent(String),
    #[error("event {0} is used as state but is not a state event")]
    NotAStateEvent(OwnedEventId),
    #[error("the auth events of {0} form a cycle")]
    AuthCycle(OwnedEventId),
    #[error("power levels event {0} has a non-integer power level")]
    InvalidPowerLevels(OwnedEventId),
    #[error("{got} precomputed auth chains for {expected} state sets")]
    AuthChainCount { expected: usize, got: usize },
    #[error("more than 2^32 events in one resolution")]
    TooManyEvents,
}

/// Resolves `state_sets` with the algorithm of `rules` (v2 or v2.1),
/// walking auth chains through `source`.
pub fn resolve<S: EventSource + ?Sized>(
    rules: &RoomVersionRules,
    state_sets: &[StateMap],
    source: &S,
) -> Result<StateMap, StateResError> {
    resolve_with(rules, state_sets, source, Precomputed::default())
}

/// [`resolve`], using auth chain data the caller already has.
pub fn resolve_with<S: EventSource + ?Sized>(
    rules: &RoomVersionRules,
    state_sets: &[StateMap],
    source: &S,
    pre: Precomputed<'_>,
) -> Result<StateMap, StateResError> {
    resolve_inner(rules, state_sets, source, pre, &AuthRules, None)
}

/// Decides whether an event passes the authorization rules against a
/// state; a seam so the algorithm can be tested with simple rules.
pub(crate) trait Checker {
    fn allows<'a>(
        &self,
        rules: &RoomVersionRules,
        event: &Pdu,
        state: &dyn Fn(&str, &str) -> Option<&'a Pdu>,
    ) -> bool;
}

/// The room version's real authorization rules.
struct AuthRules;

impl Checker for AuthRules {
    fn allows<'a>(
        &self,
        rules: &RoomVersionRules,
        event: &Pdu,
        state: &dyn Fn(&str, &str) -> Option<&'a Pdu>,
    ) -> bool {
        crate::auth::check(rules, event, state).is_ok()
    }
}

/// The intermediate sets and orders of one resolution, for tests.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub conflicted: Vec<OwnedEventId>,
    pub difference: Vec<OwnedEventId>,
    pub subgraph: Vec<OwnedEventId>,
    pub power_order: Vec<OwnedEventId>,
    pub mainline_order: Vec<OwnedEventId>,
}

pub(crate) fn resolve_inner<S: EventSource + ?Sized>(
    rules: &RoomVersionRules,
    state_sets: &[StateMap],
    source: &S,
    pre: Precomputed<'_>,
    checker: &dyn Checker,
    mut trace: Option<&mut Trace>,
) -> Result<StateMap, StateResError> {
    let Some(base) = state_sets.first() else {
        return Ok(StateMap::default());
    };
    if let Some(chains) = pre.auth_chains
        && chains.len() != state_sets.len()
    {
        return Err(StateResError::AuthChainCount {
            expected: state_sets.len(),
            got: chains.len(),
        });
    }
    let split = split(state_sets);
    if split.conflicted.is_empty() {
        // Every state agrees: the unconflicted map is the answer, and with
        // identical states the auth chains (hence difference) are equal.
        return Ok(base.clone());
    }

    let mut ctx = Ctx {
        rules,
        g: EventGraph::new(source),
        keys: Keys::new(base),
        room_create: None,
        start_unconflicted: rules.state_res == StateResAlgorithm::V2,
    };

    // The conflicted state set, and which state sets hold each event.
    let mut direct: Vec<(Ev, usize)> = Vec::new();
    for &key in &split.conflicted {
        ctx.keys.intern_conflicted(key);
        for (i, set) in state_sets.iter().enumerate() {
            if let Some(id) = set.get(key) {
                direct.push((ctx.g.intern(id)?, i));
            }
        }
    }
    let mut conflicted: Vec<Ev> = direct.iter().map(|&(e, _)| e).collect();
    conflicted.sort_unstable();
    conflicted.dedup();

    // Room identity: every event we use must be of the same room; in room
    // version 12 the create event's ID is the room ID's hash.
    let room_id = ctx.g.pdu(conflicted[0]).room_id().to_owned();
    if rules.room_id_from_create_event {
        let create_id = format!("${}", &room_id.as_str()[1..]);
        let create_id = EventId::parse(&create_id)
            .map_err(|_| StateResError::NoCreateEvent(room_id.to_string()))?;
        ctx.room_create = Some(ctx.g.intern(&create_id)?);
    }

    // Auth difference from the caller, if it has one.
    let given_difference: Option<Vec<Ev>> = if let Some(diff) = pre.auth_difference {
        Some(
            diff.iter()
                .map(|id| ctx.g.intern(id))
                .collect::<Result<_, _>>()?,
        )
    } else if let Some(chains) = pre.auth_chains {
        let mut count: FxHashMap<&EventId, usize> = FxHashMap::default();
        for chain in chains {
            for id in chain {
                *count.entry(id).or_default() += 1;
            }
        }
        let mut diff = Vec::new();
        for (id, n) in count {
            if n < chains.len() {
                diff.push(ctx.g.intern(id)?);
            }
        }
        Some(diff)
    } else {
        None
    };

    let mut roots = conflicted.clone();
    roots.extend(given_difference.iter().flatten());
    let closure = auth_chain::closure(&mut ctx.g, &roots)?;
    for &e in &closure.order {
        let pdu = ctx.g.pdu(e);
        if pdu.room_id() != room_id {
            return Err(StateResError::WrongRoom {
                event_id: pdu.event_id().to_owned(),
                expected: room_id.to_string(),
                found: pdu.room_id().to_string(),
            });
        }
    }

    let mut direct_masks = auth_chain::SetMasks::new(closure.len(), state_sets.len());
    for &(e, i) in &direct {
        if let Some(p) = closure.pos(e) {
            direct_masks.set(p, i);
        }
    }
    let in_chain = auth_chain::chain_masks(&ctx.g, &closure, &direct_masks);
    let difference = match given_difference {
        Some(d) => d,
        None => auth_chain::auth_difference(
            &mut ctx.g,
            &closure,
            &in_chain,
            split.unconflicted.iter().map(|id| &***id),
        )?,
    };

    // Full conflicted set, as flags over closure positions.
    let mut is_conflicted = vec![false; ctx.g.len()];
    for &e in &conflicted {
        is_conflicted[e as usize] = true;
    }
    let mut in_full = vec![false; closure.len()];
    for &e in conflicted.iter().chain(&difference) {
        if let Some(p) = closure.pos(e) {
            in_full[p] = true;
        }
    }
    let ids = |g: &EventGraph<'_, S>, evs: &[Ev]| -> Vec<OwnedEventId> {
        evs.iter()
            .map(|&e| g.pdu(e).event_id().to_owned())
            .collect()
    };
    if let Some(t) = trace.as_deref_mut() {
        t.conflicted = ids(&ctx.g, &conflicted);
        t.difference = ids(&ctx.g, &difference);
    }
    if rules.state_res == StateResAlgorithm::V2_1 {
        let subgraph = auth_chain::conflicted_subgraph(&ctx.g, &closure, &in_chain, &is_conflicted);
        for &e in &subgraph {
            if let Some(p) = closure.pos(e) {
                in_full[p] = true;
            }
        }
        if let Some(t) = trace.as_deref_mut() {
            t.subgraph = ids(&ctx.g, &subgraph);
        }
    }

    // Step 1: power events of the full conflicted set and the events of
    // the full conflicted set in their auth chains.
    let n = closure.len();
    let mut below_power = vec![false; n];
    let mut in_x = vec![false; n];
    for p in (0..n).rev() {
        let e = closure.order[p];
        let power_event = in_full[p] && is_power_event(ctx.g.pdu(e));
        in_x[p] = in_full[p] && (power_event || below_power[p]);
        // Walk on only through members of X: the full conflicted set.
        if in_x[p] {
            for &a in ctx.g.auth_of(e) {
                if let Some(q) = closure.pos(a) {
                    below_power[q] = true;
                }
            }
        }
    }
    let mut power: Vec<Option<Power>> = vec![None; n];
    for p in 0..n {
        if in_x[p] {
            power[p] = Some(power::sender_power(
                &ctx.g,
                rules,
                closure.order[p],
                ctx.room_create,
            )?);
        }
    }
    let sorted_power = ordering::reverse_topological_power_order(&ctx.g, &closure, &in_x, &power)?;

    // Step 2.
    let mut state = KeyMap::default();
    iterative::iterative_auth_checks(&mut ctx, checker, &sorted_power, &mut state)?;

    // Step 3: the rest, by mainline of the partially resolved power levels.
    let pl_key = ctx.keys.intern(T_POWER_LEVELS, "");
    let power_event = ctx.current(&state, pl_key)?;
    let rest: Vec<Ev> = (0..n)
        .filter(|&p| in_full[p] && !in_x[p])
        .map(|p| closure.order[p])
        .collect();
    let sorted_rest = ordering::mainline_order(&mut ctx.g, power_event, &rest)?;

    // Step 4.
    iterative::iterative_auth_checks(&mut ctx, checker, &sorted_rest, &mut state)?;
    if let Some(t) = trace {
        t.power_order = ids(&ctx.g, &sorted_power);
        t.mainline_order = ids(&ctx.g, &sorted_rest);
    }

    // Step 5: the unconflicted state map wins; conflicted keys take the
    // resolved value or disappear; keys new to every state are added.
    let mut out = base.clone();
    for &key in &split.conflicted {
        out.remove(key);
    }
    for (&k, &e) in &state {
        let info = &ctx.keys.info[k];
        if !info.conflicted && info.unconflicted.is_some() {
            continue;
        }
        out.insert(
            (info.ty.to_string(), info.sk.to_string()),
            ctx.g.pdu(e).event_id().to_owned(),
        );
    }
    Ok(out)
}

/// A power event: power levels, join rules or create with an empty state
/// key, or a kick or ban (a `leave` or `ban` membership whose sender is not
/// its target). See "Readings of the spec" above.
pub(crate) fn is_power_event(pdu: &Pdu) -> bool {
    let Some(state_key) = pdu.state_key() else {
        return false;
    };
    match pdu.event_type() {
        T_POWER_LEVELS | T_JOIN_RULES | "m.room.create" => state_key.is_empty(),
        T_MEMBER => {
            matches!(pdu.membership(), Some("leave" | "ban")) && pdu.sender().as_str() != state_key
        }
        _ => false,
    }
}

/// The state maps split: keys whose value differs or is missing somewhere,
/// and the values of the other keys.
struct Split<'m> {
    conflicted: Vec<&'m StateKey>,
    unconflicted: Vec<&'m OwnedEventId>,
}

/// An event ID as a hash map key, hashed by its first 8 characters after
/// the sigil. Room version 4+ event IDs are base64 of a SHA-256 hash, so
/// those characters are already uniformly spread; hashing 8 bytes instead
/// of 44 matters when every entry of every state set goes through the map.
/// The per-resolution random seed keeps crafted IDs from piling into one
/// bucket.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey<'m>(&'m str);

impl std::hash::Hash for IdKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let b = self.0.as_bytes();
        if b.len() >= 9 {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[1..9]);
            state.write_u64(u64::from_le_bytes(word));
        } else {
            state.write(b);
        }
    }
}

/// Splits the state maps by counting, for each event ID, in how many maps
/// it appears: one pass over every entry, touching each entry's event ID
/// once and no key strings. A state map holds an event only under the
/// event's own `(type, state_key)`, so an event found in every map is the
/// same value for the same key everywhere (unconflicted); the keys of all
/// other events are conflicted.
fn split(state_sets: &[StateMap]) -> Split<'_> {
    let mut out = Split {
        conflicted: Vec::new(),
        unconflicted: Vec::new(),
    };
    let Some(base) = state_sets.first() else {
        return out;
    };
    let n = state_sets.len();
    // (maps holding the event, last map counted, a key it is held under)
    let mut seen: HashMap<IdKey<'_>, (usize, usize, &StateKey), fx::SeededFx> =
        HashMap::with_capacity_and_hasher(base.len() * 5 / 4, fx::SeededFx::random());
    for (i, set) in state_sets.iter().enumerate() {
        for (key, id) in set {
            seen.entry(IdKey(id.as_str()))
                .and_modify(|e| {
                    // A malformed map holding an event twice counts once.
                    if e.1 != i {
                        e.0 += 1;
                        e.1 = i;
                    }
                })
                .or_insert((1, i, key));
        }
    }
    out.unconflicted.reserve(base.len());
    let mut conflicted: fx::FxHashSet<&StateKey> = fx::FxHashSet::default();
    for (key, id) in base {
        match seen.get(&IdKey(id.as_str())) {
            Some(&(count, _, _)) if count == n => out.unconflicted.push(id),
            _ => {
                conflicted.insert(key);
            }
        }
    }
    for &(count, _, key) in seen.values() {
        if count < n {
            conflicted.insert(key);
        }
    }
    out.conflicted.extend(conflicted);
    out
}

/// Interned state keys, with what the input states say about each.
pub(crate) struct Keys<'m> {
    base: &'m StateMap,
    by_type: FxHashMap<Box<str>, FxHashMap<Box<str>, usize>>,
    info: Vec<KeyInfo<'m>>,
}

pub(crate) struct KeyInfo<'m> {
    ty: Box<str>,
    sk: Box<str>,
    conflicted: bool,
    /// The unconflicted state map's value, if the key is in it.
    unconflicted: Option<&'m OwnedEventId>,
}

/// A state map over interned keys and events.
pub(crate) type KeyMap = FxHashMap<usize, Ev>;

impl<'m> Keys<'m> {
    fn new(base: &'m StateMap) -> Self {
        Self {
            base,
            by_type: FxHashMap::default(),
            info: Vec::new(),
        }
    }

    fn push(&mut self, ty: &str, sk: &str, conflicted: bool) -> usize {
        let unconflicted = if conflicted {
            None
        } else {
            // Not conflicted and in the first state means the same value
            // is in every state.
            self.base.get(&(ty.to_owned(), sk.to_owned()))
        };
        let k = self.info.len();
        self.info.push(KeyInfo {
            ty: ty.into(),
            sk: sk.into(),
            conflicted,
            unconflicted,
        });
        self.by_type
            .entry(ty.into())
            .or_default()
            .insert(sk.into(), k);
        k
    }

    /// Called for every conflicted key before any other key is interned.
    fn intern_conflicted(&mut self, key: &StateKey) -> usize {
        self.push(&key.0, &key.1, true)
    }

    pub(crate) fn intern(&mut self, ty: &str, sk: &str) -> usize {
        if let Some(&k) = self.by_type.get(ty).and_then(|m| m.get(sk)) {
            return k;
        }
        self.push(ty, sk, false)
    }

    pub(crate) fn is(&self, k: usize, ty: &str, sk: &str) -> bool {
        let info = &self.info[k];
        &*info.ty == ty && &*info.sk == sk
    }
}

/// Everything one resolution shares.
pub(crate) struct Ctx<'s, 'm, S: ?Sized> {
    rules: &'s RoomVersionRules,
    g: EventGraph<'s, S>,
    keys: Keys<'m>,
    /// The room's create event (room version 12 only).
    room_create: Option<Ev>,
    /// Resolution v2: the iterative auth checks start from the
    /// unconflicted state map; v2.1 starts from an empty one.
    start_unconflicted: bool,
}

impl<S: EventSource + ?Sized> Ctx<'_, '_, S> {
    /// The value of key `k` in the partially resolved state `state`.
    pub(crate) fn current(
        &mut self,
        state: &KeyMap,
        k: usize,
    ) -> Result<Option<Ev>, StateResError> {
        if let Some(&e) = state.get(&k) {
            return Ok(Some(e));
        }
        if !self.start_unconflicted {
            return Ok(None);
        }
        match self.keys.info[k].unconflicted {
            Some(id) => Ok(Some(self.g.intern(id)?)),
            None => Ok(None),
        }
    }
}
