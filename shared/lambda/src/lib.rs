//! What the four Lambda functions share, and what lets `statapp run` play Lambda's SQS event
//! source mapping on one machine with the same code:
//! - `handle_batch`: one SQS batch, message by message on a blocking thread (the stages are
//!   CPU-bound and synchronous), a tracing span per message carrying case and model, and the
//!   failed message ids as a partial batch response (`ReportBatchItemFailures`), so one poison
//!   message does not send its whole batch back;
//! - `Services`: the bucket and the queues, from the environment;
//! - `poll_once`: receive from a queue, run the batch as Lambda would, delete what succeeded;
//! - `init_logging`: JSON lines in Lambda, as `AWS_LAMBDA_LOG_FORMAT=JSON` expects.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use statapp_aws::{Aws, AwsConfig, S3Store, SqsQueue};
use statapp_pipeline::JobQueue;
use statapp_pipeline::queue::QueueOpError;
use statapp_stages::StageError;
use statapp_stages::dispatch::{Outputs, labels};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub use aws_lambda_events;
pub use lambda_runtime;

/// A stage's entry point: one message body in, done or failed.
pub type Handler = Arc<dyn Fn(&str) -> Result<(), StageError> + Send + Sync>;

/// Runs every record of the batch through `handler` and returns the ids of those that failed.
pub async fn handle_batch(function: &str, event: SqsEvent, handler: Handler) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.unwrap_or_default();
        let (case, model) = labels(&body);
        let span = tracing::info_span!(
            "message",
            function,
            message_id = %id,
            case = case.as_deref().unwrap_or(""),
            model = model.as_deref().unwrap_or(""),
            receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .map_or("", String::as_str),
        );
        let h = handler.clone();
        let inner = span.clone();
        let outcome = tokio::task::spawn_blocking(move || inner.in_scope(|| h(&body)))
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        match outcome {
            Ok(Ok(())) => tracing::info!("message done"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "message failed");
                response.batch_item_failures.push(failure(id));
            }
            Err(e) => {
                tracing::error!(error = %e, "message handler panicked");
                response.batch_item_failures.push(failure(id));
            }
        }
    }
    response
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

/// JSON log lines with the span's fields (case, model, message id) on every line; the level from
/// `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL`, default `info`.
pub fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| "info".into())
        .to_ascii_lowercase();
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .with_target(false)
        .try_init();
}

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error(transparent)]
    Config(#[from] statapp_aws::ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueOpError),
    #[error("setting up the AWS clients: {0}")]
    Runtime(String),
}

/// The bucket and the stage queues.
#[derive(Debug, Clone)]
pub struct Services {
    pub store: S3Store,
    pub ingest: SqsQueue,
    pub infer: SqsQueue,
    pub aggregate: SqsQueue,
    pub metrics: SqsQueue,
    pub merge: SqsQueue,
}

impl Services {
    /// Queues from `STATAPP_<STAGE>_QUEUE_URL`, else looked up by name. Call from synchronous
    /// code (the lookups block on the runtime of `aws`).
    pub fn resolve(aws: &Aws, config: &AwsConfig) -> Result<Self, ServicesError> {
        let queue = |stage: &str| -> Result<SqsQueue, QueueOpError> {
            let name = config.queue_name(stage);
            match config.queue_urls.get(stage) {
                Some(url) => Ok(SqsQueue::new(aws.clone(), name, url.clone())),
                None => SqsQueue::lookup(aws.clone(), &name),
            }
        };
        Ok(Self {
            store: S3Store::new(aws.clone(), config.bucket.clone()),
            ingest: queue("ingest")?,
            infer: queue("infer")?,
            aggregate: queue("aggregate")?,
            metrics: queue("metrics")?,
            merge: queue("merge")?,
        })
    }

    /// For a Lambda `main`: configuration from the environment, clients, queues.
    pub async fn from_env() -> Result<Self, ServicesError> {
        let config = AwsConfig::from_env()?;
        let aws = Aws::connect(&config).await;
        tokio::task::spawn_blocking(move || Self::resolve(&aws, &config))
            .await
            .map_err(|e| ServicesError::Runtime(e.to_string()))?
    }

    /// The event source mappings of the template: each queue with the function that consumes it
    /// (the merge queue, like the aggregate queue, feeds fn-aggregate), upstream first.
    pub fn mappings(
        &self,
        preprocess: Handler,
        infer: Handler,
        aggregate: Handler,
        metrics: Handler,
    ) -> [Mapping<'_>; 5] {
        [
            ("preprocess", &self.ingest, preprocess),
            ("infer", &self.infer, infer),
            ("aggregate", &self.aggregate, aggregate.clone()),
            ("metrics", &self.metrics, metrics),
            ("aggregate", &self.merge, aggregate),
        ]
        .map(|(function, queue, handler)| Mapping {
            function,
            queue: queue as &dyn JobQueue,
            handler,
        })
    }

    pub fn outputs(&self) -> Outputs<'_> {
        Outputs {
            infer: &self.infer,
            aggregate: &self.aggregate,
            metrics: &self.metrics,
            merge: &self.merge,
        }
    }
}

/// Serves a function's SQS batches with `handler` until the runtime stops it.
pub async fn serve(function: &'static str, handler: Handler) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| {
            let handler = handler.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(handle_batch(function, event.payload, handler).await)
            }
        },
    ))
    .await
}

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub failed: usize,
}

/// Plays the event source mapping once: receives up to 10 messages, runs them as one Lambda
/// batch, deletes the ones that did not fail (failed ones come back after the visibility timeout
/// and reach the dead-letter queue after the queue's `maxReceiveCount`). Call from synchronous
/// code.
pub fn poll_once(
    runtime: &tokio::runtime::Handle,
    function: &'static str,
    queue: &dyn JobQueue,
    visibility: Duration,
    handler: Handler,
) -> Result<Polled, QueueOpError> {
    let deliveries = queue.receive(10, visibility)?;
    if deliveries.is_empty() {
        return Ok(Polled::default());
    }
    let mut event = SqsEvent::default();
    event.records = deliveries
        .iter()
        .map(|d| {
            let mut m = SqsMessage::default();
            m.message_id = Some(d.message_id.clone());
            m.receipt_handle = Some(d.receipt.clone());
            m.body = Some(d.body.clone());
            m.attributes.insert(
                "ApproximateReceiveCount".into(),
                d.receive_count.to_string(),
            );
            m.event_source = Some("aws:sqs".into());
            m
        })
        .collect();
    let response = runtime.block_on(handle_batch(function, event, handler));
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for d in &deliveries {
        if !failed.contains(&d.message_id.as_str()) {
            queue.delete(&d.receipt)?;
        }
    }
    Ok(Polled {
        received: deliveries.len(),
        failed: failed.len(),
    })
}

/// One event source mapping: a queue and the function that consumes it.
#[derive(Clone)]
pub struct Mapping<'a> {
    pub function: &'static str,
    pub queue: &'a dyn JobQueue,
    pub handler: Handler,
}

impl std::fmt::Debug for Mapping<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("function", &self.function)
            .field("queue", &self.queue.name())
            .finish_non_exhaustive()
    }
}

/// Totals of a `drain`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub handled: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Queue(#[from] QueueOpError),
    #[error("queues still busy after {0:?}")]
    Timeout(Duration),
}

/// Polls the mappings in order, upstream first, going back to the top after every batch, until
/// every queue is empty (nothing visible, nothing in flight; failed messages therefore run out
/// their receives first) or, with `forever`, until the process is stopped.
pub fn drain(
    runtime: &tokio::runtime::Handle,
    mappings: &[Mapping<'_>],
    visibility: Duration,
    timeout: Option<Duration>,
    forever: bool,
) -> Result<Drained, DrainError> {
    let start = std::time::Instant::now();
    let mut total = Drained::default();
    loop {
        let mut progressed = false;
        for m in mappings {
            let p = poll_once(runtime, m.function, m.queue, visibility, m.handler.clone())?;
            if p.received > 0 {
                total.handled += p.received - p.failed;
                total.failed += p.failed;
                progressed = true;
                break;
            }
        }
        if let Some(limit) = timeout
            && start.elapsed() >= limit
        {
            return Err(DrainError::Timeout(limit));
        }
        if progressed {
            continue;
        }
        if !forever {
            let mut pending = 0;
            for m in mappings {
                pending += m.queue.approximate_len()?;
            }
            if pending == 0 {
                return Ok(total);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn failed_and_panicking_messages_are_reported_by_id() {
        let handler: Handler = Arc::new(|body: &str| match body {
            "ok" => Ok(()),
            "panic" => panic!("handler bug"),
            other => Err(StageError::Missing {
                key: format!("bad {other}"),
            }),
        });
        let mut event = SqsEvent::default();
        event.records = vec![
            record("m1", "ok"),
            record("m2", "poison"),
            record("m3", "ok"),
            record("m4", "panic"),
        ];
        let response = handle_batch("test", event, handler).await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["m2", "m4"]);
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [
                {"itemIdentifier": "m2"}, {"itemIdentifier": "m4"}
            ]})
        );
    }
}
