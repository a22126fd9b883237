//! Backend benchmarks on LocalStack (not tests: they print figures, each with a
//! baseline measured in the same run). Run through `scripts/bench.sh`, or
//! `cargo bench -p chunkstream --bench backend -- --out results.json`.
//!
//! 6. Uploaded → published latency of priority jobs, with and without 10,000
//!    normal jobs queued.
//! 7. API latency (create, next, prioritize) over HTTP, against an HTTP
//!    round trip to the same server and one S3 GET.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chunkstream::local::{run_poller, PollerSettings};
use chunkstream::queue::Job;
use chunkstream_domain::state::{Lane, SlotState};
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (samples.len() as f64 - 1.0)).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One row of the results table.
fn row(
    id: &str,
    name: &str,
    value: f64,
    unit: &str,
    baseline: f64,
    target: Option<(&str, bool)>,
) -> Value {
    json!({
        "id": id, "name": name, "value": value, "unit": unit, "baseline": baseline,
        "ratio": if baseline > 0.0 { value / baseline } else { f64::NAN },
        "target": target.map(|t| t.0), "met": target.map(|t| t.1),
    })
}

async fn http_latency(
    n: usize,
    mut request: impl FnMut(usize) -> reqwest::RequestBuilder,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let resp = request(i).send().await.unwrap();
        let status = resp.status();
        let _ = resp.bytes().await.unwrap();
        assert!(status.is_success(), "{status}");
        out.push(ms(started.elapsed()));
    }
    out
}

async fn api_latency(quick: bool) -> Vec<Value> {
    let stack = TestStack::new().await;
    let base = stack.serve().await;
    let client = reqwest::Client::new();
    let n = if quick { 30 } else { 200 };
    let hour = synthetic_plan(360);
    let plan_json = serde_json::to_string(&hour).unwrap();

    let mut health = http_latency(n, |_| client.get(format!("{base}/api/health"))).await;
    // Storage floor: one small S3 GET through the same SDK client.
    let store = stack.state.sessions.store().clone();
    store
        .put(
            "bench/probe",
            bytes::Bytes::from_static(b"{}"),
            "application/json",
            chunkstream::store::PutCondition::Always,
        )
        .await
        .unwrap();
    let mut s3_get = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        store.get("bench/probe").await.unwrap();
        s3_get.push(ms(started.elapsed()));
    }
    let mut create = http_latency(n / 4, |_| {
        client
            .post(format!("{base}/api/videos"))
            .header("content-type", "application/json")
            .body(plan_json.clone())
    })
    .await;
    let (id, secret, _) = create_session(&stack, &hour).await;
    let mut next = http_latency(n, |_| {
        client
            .post(format!("{base}/api/videos/{id}/next"))
            .bearer_auth(&secret)
            .header("content-type", "application/json")
            .body(r#"{"max": 1}"#)
    })
    .await;
    let mut prioritize = http_latency(n, |i| {
        client
            .post(format!("{base}/api/videos/{id}/prioritize"))
            .header("content-type", "application/json")
            .body(json!({"slot": (i * 37) % 360}).to_string())
    })
    .await;

    let s3 = percentile(&mut s3_get, 50.0);
    let http = percentile(&mut health, 50.0);
    let mut rows = vec![
        row(
            "7.http",
            "API: HTTP round trip (GET /api/health) p50",
            http,
            "ms",
            s3,
            None,
        ),
        row("7.s3", "API: one S3 GET (baseline) p50", s3, "ms", s3, None),
    ];
    for (name, samples) in [
        ("create (360 slots)", &mut create),
        ("next (max 1)", &mut next),
        ("prioritize", &mut prioritize),
    ] {
        let p50 = percentile(samples, 50.0);
        let p99 = percentile(samples, 99.0);
        rows.push(row("7", &format!("API: {name} p50"), p50, "ms", s3, None));
        rows.push(row("7", &format!("API: {name} p99"), p99, "ms", s3, None));
    }
    rows
}

/// A session of the real test media with every segment uploaded, none reported.
async fn uploaded_session(stack: &TestStack) -> (String, String) {
    let media = media();
    let (id, secret, created) = create_session(stack, &media.plan).await;
    upload_inits(&created, media).await;
    let batch = next(stack, &id, &secret, 16).await;
    for a in batch["assignments"].as_array().unwrap() {
        upload_assignment(a, media).await;
    }
    (id, secret)
}

/// Time from the "uploaded" report of a slot in a viewer's window to its publication.
async fn priority_trials(stack: &TestStack, trials: usize) -> Vec<f64> {
    let last = media().plan.slots.len() - 1;
    let mut out = Vec::with_capacity(trials);
    for _ in 0..trials {
        let (id, secret) = uploaded_session(stack).await;
        let (code, _) = stack
            .call(
                "POST",
                &format!("/api/videos/{id}/prioritize"),
                None,
                Some(&json!({"slot": last}).to_string()),
            )
            .await;
        assert!(code.is_success());
        let started = Instant::now();
        let (_, reported) = stack
            .call(
                "POST",
                &format!("/api/videos/{id}/slots/{last}/uploaded"),
                Some(&secret),
                None,
            )
            .await;
        assert_eq!(reported["queue"], "priority");
        loop {
            let (state, _) = stack.state.sessions.state(&id).await.unwrap();
            if matches!(state.slots[last], SlotState::Published { .. }) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "priority job never published"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.push(ms(started.elapsed()));
    }
    out
}

async fn priority_under_backlog(quick: bool) -> Vec<Value> {
    let stack = TestStack::new().await;
    let poller = tokio::spawn(run_poller(
        stack.clients.sqs.clone(),
        stack.worker.clone(),
        PollerSettings {
            priority_url: stack.queues.priority_queue_url.clone(),
            normal_url: stack.queues.normal_queue_url.clone(),
            normal_batch: 2,
            idle_wait_secs: 1,
        },
    ));
    let trials = if quick { 5 } else { 20 };
    let mut idle = priority_trials(&stack, trials).await;

    // The backlog: jobs for an already published slot (each costs the worker real S3 reads).
    let (done_id, done_secret) = uploaded_session(&stack).await;
    let (_, _) = stack
        .call(
            "POST",
            &format!("/api/videos/{done_id}/slots/0/uploaded"),
            Some(&done_secret),
            None,
        )
        .await;
    let backlog = if quick { 2_000 } else { 10_000 };
    let body = serde_json::to_string(&Job {
        video_id: done_id.clone(),
        slot: 0,
        lane: Lane::Normal,
        etags: vec![],
    })
    .unwrap();
    let sqs = stack.clients.sqs.clone();
    let url = stack.queues.normal_queue_url.clone();
    futures::stream::iter(0..backlog / 10)
        .map(|batch| {
            let entries: Vec<_> = (0..10)
                .map(|i| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(format!("m{batch}-{i}"))
                        .message_body(body.clone())
                        .build()
                        .unwrap()
                })
                .collect();
            let (sqs, url) = (sqs.clone(), url.clone());
            async move {
                sqs.send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let queued_before = stack.queue_depth(&stack.queues.normal_queue_url).await;
    let mut loaded = priority_trials(&stack, trials).await;
    let queued_after = stack.queue_depth(&stack.queues.normal_queue_url).await;
    poller.abort();
    stack
        .clients
        .sqs
        .purge_queue()
        .queue_url(&stack.queues.normal_queue_url)
        .send()
        .await
        .ok();

    let idle50 = percentile(&mut idle, 50.0);
    let idle99 = percentile(&mut idle, 99.0);
    let p50 = percentile(&mut loaded, 50.0);
    let p99 = percentile(&mut loaded, 99.0);
    let unaffected = |v: f64, base: f64| v <= base * 1.5 + 50.0;
    vec![
        row("6", "Uploaded→published, priority job, empty queues p50", idle50, "ms", idle50, None),
        row("6", "Uploaded→published, priority job, empty queues p99", idle99, "ms", idle99, None),
        row(
            "6",
            &format!("Uploaded→published, priority job, {queued_before} normal jobs queued (≥{queued_after} still queued after) p50"),
            p50,
            "ms",
            idle50,
            Some(("unaffected: ≤ 1.5 × baseline + 50 ms", unaffected(p50, idle50))),
        ),
        row(
            "6",
            &format!("Uploaded→published, priority job, {queued_before} normal jobs queued p99"),
            p99,
            "ms",
            idle99,
            Some(("unaffected: ≤ 1.5 × baseline + 50 ms", unaffected(p99, idle99))),
        ),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // `cargo bench` passes --bench; nothing else is expected.
    let mut rows = api_latency(quick).await;
    rows.extend(priority_under_backlog(quick).await);
    println!(
        "{:<95} {:>10} {:>10} {:>8}  target",
        "figure", "value", "baseline", "ratio"
    );
    for r in &rows {
        println!(
            "{:<95} {:>8.1}{:<2} {:>10.1} {:>8.2}  {}",
            r["name"].as_str().unwrap(),
            r["value"].as_f64().unwrap(),
            r["unit"].as_str().unwrap(),
            r["baseline"].as_f64().unwrap(),
            r["ratio"].as_f64().unwrap_or(f64::NAN),
            match (r["target"].as_str(), r["met"].as_bool()) {
                (Some(t), Some(true)) => format!("met ({t})"),
                (Some(t), _) => format!("NOT met ({t})"),
                _ => String::new(),
            }
        );
    }
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    }
}
