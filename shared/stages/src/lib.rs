//! Stage handlers of DESIGN.md §2 that need no network: each is a function of (message, object
//! store, queues) over the `statapp-pipeline` traits, so the same code runs on the embedded
//! default, on a local S3/SQS server and in Lambda. Every handler is idempotent: its outputs are
//! pure functions of its inputs, written whole, so a redelivered message leaves the same bytes.

pub mod digests;
pub mod dispatch;
pub mod ensemble;
#[cfg(feature = "infer")]
pub mod infer;
pub mod ingest;
#[cfg(feature = "infer")]
pub mod local;
pub mod memory;
mod nnunet_upload;
pub mod predictions;
pub mod preprocessed;
pub mod score;
pub mod survey;

/// Failure of one message; the message is left for redelivery (and, after the configured number
/// of receives, the dead-letter queue). Every variant names what it is about (the key, case or
/// model), so a log line or dead-letter inspection says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] statapp_pipeline::StoreError),
    #[error(transparent)]
    Queue(#[from] statapp_pipeline::queue::QueueOpError),
    #[error(transparent)]
    Event(#[from] statapp_pipeline::events::EventError),
    #[error(transparent)]
    Key(#[from] statapp_pipeline::KeyError),
    /// `splits.json` does not say a case's role (a bucket-wide problem: fix the file, redrive).
    #[error(transparent)]
    Roles(#[from] statapp_pipeline::RolesError),
    /// The message is not a job this system writes.
    #[error("unreadable job message: {0}")]
    Job(#[from] statapp_pipeline::jobs::JobError),
    /// A job sent to a function that does not run it (a mis-wired queue).
    #[error("the {function} function does not handle {job}")]
    WrongFunction { function: &'static str, job: String },
    /// An object an earlier stage should have written is not in the store.
    #[error("{key}: missing")]
    Missing { key: String },
    /// A stored JSON document (or one about to be stored) that does not (de)serialise.
    #[error("{key}: {source}")]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A stored volume that does not read (uploads are checked by ingest, so this is a bug or a
    /// hand-edited bucket).
    #[error(transparent)]
    Volume(#[from] statapp_volume::VolumeError),
    /// A model's `model.json` (or an nnU-Net folder's description of it).
    #[error("model {model}: {source}")]
    ModelInfo {
        model: String,
        #[source]
        source: statapp_nnunet::model_dir::ModelDirError,
    },
    /// A model's `plans.json`.
    #[error("model {model}: {source}")]
    Plans {
        model: String,
        #[source]
        source: statapp_nnunet::plans_file::PlansError,
    },
    /// Ensembling the members' predictions of a case.
    #[error("case {case}, ensemble {name}: {source}")]
    Ensemble {
        case: String,
        name: String,
        #[source]
        source: Box<statapp_nnunet::ensemble::EnsembleError>,
    },
    /// One part's stored sums.
    #[error("{key}: {source}")]
    Partial {
        key: String,
        #[source]
        source: statapp_nnunet::partial::PartialError,
    },
    /// A stored object of the wrong size or shape.
    #[error("{key}: {detail}")]
    Malformed { key: String, detail: String },
    /// A configuration variable that does not parse.
    #[error("{name}={value:?}: {detail}")]
    Config {
        name: &'static str,
        value: String,
        detail: String,
    },
    /// The parts of a fanned-out prediction did not all arrive.
    #[error(
        "case {case}, model {model}: {missing} of {parts} parts still missing after {waits} waits"
    )]
    PartsMissing {
        case: String,
        model: String,
        missing: usize,
        parts: usize,
        waits: u32,
    },
    /// Loading a model's weights or predicting with it.
    #[cfg(feature = "infer")]
    #[error("model {model}: {source}")]
    Model {
        model: String,
        #[source]
        source: Box<ModelFailure>,
    },
    #[error(transparent)]
    Metrics(#[from] statapp_metrics::MetricsError),
    #[error(transparent)]
    Merge(#[from] statapp_metrics::merge::MergeError),
    #[error("scratch files: {0}")]
    Scratch(#[from] std::io::Error),
    /// The embedded default's record of its queues (`<bucket>/.statapp/`).
    #[error("{path}: {detail}")]
    State {
        path: std::path::PathBuf,
        detail: String,
    },
    /// A handler panicked: a bug, reported as this message's failure (retried, then
    /// dead-lettered) instead of taking down the runner with the rest of its batch.
    #[error("the {function} function panicked on {about}: {message}")]
    Panic {
        function: String,
        about: String,
        message: String,
    },
}

/// What went wrong inside the model crate.
#[cfg(feature = "infer")]
#[derive(Debug, thiserror::Error)]
pub enum ModelFailure {
    #[error(transparent)]
    Checkpoint(#[from] statapp_model::checkpoint::CheckpointError),
    #[error(transparent)]
    Predict(#[from] statapp_model::predict::PredictError),
    #[error(transparent)]
    Output(#[from] statapp_volume::VolumeError),
}

/// A configuration variable parsed as `T`; `None` when unset or empty.
pub(crate) fn env_var<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, StageError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name).as_deref() {
        Err(_) | Ok("") => Ok(None),
        Ok(v) => v.parse().map(Some).map_err(|e: T::Err| StageError::Config {
            name,
            value: v.to_string(),
            detail: e.to_string(),
        }),
    }
}

impl StageError {
    /// A JSON (de)serialisation failure of the document at `key`.
    pub(crate) fn json(key: impl std::fmt::Display) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Json {
            key: key.to_string(),
            source,
        }
    }

    /// A failure of the model `model`.
    #[cfg(feature = "infer")]
    pub(crate) fn model<E: Into<ModelFailure>>(model: &str) -> impl FnOnce(E) -> Self + '_ {
        move |e| Self::Model {
            model: model.to_string(),
            source: Box::new(e.into()),
        }
    }
}
