//! `JobQueue` on SQS. Dead-lettering is SQS's own redrive policy (set by the templates, or by
//! `provision` on a local server), so this adapter only sends, receives and deletes.

use crate::{Aws, describe};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use statapp_pipeline::Delivery;
use statapp_pipeline::JobQueue;
use statapp_pipeline::queue::QueueOpError;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    aws: Aws,
    name: String,
    url: String,
    /// Long-poll wait of `receive` (0 to 20 s).
    wait: Duration,
}

impl SqsQueue {
    pub fn new(aws: Aws, name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            aws,
            name: name.into(),
            url: url.into(),
            wait: Duration::from_secs(1),
        }
    }

    /// Finds a queue's URL by name.
    pub fn lookup(aws: Aws, name: &str) -> Result<Self, QueueOpError> {
        let url = aws.block_on(async {
            aws.sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| backend(name, describe(e)))?
                .queue_url()
                .map(str::to_string)
                .ok_or_else(|| backend(name, "no URL returned"))
        })?;
        Ok(Self::new(aws, name, url))
    }

    /// Sets the long-poll wait of `receive`.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue its `RedrivePolicy` sends dead letters to (`None`: it has none).
    pub fn dead_letter_queue(&self) -> Result<Option<SqsQueue>, QueueOpError> {
        let policy = self.aws.block_on(async {
            self.aws
                .sqs
                .get_queue_attributes()
                .queue_url(&self.url)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(|e| backend(&self.name, describe(e)))
                .map(|out| {
                    out.attributes()
                        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
                        .cloned()
                })
        })?;
        let Some(policy) = policy else {
            return Ok(None);
        };
        let doc: serde_json::Value = serde_json::from_str(&policy)
            .map_err(|e| backend(&self.name, format!("RedrivePolicy: {e}")))?;
        let name = doc["deadLetterTargetArn"]
            .as_str()
            .and_then(|arn| arn.rsplit(':').next())
            .ok_or_else(|| backend(&self.name, "RedrivePolicy without deadLetterTargetArn"))?;
        Self::lookup(self.aws.clone(), name).map(Some)
    }

    /// Visible and in-flight messages.
    pub fn in_flight_and_visible(&self) -> Result<(usize, usize), QueueOpError> {
        self.aws.block_on(async {
            let attrs = self
                .aws
                .sqs
                .get_queue_attributes()
                .queue_url(&self.url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .map_err(|e| backend(&self.name, describe(e)))?;
            let count = |name: QueueAttributeName| {
                attrs
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            // delayed messages (a gather waiting for its parts) count as not yet visible
            Ok((
                count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
                count(QueueAttributeName::ApproximateNumberOfMessages),
            ))
        })
    }
}

fn backend(queue: &str, detail: impl Into<String>) -> QueueOpError {
    QueueOpError::Backend {
        queue: queue.to_string(),
        detail: detail.into(),
    }
}

impl JobQueue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, body: &str) -> Result<String, QueueOpError> {
        self.send_delayed(body, Duration::ZERO)
    }

    fn send_delayed(&self, body: &str, delay: Duration) -> Result<String, QueueOpError> {
        // SQS accepts 0..=900 seconds
        let delay = i32::try_from(delay.as_secs().min(900)).unwrap_or(900);
        self.aws.block_on(async {
            let out = self
                .aws
                .sqs
                .send_message()
                .queue_url(&self.url)
                .message_body(body)
                .delay_seconds(delay)
                .send()
                .await
                .map_err(|e| backend(&self.name, describe(e)))?;
            Ok(out.message_id().unwrap_or_default().to_string())
        })
    }

    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueOpError> {
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        let visibility = i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX);
        let wait = i32::try_from(self.wait.as_secs()).unwrap_or(0);
        self.aws.block_on(async {
            let out = self
                .aws
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(max)
                .visibility_timeout(visibility)
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(|e| backend(&self.name, describe(e)))?;
            Ok(out
                .messages()
                .iter()
                .map(|m| Delivery {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receipt: m.receipt_handle().unwrap_or_default().to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                })
                .collect())
        })
    }

    fn delete(&self, receipt: &str) -> Result<(), QueueOpError> {
        self.aws.block_on(async {
            self.aws
                .sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(receipt)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| backend(&self.name, describe(e)))
        })
    }

    fn approximate_len(&self) -> Result<usize, QueueOpError> {
        self.in_flight_and_visible().map(|(a, b)| a + b)
    }
}
