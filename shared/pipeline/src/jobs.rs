//! Job messages (DESIGN.md §2), serialised as JSON with a `version` and a `kind` tag.

use serde::{Deserialize, Serialize};

/// Version of the message schema this build reads and writes.
pub const JOB_VERSION: u32 = 1;

/// Train one model: the original's `anno<k>_init<seed>_fold<f>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainJob {
    pub annotator: u8,
    pub seed: u64,
    /// `all` or 0..4.
    pub fold: String,
    /// Plan configuration: `3d_fullres` (GPU) or `3d_cpu`.
    pub configuration: String,
    /// Prepared dataset (nnUNetPlans.json and nnUNetPlans_<configuration>/), as a store prefix.
    pub data: String,
    /// Where `<model_id>/` is written, as a store prefix.
    pub models: String,
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    #[serde(default = "defaults::iterations")]
    pub iterations: usize,
    #[serde(default = "defaults::val_iterations")]
    pub val_iterations: usize,
    #[serde(default = "defaults::patience")]
    pub patience: usize,
}

impl TrainJob {
    pub fn model_id(&self) -> String {
        format!("anno{}_init{}_fold{}", self.annotator, self.seed, self.fold)
    }
}

/// The original trainer's settings when a message leaves them out.
mod defaults {
    pub fn epochs() -> usize {
        300
    }
    pub fn iterations() -> usize {
        250
    }
    pub fn val_iterations() -> usize {
        50
    }
    pub fn patience() -> usize {
        20
    }
}

/// Predict one case with one model: the whole prediction, or one part of a fanned-out one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferJob {
    pub case: String,
    pub model: String,
    /// Digest of the model's plan: its preprocessed case is `preprocessed/<plan>/<case>/`
    /// (absent in messages of earlier builds: the stage derives it from the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// One part (a range of tiles) of a prediction split over several jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

impl InferJob {
    pub fn new(case: &str, model: &str, plan: Option<String>) -> Self {
        Self {
            case: case.to_string(),
            model: model.to_string(),
            plan,
            part: None,
        }
    }
}

/// Part `index` of `count`: tiles `start..end` of the prediction's sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub index: usize,
    pub count: usize,
    pub start: usize,
    pub end: usize,
}

/// Add the parts of a fanned-out prediction, export it, and go on as a whole prediction would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatherJob {
    pub case: String,
    pub model: String,
    pub plan: String,
    /// Every part, in the order they are added.
    pub parts: Vec<Part>,
    /// Times this gather found parts missing and re-queued itself.
    #[serde(default)]
    pub attempt: u32,
}

/// Score one prediction (a model's or an ensemble's) of one case against its annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsJob {
    pub case: String,
    /// The `CT` column of the row: a model id or an ensemble name.
    pub name: String,
    /// Where `<case>/prob_{panc,kidn,livr}.nii.gz` and `segmentation.nii.gz` are:
    /// `predictions/<model>` or `ensembles/<name>`.
    pub source: String,
}

/// Ensemble every strategy of one case once all its models have predicted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsembleJob {
    pub case: String,
}

/// Fold the changed rows into `metrics/combined.csv`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeJob {
    /// Set on the merge a coalescing merge scheduled: when its window closes (ms since the
    /// epoch). A request without it, or for an earlier time, waits for that merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
}

/// Every job kind, tagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Train(TrainJob),
    Infer(InferJob),
    Gather(GatherJob),
    Ensemble(EnsembleJob),
    Metrics(MetricsJob),
    Merge(MergeJob),
}

/// The envelope on the wire: `{"version": 1, "kind": "train", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Envelope {
    version: u32,
    #[serde(flatten)]
    job: Job,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job message is not valid JSON for this schema: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("job message version {found} is newer than this build understands ({JOB_VERSION})")]
    Version { found: u32 },
}

impl Job {
    pub fn to_json(&self) -> String {
        let env = Envelope {
            version: JOB_VERSION,
            job: self.clone(),
        };
        // serialising plain data with string keys cannot fail
        serde_json::to_string(&env).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, JobError> {
        let env: Envelope = serde_json::from_str(text)?;
        if env.version > JOB_VERSION {
            return Err(JobError::Version { found: env.version });
        }
        Ok(env.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_defaults_and_version() {
        let text = r#"{"version":1,"kind":"train","annotator":2,"seed":445566,"fold":"all",
            "configuration":"3d_fullres","data":"prepared/anno2","models":"models"}"#;
        let Ok(Job::Train(t)) = Job::from_json(text) else {
            panic!("not a train job")
        };
        assert_eq!(t.model_id(), "anno2_init445566_foldall");
        assert_eq!((t.epochs, t.iterations, t.patience), (300, 250, 20));
        let again = Job::from_json(&Job::Train(t.clone()).to_json()).unwrap();
        assert_eq!(again, Job::Train(t));
        let newer = text.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            Job::from_json(&newer),
            Err(JobError::Version { found: 2 })
        ));
        assert!(Job::from_json("{\"version\":1,\"kind\":\"train\"}").is_err());
        let m = Job::Metrics(MetricsJob {
            case: "c".into(),
            name: "ensemble_all".into(),
            source: "ensembles/ensemble_all".into(),
        });
        assert_eq!(Job::from_json(&m.to_json()).unwrap(), m);
        assert!(
            m.to_json()
                .starts_with("{\"version\":1,\"kind\":\"metrics\"")
        );
    }
}
