//! `checkpoint_latest/`: what a run needs to go on after an interruption (a spot instance
//! reclaimed, a worker killed): the network, the optimizer's momentum, the training stream's
//! position, early stopping's state and the log so far, written whole at the end of every epoch.
//! The next run of the same job resumes from it and computes the weights an uninterrupted run
//! would have (training is deterministic for a seed). Like nnU-Net's `checkpoint_latest.pth`, it
//! is removed when training ends.
//!
//! Written as `.checkpoint_latest.tmp/`, then swapped in by renames: a crash at any point leaves
//! `checkpoint_latest/` or `checkpoint_latest.old/` complete.

use super::log::{EarlyStopping, TrainingLog};
use super::{TrainError, TrainSettings, io_err};
use crate::outputs::digest;
use crate::unet::{PlainConvUNet, UNetConfig};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_LATEST: &str = "checkpoint_latest";
const OLD: &str = "checkpoint_latest.old";
const TMP: &str = ".checkpoint_latest.tmp";
const NETWORK: &str = "network.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";

/// Everything but the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatestState {
    /// The job's settings and plans: a run of another job never resumes from this one.
    pub settings: TrainSettings,
    pub plans_sha256: String,
    pub next_epoch: usize,
    /// The training stream ([`crate::rng::Rng`]) after the last completed epoch.
    pub rng: u64,
    pub stopping: EarlyStopping,
    pub log: TrainingLog,
}

/// A run restored from `checkpoint_latest/`.
pub(super) struct Resumed {
    pub state: LatestState,
    pub net: PlainConvUNet,
    pub optim: ModuleOptimizer,
}

/// Writes the state after an epoch (`net` is the training network, on its autodiff device).
pub fn save(
    work: &Path,
    net: &PlainConvUNet,
    optim: &ModuleOptimizer,
    state: &LatestState,
) -> Result<(), TrainError> {
    let tmp = work.join(TMP);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    let path = tmp.join(NETWORK);
    net.clone()
        .into_record()
        .save(&path)
        .map_err(|e| io_err(&path, e))?;
    let path = tmp.join(OPTIMIZER);
    optim.save(&path).map_err(|e| io_err(&path, e))?;
    let path = tmp.join(STATE);
    let json = serde_json::to_vec_pretty(state).map_err(|e| io_err(&path, e))?;
    std::fs::write(&path, json).map_err(|e| io_err(&path, e))?;
    let (latest, old) = (work.join(CHECKPOINT_LATEST), work.join(OLD));
    if latest.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
        }
        std::fs::rename(&latest, &old).map_err(|e| io_err(&old, e))?;
    }
    std::fs::rename(&tmp, &latest).map_err(|e| io_err(&latest, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
    }
    Ok(())
}

/// The complete checkpoint directory, if any (`checkpoint_latest/`, else the `.old` one a crash
/// between the two renames left).
fn complete_dir(work: &Path) -> Option<PathBuf> {
    [CHECKPOINT_LATEST, OLD]
        .into_iter()
        .map(|d| work.join(d))
        .find(|d| d.join(STATE).is_file())
}

/// Restores the run of this job from `work`, if it left a checkpoint. A checkpoint of other
/// settings or plans is not resumed (`None`, with a warning): the run starts afresh.
pub(super) fn load(
    work: &Path,
    settings: &TrainSettings,
    plans_text: &str,
    network: &UNetConfig,
    optim: ModuleOptimizer,
    device: &Device,
) -> Result<Option<Resumed>, TrainError> {
    let Some(dir) = complete_dir(work) else {
        return Ok(None);
    };
    let path = dir.join(STATE);
    let text = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
    let state: LatestState = serde_json::from_slice(&text).map_err(|e| io_err(&path, e))?;
    if state.settings != *settings || state.plans_sha256 != digest(plans_text.as_bytes()) {
        tracing::warn!(dir = %dir.display(), "a checkpoint of other settings or plans: starting afresh");
        return Ok(None);
    }
    let path = dir.join(NETWORK);
    let record = ModuleRecord::load(&path).map_err(|e| io_err(&path, e))?;
    let net = PlainConvUNet::new(network, settings.seed, device)
        .try_load_record(record)
        .map_err(|e| io_err(&path, e))?;
    let path = dir.join(OPTIMIZER);
    let optim = optim.load(&path).map_err(|e| io_err(&path, e))?;
    tracing::info!(epoch = state.next_epoch, dir = %dir.display(), "resuming training");
    Ok(Some(Resumed { state, net, optim }))
}

/// Removes the checkpoint once the model is complete.
pub fn remove(work: &Path) -> Result<(), TrainError> {
    for d in [CHECKPOINT_LATEST, OLD, TMP] {
        let dir = work.join(d);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        }
    }
    Ok(())
}
