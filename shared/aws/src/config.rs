//! Where the bucket and the queues are, from environment variables (and, for the CLI, a `.env`
//! file loaded into the environment first). The Lambda templates set the queue URLs; on a local
//! server the CLI can find them by name instead.

use std::collections::BTreeMap;

/// The pipeline's queues, in pipeline order: S3 events to `ingest`, then one queue per stage.
pub const QUEUE_STAGES: [&str; 5] = ["ingest", "infer", "aggregate", "metrics", "merge"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set (see README: Running on AWS)")]
    Missing(&'static str),
}

/// Queue URLs by stage; a stage without one is looked up by name (`<prefix>-<stage>`).
pub type QueueUrls = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// `STATAPP_BUCKET`.
    pub bucket: String,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), default `us-east-1`.
    pub region: String,
    /// `AWS_ENDPOINT_URL`: a local S3/SQS server such as moto's (`http://127.0.0.1:5005`).
    pub endpoint: Option<String>,
    /// `STATAPP_QUEUE_PREFIX`, default `statapp`: queues are `<prefix>-<stage>` and
    /// `<prefix>-<stage>-dlq`.
    pub queue_prefix: String,
    /// `STATAPP_<STAGE>_QUEUE_URL`, where set.
    pub queue_urls: QueueUrls,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`) when both are given
    /// through `var`: a `.env` file is not the process environment the SDK's own chain reads.
    /// Otherwise the SDK's chain (environment, profile, container or instance role).
    pub static_credentials: Option<StaticCredentials>,
}

/// Keys given explicitly.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl AwsConfig {
    /// Reads the configuration through `var` (`std::env::var` in the binaries; a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let bucket = non_empty("STATAPP_BUCKET").ok_or(ConfigError::Missing("STATAPP_BUCKET"))?;
        let region = non_empty("AWS_REGION")
            .or_else(|| non_empty("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let queue_urls = QUEUE_STAGES
            .iter()
            .filter_map(|stage| {
                let name = format!("STATAPP_{}_QUEUE_URL", stage.to_ascii_uppercase());
                non_empty(&name).map(|url| (stage.to_string(), url))
            })
            .collect();
        Ok(Self {
            bucket,
            region,
            endpoint: non_empty("AWS_ENDPOINT_URL"),
            queue_prefix: non_empty("STATAPP_QUEUE_PREFIX").unwrap_or_else(|| "statapp".into()),
            queue_urls,
            static_credentials: match (
                non_empty("AWS_ACCESS_KEY_ID"),
                non_empty("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Some(access_key_id), Some(secret_access_key)) => Some(StaticCredentials {
                    access_key_id,
                    secret_access_key,
                    session_token: non_empty("AWS_SESSION_TOKEN"),
                }),
                _ => None,
            },
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The queue name of a stage (`statapp-infer`), its dead-letter queue adds `-dlq`.
    pub fn queue_name(&self, stage: &str) -> String {
        format!("{}-{stage}", self.queue_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn bucket_is_required_and_the_rest_has_defaults() {
        assert_eq!(
            AwsConfig::from_vars(vars(&[])),
            Err(ConfigError::Missing("STATAPP_BUCKET"))
        );
        let c = AwsConfig::from_vars(vars(&[("STATAPP_BUCKET", "b")])).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.endpoint, None);
        assert_eq!(c.queue_name("infer"), "statapp-infer");
        assert!(c.queue_urls.is_empty());
        assert_eq!(c.static_credentials, None);
    }

    #[test]
    fn queue_urls_endpoint_and_region_are_read() {
        let c = AwsConfig::from_vars(vars(&[
            ("STATAPP_BUCKET", "b"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5005"),
            ("STATAPP_QUEUE_PREFIX", "t1"),
            ("STATAPP_METRICS_QUEUE_URL", "http://q/metrics"),
            ("STATAPP_INFER_QUEUE_URL", " "),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]))
        .unwrap();
        let creds = c.static_credentials.clone().unwrap();
        assert_eq!(creds.access_key_id, "AKIDEXAMPLE");
        assert!(
            !format!("{creds:?}").contains("secret"),
            "no secret in logs"
        );
        assert_eq!(c.region, "eu-west-3");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5005"));
        assert_eq!(c.queue_name("merge"), "t1-merge");
        assert_eq!(
            c.queue_urls.into_iter().collect::<Vec<_>>(),
            vec![("metrics".to_string(), "http://q/metrics".to_string())]
        );
    }
}
