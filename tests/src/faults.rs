//! Fault injection, on the embedded default and on moto: every message (S3 events included) is
//! handled `copies` times, each time by a fresh process (`statapp_e2e::faults::child_main`, run
//! by the test binary), and a seeded share of those processes is killed at a chosen side effect:
//! just before its k-th object write, delete or message send, or after its last one (work done,
//! acknowledgement lost). A killed process ends by `abort` (no destructor, no flush, no return
//! to the handler), as a Lambda whose sandbox dies. The parent receives and deletes (SQS's, or
//! in-process queues with SQS semantics on a manual clock), so a failed or killed delivery comes
//! back after the visibility timeout and a message that fails too often is dead-lettered.

use statapp_model::rng::Rng;
use statapp_pipeline::queue::{Clock, ManualClock, QueueOpError};
use statapp_pipeline::{Delivery, DirStore, JobQueue, Key, MemQueue, ObjectStore, StoreError};
use statapp_stages::dispatch::{self, Outputs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The queues in pipeline order, with the function that consumes each (the embedded ones).
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

/// A queue whose sends go through the fuse.
struct FusedQueue<'a>(&'a dyn JobQueue, &'a Fuse);

impl JobQueue for FusedQueue<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn send(&self, body: &str) -> Result<String, QueueOpError> {
        self.send_delayed(body, Duration::ZERO)
    }
    fn send_delayed(&self, body: &str, delay: Duration) -> Result<String, QueueOpError> {
        self.1.tick();
        self.0.send_delayed(body, delay)
    }
    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueOpError> {
        self.0.receive(max, visibility)
    }
    fn delete(&self, receipt: &str) -> Result<(), QueueOpError> {
        self.0.delete(receipt)
    }
    fn approximate_len(&self) -> Result<usize, QueueOpError> {
        self.0.approximate_len()
    }
}

/// What a child sends on the embedded default: one file per message under `<outbox>/<queue>/`,
/// written whole, which the parent moves into its queues after the child ends.
struct Outbox {
    dir: PathBuf,
    name: String,
}

static SENT: AtomicU64 = AtomicU64::new(0);

impl JobQueue for Outbox {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&self, body: &str) -> Result<String, QueueOpError> {
        self.send_delayed(body, Duration::ZERO)
    }
    fn send_delayed(&self, body: &str, delay: Duration) -> Result<String, QueueOpError> {
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
/// backend of `STATAPP_FAULT_BACKEND` (`dir:<bucket directory>` with the outbox
/// `STATAPP_FAULT_OUTBOX`, or `moto` with a function's environment), killed before side effect
/// `STATAPP_FAULT_KILL` (0: never); writes its count of side effects to `STATAPP_FAULT_REPORT`.
/// Panics on a handler error.
pub fn child_main() {
    let function = std::env::var("STATAPP_FAULT_FUNCTION").expect("function");
    let body = std::fs::read_to_string(env_path("STATAPP_FAULT_BODY")).expect("body");
    let kill: u64 = std::env::var("STATAPP_FAULT_KILL")
        .expect("kill")
        .parse()
        .expect("kill");
    let fuse = Fuse {
        effects: AtomicU64::new(0),
        kill_before: (kill > 0).then_some(kill),
    };
    let backend = std::env::var("STATAPP_FAULT_BACKEND").expect("backend");
    let result = if backend == "moto" {
        // a function's own configuration: STATAPP_BUCKET, AWS_ENDPOINT_URL, the queue URLs
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let s = runtime
            .block_on(statapp_lambda::Services::from_env())
            .unwrap();
        let queues = [&s.infer, &s.aggregate, &s.metrics, &s.merge].map(|q| q as &dyn JobQueue);
        handle(&function, &body, &s.store, queues, &fuse)
    } else {
        let root = backend
            .strip_prefix("dir:")
            .expect("dir:<path> or moto:<id>");
        let outbox = env_path("STATAPP_FAULT_OUTBOX");
        let mut bucket = DirStore::open(root, BUCKET_NAME).unwrap();
        // the bucket's own notifications: S3 sends those, a dying function cannot lose them
        for prefix in statapp_pipeline::Prefixes::from_env().notified() {
            let ingest = Outbox {
                dir: outbox.clone(),
                name: "ingest".into(),
            };
            bucket = bucket.notify(&prefix, Arc::new(ingest));
        }
        let q = |name: &str| Outbox {
            dir: outbox.clone(),
            name: name.into(),
        };
        let queues = [q("infer"), q("aggregate"), q("metrics"), q("merge")];
        let refs = [&queues[0], &queues[1], &queues[2], &queues[3]].map(|q| q as &dyn JobQueue);
        handle(&function, &body, &bucket, refs, &fuse)
    };
    let effects = fuse.finish();
    std::fs::write(env_path("STATAPP_FAULT_REPORT"), effects.to_string()).unwrap();
    if let Err(e) = result {
        panic!("{function}: {e}");
    }
}

/// One handler call with the store's and queues' side effects fused.
fn handle(
    function: &str,
    body: &str,
    store: &dyn ObjectStore,
    [infer, aggregate, metrics, merge]: [&dyn JobQueue; 4],
    fuse: &Fuse,
) -> Result<(), statapp_stages::StageError> {
    let store = Fused(store, fuse);
    let fused = [infer, aggregate, metrics, merge].map(|q| FusedQueue(q, fuse));
    let out = Outputs {
        infer: &fused[0],
        aggregate: &fused[1],
        metrics: &fused[2],
        merge: &fused[3],
    };
    match function {
        "preprocess" => dispatch::preprocess(body, &store, out),
        "infer" => {
            let settings = statapp_stages::infer::InferSettings::from_env().unwrap();
            dispatch::infer(body, &store, out, &burn::tensor::Device::flex(), &settings)
        }
        "aggregate" => dispatch::aggregate(body, &store, out),
        "metrics" => dispatch::metrics(body, &store, out),
        other => panic!("no function {other}"),
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
    /// Messages by the function that handled them.
    pub by_function: std::collections::BTreeMap<&'static str, usize>,
    pub invocations: usize,
    pub killed: usize,
    pub failed: usize,
    pub dead_letters: Vec<String>,
}

/// Receives of a message on moto before its dead-letter queue, and the visibility timeout there
/// (one message is received at a time and handled three times well within it).
pub const MOTO_MAX_RECEIVES: u32 = 5;
pub const MOTO_VISIBILITY: Duration = Duration::from_secs(60);

/// Where the parent takes messages from and how its children reach the same bucket and queues.
pub trait Transport {
    /// The queues in pipeline order, with the function of each.
    fn queues(&self) -> Vec<(&'static str, &dyn JobQueue)>;
    fn receive(&self, q: &dyn JobQueue) -> Vec<Delivery>;
    /// Sets what a child needs to open the backend.
    fn child_env(&self, cmd: &mut std::process::Command);
    /// After each child: moves what it sent where the parent receives it.
    fn after_child(&self) {}
    /// Nothing visible anywhere: `true` when every queue is empty, else waits for the next
    /// message (a redelivery after the visibility timeout, a delayed send) and returns `false`.
    fn drained(&self) -> bool;
    fn dead_letters(&self) -> Vec<String>;
    /// Scratch space of the parent.
    fn work(&self) -> &Path;
}

/// The embedded default: a bucket directory and in-process queues on a manual clock.
pub struct DirTransport {
    pub store: DirStore,
    clock: Arc<ManualClock>,
    queues: Vec<(&'static str, &'static str, Arc<MemQueue>)>,
    dead_letters: Arc<MemQueue>,
    work: tempfile::TempDir,
}

impl std::fmt::Debug for DirTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirTransport")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl DirTransport {
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
}

impl Transport for DirTransport {
    fn queues(&self) -> Vec<(&'static str, &dyn JobQueue)> {
        self.queues
            .iter()
            .map(|(_, f, q)| (*f, q.as_ref() as &dyn JobQueue))
            .collect()
    }

    fn receive(&self, q: &dyn JobQueue) -> Vec<Delivery> {
        q.receive(64, VISIBILITY).unwrap()
    }

    fn child_env(&self, cmd: &mut std::process::Command) {
        let root = self.store.root().display().to_string();
        cmd.env("STATAPP_FAULT_BACKEND", format!("dir:{root}"))
            .env("STATAPP_FAULT_OUTBOX", self.work.path().join("outbox"));
    }

    /// Moves what children sent into the queues, in the order they sent it.
    fn after_child(&self) {
        for (name, _, q) in &self.queues {
            let dir = self.work.path().join("outbox").join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files {
                if f.extension().is_some_and(|x| x == "json") {
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

    fn drained(&self) -> bool {
        let next = self.queues.iter().filter_map(|q| q.2.next_visible()).min();
        match next {
            Some(t) => {
                let wait = t.saturating_duration_since(self.clock.now());
                self.clock.advance(wait + Duration::from_millis(1));
                false
            }
            None => true,
        }
    }

    fn dead_letters(&self) -> Vec<String> {
        self.dead_letters.bodies()
    }

    fn work(&self) -> &Path {
        self.work.path()
    }
}

/// moto's S3 and SQS, provisioned as the templates do; children open the same harness.
pub struct MotoTransport {
    pub harness: crate::Harness,
    work: tempfile::TempDir,
}

impl std::fmt::Debug for MotoTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoTransport")
            .field("bucket", &self.harness.config.bucket)
            .finish_non_exhaustive()
    }
}

impl MotoTransport {
    pub fn new(name: &str) -> Self {
        Self {
            harness: crate::Harness::new(name, MOTO_VISIBILITY, MOTO_MAX_RECEIVES),
            work: tempfile::tempdir().unwrap(),
        }
    }
}

impl Transport for MotoTransport {
    fn queues(&self) -> Vec<(&'static str, &dyn JobQueue)> {
        let s = &self.harness.services;
        let queues: [&dyn JobQueue; 5] = [&s.ingest, &s.infer, &s.aggregate, &s.metrics, &s.merge];
        QUEUES
            .iter()
            .zip(queues)
            .map(|((_, f), q)| (*f, q))
            .collect()
    }

    /// One at a time: its three handlings stay well inside the visibility timeout.
    fn receive(&self, q: &dyn JobQueue) -> Vec<Delivery> {
        q.receive(1, MOTO_VISIBILITY).unwrap()
    }

    /// What the template gives a function (no provisioning: S3 would send a test event each time).
    fn child_env(&self, cmd: &mut std::process::Command) {
        let s = &self.harness.services;
        cmd.env("STATAPP_FAULT_BACKEND", "moto")
            .env("STATAPP_BUCKET", &self.harness.config.bucket)
            .env("AWS_ENDPOINT_URL", crate::endpoint());
        for (stage, q) in [
            ("INGEST", &s.ingest),
            ("INFER", &s.infer),
            ("AGGREGATE", &s.aggregate),
            ("METRICS", &s.metrics),
            ("MERGE", &s.merge),
        ] {
            cmd.env(format!("STATAPP_{stage}_QUEUE_URL"), q.url());
        }
    }

    fn drained(&self) -> bool {
        let waiting: usize = self
            .queues()
            .iter()
            .map(|(_, q)| q.approximate_len().unwrap())
            .sum();
        if waiting > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        waiting == 0
    }

    fn dead_letters(&self) -> Vec<String> {
        let mut out = Vec::new();
        for stage in ["ingest", "infer", "aggregate", "metrics", "merge"] {
            out.extend(self.harness.dead_letters(stage));
        }
        out
    }

    fn work(&self) -> &Path {
        self.work.path()
    }
}

/// One invocation in a fresh process: whether the handler succeeded, and its side effects.
fn invoke(
    t: &dyn Transport,
    child: &dyn Fn() -> std::process::Command,
    function: &str,
    body: &str,
    kill: u64,
) -> (bool, Option<u64>) {
    let body_file = t.work().join("body.json");
    let report = t.work().join("report");
    std::fs::write(&body_file, body).unwrap();
    let _ = std::fs::remove_file(&report);
    let mut cmd = child();
    t.child_env(&mut cmd);
    let status = cmd
        .env("STATAPP_FAULT_FUNCTION", function)
        .env("STATAPP_FAULT_BODY", &body_file)
        .env("STATAPP_FAULT_KILL", kill.to_string())
        .env("STATAPP_FAULT_REPORT", &report)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    t.after_child();
    let effects = std::fs::read_to_string(&report)
        .ok()
        .and_then(|s| s.parse().ok());
    (status.success(), effects)
}

/// Runs every queue until all are empty, under `plan`; `child` builds the command that runs
/// [`child_main`].
pub fn run(
    t: &dyn Transport,
    plan: &FaultPlan,
    child: &dyn Fn() -> std::process::Command,
) -> FaultStats {
    let mut rng = Rng::new(plan.seed);
    let mut stats = FaultStats::default();
    // the most side effects seen per function: where kill points are drawn from
    let mut most: std::collections::BTreeMap<&str, u64> = Default::default();
    loop {
        let mut progressed = false;
        for (function, q) in t.queues() {
            let mut batch = t.receive(q);
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
                *stats.by_function.entry(function).or_default() += 1;
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
                    let (success, effects) = invoke(t, child, function, &d.body, kill);
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
        if !progressed && t.drained() {
            break;
        }
    }
    stats.dead_letters = t.dead_letters();
    stats
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
