//! The events one resolution touches, interned into dense `u32` indices.
//!
//! Every event is fetched from the [`EventSource`] once, and its
//! `auth_events` are turned into indices once; the rest of the algorithm
//! works on integers and flat vectors instead of hashing event IDs again.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use ruma::EventId;

use super::fx::FxHashMap;
use super::{EventSource, StateResError};
use crate::pdu::Pdu;

/// Index of an interned event.
pub(crate) type Ev = u32;

/// Map key that borrows the event ID from the shared PDU, so interning an
/// event never copies its ID.
struct PduKey(Arc<Pdu>);

impl Borrow<EventId> for PduKey {
    fn borrow(&self) -> &EventId {
        self.0.event_id()
    }
}

impl Hash for PduKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly like `EventId` for `Borrow` lookups to work.
        self.0.event_id().hash(state);
    }
}

impl PartialEq for PduKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.event_id() == other.0.event_id()
    }
}

impl Eq for PduKey {}

pub(crate) struct EventGraph<'s, S: ?Sized> {
    source: &'s S,
    index: FxHashMap<PduKey, Ev>,
    events: Vec<Arc<Pdu>>,
    /// `auth[e]` is the range of `edges` holding `e`'s auth events, once
    /// they have been interned.
    auth: Vec<Option<Range<usize>>>,
    edges: Vec<Ev>,
    rejected: Vec<Option<bool>>,
}

impl<'s, S: EventSource + ?Sized> EventGraph<'s, S> {
    pub(crate) fn new(source: &'s S) -> Self {
        Self {
            source,
            index: FxHashMap::default(),
            events: Vec::new(),
            auth: Vec::new(),
            edges: Vec::new(),
            rejected: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Makes room for `more` events, so walking a large state does not
    /// rehash the index again and again.
    pub(crate) fn reserve(&mut self, more: usize) {
        self.index.reserve(more);
        self.events.reserve(more);
        self.auth.reserve(more);
        self.rejected.reserve(more);
        self.edges.reserve(more * 4);
    }

    /// The index of `id`, fetching the event on first sight.
    pub(crate) fn intern(&mut self, id: &EventId) -> Result<Ev, StateResError> {
        if let Some(&ev) = self.index.get(id) {
            return Ok(ev);
        }
        let pdu = self
            .source
            .event(id)
            .ok_or_else(|| StateResError::MissingEvent(id.to_owned()))?;
        if pdu.event_id() != id {
            return Err(StateResError::WrongEvent {
                asked: id.to_owned(),
                got: pdu.event_id().to_owned(),
            });
        }
        let ev = Ev::try_from(self.events.len()).map_err(|_| StateResError::TooManyEvents)?;
        self.events.push(Arc::clone(&pdu));
        self.auth.push(None);
        self.rejected.push(None);
        self.index.insert(PduKey(pdu), ev);
        Ok(ev)
    }

    pub(crate) fn pdu(&self, ev: Ev) -> &Pdu {
        &self.events[ev as usize]
    }

    /// Interns `ev`'s auth events (fetching them) and returns where they
    /// sit in [`Self::edges`]. A range stays valid for the whole resolution.
    pub(crate) fn auth_range(&mut self, ev: Ev) -> Result<Range<usize>, StateResError> {
        if let Some(range) = &self.auth[ev as usize] {
            return Ok(range.clone());
        }
        let pdu = Arc::clone(&self.events[ev as usize]);
        let start = self.edges.len();
        for id in pdu.auth_events() {
            let a = self.intern(id)?;
            // A duplicate reference adds nothing and would make the edge
            // counts of the topological sort disagree.
            if !self.edges[start..].contains(&a) {
                self.edges.push(a);
            }
        }
        let range = start..self.edges.len();
        self.auth[ev as usize] = Some(range.clone());
        Ok(range)
    }

    /// The auth events of `ev`, which must have gone through
    /// [`Self::auth_range`] before; empty otherwise.
    pub(crate) fn auth_of(&self, ev: Ev) -> &[Ev] {
        match &self.auth[ev as usize] {
            Some(range) => &self.edges[range.clone()],
            None => &[],
        }
    }

    pub(crate) fn edge(&self, i: usize) -> Ev {
        self.edges[i]
    }

    /// Whether the caller marked the event as rejected (cached).
    pub(crate) fn is_rejected(&mut self, ev: Ev) -> bool {
        if let Some(r) = self.rejected[ev as usize] {
            return r;
        }
        let r = self.source.is_rejected(self.events[ev as usize].event_id());
        self.rejected[ev as usize] = Some(r);
        r
    }

    /// The auth event of `ev` that is the state event `(ty, sk)`, if any;
    /// needs [`Self::auth_range`] first.
    pub(crate) fn auth_event_of_type(&self, ev: Ev, ty: &str, sk: &str) -> Option<Ev> {
        self.auth_of(ev)
            .iter()
            .copied()
            .find(|&a| self.pdu(a).is_state_of(ty, sk))
    }
}
