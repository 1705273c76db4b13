//! Fault injection on the embedded default: every message (S3 events included) is handled
//! `copies` times, each time by a fresh process (`statapp_e2e::faults::child_main`, run by the
//! test binary), and a seeded share of those processes is killed at a chosen side effect:
//! just before its k-th object write, delete or message send, or after its last one (work done,
//! acknowledgement lost). A killed process ends by `abort` (no destructor, no flush, no return
//! to the handler), as a Lambda whose sandbox dies. The parent owns the queues (SQS semantics on
//! a manual clock), so a failed or killed delivery comes back after the visibility timeout and a
//! message that fails `max_receives` times is dead-lettered.

use statapp_model::rng::Rng;
use statapp_pipeline::queue::{Clock, ManualClock, QueueOpError};
use statapp_pipeline::{Delivery, DirStore, JobQueue, Key, MemQueue, ObjectStore, StoreError};
use statapp_stages::dispatch::{self, Outputs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The queues in pipeline order, with the function that consumes each.
pub const QUEUES: [(&str, &str); 5] = [
    ("ingest", "preprocess"),
    ("infer", "infer"),
    ("aggregate", "aggregate"),
    ("metrics", "metrics"),
    ("merge", "aggregate"),
];
const VISIBILITY: Duration = Duration::from_secs(900);
const BUCKET_NAME: &str = "statapp-local";

/// Counts one invocation's side effects and kills the process at the planned one.
#[derive(Debug)]
pub struct Fuse {
    effects: AtomicU64,
    kill_before: Option<u64>,
}

impl Fuse {
    fn tick(&self) {
        let n = self.effects.fetch_add(1, Ordering::SeqCst) + 1;
        if self.kill_before == Some(n) {
            std::process::abort();
        }
    }

    /// After the handler returned: a planned kill not reached yet happens now.
    fn finish(&self) -> u64 {
        if self.kill_before.is_some() {
            std::process::abort();
        }
        self.effects.load(Ordering::SeqCst)
    }
}

/// A store whose writes and deletes go through the fuse.
struct Fused<'a>(&'a dyn ObjectStore, &'a Fuse);

impl ObjectStore for Fused<'_> {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn put(&self, key: &Key, body: &[u8]) -> Result<(), StoreError> {
        self.1.tick();
        self.0.put(key, body)
    }
    fn put_if_absent(&self, key: &Key, body: &[u8]) -> Result<bool, StoreError> {
        self.1.tick();
        self.0.put_if_absent(key, body)
    }
    fn get_versioned(&self, key: &Key) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        self.0.get_versioned(key)
    }
    fn put_if_version(
        &self,
        key: &Key,
        body: &[u8],
        version: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.1.tick();
        self.0.put_if_version(key, body, version)
    }
    fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        self.0.exists(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.1.tick();
        self.0.delete(key)
    }
    fn delete_many(&self, keys: &[Key]) -> Result<usize, StoreError> {
        self.1.tick();
        self.0.delete_many(keys)
    }
    fn modified(&self, key: &Key) -> Result<Option<std::time::SystemTime>, StoreError> {
        self.0.modified(key)
    }
}

/// What a child sends: one file per message under `<outbox>/<queue>/`, written whole, which
/// the parent moves into its queues after the child ends. `fuse` is `None` for the bucket's own
/// notifications (S3 sends those; a dying function cannot lose them).
struct Outbox<'a> {
    dir: PathBuf,
    name: String,
    fuse: Option<&'a Fuse>,
}

static SENT: AtomicU64 = AtomicU64::new(0);

impl JobQueue for Outbox<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&self, body: &str) -> Result<String, QueueOpError> {
        self.send_delayed(body, Duration::ZERO)
    }
    fn send_delayed(&self, body: &str, delay: Duration) -> Result<String, QueueOpError> {
        if let Some(f) = self.fuse {
            f.tick();
        }
        let n = SENT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{:06}-{n:06}", std::process::id());
        let err = |e: std::io::Error| QueueOpError::Backend {
            queue: self.name.clone(),
            detail: e.to_string(),
        };
        let dir = self.dir.join(&self.name);
        std::fs::create_dir_all(&dir).map_err(err)?;
        let msg = serde_json::json!({"delay_ms": delay.as_millis() as u64, "body": body});
        let tmp = dir.join(format!(".{id}.partial"));
        std::fs::write(&tmp, msg.to_string()).map_err(err)?;
        std::fs::rename(&tmp, dir.join(format!("{id}.json"))).map_err(err)?;
        Ok(id)
    }
    fn receive(&self, _: usize, _: Duration) -> Result<Vec<Delivery>, QueueOpError> {
        Err(QueueOpError::Backend {
            queue: self.name.clone(),
            detail: "an outbox is write-only".into(),
        })
    }
    fn delete(&self, _: &str) -> Result<(), QueueOpError> {
        self.receive(0, Duration::ZERO).map(|_| ())
    }
    fn approximate_len(&self) -> Result<usize, QueueOpError> {
        Ok(0)
    }
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set")))
}

/// The child: handles the message in `STATAPP_FAULT_BODY` with `STATAPP_FAULT_FUNCTION` on the
/// bucket `STATAPP_FAULT_BUCKET`, killed before side effect `STATAPP_FAULT_KILL` (0: never);
/// writes its count of side effects to `STATAPP_FAULT_REPORT`. Panics on a handler error.
pub fn child_main() {
    let function = std::env::var("STATAPP_FAULT_FUNCTION").expect("function");
    let outbox = env_path("STATAPP_FAULT_OUTBOX");
    let body = std::fs::read_to_string(env_path("STATAPP_FAULT_BODY")).expect("body");
    let kill: u64 = std::env::var("STATAPP_FAULT_KILL")
        .expect("kill")
        .parse()
        .expect("kill");
    let fuse = Fuse {
        effects: AtomicU64::new(0),
        kill_before: (kill > 0).then_some(kill),
    };
    let mut bucket = DirStore::open(env_path("STATAPP_FAULT_BUCKET"), BUCKET_NAME).unwrap();
    for prefix in statapp_pipeline::Prefixes::from_env().notified() {
        let ingest = Outbox {
            dir: outbox.clone(),
            name: "ingest".into(),
            fuse: None,
        };
        bucket = bucket.notify(&prefix, Arc::new(ingest));
    }
    let store = Fused(&bucket, &fuse);
    let q = |name: &str| Outbox {
        dir: outbox.clone(),
        name: name.into(),
        fuse: Some(&fuse),
    };
    let (infer, aggregate, metrics, merge) = (q("infer"), q("aggregate"), q("metrics"), q("merge"));
    let out = Outputs {
        infer: &infer,
        aggregate: &aggregate,
        metrics: &metrics,
        merge: &merge,
    };
    let result = match function.as_str() {
        "preprocess" => dispatch::preprocess(&body, &store, out),
        "infer" => {
            let settings = statapp_stages::infer::InferSettings::from_env().unwrap();
            dispatch::infer(&body, &store, out, &burn::tensor::Device::flex(), &settings)
        }
        "aggregate" => dispatch::aggregate(&body, &store, out),
        "metrics" => dispatch::metrics(&body, &store, out),
        other => panic!("no function {other}"),
    };
    let effects = fuse.finish();
    std::fs::write(env_path("STATAPP_FAULT_REPORT"), effects.to_string()).unwrap();
    if let Err(e) = result {
        panic!("{function}: {e}");
    }
}

/// How faults are injected.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    pub seed: u64,
    /// Deliveries of every message.
    pub copies: usize,
    /// Share of invocations killed.
    pub kill_rate: f64,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FaultStats {
    pub messages: usize,
    pub invocations: usize,
    pub killed: usize,
    pub failed: usize,
    pub dead_letters: Vec<String>,
}

/// The parent: a bucket directory, its queues on a manual clock, and the children it runs.
pub struct FaultRun {
    pub store: DirStore,
    clock: Arc<ManualClock>,
    queues: Vec<(&'static str, &'static str, Arc<MemQueue>)>,
    dead_letters: Arc<MemQueue>,
    work: tempfile::TempDir,
}

impl std::fmt::Debug for FaultRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultRun")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl FaultRun {
    /// A bucket at `root` whose uploads notify the parent's ingest queue.
    pub fn open(root: &Path, max_receives: u32) -> Self {
        let clock = Arc::new(ManualClock::default());
        let c: Arc<dyn Clock> = clock.clone();
        let dead_letters = Arc::new(MemQueue::new("dead-letters", c.clone()));
        let queues: Vec<_> = QUEUES
            .iter()
            .map(|(q, f)| {
                let queue = MemQueue::new(q, c.clone())
                    .with_dead_letter(dead_letters.clone(), max_receives);
                (*q, *f, Arc::new(queue))
            })
            .collect();
        let mut store = DirStore::open(root, BUCKET_NAME).unwrap();
        for prefix in statapp_pipeline::Prefixes::from_env().notified() {
            store = store.notify(&prefix, queues[0].2.clone());
        }
        Self {
            store,
            clock,
            queues,
            dead_letters,
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// Moves what children sent into the queues, in the order they sent it.
    fn collect_outbox(&self) {
        for (name, _, q) in &self.queues {
            let dir = self.work.path().join("outbox").join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files {
                let is_message = f.extension().is_some_and(|x| x == "json");
                if is_message {
                    let msg: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
                    let delay = Duration::from_millis(msg["delay_ms"].as_u64().unwrap());
                    q.send_delayed(msg["body"].as_str().unwrap(), delay)
                        .unwrap();
                }
                // a half-written message of a killed child was never sent
                std::fs::remove_file(&f).unwrap();
            }
        }
    }

    /// One invocation in a fresh process; `true` when the handler succeeded.
    fn invoke(
        &self,
        child: &dyn Fn() -> std::process::Command,
        function: &str,
        body: &str,
        kill: u64,
    ) -> (bool, Option<u64>) {
        let body_file = self.work.path().join("body.json");
        let report = self.work.path().join("report");
        std::fs::write(&body_file, body).unwrap();
        let _ = std::fs::remove_file(&report);
        let status = child()
            .env("STATAPP_FAULT_FUNCTION", function)
            .env("STATAPP_FAULT_BUCKET", self.store.root())
            .env("STATAPP_FAULT_OUTBOX", self.work.path().join("outbox"))
            .env("STATAPP_FAULT_BODY", &body_file)
            .env("STATAPP_FAULT_KILL", kill.to_string())
            .env("STATAPP_FAULT_REPORT", &report)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        self.collect_outbox();
        let effects = std::fs::read_to_string(&report)
            .ok()
            .and_then(|s| s.parse().ok());
        (status.success(), effects)
    }

    /// Runs every queue until all are empty, under `plan`; `child` builds the command that runs
    /// [`child_main`].
    pub fn run(&self, plan: &FaultPlan, child: &dyn Fn() -> std::process::Command) -> FaultStats {
        let mut rng = Rng::new(plan.seed);
        let mut stats = FaultStats::default();
        // the most side effects seen per function: where kill points are drawn from
        let mut most: std::collections::BTreeMap<&str, u64> = Default::default();
        loop {
            let mut progressed = false;
            for (_, function, q) in &self.queues {
                let mut batch = q.receive(64, VISIBILITY).unwrap();
                if batch.is_empty() {
                    continue;
                }
                progressed = true;
                // SQS promises no order
                for i in (1..batch.len()).rev() {
                    batch.swap(i, rng.below(i + 1));
                }
                for d in batch {
                    stats.messages += 1;
                    let mut ok = false;
                    for _ in 0..plan.copies {
                        let kill = if rng.chance(plan.kill_rate) {
                            let n = most.get(function).copied().unwrap_or(4);
                            stats.killed += 1;
                            1 + rng.below(n as usize + 1) as u64
                        } else {
                            0
                        };
                        stats.invocations += 1;
                        let (success, effects) = self.invoke(child, function, &d.body, kill);
                        if let Some(e) = effects {
                            let m = most.entry(function).or_insert(e);
                            *m = (*m).max(e);
                        }
                        if kill == 0 && !success {
                            stats.failed += 1;
                        }
                        ok |= success;
                    }
                    if ok {
                        q.delete(&d.receipt).unwrap();
                    }
                }
                break;
            }
            if !progressed {
                let next = self.queues.iter().filter_map(|q| q.2.next_visible()).min();
                match next {
                    Some(t) => self.clock.advance(
                        t.saturating_duration_since(self.clock.now()) + Duration::from_millis(1),
                    ),
                    None => break,
                }
            }
        }
        stats.dead_letters = self.dead_letters.bodies();
        stats
    }
}

/// Every object of a bucket with its bytes, with what is measured rather than computed (the
/// times and memory peaks of `run.json`) blanked.
pub fn comparable_snapshot(store: &dyn ObjectStore) -> std::collections::BTreeMap<String, Vec<u8>> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .filter(|k| !k.as_str().starts_with('.'))
        .map(|k| {
            let body = store.get(&k).unwrap().unwrap();
            let body = if k.as_str().ends_with("/run.json") {
                blank_measurements(&body)
            } else {
                body
            };
            (k.to_string(), body)
        })
        .collect()
}

fn blank_measurements(body: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    fn blank(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, x) in map.iter_mut() {
                    let measured = k.contains("seconds")
                        || k.contains("rss")
                        || k == "usd"
                        || k == "gb_seconds";
                    if measured {
                        *x = serde_json::Value::Null;
                    } else {
                        blank(x);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(blank),
            _ => {}
        }
    }
    blank(&mut v);
    v.to_string().into_bytes()
}
