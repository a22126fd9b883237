//! API, worker and reaper logic against the in-memory fakes of every port
//! (object store with ETags and conditional writes, job queue, clock), and a
//! fault-injecting store/queue: each test runs in milliseconds, no LocalStack.
//! The real adapters and the full flow are covered by `tests/localstack.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use chunkstream::api::{app, AppState};
use chunkstream::clock::{Clock, ManualClock, SystemClock};
use chunkstream::config::Config;
use chunkstream::faults::{self, FaultMode, FaultPlan, FaultyQueue, FaultyStore};
use chunkstream::memory::{MemoryQueue, MemoryStore};
use chunkstream::queue::Job;
use chunkstream::reaper::{reap_abandoned, ReapSettings, CURSOR_KEY};
use chunkstream::sessions::{self, Sessions};
use chunkstream::worker::{handle_batch, JobError, Outcome, Worker};
use chunkstream_domain::plan::PlanLimits;
use chunkstream_domain::state::{Lane, SchedulePolicy};
use common::*;
use serde_json::Value;

struct Fakes {
    memory: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    clock: Arc<ManualClock>,
    faults: Arc<Mutex<FaultPlan>>,
    state: AppState,
    worker: Worker,
}

impl Api for Fakes {
    fn app_router(&self) -> Router {
        app(self.state.clone())
    }
}

const TTL: Duration = Duration::from_secs(3600);

impl Fakes {
    fn new() -> Self {
        let memory = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::at(SystemClock.now_ms()));
        let faults = FaultPlan::shared();
        let store = Arc::new(FaultyStore::new(memory.clone(), faults.clone()));
        let sessions = Sessions::with_clock(store, clock.clone());
        let config = Config {
            bucket: "memory".into(),
            priority_queue_url: "memory-priority".into(),
            normal_queue_url: "memory-normal".into(),
            public_base_url: "http://127.0.0.1:9".into(),
            s3_public_endpoint: None,
            presign_ttl: Duration::from_secs(300),
            session_ttl: TTL,
            limits: PlanLimits::default(),
            policy: SchedulePolicy::default(),
        };
        let state = AppState {
            config: Arc::new(config),
            sessions: sessions.clone(),
            queue: Arc::new(FaultyQueue::new(queue.clone(), faults.clone())),
            events: Default::default(),
        };
        Self {
            memory,
            queue,
            clock,
            faults,
            state,
            worker: Worker::new(sessions),
        }
    }

    fn sessions(&self) -> &Sessions {
        &self.state.sessions
    }

    fn reap_settings(&self) -> ReapSettings {
        ReapSettings {
            ttl: TTL,
            redrive_after: Duration::from_secs(600),
            budget: Duration::from_secs(20),
            policy: SchedulePolicy::default(),
        }
    }

    fn upload(&self, upload: &Value, body: &[u8]) {
        self.memory
            .upload(upload["url"].as_str().unwrap(), body.to_vec())
            .unwrap();
    }

    fn upload_slot(&self, assignment: &Value, media: &Media) {
        let slot = assignment["slot"].as_u64().unwrap() as usize;
        for (i, u) in assignment["uploads"].as_array().unwrap().iter().enumerate() {
            self.upload(u, &media.segments[slot][i]);
        }
    }

    /// A session with every slot uploaded and reported (jobs queued).
    async fn uploaded_session(&self) -> (String, String) {
        let media = media();
        let (id, secret, created) = create_session(self, &media.plan).await;
        for (i, u) in created["init_uploads"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            self.upload(u, &media.init[i]);
        }
        let batch = next(self, &id, &secret, 16).await;
        for a in batch["assignments"].as_array().unwrap() {
            self.upload_slot(a, media);
            report_uploaded(self, &id, &secret, a["slot"].as_u64().unwrap()).await;
        }
        (id, secret)
    }

    /// Delivers queued jobs (priority first) until none is left, redelivering
    /// the ones that asked to be retried; returns every outcome per slot.
    async fn drain(&self) -> BTreeMap<usize, Vec<Outcome>> {
        let mut outcomes: BTreeMap<usize, Vec<Outcome>> = BTreeMap::new();
        for _ in 0..100 {
            let event = self.queue.receive(10);
            if event.records.is_empty() {
                return outcomes;
            }
            let mut failed = Vec::new();
            for message in &event.records {
                let job: Job = serde_json::from_str(message.body.as_deref().unwrap()).unwrap();
                match self.worker.process(&job).await {
                    Ok(o) => outcomes.entry(job.slot).or_default().push(o),
                    Err(JobError::Retry(_)) => failed.push(message.message_id.clone().unwrap()),
                    Err(JobError::Fatal(e)) => panic!("fatal: {e:#}"),
                }
            }
            self.queue.settle(&event, &failed);
        }
        panic!("jobs never drained: {outcomes:?}");
    }

    async fn slot_state(&self, id: &str, slot: usize) -> String {
        let (s, _) = self.sessions().state(id).await.unwrap();
        s.slots[slot].name().to_string()
    }
}

fn published_count(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Published { .. }))
        .count()
}

/// Everything a converged video must satisfy.
async fn assert_converged(f: &Fakes, id: &str) {
    let media = media();
    let (state, _) = f.sessions().state(id).await.unwrap();
    assert!(state.complete && state.finalised, "{:?}", state.inits);
    for slot in 0..media.plan.slots.len() {
        for track in 0..media.plan.tracks.len() {
            let public = f.memory.object(&sessions::published_key(id, track, slot));
            assert_eq!(
                public.as_deref(),
                Some(media.segments[slot][track].as_slice()),
                "slot {slot} track {track}"
            );
        }
    }
    assert!(f.memory.keys(&sessions::incoming_prefix(id)).is_empty());
    assert!(f.memory.object(&sessions::live_key(id)).is_none());
}

#[tokio::test]
async fn a_full_upload_publishes_every_slot_with_one_job_each_and_cleans_up() {
    let f = Fakes::new();
    let (id, _) = f.uploaded_session().await;
    let slots = media().plan.slots.len();
    assert_eq!(f.queue.sent(), slots as u64, "one job per slot");
    assert!(f.memory.object(&sessions::live_key(&id)).is_some());
    let outcomes = f.drain().await;
    for slot in 0..slots {
        assert_eq!(published_count(&outcomes[&slot]), 1, "{outcomes:?}");
    }
    assert_converged(&f, &id).await;
    assert_eq!(status(&f, &id).await["complete"], true);
}

#[tokio::test]
async fn a_report_without_its_objects_or_with_other_sizes_is_refused_and_sends_no_job() {
    let f = Fakes::new();
    let media = media();
    let (id, secret, _) = create_session(&f, &media.plan).await;
    let batch = next(&f, &id, &secret, 1).await;
    let report = format!("/api/videos/{id}/slots/0/uploaded");
    let (code, body) = f.call("POST", &report, Some(&secret), None).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "upload_missing");
    // Track 0 in place, track 1 of another size (written around the presigned URL).
    f.upload(
        &batch["assignments"][0]["uploads"][0],
        &media.segments[0][0],
    );
    f.memory
        .insert(&sessions::incoming_key(&id, 0, 1), vec![0u8; 10]);
    let (code, body) = f.call("POST", &report, Some(&secret), None).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "upload_size_mismatch");
    let (code, _) = f
        .call(
            "POST",
            &format!("/api/videos/{id}/slots/99/uploaded"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(f.queue.sent(), 0);
    assert_eq!(f.slot_state(&id, 0).await, "assigned");
}

#[tokio::test]
async fn a_repeated_report_sends_no_second_job_and_a_reupload_makes_the_old_job_stale() {
    let f = Fakes::new();
    let media = media();
    let (id, secret, _) = create_session(&f, &media.plan).await;
    let batch = next(&f, &id, &secret, 1).await;
    let a = &batch["assignments"][0];
    f.upload_slot(a, media);
    assert_eq!(report_uploaded(&f, &id, &secret, 0).await["enqueued"], true);
    assert_eq!(
        report_uploaded(&f, &id, &secret, 0).await["enqueued"],
        false
    );
    assert_eq!(f.queue.sent(), 1);
    // The same bytes uploaded again: a new version, which supersedes the first.
    f.upload_slot(a, media);
    assert_eq!(report_uploaded(&f, &id, &secret, 0).await["enqueued"], true);
    let jobs = f.queue.waiting(Lane::Normal);
    assert_eq!(jobs.len(), 2);
    assert_ne!(jobs[0].etags, jobs[1].etags);
    assert!(matches!(
        f.worker.process(&jobs[0]).await.unwrap(),
        Outcome::Dropped(reason) if reason.contains("superseded")
    ));
    assert_eq!(f.slot_state(&id, 0).await, "uploaded");
    assert!(matches!(
        f.worker.process(&jobs[1]).await.unwrap(),
        Outcome::Published { .. }
    ));
    // A report of a published slot is refused.
    let (code, body) = f
        .call(
            "POST",
            &format!("/api/videos/{id}/slots/0/uploaded"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "already_published");
}

#[tokio::test]
async fn a_slot_with_one_bad_track_publishes_no_track_at_all() {
    let f = Fakes::new();
    let media = media();
    let (id, secret, _) = create_session(&f, &media.plan).await;
    let batch = next(&f, &id, &secret, 1).await;
    let uploads = &batch["assignments"][0]["uploads"];
    f.upload(&uploads[0], &media.segments[0][0]);
    // Track 1 gets slot 1's audio padded to slot 0's size: right size, wrong tfdt.
    let mut wrong = media.segments[1][1].clone();
    wrong.resize(media.segments[0][1].len(), 0);
    f.upload(&uploads[1], &wrong);
    report_uploaded(&f, &id, &secret, 0).await;
    let outcomes = f.drain().await;
    assert!(
        matches!(outcomes[&0][0], Outcome::Refused(_)),
        "{outcomes:?}"
    );
    assert!(
        f.memory.keys(&format!("v/{id}/seg/")).is_empty(),
        "a track went public although its slot was refused"
    );
    assert_eq!(f.slot_state(&id, 0).await, "failed");
}

#[tokio::test]
async fn every_crash_point_of_the_worker_converges_on_redelivery() {
    // A clean run names the worker's write steps: per init copy and state
    // write, per slot copy track 0,
    // copy track 1, state write; after the last one delete incoming, state
    // leave the live index, state write (finalised).
    let clean = Fakes::new();
    let (_, _) = clean.uploaded_session().await;
    faults::arm(&clean.faults, None);
    clean.drain().await;
    let steps = faults::steps(&clean.faults);
    let slots = media().plan.slots.len();
    // The first job also checks and publishes each init: copy, state write.
    let init_steps = media().plan.tracks.len() * 2;
    assert_eq!(steps.len(), init_steps + slots * 3 + 3, "{steps:#?}");

    for mode in [FaultMode::FailBefore, FaultMode::CrashAfter] {
        for at in 0..steps.len() {
            let f = Fakes::new();
            let (id, _) = f.uploaded_session().await;
            faults::arm(&f.faults, Some((at, mode)));
            let outcomes = f.drain().await;
            let fired = faults::fired(&f.faults);
            assert!(fired.is_some(), "{mode:?} at {at} never fired");
            let context = format!("{mode:?} at step {at} ({fired:?}): {outcomes:?}");
            // Each slot is published once; a crash right after a publishing
            // state write, or during finalisation, hides that outcome.
            let hidden = usize::from(
                at >= init_steps + slots * 3
                    || (mode == FaultMode::CrashAfter
                        && at >= init_steps
                        && fired.as_deref().is_some_and(|s| s.ends_with("state.json"))),
            );
            let seen: usize = (0..slots)
                .map(|slot| {
                    let n = outcomes.get(&slot).map_or(0, |o| published_count(o));
                    assert!(n <= 1, "{context}");
                    n
                })
                .sum();
            assert_eq!(seen + hidden, slots, "{context}");
            assert_converged(&f, &id).await;
        }
    }
}

#[tokio::test]
async fn a_lost_job_send_is_answered_503_and_the_retried_report_sends_it() {
    for mode in [FaultMode::FailBefore, FaultMode::CrashAfter] {
        let f = Fakes::new();
        let media = media();
        let (id, secret, _) = create_session(&f, &media.plan).await;
        let batch = next(&f, &id, &secret, 1).await;
        f.upload_slot(&batch["assignments"][0], media);
        faults::arm(&f.faults, None);
        // The report's writes: the state, then the job (step 1).
        faults::arm(&f.faults, Some((1, mode)));
        let (code, body) = f
            .call(
                "POST",
                &format!("/api/videos/{id}/slots/0/uploaded"),
                Some(&secret),
                None,
            )
            .await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{mode:?} {body}");
        assert_eq!(body["error"], "unavailable");
        assert!(faults::fired(&f.faults).unwrap().starts_with("send"));
        // The uploader retries after Retry-After.
        f.clock.advance(1_001);
        assert_eq!(report_uploaded(&f, &id, &secret, 0).await["enqueued"], true);
        let outcomes = f.drain().await;
        assert_eq!(published_count(&outcomes[&0]), 1, "{mode:?} {outcomes:?}");
        assert_eq!(f.slot_state(&id, 0).await, "published");
    }
}

#[tokio::test]
async fn access_denied_is_not_retried_but_a_transient_error_is() {
    let f = Fakes::new();
    let (id, _) = f.uploaded_session().await;
    for (mode, retried) in [(FaultMode::FailBefore, true), (FaultMode::Deny, false)] {
        faults::arm(&f.faults, Some((0, mode)));
        let event = f.queue.receive(1);
        let response = handle_batch(&f.worker, event.clone(), None).await;
        assert_eq!(
            response.batch_item_failures.len(),
            usize::from(retried),
            "{mode:?}"
        );
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|b| b.item_identifier.clone())
            .collect();
        f.queue.settle(&event, &failed);
    }
    // The denied slot stays "uploaded", for the reaper's re-drive once the cause is fixed.
    faults::arm(&f.faults, None);
    let (state, _) = f.sessions().state(&id).await.unwrap();
    assert_eq!(state.counts()["uploaded"], media().plan.slots.len());
}

#[tokio::test]
async fn a_batch_near_its_deadline_returns_its_jobs_unstarted() {
    let f = Fakes::new();
    let (id, _) = f.uploaded_session().await;
    let event = f.queue.receive(10);
    let n = event.records.len();
    assert!(n >= 2);
    let soon = Instant::now() + Duration::from_secs(1);
    let response = handle_batch(&f.worker, event.clone(), Some(soon)).await;
    assert_eq!(response.batch_item_failures.len(), n);
    let (state, _) = f.sessions().state(&id).await.unwrap();
    assert_eq!(state.counts()["published"], 0, "nothing was started");
    let later = Instant::now() + Duration::from_secs(60);
    let response = handle_batch(&f.worker, event, Some(later)).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(f.sessions().state(&id).await.unwrap().0.complete);
}

#[tokio::test]
async fn the_reaper_reads_only_live_sessions_and_deletes_abandoned_ones_with_their_uploads() {
    let f = Fakes::new();
    let media = media();
    let (done, _) = f.uploaded_session().await;
    f.drain().await;
    let (abandoned, secret, _) = create_session(&f, &media.plan).await;
    let batch = next(&f, &abandoned, &secret, 1).await;
    f.upload_slot(&batch["assignments"][0], media);
    // (The API's own transitions read the system clock: a minute of slack.)
    f.clock.advance(TTL.as_millis() as u64 + 60_000);
    let (live, _, _) = create_session(&f, &media.plan).await;
    let report = reap_abandoned(f.sessions(), f.queue.as_ref(), &f.reap_settings())
        .await
        .unwrap();
    assert_eq!(
        report.checked, 2,
        "the finalised video is not read: {report:?}"
    );
    assert_eq!(report.reaped, vec![abandoned.clone()]);
    assert!(report.pass_complete);
    assert!(f
        .memory
        .keys(&sessions::video_prefix(&abandoned))
        .is_empty());
    assert!(f
        .memory
        .keys(&sessions::incoming_prefix(&abandoned))
        .is_empty());
    assert!(f.memory.object(&sessions::live_key(&abandoned)).is_none());
    assert_eq!(status(&f, &live).await["complete"], false);
    assert_eq!(status(&f, &done).await["complete"], true);
}

#[tokio::test]
async fn one_corrupt_session_never_stops_a_pass_and_an_interrupted_finalisation_is_finished() {
    let f = Fakes::new();
    let media = media();
    let (corrupt, _, _) = create_session(&f, &media.plan).await;
    f.memory
        .insert(&sessions::state_key(&corrupt), b"{not json".to_vec());
    let (done, _) = f.uploaded_session().await;
    // Crash the last job right after the video completed, before finalising.
    let steps_before_finalise = media.plan.tracks.len() * 2 + media.plan.slots.len() * 3;
    faults::arm(
        &f.faults,
        Some((steps_before_finalise, FaultMode::FailBefore)),
    );
    let mut outcomes = BTreeMap::new();
    for _ in 0..media.plan.slots.len() {
        let event = f.queue.receive(1);
        let job: Job = serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
        outcomes.insert(job.slot, f.worker.process(&job).await.is_ok());
        f.queue.settle(&event, &[]); // the retry is lost too
    }
    assert!(outcomes.values().any(|ok| !ok), "{outcomes:?}");
    assert!(!f.sessions().state(&done).await.unwrap().0.finalised);
    let report = reap_abandoned(f.sessions(), f.queue.as_ref(), &f.reap_settings())
        .await
        .unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.errors[0].0, corrupt);
    assert_eq!(report.finalised, vec![done.clone()]);
    assert_converged(&f, &done).await;
}

#[tokio::test]
async fn a_pass_over_budget_stops_and_the_next_one_resumes_at_its_cursor() {
    let f = Fakes::new();
    let plan = synthetic_plan(2);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create_session(&f, &plan).await.0);
    }
    ids.sort();
    let settings = ReapSettings {
        budget: Duration::ZERO,
        ..f.reap_settings()
    };
    let mut seen = Vec::new();
    for pass in 0..3 {
        let report = reap_abandoned(f.sessions(), f.queue.as_ref(), &settings)
            .await
            .unwrap();
        assert_eq!(report.checked, 1, "pass {pass}: {report:?}");
        assert_eq!(report.pass_complete, pass == 2, "pass {pass}");
        seen.push(f.memory.object(CURSOR_KEY).unwrap());
    }
    assert!(String::from_utf8_lossy(&seen[0]).contains(&ids[0]));
    assert!(String::from_utf8_lossy(&seen[1]).contains(&ids[1]));
    assert_eq!(String::from_utf8_lossy(&seen[2]), r#"{"after":null}"#);
}

#[tokio::test]
async fn a_redriven_job_keeps_its_priority_lane_and_its_version() {
    let f = Fakes::new();
    let media = media();
    let (id, secret, _) = create_session(&f, &media.plan).await;
    let (code, _) = f
        .call(
            "POST",
            &format!("/api/videos/{id}/prioritize"),
            None,
            Some(r#"{"slot": 1}"#),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let batch = next(&f, &id, &secret, 1).await;
    assert_eq!(batch["assignments"][0]["slot"], 1);
    f.upload_slot(&batch["assignments"][0], media);
    assert_eq!(
        report_uploaded(&f, &id, &secret, 1).await["queue"],
        "priority"
    );
    let sent = f.queue.waiting(Lane::Priority);
    f.queue.receive(10); // the job is lost
                         // Long after the viewer's window expired.
    f.clock.advance(3_600_000);
    let report = reap_abandoned(
        f.sessions(),
        f.queue.as_ref(),
        &ReapSettings {
            ttl: Duration::from_secs(7 * 24 * 3600),
            ..f.reap_settings()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.redriven, vec![(id.clone(), 1)]);
    assert_eq!(f.queue.waiting(Lane::Priority), sent);
    assert!(!sent[0].etags.is_empty());
}

#[tokio::test]
async fn an_init_segment_goes_public_only_once_checked_and_the_video_completes_only_with_it() {
    let f = Fakes::new();
    let media = media();
    let (id, secret, created) = create_session(&f, &media.plan).await;
    let uploads = created["init_uploads"].as_array().unwrap();
    assert!(uploads[0]["url"].as_str().unwrap().contains("incoming/"));
    f.upload(&uploads[0], &media.init[0]);
    // Track 1 gets track 0's init padded to its size: a video init for an audio track.
    let mut wrong = media.init[0].clone();
    wrong.resize(media.init[1].len(), 0);
    f.upload(&uploads[1], &wrong);
    let init = |t: usize| format!("/v/{id}/init/{t}.mp4");
    let (code, _) = f.call("GET", &init(0), None, None).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "a viewer's miss checks and publishes it at once"
    );
    let (code, _) = f.call("GET", &init(1), None, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let st = status(&f, &id).await;
    assert_eq!(st["inits"][0]["state"], "published", "{st}");
    assert_eq!(st["inits"][1]["state"], "failed", "{st}");
    assert!(f.memory.object(&sessions::init_key(&id, 1)).is_none());
    let (state, _) = f.sessions().state(&id).await.unwrap();
    assert!(
        matches!(&state.inits[1], chunkstream_domain::state::InitState::Failed { reason } if reason.contains("init 1")),
        "{:?}",
        state.inits
    );
    // Every slot published, yet not complete: the job waits for the init.
    let batch = next(&f, &id, &secret, 16).await;
    for a in batch["assignments"].as_array().unwrap() {
        f.upload_slot(a, media);
        report_uploaded(&f, &id, &secret, a["slot"].as_u64().unwrap()).await;
    }
    for _ in 0..media.plan.slots.len() {
        let event = f.queue.receive(1);
        handle_batch(&f.worker, event.clone(), None).await;
        f.queue.settle(&event, &[]); // its retries end in the DLQ
    }
    let (state, _) = f.sessions().state(&id).await.unwrap();
    assert!(state.all_slots_published() && !state.complete);
    // The uploader resumes: fresh init URLs, the right bytes this time; the reaper finishes.
    let (code, body) = f
        .call(
            "POST",
            &format!("/api/videos/{id}/init"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    f.upload(&body["init_uploads"][1], &media.init[1]);
    let report = reap_abandoned(f.sessions(), f.queue.as_ref(), &f.reap_settings())
        .await
        .unwrap();
    assert_eq!(report.finalised, vec![id.clone()], "{report:?}");
    assert_converged(&f, &id).await;
    assert_eq!(
        f.memory.object(&sessions::init_key(&id, 1)).as_deref(),
        Some(media.init[1].as_slice())
    );
    let (code, body) = f
        .call(
            "POST",
            &format!("/api/videos/{id}/init"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "already_complete");
}

#[tokio::test]
async fn a_report_and_a_job_cost_a_pinned_number_of_s3_requests() {
    let f = Fakes::new();
    let media = media();
    let (id, secret, created) = create_session(&f, &media.plan).await;
    for (i, u) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        f.upload(u, &media.init[i]);
    }
    let batch = next(&f, &id, &secret, 2).await;
    for a in batch["assignments"].as_array().unwrap() {
        f.upload_slot(a, media);
    }
    report_uploaded(&f, &id, &secret, 0).await;
    f.drain().await; // the first job also publishes the inits
    f.memory.reset_calls();
    report_uploaded(&f, &id, &secret, 1).await;
    let report: BTreeMap<&str, u64> = f.memory.calls();
    // One HEAD per track, one state read, one conditional state write.
    assert_eq!(
        report,
        BTreeMap::from([("get", 1), ("head", 2), ("put", 1)]),
        "per report"
    );
    f.memory.reset_calls();
    f.drain().await;
    // State read, a ranged GET and a copy per track, then read + write the state.
    assert_eq!(
        f.memory.calls(),
        BTreeMap::from([("copy", 2), ("get", 2), ("get_head", 2), ("put", 1)]),
        "per job"
    );
}
