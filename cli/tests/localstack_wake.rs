//! End to end on LocalStack: while nobody watches, the `chunkstream` binary waits on the
//! priority answers' wake-up URLs (presigned SQS receives) instead of holding the API's
//! long poll, and goes back to the held poll as soon as a watch page opens. The CLI's
//! `--json` `feed` events say which way it waits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ffmpeg, scratch, Runner, Upload};
use serde_json::Value;

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// No API keys, whatever the environment says (scripts/test.sh sets the same).
fn open_runner() -> Runner {
    Runner::start_with(&[("CHUNKSTREAM_AUTH", "open")])
}

/// `secs` of 320x180 video at 400 kbit/s (about 50 kB a second).
fn short_video(file: &Path, secs: u32) {
    let secs = secs.to_string();
    ffmpeg(
        file,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-t",
            &secs,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "30",
            "-b:v",
            "400k",
        ],
    );
}

/// Uploads `secs` of [`short_video`] in 1 s parts, one at a time, at `rate` bytes/s.
fn paced_upload(runner: &Runner, name: &str, secs: u32, rate: u32) -> Upload {
    let dir = scratch(name);
    let file = dir.join("video.mp4");
    short_video(&file, secs);
    let rate = rate.to_string();
    Upload::start(
        runner,
        &file,
        &dir.join("state"),
        &[
            "--segment-secs",
            "1",
            "--parallel",
            "1",
            "--max-rate",
            &rate,
        ],
    )
}

fn feed_modes(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|e| e["event"] == "feed")
        .map(|e| e["mode"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn is_feed(e: &Value, mode: &str) -> bool {
    e["event"] == "feed" && e["mode"] == mode
}

#[test]
fn an_unwatched_upload_completes_waiting_on_wake_up_urls() {
    let _serial = one_at_a_time();
    let runner = open_runner();
    // paced: the upload takes several seconds, the feed waits on its wake-up URL all along
    let mut up = paced_upload(&runner, "cli-e2e-wake", 12, 150_000);
    up.wait_for("feed wake", Duration::from_secs(30), |e| is_feed(e, "wake"));
    let waking_since = Instant::now();
    assert_eq!(up.finish(Duration::from_secs(120)), 0, "{:?}", up.seen);
    let waking = waking_since.elapsed();
    assert!(up.event("done").is_some(), "{:?}", up.seen);
    assert!(
        waking >= Duration::from_secs(2),
        "the upload ran only {waking:?} after the feed began waking: too short to show it"
    );
    // the first wait (before any answer) holds; every answer after it carried a wake-up
    // URL that waited for news: no stray wake-ups turned them off, no held poll again
    assert_eq!(feed_modes(&up.seen), ["held", "wake"], "{:?}", up.seen);
    assert!(
        up.seen.iter().all(|e| e["event"] != "warning"),
        "{:?}",
        up.seen
    );
    let id = up.event("link").unwrap()["video_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        runner.get_json(&format!("/api/videos/{id}/status"))["complete"],
        true
    );
}

#[test]
fn opening_a_watch_page_brings_the_uploader_back_to_the_held_poll_at_once() {
    let _serial = one_at_a_time();
    let runner = open_runner();
    let mut up = paced_upload(&runner, "cli-e2e-wake-watch", 30, 100_000);
    up.wait_for("feed wake", Duration::from_secs(30), |e| is_feed(e, "wake"));
    let id = up.event("link").unwrap()["video_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // the wake-up GET is being held by SQS by now (nobody watches)
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        up.seen.iter().filter(|e| e["event"] == "feed").count(),
        2,
        "{:?}",
        up.seen
    );
    let opened = Instant::now();
    assert_eq!(
        runner.post_empty(&format!("/api/videos/{id}/watching")),
        204
    );
    let held = up.wait_for("feed held", Duration::from_secs(15), |e| is_feed(e, "held"));
    let took = opened.elapsed();
    assert_eq!(held["wake_disabled"], false, "{held}");
    assert!(
        took < Duration::from_secs(5),
        "back to the held poll {took:?} after the watch page opened (SQS holds a wake-up 20 s)"
    );
    assert!(
        !up.seen.iter().any(|e| e["event"] == "done"),
        "the upload must still be running to show it: {:?}",
        up.seen
    );
    // and a viewer's seek now reaches it through the held poll
    let answer = runner.post_json(
        &format!("/api/videos/{id}/prioritize"),
        r#"{"position": 25.0}"#,
    );
    let target = answer["window"][0].as_u64().unwrap();
    up.wait_for("priority", Duration::from_secs(5), |e| {
        e["event"] == "priority"
            && e["slots"]
                .as_array()
                .is_some_and(|s| s.contains(&serde_json::json!(target)))
    });
    let _ = up.child.kill();
    let _ = up.child.wait();
}
