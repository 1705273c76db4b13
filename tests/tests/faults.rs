//! Issue 15's fault injection: every S3 event and queue message is handled three times, each
//! time by a fresh process, and 10 % of those processes are killed at a seeded side effect; the
//! final bucket must equal a clean run's byte for byte, with no message dead-lettered. On the
//! embedded default and on moto. `STATAPP_FAULT_SEED` replays another plan (the default is fixed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::Device;
use statapp_e2e::faults::{
    DirTransport, FaultPlan, FaultStats, MotoTransport, Transport, child_main, comparable_snapshot,
    run,
};
use statapp_e2e::{Harness, case_files, endpoint, models, upload_case, upload_model};
use statapp_pipeline::ObjectStore;
use statapp_stages::local::LocalPipeline;
use std::collections::BTreeMap;

/// The uploads of both runs: two tiny models of annotator 1 and one case (every message
/// handled three times multiplies what each handler sends: two cases and three models take
/// over 3,000 invocations).
fn upload(store: &dyn ObjectStore) {
    for m in &models()[..2] {
        upload_model(store, m);
    }
    upload_case(store, "case_a", &case_files(5));
}

#[test]
#[ignore = "child process of the fault-injection tests"]
fn fault_child() {
    child_main();
}

fn seed() -> u64 {
    std::env::var("STATAPP_FAULT_SEED").map_or(15, |s| s.parse().unwrap())
}

/// Runs `t` under faults and checks the run and its bucket against a clean run's.
fn check(
    t: &dyn Transport,
    faulty: &dyn ObjectStore,
    expected: &BTreeMap<String, Vec<u8>>,
) -> FaultStats {
    let seed = seed();
    let plan = FaultPlan {
        seed,
        copies: 3,
        kill_rate: 0.1,
    };
    let exe = std::env::current_exe().unwrap();
    let child = || {
        let mut c = std::process::Command::new(&exe);
        c.args(["--exact", "fault_child", "--ignored", "--nocapture"]);
        c
    };
    let stats = run(t, &plan, &child);
    eprintln!("fault injection, seed {seed}: {stats:?}");
    assert!(stats.dead_letters.is_empty(), "{:?}", stats.dead_letters);
    assert_eq!(stats.failed, 0, "a handler failed without a kill");
    assert!(stats.killed * 20 >= stats.invocations, "{stats:?}");
    assert!(stats.invocations >= 3 * stats.messages);
    let got = comparable_snapshot(faulty);
    let mut differ: Vec<&String> = expected
        .keys()
        .chain(got.keys())
        .filter(|k| expected.get(*k) != got.get(*k))
        .collect();
    differ.sort();
    differ.dedup();
    assert!(
        differ.is_empty(),
        "seed {seed}: objects differ from a clean run: {differ:?}"
    );
    stats
}

#[test]
fn triple_delivery_and_killed_invocations_leave_the_bucket_of_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let clean = LocalPipeline::open(&dir.path().join("clean")).unwrap();
    upload(&clean.store);
    let stats = clean
        .run_until_idle(&Device::flex(), &mut |_, _| {})
        .unwrap();
    assert_eq!(stats.failed, 0);
    let expected = comparable_snapshot(&clean.store);
    assert!(expected.contains_key("metrics/combined.csv"));

    let t = DirTransport::open(&dir.path().join("faulty"), 5);
    upload(&t.store);
    check(&t, &t.store, &expected);
}

#[test]
fn the_same_on_moto() {
    let _ = endpoint();
    let clean = Harness::new("faults-clean", std::time::Duration::from_secs(60), 5);
    upload(clean.store());
    assert_eq!(clean.drain(1).failed, 0);
    let expected = comparable_snapshot(clean.store());
    assert!(expected.contains_key("metrics/combined.csv"));

    let t = MotoTransport::new("faults");
    upload(t.harness.store());
    check(&t, t.harness.store(), &expected);
}
