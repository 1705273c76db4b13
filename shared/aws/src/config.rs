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
    /// Where uploads are: `incoming/`, `models/`, and the original's `S3_DATA_DIR` and
    /// `S3_ARTIFACTS_DIR/S3_MODEL_ARTIFACTS_SUBDIR` where set.
    pub prefixes: statapp_pipeline::Prefixes,
}

/// The original project's names (its `.env`, METRICS.md §15), read where statapp's own name is
/// not set.
pub const ALIASES: [(&str, &str); 4] = [
    ("STATAPP_BUCKET", "S3_BUCKET"),
    ("AWS_ENDPOINT_URL", "S3_ENDPOINT"),
    ("AWS_ACCESS_KEY_ID", "S3_ACCESS_KEY"),
    ("AWS_SECRET_ACCESS_KEY", "S3_SECRET_KEY"),
];

/// The original's `S3_ENDPOINT` may be a bare host (`minio.lab.sspcloud.fr`); boto3 then uses
/// HTTPS, and so does this.
fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
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
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let non_empty = |name: &str| {
            set(name).or_else(|| {
                let (_, alias) = ALIASES.iter().find(|(own, _)| *own == name)?;
                set(alias)
            })
        };
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
            endpoint: non_empty("AWS_ENDPOINT_URL").map(|e| with_scheme(&e)),
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
            prefixes: statapp_pipeline::Prefixes::from_vars(&var),
        })
    }

    /// The process environment (the CLI has loaded `.env` into it).
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

    #[test]
    fn the_originals_names_are_aliases_and_statapps_win() {
        let c = AwsConfig::from_vars(vars(&[
            ("S3_BUCKET", "curvas"),
            ("S3_ENDPOINT", "minio.lab.sspcloud.fr"),
            ("S3_ACCESS_KEY", "ak"),
            ("S3_SECRET_KEY", "sk"),
            ("S3_DATA_DIR", "data"),
        ]))
        .unwrap();
        assert_eq!(c.bucket, "curvas");
        assert_eq!(c.endpoint.as_deref(), Some("https://minio.lab.sspcloud.fr"));
        let creds = c.static_credentials.unwrap();
        assert_eq!(
            (
                creds.access_key_id.as_str(),
                creds.secret_access_key.as_str()
            ),
            ("ak", "sk")
        );
        assert_eq!(c.prefixes.cases, ["incoming/", "data/"]);
        let c = AwsConfig::from_vars(vars(&[
            ("S3_BUCKET", "curvas"),
            ("STATAPP_BUCKET", "mine"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
        ]))
        .unwrap();
        assert_eq!(c.bucket, "mine");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    }
}
