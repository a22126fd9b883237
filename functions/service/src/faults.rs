//! Fault injection for crash-safety tests: wrappers around any
//! [`ObjectStore`] / [`JobQueue`] that fail one chosen write step, either
//! before it happens (the request never reached S3) or after it happened (the
//! process died before it saw the answer). Reads pass through untouched.
//! Every write step is logged, so a test can name each crash point.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::queue::{Job, JobQueue, QueueError};
use crate::store::{
    ObjectHead, ObjectMeta, ObjectStore, PresignedUpload, PutCondition, StoreError, StoredObject,
    StreamedObject,
};

/// When the chosen step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// The step is not applied; the caller gets a transient error.
    FailBefore,
    /// The step is applied, then the caller gets a transient error, as if
    /// the process had died right after it.
    CrashAfter,
    /// The step is not applied; the caller gets a permanent error
    /// (AccessDenied), as from a missing IAM permission.
    Deny,
}

/// Which write step fails: the `step`-th one (0-based) counted across a
/// store and a queue sharing this plan.
#[derive(Debug, Default)]
pub struct FaultPlan {
    fail_at: Option<(usize, FaultMode)>,
    steps: Vec<String>,
    fired: Option<String>,
}

impl FaultPlan {
    pub fn shared() -> Arc<Mutex<FaultPlan>> {
        Arc::default()
    }
}

fn lock(plan: &Mutex<FaultPlan>) -> std::sync::MutexGuard<'_, FaultPlan> {
    plan.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Arms (or with `None` disarms) the plan and restarts the step count.
pub fn arm(plan: &Mutex<FaultPlan>, fail_at: Option<(usize, FaultMode)>) {
    let mut p = lock(plan);
    p.fail_at = fail_at;
    p.steps.clear();
    p.fired = None;
}

/// The write steps taken since the plan was armed, e.g. `copy incoming/… -> v/…`.
pub fn steps(plan: &Mutex<FaultPlan>) -> Vec<String> {
    lock(plan).steps.clone()
}

/// The step the fault fired on, if it did.
pub fn fired(plan: &Mutex<FaultPlan>) -> Option<String> {
    lock(plan).fired.clone()
}

/// Records a step; says whether (and how) it must fail.
fn step(plan: &Mutex<FaultPlan>, what: String) -> Option<FaultMode> {
    let mut p = lock(plan);
    let index = p.steps.len();
    p.steps.push(what.clone());
    match p.fail_at {
        Some((at, mode)) if at == index => {
            p.fired = Some(what);
            Some(mode)
        }
        _ => None,
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Unavailable {
        op: "injected",
        key: what.to_string(),
        detail: "fault injected by the test".into(),
    }
}

fn denied(what: &str) -> StoreError {
    StoreError::Refused {
        op: "injected",
        key: what.to_string(),
        code: "AccessDenied".into(),
        detail: "fault injected by the test".into(),
    }
}

/// Runs `apply` unless the plan says to fail first; fails after it if told to.
async fn guarded<T, F>(plan: &Mutex<FaultPlan>, what: String, apply: F) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    match step(plan, what.clone()) {
        None => apply.await,
        Some(FaultMode::FailBefore) => Err(injected(&what)),
        Some(FaultMode::Deny) => Err(denied(&what)),
        Some(FaultMode::CrashAfter) => {
            apply.await?;
            Err(injected(&what))
        }
    }
}

pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<Mutex<FaultPlan>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, plan: Arc<Mutex<FaultPlan>>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_head(&self, key: &str, max_bytes: u64) -> Result<Option<ObjectHead>, StoreError> {
        self.inner.get_head(key, max_bytes).await
    }
    async fn get_stream(&self, key: &str) -> Result<Option<StreamedObject>, StoreError> {
        self.inner.get_stream(key).await
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        condition: PutCondition,
    ) -> Result<String, StoreError> {
        guarded(
            &self.plan,
            format!("put {key}"),
            self.inner.put(key, body, content_type, condition),
        )
        .await
    }
    async fn copy(&self, from: &str, to: &str, source_etag: &str) -> Result<(), StoreError> {
        guarded(
            &self.plan,
            format!("copy {from} -> {to}"),
            self.inner.copy(from, to, source_etag),
        )
        .await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        guarded(
            &self.plan,
            format!("delete {prefix}"),
            self.inner.delete_prefix(prefix),
        )
        .await
    }
    async fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_children(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn list_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list_keys(prefix, start_after, max).await
    }
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        self.inner
            .presign_put(key, content_type, content_length, ttl)
            .await
    }
}

pub struct FaultyQueue {
    inner: Arc<dyn JobQueue>,
    plan: Arc<Mutex<FaultPlan>>,
}

impl FaultyQueue {
    pub fn new(inner: Arc<dyn JobQueue>, plan: Arc<Mutex<FaultPlan>>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        let what = format!("send {}/{} {:?}", job.video_id, job.slot, job.lane);
        let fail = |what: &str| QueueError {
            retryable: true,
            detail: format!("{what}: fault injected by the test"),
        };
        match step(&self.plan, what.clone()) {
            None => self.inner.enqueue(job).await,
            Some(FaultMode::FailBefore) => Err(fail(&what)),
            Some(FaultMode::Deny) => Err(QueueError {
                retryable: false,
                detail: format!("{what}: AccessDenied injected by the test"),
            }),
            Some(FaultMode::CrashAfter) => {
                self.inner.enqueue(job).await?;
                Err(fail(&what))
            }
        }
    }
}
