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
use chunkstream::feed_signal::MemoryFeedSignal;
use chunkstream::memory::{MemoryQueue, MemoryStore};
use chunkstream::queue::Job;
use chunkstream::reaper::{reap_abandoned, ReapSettings, CURSOR_KEY};
use chunkstream::sessions::{self, Sessions};
use chunkstream::worker::{handle_batch, JobError, Outcome, Worker};
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
            segment_hold: Duration::from_millis(1200),
            session_ttl: TTL,
            ..memory_config()
        };
        let state = AppState {
            config: Arc::new(config),
            sessions: sessions.clone(),
            queue: Arc::new(FaultyQueue::new(queue.clone(), faults.clone())),
            events: Default::default(),
            hints: Default::default(),
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

    /// Fakes whose sessions ring a feed signal shared by every "process" made from them.
    fn with_feed_signal() -> (Self, Arc<MemoryFeedSignal>) {
        let mut f = Self::new();
        let signal = MemoryFeedSignal::new();
        f.state.sessions = f.state.sessions.clone().with_feed_signal(signal.clone());
        (f, signal)
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
        let (id, secret) = session_with_inits(self).await;
        let batch = next(self, &id, &secret, 16).await;
        for a in batch["assignments"].as_array().unwrap() {
            self.upload_slot(a, media);
            report_uploaded(self, &id, &secret, a["slot"].as_u64().unwrap()).await;
        }
        (id, secret)
    }

    /// Delivers queued jobs (priority first) one at a time until none is left,
    /// redelivering the ones that asked to be retried; returns every outcome per slot.
    async fn drain(&self) -> BTreeMap<usize, Vec<Outcome>> {
        self.drain_in(false).await
    }

    /// Like [`Fakes::drain`], but each receive of up to 10 jobs is one batch, as
    /// Lambda's SQS trigger and the local poller deliver them (`process_batch`).
    async fn drain_batches(&self) -> BTreeMap<usize, Vec<Outcome>> {
        self.drain_in(true).await
    }

    async fn drain_in(&self, batched: bool) -> BTreeMap<usize, Vec<Outcome>> {
        let mut outcomes: BTreeMap<usize, Vec<Outcome>> = BTreeMap::new();
        for _ in 0..100 {
            let event = self.queue.receive(10);
            if event.records.is_empty() {
                return outcomes;
            }
            let jobs: Vec<Job> = event
                .records
                .iter()
                .map(|m| serde_json::from_str(m.body.as_deref().unwrap()).unwrap())
                .collect();
            let mut results = Vec::new();
            if batched {
                results = self.worker.process_batch(&jobs, None).await;
            } else {
                for job in &jobs {
                    results.push(Some(self.worker.process(job).await));
                }
            }
            let mut failed = Vec::new();
            for ((message, job), result) in event.records.iter().zip(&jobs).zip(results) {
                match result {
                    Some(Ok(o)) => outcomes.entry(job.slot).or_default().push(o),
                    Some(Err(JobError::Retry(_))) | None => {
                        failed.push(message.message_id.clone().unwrap())
                    }
                    Some(Err(JobError::Fatal(e))) => panic!("fatal: {e:#}"),
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

/// The worker's write steps in a run without faults, job by job or in batches.
async fn clean_run_steps(batched: bool) -> Vec<String> {
    let clean = Fakes::new();
    clean.uploaded_session().await;
    faults::arm(&clean.faults, None);
    clean.drain_in(batched).await;
    faults::steps(&clean.faults)
}

#[tokio::test]
async fn every_crash_point_of_the_worker_converges_on_redelivery() {
    // A clean run names the worker's write steps: per init copy and record
    // write, per slot copy track 0, copy track 1, write of the worker's record
    // (published.json); after the last one delete incoming, leave the live
    // index, record write (finalised).
    let steps = clean_run_steps(false).await;
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
                        && fired
                            .as_deref()
                            .is_some_and(|s| s.ends_with("published.json"))),
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

fn published_record_writes(f: &Fakes) -> usize {
    faults::steps(&f.faults)
        .iter()
        .filter(|s| s.ends_with("published.json"))
        .count()
}

#[tokio::test]
async fn a_batch_of_one_videos_jobs_marks_its_slots_published_in_one_write() {
    let slots = media().plan.slots.len();
    let inits = media().plan.tracks.len();
    assert!(slots >= 2);
    let mut writes = Vec::new();
    for batched in [false, true] {
        let f = Fakes::new();
        let (id, _) = f.uploaded_session().await;
        faults::arm(&f.faults, None);
        let outcomes = if batched {
            f.drain_batches().await
        } else {
            f.drain().await
        };
        for slot in 0..slots {
            assert_eq!(
                published_count(&outcomes[&slot]),
                1,
                "{batched}: {outcomes:?}"
            );
        }
        assert_converged(&f, &id).await;
        writes.push(published_record_writes(&f));
    }
    // One write per init and one when finalised either way; per job, or once for the batch.
    assert_eq!(writes, [inits + slots + 1, inits + 1 + 1]);
}

#[tokio::test]
async fn a_videos_normal_jobs_never_go_ahead_of_another_videos_priority_job_in_a_batch() {
    let f = Fakes::new();
    let (a, _) = f.uploaded_session().await;
    let (b, _) = f.uploaded_session().await;
    let event = f.queue.receive(10);
    let jobs: Vec<Job> = event
        .records
        .iter()
        .map(|m| serde_json::from_str(m.body.as_deref().unwrap()).unwrap())
        .collect();
    let pick = |id: &str, slot: usize, lane: Lane| {
        let mut job = jobs
            .iter()
            .find(|j| j.video_id == id && j.slot == slot)
            .unwrap()
            .clone();
        job.lane = lane;
        job
    };
    // As handle_batch sorts them: priority first.
    let batch = [
        pick(&a, 0, Lane::Priority),
        pick(&b, 0, Lane::Priority),
        pick(&a, 1, Lane::Normal),
    ];
    faults::arm(&f.faults, None);
    let results = f.worker.process_batch(&batch, None).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Some(Ok(Outcome::Published { .. })))),
        "{results:?}"
    );
    let media_copies: Vec<String> = faults::steps(&f.faults)
        .into_iter()
        .filter(|s| s.starts_with("copy incoming/") && !s.contains("/init/"))
        .collect();
    let order: Vec<(bool, usize)> = media_copies
        .iter()
        .step_by(media().plan.tracks.len())
        .map(|s| {
            (
                s.contains(&a),
                s.split('/').nth(2).unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [(true, 0), (false, 0), (true, 1)],
        "{media_copies:#?}"
    );
}

#[tokio::test]
async fn every_crash_point_of_a_batch_converges_on_redelivery() {
    let steps = clean_run_steps(true).await;
    let (slots, tracks) = (media().plan.slots.len(), media().plan.tracks.len());
    // per init: copy + record write; per slot its copies; one record write; finalisation.
    assert_eq!(
        steps.len(),
        tracks * 2 + slots * tracks + 1 + 3,
        "{steps:#?}"
    );
    for mode in [FaultMode::FailBefore, FaultMode::CrashAfter] {
        for at in 0..steps.len() {
            let f = Fakes::new();
            let (id, _) = f.uploaded_session().await;
            faults::arm(&f.faults, Some((at, mode)));
            let outcomes = f.drain_batches().await;
            let context = format!(
                "{mode:?} at step {at} ({:?}): {outcomes:?}",
                faults::fired(&f.faults)
            );
            assert!(faults::fired(&f.faults).is_some(), "{context}");
            for slot in 0..slots {
                // A crash right after the batch's record write hides its outcomes: at most once.
                let n = outcomes.get(&slot).map_or(0, |o| published_count(o));
                assert!(n <= 1, "{context}");
            }
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
    f.memory.reset_calls();
    let response = handle_batch(&f.worker, event.clone(), Some(soon)).await;
    assert_eq!(response.batch_item_failures.len(), n);
    assert!(
        f.memory.calls().is_empty(),
        "{:?}: not even the inits",
        f.memory.calls()
    );
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
    // the report's own check fails (its first copy: write step 1, after the state
    // write), so the job goes to the priority queue
    faults::arm(&f.faults, Some((1, FaultMode::FailBefore)));
    let answer = report_uploaded(&f, &id, &secret, 1).await;
    faults::arm(&f.faults, None);
    assert_eq!(
        (answer["queue"].as_str(), answer["enqueued"].as_bool()),
        (Some("priority"), Some(true)),
        "{answer}"
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
    // One HEAD per track, the windows read (the job's lane), both records
    // read (state.json, published.json), one conditional write of state.json.
    assert_eq!(
        report,
        BTreeMap::from([("get", 3), ("head", 2), ("put", 1)]),
        "per report"
    );
    f.memory.reset_calls();
    f.drain().await;
    // The worker's record read, a ranged GET and a copy per track, then read +
    // write of the worker's record (published.json) only.
    assert_eq!(
        f.memory.calls(),
        BTreeMap::from([("copy", 2), ("get", 2), ("get_head", 2), ("put", 1)]),
        "per job"
    );
}

fn slots_of(answer: &Value) -> Vec<u64> {
    answer["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slot"].as_u64().unwrap())
        .collect()
}

async fn session_with_inits(f: &Fakes) -> (String, String) {
    let media = media();
    let (id, secret, created) = create_session(f, &media.plan).await;
    for (i, u) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        f.upload(u, &media.init[i]);
    }
    (id, secret)
}

#[tokio::test]
async fn parts_reported_in_next_share_its_one_state_write_and_send_their_jobs_together() {
    let f = Fakes::new();
    let media = media();
    assert!(media.plan.slots.len() >= 3);
    let (id, secret) = session_with_inits(&f).await;
    let batch = next(&f, &id, &secret, 2).await;
    for a in batch["assignments"].as_array().unwrap() {
        f.upload_slot(a, media);
    }
    f.memory.reset_calls();
    let answer = next_reporting(&f, &id, &secret, 1, &[1, 0]).await;
    let reports = answer["reports"].as_array().unwrap();
    let summary: Vec<(u64, &str, bool, bool)> = reports
        .iter()
        .map(|r| {
            (
                r["slot"].as_u64().unwrap(),
                r["queue"].as_str().unwrap(),
                r["enqueued"].as_bool().unwrap(),
                r["published"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "normal", true, false), (0, "normal", true, false)],
        "{answer}"
    );
    // The reported parts are not leased back; the new leases are the next parts.
    assert_eq!(slots_of(&answer), [2]);
    // The windows, both records, a HEAD per track and part, and ONE write for reports + leases.
    assert_eq!(
        f.memory.calls(),
        BTreeMap::from([("get", 3), ("head", 4), ("put", 1), ("presign_put", 2)])
    );
    assert_eq!(f.queue.sent(), 2);
    assert_eq!(f.slot_state(&id, 0).await, "uploaded");
    // A repeat at once sends no second job (its jobs are on their way).
    let again = next_reporting(&f, &id, &secret, 1, &[0, 1]).await;
    assert!(again["reports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["enqueued"] == false && r.get("error").is_none()));
    assert_eq!(f.queue.sent(), 2);
    let outcomes = f.drain().await;
    assert_eq!(published_count(&outcomes[&0]), 1, "{outcomes:?}");
    assert_eq!(published_count(&outcomes[&1]), 1, "{outcomes:?}");
}

#[tokio::test]
async fn a_refused_report_in_next_is_answered_in_place_and_keeps_its_lease() {
    let f = Fakes::new();
    let media = media();
    let (id, secret) = session_with_inits(&f).await;
    let batch = next(&f, &id, &secret, 2).await;
    f.upload_slot(&batch["assignments"][0], media);
    report_uploaded(&f, &id, &secret, 0).await;
    f.drain().await;
    assert_eq!(f.slot_state(&id, 0).await, "published");
    // Slot 1 was leased but never PUT; slot 0 is public already.
    let sent = f.queue.sent();
    let answer = next_reporting(&f, &id, &secret, 1, &[1, 0]).await;
    let reports = answer["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{answer}");
    assert_eq!(
        (reports[0]["slot"].as_u64(), reports[0]["error"].as_str()),
        (Some(1), Some("upload_missing"))
    );
    assert_eq!(reports[0]["enqueued"], false);
    assert_eq!(
        (
            reports[1]["slot"].as_u64(),
            reports[1]["error"].as_str(),
            reports[1]["published"].as_bool()
        ),
        (Some(0), Some("already_published"), Some(true))
    );
    assert_eq!(f.queue.sent(), sent);
    assert_eq!(f.slot_state(&id, 1).await, "assigned");
    assert!(!slots_of(&answer).contains(&1), "{answer}");
}

#[tokio::test]
async fn a_bad_uploaded_list_is_refused_whole_with_400() {
    let f = Fakes::new();
    let (id, secret) = session_with_inits(&f).await;
    let slots = media().plan.slots.len();
    for bad in [
        serde_json::json!({"uploaded": [slots]}),
        serde_json::json!({"uploaded": [0, 0]}),
        serde_json::json!({"uploaded": (0..17).collect::<Vec<_>>()}),
        serde_json::json!({"uploaded": "0"}),
    ] {
        let (code, body) = f
            .call(
                "POST",
                &format!("/api/videos/{id}/next"),
                Some(&secret),
                Some(&bad.to_string()),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad} {body}");
    }
    // Nothing was leased by the refused calls.
    assert_eq!(f.slot_state(&id, 0).await, "pending");
}

/// A prioritize with a viewer id and a client address (X-Forwarded-For).
async fn prioritize_as(
    f: &Fakes,
    id: &str,
    slot: usize,
    viewer: &str,
    addr: &str,
) -> (StatusCode, Option<String>, Value) {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/api/videos/{id}/prioritize"))
        .header("content-type", "application/json")
        .header("x-forwarded-for", addr)
        .body(axum::body::Body::from(
            serde_json::json!({"slot": slot, "viewer": viewer}).to_string(),
        ))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(f.app_router(), req)
        .await
        .unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        retry_after,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn priority_slots(status: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = status["priority_slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn each_viewer_has_its_own_window_and_viewers_never_write_the_state() {
    let f = Fakes::new();
    let (id, _, _) = create_session(&f, &synthetic_plan(40)).await;
    let state_etag = f.memory.etag_of(&sessions::state_key(&id)).unwrap();
    for (slot, viewer) in [(10, "a"), (20, "b"), (30, "a")] {
        let (code, _, body) = prioritize_as(&f, &id, slot, viewer, "").await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    assert_eq!(
        priority_slots(&status(&f, &id).await),
        vec![20, 21, 22, 23, 30, 31, 32, 33],
        "a's seek to 30 replaced a's window at 10 only"
    );
    // Misses inside a viewer's fresh window cost no S3 read or write at all
    // (only the published-segment lookups of the held miss).
    f.memory.reset_calls();
    let uris: Vec<String> = (0..20)
        .map(|i| format!("/v/{id}/seg/{}/{}.m4s?viewer=a", i % 2, 30 + i % 4))
        .collect();
    let misses = uris.iter().map(|uri| f.call("GET", uri, None, None));
    for (code, _) in futures::future::join_all(misses).await {
        assert_eq!(code, StatusCode::NOT_FOUND);
    }
    let calls = f.memory.calls();
    assert_eq!(
        calls.keys().copied().collect::<Vec<_>>(),
        vec!["get_stream"],
        "{calls:?}"
    );
    // A miss outside a's window moves a's window there.
    f.call("GET", &format!("/v/{id}/seg/0/2.m4s?viewer=a"), None, None)
        .await;
    assert_eq!(
        priority_slots(&status(&f, &id).await),
        vec![2, 3, 4, 5, 20, 21, 22, 23]
    );
    assert_eq!(
        f.memory.etag_of(&sessions::state_key(&id)).unwrap(),
        state_etag,
        "no viewer call wrote state.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_woken_by_a_prioritize_in_this_process_answers_without_reading_the_windows_again() {
    let f = Fakes::new();
    let (id, secret, _) = create_session(&f, &synthetic_plan(40)).await;
    let (code, first) = f
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{first}");
    let version = first["version"].as_u64().unwrap();
    let poll_uri = format!("/api/videos/{id}/priority?after={version}&wait_ms=5000");
    let poll = f.call("GET", &poll_uri, Some(&secret), None);
    let seek = async {
        tokio::time::sleep(Duration::from_millis(50)).await; // the poll is waiting by now
        f.memory.reset_calls();
        prioritize_as(&f, &id, 20, "v", "").await
    };
    let ((code, answer), (seek_code, _, seek_body)) = tokio::join!(poll, seek);
    assert_eq!(seek_code, StatusCode::OK, "{seek_body}");
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(answer["version"].as_u64(), Some(version + 1), "{answer}");
    assert!(priority_slots(&answer).contains(&20), "{answer}");
    let calls = f.memory.calls();
    // the prioritize: 1 GET windows + 1 GET state (the requeue check: nothing uploaded, so no
    // published.json); the woken poll: 2 GET (state, published) and no GET of the windows the
    // prioritize handed it
    assert_eq!(calls.get("get"), Some(&4), "{calls:?}");
}

/// GETs a waiting priority poll makes in `wait_ms` (after the answer's own reads).
async fn feed_reads_while_waiting(f: &Fakes, id: &str, secret: &str, wait_ms: u64) -> u64 {
    let (_, first) = f
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some(secret),
            None,
        )
        .await;
    let version = first["version"].as_u64().unwrap();
    f.memory.reset_calls();
    let uri = format!("/api/videos/{id}/priority?after={version}&wait_ms={wait_ms}");
    let (code, answer) = f.call("GET", &uri, Some(secret), None).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["version"].as_u64(),
        Some(version),
        "nothing changed: {answer}"
    );
    f.memory.calls().get("get").copied().unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn the_feed_re_reads_every_second_while_nobody_watches_and_every_250_ms_once_a_page_is_open()
{
    let f = Fakes::new();
    let (id, secret, _) = create_session(&f, &synthetic_plan(40)).await;
    // published.json (complete?) at the start, the windows at each read, then state +
    // published for the answer: 3 + reads.
    let unwatched = feed_reads_while_waiting(&f, &id, &secret, 10_000).await;
    assert!(
        (12..=14).contains(&unwatched),
        "{unwatched} GETs in 10 s, nobody watching"
    );

    let watching = format!("/api/videos/{id}/watching");
    f.memory.reset_calls();
    let (code, _) = f.call("POST", &watching, None, None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let calls = f.memory.calls();
    assert_eq!(
        (calls.get("get"), calls.get("put")),
        (Some(&1), Some(&1)),
        "{calls:?}"
    );
    let watched = feed_reads_while_waiting(&f, &id, &secret, 10_000).await;
    assert!(
        (42..=44).contains(&watched),
        "{watched} GETs in 10 s, a page open"
    );

    // An open page stops counting 90 s after it last said so; a live window counts too.
    f.clock.advance(90_000);
    let later = feed_reads_while_waiting(&f, &id, &secret, 2_000).await;
    assert!(
        (4..=6).contains(&later),
        "{later} GETs in 2 s, the page gone"
    );
    prioritize_as(&f, &id, 20, "v", "").await;
    let seeking = feed_reads_while_waiting(&f, &id, &secret, 2_000).await;
    assert!(
        (10..=12).contains(&seeking),
        "{seeking} GETs in 2 s, a live window"
    );
}

#[tokio::test(start_paused = true)]
async fn with_a_feed_signal_a_seek_in_another_process_answers_the_poll_at_once_and_waiting_reads_almost_nothing(
) {
    let (f, signal) = Fakes::with_feed_signal();
    // Another API process: the same store and signal, its own in-process wake-ups.
    let other = Fakes {
        state: AppState {
            events: Default::default(),
            hints: Default::default(),
            ..f.state.clone()
        },
        ..Fakes::new()
    };
    let (id, secret, _) = create_session(&f, &synthetic_plan(40)).await;

    // Waiting costs the safety net's reads only: 3 + 2 GETs in 10 s nobody watching
    // (13 without the signal), 3 + 5 with a page open (43), + 1 for the ring of the
    // page's first `watching`, which this wait hears.
    let unwatched = feed_reads_while_waiting(&f, &id, &secret, 10_000).await;
    assert!(
        (4..=5).contains(&unwatched),
        "{unwatched} GETs in 10 s, nobody watching"
    );
    f.call("POST", &format!("/api/videos/{id}/watching"), None, None)
        .await;
    let watched = feed_reads_while_waiting(&f, &id, &secret, 10_000).await;
    assert!(
        (7..=9).contains(&watched),
        "{watched} GETs in 10 s, a page open"
    );

    let (_, first) = f
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some(&secret),
            None,
        )
        .await;
    let version = first["version"].as_u64().unwrap();
    let poll_uri = format!("/api/videos/{id}/priority?after={version}&wait_ms=20000");
    let started = tokio::time::Instant::now();
    let poll = async {
        let answer = f.call("GET", &poll_uri, Some(&secret), None).await;
        (answer, started.elapsed())
    };
    let seek = async {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        prioritize_as(&other, &id, 20, "v", "").await
    };
    let (((code, answer), took), (seek_code, _, _)) = tokio::join!(poll, seek);
    assert_eq!(
        (code, seek_code),
        (StatusCode::OK, StatusCode::OK),
        "{answer}"
    );
    assert_eq!(answer["version"].as_u64(), Some(version + 1), "{answer}");
    assert!(priority_slots(&answer).contains(&20), "{answer}");
    assert!(
        took < Duration::from_millis(1_200),
        "answered {took:?} after the poll began: the seek came at 1.1 s"
    );
    assert!(signal.calls().0 >= 1, "the seek rang the signal");
}

#[tokio::test]
async fn the_feed_offers_a_wake_up_url_unless_a_viewer_waits_and_the_first_open_page_rings_it() {
    let (f, signal) = Fakes::with_feed_signal();
    let (id, secret, _) = create_session(&f, &synthetic_plan(40)).await;
    let feed = format!("/api/videos/{id}/priority");
    let (_, answer) = f.call("GET", &feed, Some(&secret), None).await;
    assert_eq!(
        answer["wake_url"].as_str(),
        Some(format!("memory://feed/{id}").as_str()),
        "nobody watches: wait on the URL, no Lambda held: {answer}"
    );

    let watching = format!("/api/videos/{id}/watching");
    f.call("POST", &watching, None, None).await;
    assert_eq!(
        signal.calls().0,
        1,
        "the first open page rings the uploader back"
    );
    assert_eq!(answer["watched"], false, "{answer}");
    let (_, answer) = f.call("GET", &feed, Some(&secret), None).await;
    assert_eq!(
        answer["watched"], true,
        "a page is open: report at once: {answer}"
    );
    assert!(
        answer["wake_url"].is_string(),
        "an open page nobody seeks in holds no Lambda: {answer}"
    );
    f.clock.advance(31_000);
    f.call("POST", &watching, None, None).await;
    assert_eq!(signal.calls().0, 1, "a page still open rings nothing");

    // A viewer waits for a part: hold the poll, it answers their next seek at once.
    prioritize_as(&f, &id, 30, "v1", "").await;
    let (_, answer) = f.call("GET", &feed, Some(&secret), None).await;
    assert!(answer.get("wake_url").is_none(), "{answer}");
    assert_eq!(answer["watched"], true, "{answer}");

    // The page gone (90 s) and the window expired: back to the wake-up URL, unwatched.
    f.clock.advance(600_000);
    let (_, answer) = f.call("GET", &feed, Some(&secret), None).await;
    assert!(answer["wake_url"].is_string(), "{answer}");
    assert_eq!(answer["watched"], false, "{answer}");
    // Without a signal (one process) there is nothing to wait on but the poll.
    let plain = Fakes::new();
    let (id, secret, _) = create_session(&plain, &synthetic_plan(4)).await;
    let (_, answer) = plain
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some(&secret),
            None,
        )
        .await;
    assert!(answer.get("wake_url").is_none(), "{answer}");
}

#[tokio::test]
async fn an_open_watch_page_is_recorded_at_most_every_30_s_per_process_and_never_moves_a_window() {
    let f = Fakes::new();
    let (id, _, _) = create_session(&f, &synthetic_plan(40)).await;
    let uri = format!("/api/videos/{id}/watching");
    let mut puts = Vec::new();
    for advance in [0, 1_000, 28_000, 1_000] {
        f.clock.advance(advance);
        f.memory.reset_calls();
        let (code, _) = f.call("POST", &uri, None, None).await;
        assert_eq!(code, StatusCode::NO_CONTENT);
        puts.push(f.memory.calls().get("put").copied().unwrap_or(0));
    }
    assert_eq!(puts, [1, 0, 0, 1]);
    let windows = f.sessions().windows(&id).await.unwrap();
    assert_eq!(
        (windows.version, windows.windows.len()),
        (0, 0),
        "no priority change"
    );
    assert_eq!(windows.watched_ms, f.sessions().now_ms());
    let (code, body) = f
        .call("POST", "/api/videos/nosuchvideo1/watching", None, None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn a_flood_of_viewer_ids_from_one_client_keeps_its_own_windows_and_is_rate_limited() {
    let f = Fakes::new();
    let (id, _, _) = create_session(&f, &synthetic_plan(200)).await;
    let (code, _, _) = prioritize_as(&f, &id, 5, "real", "198.51.100.1").await;
    assert_eq!(code, StatusCode::OK);
    let mut limited = 0;
    for i in 0..60 {
        let (code, retry_after, body) =
            prioritize_as(&f, &id, 50 + i, &format!("flood{i}"), "203.0.113.9").await;
        match code {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"], "rate_limited");
                assert_eq!(retry_after.as_deref(), Some("1"));
                limited += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(limited >= 30, "{limited} of 60 limited");
    let windows = f.sessions().windows(&id).await.unwrap();
    let flooders = windows
        .windows
        .iter()
        .filter(|w| w.client == "203.0.113.9")
        .count();
    assert_eq!(flooders, 2, "{windows:?}");
    assert!(
        windows.windows.iter().any(|w| w.viewer == "real"),
        "{windows:?}"
    );
    // Another viewer elsewhere is not limited by the flood.
    let (code, _, _) = prioritize_as(&f, &id, 150, "other", "198.51.100.2").await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, body) = prioritize_as(&f, &id, 1, "bad/id", "").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_worker_never_writes_the_uploaders_record() {
    let f = Fakes::new();
    let (id, _) = f.uploaded_session().await;
    let uploader_etag = f.memory.etag_of(&sessions::state_key(&id)).unwrap();
    f.drain().await;
    assert_converged(&f, &id).await;
    assert_eq!(
        f.memory.etag_of(&sessions::state_key(&id)).unwrap(),
        uploader_etag,
        "jobs, inits and finalisation wrote only published.json"
    );
}

/// The Cache-Control header of a GET through the Router.
async fn cache_control_of_get(f: &Fakes, uri: &str) -> (StatusCode, String) {
    let req = axum::http::Request::builder()
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(f.app_router(), req)
        .await
        .unwrap();
    let cc = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status(), cc)
}

#[tokio::test]
async fn every_object_and_viewer_answer_carries_the_cache_control_of_its_kind() {
    let f = Fakes::new();
    let (id, _) = f.uploaded_session().await;
    for key in [
        sessions::manifest_key(&id),
        sessions::hls_master_key(&id),
        sessions::hls_media_key(&id, 0),
    ] {
        assert_eq!(
            f.memory.cache_control_of(&key).as_deref(),
            Some(sessions::MANIFEST_CACHE),
            "{key}"
        );
    }
    let (code, cc) = cache_control_of_get(&f, &format!("/v/{id}/seg/0/0.m4s?nohint=1")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        cc, "public, max-age=0, s-maxage=1",
        "a miss: edge-cacheable for 1 s"
    );
    f.drain().await;
    for key in [
        sessions::published_key(&id, 0, 0),
        sessions::published_key(&id, 1, 0),
        sessions::init_key(&id, 0),
    ] {
        assert_eq!(
            f.memory.cache_control_of(&key).as_deref(),
            Some(chunkstream::store::IMMUTABLE),
            "{key}"
        );
    }
    let (code, cc) = cache_control_of_get(&f, &format!("/v/{id}/seg/0/0.m4s")).await;
    assert_eq!(
        (code, cc.as_str()),
        (StatusCode::OK, chunkstream::store::IMMUTABLE)
    );
    let (code, cc) = cache_control_of_get(&f, &format!("/api/videos/{id}/status")).await;
    assert_eq!((code, cc.as_str()), (StatusCode::OK, "public, max-age=1"));
    let (_, cc) = cache_control_of_get(&f, &format!("/v/{id}/manifest.mpd")).await;
    assert_eq!(cc, sessions::MANIFEST_CACHE);
}

/// S3 calls (by kind) and SQS sends of one step.
fn cost(f: &Fakes, sent_before: u64) -> (BTreeMap<&'static str, u64>, u64) {
    let mut calls = f.memory.calls();
    calls.remove("presign_put"); // signing is local: no request
    (calls, f.queue.sent() - sent_before)
}

#[tokio::test]
async fn every_api_path_and_job_costs_a_pinned_number_of_requests() {
    let f = Fakes::new();
    let media = media();
    let mut table: Vec<(&str, BTreeMap<&'static str, u64>, u64)> = Vec::new(); // measured
    macro_rules! measure {
        ($name:expr, $step:expr) => {{
            f.memory.reset_calls();
            let sent = f.queue.sent();
            let out = $step;
            let (calls, sqs) = cost(&f, sent);
            table.push(($name, calls, sqs));
            out
        }};
    }
    let (id, secret, created) = measure!("create", create_session(&f, &media.plan).await);
    for (i, u) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        f.upload(u, &media.init[i]);
    }
    let batch = measure!("next", next(&f, &id, &secret, 1).await);
    f.upload_slot(&batch["assignments"][0], media);
    measure!("uploaded", report_uploaded(&f, &id, &secret, 0).await);
    measure!("job (first: publishes the inits)", f.drain().await);
    let batch = measure!("next", next(&f, &id, &secret, 1).await);
    f.upload_slot(&batch["assignments"][0], media);
    measure!("uploaded", report_uploaded(&f, &id, &secret, 1).await);
    measure!("job", f.drain().await);
    measure!("status", status(&f, &id).await);
    let last = media.plan.slots.len() - 1;
    measure!(
        "prioritize (new window)",
        prioritize_as(&f, &id, last, "v1", "").await
    );
    measure!(
        "prioritize (same again)",
        prioritize_as(&f, &id, last, "v1", "").await
    );
    let uri = format!("/v/{id}/seg/0/{last}.m4s?viewer=v1");
    measure!(
        "segment miss (in the viewer's window)",
        f.call("GET", &uri, None, None).await
    );
    let hit = format!("/v/{id}/seg/0/0.m4s");
    measure!("segment hit", f.call("GET", &hit, None, None).await);
    let poll = format!("/api/videos/{id}/priority?after=999&lease=2");
    measure!(
        "priority poll (changed, leases)",
        f.call("GET", &poll, Some(&secret), None).await
    );
    let release = r#"{"release_leases": true}"#;
    let init = format!("/api/videos/{id}/init");
    measure!(
        "init (release leases)",
        f.call("POST", &init, Some(&secret), Some(release)).await
    );
    let watching = format!("/api/videos/{id}/watching");
    measure!("watching", f.call("POST", &watching, None, None).await);
    measure!(
        "watching (again within 30 s)",
        f.call("POST", &watching, None, None).await
    );
    for slot in 2..last {
        let batch = next(&f, &id, &secret, 1).await;
        f.upload_slot(&batch["assignments"][0], media);
        report_uploaded(&f, &id, &secret, slot as u64).await;
        f.drain().await;
    }
    // the last slot is in v1's window: its report checks and publishes it (and finalises)
    let batch = next(&f, &id, &secret, 1).await;
    f.upload_slot(&batch["assignments"][0], media);
    let answer = measure!(
        "uploaded (a viewer waits; last: finalises)",
        report_uploaded(&f, &id, &secret, last as u64).await
    );
    assert_eq!(
        (answer["published"].clone(), answer["enqueued"].clone()),
        (Value::Bool(true), Value::Bool(false)),
        "{answer}"
    );
    measure!("job (none left)", f.drain().await);
    assert_converged(&f, &id).await;
    for (name, calls, sqs) in &mut table {
        eprintln!("{name:40} {calls:?} sqs {sqs}");
        if name.starts_with("segment miss") {
            // The hold re-checks the segment every 50 ms for 1.2 s here (5 s by default): ~24 GETs, by the clock.
            let held = calls.remove("get_stream").unwrap_or(0);
            assert!((20..=26).contains(&held), "{held} segment lookups");
        }
    }
    let pins = PINNED_COSTS;
    for ((name, calls, sqs), (pin_name, pin_calls, pin_sqs)) in table.iter().zip(pins) {
        assert_eq!(name, pin_name);
        assert_eq!(
            (calls, *sqs),
            (
                &pin_calls.iter().copied().collect::<BTreeMap<_, _>>(),
                *pin_sqs
            ),
            "{name}"
        );
    }
    assert_eq!(table.len(), pins.len());
}

/// What each path and job costs (S3 calls by kind, SQS sends); docs/api.md lists the same.
/// (step, S3 calls by kind, SQS sends).
type Cost = (&'static str, &'static [(&'static str, u64)], u64);

const PINNED_COSTS: &[Cost] = &[
    // live/ index, state.json, published.json, session.json, MPD, HLS master + 2 media playlists
    ("create", &[("put", 8)], 0),
    // windows.json, state.json, published.json; write state.json
    ("next", &[("get", 3), ("put", 1)], 0),
    // + HEAD per track, one job
    ("uploaded", &[("get", 3), ("head", 2), ("put", 1)], 1),
    // per init: ranged GET, copy, record write; then the slot's job
    (
        "job (first: publishes the inits)",
        &[("copy", 4), ("get", 6), ("get_head", 4), ("put", 3)],
        0,
    ),
    ("next", &[("get", 3), ("put", 1)], 0),
    ("uploaded", &[("get", 3), ("head", 2), ("put", 1)], 1),
    // published.json; ranged GET + copy per track; published.json read + write
    (
        "job",
        &[("copy", 2), ("get", 2), ("get_head", 2), ("put", 1)],
        0,
    ),
    // state.json, published.json, windows.json
    ("status", &[("get", 3)], 0),
    // HEAD (published?), windows.json read + write, state.json (requeue check: the window
    // has no uploaded part, so published.json is not read)
    (
        "prioritize (new window)",
        &[("get", 2), ("head", 1), ("put", 1)],
        0,
    ),
    ("prioritize (same again)", &[], 0),
    // the hint is free: only the hold's segment lookups (counted apart above)
    ("segment miss (in the viewer's window)", &[], 0),
    ("segment hit", &[("get_stream", 1)], 0),
    // published.json (complete?), windows.json, both records; lease write
    (
        "priority poll (changed, leases)",
        &[("get", 4), ("put", 1)],
        0,
    ),
    ("init (release leases)", &[("get", 3), ("put", 1)], 0),
    // windows.json read + write; then nothing from this process for 30 s
    ("watching", &[("get", 1), ("put", 1)], 0),
    ("watching (again within 30 s)", &[], 0),
    // "uploaded", then the job in the same call, without the queue: session.json,
    // published.json, ranged GET + copy per track, published.json write; clean-up:
    // incoming/ and live/ (LIST + DELETE each in S3), finalised write
    (
        "uploaded (a viewer waits; last: finalises)",
        &[
            ("copy", 2),
            ("delete_prefix", 2),
            ("get", 6),
            ("get_head", 2),
            ("head", 2),
            ("put", 3),
        ],
        0,
    ),
    ("job (none left)", &[], 0),
];

#[tokio::test]
async fn an_oversize_body_on_any_json_route_is_a_413_with_a_json_reason() {
    let f = Fakes::new();
    let media = media();
    let (id, secret, _) = create_session(&f, &media.plan).await;
    // valid JSON, padded past the 8 MiB limit
    let huge = format!("{{\"max\": 1{}}}", " ".repeat(9 * 1024 * 1024));
    for (uri, secret) in [
        ("/api/videos".to_string(), None),
        (format!("/api/videos/{id}/init"), Some(secret.as_str())),
        (format!("/api/videos/{id}/next"), Some(secret.as_str())),
        (format!("/api/videos/{id}/prioritize"), None),
        (format!("/api/videos/{id}/previews"), Some(secret.as_str())),
    ] {
        let (code, body) = f.call("POST", &uri, secret, Some(&huge)).await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {body}");
        assert_eq!(body["error"], "body_too_large", "{uri}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("bytes")),
            "{uri}: {body}"
        );
    }
}

/// Sessions created before the runs encoding keep working: their records (the
/// domain's fixtures, written by the code before) are read, and each is
/// written in the new form by its own writer's next change.
#[tokio::test]
async fn records_stored_before_runs_are_read_and_rewritten_in_runs_on_their_next_write() {
    let f = Fakes::new();
    let (id, secret, _) = create_session(&f, &synthetic_plan(12)).await;
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/../domain/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let (state_key, published_key) = (sessions::state_key(&id), sessions::published_state_key(&id));
    f.memory
        .insert(&state_key, fixture("state-before-runs.json"));
    f.memory
        .insert(&published_key, fixture("published-before-runs.json"));
    let stored = |key: &str| String::from_utf8(f.memory.object(key).unwrap().to_vec()).unwrap();
    assert!(stored(&state_key).starts_with(r#"{"slots":[{"state""#));

    let st = status(&f, &id).await;
    assert_eq!(st["states"], "PPfuaapppppp", "{st}");
    assert_eq!(st["slots"][2]["reason"], "track 1: wrong tfdt");

    // the uploader's next write (the refused part is leased again)
    let batch = next(&f, &id, &secret, 1).await;
    assert_eq!(batch["assignments"][0]["slot"], 2, "{batch}");
    assert!(
        stored(&state_key).starts_with(r#"{"slots":{"count":12,"runs":[[2,"P","#),
        "{}",
        stored(&state_key)
    );
    // the worker's next write
    f.sessions()
        .update_published(&id, |p| p.mark_published(5, 0).map(|changed| ((), changed)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored(&published_key).starts_with(r#"{"published":{"count":12,"ranges":[[0,2],[5,6]]}"#),
        "{}",
        stored(&published_key)
    );
    assert_eq!(status(&f, &id).await["states"], "PPauaPpppppp");
}

/// A corrupt record is an error answer, never a panic or an allocation of what it claims.
#[tokio::test]
async fn a_corrupt_or_oversize_state_json_is_a_500_not_a_panic() {
    let f = Fakes::new();
    let (id, _, _) = create_session(&f, &synthetic_plan(3)).await;
    let state_key = sessions::state_key(&id);
    let good = f.memory.object(&state_key).unwrap();
    let uri = format!("/api/videos/{id}/status");
    for bad in [
        r#"{"slots":{"count":4000000000,"runs":[[4000000000,"p"]]},"created_ms":0,"progress_ms":0}"#
            .to_string(),
        // a slot count other than published.json's
        r#"{"slots":{"count":4,"runs":[[4,"p"]]},"created_ms":0,"progress_ms":0}"#.to_string(),
        // the valid record, padded past the size limit with whitespace (still valid JSON)
        format!(
            "{}{}",
            std::str::from_utf8(&good).unwrap(),
            " ".repeat(sessions::MAX_RECORD_BYTES)
        ),
    ] {
        f.memory.insert(&state_key, bad.clone());
        let (code, body) = f.call("GET", &uri, None, None).await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    }
    f.memory.insert(&state_key, good);
    let (code, _) = f.call("GET", &uri, None, None).await;
    assert_eq!(code, StatusCode::OK);
}
