//! A counting wrapper around any object store and job queue: what the load
//! benchmark uses to report S3 and SQS requests per part and per viewer-minute
//! against real LocalStack (the memory fake counts its own calls).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::queue::{Job, JobQueue, QueueError};
use crate::store::{
    ObjectHead, ObjectMeta, ObjectStore, PresignedUpload, PutCondition, StoreError, StoredObject,
    StreamedObject,
};

/// Counts calls by kind (`get`, `put`, `copy`, …; `send` for the queue).
#[derive(Default, Clone)]
pub struct Counts(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl Counts {
    fn add(&self, kind: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    pub counts: Counts,
    /// Bytes the reads brought back: GET bodies, ranged GETs' heads, streamed GETs' lengths.
    pub bytes_read: Arc<AtomicU64>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counts: Counts::default(),
            bytes_read: Arc::default(),
        }
    }

    fn read(&self, bytes: usize) {
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.counts.add("get");
        let got = self.inner.get(key).await?;
        self.read(got.as_ref().map_or(0, |o| o.body.len()));
        Ok(got)
    }
    async fn get_head(&self, key: &str, max_bytes: u64) -> Result<Option<ObjectHead>, StoreError> {
        self.counts.add("get");
        let got = self.inner.get_head(key, max_bytes).await?;
        self.read(got.as_ref().map_or(0, |o| o.head.len()));
        Ok(got)
    }
    async fn get_stream(&self, key: &str) -> Result<Option<StreamedObject>, StoreError> {
        self.counts.add("get");
        let got = self.inner.get_stream(key).await?;
        self.read(got.as_ref().map_or(0, |o| o.content_length as usize));
        Ok(got)
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        condition: PutCondition,
    ) -> Result<String, StoreError> {
        self.counts.add("put");
        self.inner.put(key, body, content_type, condition).await
    }
    async fn put_cached(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<String, StoreError> {
        self.counts.add("put");
        self.inner
            .put_cached(key, body, content_type, cache_control)
            .await
    }
    async fn copy(&self, from: &str, to: &str, source_etag: &str) -> Result<(), StoreError> {
        self.counts.add("copy");
        self.inner.copy(from, to, source_etag).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        // One LIST and (when anything is there) one DeleteObjects per 1000 keys.
        self.counts.add("list");
        let n = self.inner.delete_prefix(prefix).await?;
        if n > 0 {
            self.counts.add("delete");
        }
        Ok(n)
    }
    async fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.counts.add("list");
        self.inner.list_children(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.counts.add("head");
        self.inner.head(key).await
    }
    async fn list_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.counts.add("list");
        self.inner.list_keys(prefix, start_after, max).await
    }
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        // Signed locally: not a request.
        self.inner
            .presign_put(key, content_type, content_length, ttl)
            .await
    }
}

pub struct CountingQueue {
    inner: Arc<dyn JobQueue>,
    pub counts: Counts,
}

impl CountingQueue {
    pub fn new(inner: Arc<dyn JobQueue>) -> Self {
        Self {
            inner,
            counts: Counts::default(),
        }
    }
}

#[async_trait]
impl JobQueue for CountingQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        self.counts.add("send");
        self.inner.enqueue(job).await
    }

    /// Counts what SQS would bill: one request per lane and ten jobs.
    async fn enqueue_batch(&self, jobs: &[Job]) -> Result<(), QueueError> {
        for _ in crate::queue::batch_requests(jobs) {
            self.counts.add("send");
        }
        self.inner.enqueue_batch(jobs).await
    }
}
