//! The pipeline's messages and queues. Jobs are versioned JSON documents, so a worker can refuse a
//! message from a newer producer instead of misreading it; queues deliver at least once, so every
//! consumer must be idempotent.

pub mod dir_queue;
pub mod jobs;

pub use dir_queue::{DirQueue, QueueError, Received};
pub use jobs::{JOB_VERSION, Job, TrainJob};
