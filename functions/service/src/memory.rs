//! In-memory fakes of the object store and the job queue, for tests of the
//! API and the worker that run in milliseconds without LocalStack. They keep
//! the semantics the code relies on: ETags that change on every write,
//! `If-Match` / `If-None-Match` writes, copy-if-match, ranged reads, listing
//! in key order, presigned PUTs bound to one key and length. Every call is
//! counted, so tests can pin what an operation costs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bytes::Bytes;
use chunkstream_domain::state::Lane;

use crate::queue::{Job, JobQueue, QueueError};
use crate::store::{
    ObjectHead, ObjectMeta, ObjectStore, PresignedUpload, PutCondition, StoreError, StoredObject,
    StreamedObject,
};

#[derive(Debug, Clone)]
struct Object {
    body: Bytes,
    etag: String,
    content_type: String,
    cache_control: Option<String>,
}

/// The object store fake.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Object>>,
    next_etag: AtomicU64,
    calls: Mutex<BTreeMap<&'static str, u64>>,
    /// every read and write lets other tasks run first, as a network round trip
    /// would: concurrent requests interleave (tests of races)
    interleave: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const PRESIGN_SCHEME: &str = "memory:///";

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose calls interleave across concurrent requests (see `interleave`).
    pub fn interleaved() -> Self {
        Self {
            interleave: true,
            ..Self::default()
        }
    }

    async fn turn(&self) {
        if self.interleave {
            tokio::task::yield_now().await;
        }
    }

    fn count(&self, call: &'static str) {
        *lock(&self.calls).entry(call).or_default() += 1;
    }

    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.next_etag.fetch_add(1, Ordering::SeqCst))
    }

    /// Stores an object as a client would (not counted); returns its ETag.
    pub fn insert(&self, key: &str, body: impl Into<Bytes>) -> String {
        let etag = self.etag();
        lock(&self.objects).insert(
            key.to_string(),
            Object {
                body: body.into(),
                etag: etag.clone(),
                content_type: "application/octet-stream".into(),
                cache_control: None,
            },
        );
        etag
    }

    /// PUTs `body` to a URL from [`ObjectStore::presign_put`] as a client
    /// would, refusing (like S3's 403) another length than the one signed.
    pub fn upload(&self, url: &str, body: impl Into<Bytes>) -> Result<String, String> {
        let body = body.into();
        let rest = url
            .strip_prefix(PRESIGN_SCHEME)
            .ok_or("not a memory-store URL")?;
        let (key, length) = rest.split_once("?content-length=").ok_or("malformed URL")?;
        let length: u64 = length.parse().map_err(|_| "malformed URL")?;
        if body.len() as u64 != length {
            return Err(format!("403: {} bytes sent, {length} signed", body.len()));
        }
        Ok(self.insert(key, body))
    }

    pub fn object(&self, key: &str) -> Option<Bytes> {
        lock(&self.objects).get(key).map(|o| o.body.clone())
    }

    /// The Cache-Control stored with an object.
    pub fn cache_control_of(&self, key: &str) -> Option<String> {
        lock(&self.objects).get(key)?.cache_control.clone()
    }

    pub fn etag_of(&self, key: &str) -> Option<String> {
        lock(&self.objects).get(key).map(|o| o.etag.clone())
    }

    pub fn remove(&self, key: &str) -> bool {
        lock(&self.objects).remove(key).is_some()
    }

    /// Keys under `prefix`, in order.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        lock(&self.objects)
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// How many times each trait method was called.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.calls).clone()
    }

    pub fn reset_calls(&self) {
        lock(&self.calls).clear();
    }
}

fn stream_of(body: Bytes) -> crate::store::ByteStreamBox {
    Box::pin(futures::stream::iter([Ok::<_, std::io::Error>(body)]))
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.turn().await;
        self.count("get");
        Ok(lock(&self.objects).get(key).map(|o| StoredObject {
            body: o.body.clone(),
            etag: o.etag.clone(),
        }))
    }

    async fn get_head(&self, key: &str, max_bytes: u64) -> Result<Option<ObjectHead>, StoreError> {
        self.count("get_head");
        Ok(lock(&self.objects).get(key).map(|o| {
            let take = (o.body.len() as u64).min(max_bytes) as usize;
            ObjectHead {
                head: o.body.slice(..take),
                total_len: o.body.len() as u64,
                etag: o.etag.clone(),
            }
        }))
    }

    async fn get_stream(&self, key: &str) -> Result<Option<StreamedObject>, StoreError> {
        self.count("get_stream");
        Ok(lock(&self.objects).get(key).map(|o| StreamedObject {
            content_length: o.body.len() as u64,
            content_type: Some(o.content_type.clone()),
            body: stream_of(o.body.clone()),
        }))
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        condition: PutCondition,
    ) -> Result<String, StoreError> {
        self.turn().await;
        self.count("put");
        let mut objects = lock(&self.objects);
        let holds = match (&condition, objects.get(key)) {
            (PutCondition::Always, _) => true,
            (PutCondition::IfAbsent, existing) => existing.is_none(),
            (PutCondition::IfMatch(etag), Some(o)) => &o.etag == etag,
            // S3 answers 404 here; for the callers it is the same lost race.
            (PutCondition::IfMatch(_), None) => false,
        };
        if !holds {
            return Err(StoreError::PreconditionFailed(key.to_string()));
        }
        let etag = self.etag();
        objects.insert(
            key.to_string(),
            Object {
                body,
                etag: etag.clone(),
                content_type: content_type.to_string(),
                cache_control: None,
            },
        );
        Ok(etag)
    }

    async fn put_cached(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<String, StoreError> {
        self.count("put");
        let etag = self.etag();
        lock(&self.objects).insert(
            key.to_string(),
            Object {
                body,
                etag: etag.clone(),
                content_type: content_type.to_string(),
                cache_control: Some(cache_control.to_string()),
            },
        );
        Ok(etag)
    }

    async fn copy(&self, from: &str, to: &str, source_etag: &str) -> Result<(), StoreError> {
        self.count("copy");
        let mut objects = lock(&self.objects);
        let source = match objects.get(from) {
            None => {
                return Err(StoreError::Refused {
                    op: "copy",
                    key: from.to_string(),
                    code: "NoSuchKey".into(),
                    detail: "The specified key does not exist.".into(),
                })
            }
            Some(o) if o.etag != source_etag => {
                return Err(StoreError::PreconditionFailed(from.to_string()))
            }
            Some(o) => o.body.clone(),
        };
        let etag = self.etag();
        objects.insert(
            to.to_string(),
            Object {
                body: source,
                etag,
                content_type: "video/mp4".into(),
                cache_control: Some(crate::store::IMMUTABLE.into()),
            },
        );
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        self.count("delete_prefix");
        let keys = self.keys(prefix);
        let mut objects = lock(&self.objects);
        for key in &keys {
            objects.remove(key);
        }
        Ok(keys.len())
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.count("list_children");
        let mut children: Vec<String> = self
            .keys(prefix)
            .iter()
            .filter_map(|k| {
                let rest = k.strip_prefix(prefix)?;
                let (child, _) = rest.split_once('/')?;
                Some(format!("{prefix}{child}/"))
            })
            .collect();
        children.dedup();
        Ok(children)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.turn().await;
        self.count("head");
        Ok(lock(&self.objects).get(key).map(|o| ObjectMeta {
            len: o.body.len() as u64,
            etag: o.etag.clone(),
        }))
    }

    async fn list_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.turn().await;
        self.count("list_keys");
        Ok(self
            .keys(prefix)
            .into_iter()
            .filter(|k| start_after.is_none_or(|after| k.as_str() > after))
            .take(max)
            .collect())
    }

    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        self.count("presign_put");
        Ok(PresignedUpload {
            method: "PUT".into(),
            url: format!("{PRESIGN_SCHEME}{key}?content-length={content_length}"),
            headers: [
                ("content-type".to_string(), content_type.to_string()),
                ("content-length".to_string(), content_length.to_string()),
            ]
            .into(),
            expires_at: SystemTime::now() + ttl,
        })
    }
}

/// The job queue fake: two FIFO lanes. [`MemoryQueue::receive`] hands out
/// batches the way an SQS event source would (priority lane first); jobs a
/// batch reports as failed go back with [`MemoryQueue::redeliver`].
#[derive(Debug, Default)]
pub struct MemoryQueue {
    lanes: Mutex<HashMap<Lane, VecDeque<Job>>>,
    in_flight: Mutex<HashMap<String, Job>>,
    next_id: AtomicU64,
    sent: AtomicU64,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Jobs waiting in `lane`, oldest first.
    pub fn waiting(&self, lane: Lane) -> Vec<Job> {
        lock(&self.lanes)
            .get(&lane)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        lock(&self.lanes).values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages sent since the start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Takes up to `max` jobs, priority lane first, as one SQS event.
    pub fn receive(&self, max: usize) -> SqsEvent {
        let mut lanes = lock(&self.lanes);
        let mut in_flight = lock(&self.in_flight);
        let mut event = SqsEvent::default();
        for lane in [Lane::Priority, Lane::Normal] {
            let Some(queue) = lanes.get_mut(&lane) else {
                continue;
            };
            while event.records.len() < max {
                let Some(job) = queue.pop_front() else { break };
                let id = format!("m-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
                let mut message = SqsMessage::default();
                message.message_id = Some(id.clone());
                message.body = serde_json::to_string(&job).ok();
                in_flight.insert(id, job);
                event.records.push(message);
            }
        }
        event
    }

    /// Settles a received batch: the failed messages come back (at the back
    /// of their lane), the rest are deleted.
    pub fn settle(&self, event: &SqsEvent, failed: &[String]) {
        let mut in_flight = lock(&self.in_flight);
        let mut lanes = lock(&self.lanes);
        for message in &event.records {
            let Some(id) = &message.message_id else {
                continue;
            };
            if let Some(job) = in_flight.remove(id) {
                if failed.contains(id) {
                    lanes.entry(job.lane).or_default().push_back(job);
                }
            }
        }
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        lock(&self.lanes)
            .entry(job.lane)
            .or_default()
            .push_back(job.clone());
        Ok(())
    }
}
