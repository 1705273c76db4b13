//! Stage handlers of DESIGN.md §2 that need no network: each is a function of (message, object
//! store, queues) over the `statapp-pipeline` traits, so the same code runs on the embedded
//! default, on a local S3/SQS server and in Lambda. Every handler is idempotent: its outputs are
//! pure functions of its inputs, written whole, so a redelivered message leaves the same bytes.

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

/// A stage input that cannot be used, with what was wrong with it.
pub(crate) fn input(e: impl std::fmt::Display) -> StageError {
    StageError::Input(e.to_string())
}

/// Failure of one message; the message is left for redelivery (and, after the configured number
/// of receives, the dead-letter queue).
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
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Metrics(#[from] statapp_metrics::MetricsError),
    #[error(transparent)]
    Merge(#[from] statapp_metrics::merge::MergeError),
    #[error("scratch files: {0}")]
    Scratch(#[from] std::io::Error),
    /// A handler panicked: a bug, reported as this message's failure (retried, then
    /// dead-lettered) instead of taking down the runner with the rest of its batch.
    #[error("the {function} function panicked on {about}: {message}")]
    Panic {
        function: String,
        about: String,
        message: String,
    },
}
