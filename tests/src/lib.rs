//! Harness of the end-to-end tests: a fresh bucket and queue set per test on the S3/SQS server
//! named by `STATAPP_TEST_ENDPOINT` (moto's, started by `tools/test.sh`), provisioned as the
//! templates do, with the functions' handlers consuming the real messages through the same
//! event-source-mapping loop as `statapp run`; tiny trained models shared by the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::Device;
pub mod faults;
pub mod hostile;
pub mod race;

use statapp_aws::{Aws, AwsConfig, Provisioned, S3Store, provision};
use statapp_lambda::{Drained, Handler, Services, drain};
use statapp_model::train::{TrainSettings, train};
use statapp_nnunet::dataset::CaseSet;
use statapp_nnunet::prepare::{PrepareRequest, prepare_dataset};
use statapp_pipeline::{JobQueue, Key, ObjectStore};
use statapp_stages::dispatch;
use statapp_stages::infer::InferSettings;
use statapp_volume::{Volume, WriteOptions, encode_nifti};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The server's URL; the tests cannot run without one.
pub fn endpoint() -> String {
    std::env::var("STATAPP_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "STATAPP_TEST_ENDPOINT is not set: run the suite with tools/test.sh, which installs \
             and starts moto's server, or start one (moto_server -H 127.0.0.1 -p 5005) and set \
             STATAPP_TEST_ENDPOINT=http://127.0.0.1:5005 plus AWS_ACCESS_KEY_ID/SECRET=test"
        )
    })
}

/// One bucket with its queues.
#[derive(Debug)]
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub aws: Aws,
    pub config: AwsConfig,
    pub provisioned: Provisioned,
    pub services: Arc<Services>,
    pub visibility: Duration,
    /// The infer stage's settings (a test sets a small budget to make predictions fan out).
    pub infer: InferSettings,
}

impl Harness {
    /// A new bucket and queues named after `name` (unique per process and call).
    pub fn new(name: &str, visibility: Duration, max_receives: u32) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("e2e-{name}-{}-{n}", std::process::id());
        Self::open(&id, visibility, max_receives)
    }

    /// The bucket and queues named `id` (created when missing).
    pub fn open(id: &str, visibility: Duration, max_receives: u32) -> Self {
        let config = AwsConfig {
            bucket: id.to_string(),
            region: "us-east-1".into(),
            endpoint: Some(endpoint()),
            queue_prefix: id.to_string(),
            queue_urls: BTreeMap::new(),
            static_credentials: None,
            prefixes: statapp_pipeline::Prefixes::default(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let aws = runtime.block_on(Aws::connect(&config));
        let provisioned = provision(&aws, &config, visibility, max_receives).unwrap();
        let q = |s: &str| provisioned.queues[s].clone().with_wait(Duration::ZERO);
        let services = Arc::new(Services {
            store: S3Store::new(aws.clone(), id),
            ingest: q("ingest"),
            infer: q("infer"),
            aggregate: q("aggregate"),
            metrics: q("metrics"),
            merge: q("merge"),
        });
        Self {
            runtime,
            aws,
            config,
            provisioned,
            services,
            visibility,
            infer: InferSettings {
                gather_delay: Duration::from_secs(1),
                ..InferSettings::from_env().unwrap()
            },
        }
    }

    pub fn store(&self) -> &S3Store {
        &self.services.store
    }

    /// The four functions' handlers over these services, each message they send sent
    /// `duplicate` times.
    pub fn handlers(&self, duplicate: usize) -> [Handler; 4] {
        let s = self.services.clone();
        let (s1, s2, s3, s4) = (s.clone(), s.clone(), s.clone(), s);
        let device = Device::flex();
        let settings = self.infer;
        [
            Arc::new(move |b: &str| {
                let o = duplicating(&s1, duplicate);
                dispatch::preprocess(b, &s1.store, o.as_outputs())
            }),
            Arc::new(move |b: &str| {
                let o = duplicating(&s2, duplicate);
                dispatch::infer(b, &s2.store, o.as_outputs(), &device, &settings)
            }),
            Arc::new(move |b: &str| {
                let o = duplicating(&s3, duplicate);
                dispatch::aggregate(b, &s3.store, o.as_outputs())
            }),
            Arc::new(move |b: &str| {
                let o = duplicating(&s4, duplicate);
                dispatch::metrics(b, &s4.store, o.as_outputs())
            }),
        ]
    }

    /// Runs every queue to empty, as `statapp run --until-idle` does; every message a handler
    /// sends is sent `duplicate` times.
    pub fn drain(&self, duplicate: usize) -> Drained {
        let [pre, inf, agg, met] = self.handlers(duplicate);
        let mappings = self.services.mappings(pre, inf, agg, met);
        drain(
            self.runtime.handle(),
            &mappings,
            self.visibility,
            Some(Duration::from_secs(900)),
            false,
        )
        .unwrap()
    }

    /// Every object with its bytes.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let store = self.store();
        store
            .list("")
            .unwrap()
            .into_iter()
            .map(|k| (k.to_string(), store.get(&k).unwrap().unwrap()))
            .collect()
    }

    /// Messages waiting in a stage's dead-letter queue.
    pub fn dead_letters(&self, stage: &str) -> Vec<String> {
        let q = self.provisioned.dead_letters[stage]
            .clone()
            .with_wait(Duration::ZERO);
        let mut out = Vec::new();
        loop {
            let got = q.receive(10, Duration::from_secs(60)).unwrap();
            if got.is_empty() {
                return out;
            }
            out.extend(got.into_iter().map(|d| d.body));
        }
    }
}

/// A queue that sends every message `n` times: SQS's at-least-once delivery, made certain.
#[allow(missing_debug_implementations)]
struct Times<'a>(&'a dyn JobQueue, usize);

impl JobQueue for Times<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn send(&self, body: &str) -> Result<String, statapp_pipeline::queue::QueueOpError> {
        self.send_delayed(body, Duration::ZERO)
    }
    fn send_delayed(
        &self,
        body: &str,
        delay: Duration,
    ) -> Result<String, statapp_pipeline::queue::QueueOpError> {
        let mut id = String::new();
        for _ in 0..self.1 {
            id = self.0.send_delayed(body, delay)?;
        }
        Ok(id)
    }
    fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<statapp_pipeline::Delivery>, statapp_pipeline::queue::QueueOpError> {
        self.0.receive(max, visibility)
    }
    fn delete(&self, receipt: &str) -> Result<(), statapp_pipeline::queue::QueueOpError> {
        self.0.delete(receipt)
    }
    fn approximate_len(&self) -> Result<usize, statapp_pipeline::queue::QueueOpError> {
        self.0.approximate_len()
    }
}

/// The four output queues, each sending `n` times.
#[allow(missing_debug_implementations)]
pub struct DupOutputs<'a>([Times<'a>; 4]);

impl DupOutputs<'_> {
    pub fn as_outputs(&self) -> dispatch::Outputs<'_> {
        dispatch::Outputs {
            infer: &self.0[0],
            aggregate: &self.0[1],
            metrics: &self.0[2],
            merge: &self.0[3],
        }
    }
}

/// The services' four output queues, each sending `n` times.
pub fn duplicating(s: &Services, n: usize) -> DupOutputs<'_> {
    DupOutputs([
        Times(&s.infer, n),
        Times(&s.aggregate, n),
        Times(&s.metrics, n),
        Times(&s.merge, n),
    ])
}

pub fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

pub fn gz<T: statapp_volume::Element>(v: &Volume<T>) -> Vec<u8> {
    encode_nifti(v, &WriteOptions::default(), true)
}

/// A small phantom (image and three annotations) as the four upload bodies, by file name.
pub fn case_files(seed: u64) -> Vec<(String, Vec<u8>)> {
    let p = statapp_synth::generate(seed, 0, statapp_synth::Size::Small);
    let mut files = vec![("image.nii.gz".to_string(), gz(&p.ct))];
    for (k, a) in p.annotations.iter().enumerate() {
        files.push((format!("annotation_{}.nii.gz", k + 1), gz(a)));
    }
    files
}

/// Uploads a case through the SDK, as a researcher's client would.
pub fn upload_case(store: &dyn ObjectStore, case: &str, files: &[(String, Vec<u8>)]) {
    for (name, body) in files {
        store
            .put(&key(&format!("incoming/{case}/{name}")), body)
            .unwrap();
    }
}

/// Uploads a model folder, `model.json` last (its event registers the model).
pub fn upload_model(store: &dyn ObjectStore, dir: &Path) {
    let id = dir.file_name().unwrap().to_str().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort_by_key(|p| (p.file_name().unwrap() == "model.json", p.clone()));
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap();
        store
            .put(
                &key(&format!("models/{id}/{name}")),
                &std::fs::read(&f).unwrap(),
            )
            .unwrap();
    }
}

/// Three tiny models trained once per test process: `anno1` with seeds 1 and 2 and `anno2` with
/// seed 1, so that the case gets `ensemble_anno1` and `ensemble_all`.
pub fn models() -> &'static [PathBuf] {
    static MODELS: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    &MODELS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let raw = dir.path().join("raw");
            let mut ids = Vec::new();
            for i in 0..4 {
                let p = statapp_synth::generate(77, i, statapp_synth::Size::Small);
                statapp_synth::write_bucket_case(&raw, &p).unwrap();
                ids.push(p.case_id);
            }
            let splits = serde_json::json!({"train": ids, "validation": [], "test": []});
            std::fs::write(raw.join("splits.json"), splits.to_string()).unwrap();
            let device = Device::flex();
            let models = dir.path().join("models");
            let mut out = Vec::new();
            for (annotator, seed) in [(1u8, 1u64), (1, 2), (2, 1)] {
                let prepared = dir.path().join(format!("prepared{annotator}"));
                if !prepared.join("nnUNetPlans.json").exists() {
                    let req = PrepareRequest {
                        annotator: usize::from(annotator),
                        cases: CaseSet::Train,
                        cpu_patch: [16, 32, 32],
                        cpu_spacing_factor: 2.0,
                        dataset_name: statapp_synth::nnunet_dataset_name(usize::from(annotator)),
                    };
                    prepare_dataset(&raw, &prepared, &req, &mut |_, _, _| {}).unwrap();
                }
                let settings = TrainSettings {
                    configuration: "3d_cpu".into(),
                    annotator,
                    seed,
                    fold: "all".into(),
                    max_epochs: 1,
                    iterations: 2,
                    val_iterations: 1,
                    // scored by the pipeline itself; final validation is tested in shared/model
                    final_validation: false,
                    ..TrainSettings::default()
                };
                train(&prepared, &models, &settings, &device, &mut |_| {}).unwrap();
                out.push(models.join(settings.model_id()));
            }
            (dir, out)
        })
        .1
}

/// The committed nnU-Net v2 fixture (tools/nnunet_model_reference.py).
pub fn nnunet_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nnunet_model")
}

/// Uploads every file under `dir` to `<prefix>/<relative path>`, in name order.
pub fn upload_tree(store: &dyn ObjectStore, dir: &Path, prefix: &str) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    for f in files {
        let rel = f
            .strip_prefix(dir)
            .unwrap()
            .to_str()
            .unwrap()
            .replace('\\', "/");
        store
            .put(
                &key(&format!("{prefix}/{rel}")),
                &std::fs::read(&f).unwrap(),
            )
            .unwrap();
    }
}

/// A case from one of the nnU-Net fixture's held-out images, its three annotations drawn from
/// the phantom's organ intensities (liver ~60 HU, pancreas ~100, kidney ~150) with
/// annotator-specific cut-offs.
pub fn nnunet_fixture_case(case: &str) -> Vec<(String, Vec<u8>)> {
    let path = nnunet_fixture().join(format!("images/{case}_0000.nii.gz"));
    let image = statapp_volume::read_nifti(&path, &statapp_volume::ReadOptions::default())
        .unwrap()
        .into_f32();
    let mut files = vec![("image.nii.gz".to_string(), std::fs::read(&path).unwrap())];
    for (k, shift) in [(1, 0.0f32), (2, 5.0), (3, -5.0)] {
        let labels = image.data().mapv(|hu| match hu - shift {
            v if (35.0..80.0).contains(&v) => 3u8,
            v if (80.0..125.0).contains(&v) => 1,
            v if (125.0..200.0).contains(&v) => 2,
            _ => 0,
        });
        let v = Volume::new(labels, image.geometry().clone()).unwrap();
        files.push((format!("annotation_{k}.nii.gz"), gz(&v)));
    }
    files
}

/// The values of a `.npy` file of bytes (`|u1`, C order), as numpy's `np.save` writes it.
pub fn npy_u8(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(
        header.contains("'|u1'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    bytes[10 + len..].to_vec()
}

/// A label map stored in the bucket (labels 0..3).
pub fn labels_at(store: &dyn ObjectStore, k: &str) -> Volume<u8> {
    let body = store.get(&key(k)).unwrap().unwrap();
    statapp_volume::read_nifti_bytes(Path::new(k), &body, &statapp_volume::ReadOptions::default())
        .unwrap()
        .to_labels(3)
        .unwrap()
}
