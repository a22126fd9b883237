//! Owners: credentials on the create route (API keys, JWTs), quotas, the
//! owner routes (list, delete, keep) and retention, through the API Router
//! wrapped by `owner::wrap`, on the in-memory fakes (the S3 adapter is covered
//! by tests/localstack.rs; the JWKS fetch here goes over real HTTP).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine;
use chunkstream::api::{app, AppState};
use chunkstream::auth::{AuthConfig, Authenticator};
use chunkstream::cdn::CdnInvalidator;
use chunkstream::clock::{Clock, ManualClock, SystemClock};
use chunkstream::config::Config;
use chunkstream::counting::{CountingStore, Counts};
use chunkstream::jwt::{HttpJwks, JwksSource, JwtVerifier, StaticJwks};
use chunkstream::keys::Keys;
use chunkstream::memory::{MemoryQueue, MemoryStore};
use chunkstream::owner::{self, expire_due, OwnerConfig, OwnerState};
use chunkstream::sessions::{self, Sessions};
use chunkstream_domain::plan::SegmentPlan;
use common::{media, memory_config, synthetic_plan};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.example/pool";
const AUDIENCE: &str = "chunkstream-web";
const PRESIGN_TTL: Duration = Duration::from_secs(300);
const DAY_MS: u64 = 24 * 3600 * 1000;

#[derive(Default)]
struct RecordingCdn(Mutex<Vec<String>>);

#[async_trait]
impl CdnInvalidator for RecordingCdn {
    async fn invalidate(&self, paths: &[String]) -> Result<(), String> {
        self.0.lock().unwrap().extend(paths.iter().cloned());
        Ok(())
    }
}

/// An Ed25519 signing key and the JWKS that publishes it. Tokens are signed here with ring
/// (the service's jsonwebtoken provider only verifies: chunkstream::jwt_ring).
struct Issuer {
    pair: ring::signature::Ed25519KeyPair,
    jwks: JwkSet,
}

impl Issuer {
    fn new() -> Self {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = serde_json::from_value(json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"
        }]}))
        .unwrap();
        Self { pair, jwks }
    }

    fn token(&self, iss: &str, aud: &str, exp_in_secs: i64, sub: &str) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = (SystemClock.now_ms() / 1000) as i64;
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
        let claims =
            json!({"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + exp_in_secs});
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.pair.sign(signed.as_bytes());
        format!("{signed}.{}", b64(signature.as_ref()))
    }
}

struct Stack {
    memory: Arc<MemoryStore>,
    /// every S3 call the API and the owner layer make
    counts: Counts,
    clock: Arc<ManualClock>,
    cdn: Arc<RecordingCdn>,
    keys: Keys,
    app: AppState,
    owners: OwnerState,
}

impl Stack {
    fn new(tweak: impl FnOnce(&mut OwnerConfig)) -> Self {
        Self::with_jwks(tweak, None)
    }

    fn with_jwks(tweak: impl FnOnce(&mut OwnerConfig), jwks: Option<Arc<dyn JwksSource>>) -> Self {
        // calls interleave across concurrent requests, as over a network
        let memory = Arc::new(MemoryStore::interleaved());
        let counting = Arc::new(CountingStore::new(memory.clone()));
        let counts = counting.counts.clone();
        let clock = Arc::new(ManualClock::at(SystemClock.now_ms()));
        let sessions = Sessions::with_clock(counting, clock.clone());
        let config = Config {
            presign_ttl: PRESIGN_TTL,
            ..memory_config()
        };
        let app = AppState {
            config: Arc::new(config),
            sessions: sessions.clone(),
            queue: Arc::new(MemoryQueue::new()),
            events: Default::default(),
            hints: Default::default(),
        };
        let mut owner_config = OwnerConfig::from_lookup(&|_| None).unwrap();
        tweak(&mut owner_config);
        let cdn = Arc::new(RecordingCdn::default());
        let mut owners = owner::owner_state(
            owner_config.clone(),
            sessions.clone(),
            "http://127.0.0.1:9".into(),
            PRESIGN_TTL,
            cdn.clone(),
        );
        let keys = Keys::with_clock(memory.clone(), clock.clone());
        if let Some(source) = jwks {
            let verifier = JwtVerifier::new(ISSUER, AUDIENCE, source);
            owners.auth = Authenticator::new(
                keys.clone(),
                Some(Arc::new(verifier)),
                owner_config.auth.open,
            );
        }
        Self {
            memory,
            counts,
            clock,
            cdn,
            keys,
            app,
            owners,
        }
    }

    fn router(&self) -> Router {
        owner::wrap(app(self.app.clone()), self.owners.clone())
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
        let resp = tower::ServiceExt::oneshot(self.router(), req)
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn create(&self, credential: &[(&str, &str)], plan: &SegmentPlan) -> (StatusCode, Value) {
        let (status, body, _) = self
            .call(
                "POST",
                "/api/videos",
                credential,
                Some(serde_json::to_string(plan).unwrap()),
            )
            .await;
        (status, body)
    }

    async fn key(&self, owner: &str) -> String {
        self.keys.issue(owner, "test").await.unwrap().key
    }

    fn objects_of(&self, id: &str) -> Vec<String> {
        let mut keys = self.memory.keys(&sessions::video_prefix(id));
        keys.extend(self.memory.keys(&sessions::incoming_prefix(id)));
        keys.extend(self.memory.keys(&sessions::live_key(id)));
        keys
    }
}

fn named(file: &str, mut plan: SegmentPlan) -> SegmentPlan {
    plan.file_name = Some(file.into());
    plan
}

fn api_key(key: &str) -> [(&'static str, &str); 1] {
    [("x-api-key", key)]
}

#[tokio::test]
async fn creating_a_session_needs_a_valid_unrevoked_key() {
    let s = Stack::new(|_| {});
    let plan = synthetic_plan(3);
    let (status, body) = s.create(&[], &plan).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "missing_credential");

    let issued = s.keys.issue("alice", "laptop").await.unwrap();
    let mut wrong = issued.key.clone();
    wrong.pop();
    wrong.push(if issued.key.ends_with('A') { 'B' } else { 'A' });
    for bad in [wrong.as_str(), "csk_nosuchkey_secret", "not-a-key"] {
        let (status, body) = s.create(&api_key(bad), &plan).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
    }
    assert!(s.memory.keys("v/").is_empty(), "no session was created");

    // As a header or as a bearer token.
    let (status, body) = s.create(&api_key(&issued.key), &plan).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bearer = format!("Bearer {}", issued.key);
    let (status, _) = s.create(&[("authorization", &bearer)], &plan).await;
    assert_eq!(status, StatusCode::CREATED);

    // The key is stored hashed only.
    let stored = s
        .memory
        .object(&chunkstream::keys::key_record_key(&issued.record.key_id))
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains(&issued.key));

    s.keys.revoke(&issued.record.key_id).await.unwrap();
    let (status, body) = s.create(&api_key(&issued.key), &plan).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_api_key");
    let listed = s.keys.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_ms.is_some());
}

#[tokio::test]
async fn an_open_runner_needs_no_key_and_owns_everything_as_local() {
    let s = Stack::new(|c| c.auth.open = true);
    let (status, body) = s.create(&[], &synthetic_plan(2)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, me, _) = s.call("GET", "/api/me", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["owner"], "local");
    assert_eq!(me["usage"]["live_sessions"], 1);
}

#[tokio::test]
async fn my_videos_lists_only_mine_with_title_size_duration_state_and_link() {
    let s = Stack::new(|_| {});
    let alice = s.key("alice").await;
    let bob = s.key("bob").await;
    let plan = named("/home/a/Screen Recording 2026-12-01.mp4", synthetic_plan(4));
    let (_, created) = s.create(&api_key(&alice), &plan).await;
    let id = created["video_id"].as_str().unwrap().to_string();
    s.create(&api_key(&bob), &synthetic_plan(2)).await;

    let (status, list, headers) = s
        .call("GET", "/api/me/videos", &api_key(&alice), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(headers["cache-control"], "no-store");
    let videos = list["videos"].as_array().unwrap();
    assert_eq!(videos.len(), 1, "{list}");
    let v = &videos[0];
    assert_eq!(v["video_id"], id.as_str());
    assert_eq!(v["title"], "Screen Recording 2026-12-01");
    assert_eq!(v["state"], "uploading");
    assert_eq!(v["total_slots"], 4);
    let size: u64 = (0..4).map(|i| plan.slot_bytes(i)).sum();
    assert_eq!(v["size_bytes"], size);
    assert!((v["duration_secs"].as_f64().unwrap() - plan.duration_secs()).abs() < 1e-9);
    assert_eq!(
        v["watch_url"],
        format!("http://127.0.0.1:9/watch.html?v={id}")
    );
    assert_eq!(v["created_ms"], s.clock.now_ms());
    assert_eq!(v["expires_ms"], s.clock.now_ms() + 30 * DAY_MS);

    let (status, _, _) = s.call("GET", "/api/me/videos", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn another_owners_video_is_not_found_on_every_owner_route() {
    let s = Stack::new(|_| {});
    let alice = s.key("alice").await;
    let bob = s.key("bob").await;
    let (_, created) = s.create(&api_key(&alice), &synthetic_plan(2)).await;
    let id = created["video_id"].as_str().unwrap();
    let (status, body, _) = s
        .call(
            "DELETE",
            &format!("/api/me/videos/{id}"),
            &api_key(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_video");
    let (status, _, _) = s
        .call(
            "POST",
            &format!("/api/me/videos/{id}/keep"),
            &api_key(&bob),
            Some(r#"{"kept":true}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = s
        .call(
            "DELETE",
            "/api/me/videos/..%2F..%2Fkeys",
            &api_key(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!s.objects_of(id).is_empty(), "alice's video is untouched");
}

#[tokio::test]
async fn live_sessions_quota_answers_429_naming_the_limit() {
    let s = Stack::new(|c| c.max_live_sessions = 2);
    let key = s.key("alice").await;
    for _ in 0..2 {
        let (status, body) = s.create(&api_key(&key), &synthetic_plan(2)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = s.create(&api_key(&key), &synthetic_plan(2)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "quota_live_sessions");
    assert_eq!(body["limit"], json!({"name": "live_sessions", "value": 2}));
    assert!(
        body["message"].as_str().unwrap().contains("at most 2"),
        "{body}"
    );
    // Another owner is not affected.
    let other = s.key("bob").await;
    let (status, _) = s.create(&api_key(&other), &synthetic_plan(2)).await;
    assert_eq!(status, StatusCode::CREATED);
}

fn total(counts: &std::collections::BTreeMap<&'static str, u64>) -> u64 {
    counts.values().sum()
}

#[tokio::test]
async fn a_create_costs_the_same_s3_calls_however_many_uploads_the_owner_has_live() {
    let s = Stack::new(|c| c.max_live_sessions = 100_000);
    let key = s.key("alice").await;
    let mut costs = Vec::new();
    for _ in 0..25 {
        let before = s.counts.snapshot();
        let (status, body) = s.create(&api_key(&key), &synthetic_plan(2)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        costs.push(total(&s.counts.snapshot()) - total(&before));
    }
    // (the random start slot may hit an occupied one: 2 calls more, rarely)
    let first = costs[0];
    println!("S3 calls per create: {costs:?}");
    for (n, cost) in costs.iter().enumerate() {
        assert!(
            *cost <= first + 2,
            "create {n} with {n} live uploads made {cost} S3 calls; the first made {first}: {costs:?}"
        );
    }
}

/// Marks a video complete as the worker does when its last part is published.
async fn complete(s: &Stack, video_id: &str) {
    s.owners
        .sessions
        .update_published(video_id, |p| {
            p.complete = true;
            Ok::<_, ()>(((), true))
        })
        .await
        .unwrap()
        .unwrap();
}

/// `GET /api/me`'s live-session count and the S3 calls it made.
async fn live_and_cost(s: &Stack, key: &str) -> (Value, u64) {
    let before = s.counts.snapshot();
    let (status, me, _) = s.call("GET", "/api/me", &api_key(key), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let cost = total(&s.counts.snapshot()) - total(&before);
    (me["usage"]["live_sessions"].clone(), cost)
}

#[tokio::test]
async fn me_counts_live_uploads_as_the_quota_does_at_a_cost_that_ignores_finished_videos() {
    let s = Stack::new(|c| c.max_live_sessions = 3);
    let key = s.key("alice").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = s.create(&api_key(&key), &synthetic_plan(2)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["video_id"].as_str().unwrap().to_string());
    }
    assert_eq!(live_and_cost(&s, &key).await.0, 3);
    complete(&s, &ids[0]).await;
    complete(&s, &ids[1]).await;
    let (live, cost) = live_and_cost(&s, &key).await;
    assert_eq!(live, 1);

    // twenty more uploads, each finished before the next: the owner now has 23 videos
    for _ in 0..20 {
        let (status, body) = s.create(&api_key(&key), &synthetic_plan(2)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        complete(&s, body["video_id"].as_str().unwrap()).await;
    }
    let (live, cost_later) = live_and_cost(&s, &key).await;
    assert_eq!(live, 1, "only the first video's upload is still running");
    assert_eq!(
        cost_later, cost,
        "GET /api/me made {cost_later} S3 calls with 23 videos, {cost} with 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_racing_for_the_last_live_session_place_cannot_both_win() {
    let s = Stack::new(|c| c.max_live_sessions = 2);
    let key = s.key("alice").await;
    for round in 0..5 {
        let creates = (0..8).map(|_| {
            let (s, key) = (&s, &key);
            async move { s.create(&api_key(key), &synthetic_plan(2)).await }
        });
        let answers = futures::future::join_all(creates).await;
        let created: Vec<&Value> = answers
            .iter()
            .filter(|(status, _)| *status == StatusCode::CREATED)
            .map(|(_, body)| body)
            .collect();
        let refused = answers
            .iter()
            .filter(|(status, body)| {
                *status == StatusCode::TOO_MANY_REQUESTS && body["error"] == "quota_live_sessions"
            })
            .count();
        let expected = if round == 0 { 2 } else { 1 };
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
        assert_eq!(created.len(), expected, "round {round}: {statuses:?}");
        assert_eq!(refused, 8 - expected, "round {round}: {statuses:?}");
        // deleting one frees its place for the next round's race
        let id = created[0]["video_id"].as_str().unwrap();
        let (status, body, _) = s
            .call(
                "DELETE",
                &format!("/api/me/videos/{id}"),
                &api_key(&key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn bytes_per_day_quota_answers_429_with_retry_after_or_413_for_one_oversize_video() {
    let plan = synthetic_plan(2);
    let size: u64 = (0..2).map(|i| plan.slot_bytes(i)).sum();
    let s = Stack::new(|c| c.max_bytes_per_day = size * 2 + size / 2);
    let key = s.key("alice").await;
    for _ in 0..2 {
        assert_eq!(s.create(&api_key(&key), &plan).await.0, StatusCode::CREATED);
    }
    let (status, body, headers) = s
        .call(
            "POST",
            "/api/videos",
            &api_key(&key),
            Some(serde_json::to_string(&plan).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "quota_bytes_per_day");
    assert_eq!(body["limit"]["name"], "bytes_per_day");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=24 * 3600).contains(&retry), "{retry}");

    let big = synthetic_plan(6);
    let (status, body) = s.create(&api_key(&key), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["limit"]["name"], "bytes_per_day");

    // A refused plan costs nothing; the next UTC day starts afresh.
    let (status, _) = s
        .create(
            &api_key(&key),
            &named(
                "x.mp4",
                SegmentPlan {
                    slots: vec![],
                    ..plan.clone()
                },
            ),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an invalid plan: the create handler's answer"
    );
    s.clock.advance(DAY_MS);
    assert_eq!(s.create(&api_key(&key), &plan).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn deleting_a_video_during_its_upload_leaves_nothing_and_the_uploader_gets_a_clear_error() {
    let s = Stack::new(|_| {});
    let key = s.key("alice").await;
    let m = media();
    let (status, created) = s.create(&api_key(&key), &m.plan).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["video_id"].as_str().unwrap().to_string();
    let secret = created["upload_secret"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {secret}");
    for (i, u) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        s.memory
            .upload(u["url"].as_str().unwrap(), m.init[i].clone())
            .unwrap();
    }
    let (status, next, _) = s
        .call(
            "POST",
            &format!("/api/videos/{id}/next"),
            &[("authorization", &bearer)],
            Some(r#"{"max":2}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let assignments = next["assignments"].as_array().unwrap().clone();
    let first = &assignments[0];
    let slot = first["slot"].as_u64().unwrap() as usize;
    for (i, u) in first["uploads"].as_array().unwrap().iter().enumerate() {
        s.memory
            .upload(u["url"].as_str().unwrap(), m.segments[slot][i].clone())
            .unwrap();
    }

    let (status, body, _) = s
        .call(
            "DELETE",
            &format!("/api/me/videos/{id}"),
            &api_key(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["deleted_objects"].as_u64().unwrap() > 0);
    assert_eq!(*s.cdn.0.lock().unwrap(), vec![format!("/v/{id}/*")]);
    assert!(s.objects_of(&id).is_empty(), "{:?}", s.objects_of(&id));

    // The uploader's next calls fail clearly.
    let (status, body, _) = s
        .call(
            "POST",
            &format!("/api/videos/{id}/slots/{slot}/uploaded"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"], "video_deleted");
    let (status, body, _) = s
        .call(
            "POST",
            &format!("/api/videos/{id}/next"),
            &[("authorization", &bearer)],
            Some(r#"{"max":2}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("upload cannot continue"),
        "{body}"
    );
    // A viewer's status read is told the video was deleted, not that an upload stopped.
    let (status, body, _) = s
        .call("GET", &format!("/api/videos/{id}/status"), &[], None)
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["message"], "this video was deleted by its owner");
    let (status, _, _) = s
        .call("GET", &format!("/v/{id}/manifest.mpd"), &[], None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A PUT that was already on its way lands after the delete: swept once its URL expired.
    let late = &assignments[1];
    let late_slot = late["slot"].as_u64().unwrap() as usize;
    s.memory
        .upload(
            late["uploads"][0]["url"].as_str().unwrap(),
            m.segments[late_slot][0].clone(),
        )
        .unwrap();
    assert!(!s.objects_of(&id).is_empty());
    let early = expire_due(&s.owners).await.unwrap();
    assert!(
        early.swept.is_empty(),
        "not before the URLs expire: {early:?}"
    );
    s.clock.advance(PRESIGN_TTL.as_millis() as u64 + 61_000);
    let report = expire_due(&s.owners).await.unwrap();
    assert_eq!(report.swept, vec![id.clone()]);
    assert!(s.objects_of(&id).is_empty(), "{:?}", s.objects_of(&id));
    assert!(s.memory.keys("owners/deleted/").is_empty());
    let (_, list, _) = s.call("GET", "/api/me/videos", &api_key(&key), None).await;
    assert_eq!(list["videos"], json!([]));
}

#[tokio::test]
async fn videos_expire_after_the_retention_unless_kept() {
    let s = Stack::new(|c| c.retention_days = 2);
    let key = s.key("alice").await;
    let (_, a) = s.create(&api_key(&key), &synthetic_plan(2)).await;
    let (_, b) = s.create(&api_key(&key), &synthetic_plan(2)).await;
    let (a, b) = (
        a["video_id"].as_str().unwrap(),
        b["video_id"].as_str().unwrap(),
    );
    let (status, kept, _) = s
        .call(
            "POST",
            &format!("/api/me/videos/{b}/keep"),
            &api_key(&key),
            Some(r#"{"kept":true}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["kept"], true);
    assert!(kept.get("expires_ms").is_none_or(Value::is_null), "{kept}");

    s.clock.advance(DAY_MS);
    assert!(expire_due(&s.owners).await.unwrap().expired.is_empty());
    s.clock.advance(DAY_MS + 1);
    let report = expire_due(&s.owners).await.unwrap();
    assert_eq!(report.expired, vec![a.to_string()]);
    assert!(s.objects_of(a).is_empty());
    assert!(!s.objects_of(b).is_empty(), "kept");
    let (_, list, _) = s.call("GET", "/api/me/videos", &api_key(&key), None).await;
    let ids: Vec<&str> = list["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["video_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b]);
}

#[tokio::test]
async fn jwts_from_the_issuer_are_accepted_and_wrong_issuer_audience_or_expired_are_401() {
    let issuer = Issuer::new();
    let s = Stack::with_jwks(|_| {}, Some(Arc::new(StaticJwks(issuer.jwks.clone()))));
    let plan = synthetic_plan(2);
    let good = format!("Bearer {}", issuer.token(ISSUER, AUDIENCE, 600, "user-1"));
    let (status, body) = s.create(&[("authorization", &good)], &plan).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, me, _) = s
        .call("GET", "/api/me", &[("authorization", &good)], None)
        .await;
    assert_eq!(me["owner"], format!("{ISSUER}#user-1"));
    assert_eq!(me["via"], "jwt");

    for (token, reason) in [
        (
            issuer.token("https://evil.example", AUDIENCE, 600, "user-1"),
            "wrong issuer",
        ),
        (
            issuer.token(ISSUER, "someone-else", 600, "user-1"),
            "wrong audience",
        ),
        (issuer.token(ISSUER, AUDIENCE, -3600, "user-1"), "expired"),
        (
            Issuer::new().token(ISSUER, AUDIENCE, 600, "user-1"),
            "bad signature",
        ),
        ("a.b.c".to_string(), "malformed"),
    ] {
        let bearer = format!("Bearer {token}");
        let (status, body) = s.create(&[("authorization", &bearer)], &plan).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        assert_eq!(body["error"], "invalid_token", "{reason}");
        assert!(
            body["message"].as_str().unwrap().contains(reason),
            "{reason}: {body}"
        );
    }
}

#[tokio::test]
async fn the_jwks_is_fetched_over_http_from_the_issuer() {
    let issuer = Issuer::new();
    let jwks = serde_json::to_value(&issuer.jwks).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    tokio::spawn(async move { axum::serve(listener, served).await });
    let source = HttpJwks::new(format!("http://{addr}/.well-known/jwks.json"));
    let s = Stack::with_jwks(|_| {}, Some(Arc::new(source)));
    let good = format!("Bearer {}", issuer.token(ISSUER, AUDIENCE, 600, "user-2"));
    let (status, body) = s
        .create(&[("authorization", &good)], &synthetic_plan(2))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An unreachable key set is a 503, not a 401.
    let dead = Stack::with_jwks(
        |_| {},
        Some(Arc::new(HttpJwks::new("http://127.0.0.1:9/jwks.json"))),
    );
    let (status, body) = dead
        .create(&[("authorization", &good)], &synthetic_plan(2))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn an_oversize_key_set_is_refused_unread_with_a_503() {
    let issuer = Issuer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // a valid JWKS padded past the 1 MiB bound
    let padded = format!(
        r#"{{"keys": {}, "padding": "{}"}}"#,
        serde_json::to_string(&issuer.jwks.keys).unwrap(),
        "x".repeat(2 << 20)
    );
    let served = Router::new().route(
        "/jwks.json",
        axum::routing::get(move || async move { padded }),
    );
    tokio::spawn(async move { axum::serve(listener, served).await });
    let source = HttpJwks::new(format!("http://{addr}/jwks.json"));
    let err = source.fetch().await.unwrap_err();
    assert!(err.contains("over 1048576 bytes"), "{err}");
    let s = Stack::with_jwks(|_| {}, Some(Arc::new(source)));
    let good = format!("Bearer {}", issuer.token(ISSUER, AUDIENCE, 600, "user-3"));
    let (status, body) = s
        .create(&[("authorization", &good)], &synthetic_plan(2))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "auth_unavailable", "{body}");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let config = AuthConfig::from_lookup(&|n| {
        (n == "CHUNKSTREAM_ALLOWED_ORIGINS").then(|| "https://app.example".to_string())
    })
    .unwrap();
    let router = Router::new()
        .route("/api/videos", axum::routing::post(|| async { "ok" }))
        .layer(config.cors_layer());
    for (origin, allowed) in [
        ("https://app.example", true),
        ("https://evil.example", false),
    ] {
        let req = Request::builder()
            .method("OPTIONS")
            .uri("/api/videos")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key,content-type")
            .body(Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(router.clone(), req)
            .await
            .unwrap();
        let header = resp.headers().get("access-control-allow-origin");
        assert_eq!(
            header.map(|h| h.to_str().unwrap()),
            allowed.then_some(origin),
            "{origin}"
        );
        if allowed {
            let headers = resp.headers()["access-control-allow-headers"]
                .to_str()
                .unwrap();
            assert!(headers.contains("x-api-key"), "{headers}");
        }
    }
}

#[tokio::test]
async fn cors_lets_any_player_read_the_public_playback_objects_but_not_the_api() {
    let config = AuthConfig::from_lookup(&|n| {
        (n == "CHUNKSTREAM_ALLOWED_ORIGINS").then(|| "https://app.example".to_string())
    })
    .unwrap();
    let router = Router::new()
        .route(
            "/v/{id}/manifest.mpd",
            axum::routing::get(|| async { "mpd" }),
        )
        .route(
            "/api/videos/{id}/status",
            axum::routing::get(|| async { "{}" }),
        )
        .layer(config.cors_layer());
    for (uri, allowed) in [
        ("/v/abc/manifest.mpd", true),
        ("/api/videos/abc/status", false),
    ] {
        let req = Request::builder()
            .uri(uri)
            .header("origin", "https://some-player.example")
            .body(Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(router.clone(), req)
            .await
            .unwrap();
        let header = resp.headers().get("access-control-allow-origin");
        assert_eq!(
            header.map(|h| h.to_str().unwrap()),
            allowed.then_some("https://some-player.example"),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn an_unreadable_video_is_listed_as_damaged_without_hiding_the_others_and_can_be_deleted() {
    use chunkstream::store::{ObjectStore, PutCondition};
    let s = Stack::new(|_| {});
    let alice = s.key("alice").await;
    let (_, good) = s.create(&api_key(&alice), &synthetic_plan(2)).await;
    let (_, bad) = s.create(&api_key(&alice), &synthetic_plan(3)).await;
    let bad = bad["video_id"].as_str().unwrap().to_string();
    // what a failed write left behind once in LocalStack: the state object, empty
    s.memory
        .put(
            &sessions::state_key(&bad),
            bytes::Bytes::new(),
            "application/json",
            PutCondition::Always,
        )
        .await
        .unwrap();

    let (status, list, _) = s
        .call("GET", "/api/me/videos", &api_key(&alice), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let state_of = |id: &str| {
        list["videos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["video_id"] == id)
            .map(|v| v["state"].clone())
    };
    assert_eq!(
        state_of(good["video_id"].as_str().unwrap()),
        Some(json!("uploading"))
    );
    assert_eq!(state_of(&bad), Some(json!("damaged")));

    let (status, body, _) = s
        .call(
            "DELETE",
            &format!("/api/me/videos/{bad}"),
            &api_key(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list, _) = s
        .call("GET", "/api/me/videos", &api_key(&alice), None)
        .await;
    assert_eq!(list["videos"].as_array().unwrap().len(), 1, "{list}");
}
