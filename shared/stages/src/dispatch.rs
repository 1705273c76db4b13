//! One entry point per function of DESIGN.md §2, from a raw message body to its stage handler:
//! what the Lambda functions, `statapp run` and the embedded runner all call, so the three ways
//! of running the pipeline share every line after the transport.

use crate::StageError;
use crate::ensemble::handle_ensemble;
use crate::ingest::{IngestSettings, SweepRequest, handle_event, sweep_incomplete};
use crate::score::{MergeSettings, handle_merge, handle_metrics};
use statapp_pipeline::events::parse_object_created;
use statapp_pipeline::jobs::Job;
use statapp_pipeline::{JobQueue, ObjectStore, Prefixes};

/// The queues stages send work to.
#[derive(Clone, Copy)]
pub struct Outputs<'a> {
    pub infer: &'a dyn JobQueue,
    pub aggregate: &'a dyn JobQueue,
    pub metrics: &'a dyn JobQueue,
    pub merge: &'a dyn JobQueue,
}

impl std::fmt::Debug for Outputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("infer", &self.infer.name())
            .field("aggregate", &self.aggregate.name())
            .field("metrics", &self.metrics.name())
            .field("merge", &self.merge.name())
            .finish()
    }
}

fn job(body: &str) -> Result<Job, StageError> {
    Ok(Job::from_json(body)?)
}

fn unexpected(function: &'static str, job: &Job) -> StageError {
    StageError::WrongFunction {
        function,
        job: format!("{job:?}"),
    }
}

/// Runs `function`'s handler on one message; a panic becomes [`StageError::Panic`] naming the
/// case and model, so every runner (embedded, `statapp run`, Lambda) fails that message alone.
fn guarded(
    function: &str,
    body: &str,
    handler: impl FnOnce() -> Result<(), StageError>,
) -> Result<(), StageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler)).unwrap_or_else(|payload| {
        let message = match (
            payload.downcast_ref::<&str>(),
            payload.downcast_ref::<String>(),
        ) {
            (Some(s), _) => s.to_string(),
            (_, Some(s)) => s.clone(),
            _ => "a panic without a message".to_string(),
        };
        let about = match labels(body) {
            (Some(c), Some(m)) => format!("case {c}, model {m}"),
            (Some(c), None) => format!("case {c}"),
            (None, Some(m)) => format!("model {m}"),
            (None, None) => "a message that names no case".to_string(),
        };
        Err(StageError::Panic {
            function: function.to_string(),
            about,
            message,
        })
    })
}

/// fn-preprocess: an S3 event (plain or inside an SQS message) for `incoming/` or `models/`, or
/// the schedule's request to report incomplete cases.
pub fn preprocess(body: &str, store: &dyn ObjectStore, out: Outputs) -> Result<(), StageError> {
    guarded("preprocess", body, || {
        if let Ok(sweep) = serde_json::from_str::<SweepRequest>(body) {
            let after = std::time::Duration::from_secs(sweep.incomplete_after_s);
            let prefixes = Prefixes::from_env();
            let now = std::time::SystemTime::now();
            return sweep_incomplete(store, &prefixes, now, after).map(|_| ());
        }
        handle_event(body, store, out.infer, &IngestSettings::from_env()?).map(|_| ())
    })
}

/// fn-aggregate: ensembles (`EnsembleJob`) and the combined CSV (`MergeJob`).
pub fn aggregate(body: &str, store: &dyn ObjectStore, out: Outputs) -> Result<(), StageError> {
    guarded("aggregate", body, || match job(body)? {
        Job::Ensemble(j) => handle_ensemble(&j, store, out.metrics).map(|_| ()),
        Job::Merge(j) => {
            let settings = MergeSettings::from_env()?;
            let now = std::time::SystemTime::now();
            handle_merge(&j, store, out.merge, &settings, now).map(|_| ())
        }
        other => Err(unexpected("aggregate", &other)),
    })
}

/// fn-metrics: one metric row (`MetricsJob`).
pub fn metrics(body: &str, store: &dyn ObjectStore, out: Outputs) -> Result<(), StageError> {
    guarded("metrics", body, || match job(body)? {
        Job::Metrics(j) => handle_metrics(&j, store, out.merge).map(|_| ()),
        other => Err(unexpected("metrics", &other)),
    })
}

/// fn-infer: one case with one model, or one part of it (`InferJob`), and the gather of a
/// fanned-out prediction (`GatherJob`).
#[cfg(feature = "infer")]
pub fn infer(
    body: &str,
    store: &dyn ObjectStore,
    out: Outputs,
    device: &burn::tensor::Device,
    settings: &crate::infer::InferSettings,
) -> Result<(), StageError> {
    guarded("infer", body, || match job(body)? {
        Job::Infer(j) => crate::infer::handle_infer(&j, store, out, device, settings),
        Job::Gather(j) => crate::infer::handle_gather(&j, store, out, settings),
        other => Err(unexpected("infer", &other)),
    })
}

/// The case and model a message is about, for log lines (best effort: `None` when the body does
/// not say, or does not parse).
pub fn labels(body: &str) -> (Option<String>, Option<String>) {
    if let Ok(job) = Job::from_json(body) {
        return match job {
            Job::Infer(j) => (Some(j.case), Some(j.model)),
            Job::Gather(j) => (Some(j.case), Some(j.model)),
            Job::Ensemble(j) => (Some(j.case), None),
            Job::Metrics(j) => (Some(j.case), Some(j.name)),
            Job::Train(j) => (None, Some(j.model_id())),
            Job::Merge(_) => (None, None),
        };
    }
    let Ok(records) = parse_object_created(body) else {
        return (None, None);
    };
    let segment = |i: usize| {
        records
            .first()
            .and_then(|r| r.key.segments().nth(i).map(str::to_string))
    };
    match segment(0).as_deref() {
        Some("incoming") => (segment(1), None),
        Some("models") => (None, segment(1)),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statapp_pipeline::Key;
    use statapp_pipeline::events::object_created_event;
    use statapp_pipeline::jobs::{InferJob, MetricsJob};

    #[test]
    fn labels_name_the_case_and_model() {
        let infer = Job::Infer(InferJob::new("c1", "anno1_init1_foldall", None));
        assert_eq!(
            labels(&infer.to_json()),
            (Some("c1".into()), Some("anno1_init1_foldall".into()))
        );
        let m = Job::Metrics(MetricsJob {
            case: "c2".into(),
            name: "ensemble_all".into(),
            source: "ensembles/ensemble_all".into(),
        });
        assert_eq!(
            labels(&m.to_json()),
            (Some("c2".into()), Some("ensemble_all".into()))
        );
        let key = Key::new("incoming/case_7/image.nii.gz").unwrap();
        let event = object_created_event("b", &key, 10, "e", "2026-01-01T00:00:00.000Z");
        assert_eq!(labels(&event.to_string()), (Some("case_7".into()), None));
        assert_eq!(labels("not json"), (None, None));
    }

    #[test]
    fn a_panicking_handler_fails_its_message_with_the_case_named() {
        let body = Job::Infer(InferJob::new("c9", "anno2_init7_foldall", None)).to_json();
        let err = guarded("infer", &body, || panic!("index out of bounds")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the infer function panicked on case c9, model anno2_init7_foldall: index out of bounds"
        );
        let n = 3;
        let err = guarded("metrics", "{}", || panic!("{n} rows")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("a message that names no case: 3 rows"),
            "{err}"
        );
        assert!(guarded("metrics", "{}", || Ok(())).is_ok());
    }
}
