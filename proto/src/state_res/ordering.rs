//! The two orderings of state resolution v2: the reverse topological power
//! ordering (step 1) and the mainline ordering (step 3).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::auth_chain::Closure;
use super::fx::{FxHashMap, FxHashSet};
use super::graph::{Ev, EventGraph};
use super::power::Power;
use super::{EventSource, StateResError, T_POWER_LEVELS};

/// Sorts the events of `closure` with `in_x[pos]` set by the reverse
/// topological power ordering: the lexicographically smallest topological
/// order, under "greater sender power, then smaller `origin_server_ts`,
/// then smaller event ID first", of the DAG those events form with their
/// `auth_events` links (Kahn's algorithm with a heap).
///
/// The DAG is the one the set's own auth events form: an edge for each
/// auth event that is itself in the set, not for paths through events
/// outside it. The spec's "DAG formed by auth events" admits both
/// readings; this is the one Synapse, ruma and gomatrixserverlib
/// implement, and state resolution must agree across servers.
pub(crate) fn reverse_topological_power_order<S: EventSource + ?Sized>(
    g: &EventGraph<'_, S>,
    closure: &Closure,
    in_x: &[bool],
    power: &[Option<Power>],
) -> Result<Vec<Ev>, StateResError> {
    let n = closure.len();
    let x_auth = |p: usize| {
        g.auth_of(closure.order[p])
            .iter()
            .filter_map(|&a| closure.pos(a))
            .filter(|&q| in_x[q])
    };
    // Reverse edges in compressed form: `citers[first[q]..first[q + 1]]`
    // are the positions in the set whose auth events include position q.
    let mut pending = vec![0u32; n];
    let mut first = vec![0usize; n + 1];
    for p in (0..n).filter(|&p| in_x[p]) {
        for q in x_auth(p) {
            pending[p] += 1;
            first[q + 1] += 1;
        }
    }
    for q in 0..n {
        first[q + 1] += first[q];
    }
    let mut fill = first.clone();
    let mut citers = vec![0u32; first[n]];
    for p in (0..n).filter(|&p| in_x[p]) {
        for q in x_auth(p) {
            citers[fill[q]] = p as u32;
            fill[q] += 1;
        }
    }

    let key = |p: usize| {
        let pdu = g.pdu(closure.order[p]);
        let power = power[p].unwrap_or(Power::Int(0));
        // BinaryHeap pops the largest: wrap so the smallest
        // (highest power, earliest ts, smallest ID) comes out first.
        Reverse((
            Reverse(power),
            pdu.origin_server_ts(),
            pdu.event_id().as_str(),
            p,
        ))
    };
    let mut heap: BinaryHeap<_> = (0..n)
        .filter(|&p| in_x[p] && pending[p] == 0)
        .map(key)
        .collect();
    let mut out = Vec::new();
    while let Some(Reverse((_, _, _, p))) = heap.pop() {
        out.push(closure.order[p]);
        for &c in &citers[first[p]..first[p + 1]] {
            let c = c as usize;
            pending[c] -= 1;
            if pending[c] == 0 {
                heap.push(key(c));
            }
        }
    }
    if out.len() != in_x.iter().filter(|&&x| x).count() {
        // Unreachable for a closure built by `closure()`, which already
        // refuses cycles; kept so a bug cannot silently drop events.
        let stuck = (0..n).find(|&p| pending[p] > 0).map_or(0, |p| p);
        return Err(StateResError::AuthCycle(
            g.pdu(closure.order[stuck]).event_id().to_owned(),
        ));
    }
    Ok(out)
}

/// A mainline position; `None` is the spec's ∞ (no power levels event of
/// the mainline in the event's power levels chain).
type Position = Option<usize>;

/// Sorts `events` by the mainline ordering based on `power_event` (the
/// power levels event of the partially resolved state, if any).
pub(crate) fn mainline_order<S: EventSource + ?Sized>(
    g: &mut EventGraph<'_, S>,
    power_event: Option<Ev>,
    events: &[Ev],
) -> Result<Vec<Ev>, StateResError> {
    // hit[c]: the position of the first mainline event at or below power
    // levels event `c` in its chain of power levels auth events. Mainline
    // events map to their own position.
    let mut hit: FxHashMap<Ev, Position> = FxHashMap::default();
    let mut next = power_event;
    let mut i = 0;
    while let Some(p) = next {
        if hit.insert(p, Some(i)).is_some() {
            return Err(StateResError::AuthCycle(g.pdu(p).event_id().to_owned()));
        }
        g.auth_range(p)?;
        next = g.auth_event_of_type(p, T_POWER_LEVELS, "");
        i += 1;
    }

    let mut keyed = Vec::with_capacity(events.len());
    let mut walk = Vec::new();
    let mut in_walk = FxHashSet::default();
    for &e in events {
        // Start at e1: the spec leaves e itself out of its list.
        g.auth_range(e)?;
        let mut cur = g.auth_event_of_type(e, T_POWER_LEVELS, "");
        walk.clear();
        in_walk.clear();
        let position = loop {
            let Some(c) = cur else { break None };
            if let Some(&found) = hit.get(&c) {
                break found;
            }
            if !in_walk.insert(c) {
                return Err(StateResError::AuthCycle(g.pdu(c).event_id().to_owned()));
            }
            walk.push(c);
            g.auth_range(c)?;
            cur = g.auth_event_of_type(c, T_POWER_LEVELS, "");
        };
        for &c in &walk {
            hit.insert(c, position);
        }
        keyed.push((position, e));
    }
    // Greater position first, ∞ greatest of all; then earlier ts, then
    // smaller event ID.
    keyed.sort_by(|&(pa, a), &(pb, b)| {
        let (a, b) = (g.pdu(a), g.pdu(b));
        let rank = |p: Position| Reverse(p.map_or(usize::MAX, |p| p));
        (rank(pa), a.origin_server_ts(), a.event_id().as_str()).cmp(&(
            rank(pb),
            b.origin_server_ts(),
            b.event_id().as_str(),
        ))
    });
    Ok(keyed.into_iter().map(|(_, e)| e).collect())
}
