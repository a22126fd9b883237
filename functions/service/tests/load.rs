//! Load: uploaders and viewers at once against the API served over HTTP
//! (axum::serve of the one Router, as the runner does) and the local poller
//! feeding the worker, on LocalStack S3/SQS. Checks: no part lost, every video
//! complete, the published objects equal the uploaded bytes, no 5xx but 503s
//! that succeeded on retry. Prints p50/p99 per path and S3/SQS requests per
//! part and per viewer-minute, and the cost per video-hour they imply.
//!
//! `a_small_load_*` runs in the suite (4 uploaders × 20 parts, 20 viewers);
//! `load_benchmark` (ignored) is scripts/bench-state.sh's bigger run, sized by
//! LOAD_UPLOADERS / LOAD_PARTS / LOAD_VIEWERS.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chunkstream::api::{
    AppState, MAX_PRIORITY_WAIT_MS, SIGNALLED_PRIORITY_POLL_MS,
    SIGNALLED_UNWATCHED_PRIORITY_POLL_MS,
};
use chunkstream::counting::{CountingQueue, CountingStore};
use chunkstream::local::{poll_once, PollerSettings};
use chunkstream::queue::SqsQueues;
use chunkstream::sessions::{self, Sessions};
use chunkstream::store::{ObjectStore, S3Store};
use chunkstream::worker::Worker;
use common::*;
use serde_json::{json, Value};

#[derive(Default)]
struct Stats {
    latency: Mutex<BTreeMap<&'static str, Vec<f64>>>,
    /// (path, status) of every answer that was a 5xx other than 503.
    errors: Mutex<Vec<(String, u16)>>,
    retried_503: AtomicU64,
    limited_429: AtomicU64,
    uploader_calls: AtomicU64,
    viewer_calls: AtomicU64,
}

impl Stats {
    fn record(&self, path: &'static str, ms: f64) {
        self.latency
            .lock()
            .unwrap()
            .entry(path)
            .or_default()
            .push(ms);
    }
}

struct Http {
    base: String,
    client: reqwest::Client,
    stats: Arc<Stats>,
}

impl Http {
    /// One API call; a 503 is retried after its Retry-After (at most 20 times).
    async fn call(
        &self,
        path: &'static str,
        method: reqwest::Method,
        uri: &str,
        secret: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        for _ in 0..20 {
            let mut req = self
                .client
                .request(method.clone(), format!("{}{uri}", self.base));
            if let Some(s) = secret {
                req = req.bearer_auth(s);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let t = Instant::now();
            let resp = req.send().await.unwrap();
            let code = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let bytes = resp.bytes().await.unwrap();
            self.stats.record(path, t.elapsed().as_secs_f64() * 1000.0);
            if code == 503 {
                self.stats.retried_503.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
                continue;
            }
            if code >= 500 {
                self.stats.errors.lock().unwrap().push((uri.into(), code));
            }
            return (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        panic!("{uri}: still 503 after 20 attempts");
    }
}

struct Sizing {
    uploaders: usize,
    parts: usize,
    viewers: usize,
    part_secs: u32,
}

async fn upload_video(
    http: &Http,
    media: &Media,
    id: &str,
    secret: &str,
    created: &Value,
    deadline: Instant,
    batch_reports: bool,
) {
    for (i, u) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert!(put_presigned(u, media.init[i].clone())
            .await
            .status()
            .is_success());
    }
    let post = reqwest::Method::POST;
    // Parts PUT but not reported yet (`batch_reports`): they go with the next `next`.
    let mut pending: Vec<usize> = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "{id}: upload did not finish");
        http.stats.uploader_calls.fetch_add(1, Ordering::Relaxed);
        let mut ask = json!({"max": 4});
        if !pending.is_empty() {
            ask["uploaded"] = json!(pending);
        }
        let (code, batch) = http
            .call(
                "next",
                post.clone(),
                &format!("/api/videos/{id}/next"),
                Some(secret),
                Some(ask),
            )
            .await;
        assert_eq!(code, 200, "{batch}");
        let reports = batch["reports"].as_array().cloned().unwrap_or_default();
        assert_eq!(reports.len(), pending.len(), "{batch}");
        for r in &reports {
            // Refused only as already published (a viewer's miss may publish nothing here).
            assert!(
                r.get("error").is_none() || r["error"] == "already_published",
                "{r}"
            );
        }
        pending.clear();
        let assignments = batch["assignments"].as_array().unwrap();
        if assignments.is_empty() {
            if batch["complete"] == true {
                return;
            }
            // Everything left is being checked: ask again in a second, as the page and the
            // CLI do (not faster: an idle poll costs a request and three GETs).
            tokio::time::sleep(Duration::from_millis(1000)).await;
            continue;
        }
        for a in assignments {
            if batch_reports {
                put_slot(media, a).await;
                pending.push(a["slot"].as_u64().unwrap() as usize);
            } else {
                let code = upload_slot(http, media, id, secret, a).await;
                assert!(code == 202 || code == 409, "{code}");
            }
        }
    }
}

/// PUTs an assignment's tracks.
async fn put_slot(media: &Media, a: &Value) {
    let slot = a["slot"].as_u64().unwrap() as usize;
    for (track, u) in a["uploads"].as_array().unwrap().iter().enumerate() {
        let put = put_presigned(u, media.segments[slot][track].clone()).await;
        assert!(put.status().is_success(), "{}", put.status());
    }
}

/// PUTs an assignment's tracks and reports the slot uploaded; the report's status.
async fn upload_slot(http: &Http, media: &Media, id: &str, secret: &str, a: &Value) -> u16 {
    let slot = a["slot"].as_u64().unwrap() as usize;
    put_slot(media, a).await;
    http.stats.uploader_calls.fetch_add(1, Ordering::Relaxed);
    let (code, body) = http
        .call(
            "uploaded",
            reqwest::Method::POST,
            &format!("/api/videos/{id}/slots/{slot}/uploaded"),
            Some(secret),
            None,
        )
        .await;
    assert!(code == 202 || code == 409, "{code} {body}");
    code
}

/// The uploader's long poll (no leases: the test uploader takes work from `next`).
async fn priority_feed(http: &Http, id: &str, secret: &str, done: &AtomicBool) {
    let mut after: Option<u64> = None;
    while !done.load(Ordering::Relaxed) {
        let q = after.map_or(String::new(), |a| format!("&after={a}"));
        http.stats.uploader_calls.fetch_add(1, Ordering::Relaxed);
        let (code, body) = http
            .call(
                "priority (long poll)",
                reqwest::Method::GET,
                &format!("/api/videos/{id}/priority?wait_ms=2000{q}"),
                Some(secret),
                None,
            )
            .await;
        assert_eq!(code, 200, "{body}");
        after = body["version"].as_u64();
        if body["complete"] == true {
            return;
        }
    }
}

/// A viewer: seeks somewhere, asks for the part (held miss) until it plays,
/// plays on, polls status (`?parts=states`) every 2 s, seeks again every ~6 s.
async fn viewer(http: &Http, id: &str, slots: usize, n: usize, done: &AtomicBool) {
    let viewer = format!("viewer{n}");
    let mut rng = n as u64 * 7919 + 17;
    let mut next_rand = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut slot = next_rand() % slots;
    let mut last_status = Instant::now() - Duration::from_secs(10);
    let mut last_seek = Instant::now() - Duration::from_secs(10);
    while !done.load(Ordering::Relaxed) {
        if last_seek.elapsed() > Duration::from_secs(6) {
            slot = next_rand() % slots;
            last_seek = Instant::now();
            http.stats.viewer_calls.fetch_add(1, Ordering::Relaxed);
            let (code, body) = http
                .call(
                    "prioritize",
                    reqwest::Method::POST,
                    &format!("/api/videos/{id}/prioritize"),
                    None,
                    Some(json!({"slot": slot, "viewer": viewer})),
                )
                .await;
            match code {
                200 => {}
                429 => {
                    http.stats.limited_429.fetch_add(1, Ordering::Relaxed);
                }
                _ => panic!("prioritize {code} {body}"),
            }
        }
        if last_status.elapsed() > Duration::from_secs(2) {
            last_status = Instant::now();
            http.stats.viewer_calls.fetch_add(1, Ordering::Relaxed);
            let (code, _) = http
                .call(
                    "status",
                    reqwest::Method::GET,
                    // what the watch page polls once it has the parts' times
                    &format!("/api/videos/{id}/status?parts=states"),
                    None,
                    None,
                )
                .await;
            assert_eq!(code, 200);
        }
        http.stats.viewer_calls.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let resp = http
            .client
            .get(format!(
                "{}/v/{id}/seg/0/{slot}.m4s?viewer={viewer}",
                http.base
            ))
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let _ = resp.bytes().await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match code {
            200 => {
                http.stats.record("segment (hit)", ms);
                slot = (slot + 1) % slots;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            404 => {
                http.stats.record("segment (held miss)", ms);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            503 => {
                http.stats.retried_503.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => http
                .stats
                .errors
                .lock()
                .unwrap()
                .push((format!("seg {slot}"), other)),
        }
    }
}

/// The page and the CLI ask the feed after every third wake-up wait that ran out
/// (`web/src/lib/uploader.ts`, `cli/src/upload.rs`).
const WAKE_RUN_OUTS_PER_POLL: f64 = 3.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run_load(size: Sizing) {
    let media = Arc::new(make_media(
        size.parts as u32 * size.part_secs,
        size.part_secs,
    ));
    assert_eq!(media.plan.slots.len(), size.parts, "ffmpeg cut other parts");
    let mut stack = TestStack::new().await;
    let s3 = Arc::new(S3Store::new(
        stack.clients.s3.clone(),
        stack.state.config.bucket.clone(),
    ));
    let store = Arc::new(CountingStore::new(s3.clone()));
    let queue = Arc::new(CountingQueue::new(Arc::new(SqsQueues::new(
        stack.clients.sqs.clone(),
        stack.queues.priority_queue_url.clone(),
        stack.queues.normal_queue_url.clone(),
    ))));
    // The feed's cross-process signal as the runner and the cloud stack have it.
    let sessions = Sessions::new(store.clone()).with_feed_signal(chunkstream::feed_signal(
        &stack.state.config,
        &stack.clients,
    ));
    stack.state = AppState {
        config: stack.state.config.clone(),
        sessions: sessions.clone(),
        queue: queue.clone(),
        events: Default::default(),
        hints: Default::default(),
    };
    stack.worker = Worker::new(sessions);
    let base = stack.serve().await;
    let stats = Arc::new(Stats::default());
    let http = Arc::new(Http {
        base,
        client: reqwest::Client::new(),
        stats: stats.clone(),
    });

    // The worker: the local poller, as the runner runs it.
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let jobs = Arc::new(AtomicU64::new(0));
    let busy_us = Arc::new(AtomicU64::new(0));
    let poller = {
        let (sqs, worker, stop, polls, jobs, busy_us) = (
            stack.clients.sqs.clone(),
            stack.worker.clone(),
            stop.clone(),
            polls.clone(),
            jobs.clone(),
            busy_us.clone(),
        );
        let settings = PollerSettings {
            priority_url: stack.queues.priority_queue_url.clone(),
            normal_url: stack.queues.normal_queue_url.clone(),
            normal_batch: 2,
            idle_wait_secs: 1,
        };
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                polls.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let n = poll_once(&sqs, &worker, &settings, true).await.unwrap();
                if n > 0 {
                    busy_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                jobs.fetch_add(n as u64, Ordering::Relaxed);
            }
        })
    };

    // Sessions first, then everyone at once.
    let mut videos = Vec::new();
    for _ in 0..size.uploaders {
        let (code, created) = http
            .call(
                "create",
                reqwest::Method::POST,
                "/api/videos",
                None,
                Some(serde_json::to_value(&media.plan).unwrap()),
            )
            .await;
        assert_eq!(code, 201, "{created}");
        let id = created["video_id"].as_str().unwrap().to_string();
        let secret = created["upload_secret"].as_str().unwrap().to_string();
        videos.push((id, secret, created, Arc::new(AtomicBool::new(false))));
    }
    let counts_before = store.counts.snapshot();
    let started = Instant::now();
    // Generous: one local worker process (Lambda would scale out) on a shared machine
    // publishes ~1.6 parts/s, so allow 1 s per part (the 20 × 100 run needs ~21 min).
    let deadline = started + Duration::from_secs(120 + (size.uploaders * size.parts) as u64);
    let watched = size.viewers > 0;
    let mut tasks = Vec::new();
    for (id, secret, created, done) in videos.clone() {
        let (http, media) = (http.clone(), media.clone());
        tasks.push(tokio::spawn(async move {
            // Watched, the uploader holds the feed's long poll and reports each part at once;
            // nobody watching, the clients wait on the wake-up URL (priced apart, below) and
            // report their parts in the `next` calls.
            let feed = watched.then(|| {
                let (http, id, secret, done) =
                    (http.clone(), id.clone(), secret.clone(), done.clone());
                tokio::spawn(async move { priority_feed(&http, &id, &secret, &done).await })
            });
            upload_video(&http, &media, &id, &secret, &created, deadline, !watched).await;
            done.store(true, Ordering::Relaxed);
            if let Some(feed) = feed {
                feed.await.unwrap();
            }
        }));
    }
    let viewer_started = Instant::now();
    let mut viewer_tasks = Vec::new();
    for n in 0..size.viewers {
        let (id, _, _, done) = videos[n % videos.len()].clone();
        let http = http.clone();
        let slots = size.parts;
        viewer_tasks.push(tokio::spawn(async move {
            viewer(&http, &id, slots, n, &done).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let upload_secs = started.elapsed().as_secs_f64();
    for t in viewer_tasks {
        t.await.unwrap();
    }
    let viewer_minutes = viewer_started.elapsed().as_secs_f64() / 60.0 * size.viewers as f64;
    // Let the last finalisations land.
    let mut complete = false;
    for _ in 0..100 {
        let mut all = true;
        for (id, ..) in &videos {
            all &= sessions_done(&stack, id).await;
        }
        if all {
            complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    let counts = diff(&store.counts.snapshot(), &counts_before);
    let sends = queue.counts.snapshot().get("send").copied().unwrap_or(0);

    // Checks: complete, nothing lost, the public objects are the uploaded bytes.
    assert!(complete, "not every video finalised");
    for (id, ..) in &videos {
        for (slot, tracks) in media.segments.iter().enumerate() {
            for (track, bytes) in tracks.iter().enumerate() {
                let public = s3
                    .get(&sessions::published_key(id, track, slot))
                    .await
                    .unwrap();
                assert_eq!(
                    public.map(|o| o.body.to_vec()).as_ref(),
                    Some(bytes),
                    "{id} slot {slot} track {track}"
                );
            }
        }
        assert!(s3
            .list_keys(&sessions::incoming_prefix(id), None, 10)
            .await
            .unwrap()
            .is_empty());
        let state = stack.state.sessions.state(id).await.unwrap().0;
        assert!(state.complete && state.finalised && state.remaining() == 0);
    }
    let errors = stats.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "5xx other than 503: {errors:?}");

    // Figures.
    let parts = (size.uploaders * size.parts) as f64;
    let tracks = media.plan.tracks.len() as f64;
    println!(
        "load: {} uploaders × {} parts ({} s parts, {} tracks), {} viewers: uploads done in {upload_secs:.1} s",
        size.uploaders, size.parts, size.part_secs, tracks, size.viewers
    );
    println!(
        "503s retried (all succeeded): {}; 429 hints: {}; 5xx: 0",
        stats.retried_503.load(Ordering::Relaxed),
        stats.limited_429.load(Ordering::Relaxed)
    );
    for (path, mut v) in stats.latency.lock().unwrap().clone() {
        v.sort_by(f64::total_cmp);
        println!(
            "  {path:24} n={:6} p50 {:7.1} ms  p99 {:7.1} ms",
            v.len(),
            percentile(&v, 0.5),
            percentile(&v, 0.99)
        );
    }
    let writes: u64 = ["put", "copy", "list"]
        .iter()
        .map(|k| counts.get(k).copied().unwrap_or(0))
        .sum();
    let reads: u64 = ["get", "head"]
        .iter()
        .map(|k| counts.get(k).copied().unwrap_or(0))
        .sum();
    let polls = polls.load(Ordering::Relaxed) as f64;
    let jobs = jobs.load(Ordering::Relaxed) as f64;
    // SQS: each send; each poll is 1–2 receives; each job one delete (upper bound).
    let sqs = sends as f64 + polls * 2.0 + jobs;
    println!(
        "S3 by kind (whole run, uploaders + viewers + worker): {counts:?}; client PUTs {}",
        parts * tracks
    );
    println!(
        "per part: {:.2} S3 write-class ({:.2} with the client's PUTs), {:.2} S3 read-class, {:.2} SQS (sends {:.2})",
        writes as f64 / parts,
        writes as f64 / parts + tracks,
        reads as f64 / parts,
        sqs / parts,
        sends as f64 / parts
    );
    let viewer_calls = stats.viewer_calls.load(Ordering::Relaxed) as f64;
    if size.viewers > 0 {
        println!(
            "viewers: {viewer_minutes:.1} viewer-minutes, {:.0} API requests per viewer-minute",
            viewer_calls / viewer_minutes
        );
    }
    // us-east-1 list prices: S3 PUT/COPY/LIST $0.005/1k, GET/HEAD $0.0004/1k; SQS $0.40/M;
    // API Gateway HTTP API $1.00/M; Lambda $0.20/M requests + $0.0000166667/GB-s
    // (API 256 MB, worker 512 MB, the long poll 128 MB as in infra/template.yaml), GB-s from the
    // measured time of the uploader's calls and of the worker's batches.
    let lat = stats.latency.lock().unwrap().clone();
    let secs_of = |p: &str| lat.get(p).map_or(0.0, |v| v.iter().sum::<f64>() / 1000.0);
    let short_calls: f64 = ["next", "uploaded"]
        .iter()
        .map(|p| lat.get(p).map_or(0, Vec::len) as f64)
        .sum();
    let api_s3_sqs_per_part = (writes as f64 / parts + tracks) * 0.005e-3
        + reads as f64 / parts * 0.0004e-3
        + sqs / parts * 0.40e-6;
    let api_per_part = short_calls / parts * (1.00e-6 + 0.20e-6)
        + (secs_of("next") + secs_of("uploaded")) / parts * 0.25 * 0.0000166667;
    let worker_per_part = (jobs / parts) * 0.20e-6
        + busy_us.load(Ordering::Relaxed) as f64 / 1e6 / parts * 0.5 * 0.0000166667;
    let per_part = api_s3_sqs_per_part + api_per_part + worker_per_part;
    // The uploader's priority feed, all hour. Watched: one long poll held open in its 128 MB
    // Lambda (PriorityFeedFunction): its GB-s, its requests (one per 25 s wait, gateway + Lambda)
    // and, while it waits, its safety-net re-reads of windows.json, each after one SQS receive
    // on the feed queue, every SIGNALLED_PRIORITY_POLL_MS. Nobody watching: the uploader waits
    // on its wake-up URL instead (one SQS receive of up to 20 s; after every
    // WAKE_RUN_OUTS_PER_POLL-th that ran out, one short poll: gateway + Lambda request,
    // ~100 ms of 128 MB, 4 GETs). A viewer's change costs one SQS send and a
    // receive (charged to the viewers).
    let polls_per_hour = 3600.0 / (MAX_PRIORITY_WAIT_MS as f64 / 1000.0);
    let held_hour = {
        let waits = 3600.0 / (SIGNALLED_PRIORITY_POLL_MS as f64 / 1000.0);
        3600.0 * 0.125 * 0.0000166667 + polls_per_hour * 1.2e-6 + waits * (0.0004e-3 + 0.40e-6)
    };
    let wake_hour = {
        let wakes = 3600.0 / (SIGNALLED_UNWATCHED_PRIORITY_POLL_MS as f64 / 1000.0);
        let polls = wakes / WAKE_RUN_OUTS_PER_POLL;
        wakes * 0.40e-6 + polls * (1.2e-6 + 0.1 * 0.125 * 0.0000166667 + 4.0 * 0.0004e-3)
    };
    println!(
        "priority feed all hour: ${held_hour:.4} held in Lambda (a viewer waiting), ${wake_hour:.4} waiting on the wake-up URL (nobody seeking)"
    );
    println!(
        "per part: S3+SQS ${:.7}, API Lambda+gateway ${:.7}, worker Lambda ${:.7}",
        api_s3_sqs_per_part, api_per_part, worker_per_part
    );
    for secs in [4.0, 10.0] {
        let parts_per_hour = 3600.0 / secs;
        let floor = parts_per_hour * tracks * 0.005e-3;
        let hour = per_part * parts_per_hour;
        println!(
            "{secs:.0} s parts: ${hour:.4} per video-hour without the feed ({:.2} × the floor of {:.0} PUTs = ${floor:.4}); \
             nobody seeking (watched or not) + ${wake_hour:.4} = ${:.4} ({:.2} × floor); a viewer waiting all hour + ${held_hour:.4} = ${:.4} ({:.2} × floor)",
            hour / floor,
            parts_per_hour * tracks,
            hour + wake_hour,
            (hour + wake_hour) / floor,
            hour + held_hour,
            (hour + held_hour) / floor
        );
    }
}

async fn sessions_done(stack: &TestStack, id: &str) -> bool {
    stack
        .state
        .sessions
        .state(id)
        .await
        .map(|(s, _)| s.complete && s.finalised)
        .unwrap_or(false)
}

fn diff(
    after: &BTreeMap<&'static str, u64>,
    before: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_load_of_uploaders_and_viewers_loses_nothing_and_answers_no_5xx_but_retried_503s() {
    run_load(Sizing {
        uploaders: 4,
        parts: 20,
        viewers: 20,
        part_secs: 2,
    })
    .await;
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwatched_uploads_report_their_parts_in_next_and_lose_nothing() {
    run_load(Sizing {
        uploaders: 3,
        parts: 12,
        viewers: 0,
        part_secs: 2,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the load benchmark: scripts/bench-state.sh"]
async fn load_benchmark() {
    run_load(Sizing {
        uploaders: env_or("LOAD_UPLOADERS", 20),
        parts: env_or("LOAD_PARTS", 100),
        viewers: env_or("LOAD_VIEWERS", 100),
        part_secs: 2,
    })
    .await;
}

/// One uploader (its part 0 published, then only its priority feed open, as while it
/// is busy elsewhere), the worker and `viewers` viewers seeking over a video of `slots`
/// parts, for `secs`: the latencies per path.
async fn big_video_load(
    slots: usize,
    viewers: usize,
    secs: u64,
) -> BTreeMap<&'static str, Vec<f64>> {
    let media = media();
    // 20,000 copies of the test media's 10 s part: past the 24 h cap, which is not what
    // this measures (the slot count is at its limit)
    let stack = TestStack::with(chunkstream::provision::QueueSettings::default(), |c| {
        c.limits.max_total_duration_secs = 300_000;
    })
    .await;
    let base = stack.serve().await;
    let stats = Arc::new(Stats::default());
    let http = Arc::new(Http {
        base,
        client: reqwest::Client::new(),
        stats: stats.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (sqs, worker, stop) = (
            stack.clients.sqs.clone(),
            stack.worker.clone(),
            stop.clone(),
        );
        let settings = PollerSettings {
            priority_url: stack.queues.priority_queue_url.clone(),
            normal_url: stack.queues.normal_queue_url.clone(),
            normal_batch: 2,
            idle_wait_secs: 1,
        };
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                poll_once(&sqs, &worker, &settings, true).await.unwrap();
            }
        })
    };
    let post = reqwest::Method::POST;
    let plan = synthetic_plan(slots);
    let (code, created) = http
        .call(
            "create",
            post.clone(),
            "/api/videos",
            None,
            Some(serde_json::to_value(&plan).unwrap()),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["video_id"].as_str().unwrap().to_string();
    let secret = created["upload_secret"].as_str().unwrap().to_string();
    for (i, u) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert!(put_presigned(u, media.init[i].clone())
            .await
            .status()
            .is_success());
    }
    let (_, batch) = http
        .call(
            "next",
            post.clone(),
            &format!("/api/videos/{id}/next"),
            Some(&secret),
            Some(json!({"max": 1})),
        )
        .await;
    let assignment = &batch["assignments"][0];
    assert_eq!(assignment["slot"], 0, "{batch}");
    assert_eq!(
        upload_slot(&http, media, &id, &secret, assignment).await,
        202
    );
    stats.latency.lock().unwrap().clear();

    let done = Arc::new(AtomicBool::new(false));
    let feed = {
        let (http, id, secret, done) = (http.clone(), id.clone(), secret.clone(), done.clone());
        tokio::spawn(async move { priority_feed(&http, &id, &secret, &done).await })
    };
    let mut tasks = Vec::new();
    for n in 0..viewers {
        let (http, id, done) = (http.clone(), id.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            viewer(&http, &id, slots, n, &done).await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    feed.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    let errors = stats.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "5xx other than 503: {errors:?}");
    let latency = stats.latency.lock().unwrap().clone();
    latency
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test -p chunkstream --test load big_video_benchmark -- --ignored --nocapture"]
async fn big_video_benchmark() {
    let viewers = env_or("LOAD_VIEWERS", 50);
    let secs = env_or("LOAD_SECS", 60) as u64;
    let small = big_video_load(100, viewers, secs).await;
    let big = big_video_load(20_000, viewers, secs).await;
    println!("{viewers} viewers for {secs} s on a video of 100 parts, then of 20,000 parts (one uploader, the worker):");
    println!(
        "  {:24} {:>22} {:>22}",
        "path", "100 parts: p50 / p99", "20,000 parts: p50 / p99"
    );
    for (path, small) in &small {
        let mut s = small.clone();
        s.sort_by(f64::total_cmp);
        let mut b = big.get(path).cloned().unwrap_or_default();
        b.sort_by(f64::total_cmp);
        let fmt = |v: &[f64]| {
            if v.is_empty() {
                "—".to_string()
            } else {
                format!(
                    "{:.1} / {:.1} ms (n={})",
                    percentile(v, 0.5),
                    percentile(v, 0.99),
                    v.len()
                )
            }
        };
        println!("  {path:24} {:>22} {:>22}", fmt(&s), fmt(&b));
    }
}
