//! Merge races and coalescing, the same on every store (the directory bucket and S3): a
//! store wrapper that stops a merge between reading a row and committing, and the scenarios.

use statapp_pipeline::jobs::{Job, MergeJob};
use statapp_pipeline::queue::ManualClock;
use statapp_pipeline::{JobQueue, Key, MemQueue, ObjectStore, StoreError};
use statapp_stages::score::{
    COMBINED, MergeSettings, Merged, PENDING, handle_merge, merge_now, put_row,
};
use std::sync::Arc;
use std::time::Duration;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn merge(store: &dyn ObjectStore) -> Merged {
    merge_now(store).unwrap()
}

/// A row of `metrics/combined.csv`'s shape whose every metric is `value`.
pub fn metric_row(case: &str, name: &str, value: &str) -> String {
    let header = statapp_metrics::csv_header();
    let mut fields = vec![case.to_string(), name.to_string()];
    fields.resize(header.len(), value.to_string());
    format!("{}\n{}\n", header.join(","), fields.join(","))
}

/// Wraps a store and holds the first reader of one key until released: a merge stopped between
/// reading a row and committing.
struct Paused<'a> {
    inner: &'a dyn ObjectStore,
    key: String,
    reached: std::sync::mpsc::SyncSender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    armed: std::sync::atomic::AtomicBool,
}

impl ObjectStore for Paused<'_> {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let body = self.inner.get(key)?;
        if key.as_str() == self.key && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.reached.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        Ok(body)
    }
    fn put(&self, key: &Key, body: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, body)
    }
    fn put_if_absent(&self, key: &Key, body: &[u8]) -> Result<bool, StoreError> {
        self.inner.put_if_absent(key, body)
    }
    fn get_versioned(&self, key: &Key) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        self.inner.get_versioned(key)
    }
    fn put_if_version(
        &self,
        key: &Key,
        body: &[u8],
        version: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.put_if_version(key, body, version)
    }
    fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        self.inner.exists(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn modified(&self, key: &Key) -> Result<Option<std::time::SystemTime>, StoreError> {
        self.inner.modified(key)
    }
}

/// Two merges race while a row is rewritten, in both commit orders: the slow merge read the old
/// row, the fast one the new; the combined CSV must end with the new row.
pub fn racing_merges_keep_the_newer_row(store: &dyn ObjectStore) {
    put_row(store, "c1", "m1", &metric_row("c1", "m1", "0.1")).unwrap();
    put_row(store, "c2", "m1", &metric_row("c2", "m1", "0.2")).unwrap();
    merge(store);
    // both orders of the race: the slow merge read the old row, then commits before or after
    for slow_commits_first in [false, true] {
        put_row(store, "c1", "m1", &metric_row("c1", "m1", "0.3")).unwrap();
        let (reached_tx, reached) = std::sync::mpsc::sync_channel(0);
        let (release, release_rx) = std::sync::mpsc::sync_channel(0);
        let paused = Paused {
            inner: store,
            key: "metrics/rows/c1/m1.csv".into(),
            reached: reached_tx,
            release: std::sync::Mutex::new(release_rx),
            armed: true.into(),
        };
        std::thread::scope(|s| {
            let slow = s.spawn(|| merge(&paused));
            reached.recv().unwrap();
            // the row is rewritten while the slow merge holds its old version
            put_row(store, "c1", "m1", &metric_row("c1", "m1", "0.4")).unwrap();
            if slow_commits_first {
                release.send(()).unwrap();
                slow.join().unwrap();
                merge(store);
            } else {
                merge(store);
                release.send(()).unwrap();
                slow.join().unwrap();
            }
        });
        let combined = String::from_utf8(store.get(&key(COMBINED)).unwrap().unwrap()).unwrap();
        let c1 = combined.lines().find(|l| l.starts_with("c1,")).unwrap();
        assert!(c1.ends_with(",0.4"), "the newer row was lost: {c1}");
        assert!(
            combined
                .lines()
                .any(|l| l.starts_with("c2,") && l.ends_with(",0.2"))
        );
        assert!(store.list(PENDING).unwrap().is_empty());
        // back to a fresh start for the other order
        put_row(store, "c1", "m1", &metric_row("c1", "m1", "0.1")).unwrap();
        merge(store);
    }
}

/// Merges within their window: one scheduled merge and a lease, one commit for many rows.
pub fn merges_coalesce_within_their_window(store: &dyn ObjectStore) {
    let clock = Arc::new(ManualClock::default());
    let q = MemQueue::new("merge", clock.clone());
    let settings = MergeSettings {
        window: Duration::from_secs(10),
    };
    let request = MergeJob::default();
    let now = std::time::SystemTime::now();
    // the first merge of a bucket builds the combined CSV at once
    put_row(store, "c1", "m1", &metric_row("c1", "m1", "1")).unwrap();
    let first = handle_merge(&request, store, &q, &settings, now).unwrap();
    assert_eq!(
        first,
        Merged::Committed {
            rows: 1,
            applied: 1
        }
    );
    for i in 2..=5 {
        let name = format!("m{i}");
        put_row(store, "c1", &name, &metric_row("c1", &name, "1")).unwrap();
        let r = handle_merge(&request, store, &q, &settings, now).unwrap();
        assert!(
            matches!(r, Merged::Deferred(w) if w > Duration::from_secs(9)),
            "{r:?}"
        );
    }
    // the first deferral scheduled one merge and left a lease; the others only read the lease
    assert_eq!(q.approximate_len().unwrap(), 1);
    assert!(store.exists(&key("metrics/merge-lease")).unwrap());
    assert_eq!(store.list(PENDING).unwrap().len(), 4);
    // a plain request after the window still leaves the work to the scheduled merge
    let later = now + Duration::from_secs(11);
    let r = handle_merge(&request, store, &q, &settings, later).unwrap();
    assert!(matches!(r, Merged::Deferred(_)), "{r:?}");
    clock.advance(Duration::from_secs(11));
    let scheduled = q.receive(10, Duration::from_secs(60)).unwrap();
    assert_eq!(scheduled.len(), 1);
    let Job::Merge(job) = Job::from_json(&scheduled[0].body).unwrap() else {
        panic!("not a merge: {}", scheduled[0].body);
    };
    assert!(job.due_ms.is_some());
    let r = handle_merge(&job, store, &q, &settings, later).unwrap();
    assert_eq!(
        r,
        Merged::Committed {
            rows: 5,
            applied: 4
        }
    );
    assert!(!store.exists(&key("metrics/merge-lease")).unwrap());
    assert_eq!(
        handle_merge(&request, store, &q, &settings, later).unwrap(),
        Merged::Nothing
    );
    // a lease whose merge never came (dead-lettered) stops holding requests after 15 minutes
    put_row(store, "c1", "m6", &metric_row("c1", "m6", "1")).unwrap();
    store.put(&key("metrics/merge-lease"), b"1").unwrap();
    let r = handle_merge(&request, store, &q, &settings, later).unwrap();
    assert_eq!(
        r,
        Merged::Committed {
            rows: 6,
            applied: 1
        }
    );
}
