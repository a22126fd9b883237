//! End to end on LocalStack: while nobody watches, the `chunkstream` binary waits on the
//! priority answers' wake-up URLs (presigned SQS receives) instead of holding the API's
//! long poll, and goes back to the held poll as soon as a watch page opens. The CLI's
//! `--json` `feed` events say which way it waits. While nobody watches, finished parts
//! are reported in the `next` calls (`reports` events, `part` `batched`), and a wake-up
//! that ran out is followed by another one without asking the API, but every third.
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

/// The `feed` events saying how it waits (not those following a run-out).
fn feed_modes(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|e| e["event"] == "feed" && e.get("ran_out").is_none())
        .map(|e| e["mode"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn is_feed(e: &Value, mode: &str) -> bool {
    e["event"] == "feed" && e["mode"] == mode && e.get("ran_out").is_none()
}

fn is_uploaded(e: &Value) -> bool {
    e["event"] == "part" && e["state"] == "uploaded"
}

fn slot(e: &Value) -> u64 {
    e["slot"]
        .as_u64()
        .unwrap_or_else(|| panic!("no slot in {e}"))
}

fn video_id(up: &Upload) -> String {
    up.event("link").unwrap()["video_id"]
        .as_str()
        .unwrap()
        .to_owned()
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
fn an_open_page_gets_parts_reported_at_once_and_a_viewers_seek_brings_back_the_held_poll() {
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
    let wake_at = up.seen.iter().position(|e| is_feed(e, "wake")).unwrap();
    let opened_at = up.seen.len();
    let opened = Instant::now();
    assert_eq!(
        runner.post_empty(&format!("/api/videos/{id}/watching")),
        204
    );
    // The page rings the wake-up URL: the next part is reported at once, while the
    // CLI keeps waiting on wake-up URLs (nobody seeks yet: no Lambda held for it)
    let at_once = up.wait_for("a part reported at once", Duration::from_secs(10), |e| {
        is_uploaded(e) && e["batched"] == false
    });
    // (while nobody watched, finished parts waited for the `next` calls)
    assert!(
        up.seen[wake_at..]
            .iter()
            .any(|e| is_uploaded(e) && e["batched"] == true),
        "no part reported in a `next` call while nobody watched: {:?}",
        up.seen
    );
    assert!(
        opened.elapsed() < Duration::from_secs(8),
        "{at_once} came {:?} after the page opened (SQS holds a wake-up 20 s)",
        opened.elapsed()
    );
    assert!(
        !up.seen[opened_at..].iter().any(|e| is_feed(e, "held")),
        "an open page nobody seeks in holds no poll: {:?}",
        up.seen
    );
    assert!(
        !up.seen.iter().any(|e| e["event"] == "done"),
        "the upload must still be running to show it: {:?}",
        up.seen
    );
    // a viewer's seek reaches it through the wake-up URL, and it holds the poll again
    let sought = Instant::now();
    let sought_at = up.seen.len();
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
    let held = match up.seen[sought_at..].iter().find(|e| is_feed(e, "held")) {
        Some(held) => held.clone(),
        None => up.wait_for("feed held", Duration::from_secs(5), |e| is_feed(e, "held")),
    };
    assert_eq!(held["wake_disabled"], false, "{held}");
    assert!(
        sought.elapsed() < Duration::from_secs(5),
        "held {:?} after the seek",
        sought.elapsed()
    );
    let _ = up.child.kill();
    let _ = up.child.wait();
}

#[test]
fn an_unwatched_upload_reports_its_parts_in_the_next_calls() {
    let _serial = one_at_a_time();
    let runner = open_runner();
    // two lanes, paced: about ten seconds, nobody watching
    let dir = scratch("cli-e2e-batched");
    let file = dir.join("video.mp4");
    short_video(&file, 12);
    let mut up = Upload::start(
        &runner,
        &file,
        &dir.join("state"),
        &[
            "--segment-secs",
            "1",
            "--parallel",
            "2",
            "--max-rate",
            "120000",
        ],
    );
    assert_eq!(up.finish(Duration::from_secs(120)), 0, "{:?}", up.seen);
    let id = video_id(&up);
    let count = up.event("link").unwrap()["part_count"].as_u64().unwrap();
    let status = runner.get_json(&format!("/api/videos/{id}/status"));
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(
        up.event("done").unwrap()["parts_uploaded"],
        status["slot_count"],
        "every part counted, kept reports too"
    );
    assert!(
        up.seen.iter().all(|e| e["event"] != "warning"),
        "{:?}",
        up.seen
    );
    // Before the feed's first answer a part is reported at once (nobody is known not to
    // watch); once it said nobody watches, every part waited for a `next` call.
    let wake_at = up
        .seen
        .iter()
        .position(|e| is_feed(e, "wake"))
        .unwrap_or_else(|| panic!("the feed never waited on a wake-up URL: {:?}", up.seen));
    let uploaded: Vec<&Value> = up.seen.iter().filter(|e| is_uploaded(e)).collect();
    assert_eq!(uploaded.len() as u64, count, "{:?}", up.seen);
    let late: Vec<&Value> = up.seen[wake_at..]
        .iter()
        .filter(|e| is_uploaded(e))
        .collect();
    for e in &late {
        assert_eq!(
            e["batched"], true,
            "reported at once while nobody watched: {e}"
        );
    }
    let batched: Vec<u64> = uploaded
        .iter()
        .filter(|e| e["batched"] == true)
        .map(|e| slot(e))
        .collect();
    assert!(
        batched.len() as u64 * 2 >= count,
        "only {} of {count} parts went in `next` calls: {:?}",
        batched.len(),
        up.seen
    );
    // ... the `next` calls the uploader made anyway (its lanes had room): no call of their own
    let reports: Vec<&Value> = up.seen.iter().filter(|e| e["event"] == "reports").collect();
    assert!(!reports.is_empty(), "{:?}", up.seen);
    let mut carried = Vec::new();
    for r in &reports {
        assert_eq!(r["via"], "next", "{r}");
        assert_eq!(r["reason"], "next", "{r}");
        let slots: Vec<u64> = r["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect();
        assert_eq!(r["count"].as_u64(), Some(slots.len() as u64), "{r}");
        assert!(!slots.is_empty() && slots.len() <= 4, "{r}");
        carried.extend(slots);
    }
    carried.sort_unstable();
    let mut expected = batched.clone();
    expected.sort_unstable();
    assert_eq!(
        carried, expected,
        "the slots the `reports` events carried are the parts reported in batches"
    );
}

#[test]
fn a_wake_up_that_ran_out_is_waited_again_without_asking_the_feed_but_every_third() {
    let _serial = one_at_a_time();
    let runner = open_runner();
    // 30 s of video at 16 kB/s: about a minute and a half, nobody watching
    let mut up = paced_upload(&runner, "cli-e2e-run-out", 30, 16_000);
    up.wait_for("feed wake", Duration::from_secs(30), |e| is_feed(e, "wake"));
    let waking_since = Instant::now();
    let first = ran_out(&mut up, 1);
    let took = waking_since.elapsed();
    assert!(
        took >= Duration::from_millis(19_700),
        "the first wake-up ran out {took:?} after the feed began waking: SQS holds it 20 s"
    );
    assert_eq!(first["skipped_feed"], true, "{first}");
    assert_eq!(first["mode"], "wake", "{first}");
    let second = ran_out(&mut up, 2);
    assert_eq!(second["skipped_feed"], true, "{second}");
    let third = ran_out(&mut up, 3);
    assert_eq!(
        third["skipped_feed"], false,
        "the third asks the feed: {third}"
    );
    let took = waking_since.elapsed();
    assert!(
        took >= Duration::from_millis(3 * 19_700),
        "three run-outs in {took:?}"
    );
    assert!(
        !up.seen.iter().any(|e| e["event"] == "done"),
        "the upload must still be running to show it: {:?}",
        up.seen
    );
    // still waiting on wake-up URLs all along, never turned off, parts still batched
    assert_eq!(feed_modes(&up.seen), ["held", "wake"], "{:?}", up.seen);
    assert!(
        up.seen.iter().all(|e| e["event"] != "warning"),
        "{:?}",
        up.seen
    );
    let late_parts = up
        .seen
        .iter()
        .skip_while(|e| !(e["event"] == "feed" && e.get("ran_out").is_some()))
        .filter(|e| is_uploaded(e))
        .inspect(|e| assert_eq!(e["batched"], true, "{e}"))
        .count();
    assert!(
        late_parts > 0,
        "no part finished during the run-outs: {:?}",
        up.seen
    );
    let _ = up.child.kill();
    let _ = up.child.wait();
}

/// The next `feed` event following a run-out; it must be the `n`th in a row.
fn ran_out(up: &mut Upload, n: u64) -> Value {
    let e = up.wait_for("a run-out", Duration::from_secs(30), |e| {
        e["event"] == "feed" && e.get("ran_out").is_some()
    });
    assert_eq!(e["ran_out"].as_u64(), Some(n), "run-outs in a row: {e}");
    e
}
