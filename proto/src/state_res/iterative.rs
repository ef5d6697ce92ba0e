//! The iterative auth checks: apply each event, in order, to a state map if
//! the authorization rules allow it against that state.

use crate::auth;

use super::graph::Ev;
use super::{Checker, Ctx, EventSource, StateResError, T_CREATE};

/// The auth rules look up state by `(type, state_key)`; these are the keys
/// they can ask about for `pdu`: its auth events selection (server-server
/// API "Auth events selection").
fn needed_keys(ctx: &Ctx<'_, '_, impl EventSource + ?Sized>, ev: Ev) -> Vec<(String, String)> {
    let pdu = ctx.g.pdu(ev);
    auth::auth_types_for_event(
        ctx.rules,
        pdu.event_type(),
        pdu.sender(),
        pdu.state_key(),
        pdu.content(),
    )
}

/// Runs the iterative auth checks over `events` on `state` (a map from key
/// index to event). In state resolution v2 the state implicitly also holds
/// the unconflicted state map for keys `state` does not have
/// (`ctx.start_unconflicted`).
///
/// A key the auth rules need that the state lacks is taken from the
/// event's own auth events, unless the caller marked that auth event
/// rejected. In room version 12 the create event, which events no longer
/// cite, is always the room's create event.
pub(crate) fn iterative_auth_checks(
    ctx: &mut Ctx<'_, '_, impl EventSource + ?Sized>,
    checker: &dyn Checker,
    events: &[Ev],
    state: &mut super::KeyMap,
) -> Result<(), StateResError> {
    let mut found: Vec<(usize, Ev)> = Vec::new();
    let mut fallback: Vec<Ev> = Vec::new();
    for &ev in events {
        let pdu = ctx.g.pdu(ev);
        let Some(state_key) = pdu.state_key() else {
            return Err(StateResError::NotAStateEvent(pdu.event_id().to_owned()));
        };
        let own_key = ctx.keys.intern(pdu.event_type(), state_key);

        // Gather everything the check may read first (interning and
        // fetching need `&mut`), then run the check on shared borrows.
        found.clear();
        for (ty, sk) in needed_keys(ctx, ev) {
            let k = ctx.keys.intern(&ty, &sk);
            if found.iter().any(|&(f, _)| f == k) {
                continue;
            }
            if let Some(value) = ctx.current(state, k)? {
                found.push((k, value));
            }
        }
        fallback.clear();
        let range = ctx.g.auth_range(ev)?;
        for i in range {
            let a = ctx.g.edge(i);
            if !ctx.g.is_rejected(a) {
                fallback.push(a);
            }
        }

        let g = &ctx.g;
        let keys = &ctx.keys;
        let room_create = if ctx.rules.room_id_from_create_event {
            ctx.room_create
        } else {
            None
        };
        let lookup = |ty: &str, sk: &str| {
            if let Some(create) = room_create
                && ty == T_CREATE
                && sk.is_empty()
            {
                return Some(g.pdu(create));
            }
            found
                .iter()
                .find(|&&(k, _)| keys.is(k, ty, sk))
                .map(|&(_, v)| g.pdu(v))
                .or_else(|| {
                    fallback
                        .iter()
                        .map(|&a| g.pdu(a))
                        .find(|p| p.is_state_of(ty, sk))
                })
        };
        if checker.allows(ctx.rules, g.pdu(ev), &lookup) {
            state.insert(own_key, ev);
        }
    }
    Ok(())
}
