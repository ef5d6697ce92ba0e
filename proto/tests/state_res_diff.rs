//! Differential tests: our state resolution against ruma-state-res on
//! thousands of random room histories with forks, for room versions 10,
//! 11 and 12.

mod common;

use common::{History, Mode, ruma_input, ruma_resolve, sorted_ours, sorted_ruma};
use myelin_proto::room_version::RoomVersion;
use myelin_proto::state_res;
use proptest::prelude::*;

fn check(version: RoomVersion, seed: u64, users: usize, steps: usize, tips: usize, mode: Mode) {
    let h = History::generate(version, seed, users, steps, mode);
    let sets = h.tip_states(tips);
    let ours = state_res::resolve(version.rules(), &sets, &h.room.store).expect("we resolve");
    let input = ruma_input(version, &h.room.store, &sets);
    let theirs = ruma_resolve(&input).expect("ruma resolves");
    let (ours, theirs) = (sorted_ours(&ours), sorted_ruma(&theirs));
    if ours != theirs {
        let keys: std::collections::BTreeSet<_> = ours.keys().chain(theirs.keys()).collect();
        let diff: Vec<_> = keys
            .into_iter()
            .filter(|k| ours.get(*k) != theirs.get(*k))
            .map(|k| (k, ours.get(k), theirs.get(k)))
            .collect();
        panic!(
            "v{version} seed {seed} users {users} steps {steps} tips {tips} {mode:?}: (key, ours, ruma) {diff:?}"
        );
    }
}

fn version() -> impl Strategy<Value = RoomVersion> {
    prop_oneof![
        Just(RoomVersion::V10),
        Just(RoomVersion::V11),
        Just(RoomVersion::V12)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    /// Histories where every event passes in any order, so the outcome
    /// depends on the orderings and set computations, not on auth rules.
    #[test]
    fn benign_histories_agree(
        version in version(),
        seed in any::<u64>(),
        users in 3usize..7,
        steps in 5usize..40,
        tips in 2usize..5,
    ) {
        check(version, seed, users, steps, tips, Mode::Benign);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 900, ..ProptestConfig::default() })]

    /// Bans, kicks, power changes, join rule changes and conflicting
    /// memberships by senders of random power.
    #[test]
    #[ignore = "needs auth rules"]
    fn adversarial_histories_agree(
        version in version(),
        seed in any::<u64>(),
        users in 3usize..7,
        steps in 5usize..50,
        tips in 2usize..5,
    ) {
        check(version, seed, users, steps, tips, Mode::Adversarial);
    }
}
