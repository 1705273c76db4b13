//! `ObjectStore` on S3. Objects are always whole: a body above the multipart threshold goes up in
//! parts and only becomes visible when the upload completes (an interrupted upload is aborted, or
//! left for the bucket's abort-incomplete-uploads rule if the process died); `put_if_absent` and
//! `put_if_version` are S3's conditional writes (`If-None-Match: *`, `If-Match: <etag>`).

use crate::{Aws, describe};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, EncodingType, ObjectIdentifier,
};
use statapp_pipeline::events::decode_key;
use statapp_pipeline::{Key, ObjectStore, StoreError};

/// Bodies larger than this are uploaded in parts (S3 allows 5 GiB in one PUT, but parts can be
/// retried alone and keep one request's memory bounded).
pub const MULTIPART_THRESHOLD: usize = 64 << 20;
/// Keys per `DeleteObjects` request: S3's maximum.
pub const DELETE_BATCH: usize = 1000;
/// Part size of multipart uploads (S3's minimum is 5 MiB for every part but the last).
pub const PART_SIZE: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct S3Store {
    aws: Aws,
    bucket: String,
    multipart_threshold: usize,
    part_size: usize,
}

fn io_err(key: &str, detail: impl Into<String>) -> StoreError {
    StoreError::Io {
        key: key.to_string(),
        detail: detail.into(),
    }
}

/// The outcome of a conditional write.
enum Written {
    Yes,
    /// The precondition failed: another object is there (or, for `If-Match`, none is).
    Refused,
}

/// When a write may happen.
#[derive(Clone, Copy)]
enum Condition<'a> {
    Always,
    /// `If-None-Match: *`
    Absent,
    /// `If-Match: <etag>`
    Matches(&'a str),
}

impl Condition<'_> {
    /// Whether the error response is this condition's refusal (412; 404 for `If-Match` on an
    /// object deleted meanwhile).
    fn refused(self, raw: Option<&aws_sdk_s3::config::http::HttpResponse>) -> bool {
        match self {
            Condition::Always => false,
            Condition::Absent => precondition_failed(raw),
            Condition::Matches(_) => precondition_failed(raw) || not_found(raw),
        }
    }
}

impl S3Store {
    pub fn new(aws: Aws, bucket: impl Into<String>) -> Self {
        Self {
            aws,
            bucket: bucket.into(),
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
        }
    }

    /// Changes when multipart uploads are used and their part size (tests use small ones).
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(1);
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn write(
        &self,
        key: &Key,
        body: &[u8],
        when: Condition<'_>,
    ) -> Result<Written, StoreError> {
        if body.len() > self.multipart_threshold {
            return self.write_multipart(key, body, when).await;
        }
        let mut req = self
            .aws
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(ByteStream::from(body.to_vec()));
        match when {
            Condition::Always => {}
            Condition::Absent => req = req.if_none_match("*"),
            Condition::Matches(etag) => req = req.if_match(etag),
        }
        match req.send().await {
            Ok(_) => Ok(Written::Yes),
            Err(e) if when.refused(e.raw_response()) => Ok(Written::Refused),
            Err(e) => Err(io_err(key.as_str(), describe(e))),
        }
    }

    async fn write_multipart(
        &self,
        key: &Key,
        body: &[u8],
        when: Condition<'_>,
    ) -> Result<Written, StoreError> {
        let s3 = &self.aws.s3;
        let created = s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| io_err(key.as_str(), describe(e)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| io_err(key.as_str(), "multipart upload without an id"))?
            .to_string();
        let result = self.upload_parts(key, body, &upload_id, when).await;
        if !matches!(result, Ok(Written::Yes)) {
            // nothing becomes visible; free the parts already stored
            if let Err(e) = s3
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(key = key.as_str(), error = %describe(e), "abort of a failed multipart upload failed");
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &Key,
        body: &[u8],
        upload_id: &str,
        when: Condition<'_>,
    ) -> Result<Written, StoreError> {
        let s3 = &self.aws.s3;
        let mut parts = Vec::new();
        for (i, chunk) in body.chunks(self.part_size).enumerate() {
            let number =
                i32::try_from(i + 1).map_err(|_| io_err(key.as_str(), "too many parts"))?;
            let part = s3
                .upload_part()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| io_err(key.as_str(), describe(e)))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .build(),
            );
        }
        let mut req = s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        match when {
            Condition::Always => {}
            Condition::Absent => req = req.if_none_match("*"),
            Condition::Matches(etag) => req = req.if_match(etag),
        }
        match req.send().await {
            Ok(_) => Ok(Written::Yes),
            Err(e) if when.refused(e.raw_response()) => Ok(Written::Refused),
            Err(e) => Err(io_err(key.as_str(), describe(e))),
        }
    }
}

impl S3Store {
    /// GetObject; `None` for a missing key.
    async fn get_object(
        &self,
        key: &Key,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>, StoreError> {
        match self
            .aws
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(e) if not_found(e.raw_response()) => Ok(None),
            Err(e) => Err(io_err(key.as_str(), describe(e))),
        }
    }
}

fn precondition_failed(raw: Option<&aws_sdk_s3::config::http::HttpResponse>) -> bool {
    raw.is_some_and(|r| r.status().as_u16() == 412)
}

fn not_found(raw: Option<&aws_sdk_s3::config::http::HttpResponse>) -> bool {
    raw.is_some_and(|r| r.status().as_u16() == 404)
}

impl ObjectStore for S3Store {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.aws.block_on(async {
            let Some(resp) = self.get_object(key).await? else {
                return Ok(None);
            };
            let body = resp
                .body
                .collect()
                .await
                .map_err(|e| io_err(key.as_str(), format!("reading the body: {e}")))?;
            Ok(Some(body.into_bytes().to_vec()))
        })
    }

    fn put(&self, key: &Key, body: &[u8]) -> Result<(), StoreError> {
        self.aws
            .block_on(self.write(key, body, Condition::Always))
            .map(|_| ())
    }

    fn put_if_absent(&self, key: &Key, body: &[u8]) -> Result<bool, StoreError> {
        self.aws
            .block_on(self.write(key, body, Condition::Absent))
            .map(|w| matches!(w, Written::Yes))
    }

    fn get_versioned(&self, key: &Key) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        self.aws.block_on(async {
            let Some(resp) = self.get_object(key).await? else {
                return Ok(None);
            };
            let etag = resp
                .e_tag()
                .ok_or_else(|| io_err(key.as_str(), "GetObject answered without an ETag"))?
                .to_string();
            let body = resp
                .body
                .collect()
                .await
                .map_err(|e| io_err(key.as_str(), format!("reading the body: {e}")))?;
            Ok(Some((body.into_bytes().to_vec(), etag)))
        })
    }

    fn put_if_version(
        &self,
        key: &Key,
        body: &[u8],
        version: Option<&str>,
    ) -> Result<bool, StoreError> {
        let when = version.map_or(Condition::Absent, Condition::Matches);
        self.aws
            .block_on(self.write(key, body, when))
            .map(|w| matches!(w, Written::Yes))
    }

    fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        Ok(self.head(key)?.is_some())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.aws.block_on(async {
            let mut out = Vec::new();
            let mut pages = self
                .aws
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                // keys may hold characters XML 1.0 cannot carry (a hostile upload's control
                // characters): have S3 percent-encode them
                .encoding_type(EncodingType::Url)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| io_err(prefix, describe(e)))?;
                for obj in page.contents() {
                    let Some(encoded) = obj.key() else { continue };
                    let Some(raw) = decode_key(encoded) else {
                        tracing::warn!(key = encoded, "object skipped: undecodable key");
                        continue;
                    };
                    // objects whose names are not valid keys (hostile uploads) are not ours
                    match Key::new(raw.as_str()) {
                        Ok(k) if prefix.is_empty() || k.is_under(prefix) => out.push(k),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(key = %raw.escape_debug(), error = %e, "object skipped")
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.aws.block_on(async {
            self.aws
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| io_err(key.as_str(), describe(e)))
        })
    }

    /// `DeleteObjects` in batches of [`DELETE_BATCH`] keys (S3 refuses more in one request); a
    /// key S3 reports as not deleted is an error naming it.
    fn delete_many(&self, keys: &[Key]) -> Result<usize, StoreError> {
        self.aws.block_on(async {
            for batch in keys.chunks(DELETE_BATCH) {
                let ids = batch
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(k.as_str()).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| io_err(batch[0].as_str(), e.to_string()))?;
                let delete = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| io_err(batch[0].as_str(), e.to_string()))?;
                let out = self
                    .aws
                    .s3
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| io_err(batch[0].as_str(), describe(e)))?;
                if let Some(e) = out.errors().first() {
                    let key = e.key().unwrap_or("?");
                    return Err(io_err(
                        key,
                        format!("not deleted: {}", e.message().unwrap_or("?")),
                    ));
                }
            }
            Ok(keys.len())
        })
    }

    fn modified(&self, key: &Key) -> Result<Option<std::time::SystemTime>, StoreError> {
        let Some(head) = self.head(key)? else {
            return Ok(None);
        };
        let t = head
            .last_modified()
            .ok_or_else(|| io_err(key.as_str(), "HEAD answered without Last-Modified"))?;
        let secs = u64::try_from(t.secs())
            .map_err(|_| io_err(key.as_str(), format!("Last-Modified {t} is before 1970")))?;
        Ok(Some(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        ))
    }
}

impl S3Store {
    /// The object's metadata (`HeadObject`); `None` when there is no such object.
    fn head(&self, key: &Key) -> Result<Option<HeadObjectOutput>, StoreError> {
        self.aws.block_on(async {
            match self
                .aws
                .s3
                .head_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .send()
                .await
            {
                Ok(head) => Ok(Some(head)),
                Err(e) if not_found(e.raw_response()) => Ok(None),
                Err(e) => Err(io_err(key.as_str(), describe(e))),
            }
        })
    }
}
