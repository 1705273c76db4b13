//! Merges that race on a rewritten row, and merges that coalesce, on the directory bucket and on
//! moto's S3 (conditional writes on both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use statapp_e2e::race::{merges_coalesce_within_their_window, racing_merges_keep_the_newer_row};
use statapp_e2e::{Harness, endpoint};
use statapp_pipeline::DirStore;
use std::time::Duration;

fn dir_store() -> (tempfile::TempDir, DirStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path().join("bucket"), "statapp").unwrap();
    (dir, store)
}

#[test]
fn racing_merges_keep_the_newer_row_on_the_directory_bucket() {
    let (_dir, store) = dir_store();
    racing_merges_keep_the_newer_row(&store);
}

#[test]
fn racing_merges_keep_the_newer_row_on_s3() {
    let _ = endpoint();
    let h = Harness::new("race", Duration::from_secs(60), 3);
    racing_merges_keep_the_newer_row(h.store());
}

#[test]
fn merges_coalesce_on_the_directory_bucket() {
    let (_dir, store) = dir_store();
    merges_coalesce_within_their_window(&store);
}

#[test]
fn merges_coalesce_on_s3() {
    let _ = endpoint();
    let h = Harness::new("coalesce", Duration::from_secs(60), 3);
    merges_coalesce_within_their_window(h.store());
}
