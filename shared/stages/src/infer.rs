//! Infer: one case with one model as nnU-Net predicts it (sliding window, mirroring over the
//! model's allowed axes unless switched off, export: logits resampled to the image grid, softmax),
//! written as f32 probability maps, `prediction.json`, `run.json` and labels under
//! `predictions/<model>/<case>/`, then a `MetricsJob` for it and, once every registered model has
//! predicted the case, an `EnsembleJob`. A complete prediction is not computed again.
//!
//! The network reads the case preprocessed once for the model's plan (`preprocessed`). When the
//! estimated compute exceeds the time budget, the job fans out: one `InferJob` per part (a range
//! of tiles; each writes its exact integer sums to `partials/`), and a `GatherJob` that adds the
//! parts in index order, exports and goes on as above. Integer sums make the result bit-identical
//! to one process; a duplicated part rewrites the same bytes; a gather that finds parts missing
//! re-queues itself with a delay and, after a while, re-sends the missing parts.

use crate::StageError;
use crate::digests::{CODE_VERSION, ModelVersion, PREDICTION_INPUTS, PredictionInputs};
use crate::dispatch::Outputs;
use crate::ingest::registered_models;
use crate::memory::{peak_rss_bytes, reset_peak};
use crate::predictions;
use crate::preprocessed::{self, ModelPlan, PreprocessedCase, get, read_rows};
use burn::tensor::Device;
use ndarray::{Array4, s};
use serde::{Deserialize, Serialize};
use statapp_model::checkpoint::load_weights;
use statapp_model::export::RowExport;
use statapp_model::infer::export_logits;
use statapp_model::outputs::{PredictionRecord, encode_prediction};
use statapp_model::predict::{PredictOptions, SlidingWindow, predict_partial};
use statapp_model::unet::PlainConvUNet;
use statapp_nnunet::cost::{
    LAMBDA_USD_PER_GB_S, LAMBDA_USD_PER_REQUEST, Workload, split_bounded, tile_flops,
};
use statapp_nnunet::model_dir::Mirroring;
use statapp_nnunet::partial::Partial;
use statapp_pipeline::jobs::{EnsembleJob, GatherJob, InferJob, Job, MetricsJob, Part};
use statapp_pipeline::{Key, ObjectStore};
use statapp_volume::read_nifti_geometry_bytes;
use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

/// How the infer function runs, from its environment (`STATAPP_*`).
#[derive(Debug, Clone, Copy)]
pub struct InferSettings {
    /// `STATAPP_MIRRORING`: `model` (default), `on`, `off`.
    pub mirroring: Mirroring,
    /// `STATAPP_INFER_BUDGET_S`: estimated seconds one job may compute before the prediction
    /// fans out (default 600, well inside Lambda's 900).
    pub budget_s: f64,
    /// `STATAPP_INFER_GFLOPS`: sustained GFLOP/s of one function, for the estimate.
    pub gflops: f64,
    /// `STATAPP_GATHER_DELAY_S`: how long a gather that found parts missing waits (default 30).
    pub gather_delay: Duration,
    /// `STATAPP_GATHER_RESEND`: every this many waits, missing parts are sent again (default 20).
    pub resend_every: u32,
    /// `STATAPP_GATHER_ATTEMPTS`: waits before a gather fails (default 200).
    pub max_attempts: u32,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (MB), for GB-seconds; 10240 where it is not set.
    pub memory_mb: f64,
    /// `STATAPP_GATHER_ROWS`: rows of the padded grid the gather sums at a time (default 32);
    /// parts store their sums by these row blocks.
    pub gather_rows: usize,
    /// `STATAPP_PART_SUMS_MB`: the most memory one part's sums may take (default 2048): a
    /// prediction splits into more parts when a part's tiles cover more of the grid, so that a
    /// job stays within its function's memory whatever the time estimate says.
    pub part_sums_mb: f64,
    /// `STATAPP_INFER_CALIBRATE`: time the first tile batch before splitting (default true;
    /// see `Setup::seconds_per_tile`).
    pub calibrate: bool,
}

/// GFLOP/s assumed for one function: this machine's two cores sustain 42-67 on the U-Net
/// (26.1 s and 16.3 s for one 1,099-GFLOP view of the CURVAS 3d_fullres tile, `statapp bench
/// tile`); a 10,240 MB Lambda has 6 vCPUs. An underestimate only makes more, shorter parts.
pub const DEFAULT_GFLOPS: f64 = 40.0;

impl Default for InferSettings {
    fn default() -> Self {
        Self {
            mirroring: Mirroring::Model,
            budget_s: 600.0,
            gflops: DEFAULT_GFLOPS,
            gather_delay: Duration::from_secs(30),
            resend_every: 20,
            max_attempts: 200,
            memory_mb: 10240.0,
            gather_rows: 32,
            part_sums_mb: 2048.0,
            calibrate: true,
        }
    }
}

fn env<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, StageError>
where
    T::Err: std::fmt::Display,
{
    Ok(crate::env_var(name)?.unwrap_or(default))
}

impl InferSettings {
    pub fn from_env() -> Result<Self, StageError> {
        let d = Self::default();
        Ok(Self {
            mirroring: env("STATAPP_MIRRORING", d.mirroring)?,
            budget_s: env("STATAPP_INFER_BUDGET_S", d.budget_s)?,
            gflops: env("STATAPP_INFER_GFLOPS", d.gflops)?,
            gather_delay: Duration::from_secs_f64(env(
                "STATAPP_GATHER_DELAY_S",
                d.gather_delay.as_secs_f64(),
            )?),
            resend_every: env("STATAPP_GATHER_RESEND", d.resend_every)?.max(1),
            max_attempts: env("STATAPP_GATHER_ATTEMPTS", d.max_attempts)?,
            memory_mb: env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", d.memory_mb)?,
            gather_rows: env("STATAPP_GATHER_ROWS", d.gather_rows)?.max(1),
            part_sums_mb: env("STATAPP_PART_SUMS_MB", d.part_sums_mb)?,
            calibrate: env("STATAPP_INFER_CALIBRATE", d.calibrate)?,
        })
    }
}

thread_local! {
    /// Networks of recent jobs (a warm function predicts many cases with one model), keyed by
    /// model id and version (the digest of its files, recorded by every (re-)registration).
    /// The checkpoint's scratch copy lives as long as the entry: burn reads weights lazily.
    static NETS: RefCell<Vec<CachedNet>> = const { RefCell::new(Vec::new()) };
}
const CACHED_NETS: usize = 2;

struct CachedNet {
    model: String,
    /// [`ModelVersion::digest`]: a retrained model under the same id is another entry.
    version: String,
    net: PlainConvUNet,
    _scratch: tempfile::TempDir,
}

fn network(
    store: &dyn ObjectStore,
    plan: &ModelPlan,
    version: &str,
    device: &Device,
) -> Result<PlainConvUNet, StageError> {
    let model = &plan.model;
    let hit = NETS.with_borrow(|nets| {
        nets.iter()
            .find(|n| n.model == *model && n.version == version)
            .map(|n| n.net.clone())
    });
    if let Some(net) = hit {
        return Ok(net);
    }
    let checkpoint = plan.info.prediction_checkpoint().to_string();
    // keep the checkpoint's file name: its extension says which format it is
    let name = Path::new(&checkpoint)
        .file_name()
        .ok_or_else(|| StageError::Malformed {
            key: format!("models/{model}/model.json"),
            detail: format!("checkpoint {checkpoint:?} names no file"),
        })?;
    let scratch = tempfile::tempdir()?;
    let local = scratch.path().join(name);
    std::fs::write(&local, get(store, &format!("models/{model}/{checkpoint}"))?)?;
    let net = load_weights(&plan.info.network, &local, device).map_err(StageError::model(model))?;
    NETS.with_borrow_mut(|nets| {
        nets.retain(|n| n.model != *model);
        if nets.len() >= CACHED_NETS {
            nets.remove(0);
        }
        nets.push(CachedNet {
            model: model.clone(),
            version: version.to_string(),
            net: net.clone(),
            _scratch: scratch,
        });
    });
    Ok(net)
}

/// Everything a part or the gather needs about one (case, model) prediction.
struct Setup {
    plan: ModelPlan,
    pre: PreprocessedCase,
    /// What the prediction is computed from: names its `partials/` and is its `inputs.json`.
    inputs: PredictionInputs,
    sw: SlidingWindow,
    opts: PredictOptions,
    gather_rows: usize,
}

fn setup(
    store: &dyn ObjectStore,
    case: &str,
    model: &str,
    settings: &InferSettings,
) -> Result<Setup, StageError> {
    let plan = preprocessed::model_plan(store, model)?;
    let pre = preprocessed::ensure(store, case, &plan)?;
    let inputs = PredictionInputs {
        image: pre.image_sha256.clone(),
        model: ModelVersion::current(store, model)?.digest,
        code: CODE_VERSION.to_string(),
    };
    let patch = plan.configuration()?.patch_size;
    let opts = PredictOptions::default().mirror(&plan.info.mirror_axes(settings.mirroring));
    let sw = SlidingWindow::new(pre.shape, patch, opts.step);
    Ok(Setup {
        plan,
        pre,
        inputs,
        sw,
        opts,
        gather_rows: settings.gather_rows,
    })
}

impl Setup {
    /// The prediction as the cost model sees it (the same estimate as `statapp plan-inference`).
    fn workload(&self) -> Workload {
        Workload {
            shape: self.sw.image_shape,
            patch: self.sw.patch,
            step: self.opts.step,
            views: 1 << self.opts.mirrored().len(),
            flops_per_view: tile_flops(&self.plan.info.network, self.sw.patch),
        }
    }

    /// Seconds per tile for the split: the FLOP estimate, or the measured time of the first
    /// tile batch where that is longer. Narrow networks run far below the GFLOP/s figure
    /// (memory-bound layers: a 1/8-width CURVAS network took 7x its estimate), so a prediction
    /// whose estimate reaches an eighth of the budget times one batch first; below that, even a
    /// 12x underestimate stays within Lambda's 900 s at the default budget.
    fn seconds_per_tile(
        &self,
        store: &dyn ObjectStore,
        net: &PlainConvUNet,
        device: &Device,
        settings: &InferSettings,
    ) -> Result<f64, StageError> {
        let estimate = self.workload().seconds_per_tile(settings.gflops);
        let tiles = self.sw.tiles.len();
        if !settings.calibrate || estimate * tiles as f64 <= settings.budget_s / 8.0 || tiles == 0 {
            return Ok(estimate);
        }
        let batch = self.opts.tile_batch.clamp(1, tiles);
        let first = Part {
            index: 0,
            count: 1,
            start: 0,
            end: batch,
        };
        let started = Instant::now();
        self.predict_part(store, net, &first, device)?;
        let measured = started.elapsed().as_secs_f64() / batch as f64;
        tracing::info!(estimate, measured, "seconds per tile");
        Ok(estimate.max(measured))
    }

    /// Parts within the time budget at `seconds_per_tile` and `part_sums_mb` of sums each.
    fn parts(&self, seconds_per_tile: f64, settings: &InferSettings) -> Vec<Part> {
        let ranges = split_bounded(
            &self.sw.tiles,
            self.sw.patch,
            self.plan.info.network.num_classes + 1,
            (seconds_per_tile, settings.budget_s),
            self.opts.tile_batch,
            settings.part_sums_mb * 1024.0 * 1024.0,
        );
        let count = ranges.len();
        ranges
            .into_iter()
            .enumerate()
            .map(|(index, (start, end))| Part {
                index,
                count,
                start,
                end,
            })
            .collect()
    }

    fn partial_key(&self, case: &str, part: &Part, name: &str) -> Result<Key, StageError> {
        Ok(Key::new(format!(
            "partials/{}/{case}/{}/{}-{:05}/{name}",
            self.plan.model,
            self.inputs.short(),
            part.count,
            part.index
        ))?)
    }

    /// The gather's row blocks (`gather_rows` rows of the padded grid from the image's first
    /// row) that the tiles of `part` reach into, each with its rows.
    fn blocks(&self, part: &Part) -> Vec<(usize, [usize; 2])> {
        let rows = self.gather_rows;
        let (origin, shape) = self.sw.tile_box(part.start..part.end);
        let a = self.sw.pad[0].0;
        let end = a + self.sw.image_shape[0];
        (0..end.saturating_sub(a).div_ceil(rows))
            .map(|b| (b, [a + b * rows, (a + (b + 1) * rows).min(end)]))
            .filter(|(_, [z0, z1])| origin[0] < *z1 && origin[0] + shape[0] > *z0)
            .collect()
    }

    /// The exact sums of the part's tiles, from the image rows under them only.
    fn predict_part(
        &self,
        store: &dyn ObjectStore,
        net: &PlainConvUNet,
        part: &Part,
        device: &Device,
    ) -> Result<Partial, StageError> {
        let range = part.start..part.end;
        let (origin, shape) = self.sw.tile_box(range.clone());
        let pad = self.sw.pad[0].0;
        let z0 = origin[0].saturating_sub(pad);
        let rows = read_rows(
            store,
            &self.pre,
            z0,
            (origin[0] + shape[0]).saturating_sub(pad),
        )?;
        let boxed = self.sw.pad_box(rows.view(), z0, origin, shape);
        predict_partial(net, (&boxed, origin), &self.sw, range, self.opts, device)
            .map_err(StageError::model(&self.plan.model))
    }
}

/// What one part cost, as written beside its sums and collected in `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRun {
    pub index: usize,
    pub tiles: [usize; 2],
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
}

impl PartRun {
    /// The part's cost so far: seconds since `started`, this job's peak memory.
    fn measured(part: &Part, started: Instant) -> Self {
        Self {
            index: part.index,
            tiles: [part.start, part.end],
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_bytes: peak_rss_bytes(),
        }
    }
}

/// Queues part `part` of the (case, model) prediction.
fn send_part(
    out: Outputs,
    case: &str,
    model: &str,
    plan: &str,
    part: Part,
) -> Result<(), StageError> {
    let mut job = InferJob::new(case, model, Some(plan.to_string()));
    job.part = Some(part);
    out.infer.send(&Job::Infer(job).to_json())?;
    Ok(())
}

pub fn handle_infer(
    job: &InferJob,
    store: &dyn ObjectStore,
    out: Outputs,
    device: &Device,
    settings: &InferSettings,
) -> Result<(), StageError> {
    let (case, model) = (&job.case, &job.model);
    if predictions::current(store, model, case)? {
        return follow_up(store, case, model, true, out);
    }
    reset_peak();
    let started = Instant::now();
    let su = setup(store, case, model, settings)?;
    if let Some(plan) = &job.plan
        && *plan != su.plan.digest
    {
        tracing::warn!(case, model, job_plan = %plan, plan = %su.plan.digest, "the model's plan changed since the job was sent; using the current one");
    }
    if let Some(part) = &job.part {
        return run_part(store, &su, case, part, device, started);
    }
    let net = network(store, &su.plan, &su.inputs.model, device)?;
    let parts = su.parts(
        su.seconds_per_tile(store, &net, device, settings)?,
        settings,
    );
    if parts.len() > 1 {
        for p in &parts {
            send_part(out, case, model, &su.plan.digest, *p)?;
        }
        let gather = GatherJob {
            case: case.clone(),
            model: model.clone(),
            plan: su.plan.digest.clone(),
            parts,
            attempt: 0,
        };
        out.infer.send(&Job::Gather(gather).to_json())?;
        tracing::info!(
            case,
            model,
            tiles = su.sw.tiles.len(),
            "prediction fanned out"
        );
        return Ok(());
    }
    let part = parts[0];
    let sums = su.predict_part(store, &net, &part, device)?;
    let run = PartRun::measured(&part, started);
    let mut load = |_: &Part, _| Ok(std::borrow::Cow::Borrowed(&sums));
    gather_export(store, &su, case, &parts, &mut load, vec![run], settings)?;
    follow_up(store, case, model, false, out)
}

fn run_part(
    store: &dyn ObjectStore,
    su: &Setup,
    case: &str,
    part: &Part,
    device: &Device,
    started: Instant,
) -> Result<(), StageError> {
    let done_key = su.partial_key(case, part, PART_DONE)?;
    if store.exists(&done_key)? {
        return Ok(());
    }
    let net = network(store, &su.plan, &su.inputs.model, device)?;
    let sums = su.predict_part(store, &net, part, device)?;
    let run = PartRun::measured(part, started);
    // the sums by the gather's row blocks, so the gather reads each block's sums once
    let (origin, shape) = (sums.origin, sums.shape());
    for (b, [z0, z1]) in su.blocks(part) {
        let (lo, hi) = (z0.max(origin[0]), z1.min(origin[0] + shape[0]));
        let mut chunk = Partial::new(
            sums.sum.dim().0,
            [lo, origin[1], origin[2]],
            [hi - lo, shape[1], shape[2]],
        );
        sums.add_into(&mut chunk);
        store.put(
            &su.partial_key(case, part, &block_name(b))?,
            &chunk.encode(),
        )?;
    }
    // the run record last: its presence means the part is done
    let json = serde_json::to_vec(&run).map_err(StageError::json(&done_key))?;
    store.put(&done_key, &json)?;
    tracing::info!(case, model = %su.plan.model, part = part.index, of = part.count, "part written");
    Ok(())
}

/// A part's run record, written after its sums.
const PART_DONE: &str = "run.json";

fn block_name(block: usize) -> String {
    format!("rows_{block:05}.sums")
}

/// The sums of a part within one row block (the whole partial will do: only its overlap is added).
type Loader<'a> = dyn FnMut(&Part, usize) -> Result<std::borrow::Cow<'a, Partial>, StageError> + 'a;

/// Adds the parts in order, a block of `gather_rows` padded rows at a time (only the parts
/// whose tiles reach into the block are loaded), hands the weighted mean logits of each block's
/// image rows to `rows`.
fn sum_parts(
    su: &Setup,
    parts: &[Part],
    load: &mut Loader<'_>,
    rows: &mut dyn FnMut(Array4<f32>) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let classes = su.plan.info.network.num_classes;
    let [pz, py, px] = su.sw.padded_shape;
    let [z, y, x] = su.sw.image_shape;
    let [a, b, c] = su.sw.pad.map(|p| p.0);
    let blocks: Vec<Vec<(usize, [usize; 2])>> = parts.iter().map(|p| su.blocks(p)).collect();
    for (k, z0) in (a..a + z).step_by(su.gather_rows).enumerate() {
        let z1 = (z0 + su.gather_rows).min(a + z).min(pz);
        let mut block = Partial::new(classes, [z0, 0, 0], [z1 - z0, py, px]);
        for (p, bl) in parts.iter().zip(&blocks) {
            if bl.iter().any(|(i, _)| *i == k) {
                load(p, k)?.add_into(&mut block);
            }
        }
        rows(
            block
                .finish()
                .slice(s![.., .., b..b + y, c..c + x])
                .to_owned(),
        )?;
    }
    Ok(())
}

/// Sums the parts, exports the prediction on the image's grid (row block by row block unless
/// the plan transposes or resamples rows in a way that needs more than two rows at once, then
/// whole) and writes its files, `run.json` before the
/// segmentation that completes it.
fn gather_export(
    store: &dyn ObjectStore,
    su: &Setup,
    case: &str,
    parts: &[Part],
    load: &mut Loader<'_>,
    runs: Vec<PartRun>,
    settings: &InferSettings,
) -> Result<(), StageError> {
    let started = Instant::now();
    let config = su.plan.configuration()?;
    let info = &su.plan.info;
    let image_key = format!("cases/{case}/image.nii.gz");
    // the header is enough: the image's voxels are on the network's grid in `preprocessed/`
    let geometry = read_nifti_geometry_bytes(Path::new(&image_key), &get(store, &image_key)?)?;
    let record = PredictionRecord::new(
        info,
        info.prediction_checkpoint(),
        &su.plan.plans_bytes,
        &su.opts,
    );
    let props = &su.pre.properties;
    let mut files = if RowExport::supported(&su.plan.plans, config, props, su.pre.shape) {
        let (acc, rows) = (su.opts.accumulation, su.pre.shape[0]);
        let fail = || StageError::model(&su.plan.model);
        let mut ex = RowExport::new(info, config, props, &geometry, acc, rows).map_err(fail())?;
        sum_parts(su, parts, load, &mut |l| ex.push(l.view()).map_err(fail()))?;
        ex.finish(&record).map_err(fail())?
    } else {
        let mut blocks = Vec::new();
        sum_parts(su, parts, load, &mut |l| {
            blocks.push(l);
            Ok(())
        })?;
        let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
        let logits =
            ndarray::concatenate(ndarray::Axis(1), &views).map_err(|e| StageError::Malformed {
                key: format!("the parts of case {case}, model {}", su.plan.model),
                detail: e.to_string(),
            })?;
        drop(blocks);
        let pred = export_logits(&logits, &su.plan.plans, config, props, su.opts.accumulation)
            .map_err(StageError::model(&su.plan.model))?;
        encode_prediction(info, pred, &geometry, &record)
            .map_err(StageError::model(&su.plan.model))?
    };
    let run = RunRecord::new(su, runs, started, settings);
    let json = serde_json::to_vec_pretty(&run).map_err(StageError::json(format!(
        "predictions/{}/{case}/run.json",
        su.plan.model
    )))?;
    files.insert(files.len() - 1, ("run.json".to_string(), json));
    // last: a prediction is current once its record matches, so one rewritten over an older
    // version and cut short is never taken for the new one
    files.push((PREDICTION_INPUTS.to_string(), su.inputs.encode()?));
    let prefix = format!("predictions/{}", su.plan.model);
    for (file, bytes) in files {
        store.put(&predictions::key(&prefix, case, &file)?, &bytes)?;
    }
    tracing::info!(case, model = %su.plan.model, parts = run.parts.len(), "prediction written");
    Ok(())
}

/// `run.json`: what a prediction cost (times and peaks are measurements; dollars follow the
/// Lambda arm64 price table of `statapp_nnunet::cost`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub tiles: usize,
    pub views_per_tile: usize,
    pub plan: String,
    pub parts: Vec<PartRun>,
    pub gather_seconds: f64,
    pub gather_peak_rss_bytes: Option<u64>,
    pub function_memory_mb: f64,
    pub gb_seconds: f64,
    pub usd: f64,
    pub price_usd_per_gb_s: f64,
    pub price_usd_per_request: f64,
}

impl RunRecord {
    fn new(
        su: &Setup,
        parts: Vec<PartRun>,
        gather_started: Instant,
        settings: &InferSettings,
    ) -> Self {
        let gather_seconds = gather_started.elapsed().as_secs_f64();
        let seconds: f64 = parts.iter().map(|p| p.seconds).sum::<f64>() + gather_seconds;
        let gb_seconds = seconds * settings.memory_mb / 1024.0;
        let requests = if parts.len() > 1 { parts.len() + 2 } else { 1 };
        Self {
            tiles: su.sw.tiles.len(),
            views_per_tile: 1 << su.opts.mirrored().len(),
            plan: su.plan.digest.clone(),
            parts,
            gather_seconds,
            gather_peak_rss_bytes: peak_rss_bytes(),
            function_memory_mb: settings.memory_mb,
            gb_seconds,
            usd: gb_seconds * LAMBDA_USD_PER_GB_S + requests as f64 * LAMBDA_USD_PER_REQUEST,
            price_usd_per_gb_s: LAMBDA_USD_PER_GB_S,
            price_usd_per_request: LAMBDA_USD_PER_REQUEST,
        }
    }
}

pub fn handle_gather(
    job: &GatherJob,
    store: &dyn ObjectStore,
    out: Outputs,
    settings: &InferSettings,
) -> Result<(), StageError> {
    let (case, model) = (&job.case, &job.model);
    if predictions::current(store, model, case)? {
        return follow_up(store, case, model, true, out);
    }
    reset_peak();
    let su = setup(store, case, model, settings)?;
    let mut missing = Vec::new();
    for p in &job.parts {
        if !store.exists(&su.partial_key(case, p, PART_DONE)?)? {
            missing.push(*p);
        }
    }
    if !missing.is_empty() {
        return wait_for_parts(job, &missing, out, settings);
    }
    let mut runs = Vec::new();
    for p in &job.parts {
        let bytes = get(store, su.partial_key(case, p, PART_DONE)?.as_str())?;
        let key = su.partial_key(case, p, PART_DONE)?;
        runs.push(serde_json::from_slice::<PartRun>(&bytes).map_err(StageError::json(key))?);
    }
    let mut load = |p: &Part, block: usize| {
        let key = su.partial_key(case, p, &block_name(block))?;
        Partial::decode(&get(store, key.as_str())?)
            .map(std::borrow::Cow::Owned)
            .map_err(|source| StageError::Partial {
                key: key.to_string(),
                source,
            })
    };
    gather_export(store, &su, case, &job.parts, &mut load, runs, settings)?;
    // the parts are this function's own scratch: gone once the prediction is whole
    for p in &job.parts {
        for (b, _) in su.blocks(p) {
            store.delete(&su.partial_key(case, p, &block_name(b))?)?;
        }
        store.delete(&su.partial_key(case, p, PART_DONE)?)?;
    }
    follow_up(store, case, model, false, out)
}

/// Re-queues the gather with a delay; every `resend_every` waits the missing parts are sent again
/// (a part whose message was lost or dead-lettered is recomputed).
fn wait_for_parts(
    job: &GatherJob,
    missing: &[Part],
    out: Outputs,
    settings: &InferSettings,
) -> Result<(), StageError> {
    if job.attempt >= settings.max_attempts {
        return Err(StageError::PartsMissing {
            case: job.case.clone(),
            model: job.model.clone(),
            missing: missing.len(),
            parts: job.parts.len(),
            waits: job.attempt,
        });
    }
    let attempt = job.attempt + 1;
    if attempt.is_multiple_of(settings.resend_every) {
        for p in missing {
            send_part(out, &job.case, &job.model, &job.plan, *p)?;
        }
        tracing::warn!(case = %job.case, model = %job.model, missing = missing.len(), "parts sent again");
    }
    let again = GatherJob {
        attempt,
        ..job.clone()
    };
    out.infer
        .send_delayed(&Job::Gather(again).to_json(), settings.gather_delay)?;
    tracing::info!(case = %job.case, model = %job.model, missing = missing.len(), attempt, "gather waits for parts");
    Ok(())
}

/// After a prediction: its metrics job (unless its row is there) and, once every registered
/// model has predicted the case, the ensemble job.
fn follow_up(
    store: &dyn ObjectStore,
    case: &str,
    model: &str,
    was_complete: bool,
    out: Outputs,
) -> Result<(), StageError> {
    let prefix = format!("predictions/{model}");
    // a duplicate of a job whose row is there, scored against the case's current annotations,
    // sends no metrics job, but still checks the ensemble below: the first delivery may have
    // died between the row and the `EnsembleJob`
    if !(was_complete && crate::digests::RowInputs::current(store, case, model, &prefix)?) {
        out.metrics.send(
            &Job::Metrics(MetricsJob {
                case: case.to_string(),
                name: model.to_string(),
                source: prefix,
            })
            .to_json(),
        )?;
    }
    let models = registered_models(store)?;
    let mut all = true;
    for m in &models {
        all &= predictions::current(store, m, case)?;
    }
    if all && models.len() >= 2 {
        out.aggregate.send(
            &Job::Ensemble(EnsembleJob {
                case: case.to_string(),
            })
            .to_json(),
        )?;
    }
    Ok(())
}
