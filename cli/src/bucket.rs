//! Where a bucket command works: a directory (`--bucket DIR`, the embedded default that
//! `statapp serve` runs on) or the S3 bucket of the environment and `.env`.

use crate::cloud::Cloud;
use anyhow::{Context, Result};
use statapp_pipeline::{DirStore, ObjectStore, Prefixes};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct BucketArg {
    /// A directory bucket (the embedded default); without it, the S3 bucket configured by
    /// `STATAPP_BUCKET` (or the original's `S3_BUCKET`) in the environment or `.env`.
    #[arg(long)]
    pub bucket: Option<PathBuf>,
}

pub enum Target {
    Dir {
        root: PathBuf,
        store: DirStore,
    },
    S3 {
        cloud: Box<Cloud>,
        store: statapp_aws::S3Store,
    },
}

impl Target {
    pub fn open(arg: &BucketArg) -> Result<Self> {
        Ok(match &arg.bucket {
            Some(root) => {
                let store = DirStore::open(root, "statapp-local")
                    .with_context(|| format!("opening the directory bucket {}", root.display()))?;
                Target::Dir {
                    root: root.clone(),
                    store,
                }
            }
            None => {
                let cloud = Cloud::connect()?;
                let store = cloud.store();
                Target::S3 {
                    cloud: Box::new(cloud),
                    store,
                }
            }
        })
    }

    pub fn store(&self) -> &dyn ObjectStore {
        match self {
            Target::Dir { store, .. } => store,
            Target::S3 { store, .. } => store,
        }
    }

    /// Where uploads go: statapp's prefixes and the original's where its variables are set.
    pub fn prefixes(&self) -> Prefixes {
        match self {
            Target::Dir { .. } => Prefixes::from_env(),
            Target::S3 { cloud, .. } => cloud.config.prefixes.clone(),
        }
    }

    /// `s3://bucket/` or the directory, to prefix keys in messages.
    pub fn url(&self) -> String {
        match self {
            Target::Dir { root, .. } => format!("{}/", root.display()),
            Target::S3 { store, .. } => format!("s3://{}/", store.bucket()),
        }
    }
}
