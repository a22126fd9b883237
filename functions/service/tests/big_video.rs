//! What a viewer's request reads from the object store on a 20,000-slot video
//! (the plan limit) against a 100-slot one, on the in-memory fakes: the
//! [state under load] issue asks that viewer paths do not grow with the slot
//! count. Both videos have the same shape: a natural-order upload 30 % done
//! with parts in flight at its frontier, and two islands where viewers seeked.
//! Prints the table (docs/benchmarks.md quotes it) and pins every viewer path
//! flat.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use chunkstream::api::{app, AppState};
use chunkstream::clock::{Clock, ManualClock, SystemClock};
use chunkstream::config::Config;
use chunkstream::counting::CountingStore;
use chunkstream::memory::{MemoryQueue, MemoryStore};
use chunkstream::queue::Job;
use chunkstream::sessions::{self, Sessions};
use chunkstream::worker::Worker;
use chunkstream_domain::plan::PlanLimits;
use chunkstream_domain::state::SlotState;
use common::*;

struct Fakes {
    memory: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    store: Arc<CountingStore>,
    queue: Arc<MemoryQueue>,
    state: AppState,
    worker: Worker,
    gets_seen: std::sync::Mutex<u64>,
}

impl Api for Fakes {
    fn app_router(&self) -> Router {
        app(self.state.clone())
    }
}

impl Fakes {
    fn new() -> Self {
        let memory = Arc::new(MemoryStore::new());
        let store = Arc::new(CountingStore::new(memory.clone()));
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::at(SystemClock.now_ms()));
        let sessions = Sessions::with_clock(store.clone(), clock.clone());
        let config = Config {
            // a held miss re-checks every 50 ms: two checks
            segment_hold: Duration::from_millis(100),
            // 20,000 copies of the test media's 10 s part: past the 24 h cap, which is
            // not what this measures (the slot count is at its limit)
            limits: PlanLimits {
                max_total_duration_secs: 300_000,
                ..PlanLimits::default()
            },
            ..memory_config()
        };
        let state = AppState {
            config: Arc::new(config),
            sessions: sessions.clone(),
            queue: queue.clone(),
            events: Default::default(),
            hints: Default::default(),
        };
        Self {
            memory,
            clock,
            store,
            queue,
            state,
            worker: Worker::new(sessions),
            gets_seen: std::sync::Mutex::new(0),
        }
    }

    /// (bytes read, GETs) since the last call.
    fn take_reads(&self) -> (u64, u64) {
        let bytes = self.store.bytes_read.swap(0, Ordering::Relaxed);
        let gets = self
            .store
            .counts
            .snapshot()
            .get("get")
            .copied()
            .unwrap_or(0);
        let before = std::mem::replace(&mut *self.gets_seen.lock().unwrap(), gets);
        (bytes, gets - before)
    }

    async fn drain(&self) {
        for _ in 0..100 {
            let event = self.queue.receive(10);
            if event.records.is_empty() {
                return;
            }
            for message in &event.records {
                let job: Job = serde_json::from_str(message.body.as_deref().unwrap()).unwrap();
                self.worker.process(&job).await.unwrap();
            }
            self.queue.settle(&event, &[]);
        }
        panic!("jobs never drained");
    }
}

fn etags(slot: usize) -> Vec<String> {
    vec![format!("\"{slot:032x}\""), format!("\"{:032x}\"", slot + 1)]
}

/// Builds the shape on video `id` of `count` slots: slots 0..30 % published in
/// natural order (slot 0 through the API already), an island of 6 published
/// parts at 50 % and at 75 % (viewers seeked there), and at the frontier 4
/// parts reported uploaded (one refused and leased again, one published by the
/// worker since the uploader last wrote) and 3 more leased. Returns the frontier.
async fn natural_upload_with_islands(f: &Fakes, id: &str, count: usize) -> usize {
    let sessions = &f.state.sessions;
    let policy = f.state.config.policy;
    let frontier = count * 3 / 10;
    // (parts leased and reported together, published by the worker afterwards)
    let mut batches: Vec<(std::ops::Range<usize>, bool)> = Vec::new();
    for island in [count / 2, count * 3 / 4] {
        batches.push((island..island + 6, true));
    }
    let steps = 20;
    for step in 0..steps {
        let from = 1 + (frontier - 1) * step / steps;
        let to = 1 + (frontier - 1) * (step + 1) / steps;
        batches.push((from..to, true));
    }
    batches.push((frontier..frontier + 4, false));
    for (batch, publish) in batches {
        f.clock.advance(1_000);
        let now = sessions.now_ms();
        sessions
            .update_state(id, |s| {
                for slot in batch.clone() {
                    s.slots[slot] = SlotState::Assigned {
                        lease_expires_ms: now + policy.lease_ms,
                    };
                    s.mark_uploaded(slot, etags(slot), now, &[]).unwrap();
                }
                Ok::<_, std::convert::Infallible>(((), true))
            })
            .await
            .unwrap()
            .unwrap();
        if publish {
            for slot in batch {
                f.clock.advance(10);
                let now = sessions.now_ms();
                sessions
                    .update_published(id, |p| {
                        p.mark_published(slot, now).map(|changed| ((), changed))
                    })
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
    }
    // the worker refuses one of the frontier's uploads; the uploader leases the next parts
    // (the refused one first); then the worker publishes another
    sessions
        .update_published(id, |p| {
            p.mark_failed(
                frontier + 2,
                "track 0: wrong tfdt".into(),
                etags(frontier + 2),
            )
            .map(|changed| ((), changed))
        })
        .await
        .unwrap()
        .unwrap();
    let now = sessions.now_ms();
    sessions
        .update_state(id, |s| {
            let picks = s.assign(4, now, &policy, &[]);
            assert_eq!(picks[0].slot, frontier + 2, "the refused part first");
            Ok::<_, std::convert::Infallible>(((), true))
        })
        .await
        .unwrap()
        .unwrap();
    sessions
        .update_published(id, |p| {
            p.mark_published(frontier + 1, now)
                .map(|changed| ((), changed))
        })
        .await
        .unwrap()
        .unwrap();
    frontier
}

/// (path, bytes read, reads, JSON answer bytes) of each viewer path, on a video of
/// `slots` slots of the shape [`natural_upload_with_islands`] makes, whose middle
/// another viewer watches.
async fn viewer_reads(slots: usize) -> Vec<(&'static str, u64, u64, usize)> {
    let f = Fakes::new();
    let media = media();
    let (id, secret, created) = create_session(&f, &synthetic_plan(slots)).await;
    for (i, u) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        f.memory
            .upload(u["url"].as_str().unwrap(), media.init[i].clone())
            .unwrap();
    }
    let batch = next(&f, &id, &secret, 1).await;
    let assignment = &batch["assignments"][0];
    assert_eq!(assignment["slot"], 0, "{batch}");
    for (i, u) in assignment["uploads"].as_array().unwrap().iter().enumerate() {
        f.memory
            .upload(u["url"].as_str().unwrap(), media.segments[0][i].clone())
            .unwrap();
    }
    report_uploaded(&f, &id, &secret, 0).await;
    f.drain().await;
    let frontier = natural_upload_with_islands(&f, &id, slots).await;
    // another viewer's window in the middle, so the windows record is not empty
    let middle = slots / 2 + 6;
    let hint = |viewer: &str, slot: usize| format!(r#"{{"slot": {slot}, "viewer": "{viewer}"}}"#);
    let prioritize_uri = format!("/api/videos/{id}/prioritize");
    let (code, _) = f
        .call("POST", &prioritize_uri, None, Some(&hint("v0", middle)))
        .await;
    assert!(code.is_success(), "{code}");

    let stored = |key: String| f.memory.object(&key).map_or(0, |body| body.len());
    eprintln!(
        "{slots} slots: state.json {} B, published.json {} B, windows.json {} B",
        stored(sessions::state_key(&id)),
        stored(sessions::published_state_key(&id)),
        stored(sessions::windows_key(&id)),
    );
    let mut table = Vec::new();
    macro_rules! measure {
        ($name:expr, $call:expr) => {{
            f.take_reads();
            let (code, body) = $call;
            let (bytes, reads) = f.take_reads();
            let answer = if body.is_null() {
                0
            } else {
                body.to_string().len()
            };
            table.push(($name, bytes, reads, answer));
            (code, body)
        }};
    }
    let far = slots - 1;
    let (code, full) = measure!(
        "status",
        f.call("GET", &format!("/api/videos/{id}/status"), None, None)
            .await
    );
    assert!(code.is_success(), "{code}");
    let (code, compact) = measure!(
        "status (parts=states)",
        f.call(
            "GET",
            &format!("/api/videos/{id}/status?parts=states"),
            None,
            None
        )
        .await
    );
    assert!(code.is_success(), "{code}");
    let states = compact["states"].as_str().unwrap();
    assert_eq!(states.len(), slots);
    assert_eq!(full["states"].as_str(), Some(states));
    let island = |at: usize| &states[at..at + 6];
    assert_eq!(island(slots / 2), "PPPPPP");
    assert_eq!(island(slots * 3 / 4), "PPPPPP");
    assert!(states[..frontier].chars().all(|c| c == 'P'), "{states}");
    assert_eq!(
        &states[frontier..frontier + 8],
        "uPauaaap",
        "uploaded, published since, refused and leased again, uploaded, leased"
    );
    assert_eq!(full["counts"]["published"], frontier + 1 + 12);
    assert_eq!(compact["slots"].as_array().unwrap().len(), 0);
    let (code, answer) = measure!(
        "prioritize (new window, nothing uploaded)",
        f.call("POST", &prioritize_uri, None, Some(&hint("v1", far)))
            .await
    );
    assert!(code.is_success(), "{code}");
    assert_eq!(answer["requeued"], serde_json::json!([]), "{answer}");
    let (code, answer) = measure!(
        "prioritize (new window on uploads)",
        f.call("POST", &prioritize_uri, None, Some(&hint("v2", frontier)))
            .await
    );
    assert!(code.is_success(), "{code}");
    assert_eq!(
        answer["requeued"],
        serde_json::json!([frontier, frontier + 3]),
        "the uploaded parts, not the one published since nor the refused one: {answer}"
    );
    let (code, _) = measure!(
        "prioritize (same again)",
        f.call("POST", &prioritize_uri, None, Some(&hint("v1", far)))
            .await
    );
    assert!(code.is_success(), "{code}");
    let (code, _) = measure!(
        "segment miss (opens a window)",
        f.call(
            "GET",
            &format!("/v/{id}/seg/0/{}.m4s?viewer=v3", slots * 3 / 4 + 6),
            None,
            None
        )
        .await
    );
    assert_eq!(code.as_u16(), 404);
    let (code, _) = measure!(
        "segment miss (held 0.1 s)",
        f.call(
            "GET",
            &format!("/v/{id}/seg/0/{far}.m4s?viewer=v1"),
            None,
            None
        )
        .await
    );
    assert_eq!(code.as_u16(), 404);
    let (code, _) = measure!(
        "segment hit",
        f.call("GET", &format!("/v/{id}/seg/0/0.m4s?viewer=v1"), None, None)
            .await
    );
    assert!(code.is_success(), "{code}");
    let (code, _) = measure!(
        "manifest",
        f.call("GET", &format!("/v/{id}/manifest.mpd"), None, None)
            .await
    );
    assert!(code.is_success(), "{code}");
    table
}

#[tokio::test]
async fn on_a_20000_slot_video_every_viewer_path_reads_about_what_it_reads_on_100_slots() {
    let small = viewer_reads(100).await;
    let big = viewer_reads(20_000).await;
    eprintln!(
        "{:42} {:>22} {:>22} {:>7} {:>22}",
        "viewer path", "read, 100 slots", "read, 20000 slots", "ratio", "JSON answer 100 / 20000"
    );
    for ((path, s, sr, sa), (_, b, br, ba)) in small.iter().zip(&big) {
        eprintln!(
            "{path:42} {s:>11} B ({sr} reads) {b:>11} B ({br} reads) {:>7.2} {sa:>10} / {ba:>9} B",
            *b as f64 / (*s).max(1) as f64
        );
    }
    let bytes = |table: &[(&str, u64, u64, usize)], path: &str| {
        table.iter().find(|(p, ..)| *p == path).unwrap().1
    };
    // The media paths read the segment (or find it missing) and nothing that grows
    // with the plan; a hint already covered by the viewer's window reads nothing.
    for path in [
        "segment hit",
        "segment miss (held 0.1 s)",
        "prioritize (same again)",
    ] {
        assert_eq!(bytes(&big, path), bytes(&small, path), "{path}");
    }
    assert_eq!(bytes(&big, "prioritize (same again)"), 0);
    // The paths that read the records: what grows is only the numbers in them
    // (slot indices, run lengths), not one entry per slot.
    for path in [
        "status",
        "status (parts=states)",
        "prioritize (new window, nothing uploaded)",
        "prioritize (new window on uploads)",
        "segment miss (opens a window)",
    ] {
        let (small, big) = (bytes(&small, path), bytes(&big, path));
        assert!(small > 0, "{path} reads the records");
        assert!(
            big <= small * 11 / 10 && big < 4_000,
            "{path}: {small} B at 100 slots, {big} B at 20,000"
        );
    }
    // What a polling viewer downloads: one byte per part (plus a fixed part), not ~50.
    let answer = |table: &[(&str, u64, u64, usize)], path: &str| {
        table.iter().find(|(p, ..)| *p == path).unwrap().3
    };
    let compact = answer(&big, "status (parts=states)");
    assert!(
        (20_000..20_000 + 1_000).contains(&compact),
        "{compact} bytes for 20,000 parts"
    );
    assert!(answer(&big, "status") > 40 * compact);
}

#[tokio::test]
async fn status_states_are_the_letters_of_the_full_answer_and_a_bad_parts_value_is_a_400() {
    let f = Fakes::new();
    let (id, secret, _) = create_session(&f, &synthetic_plan(5)).await;
    next(&f, &id, &secret, 2).await;
    let (code, full) = f
        .call("GET", &format!("/api/videos/{id}/status"), None, None)
        .await;
    assert!(code.is_success(), "{code}");
    let letters: String = full["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| match s["state"].as_str().unwrap() {
            "pending" => 'p',
            "assigned" => 'a',
            "uploaded" => 'u',
            "published" => 'P',
            "failed" => 'f',
            other => panic!("state {other}"),
        })
        .collect();
    assert_eq!(full["states"].as_str(), Some(letters.as_str()));
    assert_eq!(letters, "aappp");
    let (code, body) = f
        .call(
            "GET",
            &format!("/api/videos/{id}/status?parts=everything"),
            None,
            None,
        )
        .await;
    assert_eq!(code.as_u16(), 400, "{body}");
}
