//! Auth chains, the auth difference and the conflicted state subgraph.
//!
//! Everything here works on the *conflicted closure*: the conflicted events
//! and every event in their auth chains, in an order where each event comes
//! after all of its auth events. One pass over it, newest first, tells for
//! every event which state sets' auth chains contain it; one pass oldest
//! first tells which events lead to a conflicted event.
//!
//! Why the closure is enough: the full auth chain of state set *i* is
//! `C_i = U ∪ A_i`, where `U` is the union of the auth chains of the
//! unconflicted events (the same in every set) and `A_i` that of the set's
//! conflicted events. Hence `∪C − ∩C = ∪A − ∩A − U`: only events of the
//! closure can be in the auth difference, and for those we only need to
//! know whether some unconflicted event has them in its auth chain.

use std::collections::HashSet;

use ruma::{EventId, OwnedEventId};

use super::graph::{Ev, EventGraph};
use super::{EventSource, StateResError};

const NOT_IN: u32 = u32::MAX;

/// The conflicted closure, see the module docs.
pub(crate) struct Closure {
    /// Oldest first: every event comes after all of its auth events.
    pub order: Vec<Ev>,
    /// `pos[ev]` is `ev`'s index in `order`, [`NOT_IN`] if outside.
    pos: Vec<u32>,
}

impl Closure {
    pub(crate) fn pos(&self, ev: Ev) -> Option<usize> {
        match self.pos.get(ev as usize) {
            Some(&p) if p != NOT_IN => Some(p as usize),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

/// Collects `roots` and their auth chains in topological order (depth
/// first, iteratively so hostile chain lengths cannot overflow the stack).
pub(crate) fn closure<S: EventSource + ?Sized>(
    g: &mut EventGraph<'_, S>,
    roots: &[Ev],
) -> Result<Closure, StateResError> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut mark = vec![NEW; g.len()];
    let mut order = Vec::new();
    // (event, next edge to look at, end of its edges)
    let mut stack: Vec<(Ev, usize, usize)> = Vec::new();
    for &root in roots {
        if mark[root as usize] != NEW {
            continue;
        }
        let range = g.auth_range(root)?;
        mark.resize(g.len(), NEW);
        mark[root as usize] = OPEN;
        stack.push((root, range.start, range.end));
        while let Some(top) = stack.last_mut() {
            let (ev, next, end) = *top;
            if next == end {
                mark[ev as usize] = DONE;
                order.push(ev);
                stack.pop();
                continue;
            }
            top.1 += 1;
            let a = g.edge(next);
            match mark[a as usize] {
                NEW => {
                    let range = g.auth_range(a)?;
                    mark.resize(g.len(), NEW);
                    mark[a as usize] = OPEN;
                    stack.push((a, range.start, range.end));
                }
                // Event IDs are hashes over the auth events, so a cycle
                // means the source is broken; refuse rather than loop.
                OPEN => return Err(StateResError::AuthCycle(g.pdu(a).event_id().to_owned())),
                _ => {}
            }
        }
    }
    let mut pos = vec![NOT_IN; g.len()];
    for (i, &ev) in order.iter().enumerate() {
        // `order` has at most `g.len()` entries, which fit in u32.
        pos[ev as usize] = i as u32;
    }
    Ok(Closure { order, pos })
}

/// One bit per state set for each event of the closure.
pub(crate) struct SetMasks {
    words: usize,
    bits: Vec<u64>,
    sets: usize,
}

impl SetMasks {
    pub(crate) fn new(rows: usize, sets: usize) -> Self {
        let words = sets.div_ceil(64).max(1);
        Self {
            words,
            bits: vec![0; rows * words],
            sets,
        }
    }

    pub(crate) fn set(&mut self, row: usize, set: usize) {
        self.bits[row * self.words + set / 64] |= 1 << (set % 64);
    }

    fn row(&self, row: usize) -> &[u64] {
        &self.bits[row * self.words..(row + 1) * self.words]
    }

    fn is_empty(&self, row: usize) -> bool {
        self.row(row).iter().all(|&w| w == 0)
    }

    fn is_full(&self, row: usize) -> bool {
        let full_words = self.sets / 64;
        let row = self.row(row);
        row[..full_words].iter().all(|&w| w == u64::MAX)
            && (self.sets.is_multiple_of(64) || row[full_words] == (1u64 << (self.sets % 64)) - 1)
    }

    /// `self[to] |= self[from] | other[from]`.
    fn or_into(&mut self, to: usize, from: usize, other: &SetMasks) {
        for w in 0..self.words {
            let v = self.bits[from * self.words + w] | other.bits[from * self.words + w];
            self.bits[to * self.words + w] |= v;
        }
    }
}

/// For each event of the closure, the state sets whose conflicted events
/// have it in their auth chain (`A_i` in the module docs). `direct` has the
/// sets each conflicted event itself belongs to.
pub(crate) fn chain_masks<S: EventSource + ?Sized>(
    g: &EventGraph<'_, S>,
    closure: &Closure,
    direct: &SetMasks,
) -> SetMasks {
    let mut in_chain = SetMasks::new(closure.len(), direct.sets);
    for p in (0..closure.len()).rev() {
        for &a in g.auth_of(closure.order[p]) {
            if let Some(q) = closure.pos(a) {
                in_chain.or_into(q, p, direct);
            }
        }
    }
    in_chain
}

/// The auth difference: events of the closure in some but not all `A_i`
/// and in no unconflicted event's auth chain. Walks down from the
/// unconflicted events, but never below an event every `A_i` already has
/// (everything under it is in every `A_i` too), and stops as soon as all
/// candidates are accounted for.
pub(crate) fn auth_difference<'m, S: EventSource + ?Sized>(
    g: &mut EventGraph<'_, S>,
    closure: &Closure,
    in_chain: &SetMasks,
    unconflicted: impl ExactSizeIterator<Item = &'m EventId>,
) -> Result<Vec<Ev>, StateResError> {
    let mut candidate: Vec<bool> = (0..closure.len())
        .map(|p| !in_chain.is_empty(p) && !in_chain.is_full(p))
        .collect();
    let mut remaining = candidate.iter().filter(|&&c| c).count();
    if remaining == 0 {
        return Ok(Vec::new());
    }
    g.reserve(unconflicted.len());
    let prune = |closure: &Closure, ev: Ev| closure.pos(ev).is_some_and(|p| in_chain.is_full(p));
    let mut expanded = vec![false; g.len()];
    let mut stack: Vec<Ev> = Vec::new();
    'outer: for id in unconflicted {
        let u = g.intern(id)?;
        expanded.resize(g.len(), false);
        // `u` itself is not in its own auth chain: only what it reaches
        // through at least one edge counts.
        if expanded[u as usize] || prune(closure, u) {
            continue;
        }
        expanded[u as usize] = true;
        stack.push(u);
        while let Some(e) = stack.pop() {
            let range = g.auth_range(e)?;
            expanded.resize(g.len(), false);
            for i in range {
                let a = g.edge(i);
                if let Some(p) = closure.pos(a)
                    && candidate[p]
                {
                    candidate[p] = false;
                    remaining -= 1;
                    if remaining == 0 {
                        break 'outer;
                    }
                }
                if !expanded[a as usize] && !prune(closure, a) {
                    expanded[a as usize] = true;
                    stack.push(a);
                }
            }
        }
    }
    Ok((0..closure.len())
        .filter(|&p| candidate[p])
        .map(|p| closure.order[p])
        .collect())
}

/// The conflicted state subgraph (room version 12): the events on some
/// auth-event path from one conflicted event to another, endpoints
/// included. An event of the closure is on such a path exactly when a
/// conflicted event reaches it (it is in some `A_i`) and it reaches a
/// conflicted event through at least one edge; the auth graph is acyclic,
/// so the two conflicted events differ.
pub(crate) fn conflicted_subgraph<S: EventSource + ?Sized>(
    g: &EventGraph<'_, S>,
    closure: &Closure,
    in_chain: &SetMasks,
    is_conflicted: &[bool],
) -> Vec<Ev> {
    let mut reaches = vec![false; closure.len()];
    let mut out = Vec::new();
    for p in 0..closure.len() {
        let e = closure.order[p];
        reaches[p] = g.auth_of(e).iter().any(|&a| {
            is_conflicted.get(a as usize).copied().unwrap_or(false)
                || closure.pos(a).is_some_and(|q| reaches[q])
        });
        if (reaches[p] && !in_chain.is_empty(p)) || is_conflicted[e as usize] {
            out.push(e);
        }
    }
    out
}

/// The auth chain of one event: every event reachable through
/// `auth_events`, the event itself excluded. For callers that need a
/// single chain (tests, tools); [`super::resolve`] never materialises
/// per-event chains.
pub fn auth_chain<S: EventSource + ?Sized>(
    source: &S,
    event_id: &EventId,
) -> Result<HashSet<OwnedEventId>, StateResError> {
    let mut g = EventGraph::new(source);
    let root = g.intern(event_id)?;
    let closure = closure(&mut g, &[root])?;
    Ok(closure
        .order
        .iter()
        .filter(|&&e| e != root)
        .map(|&e| g.pdu(e).event_id().to_owned())
        .collect())
}
