//! Checks infra/template.yaml and infra/storage.yaml against the Rust side:
//! the variables `Config` reads, the queue names, the timeouts the code relies
//! on, the event source mappings, the build settings, and each role's S3
//! grants against the calls the code makes (on the in-memory store). No AWS needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use chunkstream::api::{app, AppState, MAX_PRIORITY_WAIT_MS};
use chunkstream::cdn::NoCdn;
use chunkstream::clock::{Clock, ManualClock, SystemClock};
use chunkstream::config::Config;
use chunkstream::keys::Keys;
use chunkstream::memory::{MemoryQueue, MemoryStore};
use chunkstream::owner::{self, OwnerConfig, OwnerState};
use chunkstream::provision::{queue_name, QueueSettings, STORAGE_TEMPLATE};
use chunkstream::reaper::{reap_abandoned, ReapSettings, CURSOR_KEY};
use chunkstream::sessions::{self, Sessions};
use chunkstream::store::{
    ObjectHead, ObjectMeta, ObjectStore, PresignedUpload, PutCondition, StoreError, StoredObject,
    StreamedObject,
};
use chunkstream::worker::{handle_batch, Worker};
use chunkstream_domain::plan::SegmentPlan;
use chunkstream_domain::state::SchedulePolicy;
use common::*;
use serde_yaml_ng::Value;

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

fn load(name: &str) -> Value {
    let path = infra().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn root() -> Value {
    load("template.yaml")
}

/// `!Tag value` → (tag without '!', value); anything else → None.
fn tagged(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        _ => None,
    }
}

fn intrinsic<'a>(v: &'a Value, tag: &str) -> &'a str {
    match tagged(v) {
        Some((t, inner)) if t == tag => inner.as_str().unwrap(),
        _ => panic!("expected !{tag} ..., got {v:?}"),
    }
}

fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("expected a number, got {v:?}"))
}

fn worker_timeout_secs(t: &Value) -> u64 {
    number(&t["Resources"]["WorkerFunction"]["Properties"]["Timeout"])
}

#[test]
fn the_cloud_stack_sets_every_required_variable_and_only_variables_the_code_reads() {
    let t = root();
    let vars = Config::variables();
    assert!(
        vars.iter().any(|(n, _)| n == "CHUNKSTREAM_BUCKET"),
        "recording lookup saw nothing: {vars:?}"
    );
    let owner_vars = chunkstream::owner::OwnerConfig::variables();
    let read: BTreeSet<&str> = vars
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(owner_vars.iter().map(String::as_str))
        .collect();
    let required: BTreeSet<&str> = vars
        .iter()
        .filter(|(_, required)| *required)
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        required.contains("CHUNKSTREAM_PRIORITY_QUEUE_URL"),
        "{required:?}"
    );

    let global = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    for function in ["ApiFunction", "PriorityFeedFunction", "WorkerFunction"] {
        let mut set: BTreeSet<String> = global
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        if let Some(own) =
            t["Resources"][function]["Properties"]["Environment"]["Variables"].as_mapping()
        {
            set.extend(own.keys().map(|k| k.as_str().unwrap().to_string()));
        }
        for name in &required {
            assert!(set.contains(*name), "{function} lacks required {name}");
        }
        for name in &set {
            // RUST_LOG is read by the tracing subscriber, not by Config.
            assert!(
                read.contains(name.as_str()) || name == "RUST_LOG",
                "{function} sets {name}, which Config never reads (read: {read:?})"
            );
        }
    }
}

#[test]
fn the_storage_template_names_the_queues_as_the_code_does_and_its_defaults_are_the_codes() {
    let s: Value = serde_yaml_ng::from_str(STORAGE_TEMPLATE).unwrap();
    assert_eq!(s, load("storage.yaml"), "the embedded template is the file");
    let r = &s["Resources"];
    for (logical, lane, dlq) in [
        ("PriorityQueue", "priority", false),
        ("NormalQueue", "normal", false),
        ("PriorityDlq", "priority", true),
        ("NormalDlq", "normal", true),
    ] {
        assert_eq!(
            intrinsic(&r[logical]["Properties"]["QueueName"], "Sub"),
            queue_name("${QueuePrefix}", lane, dlq),
            "{logical}"
        );
    }
    for (lane, dlq) in [
        ("PriorityQueue", "PriorityDlq"),
        ("NormalQueue", "NormalDlq"),
    ] {
        let redrive = &r[lane]["Properties"]["RedrivePolicy"];
        assert_eq!(
            intrinsic(&redrive["deadLetterTargetArn"], "GetAtt"),
            format!("{dlq}.Arn")
        );
        assert_eq!(
            intrinsic(&redrive["maxReceiveCount"], "Ref"),
            "MaxReceiveCount"
        );
        assert_eq!(
            intrinsic(&r[lane]["Properties"]["VisibilityTimeout"], "Ref"),
            "VisibilityTimeoutSecs"
        );
    }
    let defaults = QueueSettings::default();
    let p = &s["Parameters"];
    assert_eq!(
        number(&p["VisibilityTimeoutSecs"]["Default"]),
        u64::from(defaults.visibility_timeout_secs)
    );
    assert_eq!(
        number(&p["MaxReceiveCount"]["Default"]),
        u64::from(defaults.max_receive_count)
    );
}

#[test]
fn queue_timeouts_follow_the_sqs_event_source_guidance() {
    let t = root();
    let storage = &t["Resources"]["Storage"]["Properties"];
    assert_eq!(storage["Location"].as_str(), Some("storage.yaml"));
    let visibility = number(&storage["Parameters"]["VisibilityTimeoutSecs"]);
    let receives = number(&storage["Parameters"]["MaxReceiveCount"]);
    let worker = worker_timeout_secs(&t);
    assert!(
        visibility >= 6 * worker,
        "VisibilityTimeout {visibility} s < 6 x worker Timeout {worker} s"
    );
    assert!(receives >= 5, "maxReceiveCount {receives} < 5");
    // The local runner uses the same values (the storage template's defaults).
    let defaults = QueueSettings::default();
    assert_eq!(u64::from(defaults.visibility_timeout_secs), visibility);
    assert_eq!(u64::from(defaults.max_receive_count), receives);
}

#[test]
fn the_api_timeout_is_above_the_longest_request_and_below_the_gateways() {
    let t = root();
    let r = &t["Resources"];
    let api_timeout_ms = number(&r["ApiFunction"]["Properties"]["Timeout"]) * 1000;
    let integration_ms = number(&r["HttpApiIntegration"]["Properties"]["TimeoutInMillis"]);
    assert!(
        api_timeout_ms >= MAX_PRIORITY_WAIT_MS + 2000,
        "API Timeout {api_timeout_ms} ms leaves no room after a {MAX_PRIORITY_WAIT_MS} ms long poll"
    );
    assert!(
        api_timeout_ms < integration_ms && integration_ms <= 30_000,
        "API Timeout {api_timeout_ms} ms must be below the HTTP API integration timeout {integration_ms} ms (max 30 s)"
    );
    let origins = r["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
        .as_sequence()
        .unwrap();
    let api = origins.iter().find(|o| o["Id"] == "api").unwrap();
    let read_timeout_ms = number(&api["CustomOriginConfig"]["OriginReadTimeout"]) * 1000;
    assert!(
        read_timeout_ms >= integration_ms,
        "CloudFront gives up before the API answers"
    );
}

#[test]
fn the_priority_long_poll_runs_the_apis_code_in_its_own_smallest_function() {
    let t = root();
    let r = &t["Resources"];
    let (api, feed) = (&r["ApiFunction"], &r["PriorityFeedFunction"]);
    // Same code, same Router, same permissions: only the memory (the price of its wait) differs.
    for key in ["CodeUri", "Timeout", "Role"] {
        assert_eq!(feed["Properties"][key], api["Properties"][key], "{key}");
    }
    assert_eq!(feed["Metadata"], api["Metadata"]);
    assert_eq!(number(&feed["Properties"]["MemorySize"]), 128);
    assert!(number(&api["Properties"]["MemorySize"]) > 128);

    // The HTTP API sends exactly the long poll's route there, by the path the Router serves.
    let route = &r["PriorityFeedRoute"]["Properties"];
    let key = route["RouteKey"].as_str().unwrap();
    let (method, path) = key.split_once(' ').unwrap();
    let doc = chunkstream::openapi::document();
    let item = doc
        .paths
        .paths
        .get(path)
        .unwrap_or_else(|| panic!("the Router serves no {path}"));
    assert_eq!(method, "GET");
    assert!(
        item.get.is_some() && item.post.is_none(),
        "{path}: only the GET long poll"
    );
    assert!(path.ends_with("/priority"));
    assert_eq!(
        intrinsic(&route["Target"], "Sub"),
        "integrations/${PriorityFeedIntegration}"
    );
    let integration = &r["PriorityFeedIntegration"]["Properties"];
    assert_eq!(
        intrinsic(&integration["IntegrationUri"], "GetAtt"),
        "PriorityFeedFunction.Arn"
    );
    for k in ["IntegrationType", "PayloadFormatVersion", "TimeoutInMillis"] {
        assert_eq!(
            integration[k], r["HttpApiIntegration"]["Properties"][k],
            "{k}"
        );
    }
    assert_eq!(
        intrinsic(
            &r["PriorityFeedInvokePermission"]["Properties"]["FunctionName"],
            "Ref"
        ),
        "PriorityFeedFunction"
    );
}

/// The statement `sid` of a role's only policy.
fn statement<'a>(t: &'a Value, role: &str, sid: &str) -> &'a Value {
    t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Sid"].as_str() == Some(sid))
        .unwrap_or_else(|| panic!("{role} has no statement {sid}"))
}

fn actions(statement: &Value) -> BTreeSet<String> {
    match &statement["Action"] {
        Value::String(a) => [a.clone()].into(),
        list => list
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
    }
}

#[test]
fn feed_queues_are_named_by_the_stack_prefix_and_only_they_may_be_made_and_deleted() {
    let t = root();
    let prefix = intrinsic(
        &t["Globals"]["Function"]["Environment"]["Variables"]["CHUNKSTREAM_FEED_QUEUE_PREFIX"],
        "Sub",
    );
    assert_eq!(prefix, "${Prefix}-feed-");
    // The longest stack prefix still leaves a valid prefix (the code refuses longer ones).
    let longest = t["Parameters"]["Prefix"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert_eq!(longest, "^[a-z][a-z0-9-]{0,29}$");
    assert!(30 + "-feed-".len() <= chunkstream::config::MAX_FEED_QUEUE_PREFIX);
    let arn = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${Prefix}-feed-*";
    let api = statement(&t, "ApiRole", "FeedQueues");
    assert_eq!(intrinsic(&api["Resource"], "Sub"), arn);
    assert_eq!(
        actions(api),
        [
            "sqs:CreateQueue",
            "sqs:DeleteMessage",
            "sqs:DeleteQueue",
            "sqs:ReceiveMessage",
            "sqs:SendMessage"
        ]
        .map(String::from)
        .into()
    );
    // The worker closes a completed, reaped or expired video's queue, nothing more.
    let worker = statement(&t, "WorkerRole", "FeedQueues");
    assert_eq!(intrinsic(&worker["Resource"], "Sub"), arn);
    assert_eq!(actions(worker), ["sqs:DeleteQueue".to_string()].into());
}

#[test]
fn both_lanes_feed_the_worker_with_partial_batch_failures() {
    let t = root();
    let events = t["Resources"]["WorkerFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    let mut queues = BTreeSet::new();
    for (name, event) in events {
        if event["Type"] != "SQS" {
            continue;
        }
        let p = &event["Properties"];
        queues.insert(intrinsic(&p["Queue"], "GetAtt").to_string());
        let types = p["FunctionResponseTypes"].as_sequence().unwrap();
        assert!(
            types.iter().any(|v| v == "ReportBatchItemFailures"),
            "{name:?}: the worker reports failures per message"
        );
        assert_eq!(
            tagged(&p["ScalingConfig"]["MaximumConcurrency"]).map(|(t, _)| t),
            Some("Ref".to_string()),
            "{name:?}: each lane's concurrency is capped by a parameter"
        );
    }
    assert_eq!(
        queues,
        BTreeSet::from([
            "Storage.Outputs.NormalQueueArn".to_string(),
            "Storage.Outputs.PriorityQueueArn".to_string()
        ])
    );
    // A priority job is never batched behind another one.
    let priority = &events[&Value::from("PriorityJobs")]["Properties"];
    assert_eq!(number(&priority["BatchSize"]), 1);
    assert_eq!(number(&priority["MaximumBatchingWindowInSeconds"]), 0);
    // Natural-order jobs are gathered into batches (one record write per video per batch),
    // long enough for two parts of 10 s at the video's own pace, and well inside the
    // time a viewer plays before reaching a part nobody asked for yet.
    let normal = &events[&Value::from("NormalJobs")]["Properties"];
    assert_eq!(number(&normal["BatchSize"]), 10);
    assert!((10..=20).contains(&number(&normal["MaximumBatchingWindowInSeconds"])));
}

#[test]
fn sam_builds_each_function_from_its_crate_for_the_architecture_parameter() {
    let t = root();
    // This machine (and CI) can build only x86_64 (see infra/README.md for arm64).
    assert_eq!(t["Parameters"]["Architecture"]["Default"], "x86_64");
    let archs = t["Globals"]["Function"]["Architectures"]
        .as_sequence()
        .unwrap();
    assert_eq!(archs.len(), 1);
    assert_eq!(intrinsic(&archs[0], "Ref"), "Architecture");
    let samconfig = std::fs::read_to_string(infra().join("samconfig.toml")).unwrap();
    assert!(
        samconfig.contains("Architecture=x86_64"),
        "samconfig.toml gives build and deploy the same Architecture"
    );
    for (function, binary) in [
        ("ApiFunction", "api"),
        ("PriorityFeedFunction", "api"),
        ("WorkerFunction", "worker"),
    ] {
        let f = &t["Resources"][function];
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], binary);
        let crate_dir = infra().join(f["Properties"]["CodeUri"].as_str().unwrap());
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("[[bin]]\nname = \"{binary}\"")),
            "{} builds no binary {binary}",
            crate_dir.display()
        );
    }
}

// ------------------------------------------------------------------ IAM
// Each role's S3 grants are checked against what the code does: the API,
// the worker and the reaper run a whole video (and an abandoned and a
// half-created one) on an object store that records every call as the IAM
// action and key it needs. Every call must be allowed by the role, and every
// grant must be used by some call (least privilege).

/// What one recorded call needs: (IAM action, key; "" for the bucket).
type Need = (&'static str, String);

/// Records the IAM permissions each call needs, then delegates.
struct NeedsRecorder {
    inner: Arc<MemoryStore>,
    needs: Mutex<BTreeSet<Need>>,
}

impl NeedsRecorder {
    fn new(inner: Arc<MemoryStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            needs: Mutex::default(),
        })
    }
    fn need(&self, action: &'static str, key: &str) {
        self.needs.lock().unwrap().insert((action, key.to_string()));
    }
    /// A read: GetObject; telling a missing key (404) from a forbidden one
    /// (403) needs ListBucket too.
    fn read(&self, key: &str, found: bool) {
        self.need("s3:GetObject", key);
        if !found {
            self.need("s3:ListBucket", "");
        }
    }
    fn needs(&self) -> BTreeSet<Need> {
        self.needs.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ObjectStore for NeedsRecorder {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        let out = self.inner.get(key).await?;
        self.read(key, out.is_some());
        Ok(out)
    }
    async fn get_head(&self, key: &str, max_bytes: u64) -> Result<Option<ObjectHead>, StoreError> {
        let out = self.inner.get_head(key, max_bytes).await?;
        self.read(key, out.is_some());
        Ok(out)
    }
    async fn get_stream(&self, key: &str) -> Result<Option<StreamedObject>, StoreError> {
        let out = self.inner.get_stream(key).await?;
        self.read(key, out.is_some());
        Ok(out)
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        condition: PutCondition,
    ) -> Result<String, StoreError> {
        self.need("s3:PutObject", key);
        if !matches!(condition, PutCondition::Always) {
            // A conditional write to a missing key answers 404/412 only with ListBucket.
            self.need("s3:ListBucket", "");
        }
        self.inner.put(key, body, content_type, condition).await
    }
    async fn put_cached(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<String, StoreError> {
        self.need("s3:PutObject", key);
        self.inner
            .put_cached(key, body, content_type, cache_control)
            .await
    }
    async fn copy(&self, from: &str, to: &str, source_etag: &str) -> Result<(), StoreError> {
        self.need("s3:GetObject", from);
        self.need("s3:PutObject", to);
        self.inner.copy(from, to, source_etag).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        self.need("s3:ListBucket", "");
        for key in self.inner.keys(prefix) {
            self.need("s3:DeleteObject", &key);
        }
        self.inner.delete_prefix(prefix).await
    }
    async fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.need("s3:ListBucket", "");
        self.inner.list_children(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let out = self.inner.head(key).await?;
        self.read(key, out.is_some());
        Ok(out)
    }
    async fn list_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.need("s3:ListBucket", "");
        self.inner.list_keys(prefix, start_after, max).await
    }
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        // A presigned URL carries the signer's permissions.
        self.need("s3:PutObject", key);
        self.inner
            .presign_put(key, content_type, content_length, ttl)
            .await
    }
}

/// IAM's `*`: any run of characters, `/` included.
fn iam_matches(pattern: &str, key: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == key,
        Some((head, rest)) => {
            key.starts_with(head)
                && (0..=key.len() - head.len()).any(|i| {
                    key.is_char_boundary(head.len() + i)
                        && iam_matches(rest, &key[head.len() + i..])
                })
        }
    }
}

/// A role's S3 grants: (action, key pattern; "" for the bucket itself).
fn s3_grants(role: &str) -> Vec<(String, String)> {
    let t = root();
    let statements = t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_sequence()
        .unwrap();
    let mut grants = Vec::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow", "{role}: only Allow statements");
        let actions: Vec<String> = match &s["Action"] {
            Value::Sequence(a) => a.iter().map(|v| v.as_str().unwrap().into()).collect(),
            v => vec![v.as_str().unwrap().into()],
        };
        if !actions.iter().any(|a| a.starts_with("s3:")) {
            continue;
        }
        let resources: Vec<&Value> = match &s["Resource"] {
            Value::Sequence(r) => r.iter().collect(),
            v => vec![v],
        };
        for action in &actions {
            assert!(
                action.starts_with("s3:") && !action.contains('*'),
                "{role}: {action}"
            );
            for r in &resources {
                let pattern = match tagged(r) {
                    Some((t, v)) if t == "GetAtt" => {
                        assert_eq!(v.as_str(), Some("Storage.Outputs.BucketArn"), "{role}");
                        String::new()
                    }
                    Some((t, v)) if t == "Sub" => v
                        .as_str()
                        .unwrap()
                        .strip_prefix("${Storage.Outputs.BucketArn}/")
                        .unwrap_or_else(|| panic!("{role}: {v:?} is not in the bucket"))
                        .to_string(),
                    _ => panic!("{role}: unexpected resource {r:?}"),
                };
                grants.push((action.clone(), pattern));
            }
        }
    }
    grants
}

fn assert_least_privilege(role: &str, needs: &BTreeSet<Need>) {
    let grants = s3_grants(role);
    let allowed = |(action, key): &Need| {
        grants.iter().any(|(a, p)| {
            a == action
                && if key.is_empty() {
                    p.is_empty()
                } else {
                    !p.is_empty() && iam_matches(p, key)
                }
        })
    };
    let denied: Vec<&Need> = needs.iter().filter(|n| !allowed(n)).collect();
    assert!(denied.is_empty(), "{role} lacks {denied:#?}");
    for (action, pattern) in &grants {
        let used = needs.iter().any(|(a, key)| {
            a == action
                && if pattern.is_empty() {
                    key.is_empty()
                } else {
                    iam_matches(pattern, key)
                }
        });
        assert!(
            used,
            "{role} grants {action} on {pattern:?}, which nothing uses"
        );
    }
}

struct Roles {
    memory: Arc<MemoryStore>,
    api: Arc<NeedsRecorder>,
    worker: Arc<NeedsRecorder>,
    queue: Arc<MemoryQueue>,
    clock: Arc<ManualClock>,
    state: AppState,
    worker_sessions: Sessions,
    api_owners: OwnerState,
    worker_owners: OwnerState,
    key: String,
}

impl Api for Roles {
    fn app_router(&self) -> axum::Router {
        owner::wrap(app(self.state.clone()), self.api_owners.clone())
    }
}

const TTL: Duration = Duration::from_secs(3600);

impl Roles {
    fn new() -> Self {
        let memory = Arc::new(MemoryStore::new());
        let api = NeedsRecorder::new(memory.clone());
        let worker = NeedsRecorder::new(memory.clone());
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::at(SystemClock.now_ms()));
        let config = Config {
            session_ttl: TTL,
            ..memory_config()
        };
        let state = AppState {
            config: Arc::new(config),
            sessions: Sessions::with_clock(api.clone(), clock.clone()),
            queue: queue.clone(),
            events: Default::default(),
            hints: Default::default(),
        };
        let worker_sessions = Sessions::with_clock(worker.clone(), clock.clone());
        let owner_config = OwnerConfig::from_lookup(&|name| {
            (name == "CHUNKSTREAM_RETENTION_DAYS").then(|| "1".to_string())
        })
        .unwrap();
        let owners = |sessions: Sessions| {
            owner::owner_state(
                owner_config.clone(),
                sessions,
                "http://127.0.0.1:9".into(),
                Duration::from_secs(300),
                Arc::new(NoCdn),
            )
        };
        // Issued by the admin command (the operator's credentials, not a role).
        let key = futures::executor::block_on(Keys::new(memory.clone()).issue("alice", "iam"))
            .unwrap()
            .key;
        Self {
            api_owners: owners(state.sessions.clone()),
            worker_owners: owners(worker_sessions.clone()),
            key,
            worker_sessions,
            memory,
            api,
            worker,
            queue,
            clock,
            state,
        }
    }

    fn upload(&self, upload: &serde_json::Value, body: &[u8]) {
        self.memory
            .upload(upload["url"].as_str().unwrap(), body.to_vec())
            .unwrap();
    }

    /// Creates a video, uploads its inits and every slot, and reports them; with a
    /// viewer watching (who fetches the init first) or without.
    async fn uploaded_video(&self, viewer_fetches_init_first: bool) -> String {
        let media = media();
        let (id, secret, created) = self.create(&media.plan).await;
        for (i, u) in created["init_uploads"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            self.upload(u, &media.init[i]);
        }
        if viewer_fetches_init_first {
            // A viewer's miss publishes the init segment from the API.
            let (code, _) = self
                .call("GET", &format!("/v/{id}/init/0.mp4"), None, None)
                .await;
            assert_eq!(code, StatusCode::OK);
            // Resuming asks for fresh init URLs.
            let (code, body) = self
                .call(
                    "POST",
                    &format!("/api/videos/{id}/init"),
                    Some(&secret),
                    Some("{}"),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{body}");
        }
        // A viewer asks for a part not uploaded yet (a miss, recorded as a hint): the
        // parts in its window are checked and published by their reports (the API);
        // without a viewer, every part goes through the queue (the worker).
        if viewer_fetches_init_first {
            let (code, _) = self
                .call("GET", &format!("/v/{id}/seg/0/0.m4s"), None, None)
                .await;
            assert_eq!(code, StatusCode::NOT_FOUND);
            prioritize(self, &id, 0).await;
            let (code, _) = self
                .call(
                    "GET",
                    &format!("/api/videos/{id}/priority"),
                    Some(&secret),
                    None,
                )
                .await;
            assert_eq!(code, StatusCode::OK);
        }
        loop {
            let batch = next(self, &id, &secret, 16).await;
            let assignments = batch["assignments"].as_array().unwrap();
            if assignments.is_empty() {
                break;
            }
            for a in assignments {
                let slot = a["slot"].as_u64().unwrap() as usize;
                for (i, u) in a["uploads"].as_array().unwrap().iter().enumerate() {
                    self.upload(u, &media.segments[slot][i]);
                }
                report_uploaded(self, &id, &secret, slot as u64).await;
            }
        }
        status(self, &id).await;
        self.send_preview(&id, &secret).await;
        for path in [
            "manifest.mpd",
            "master.m3u8",
            "hls/0.m3u8",
            "previews/thumbnails.vtt",
        ] {
            let (code, _) = self
                .call("GET", &format!("/v/{id}/{path}"), None, None)
                .await;
            assert_eq!(code, StatusCode::OK, "{path}");
        }
        id
    }

    /// The uploader sends seek-bar preview sprite 0 (presigned PUT, check, publish); a viewer reads it.
    async fn send_preview(&self, id: &str, secret: &str) {
        let (code, layout) = self
            .call("GET", &format!("/api/videos/{id}/previews"), None, None)
            .await;
        assert_eq!(code, StatusCode::OK, "{layout}");
        let (w, h) = (
            layout["sprite_width"].as_u64().unwrap(),
            layout["sprite_height"].as_u64().unwrap(),
        );
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=s={w}x{h}"))
            .args(["-frames:v", "1", "-f", "mjpeg", "-"])
            .output()
            .expect("ffmpeg (scripts/setup.sh)");
        assert!(out.status.success());
        let jpeg = out.stdout;
        let body = format!(r#"{{"sprites":[{{"index":0,"size":{}}}]}}"#, jpeg.len());
        let (code, presigned) = self
            .call(
                "POST",
                &format!("/api/videos/{id}/previews"),
                Some(secret),
                Some(&body),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{presigned}");
        self.upload(&presigned["uploads"][0], &jpeg);
        let (code, published) = self
            .call(
                "POST",
                &format!("/api/videos/{id}/previews/0/uploaded"),
                Some(secret),
                None,
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{published}");
        let (code, _) = self
            .call("GET", &format!("/v/{id}/previews/0.jpg"), None, None)
            .await;
        assert_eq!(code, StatusCode::OK);
    }

    async fn create(&self, plan: &SegmentPlan) -> (String, String, serde_json::Value) {
        let body = serde_json::to_string(plan).unwrap();
        let (status, created) = self
            .call("POST", "/api/videos", Some(&self.key), Some(&body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["video_id"].as_str().unwrap().to_string();
        let secret = created["upload_secret"].as_str().unwrap().to_string();
        (id, secret, created)
    }

    async fn drain(&self) {
        let worker = Worker::new(self.worker_sessions.clone());
        for _ in 0..100 {
            let event = self.queue.receive(10);
            if event.records.is_empty() {
                return;
            }
            let response = handle_batch(&worker, event.clone(), None).await;
            let failed: Vec<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            self.queue.settle(&event, &failed);
        }
        panic!("jobs never drained");
    }
}

#[tokio::test]
async fn each_role_grants_exactly_the_s3_calls_its_function_makes() {
    let r = Roles::new();
    let media = media();
    // Published by the API on a viewer's miss, and by the worker.
    let by_viewer = r.uploaded_video(true).await;
    let by_worker = r.uploaded_video(false).await;
    r.drain().await;
    for id in [&by_viewer, &by_worker] {
        let (state, _) = r.worker_sessions.state(id).await.unwrap();
        assert!(state.complete && state.finalised, "{id}: {:?}", state.inits);
        let (code, _) = r
            .call("GET", &format!("/v/{id}/seg/0/0.m4s"), None, None)
            .await;
        assert_eq!(code, StatusCode::OK);
    }
    // The owner: their list, keeping one, deleting one mid-upload.
    for path in ["/api/me", "/api/me/videos"] {
        let (code, body) = r.call("GET", path, Some(&r.key), None).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
    }
    for kept in ["true", "false"] {
        let body = format!("{{\"kept\":{kept}}}");
        let uri = format!("/api/me/videos/{by_viewer}/keep");
        let (code, answer) = r.call("POST", &uri, Some(&r.key), Some(&body)).await;
        assert_eq!(code, StatusCode::OK, "{answer}");
    }
    let (deleted, secret, _) = r.create(&media.plan).await;
    let batch = next(&r, &deleted, &secret, 2).await;
    let first = &batch["assignments"][0];
    r.upload(
        &first["uploads"][0],
        &media.segments[first["slot"].as_u64().unwrap() as usize][0],
    );
    let upload = &batch["assignments"][1]["uploads"][0];
    let (code, _) = r
        .call(
            "DELETE",
            &format!("/api/me/videos/{deleted}"),
            Some(&r.key),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let late_slot = batch["assignments"][1]["slot"].as_u64().unwrap() as usize;
    r.upload(upload, &media.segments[late_slot][0]); // a PUT that was under way
    let (code, _) = r
        .call(
            "POST",
            &format!("/api/videos/{deleted}/slots/0/uploaded"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::GONE);

    // The reaper: an abandoned upload and a half-created session.
    let (abandoned, _, _) = r.create(&media.plan).await;
    r.memory
        .insert(&sessions::live_key("halfcreatedsession0000"), "0");
    r.clock.advance(TTL.as_millis() as u64 + 1);
    let settings = ReapSettings {
        ttl: TTL,
        redrive_after: Duration::from_secs(600),
        budget: Duration::from_secs(20),
        policy: SchedulePolicy::default(),
    };
    let report = reap_abandoned(&r.worker_sessions, r.queue.as_ref(), &settings)
        .await
        .unwrap();
    assert!(report.reaped.contains(&abandoned), "{report:?}");
    assert!(r
        .memory
        .keys(&sessions::video_prefix(&abandoned))
        .is_empty());
    // A second pass reads the cursor the first one left.
    reap_abandoned(&r.worker_sessions, r.queue.as_ref(), &settings)
        .await
        .unwrap();
    assert!(r.memory.object(CURSOR_KEY).is_some());
    // Retention (with the reaper): the videos expire; the deleted one's late PUT is swept.
    r.clock.advance(24 * 3600 * 1000);
    let expired = owner::expire_due(&r.worker_owners).await.unwrap();
    assert!(expired.expired.contains(&by_worker), "{expired:?}");
    assert_eq!(expired.swept, vec![deleted.clone()]);
    assert!(r
        .memory
        .keys(&sessions::incoming_prefix(&deleted))
        .is_empty());

    assert_least_privilege("ApiRole", &r.api.needs());
    assert_least_privilege("WorkerRole", &r.worker.needs());
}

#[test]
fn iam_wildcards_match_as_iam_does() {
    assert!(iam_matches("v/*/state.json", "v/abc/state.json"));
    assert!(iam_matches("v/*", "v/abc/seg/0/1.m4s"));
    assert!(!iam_matches("v/*/state.json", "v/abc/session.json"));
    assert!(!iam_matches("live/*", "v/live/x"));
    assert!(iam_matches("v/*/hls/*", "v/a/hls/0.m3u8"));
}

/// The distribution's cache behaviors, in the order CloudFront matches them.
fn cache_behaviors(t: &Value) -> Vec<Value> {
    t["Resources"]["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]
        .as_sequence()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_status_viewers_poll_is_cached_at_the_edge_as_long_as_the_api_says_and_compressed() {
    let t = root();
    let behaviors = cache_behaviors(&t);
    let position = |pattern: &str| {
        behaviors
            .iter()
            .position(|b| b["PathPattern"].as_str() == Some(pattern))
            .unwrap_or_else(|| panic!("no cache behavior for {pattern}"))
    };
    let status = position("/api/videos/*/status");
    assert!(
        status < position("/api/*"),
        "CloudFront takes the first match: the status behavior must come before /api/*"
    );
    let behavior = &behaviors[status];
    assert_eq!(behavior["TargetOriginId"].as_str(), Some("api"));
    assert_eq!(behavior["Compress"].as_bool(), Some(true));
    let methods = |k: &str| -> Vec<&str> {
        behavior[k]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect()
    };
    assert_eq!(methods("AllowedMethods"), ["GET", "HEAD"]);
    assert_eq!(methods("CachedMethods"), ["GET", "HEAD"]);
    let policy_name = intrinsic(&behavior["CachePolicyId"], "Ref");
    let policy = &t["Resources"][policy_name]["Properties"]["CachePolicyConfig"];
    let key = &policy["ParametersInCacheKeyAndForwardedToOrigin"];
    assert_eq!(key["EnableAcceptEncodingGzip"].as_bool(), Some(true));
    assert_eq!(key["EnableAcceptEncodingBrotli"].as_bool(), Some(true));
    // the CORS answer depends on Origin; no other header varies the answer
    assert_eq!(
        key["HeadersConfig"]["HeaderBehavior"].as_str(),
        Some("whitelist")
    );
    assert_eq!(
        key["HeadersConfig"]["Headers"].as_sequence().unwrap(),
        &[Value::from("Origin")]
    );
    assert_eq!(
        key["CookiesConfig"]["CookieBehavior"].as_str(),
        Some("none")
    );
    // the one query parameter status reads (`?parts=states`) is part of the key
    assert_eq!(
        key["QueryStringsConfig"]["QueryStringBehavior"].as_str(),
        Some("whitelist")
    );
    assert_eq!(
        key["QueryStringsConfig"]["QueryStrings"]
            .as_sequence()
            .unwrap(),
        &[Value::from("parts")]
    );

    // The edge keeps an answer as long as the API's Cache-Control says, and no
    // answer without one (errors, 404s of a deleted video) at all.
    let roles = Roles::new();
    let (id, _, _) = roles.create(&media().plan).await;
    let req = axum::http::Request::builder()
        .uri(format!("/api/videos/{id}/status"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(roles.app_router(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cache_control = resp.headers()["cache-control"].to_str().unwrap();
    let max_age: u64 = cache_control
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("status answers without max-age: {cache_control}"))
        .parse()
        .unwrap();
    assert!(cache_control.contains("public"), "{cache_control}");
    assert_eq!(number(&policy["DefaultTTL"]), 0);
    assert_eq!(number(&policy["MinTTL"]), 0);
    assert!(
        (max_age..=5).contains(&number(&policy["MaxTTL"])),
        "MaxTTL must let the API's max-age={max_age} through and stay short"
    );
}
