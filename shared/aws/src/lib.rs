//! The pipeline on AWS: `S3Store` and `SqsQueue` implement the `ObjectStore` and `JobQueue`
//! traits of `statapp-pipeline` with the AWS SDK, so the stage handlers run unchanged against S3
//! and SQS, moto's server included. Configuration comes from the environment (DESIGN.md §3).
//!
//! The traits are synchronous (the handlers are CPU-bound: inference, metrics), while the SDK is
//! async: the adapters hold a handle to a multi-threaded tokio runtime and block on it. Call them
//! from outside async code: a plain thread, or `tokio::task::spawn_blocking` in a Lambda.

mod config;
mod provision;
mod s3;
mod sqs;

pub use config::{AwsConfig, ConfigError, QUEUE_STAGES, QueueUrls, StaticCredentials};
pub use provision::{ProvisionError, Provisioned, provision};
pub use s3::S3Store;
pub use sqs::SqsQueue;

use aws_sdk_s3::error::DisplayErrorContext;

/// SDK clients built from one configuration, and the runtime their futures run on.
#[derive(Debug, Clone)]
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub runtime: tokio::runtime::Handle,
}

impl Aws {
    /// Loads credentials and region the SDK's usual way (environment, profile, container or
    /// instance role); `config.endpoint` (e.g. moto's server) overrides the service endpoints and
    /// switches S3 to path-style addressing. Must run inside a multi-threaded tokio runtime.
    pub async fn connect(config: &AwsConfig) -> Self {
        // transient failures (5xx, throttling, timeouts) are retried in the call with backoff;
        // what still fails fails the message, which SQS redelivers (then dead-letters)
        let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(5);
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .retry_config(retry);
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(c) = &config.static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "statapp-config",
            ));
        }
        let shared = loader.load().await;
        let s3_conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.endpoint.is_some())
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            sqs: aws_sdk_sqs::Client::new(&shared),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Runs a future to completion from synchronous code.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

/// The SDK's error with its whole chain of causes (the plain `Display` says only "service error").
pub(crate) fn describe<E: std::error::Error>(e: E) -> String {
    DisplayErrorContext(e).to_string()
}
