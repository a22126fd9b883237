//! End to end: the `chunkstream` binary uploads ffmpeg-made files through the real
//! runner on LocalStack; ffprobe decodes the published MPD to the source's frame count.
//! Resume after SIGKILL sends only the missing parts; a viewer's prioritize is served next.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    assert_page_plans_like_the_cli, ffmpeg, scratch, video_frames, video_packets, Runner, Upload,
};

/// These tests each drive a real upload (ffmpeg, the CLI, the runner): run one at a time, so
/// the priority test's timing is not decided by the CPU the others take.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn video_id(u: &Upload) -> String {
    u.event("link").expect("a link event")["video_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn uploads_ffmpeg_files_and_the_published_mpd_decodes_to_every_frame() {
    let _serial = one_at_a_time();
    let runner = Runner::start();
    let dir = scratch("cli-e2e-media");
    let state = dir.join("state");
    let v = "-f lavfi -i testsrc2=size=320x180:rate=";
    let cases: Vec<(&str, String, bool)> = vec![
        // moov at the end (ffmpeg's default), B-frames (so an edit list), two audio tracks
        ("bframes-2audio.mp4", format!("{v}30 -f lavfi -i sine=frequency=440:sample_rate=48000 -f lavfi -i sine=frequency=660:sample_rate=44100 -t 14 -map 0 -map 1 -map 2 -c:v libx264 -preset veryfast -g 60 -bf 2 -c:a aac -metadata:s:a:0 language=eng -metadata:s:a:0 title=Desktop -metadata:s:a:1 language=deu -metadata:s:a:1 title=Microphone"), false),
        ("faststart.mp4", format!("{v}25 -f lavfi -i sine=sample_rate=48000 -t 9 -c:v libx264 -preset veryfast -c:a aac -movflags +faststart"), false),
        ("rotated.mov", format!("{v}25 -f lavfi -i sine=sample_rate=48000 -t 6 -c:v libx264 -preset veryfast -c:a aac -metadata:s:v rotate=90"), false),
        ("vfr.mp4", "-f lavfi -i testsrc2=size=320x180:rate=30,setpts='PTS+if(gt(N,90),0.4/TB,0)' -t 8 -fps_mode vfr -c:v libx264 -preset veryfast".to_owned(), false),
        ("av1-opus.mp4", format!("{v}24 -f lavfi -i sine=sample_rate=48000 -t 5 -c:v libaom-av1 -cpu-used 8 -b:v 150k -g 48 -c:a libopus"), false),
        ("hevc.mp4", format!("{v}25 -t 4 -c:v libx265 -preset ultrafast -x265-params log-level=none -tag:v hvc1"), true),
    ];
    for (name, args, warns) in cases {
        let file = dir.join(name);
        let args: Vec<&str> = args.split_whitespace().collect();
        ffmpeg(&file, &args);
        // one planner, two clients: the page plans this file exactly as the CLI does
        assert_page_plans_like_the_cli(&file);
        let mut up = Upload::start(&runner, &file, &state, &[]);
        let code = up.finish(Duration::from_secs(120));
        assert_eq!(code, 0, "{name}: exit code; events {:?}", up.seen);
        let done = up
            .event("done")
            .unwrap_or_else(|| panic!("{name}: no done event"));
        let id = video_id(&up);
        let status = runner.get_json(&format!("/api/videos/{id}/status"));
        assert_eq!(status["complete"], true, "{name}: {status}");
        assert_eq!(done["parts_uploaded"], status["slot_count"], "{name}");
        let warned = up.seen.iter().any(|e| {
            e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains("Chromium")
        });
        assert_eq!(warned, warns, "{name}: Chromium playability warning");
        let mpd = format!("{}/v/{id}/manifest.mpd", runner.base);
        assert_eq!(
            video_frames(&mpd),
            video_frames(file.to_str().unwrap()),
            "{name}: frames decoded from the MPD"
        );
        if name == "bframes-2audio.mp4" {
            // every audio track, named and tagged as in the file, the first one the default
            let text = runner.get_text(&format!("/v/{id}/manifest.mpd"));
            let audio_sets = text.matches("contentType=\"audio\"").count();
            assert_eq!(audio_sets, 2, "{name}: audio AdaptationSets in {text}");
            // the video's B-frame edit is in its fragments' composition offsets (decode and
            // presentation start at 0: docs/webkit.md), the AAC priming stays each audio PTO
            assert_eq!(
                text.matches("presentationTimeOffset=\"0\"").count(),
                1,
                "{name}: video PTO in {text}"
            );
            assert_eq!(
                text.matches("presentationTimeOffset=\"1024\"").count(),
                2,
                "{name}: audio PTOs in {text}"
            );
            for needle in ["lang=\"en\"", "lang=\"de\"", ">Desktop<", ">Microphone<"] {
                assert!(
                    text.contains(needle),
                    "{name}: {needle} missing from {text}"
                );
            }
            // both audio tracks' init segments and last parts are published
            let last = status["slot_count"].as_u64().unwrap() - 1;
            for track in [1, 2] {
                runner.get_text(&format!("/v/{id}/init/{track}.mp4"));
                runner.get_text(&format!("/v/{id}/seg/{track}/{last}.m4s"));
            }
        }
    }
}

#[test]
fn resume_after_sigkill_uploads_only_the_missing_parts() {
    let _serial = one_at_a_time();
    let runner = Runner::start();
    let dir = scratch("cli-e2e-resume");
    let state = dir.join("state");
    let file = dir.join("long.mp4");
    ffmpeg(
        &file,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "30",
            "-b:v",
            "600k",
            "-c:a",
            "aac",
        ],
    );
    let paced = [
        "--segment-secs",
        "1",
        "--parallel",
        "1",
        "--max-rate",
        "400000",
    ];
    let mut first = Upload::start(&runner, &file, &state, &paced);
    for _ in 0..4 {
        first.wait_for("part uploaded", Duration::from_secs(60), |e| {
            e["event"] == "part" && e["state"] == "uploaded"
        });
    }
    first.child.kill().unwrap(); // SIGKILL: no chance to clean up
    first.child.wait().unwrap();
    let id = video_id(&first);
    let count = first.event("link").unwrap()["part_count"].as_u64().unwrap();
    let before = runner.get_json(&format!("/api/videos/{id}/status"));
    let already = before["counts"]["uploaded"].as_u64().unwrap()
        + before["counts"]["published"].as_u64().unwrap();
    assert!(already >= 4 && already < count, "{before}");

    let mut second = Upload::start(
        &runner,
        &file,
        &state,
        &["--segment-secs", "1", "--parallel", "1"],
    );
    assert_eq!(
        second.finish(Duration::from_secs(120)),
        0,
        "{:?}",
        second.seen
    );
    assert_eq!(
        video_id(&second),
        id,
        "the same video (and link) is resumed"
    );
    assert_eq!(second.event("link").unwrap()["resumed"], true);
    let sent: Vec<u64> = second
        .seen
        .iter()
        .filter(|e| e["event"] == "part" && e["state"] == "uploaded")
        .map(|e| e["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(
        sent.len() as u64,
        count - already,
        "only the missing parts go up: {sent:?}"
    );
    for (i, s) in before["slots"].as_array().unwrap().iter().enumerate() {
        if s["state"] == "published" || s["state"] == "uploaded" {
            assert!(
                !sent.contains(&(i as u64)),
                "part {i} was already uploaded and went up again"
            );
        }
    }
    let mpd = format!("{}/v/{id}/manifest.mpd", runner.base);
    assert_eq!(video_frames(&mpd), video_frames(file.to_str().unwrap()));
}

#[test]
fn a_viewers_prioritize_at_three_quarters_goes_out_within_moments_as_a_priority_part() {
    let _serial = one_at_a_time();
    let runner = Runner::start();
    let dir = scratch("cli-e2e-prio");
    let file = dir.join("long.mp4");
    ffmpeg(
        &file,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-t",
            "40",
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
            "300000",
        ],
    );
    up.wait_for("part uploaded", Duration::from_secs(60), |e| {
        e["event"] == "part" && e["state"] == "uploaded"
    });
    let id = video_id(&up);
    let count = up.event("link").unwrap()["part_count"].as_u64().unwrap();
    // The viewer's watch page is open, as a seek comes from one. Nobody has sought yet, so
    // the CLI waits on a wake-up URL (no Lambda held for it): it hears of the seek one
    // round trip later than through a held poll, so a natural part due at that moment may
    // start first (it then yields the link).
    if !up
        .seen
        .iter()
        .any(|e| e["event"] == "feed" && e["mode"] == "wake")
    {
        up.wait_for("feed wake", Duration::from_secs(30), |e| {
            e["event"] == "feed" && e["mode"] == "wake"
        });
    }
    assert_eq!(
        runner.post_empty(&format!("/api/videos/{id}/watching")),
        204
    );
    let sought = std::time::Instant::now();
    let answer = runner.post_json(
        &format!("/api/videos/{id}/prioritize"),
        r#"{"position": 30.0}"#,
    );
    let target = answer["window"][0].as_u64().unwrap();
    assert!(
        target * 10 >= count * 7 && target < count,
        "window {answer} of {count} parts"
    );
    let sending = up.wait_for("target sending", Duration::from_secs(30), |e| {
        e["event"] == "part" && e["state"] == "sending" && e["slot"].as_u64() == Some(target)
    });
    assert_eq!(sending["priority"], true, "{sending}");
    // ~50 kB parts at 300 kB/s over two lanes: what was already going out takes a fraction
    // of a second; the seek's part must not wait for the natural order (30 parts away).
    assert!(
        sought.elapsed() < Duration::from_secs(3),
        "the target started {:?} after the viewer's prioritize; last events: {:?}",
        sought.elapsed(),
        up.seen.iter().rev().take(12).collect::<Vec<_>>()
    );
    assert!(
        up.seen.iter().any(|e| e["event"] == "priority"
            && e["slots"]
                .as_array()
                .is_some_and(|s| s.contains(&serde_json::json!(target)))),
        "{:?}",
        up.seen
    );
    up.wait_for("target uploaded", Duration::from_secs(30), |e| {
        e["event"] == "part" && e["state"] == "uploaded" && e["slot"].as_u64() == Some(target)
    });
    let _ = up.child.kill();
    let _ = up.child.wait();
}

#[test]
fn a_file_over_one_gigabyte_uploads_with_default_settings_and_every_frame_is_published() {
    let _serial = one_at_a_time();
    let runner = Runner::start();
    let dir = scratch("cli-e2e-1gb");
    // ten seconds of noise at ~30 Mbit/s (x264 cannot compress it), looped with -c copy
    // past 1 GiB: moov at the end, as ffmpeg writes it
    let clip = dir.join("clip.mp4");
    ffmpeg(
        &clip,
        &[
            "-f",
            "lavfi",
            "-i",
            "nullsrc=s=640x360:r=30,geq=random(1)*255:128:128",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "30M",
            "-g",
            "60",
            "-c:a",
            "aac",
        ],
    );
    let clip_bytes = std::fs::metadata(&clip).unwrap().len();
    let loops = (1u64 << 30).div_ceil(clip_bytes);
    let file = dir.join("big.mp4");
    let clip_arg = clip.to_str().unwrap().to_owned();
    let loop_arg = (loops - 1).to_string();
    ffmpeg(
        &file,
        &[
            "-stream_loop",
            &loop_arg,
            "-i",
            &clip_arg,
            "-c",
            "copy",
            "-map",
            "0",
        ],
    );
    std::fs::remove_file(&clip).unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size >= 1 << 30, "made {size} bytes");
    assert_page_plans_like_the_cli(&file);

    let mut up = Upload::start(&runner, &file, &dir.join("state"), &[]);
    let code = up.finish(Duration::from_secs(600));
    assert_eq!(
        code,
        0,
        "exit code; last events {:?}",
        up.seen.iter().rev().take(8).collect::<Vec<_>>()
    );
    let id = video_id(&up);
    let status = runner.get_json(&format!("/api/videos/{id}/status"));
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(
        up.event("done").unwrap()["parts_uploaded"],
        status["slot_count"]
    );
    let link = up.event("link").unwrap();
    let planned = link["bytes_total"].as_u64().unwrap_or(0);
    assert!(
        planned * 100 >= size * 95,
        "planned {planned} of {size} bytes: {link}"
    );
    let mpd = format!("{}/v/{id}/manifest.mpd", runner.base);
    assert_eq!(
        video_packets(&mpd),
        video_packets(file.to_str().unwrap()),
        "video frames in the MPD"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
