//! Creates what `infra/template.yaml` declares, for a local S3/SQS server (moto) or a scratch
//! account: the bucket, one queue per stage with its dead-letter queue (redrive after
//! `max_receives`), and the bucket notification that sends object-created events under
//! `incoming/` and `models/` to the ingest queue. Idempotent: existing resources are reused.

use crate::config::{AwsConfig, QUEUE_STAGES};
use crate::{Aws, SqsQueue, describe};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{what}: {detail}")]
    Aws { what: String, detail: String },
}

fn err(what: impl Into<String>, detail: impl Into<String>) -> ProvisionError {
    ProvisionError::Aws {
        what: what.into(),
        detail: detail.into(),
    }
}

/// The queues, by stage, with their dead-letter queues.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub queues: BTreeMap<String, SqsQueue>,
    pub dead_letters: BTreeMap<String, SqsQueue>,
}

pub fn provision(
    aws: &Aws,
    config: &AwsConfig,
    visibility: Duration,
    max_receives: u32,
) -> Result<Provisioned, ProvisionError> {
    aws.block_on(provision_async(aws, config, visibility, max_receives))
}

async fn create_queue(
    aws: &Aws,
    name: &str,
    attrs: &[(QueueAttributeName, String)],
) -> Result<(String, String), ProvisionError> {
    let mut req = aws.sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), v);
    }
    let url = req
        .send()
        .await
        .map_err(|e| err(format!("create queue {name}"), describe(e)))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| err(format!("queue {name} ARN"), describe(e)))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| err(format!("queue {name}"), "no ARN"))?;
    Ok((url, arn))
}

async fn provision_async(
    aws: &Aws,
    config: &AwsConfig,
    visibility: Duration,
    max_receives: u32,
) -> Result<Provisioned, ProvisionError> {
    let bucket = &config.bucket;
    match aws.s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) => {}
        Err(e) => return Err(err(format!("create bucket {bucket}"), describe(e))),
    }
    let mut queues = BTreeMap::new();
    let mut dead_letters = BTreeMap::new();
    let mut ingest_arn = String::new();
    for stage in QUEUE_STAGES {
        let name = config.queue_name(stage);
        let dlq_name = format!("{name}-dlq");
        let (dlq_url, dlq_arn) = create_queue(
            aws,
            &dlq_name,
            &[(QueueAttributeName::MessageRetentionPeriod, "1209600".into())],
        )
        .await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives,
        });
        let (url, arn) = create_queue(
            aws,
            &name,
            &[
                (
                    QueueAttributeName::VisibilityTimeout,
                    visibility.as_secs().to_string(),
                ),
                (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            ],
        )
        .await?;
        if stage == "ingest" {
            ingest_arn = arn.clone();
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{bucket}")}},
                }],
            });
            aws.sqs
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(QueueAttributeName::Policy, policy.to_string())
                .send()
                .await
                .map_err(|e| err(format!("policy of {name}"), describe(e)))?;
        }
        queues.insert(stage.to_string(), SqsQueue::new(aws.clone(), name, url));
        dead_letters.insert(
            stage.to_string(),
            SqsQueue::new(aws.clone(), dlq_name, dlq_url),
        );
    }
    let mut notifications = NotificationConfiguration::builder();
    // never a prefix a function writes under: no loops (`Prefixes` refuses those)
    for prefix in config.prefixes.notified() {
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(&prefix)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let queue = QueueConfiguration::builder()
            .id(format!("statapp-{}", prefix.trim_end_matches('/')))
            .queue_arn(&ingest_arn)
            .events(Event::S3ObjectCreated)
            .filter(filter)
            .build()
            .map_err(|e| err("notification", e.to_string()))?;
        notifications = notifications.queue_configurations(queue);
    }
    aws.s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(notifications.build())
        .send()
        .await
        .map_err(|e| err(format!("notifications of {bucket}"), describe(e)))?;
    Ok(Provisioned {
        queues,
        dead_letters,
    })
}
