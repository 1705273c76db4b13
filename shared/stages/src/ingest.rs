//! Ingest: the handler of object-created events under `incoming/`. It waits until a case has its
//! image and three annotations, validates them together (readable NIfTI within the decode budget,
//! finite and non-constant intensities, integer labels 0..3, no empty annotation, one voxel grid),
//! then writes the canonical copy under
//! `cases/<case>/` and one `InferJob` per registered model. A bad upload gets
//! `errors/<case>.json` (a [`Rejection`]: kind, file, field, message), written once: the verdict
//! is permanent, so the message is not retried; a corrected upload clears the error file.

use crate::StageError;
use crate::digests::{CaseDigests, ModelVersion};
use crate::preprocessed;
use statapp_pipeline::events::parse_object_created;
use statapp_pipeline::jobs::{InferJob, Job};
use statapp_pipeline::names::{CaseRoles, RoleSet, role_of, valid_id};
use statapp_pipeline::{CasePath, JobQueue, Key, ObjectStore, Prefixes, check_model_id};
use statapp_volume::{ReadOptions, VolumeError, read_nifti_bytes};
use std::io::Write;
use std::path::Path;

/// Written under `cases/<case>/` once the case is copied and its jobs are queued.
pub const INGESTED: &str = "ingested.json";

pub use statapp_pipeline::layout::ROLES;

/// What one event record led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Not an upload this stage handles (another prefix, a layout's `dataset.json`).
    Ignored { key: String },
    /// A model file uploaded under one of the original's prefixes, copied to `models/`.
    Copied { from: String, to: String },
    /// The case still lacks these roles.
    Waiting { case: String, missing: Vec<String> },
    /// The case is complete and valid; `infer_jobs` were queued.
    Ready { case: String, infer_jobs: usize },
    /// The case is complete, and the event of `by` claimed its ingest first (one fan-out).
    Claimed { case: String, by: String },
    /// A model appeared (`models/<id>/model.json`, written last): every case is scheduled.
    ModelRegistered { model: String, infer_jobs: usize },
    /// An nnU-Net trained-model folder under `models/<id>/` is complete and was described by a
    /// `model.json` (whose own event registers it).
    NnunetModelDescribed { model: String },
    /// An nnU-Net trained-model folder still lacks these files.
    ModelWaiting { model: String, missing: Vec<String> },
    /// The upload is bad: `errors/<case>.json` says why. Permanent, so the message is done (a
    /// retry would decode the same bytes to the same verdict); a corrected upload is a new event.
    Rejected { case: String, kind: String },
}

/// How ingest reads uploads: the decode budget, where uploads are, and which cases are inferred.
#[derive(Debug, Clone, Default)]
pub struct IngestSettings {
    pub read: ReadOptions,
    pub prefixes: Prefixes,
    /// The `splits.json` roles whose cases get infer jobs (default: test).
    pub infer_sets: RoleSet,
}

impl IngestSettings {
    /// [`read_options_from_env`], [`Prefixes::from_env`] and `STATAPP_INFER_SETS`.
    pub fn from_env() -> Result<Self, StageError> {
        Ok(Self {
            read: read_options_from_env()?,
            prefixes: Prefixes::from_env(),
            infer_sets: crate::env_var("STATAPP_INFER_SETS")?.unwrap_or_default(),
        })
    }
}

/// Handles one message body: an S3 event, possibly inside an SQS record, or a test event.
pub fn handle_event(
    body: &str,
    store: &dyn ObjectStore,
    infer: &dyn JobQueue,
    settings: &IngestSettings,
) -> Result<Vec<Ingested>, StageError> {
    parse_object_created(body)?
        .iter()
        .map(|rec| handle_object(&rec.key, store, infer, settings))
        .collect()
}

/// Refuses a model id that could escape its prefix or collide with an ensemble (its
/// `errors/models/<id>.json`, or `errors/invalid_model_id.json` when the id is no key segment),
/// before anything of the model is written.
pub(crate) fn refuse_model_id(
    store: &dyn ObjectStore,
    id: &str,
    file: impl std::fmt::Display,
) -> Result<Option<Ingested>, StageError> {
    let Err(e) = check_model_id(id) else {
        return Ok(None);
    };
    let entry = if valid_id(id) {
        format!("models/{id}")
    } else {
        "invalid_model_id".to_string()
    };
    let why = Rejection::new(e.kind(), file, e.to_string());
    reject(store, &entry, why).map(Some)
}

fn error_key(case: &str) -> Result<Key, StageError> {
    Ok(Key::new(format!("errors/{case}.json"))?)
}

/// Why an upload is rejected, as `errors/<case>.json` records it: a stable `kind`, the `file` at
/// fault (its key, or the case's or model's prefix), the header `field` where there is one, and
/// a `message` a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub kind: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl Rejection {
    pub fn new(kind: &str, file: impl std::fmt::Display, message: String) -> Self {
        Self {
            kind: kind.to_string(),
            file: file.to_string(),
            field: None,
            message,
        }
    }

    /// A volume error of the file `file` (the key it was read under).
    pub fn volume(file: &Key, e: &VolumeError) -> Self {
        Self {
            kind: e.kind().to_string(),
            file: e
                .file()
                .map_or_else(|| file.to_string(), |p| p.display().to_string()),
            field: e.field().map(str::to_string),
            message: e.to_string(),
        }
    }
}

/// Records a bad upload in `errors/<case>.json` (deterministic bytes), once.
pub(crate) fn reject(
    store: &dyn ObjectStore,
    case: &str,
    why: Rejection,
) -> Result<Ingested, StageError> {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        case: &'a str,
        #[serde(flatten)]
        why: &'a Rejection,
    }
    let text = serde_json::to_string_pretty(&Doc { case, why: &why })
        .map_err(StageError::json(format!("errors/{case}.json")))?
        + "\n";
    store.put(&error_key(case)?, text.as_bytes())?;
    tracing::warn!(case, kind = %why.kind, file = %why.file, message = %why.message, "upload rejected");
    Ok(Ingested::Rejected {
        case: case.to_string(),
        kind: why.kind,
    })
}

/// Handles one uploaded object.
pub fn handle_object(
    key: &Key,
    store: &dyn ObjectStore,
    infer: &dyn JobQueue,
    settings: &IngestSettings,
) -> Result<Ingested, StageError> {
    let segs: Vec<&str> = key.segments().collect();
    if segs.first() == Some(&"models") && segs.len() == 3 && segs[2] == "model.json" {
        if let Some(refused) = refuse_model_id(store, segs[1], key)? {
            return Ok(refused);
        }
        return schedule_model(segs[1], store, infer, &settings.infer_sets);
    }
    if segs.first() == Some(&"models") && segs.len() >= 4 && segs[2].contains("__") {
        return crate::nnunet_upload::describe(segs[1], segs[2], store);
    }
    if let Some((model, canonical)) = settings.prefixes.model_alias(key) {
        return copy_model_file(key, &model, &canonical, store);
    }
    match settings.prefixes.case_path(key) {
        None | Some(CasePath::Ignored) => Ok(Ingested::Ignored {
            key: key.to_string(),
        }),
        Some(CasePath::Unexpected(expected)) => {
            let case = case_of_unexpected(key);
            let why = Rejection::new(
                "UnexpectedFile",
                key,
                format!("{key}: unexpected file; {expected}"),
            );
            reject(store, &case, why)
        }
        Some(CasePath::File { case, group, .. }) if !valid_id(&case) => {
            let why = Rejection::new(
                "InvalidCaseId",
                key,
                format!("{key}: case ids are letters, digits, `_`, `-` and `.`"),
            );
            reject(store, "invalid_case_id", why)
                .inspect(|_| tracing::warn!(group, "invalid case id"))
        }
        Some(CasePath::File { case, group, .. }) => {
            ingest_case(&case, &group, key, store, infer, settings)
        }
    }
}

/// The case an unexpected file is reported under: the folder it is in, when that is a valid id.
fn case_of_unexpected(key: &Key) -> String {
    let segs: Vec<&str> = key.segments().collect();
    match segs.len() {
        n if n >= 3 && valid_id(segs[n - 2]) => segs[n - 2].to_string(),
        _ => "invalid_case_id".to_string(),
    }
}

/// A file of an nnU-Net model uploaded where the original puts models: copied to its canonical
/// place under `models/`, whose event registers the model. An unchanged copy is not rewritten.
fn copy_model_file(
    key: &Key,
    model: &str,
    canonical: &Key,
    store: &dyn ObjectStore,
) -> Result<Ingested, StageError> {
    if let Some(refused) = refuse_model_id(store, model, key)? {
        return Ok(refused);
    }
    let Some(body) = store.get(key)? else {
        return Ok(Ingested::Ignored {
            key: key.to_string(),
        });
    };
    if store.get(canonical)?.as_deref() != Some(body.as_slice()) {
        store.put(canonical, &body)?;
    }
    Ok(Ingested::Copied {
        from: key.to_string(),
        to: canonical.to_string(),
    })
}

/// The files of `case` found under `group`, by role (`None`: not uploaded yet).
fn case_files(
    store: &dyn ObjectStore,
    prefixes: &Prefixes,
    case: &str,
    group: &str,
) -> Result<Vec<Option<Key>>, StageError> {
    let mut files: Vec<Option<Key>> = vec![None; ROLES.len()];
    for k in store.list(group)? {
        if let Some(CasePath::File { case: c, role, .. }) = prefixes.case_path(&k)
            && c == case
            && let Some(i) = ROLES.iter().position(|r| *r == role)
        {
            files[i].get_or_insert(k);
        }
    }
    Ok(files)
}

/// A file of `case` arrived: once all four are there, validate, copy and queue the case.
fn ingest_case(
    case: &str,
    group: &str,
    trigger: &Key,
    store: &dyn ObjectStore,
    infer: &dyn JobQueue,
    settings: &IngestSettings,
) -> Result<Ingested, StageError> {
    let files = case_files(store, &settings.prefixes, case, group)?;
    let missing: Vec<String> = ROLES
        .iter()
        .zip(&files)
        .filter(|(_, f)| f.is_none())
        .map(|(r, _)| r.to_string())
        .collect();
    if !missing.is_empty() {
        return Ok(Ingested::Waiting {
            case: case.to_string(),
            missing,
        });
    }
    let keys: Vec<Key> = files.into_iter().flatten().collect();
    let mut bodies = Vec::with_capacity(keys.len());
    for k in &keys {
        match store.get(k)? {
            Some(b) => bodies.push(b),
            // deleted since the listing: a later event will complete the case
            None => {
                return Ok(Ingested::Waiting {
                    case: case.to_string(),
                    missing: vec![k.to_string()],
                });
            }
        }
    }
    let mut canonical = Vec::with_capacity(ROLES.len());
    for ((role, k), body) in ROLES.iter().zip(&keys).zip(&bodies) {
        let bytes = if k.as_str().ends_with(".gz") {
            body.clone()
        } else {
            gzip(body)?
        };
        canonical.push((Key::new(format!("cases/{case}/{role}.nii.gz"))?, bytes));
    }
    // the same upload seen again (another file's event, a redelivery): it was validated and
    // ingested already, so neither decoding it again nor anything else is needed
    let digests = CaseDigests::of(
        &canonical[0].1,
        [&canonical[1].1, &canonical[2].1, &canonical[3].1],
    );
    let marker = Key::new(format!("cases/{case}/{INGESTED}"))?;
    let record = digests.encode(case)?;
    let done = || -> Result<bool, StageError> {
        Ok(store.get(&marker)?.as_deref() == Some(record.as_slice()))
    };
    let ready = |infer_jobs| Ingested::Ready {
        case: case.to_string(),
        infer_jobs,
    };
    if done()? {
        return Ok(ready(0));
    }
    let claim = Key::new(format!("cases/{case}/claims/{}.json", digests.inputs))?;
    if let Some(by) = claimed_by_another(store, &claim, trigger)? {
        return Ok(Ingested::Claimed {
            case: case.to_string(),
            by,
        });
    }
    // the claimant before us may have finished (marker, then claim deleted) just now
    if done()? {
        store.delete(&claim)?;
        return Ok(ready(0));
    }
    if let Err(why) = validate(&keys, &bodies, &settings.read) {
        let verdict = reject(store, case, why)?;
        store.delete(&claim)?;
        return Ok(verdict);
    }
    drop(bodies);
    for (k, bytes) in &canonical {
        store.put(k, bytes)?;
    }
    // what every later stage compares its inputs with
    digests.write_current(store, case)?;
    // a full-size CT's files are hundreds of MB: not held while preprocessing
    drop(canonical);
    store.delete(&error_key(case)?)?;
    let role = role_of(CaseRoles::read(store)?.as_ref(), case)?;
    let models = if settings.infer_sets.contains(role) {
        registered_models(store)?
    } else {
        tracing::info!(
            case,
            role = role.name(),
            "not inferred: not in STATAPP_INFER_SETS"
        );
        Vec::new()
    };
    for (model, plan) in preprocess_once(store, case, &models)? {
        let job = Job::Infer(InferJob::new(case, &model, plan));
        infer.send(&job.to_json())?;
    }
    // written last: a crash before it makes a redelivery do everything again
    store.put(&marker, &record)?;
    store.delete(&claim)?;
    tracing::info!(case, models = models.len(), "case ready");
    Ok(Ingested::Ready {
        case: case.to_string(),
        infer_jobs: models.len(),
    })
}

/// One fan-out per case: of the events that find the same complete inputs at once, the one
/// whose key creates the claim (`cases/<case>/claims/<inputs>.json`) first ingests them, and a
/// redelivery of that event (its invocation died) finds its own claim and goes on. The others
/// are done: the claimant's message stays queued until the case is ingested, then the claim is
/// deleted. Returns the claimant when it is another event.
fn claimed_by_another(
    store: &dyn ObjectStore,
    claim: &Key,
    trigger: &Key,
) -> Result<Option<String>, StageError> {
    let mine = Claim {
        key: trigger.to_string(),
    };
    let bytes = serde_json::to_vec(&mine).map_err(StageError::json(claim))?;
    if store.put_if_absent(claim, &bytes)? {
        return Ok(None);
    }
    let Some(held) = store.get(claim)? else {
        // the claimant finished since: claim again (the marker check after it says done)
        return Ok((!store.put_if_absent(claim, &bytes)?)
            .then(|| "an event that claimed it just now".to_string()));
    };
    let held: Claim = serde_json::from_slice(&held).map_err(StageError::json(claim))?;
    Ok((held.key != mine.key).then_some(held.key))
}

/// Who claimed a case's inputs: the key whose event did.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    key: String,
}

/// A new model predicts every case already ingested whose role is inferred.
fn schedule_model(
    model: &str,
    store: &dyn ObjectStore,
    infer: &dyn JobQueue,
    sets: &RoleSet,
) -> Result<Ingested, StageError> {
    // a re-registration (a retrained model) gets a new version: its predictions are redone
    let version = ModelVersion::register(store, model)?;
    tracing::info!(model, version = %version.digest, "model version");
    let roles = CaseRoles::read(store)?;
    let mut cases = Vec::new();
    for k in store.list("cases/")? {
        let s: Vec<&str> = k.segments().collect();
        if s.len() == 3 && s[2] == "image.nii.gz" && sets.contains(role_of(roles.as_ref(), s[1])?) {
            cases.push(s[1].to_string());
        }
    }
    // the model's plan may be new: its infer jobs preprocess the cases they need
    let plan = match preprocessed::model_plan(store, model) {
        Ok(p) => Some(p.digest),
        Err(e) => {
            tracing::warn!(model, error = %e, "model plan unreadable; its infer jobs will say why");
            None
        }
    };
    for case in &cases {
        let job = Job::Infer(InferJob::new(case, model, plan.clone()));
        infer.send(&job.to_json())?;
    }
    tracing::info!(model, cases = cases.len(), "model registered");
    Ok(Ingested::ModelRegistered {
        model: model.to_string(),
        infer_jobs: cases.len(),
    })
}

/// Preprocesses the case once per distinct plan of `models` (`preprocessed/<plan>/<case>/`) and
/// pairs each model with its plan digest. A model whose plan cannot be read gets no digest: its
/// infer job reports the problem, the other models go on.
fn preprocess_once(
    store: &dyn ObjectStore,
    case: &str,
    models: &[String],
) -> Result<Vec<(String, Option<String>)>, StageError> {
    let mut done: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for model in models {
        let plan = match preprocessed::model_plan(store, model) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(case, model, error = %e, "model plan unreadable");
                out.push((model.clone(), None));
                continue;
            }
        };
        if !done.contains(&plan.digest) {
            preprocessed::ensure(store, case, &plan)?;
            done.push(plan.digest.clone());
        }
        out.push((model.clone(), Some(plan.digest)));
    }
    Ok(out)
}

/// The ingest queue's message that asks for [`sweep_incomplete`] (sent by a schedule in the
/// templates, and by `statapp serve` once idle).
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct SweepRequest {
    /// Seconds since a case's last upload after which its missing files are reported.
    pub incomplete_after_s: u64,
}

/// Cases under `incoming/` still missing files `after` their last upload get an
/// `IncompleteCase` error naming the missing roles (once: a case with an `errors/` entry is
/// skipped). Uploading the missing files later ingests the case and clears the error.
pub fn sweep_incomplete(
    store: &dyn ObjectStore,
    prefixes: &Prefixes,
    now: std::time::SystemTime,
    after: std::time::Duration,
) -> Result<Vec<Ingested>, StageError> {
    // (case, group) -> its files and their roles
    type Found = Vec<(Key, &'static str)>;
    let mut cases: std::collections::BTreeMap<(String, String), Found> = Default::default();
    for prefix in &prefixes.cases {
        for k in store.list(prefix)? {
            if let Some(CasePath::File { case, role, group }) = prefixes.case_path(&k)
                && valid_id(&case)
            {
                cases.entry((case, group)).or_default().push((k, role));
            }
        }
    }
    let mut out = Vec::new();
    for ((case, group), found) in cases {
        let roles: Vec<&str> = found.iter().map(|(_, r)| *r).collect();
        let missing: Vec<&str> = ROLES
            .iter()
            .copied()
            .filter(|r| !roles.contains(r))
            .collect();
        let settled = store.exists(&Key::new(format!("cases/{case}/{INGESTED}"))?)?
            || store.exists(&error_key(&case)?)?;
        if missing.is_empty() || settled {
            continue;
        }
        // a file deleted since the listing adds nothing; a time in the future (clock skew)
        // counts as an upload just now
        let mut last = std::time::UNIX_EPOCH;
        for (k, _) in &found {
            last = last.max(store.modified(k)?.unwrap_or(last));
        }
        let idle = now
            .duration_since(last)
            .unwrap_or(std::time::Duration::ZERO);
        if idle >= after {
            let message = format!(
                "{group} has had no upload of case {case} for {} s and it still lacks {}: upload them and the case goes on",
                idle.as_secs(),
                missing.join(", ")
            );
            let why = Rejection::new("IncompleteCase", &group, message);
            out.push(reject(store, &case, why)?);
        }
    }
    Ok(out)
}

/// Deterministic gzip of an uncompressed `.nii` upload.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, StageError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

/// Model ids with a `models/<id>/model.json` whose id is accepted ([`check_model_id`]; a
/// refused one has its `errors/` entry and is no member of any ensemble).
pub fn registered_models(store: &dyn ObjectStore) -> Result<Vec<String>, StageError> {
    Ok(store
        .list("models/")?
        .iter()
        .filter_map(|k| {
            let s: Vec<&str> = k.segments().collect();
            (s.len() == 3 && s[2] == "model.json" && check_model_id(s[1]).is_ok())
                .then(|| s[1].to_string())
        })
        .collect())
}

/// The checks of a complete case; the reason names the file. An empty annotation is rejected
/// (DESIGN.md §3): every CURVAS case shows all three organs, so an annotation with no organ is a
/// failed export, and its Dice and Hausdorff would be undefined rather than informative.
fn validate(keys: &[Key], bodies: &[Vec<u8>], opts: &ReadOptions) -> Result<(), Rejection> {
    let name = |k: &Key| Path::new(k.as_str()).to_path_buf();
    let image = read_nifti_bytes(&name(&keys[0]), &bodies[0], opts)
        .map_err(|e| Rejection::volume(&keys[0], &e))?;
    if let Some((lo, hi)) = image.value_range().filter(|(lo, hi)| lo == hi) {
        return Err(Rejection::new(
            "ConstantImage",
            &keys[0],
            format!(
                "{}: every voxel is {lo} (from {lo} to {hi}): not a CT",
                keys[0]
            ),
        ));
    }
    for (k, body) in keys.iter().zip(bodies).skip(1) {
        let fail = |e: VolumeError| Rejection::volume(k, &e);
        let ann = read_nifti_bytes(&name(k), body, opts).map_err(fail)?;
        let labels = ann.to_labels(3).map_err(fail)?;
        drop(ann);
        image
            .geometry
            .ensure_same_grid(&name(&keys[0]), labels.geometry(), &name(k))
            .map_err(fail)?;
        if labels.data().iter().all(|v| *v == 0) {
            return Err(Rejection::new(
                "EmptyAnnotation",
                k,
                format!("{k}: empty annotation (no organ labelled)"),
            ));
        }
    }
    Ok(())
}

/// The read limits of this process: `STATAPP_DECODE_BUDGET_MB` when set, else a third of the
/// Lambda function's memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), else the library default.
pub fn read_options_from_env() -> Result<ReadOptions, StageError> {
    let mib = crate::env_var::<u64>;
    Ok(match mib("STATAPP_DECODE_BUDGET_MB")? {
        Some(budget) => ReadOptions {
            max_bytes: budget << 20,
            ..ReadOptions::default()
        },
        None => match mib("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")? {
            Some(memory) => ReadOptions::for_memory_mib(memory),
            None => ReadOptions::default(),
        },
    })
}
