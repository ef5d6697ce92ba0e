//! Differential tests: our state resolution against ruma-state-res on
//! thousands of random room histories with forks, for room versions 10,
//! 11 and 12.

mod common;

use std::collections::BTreeSet;

use common::{History, Mode, ruma_input, ruma_resolve, sorted_ours, sorted_ruma};
use myelin_proto::room_version::RoomVersion;
use myelin_proto::state_res;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn check(
    version: RoomVersion,
    seed: u64,
    users: usize,
    steps: usize,
    tips: usize,
    mode: Mode,
) -> Result<(), TestCaseError> {
    let h = History::generate(version, seed, users, steps, mode);
    let sets = h.tip_states(tips);
    let ours = state_res::resolve(version.rules(), &sets, &h.room.store).expect("we resolve");
    let input = ruma_input(version, &h.room.store, &sets);
    let theirs = ruma_resolve(&input).expect("ruma resolves");
    let (ours, theirs) = (sorted_ours(&ours), sorted_ruma(&theirs));
    if ours == theirs {
        return Ok(());
    }
    let keys: BTreeSet<_> = ours.keys().chain(theirs.keys()).collect();
    let diff: Vec<_> = keys
        .into_iter()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .map(|k| (k, ours.get(k), theirs.get(k)))
        .collect();
    Err(TestCaseError::fail(format!(
        "v{version} seed {seed} users {users} steps {steps} tips {tips} {mode:?}: (key, ours, ruma) {diff:?}"
    )))
}

fn version() -> impl Strategy<Value = RoomVersion> {
    prop_oneof![
        Just(RoomVersion::V10),
        Just(RoomVersion::V11),
        Just(RoomVersion::V12)
    ]
}

/// Runs `cases` random histories; fails on any disagreement.
fn run(mode: Mode, cases: u32, max_steps: usize) {
    // A longer hunt: STATE_RES_DIFF_CASES=20000 cargo test --release ...
    let cases = std::env::var("STATE_RES_DIFF_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        version(),
        any::<u64>(),
        3usize..7,
        5usize..max_steps,
        2usize..5,
    );
    let result = runner.run(&strategy, |(version, seed, users, steps, tips)| {
        check(version, seed, users, steps, tips, mode)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Histories where every event passes in any order, so the outcome
/// depends on the orderings and set computations, not on auth rules.
#[test]
fn benign_histories_agree() {
    run(Mode::Benign, 600, 40);
}

/// Bans, kicks, power changes, join rule changes and conflicting
/// memberships by senders of random power.
#[test]
fn adversarial_histories_agree() {
    run(Mode::Adversarial, 1500, 50);
}
