//! Integration tests against real LocalStack S3 and SQS, through the real AWS
//! SDKs, with real fMP4 segments made by ffmpeg. Start LocalStack first
//! (`localstack/start.sh`, or just run `scripts/test.sh`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use chunkstream::local::{poll_once, PollerSettings};
use chunkstream::provision::QueueSettings;
use chunkstream::queue::Job;
use chunkstream::reaper::{reap_abandoned, ReapSettings};
use chunkstream::sessions;
use chunkstream::worker::Outcome;
use chunkstream_domain::state::{Lane, SlotState};
use common::*;
use serde_json::{json, Value};

/// method, path, secret, body → expected status and error code.
type ErrorCase<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    Option<&'a str>,
    StatusCode,
    &'a str,
);

fn poller(stack: &TestStack) -> PollerSettings {
    PollerSettings {
        priority_url: stack.queues.priority_queue_url.clone(),
        normal_url: stack.queues.normal_queue_url.clone(),
        normal_batch: 2,
        idle_wait_secs: 0,
    }
}

fn reap_settings(ttl: Duration, redrive_after: Duration) -> ReapSettings {
    ReapSettings {
        ttl,
        redrive_after,
        budget: Duration::from_secs(20),
        policy: Default::default(),
    }
}

async fn drain(stack: &TestStack) {
    for _ in 0..50 {
        if poll_once(&stack.clients.sqs, &stack.worker, &poller(stack), false)
            .await
            .unwrap()
            == 0
        {
            return;
        }
    }
    panic!("queues did not drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_publishes_every_slot_and_ffmpeg_decodes_every_source_frame() {
    let media = media();
    let stack = TestStack::new().await;
    let base = stack.serve().await;
    let (id, secret, created) = create_session(&stack, &media.plan).await;
    assert!(id.len() >= 22);

    // The manifest exists at once, before any upload.
    let mpd = reqwest::get(format!("{base}/v/{id}/manifest.mpd"))
        .await
        .unwrap();
    assert_eq!(mpd.status(), 200);
    // ...and so do the HLS playlists beside it.
    assert!(
        created["hls_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v/{id}/master.m3u8")),
        "{created}"
    );
    let master = reqwest::get(format!("{base}/v/{id}/master.m3u8"))
        .await
        .unwrap();
    assert_eq!(master.status(), 200);
    assert_eq!(master.headers()["content-type"], sessions::HLS_CONTENT_TYPE);
    for track in 0..media.plan.tracks.len() {
        let playlist = reqwest::get(format!("{base}/v/{id}/hls/{track}.m3u8"))
            .await
            .unwrap();
        assert_eq!(playlist.status(), 200);
        let text = playlist.text().await.unwrap();
        assert_eq!(
            text.matches("#EXTINF:").count(),
            media.plan.slots.len(),
            "{text}"
        );
    }
    let missing = reqwest::get(format!("{base}/v/{id}/hls/9.m3u8"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    upload_inits(&created, media).await;
    loop {
        let batch = next(&stack, &id, &secret, 2).await;
        let assignments = batch["assignments"].as_array().unwrap().clone();
        if assignments.is_empty() {
            break;
        }
        for a in &assignments {
            upload_assignment(a, media).await;
            let reported = report_uploaded(&stack, &id, &secret, a["slot"].as_u64().unwrap()).await;
            assert_eq!(reported["queue"], "normal");
        }
    }
    drain(&stack).await;

    let st = status(&stack, &id).await;
    assert_eq!(st["complete"], true, "{st}");
    assert_eq!(st["counts"]["published"], media.plan.slots.len());
    // The job retired: the upload area is empty.
    let incoming = stack
        .clients
        .s3
        .list_objects_v2()
        .bucket(&stack.queues.bucket)
        .prefix(sessions::incoming_prefix(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(incoming.key_count(), Some(0));

    // An independent client reads the published MPD over HTTP.
    let url = format!("{base}/v/{id}/manifest.mpd");
    let frames = tokio::task::spawn_blocking(move || count_video_frames(&url))
        .await
        .unwrap();
    assert_eq!(
        frames, media.source_frames,
        "decoded frames of the published MPD vs the source"
    );
    // And ffmpeg's HLS demuxer, through the multivariant playlist, from the same parts.
    let url = format!("{base}/v/{id}/master.m3u8");
    let frames = tokio::task::spawn_blocking(move || count_video_frames(&url))
        .await
        .unwrap();
    assert_eq!(
        frames, media.source_frames,
        "decoded frames of the published HLS playlists vs the source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_refuse_wrong_size_type_tampering_and_expiry() {
    let media = media();
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &media.plan).await;
    let batch = next(&stack, &id, &secret, 1).await;
    let upload = batch["assignments"][0]["uploads"][0].clone();
    let right = media.segments[0][0].clone();
    let signed: Vec<&str> = upload["url"]
        .as_str()
        .unwrap()
        .split("X-Amz-SignedHeaders=")
        .nth(1)
        .unwrap()
        .split('&')
        .take(1)
        .collect();
    assert!(
        signed[0].contains("content-length") && signed[0].contains("content-type"),
        "{signed:?}"
    );

    let mut short = right.clone();
    short.pop();
    assert_eq!(
        put_presigned(&upload, short).await.status(),
        403,
        "wrong size"
    );

    let mut wrong_type = upload.clone();
    wrong_type["headers"]["content-type"] = json!("text/plain");
    assert_eq!(
        put_presigned(&wrong_type, right.clone()).await.status(),
        403,
        "wrong content-type"
    );

    let mut tampered = upload.clone();
    let url = upload["url"].as_str().unwrap();
    let other_key = url.replace("/0/0.m4s", "/1/0.m4s");
    assert_ne!(other_key, url);
    tampered["url"] = json!(other_key);
    assert_eq!(
        put_presigned(&tampered, right.clone()).await.status(),
        403,
        "other key"
    );
    let sig_pos = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut bad_sig = url.to_string();
    let flipped = if &bad_sig[sig_pos..=sig_pos] == "0" {
        "1"
    } else {
        "0"
    };
    bad_sig.replace_range(sig_pos..=sig_pos, flipped);
    tampered["url"] = json!(bad_sig);
    assert_eq!(
        put_presigned(&tampered, right.clone()).await.status(),
        403,
        "flipped signature"
    );

    let expiring = stack
        .state
        .sessions
        .store()
        .presign_put(
            &sessions::incoming_key(&id, 0, 0),
            "video/mp4",
            right.len() as u64,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = serde_json::to_value(&expiring).unwrap();
    assert_eq!(
        put_presigned(&expired, right.clone()).await.status(),
        403,
        "expired"
    );

    // And the genuine upload still works.
    assert_eq!(put_presigned(&upload, right).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_prioritize_assignments_start_at_the_window_and_its_jobs_jump_the_backlog() {
    let media = media();
    let stack = TestStack::new().await;
    // A long synthetic video: assignments only, nothing uploaded.
    let long = synthetic_plan(30);
    let (long_id, long_secret, _) = create_session(&stack, &long).await;
    let (code, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{long_id}/prioritize"),
            None,
            Some(r#"{"position": 205.0}"#),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let window_start = body["window"][0].as_u64().unwrap();
    assert_eq!(window_start, long.slot_at(205.0) as u64);
    let batch = next(&stack, &long_id, &long_secret, 6).await;
    let slots: Vec<u64> = batch["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slot"].as_u64().unwrap())
        .collect();
    let w = window_start;
    assert_eq!(slots, vec![w, w + 1, w + 2, w + 3, 0, 1]);
    assert_eq!(batch["assignments"][0]["priority"], true);
    assert_eq!(batch["assignments"][4]["priority"], false);

    // A real video: slots 0 and 1 go to the normal lane behind a backlog; a part a
    // viewer waits for does not wait behind it.
    let (id, secret, created) = create_session(&stack, &media.plan).await;
    upload_inits(&created, media).await;
    for _ in 0..20 {
        stack
            .state
            .queue
            .enqueue(&Job {
                video_id: long_id.clone(),
                slot: 29,
                lane: Lane::Normal,
                etags: vec![],
            })
            .await
            .unwrap();
    }
    let all = next(&stack, &id, &secret, 3).await;
    for a in all["assignments"].as_array().unwrap() {
        upload_assignment(a, media).await;
    }
    assert_eq!(
        report_uploaded(&stack, &id, &secret, 0).await["queue"],
        "normal"
    );
    assert_eq!(
        report_uploaded(&stack, &id, &secret, 1).await["queue"],
        "normal"
    );
    prioritize(&stack, &id, 2).await;
    // Slot 2 is in the viewer's window: its report checks and publishes it at once.
    let answer = report_uploaded(&stack, &id, &secret, 2).await;
    assert_eq!(
        (&answer["queue"], &answer["published"], &answer["enqueued"]),
        (&json!("priority"), &json!(true), &json!(false)),
        "{answer}"
    );
    let st = status(&stack, &id).await;
    assert_eq!(st["slots"][2]["state"], "published", "{st}");
    // The viewer seeks back to slot 1, reported before on the normal lane: its job goes
    // to the priority lane and the poller takes it before the normal backlog.
    let (code, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/prioritize"),
            None,
            Some(r#"{"slot": 1}"#),
        )
        .await;
    assert_eq!(
        (code, &body["requeued"]),
        (StatusCode::OK, &json!([1])),
        "{body}"
    );
    poll_once(&stack.clients.sqs, &stack.worker, &poller(&stack), false)
        .await
        .unwrap();
    let st = status(&stack, &id).await;
    assert_eq!(st["slots"][1]["state"], "published", "{st}");
    assert_eq!(st["slots"][0]["state"], "uploaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prioritizing_an_uploaded_slot_moves_its_job_to_the_priority_lane() {
    let media = media();
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &media.plan).await;
    let batch = next(&stack, &id, &secret, 3).await;
    for a in batch["assignments"].as_array().unwrap() {
        upload_assignment(a, media).await;
    }
    report_uploaded(&stack, &id, &secret, 1).await;
    assert_eq!(stack.queue_depth(&stack.queues.priority_queue_url).await, 0);
    let (_, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/prioritize"),
            None,
            Some(r#"{"slot": 1}"#),
        )
        .await;
    assert_eq!(body["requeued"], json!([1]));
    assert_eq!(stack.queue_depth(&stack.queues.priority_queue_url).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_delivered_twice_also_concurrently_publishes_once_and_keeps_state_consistent() {
    let media = media();
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &media.plan).await;
    let batch = next(&stack, &id, &secret, 1).await;
    upload_assignment(&batch["assignments"][0], media).await;
    report_uploaded(&stack, &id, &secret, 0).await;
    let job = Job {
        video_id: id.clone(),
        slot: 0,
        lane: Lane::Normal,
        etags: vec![],
    };

    let (a, b, c) = tokio::join!(
        stack.worker.process(&job),
        stack.worker.process(&job),
        stack.worker.process(&job)
    );
    let outcomes = [a.unwrap(), b.unwrap(), c.unwrap()];
    let published = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Published { .. }))
        .count();
    assert_eq!(published, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Published { .. } | Outcome::AlreadyPublished)),
        "{outcomes:?}"
    );
    assert_eq!(
        stack.worker.process(&job).await.unwrap(),
        Outcome::AlreadyPublished
    );

    let (state, _) = stack.state.sessions.state(&id).await.unwrap();
    assert!(matches!(state.slots[0], SlotState::Published { .. }));
    assert_eq!(state.counts()["published"], 1);
    // The published bytes are exactly the uploaded ones.
    for ti in 0..media.plan.tracks.len() {
        let obj = stack
            .state
            .sessions
            .store()
            .get(&sessions::published_key(&id, ti, 0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(obj.body.as_ref(), media.segments[0][ti].as_slice());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_segment_is_marked_failed_with_its_reason_and_handed_out_again() {
    let media = media();
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &media.plan).await;
    let batch = next(&stack, &id, &secret, 2).await;
    // Slot 1's segments uploaded in slot 0's place: right track, wrong tfdt and size.
    let a0 = &batch["assignments"][0];
    assert_eq!(a0["slot"], 0);
    for (i, upload) in a0["uploads"].as_array().unwrap().iter().enumerate() {
        let mut bytes = media.segments[1][i].clone();
        bytes.resize(media.segments[0][i].len(), 0);
        assert_eq!(put_presigned(upload, bytes).await.status(), 200);
    }
    report_uploaded(&stack, &id, &secret, 0).await;
    drain(&stack).await;
    let st = status(&stack, &id).await;
    assert_eq!(st["slots"][0]["state"], "failed", "{st}");
    let reason = st["slots"][0]["reason"].as_str().unwrap();
    assert!(!reason.is_empty(), "{st}");
    let again = next(&stack, &id, &secret, 1).await;
    assert_eq!(
        again["assignments"][0]["slot"], 0,
        "a failed slot is assigned again first"
    );
    upload_assignment(&again["assignments"][0], media).await;
    report_uploaded(&stack, &id, &secret, 0).await;
    drain(&stack).await;
    assert_eq!(status(&stack, &id).await["slots"][0]["state"], "published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_ends_in_the_dead_letter_queue() {
    let stack = TestStack::with(
        QueueSettings {
            visibility_timeout_secs: 1,
            max_receive_count: 2,
        },
        |_| {},
    )
    .await;
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.queues.normal_queue_url)
        .message_body("this is not a job")
        .send()
        .await
        .unwrap();
    for _ in 0..40 {
        poll_once(&stack.clients.sqs, &stack.worker, &poller(&stack), false)
            .await
            .unwrap();
        if stack.queue_depth(&stack.queues.normal_dlq_url).await == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the poison message never reached the DLQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_state_changes_are_never_lost() {
    let stack = TestStack::new().await;
    let plan = synthetic_plan(24);
    let (id, secret, _) = create_session(&stack, &plan).await;
    next(&stack, &id, &secret, 16).await;
    next(&stack, &id, &secret, 16).await;
    // Objects of the planned sizes (a report is refused without them).
    let store = stack.state.sessions.store();
    for (slot, planned) in plan.slots.iter().enumerate() {
        for (track, frag) in planned.tracks.iter().enumerate() {
            store
                .put(
                    &sessions::incoming_key(&id, slot, track),
                    vec![0u8; frag.size as usize].into(),
                    "video/mp4",
                    chunkstream::store::PutCondition::Always,
                )
                .await
                .unwrap();
        }
    }
    let reports = (0..24u64).map(|slot| {
        let stack = &stack;
        let (id, secret) = (id.clone(), secret.clone());
        async move { report_uploaded(stack, &id, &secret, slot).await }
    });
    futures::future::join_all(reports).await;
    let st = status(&stack, &id).await;
    assert_eq!(st["counts"]["uploaded"], 24, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_deletes_abandoned_sessions_and_keeps_live_ones() {
    let stack = TestStack::new().await;
    let (abandoned, _, _) = create_session(&stack, &synthetic_plan(3)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The reaper's clock stops just before the live session is made: on a busy
    // machine the pass itself may take longer than the TTL, which must not
    // make the live session look abandoned.
    let reap_time = std::sync::Arc::new(chunkstream::clock::ManualClock::at(
        stack.state.sessions.now_ms(),
    ));
    let (live, _, _) = create_session(&stack, &synthetic_plan(3)).await;
    let reaper_sessions =
        sessions::Sessions::with_clock(stack.state.sessions.store().clone(), reap_time);
    let report = reap_abandoned(
        &reaper_sessions,
        stack.state.queue.as_ref(),
        &reap_settings(Duration::from_secs(1), Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    assert_eq!(report.reaped, vec![abandoned.clone()]);
    assert!(report.objects_deleted >= 3);
    let (code, _) = stack
        .call(
            "GET",
            &format!("/api/videos/{abandoned}/status"),
            None,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = stack
        .call("GET", &format!("/api/videos/{live}/status"), None, None)
        .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_own_4xx_with_a_reason() {
    let media = media();
    let stack = TestStack::with(QueueSettings::default(), |c| c.limits.max_slots = 5).await;
    let plan = serde_json::to_value(&media.plan).unwrap();
    let post = |body: String| {
        let stack = &stack;
        async move { stack.call("POST", "/api/videos", None, Some(&body)).await }
    };
    let expect = |(code, body): (StatusCode, Value), want_code: StatusCode, want: &str| {
        assert_eq!(code, want_code, "{body}");
        assert_eq!(body["error"], want, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    };
    expect(
        post("{not json".into()).await,
        StatusCode::BAD_REQUEST,
        "bad_json",
    );
    expect(
        post(json!({"tracks": 3}).to_string()).await,
        StatusCode::BAD_REQUEST,
        "bad_json",
    );
    let mut too_many = plan.clone();
    too_many["slots"] = serde_json::to_value(&synthetic_plan(6).slots).unwrap();
    expect(
        post(too_many.to_string()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "caps_exceeded",
    );
    let mut gap = plan.clone();
    gap["slots"][1]["tracks"][0]["start"] = json!(1);
    expect(
        post(gap.to_string()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "broken_timeline",
    );
    let mut codec = plan.clone();
    codec["tracks"][0]["codec"] = json!("mjpg");
    expect(
        post(codec.to_string()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_codec",
    );

    let (id, secret, _) = create_session(&stack, &media.plan).await;
    let unknown = "AAAAAAAAAAAAAAAAAAAAAA";
    let s = Some(secret.as_str());
    let cases: Vec<ErrorCase> = vec![
        (
            "GET",
            format!("/v/{unknown}/master.m3u8"),
            None,
            None,
            StatusCode::NOT_FOUND,
            "unknown_video",
        ),
        (
            "GET",
            format!("/v/{id}/hls/0.mp4"),
            None,
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            format!("/v/{unknown}/hls/0.m3u8"),
            None,
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            format!("/api/videos/{unknown}/status"),
            None,
            None,
            StatusCode::NOT_FOUND,
            "unknown_video",
        ),
        (
            "GET",
            "/api/videos/..%2F..%2Fetc/status".into(),
            None,
            None,
            StatusCode::NOT_FOUND,
            "unknown_video",
        ),
        (
            "POST",
            format!("/api/videos/{unknown}/next"),
            s,
            Some("{}"),
            StatusCode::NOT_FOUND,
            "unknown_video",
        ),
        (
            "POST",
            format!("/api/videos/{id}/next"),
            None,
            Some("{}"),
            StatusCode::UNAUTHORIZED,
            "missing_secret",
        ),
        (
            "POST",
            format!("/api/videos/{id}/next"),
            Some("nope"),
            Some("{}"),
            StatusCode::FORBIDDEN,
            "wrong_secret",
        ),
        (
            "POST",
            format!("/api/videos/{id}/init"),
            Some("nope"),
            None,
            StatusCode::FORBIDDEN,
            "wrong_secret",
        ),
        (
            "POST",
            format!("/api/videos/{id}/slots/0/uploaded"),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "missing_secret",
        ),
        (
            "POST",
            format!("/api/videos/{id}/next"),
            s,
            Some(r#"{"max": 0}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            format!("/api/videos/{id}/next"),
            s,
            Some(r#"{"max": "x"}"#),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            "POST",
            format!("/api/videos/{id}/slots/99/uploaded"),
            s,
            None,
            StatusCode::NOT_FOUND,
            "slot_out_of_range",
        ),
        (
            "POST",
            format!("/api/videos/{id}/slots/x/uploaded"),
            s,
            None,
            StatusCode::NOT_FOUND,
            "slot_out_of_range",
        ),
        (
            "POST",
            format!("/api/videos/{id}/prioritize"),
            None,
            Some(r#"{"slot": 99}"#),
            StatusCode::NOT_FOUND,
            "slot_out_of_range",
        ),
        (
            "POST",
            format!("/api/videos/{id}/prioritize"),
            None,
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            format!("/api/videos/{id}/prioritize"),
            None,
            Some(r#"{"position": -1}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            format!("/api/videos/{id}/prioritize"),
            None,
            Some("[1,"),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
    ];
    for (method, path, secret, body, want_code, want) in cases {
        let response = stack.call(method, &path, secret, body).await;
        assert_eq!(response.0, want_code, "{method} {path}: {}", response.1);
        expect(response, want_code, want);
    }

    // Already published.
    let batch = next(&stack, &id, &secret, 1).await;
    upload_assignment(&batch["assignments"][0], media).await;
    report_uploaded(&stack, &id, &secret, 0).await;
    drain(&stack).await;
    expect(
        stack
            .call(
                "POST",
                &format!("/api/videos/{id}/slots/0/uploaded"),
                Some(&secret),
                None,
            )
            .await,
        StatusCode::CONFLICT,
        "already_published",
    );

    // A segment not yet published answers 404 at once, and counts as a hint.
    expect(
        stack
            .call("GET", &format!("/v/{id}/seg/0/2.m4s"), None, None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let st = status(&stack, &id).await;
    assert_eq!(st["priority_slots"][0], 2, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_releases_the_leases_of_the_earlier_run() {
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &synthetic_plan(4)).await;
    let first = next(&stack, &id, &secret, 2).await;
    assert_eq!(first["assignments"].as_array().unwrap().len(), 2);
    // Without a release, leased slots are not handed out again before their lease ends.
    let second = next(&stack, &id, &secret, 4).await;
    let slots: Vec<u64> = second["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, vec![2, 3]);
    let (code, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/init"),
            Some(&secret),
            Some(r#"{"release_leases": true}"#),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["released_leases"], 4);
    assert_eq!(body["init_uploads"].as_array().unwrap().len(), 2);
    let third = next(&stack, &id, &secret, 4).await;
    assert_eq!(third["assignments"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_priority_long_poll_answers_when_a_viewer_prioritizes() {
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &synthetic_plan(20)).await;
    let (code, first) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{first}");
    assert_eq!(first["priority_slots"], json!([]));
    let version = first["version"].as_i64().unwrap();

    // Nothing changes: the poll holds, then answers with the same version.
    let (_, same) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority?after={version}&wait_ms=300"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(same["version"], version);

    // A viewer seeks while the uploader waits: the poll answers with the new window.
    let long_poll = format!("/api/videos/{id}/priority?after={version}&wait_ms=20000");
    let waiting = stack.call("GET", &long_poll, Some(&secret), None);
    let seek = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stack
            .call(
                "POST",
                &format!("/api/videos/{id}/prioritize"),
                None,
                Some(r#"{"slot": 12}"#),
            )
            .await
    };
    let started = std::time::Instant::now();
    let ((code, changed), (seek_code, _)) = tokio::join!(waiting, seek);
    assert_eq!(
        (code, seek_code),
        (StatusCode::OK, StatusCode::OK),
        "{changed}"
    );
    assert_ne!(changed["version"], version);
    assert_eq!(changed["priority_slots"][0], 12, "{changed}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered on the change, not the timeout"
    );

    let (code, body) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some("wrong"),
            None,
        )
        .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_secret"))
    );
}

/// Another API process (another Lambda instance): same store, queues and feed
/// signal, its own in-process wake-ups and hint gate.
struct OtherProcess(chunkstream::api::AppState);

impl OtherProcess {
    fn of(stack: &TestStack) -> Self {
        Self(chunkstream::api::AppState {
            events: Default::default(),
            hints: Default::default(),
            ..stack.state.clone()
        })
    }
}

impl Api for OtherProcess {
    fn app_router(&self) -> axum::Router {
        chunkstream::api::app(self.0.clone())
    }
}

async fn feed_queue_exists(stack: &TestStack, id: &str) -> bool {
    let prefix = stack.state.config.feed_queue_prefix.clone().unwrap();
    match stack
        .clients
        .sqs
        .get_queue_url()
        .queue_name(format!("{prefix}{id}"))
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) => {
            let code = aws_sdk_sqs::error::ProvideErrorMetadata::code(&e).map(str::to_string);
            assert!(
                code.as_deref()
                    .is_some_and(|c| c.contains("NonExistentQueue") || c == "QueueDoesNotExist"),
                "{e:?}"
            );
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_handled_by_another_process_wakes_the_uploaders_long_poll_through_its_feed_queue() {
    let stack = TestStack::new().await;
    let other = OtherProcess::of(&stack);
    let (id, secret, _) = create_session(&stack, &synthetic_plan(20)).await;
    let (_, first) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some(&secret),
            None,
        )
        .await;
    let version = first["version"].as_i64().unwrap();
    assert!(
        feed_queue_exists(&stack, &id).await,
        "made for the first answer's wake-up URL (nobody watches yet)"
    );

    // Nobody watches: without the signal this poll would re-read the windows only
    // every 20 s, and a seek made elsewhere would be seen at the 10 s timeout.
    let long_poll = format!("/api/videos/{id}/priority?after={version}&wait_ms=10000");
    let waiting = stack.call("GET", &long_poll, Some(&secret), None);
    let seek = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let started = std::time::Instant::now();
        let answer = other
            .call(
                "POST",
                &format!("/api/videos/{id}/prioritize"),
                None,
                Some(r#"{"slot": 12, "viewer": "v-feed-test-1"}"#),
            )
            .await;
        (answer, started)
    };
    let ((code, changed), ((seek_code, _), seek_started)) = tokio::join!(waiting, seek);
    let ring_to_answer = seek_started.elapsed();
    assert_eq!(
        (code, seek_code),
        (StatusCode::OK, StatusCode::OK),
        "{changed}"
    );
    assert_eq!(changed["version"].as_i64(), Some(version + 1), "{changed}");
    assert_eq!(changed["priority_slots"][0], 12, "{changed}");
    assert!(
        ring_to_answer < Duration::from_secs(3),
        "the poll answered {ring_to_answer:?} after the seek, not at its timeout"
    );
    assert!(feed_queue_exists(&stack, &id).await);

    // Once the video is complete the feed's last answer deletes the queue.
    stack
        .state
        .sessions
        .update_published(&id, |p| {
            p.complete = true;
            Ok::<_, std::convert::Infallible>(((), true))
        })
        .await
        .unwrap()
        .unwrap();
    let (_, done) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(done["complete"], true, "{done}");
    assert!(
        !feed_queue_exists(&stack, &id).await,
        "closed with the video"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploader_waits_on_its_signed_wake_up_url_until_a_page_opens_and_holds_the_poll_once_a_viewer_seeks(
) {
    let stack = TestStack::new().await;
    let other = OtherProcess::of(&stack);
    let (id, secret, _) = create_session(&stack, &synthetic_plan(20)).await;
    let feed = format!("/api/videos/{id}/priority");
    let (_, answer) = stack.call("GET", &feed, Some(&secret), None).await;
    let url = answer["wake_url"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string();
    for part in [
        "Action=ReceiveMessage",
        "WaitTimeSeconds=20",
        "X-Amz-Expires=600",
        "X-Amz-Signature=",
    ] {
        assert!(url.contains(part), "{part} in {url}");
    }

    // A plain GET, as the page (an opaque cross-origin fetch) and the CLI make it:
    // held by SQS until the first watch page opens in another process.
    let held = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let status = reqwest::get(&url).await.map(|r| r.status().as_u16());
        (status, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!held.is_finished(), "held while nobody watches");
    let (code, _) = other
        .call("POST", &format!("/api/videos/{id}/watching"), None, None)
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (status, took) = held.await.unwrap();
    assert_eq!(status.ok(), Some(200));
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "answered {took:?} after the GET began; the page opened at 1.5 s"
    );
    let (_, answer) = stack
        .call("GET", &format!("{feed}?wait_ms=0"), Some(&secret), None)
        .await;
    assert_eq!(answer["watched"], true, "{answer}");
    // Nobody waits for a part yet: still no Lambda held.
    assert!(answer["wake_url"].is_string(), "{answer}");
    // A viewer's seek (in the other process): the uploader holds the poll again.
    prioritize(&other, &id, 15).await;
    let (_, answer) = stack
        .call("GET", &format!("{feed}?wait_ms=0"), Some(&secret), None)
        .await;
    assert!(answer.get("wake_url").is_none(), "a viewer waits: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_feed_signal_is_heard_once_and_a_closed_or_unmade_queue_is_not_an_error() {
    use chunkstream::feed_signal::{FeedSignal, SqsFeedSignal};
    let stack = TestStack::new().await;
    let prefix = stack.state.config.feed_queue_prefix.clone().unwrap();
    let signal = std::sync::Arc::new(SqsFeedSignal::new(
        stack.clients.sqs.clone(),
        &stack.queues.normal_queue_url,
        &prefix,
    ));
    let id = "AAAAAAAAAAAAAAAAAAAAAA";
    signal
        .notify(id)
        .await
        .expect("nobody waits yet: not an error");
    assert!(!signal.wait(id, Duration::from_millis(300)).await.unwrap());
    assert!(
        !signal.wait(id, Duration::from_secs(1)).await.unwrap(),
        "made, empty"
    );
    let waiter = {
        let signal = signal.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            (
                signal.wait(id, Duration::from_secs(10)).await.unwrap(),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal.notify(id).await.unwrap();
    let (rung, after) = waiter.await.unwrap();
    assert!(
        rung && after < Duration::from_secs(5),
        "{rung} after {after:?}"
    );
    assert!(
        !signal.wait(id, Duration::from_secs(1)).await.unwrap(),
        "the message was taken"
    );
    signal.close(id).await.unwrap();
    signal.close(id).await.expect("closing twice is fine");
    signal
        .notify(id)
        .await
        .expect("a closed queue has nobody to wake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_priority_answer_carries_leased_presigned_assignments_for_the_window() {
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &synthetic_plan(20)).await;
    let (_, first) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority?lease=2"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(first["assignments"], json!([]), "no window: nothing leased");
    let version = first["version"].as_i64().unwrap();
    let (code, _) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/prioritize"),
            None,
            Some(r#"{"slot": 9}"#),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, answer) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority?after={version}&wait_ms=2000&lease=2"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let leased: Vec<u64> = answer["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(leased, vec![9, 10], "{answer}");
    let upload = &answer["assignments"][0]["uploads"][0];
    assert!(
        upload["url"].as_str().unwrap().contains("incoming/"),
        "{upload}"
    );
    assert_eq!(answer["assignments"][0]["priority"], true);
    // leased slots are not handed out again by next; the rest of the window comes first
    let (_, next) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/next"),
            Some(&secret),
            Some(r#"{"max": 1}"#),
        )
        .await;
    assert_eq!(next["assignments"][0]["slot"], 11, "{next}");
    let (code, body) = stack
        .call(
            "GET",
            &format!("/api/videos/{id}/priority?lease=99"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_waiting_on_a_miss_gets_the_segment_as_soon_as_it_is_published() {
    let media = media();
    let stack = TestStack::new().await;
    let (id, secret, created) = create_session(&stack, &media.plan).await;
    upload_inits(&created, media).await;
    let batch = next(&stack, &id, &secret, 1).await;
    let slot = batch["assignments"][0]["slot"].as_u64().unwrap();
    upload_assignment(&batch["assignments"][0], media).await;
    // The viewer asks before the slot is published; it is published during the hold.
    let started = std::time::Instant::now();
    let path = format!("/v/{id}/seg/0/{slot}.m4s");
    let waiting = stack.call("GET", &path, None, None);
    let publish = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        report_uploaded(&stack, &id, &secret, slot).await;
        drain(&stack).await;
        started.elapsed()
    };
    let ((code, _), published_after) = tokio::join!(waiting, publish);
    assert_eq!(code, StatusCode::OK, "held miss answered with the segment");
    assert!(
        started.elapsed() < published_after + Duration::from_millis(400),
        "answered {:?} after the start, published after {published_after:?}",
        started.elapsed()
    );
    // Not published in time: the held miss still ends with a 404 (the player retries).
    let (code, _) = stack
        .call(
            "GET",
            &format!("/v/{id}/seg/0/{}.m4s", slot + 1),
            None,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_marked_nohint_does_not_open_a_window() {
    let stack = TestStack::new().await;
    let (id, _, _) = create_session(&stack, &synthetic_plan(20)).await;
    let (code, _) = stack
        .call("GET", &format!("/v/{id}/seg/0/15.m4s?nohint=1"), None, None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status(&stack, &id).await["priority_slots"], json!([]));
    let (code, _) = stack
        .call("GET", &format!("/v/{id}/seg/0/15.m4s"), None, None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status(&stack, &id).await["priority_slots"][0], 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_stuck_in_uploaded_gets_its_job_again() {
    let media = media();
    let stack = TestStack::new().await;
    let (id, secret, _) = create_session(&stack, &media.plan).await;
    let batch = next(&stack, &id, &secret, 1).await;
    upload_assignment(&batch["assignments"][0], media).await;
    report_uploaded(&stack, &id, &secret, 0).await;
    // The job is lost (say, it ended in a DLQ): the slot sits in "uploaded".
    stack
        .clients
        .sqs
        .purge_queue()
        .queue_url(&stack.queues.normal_queue_url)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = reap_abandoned(
        &stack.state.sessions,
        stack.state.queue.as_ref(),
        &reap_settings(Duration::from_secs(3600), Duration::from_millis(100)),
    )
    .await
    .unwrap();
    assert_eq!(report.redriven, vec![(id.clone(), 0)]);
    drain(&stack).await;
    assert_eq!(status(&stack, &id).await["slots"][0]["state"], "published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_adapter_types_its_errors_and_deletes_a_large_prefix_in_one_pass() {
    use chunkstream::store::{ObjectStore, PutCondition, S3Store, StoreError};
    use futures::StreamExt;
    let stack = TestStack::new().await;
    // A bucket that does not exist: refused, not retryable, and no endless loop.
    let missing = S3Store::new(stack.clients.s3.clone(), unique("cs-missing"));
    for err in [
        missing.get("k").await.unwrap_err(),
        missing.delete_prefix("p/").await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, StoreError::Refused { code, .. } if code == "NoSuchBucket"),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }
    let store = stack.state.sessions.store();
    // More keys than one listing page (1000) holds.
    let keys: Vec<String> = (0..1005).map(|i| format!("big/{i:05}")).collect();
    futures::stream::iter(keys.iter())
        .for_each_concurrent(32, |k| async move {
            store
                .put(k, "x".into(), "text/plain", PutCondition::Always)
                .await
                .unwrap();
        })
        .await;
    store
        .put("bigger", "keep".into(), "text/plain", PutCondition::Always)
        .await
        .unwrap();
    let page = store.list_keys("big/", Some("big/00002"), 2).await.unwrap();
    assert_eq!(page, vec!["big/00003".to_string(), "big/00004".to_string()]);
    let head = store.head("bigger").await.unwrap().unwrap();
    assert_eq!(head.len, 4);
    assert!(!head.etag.is_empty());
    assert!(store.head("big/nope").await.unwrap().is_none());
    assert_eq!(store.delete_prefix("big/").await.unwrap(), 1005);
    assert!(store.list_keys("big/", None, 10).await.unwrap().is_empty());
    assert!(store.get("bigger").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stores_the_cache_control_of_manifests_and_published_segments() {
    let stack = TestStack::new().await;
    let media = media();
    let (id, secret, created) = create_session(&stack, &media.plan).await;
    upload_inits(&created, media).await;
    let head = |key: String| {
        let s3 = stack.clients.s3.clone();
        let bucket = stack.state.config.bucket.clone();
        async move {
            s3.head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap()
                .cache_control()
                .map(str::to_string)
        }
    };
    assert_eq!(
        head(sessions::manifest_key(&id)).await.as_deref(),
        Some(sessions::MANIFEST_CACHE)
    );
    let batch = next(&stack, &id, &secret, 1).await;
    upload_assignment(&batch["assignments"][0], media).await;
    report_uploaded(&stack, &id, &secret, 0).await;
    drain(&stack).await;
    assert_eq!(
        head(sessions::published_key(&id, 0, 0)).await.as_deref(),
        Some(chunkstream::store::IMMUTABLE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_environment_clients_reach_s3_and_sqs() {
    // What the bootstraps build from Lambda's variables (no aws-config chain):
    // retries, sleep and the HTTP client come from the SDK's defaults.
    let stack = TestStack::new().await;
    let lambda = chunkstream::aws::clients(
        &chunkstream::aws::sdk_config_from_lambda_env()
            .expect("scripts/env.sh sets the variables Lambda sets"),
    );
    let bucket = stack.state.config.bucket.clone();
    lambda
        .s3
        .put_object()
        .bucket(&bucket)
        .key("lambda-env/probe")
        .body(b"probe".to_vec().into())
        .send()
        .await
        .unwrap();
    let read = lambda
        .s3
        .get_object()
        .bucket(&bucket)
        .key("lambda-env/probe")
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.body.collect().await.unwrap().into_bytes().as_ref(),
        b"probe"
    );
    let attrs = lambda
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queues.priority_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    assert!(attrs.attributes().is_some_and(|a| !a.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_jobs_reaches_its_lanes_whole_in_sendmessagebatch_requests() {
    let stack = TestStack::new().await;
    let job = |slot: usize, lane: Lane| Job {
        video_id: "batch".into(),
        slot,
        lane,
        etags: vec![format!("\"etag-{slot}\"")],
    };
    // 13 normal jobs (two requests: 10 + 3) with two priority ones among them.
    let mut jobs: Vec<Job> = (0..13).map(|s| job(s, Lane::Normal)).collect();
    jobs.insert(4, job(100, Lane::Priority));
    jobs.push(job(101, Lane::Priority));
    stack.state.queue.enqueue_batch(&jobs).await.unwrap();
    let mut seen: Vec<(Lane, usize)> = Vec::new();
    for (lane, url) in [
        (Lane::Priority, &stack.queues.priority_queue_url),
        (Lane::Normal, &stack.queues.normal_queue_url),
    ] {
        for _ in 0..10 {
            let out = stack
                .clients
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let got: Job = serde_json::from_str(m.body().unwrap()).unwrap();
                assert_eq!(got.lane, lane);
                assert_eq!(got.etags, [format!("\"etag-{}\"", got.slot)]);
                seen.push((lane, got.slot));
            }
        }
    }
    seen.sort_unstable_by_key(|(_, slot)| *slot);
    let mut expected: Vec<(Lane, usize)> = (0..13).map(|s| (Lane::Normal, s)).collect();
    expected.extend([(Lane::Priority, 100), (Lane::Priority, 101)]);
    assert_eq!(seen, expected);
}
