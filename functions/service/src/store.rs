//! The object store capability (S3 is the only store: no database) and its
//! AWS adapter.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::Stream;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race (`If-Match` / `If-None-Match`).
    #[error("precondition failed on {0}")]
    PreconditionFailed(String),
    /// Worth retrying later: throttling, 5xx, timeouts, a dropped connection.
    /// (The SDK has already retried a few times by the time this comes back.)
    #[error("{op} {key}: temporarily unavailable: {detail}")]
    Unavailable {
        op: &'static str,
        key: String,
        detail: String,
    },
    /// Retrying cannot help until someone changes something: access denied,
    /// no such bucket, a malformed request, an unreadable response.
    #[error("{op} {key}: refused ({code}): {detail}")]
    Refused {
        op: &'static str,
        key: String,
        code: String,
        detail: String,
    },
}

impl StoreError {
    /// True when the same call may succeed later without anyone intervening.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::PreconditionFailed(_) | StoreError::Unavailable { .. }
        )
    }
}

/// S3 error codes that mean "busy or briefly broken", not "you may not".
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "OperationAborted",
    "ConditionalRequestConflict",
];

/// Whether an S3 error code (with its HTTP status, if any) is worth retrying.
pub fn is_transient_code(code: &str, status: Option<u16>) -> bool {
    TRANSIENT_CODES.contains(&code) || status.is_some_and(|s| s == 429 || s >= 500)
}

/// How a write relates to what is already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    Always,
    /// Only if no object exists at the key.
    IfAbsent,
    /// Only if the stored object still has this ETag.
    IfMatch(String),
}

/// A small object read whole, with its ETag for conditional writes.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub body: Bytes,
    pub etag: String,
}

/// The first bytes of a (possibly large) object and its real length.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    pub head: Bytes,
    pub total_len: u64,
    pub etag: String,
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len: u64,
    pub etag: String,
}

pub type ByteStreamBox = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// An object to stream to a viewer.
pub struct StreamedObject {
    pub content_length: u64,
    pub content_type: Option<String>,
    pub body: ByteStreamBox,
}

/// A presigned upload: the client sends exactly these headers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PresignedUpload {
    /// `PUT`.
    pub method: String,
    /// The storage URL (S3, presigned): no credential of the API goes with it.
    pub url: String,
    /// Headers the PUT must carry (those the signature covers).
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working (RFC 3339).
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: SystemTime,
}

/// Cache-Control of published init and media segments: they never change.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError>;
    /// Reads at most `max_bytes` from the start of the object.
    async fn get_head(&self, key: &str, max_bytes: u64) -> Result<Option<ObjectHead>, StoreError>;
    async fn get_stream(&self, key: &str) -> Result<Option<StreamedObject>, StoreError>;
    /// Returns the new ETag.
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        condition: PutCondition,
    ) -> Result<String, StoreError>;
    /// Like [`ObjectStore::put`] (unconditional), storing `cache_control` as
    /// the object's Cache-Control, which S3 (and a CDN in front) serves with it.
    async fn put_cached(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<String, StoreError>;
    /// Server-side copy, only if the source still has `source_etag`. The copy
    /// is published: it gets [`IMMUTABLE`] as its Cache-Control.
    async fn copy(&self, from: &str, to: &str, source_etag: &str) -> Result<(), StoreError>;
    /// Deletes every object under `prefix`; fails (without looping) if S3
    /// refuses any key. Returns how many were deleted.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError>;
    /// Common prefixes one level below `prefix` (delimiter `/`).
    async fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Size and ETag of an object, without reading it.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// Up to `max` keys under `prefix` that sort after `start_after`, in key order.
    async fn list_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// A PUT URL bound to `key`, `content_type` and exactly `content_length` bytes.
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<PresignedUpload, StoreError>;
}

/// The S3 adapter.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// Signs upload URLs; the same client unless clients reach S3 by another endpoint.
    presign_client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            presign_client: client.clone(),
            client,
            bucket: bucket.into(),
        }
    }

    /// Presigned URLs name `endpoint` (`CHUNKSTREAM_S3_PUBLIC_ENDPOINT`) instead of the
    /// endpoint this process uses; `None` keeps the SDK's.
    pub fn with_presign_endpoint(mut self, endpoint: Option<&str>) -> Self {
        if let Some(endpoint) = endpoint {
            let conf = self
                .client
                .config()
                .to_builder()
                .endpoint_url(endpoint)
                .build();
            self.presign_client = aws_sdk_s3::Client::from_conf(conf);
        }
        self
    }
}

fn backend<E: ProvideErrorMetadata + std::fmt::Debug>(
    op: &'static str,
    key: &str,
    err: SdkError<E, S3Response>,
) -> StoreError {
    let key = key.to_string();
    match &err {
        SdkError::ServiceError(_) => {
            let status = http_status(&err);
            let meta = err.as_service_error();
            let code = meta
                .and_then(|e| e.code())
                .map_or_else(|| format!("HTTP {}", status.unwrap_or(0)), str::to_string);
            let detail = meta.and_then(|e| e.message()).unwrap_or("").to_string();
            if is_transient_code(&code, status) {
                StoreError::Unavailable {
                    op,
                    key,
                    detail: format!("{code}: {detail}"),
                }
            } else {
                StoreError::Refused {
                    op,
                    key,
                    code,
                    detail,
                }
            }
        }
        // Nothing was sent: a bug or bad configuration, not the network.
        SdkError::ConstructionFailure(_) => StoreError::Refused {
            op,
            key,
            code: "ConstructionFailure".into(),
            detail: format!("{err:?}"),
        },
        // Timeouts, connection failures, a response cut short.
        _ => StoreError::Unavailable {
            op,
            key,
            detail: format!("{err:?}"),
        },
    }
}

/// Reading a response body failed part way: the connection, so retryable.
fn body_error(key: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        op: "read",
        key: key.to_string(),
        detail: err.to_string(),
    }
}

type S3Response = aws_sdk_s3::config::http::HttpResponse;

fn http_status<E>(err: &SdkError<E, S3Response>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn is_precondition_failure<E: ProvideErrorMetadata>(err: &SdkError<E, S3Response>) -> bool {
    let by_code = err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "PreconditionFailed" || c == "ConditionalRequestConflict");
    by_code || matches!(http_status(err), Some(409 | 412))
}

/// The key is absent. A missing *bucket* is also a 404, but it is a
/// misconfiguration, never "no such video".
fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, S3Response>) -> bool {
    let code = err.as_service_error().and_then(|e| e.code());
    code != Some("NoSuchBucket")
        && (matches!(code, Some("NoSuchKey" | "NotFound")) || http_status(err) == Some(404))
}

fn clean_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().to_string()
}

fn into_stream(body: ByteStream) -> ByteStreamBox {
    Box::pin(futures::stream::unfold(body, |mut body| async move {
        match body.next().await {
            None => None,
            Some(Ok(chunk)) => Some((Ok(chunk), body)),
            Some(Err(e)) => Some((Err(std::io::Error::other(e)), body)),
        }
    }))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = clean_etag(out.e_tag());
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| body_error(key, e))?
                    .into_bytes();
                Ok(Some(StoredObject { body, etag }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend("get", key, e)),
        }
    }

    async fn get_head(&self, key: &str, max_bytes: u64) -> Result<Option<ObjectHead>, StoreError> {
        let range = format!("bytes=0-{}", max_bytes.saturating_sub(1));
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(range)
            .send()
            .await
        {
            Ok(out) => {
                let etag = clean_etag(out.e_tag());
                // Content-Range: bytes 0-N/TOTAL; without it the whole object came back.
                let total_from_range = out
                    .content_range()
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|t| t.parse::<u64>().ok());
                let content_length = out.content_length().unwrap_or(0).max(0) as u64;
                let mut head = Vec::with_capacity(content_length.min(max_bytes) as usize);
                let mut body = out.body;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| body_error(key, e))?;
                    let room = (max_bytes as usize).saturating_sub(head.len());
                    head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                let total_len = total_from_range.unwrap_or(content_length);
                Ok(Some(ObjectHead {
                    head: Bytes::from(head),
                    total_len,
                    etag,
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            // An empty object cannot satisfy a range.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidRange") => {
                Ok(Some(ObjectHead {
                    head: Bytes::new(),
                    total_len: 0,
                    etag: String::new(),
                }))
            }
            Err(e) => Err(backend("get", key, e)),
        }
    }

    async fn get_stream(&self, key: &str) -> Result<Option<StreamedObject>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(StreamedObject {
                content_length: out.content_length().unwrap_or(0).max(0) as u64,
                content_type: out.content_type().map(str::to_string),
                body: into_stream(out.body),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend("get", key, e)),
        }
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        condition: PutCondition,
    ) -> Result<String, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        req = match &condition {
            PutCondition::Always => req,
            PutCondition::IfAbsent => req.if_none_match("*"),
            PutCondition::IfMatch(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(clean_etag(out.e_tag())),
            Err(e) if condition != PutCondition::Always && is_precondition_failure(&e) => {
                Err(StoreError::PreconditionFailed(key.to_string()))
            }
            Err(e) => Err(backend("put", key, e)),
        }
    }

    async fn put_cached(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<String, StoreError> {
        match self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .cache_control(cache_control)
            .body(ByteStream::from(body))
            .send()
            .await
        {
            Ok(out) => Ok(clean_etag(out.e_tag())),
            Err(e) => Err(backend("put", key, e)),
        }
    }

    async fn copy(&self, from: &str, to: &str, source_etag: &str) -> Result<(), StoreError> {
        let source = format!("{}/{}", self.bucket, from);
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(source)
            .copy_source_if_match(source_etag)
            .content_type("video/mp4")
            // Published segments never change: CDNs and players may keep them.
            .cache_control(IMMUTABLE)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failure(&e) => {
                Err(StoreError::PreconditionFailed(from.to_string()))
            }
            Err(e) => Err(backend("copy", from, e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        // One pass over the listing (continuation tokens survive deletes), so
        // a key that cannot be deleted is reported instead of re-listed forever.
        let mut deleted = 0;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| backend("list", prefix, e))?;
            let ids: Vec<_> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(k)
                        .build()
                        .ok()
                })
                .collect();
            if !ids.is_empty() {
                let count = ids.len();
                let delete = aws_sdk_s3::types::Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| StoreError::Refused {
                        op: "delete",
                        key: prefix.to_string(),
                        code: "BuildError".into(),
                        detail: e.to_string(),
                    })?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| backend("delete", prefix, e))?;
                // DeleteObjects answers 200 even when some keys were not deleted.
                if let Some(first) = out.errors().first() {
                    let code = first.code().unwrap_or("?").to_string();
                    let detail = format!(
                        "{} of {count} keys not deleted, first {}: {}",
                        out.errors().len(),
                        first.key().unwrap_or("?"),
                        first.message().unwrap_or("")
                    );
                    let key = prefix.to_string();
                    return Err(if is_transient_code(&code, None) {
                        StoreError::Unavailable {
                            op: "delete",
                            key,
                            detail: format!("{code}: {detail}"),
                        }
                    } else {
                        StoreError::Refused {
                            op: "delete",
                            key,
                            code,
                            detail,
                        }
                    });
                }
                deleted += count;
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(deleted),
            }
        }
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| backend("list", prefix, e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix())
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                len: out.content_length().unwrap_or(0).max(0) as u64,
                etag: clean_etag(out.e_tag()),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend("head", key, e)),
        }
    }

    async fn list_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < max {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(str::to_string))
                .set_continuation_token(token.take())
                .max_keys(i32::try_from(max - out.len()).unwrap_or(1000).min(1000))
                .send()
                .await
                .map_err(|e| backend("list", prefix, e))?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.truncate(max);
        Ok(out)
    }

    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        let refused = |code: &str, detail: String| StoreError::Refused {
            op: "presign",
            key: key.to_string(),
            code: code.to_string(),
            detail,
        };
        let config =
            PresigningConfig::expires_in(ttl).map_err(|e| refused("InvalidTtl", e.to_string()))?;
        let length = i64::try_from(content_length)
            .map_err(|_| refused("InvalidLength", format!("{content_length} bytes")))?;
        let presigned = self
            .presign_client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .presigned(config)
            .await
            .map_err(|e| backend("presign", key, e))?;
        let mut headers: BTreeMap<String, String> = presigned
            .headers()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        // Browsers set these themselves; listing them tells other clients what is signed.
        headers.insert("content-type".into(), content_type.into());
        headers.insert("content-length".into(), content_length.to_string());
        Ok(PresignedUpload {
            method: presigned.method().to_string(),
            url: presigned.uri().to_string(),
            headers,
            expires_at: SystemTime::now() + ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    async fn presigned_url(store: &S3Store) -> String {
        store
            .presign_put(
                "incoming/v/0/0.m4s",
                "video/mp4",
                42,
                Duration::from_secs(60),
            )
            .await
            .expect("presigning needs no network")
            .url
    }

    #[tokio::test]
    async fn presigned_urls_name_the_public_endpoint_when_one_is_set() {
        let store = S3Store::new(client("http://127.0.0.1:4566"), "bkt")
            .with_presign_endpoint(Some("http://10.77.0.1:4566"));
        let url = presigned_url(&store).await;
        assert!(
            url.starts_with("http://10.77.0.1:4566/bkt/incoming/v/0/0.m4s?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "{url}");
    }

    #[tokio::test]
    async fn presigned_urls_name_the_sdk_endpoint_by_default() {
        let store =
            S3Store::new(client("http://127.0.0.1:4566"), "bkt").with_presign_endpoint(None);
        let url = presigned_url(&store).await;
        assert!(url.starts_with("http://127.0.0.1:4566/bkt/"), "{url}");
    }
}
