//! The pipeline's contracts without AWS or burn: validated object keys, S3 event notifications,
//! versioned job messages, the `ObjectStore` and `JobQueue` traits with the embedded adapters (a
//! directory as the bucket, in-process queues with SQS semantics) and the trainer's directory
//! queue. Jobs are versioned JSON documents, so a worker can refuse a message from a newer
//! producer instead of misreading it; queues deliver at least once, so every consumer must be
//! idempotent.

pub mod dir_queue;
pub mod events;
pub mod jobs;
pub mod key;
pub mod queue;
pub mod store;

pub use dir_queue::{DirQueue, QueueError, Received};
pub use jobs::{EnsembleJob, InferJob, JOB_VERSION, Job, MergeJob, MetricsJob, TrainJob};
pub use key::{Key, KeyError};
pub use queue::{Delivery, JobQueue, MemQueue};
pub use store::{DirStore, ObjectStore, StoreError};
