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
pub mod layout;
pub mod names;
pub mod queue;
pub mod store;

pub use dir_queue::{DirQueue, QueueError, Received};
pub use jobs::{EnsembleJob, InferJob, JOB_VERSION, Job, MergeJob, MetricsJob, TrainJob};
pub use key::{Key, KeyError};
pub use layout::{CasePath, Prefixes};
pub use names::{CaseRoles, ModelIdError, Role, RoleSet, RolesError, check_model_id};
pub use queue::{Delivery, JobQueue, MemQueue};
pub use store::{DirStore, ObjectStore, StoreError};

/// [`digest`] of a message body: the name under which it is recorded.
pub fn body_digest(body: &str) -> String {
    digest(body.as_bytes())
}

/// FNV-1a (64 bits) as 16 hex digits: a stable name for a message body (the directory queue) and
/// the local stand-in for S3's MD5 ETag (the directory store). Not a security hash.
pub(crate) fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
