//! Shared by the state resolution differential tests and the benchmark:
//! ruma's `Event` trait over our `Pdu`, ruma's resolver fed the same input,
//! and a generator of random room histories with forks.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use myelin_proto::Pdu;
use myelin_proto::room_version::RoomVersion;
use myelin_proto::state_res::testing::{Ev, Room, Store, member, state};
use myelin_proto::state_res::{StateKey, StateMap};
use ruma::events::{StateEventType, TimelineEventType};
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UInt, UserId};
use serde_json::json;
use serde_json::value::RawValue;

/// Our PDU as ruma sees it, with ruma's types precomputed.
#[derive(Clone)]
pub struct RumaEvent(Arc<Inner>);

struct Inner {
    pdu: Arc<Pdu>,
    id: OwnedEventId,
    event_type: TimelineEventType,
    content: Box<RawValue>,
    ts: MilliSecondsSinceUnixEpoch,
    prev: Vec<OwnedEventId>,
    auth: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
}

impl RumaEvent {
    pub fn new(pdu: Arc<Pdu>) -> Self {
        let content = serde_json::value::to_raw_value(pdu.content()).expect("content serialises");
        let ts = UInt::new(u64::try_from(pdu.origin_server_ts()).unwrap_or(0)).unwrap_or_default();
        RumaEvent(Arc::new(Inner {
            id: pdu.event_id().to_owned(),
            event_type: TimelineEventType::from(pdu.event_type()),
            content,
            ts: MilliSecondsSinceUnixEpoch(ts),
            prev: pdu.prev_events().to_vec(),
            auth: pdu.auth_events().to_vec(),
            redacts: pdu.redacts().map(ToOwned::to_owned),
            pdu,
        }))
    }

    pub fn pdu(&self) -> &Pdu {
        &self.0.pdu
    }
}

impl ruma::state_res::Event for RumaEvent {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.0.id
    }
    fn room_id(&self) -> Option<&RoomId> {
        Some(self.0.pdu.room_id())
    }
    fn sender(&self) -> &UserId {
        self.0.pdu.sender()
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.0.ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.0.event_type
    }
    fn content(&self) -> &RawValue {
        &self.0.content
    }
    fn state_key(&self) -> Option<&str> {
        self.0.pdu.state_key()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.0.prev.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.0.auth.iter())
    }
    fn redacts(&self) -> Option<&OwnedEventId> {
        self.0.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

pub fn ruma_rules(version: RoomVersion) -> ruma::room_version_rules::RoomVersionRules {
    match version {
        RoomVersion::V10 => ruma::room_version_rules::RoomVersionRules::V10,
        RoomVersion::V11 => ruma::room_version_rules::RoomVersionRules::V11,
        RoomVersion::V12 => ruma::room_version_rules::RoomVersionRules::V12,
    }
}

pub type RumaStateMap = ruma::state_res::StateMap<OwnedEventId>;

pub fn to_ruma_map(map: &StateMap) -> RumaStateMap {
    map.iter()
        .map(|((t, k), v)| ((StateEventType::from(t.as_str()), k.clone()), v.clone()))
        .collect()
}

/// Everything ruma's resolver needs, prepared ahead (the benchmark keeps
/// this out of the timed section).
pub struct RumaInput {
    pub version: RoomVersion,
    pub events: HashMap<OwnedEventId, RumaEvent>,
    pub maps: Vec<RumaStateMap>,
    pub auth_chains: Vec<EventIdSet<OwnedEventId>>,
    /// Auth chain of each event, to compute the conflicted state subgraph.
    pub chains: HashMap<OwnedEventId, Arc<HashSet<OwnedEventId>>>,
}

/// Auth chain of `id` (itself excluded), memoised in `memo`.
pub fn chain_of(
    store: &Store,
    id: &EventId,
    memo: &mut HashMap<OwnedEventId, Arc<HashSet<OwnedEventId>>>,
) -> Arc<HashSet<OwnedEventId>> {
    if let Some(c) = memo.get(id) {
        return Arc::clone(c);
    }
    // Iterative post-order so deep chains cannot overflow the stack.
    let mut stack = vec![(id.to_owned(), false)];
    while let Some((e, ready)) = stack.pop() {
        if memo.contains_key(&e) {
            continue;
        }
        let pdu = store.events.get(&e).expect("event in store");
        if ready {
            let mut set = HashSet::new();
            for a in pdu.auth_events() {
                set.insert(a.clone());
                set.extend(memo[a].iter().cloned());
            }
            memo.insert(e, Arc::new(set));
        } else {
            stack.push((e.clone(), true));
            for a in pdu.auth_events() {
                if !memo.contains_key(a) {
                    stack.push((a.clone(), false));
                }
            }
        }
    }
    Arc::clone(&memo[id])
}

pub fn ruma_input(version: RoomVersion, store: &Store, sets: &[StateMap]) -> RumaInput {
    let mut chains = HashMap::new();
    let mut auth_chains = Vec::new();
    for set in sets {
        let mut full = EventIdSet::new();
        for id in set.values() {
            for a in chain_of(store, id, &mut chains).iter() {
                full.insert(a.clone());
            }
        }
        auth_chains.push(full);
    }
    RumaInput {
        version,
        events: store
            .events
            .iter()
            .map(|(k, v)| (k.clone(), RumaEvent::new(Arc::clone(v))))
            .collect(),
        maps: sets.iter().map(to_ruma_map).collect(),
        auth_chains,
        chains,
    }
}

/// The conflicted state subgraph straight from its definition: events
/// reached from a conflicted event whose own auth chain holds a conflicted
/// event, plus the conflicted events.
fn subgraph(
    input: &RumaInput,
    conflicted: &ruma::state_res::StateMap<Vec<OwnedEventId>>,
) -> EventIdSet<OwnedEventId> {
    let cs: HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
    let mut out: EventIdSet<OwnedEventId> = cs.iter().map(|&e| e.clone()).collect();
    for c in &cs {
        for x in input.chains[*c].iter() {
            if input.chains[x].iter().any(|y| cs.contains(y)) {
                out.insert(x.clone());
            }
        }
    }
    out
}

pub fn ruma_resolve(input: &RumaInput) -> Result<RumaStateMap, ruma::state_res::Error> {
    let rules = ruma_rules(input.version);
    let ruma::room_version_rules::StateResolutionVersion::V2(sr) = rules.state_res else {
        panic!("v2 state resolution");
    };
    ruma::state_res::resolve(
        &rules.authorization,
        &sr,
        &input.maps,
        input.auth_chains.clone(),
        |id| input.events.get(id).cloned(),
        |c| Some(subgraph(input, c)),
    )
}

pub type Sorted = BTreeMap<StateKey, String>;

pub fn sorted_ours(map: &StateMap) -> Sorted {
    map.iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

pub fn sorted_ruma(map: &RumaStateMap) -> Sorted {
    map.iter()
        .map(|((t, k), v)| ((t.to_string(), k.clone()), v.to_string()))
        .collect()
}

/// SplitMix64: small, seedable, good enough to drive a generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Whether ruma's authorization rules accept `pdu` against `state` (the
/// generator only keeps events that would be accepted where they are).
pub fn ruma_allows(version: RoomVersion, store: &Store, pdu: &Arc<Pdu>, st: &StateMap) -> bool {
    let rules = ruma_rules(version).authorization;
    let ev = RumaEvent::new(Arc::clone(pdu));
    let fetch = |id: &EventId| store.events.get(id).map(|p| RumaEvent::new(Arc::clone(p)));
    if ruma::state_res::check_state_independent_auth_rules(&rules, &ev, fetch).is_err() {
        return false;
    }
    let fetch_state = |t: &StateEventType, k: &str| {
        st.get(&(t.to_string(), k.to_owned()))
            .and_then(|id| store.events.get(id))
            .map(|p| RumaEvent::new(Arc::clone(p)))
    };
    ruma::state_res::check_state_dependent_auth_rules(&rules, &ev, fetch_state).is_ok()
}

/// What kinds of events a history has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only events every order of the iterative auth checks accepts: the
    /// creator changes topic, name and others' power; others join.
    Benign,
    /// Anyone tries anything: power changes, bans, kicks, invites, leaves,
    /// join rule changes; kept only where the auth rules accept them.
    Adversarial,
}

pub fn user(i: usize) -> String {
    format!("@u{i}:example.org")
}

pub struct History {
    pub room: Room,
    /// (last event, state after it) of each branch.
    pub tips: Vec<(OwnedEventId, StateMap)>,
}

fn power_content(
    version: RoomVersion,
    rng: &mut Rng,
    users: usize,
    mode: Mode,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if version != RoomVersion::V12 {
        map.insert(user(0), json!(100));
    }
    for i in 1..users {
        if rng.chance(60) {
            let level = *rng.pick(&[0, 10, 50, 75, 100]);
            // The creator may not change a level equal to her own (100), so
            // benign histories stay below it.
            let level = if mode == Mode::Benign {
                level.min(75)
            } else {
                level
            };
            map.insert(user(i), json!(level));
        }
    }
    json!({
        "users": map,
        "users_default": 0,
        "state_default": 50,
        "events_default": 0,
        "ban": *rng.pick(&[50, 50, 75]),
        "kick": *rng.pick(&[50, 10]),
        "invite": 0,
    })
}

/// A random event for the branch whose state is `st`.
fn random_event(version: RoomVersion, rng: &mut Rng, users: usize, mode: Mode) -> Ev<'static> {
    let alice = user(0);
    let any = user(rng.below(users));
    let other = user(1 + rng.below(users - 1));
    let n = rng.next() % 1000;
    match mode {
        Mode::Benign => match rng.below(5) {
            0 => state(
                "m.room.topic",
                "",
                &alice,
                json!({ "topic": format!("t{n}") }),
            ),
            1 => state(
                "m.room.name",
                "",
                &alice,
                json!({ "name": format!("n{n}") }),
            ),
            2 => state(
                "m.room.power_levels",
                "",
                &alice,
                power_content(version, rng, users, mode),
            ),
            _ => {
                let mut ev = member(&other, &other, "join");
                ev.content = json!({ "membership": "join", "displayname": format!("d{n}") });
                ev
            }
        },
        // Now and then a power event by type alone (the spec's definition),
        // which ruma only counts with an empty state key.
        Mode::Adversarial if rng.chance(3) => {
            if rng.chance(50) {
                state(
                    "m.room.power_levels",
                    "x",
                    &any,
                    power_content(version, rng, users, mode),
                )
            } else {
                state(
                    "m.room.join_rules",
                    "x",
                    &any,
                    json!({ "join_rule": "invite" }),
                )
            }
        }
        Mode::Adversarial => match rng.below(10) {
            0 => state(
                "m.room.topic",
                "",
                &any,
                json!({ "topic": format!("t{n}") }),
            ),
            1 | 2 => state(
                "m.room.power_levels",
                "",
                &any,
                power_content(version, rng, users, mode),
            ),
            3 => state(
                "m.room.join_rules",
                "",
                &any,
                json!({ "join_rule": *rng.pick(&["public", "invite"]) }),
            ),
            4 => member(&other, &any, "ban"),
            5 => member(&other, &any, "leave"),
            6 => member(&other, &any, "invite"),
            7 => member(&other, &other, "leave"),
            _ => member(&other, &other, "join"),
        },
    }
}

impl History {
    /// A room of `users` users (user 0 creates it; everyone joins) grown
    /// by `steps` random events over forking and merging branches.
    pub fn generate(
        version: RoomVersion,
        seed: u64,
        users: usize,
        steps: usize,
        mode: Mode,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let alice = user(0);
        let (mut room, s) = Room::new(version, &alice);
        let mut tip = room.create.event_id().to_owned();
        let (e, mut s) = room.send(&s, &[tip], member(&alice, &alice, "join"));
        tip = e.event_id().to_owned();
        let setup = [
            state(
                "m.room.power_levels",
                "",
                &alice,
                power_content(version, &mut rng, users, Mode::Benign),
            ),
            state(
                "m.room.join_rules",
                "",
                &alice,
                json!({ "join_rule": "public" }),
            ),
        ];
        for ev in setup {
            let (e, s2) = room.send(&s, &[tip], ev);
            tip = e.event_id().to_owned();
            s = s2;
        }
        for i in 1..users {
            let (e, s2) = room.send(&s, &[tip], member(&user(i), &user(i), "join"));
            tip = e.event_id().to_owned();
            s = s2;
        }
        let mut h = History {
            room,
            tips: vec![(tip, s)],
        };
        for _ in 0..steps {
            if rng.chance(25) {
                let b = rng.below(h.tips.len());
                let copy = h.tips[b].clone();
                h.tips.push(copy);
            }
            if h.tips.len() >= 2 && rng.chance(10) {
                h.merge(&mut rng);
                continue;
            }
            let b = rng.below(h.tips.len());
            let ev = random_event(version, &mut rng, users, mode);
            let (prev, st) = h.tips[b].clone();
            let (pdu, after) = h.room.send(&st, &[prev], ev);
            if ruma_allows(version, &h.room.store, &pdu, &st) {
                h.tips[b] = (pdu.event_id().to_owned(), after);
            } else {
                h.room.store.events.remove(pdu.event_id());
            }
        }
        h
    }

    /// Joins two branches with a message from the creator; the state after
    /// it is ruma's resolution of the two (ruma is the reference here).
    fn merge(&mut self, rng: &mut Rng) {
        let a = rng.below(self.tips.len());
        let b = rng.below(self.tips.len());
        if a == b || self.tips[a].0 == self.tips[b].0 {
            return;
        }
        let version = self.room.version;
        let sets = [self.tips[a].1.clone(), self.tips[b].1.clone()];
        let input = ruma_input(version, &self.room.store, &sets);
        let Ok(resolved) = ruma_resolve(&input) else {
            return;
        };
        let mut st = StateMap::default();
        for ((t, k), v) in resolved {
            st.insert((t.to_string(), k), v);
        }
        let alice = user(0);
        let ev = Ev {
            ty: "m.room.message",
            state_key: None,
            sender: Box::leak(alice.into_boxed_str()),
            content: json!({ "body": "merge", "msgtype": "m.text" }),
        };
        let prev = [self.tips[a].0.clone(), self.tips[b].0.clone()];
        let (pdu, _) = self.room.send(&st, &prev, ev);
        if ruma_allows(version, &self.room.store, &pdu, &st) {
            let (lo, hi) = (a.min(b), a.max(b));
            self.tips.remove(hi);
            self.tips[lo] = (pdu.event_id().to_owned(), st);
        } else {
            self.room.store.events.remove(pdu.event_id());
        }
    }

    /// The states of up to `k` distinct branches.
    pub fn tip_states(&self, k: usize) -> Vec<StateMap> {
        let mut seen = HashSet::new();
        self.tips
            .iter()
            .filter(|(id, _)| seen.insert(id.clone()))
            .take(k)
            .map(|(_, s)| s.clone())
            .collect()
    }
}
