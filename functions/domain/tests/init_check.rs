//! Init segments made by ffmpeg, checked against plans that match them and
//! against plans that differ in one property each.
#![allow(clippy::unwrap_used)]

mod fmp4_common;

use chunkstream_domain::fmp4::summarize_init_segment;
use chunkstream_domain::init_check::{check_init_segment, InitCheckError};
use chunkstream_domain::plan::{TrackKind, TrackPlan};
use fmp4_common::fixture;

/// The plan a correct client would send for this init segment.
fn plan_for(bytes: &[u8], codec: &str) -> TrackPlan {
    let t = summarize_init_segment(bytes).unwrap().tracks[0].clone();
    let e = t.sample_entry.unwrap();
    TrackPlan {
        id: t.track_id,
        kind: if t.is_video() {
            TrackKind::Video
        } else {
            TrackKind::Audio
        },
        codec: codec.into(),
        timescale: t.timescale,
        width: e.width.map(u32::from),
        height: e.height.map(u32::from),
        sample_rate: e.sample_rate,
        channels: e.channels.map(u32::from),
        presentation_time_offset: 0,
        init_size: bytes.len() as u64,
        language: None,
        label: None,
        default: false,
    }
}

fn avc_codec(bytes: &[u8]) -> String {
    let e = summarize_init_segment(bytes).unwrap().tracks[0]
        .sample_entry
        .unwrap();
    let (kind, head) = e.config.unwrap();
    assert_eq!(&kind.0, b"avcC");
    format!("avc1.{:02x}{:02x}{:02x}", head[1], head[2], head[3])
}

#[test]
fn ffmpeg_init_segments_pass_against_their_own_plan() {
    let video = fixture("ffmpeg_video_init.mp4");
    let v = summarize_init_segment(&video).unwrap().tracks[0].clone();
    let entry = v.sample_entry.unwrap();
    assert_eq!(&entry.format.0, b"avc1");
    assert!(entry.width.unwrap() > 0 && entry.height.unwrap() > 0);
    check_init_segment(&video, &plan_for(&video, &avc_codec(&video))).unwrap();

    let audio = fixture("ffmpeg_audio_init.mp4");
    let a = summarize_init_segment(&audio).unwrap().tracks[0].clone();
    let entry = a.sample_entry.unwrap();
    assert_eq!(&entry.format.0, b"mp4a");
    assert_eq!(entry.sample_rate, Some(48_000));
    assert_eq!(&entry.config.unwrap().0 .0, b"esds");
    check_init_segment(&audio, &plan_for(&audio, "mp4a.40.2")).unwrap();
}

#[test]
fn an_init_segment_that_differs_from_its_plan_is_refused_with_the_reason() {
    let video = fixture("ffmpeg_video_init.mp4");
    let good = plan_for(&video, &avc_codec(&video));
    let cases: Vec<(&str, TrackPlan)> = vec![
        (
            "track id",
            TrackPlan {
                id: good.id + 1,
                ..good.clone()
            },
        ),
        (
            "kind",
            TrackPlan {
                kind: TrackKind::Audio,
                ..good.clone()
            },
        ),
        (
            "timescale",
            TrackPlan {
                timescale: good.timescale + 1,
                ..good.clone()
            },
        ),
        (
            "codec family",
            TrackPlan {
                codec: "hvc1.1.6.L93.B0".into(),
                ..good.clone()
            },
        ),
        (
            "avc profile",
            TrackPlan {
                codec: "avc1.4d0028".into(),
                ..good.clone()
            },
        ),
        (
            "width",
            TrackPlan {
                width: Some(good.width.unwrap() + 2),
                ..good.clone()
            },
        ),
        (
            "height",
            TrackPlan {
                height: Some(good.height.unwrap() + 2),
                ..good.clone()
            },
        ),
        (
            "size",
            TrackPlan {
                init_size: good.init_size + 1,
                ..good.clone()
            },
        ),
    ];
    for (what, plan) in cases {
        let err = check_init_segment(&video, &plan).unwrap_err();
        assert!(!err.to_string().is_empty(), "{what}");
    }
    let audio = fixture("ffmpeg_audio_init.mp4");
    let good = plan_for(&audio, "mp4a.40.2");
    for (what, plan) in [
        (
            "sample rate",
            TrackPlan {
                sample_rate: Some(44_100),
                ..good.clone()
            },
        ),
        (
            "codec",
            TrackPlan {
                codec: "opus".into(),
                ..good.clone()
            },
        ),
    ] {
        assert!(check_init_segment(&audio, &plan).is_err(), "{what}");
    }
    // Garbage of the planned size is malformed, not a panic.
    let garbage = vec![0xffu8; video.len()];
    let plan = plan_for(&video, &avc_codec(&video));
    assert!(matches!(
        check_init_segment(&garbage, &plan),
        Err(InitCheckError::Malformed(_))
    ));
}

#[test]
fn an_edit_list_and_a_presentation_time_offset_may_not_both_shift_the_start() {
    let audio = fixture("ffmpeg_audio_init.mp4");
    let a = summarize_init_segment(&audio).unwrap().tracks[0].clone();
    let plan = TrackPlan {
        presentation_time_offset: 1024,
        ..plan_for(&audio, "mp4a.40.2")
    };
    match a.edit_media_time {
        // ffmpeg's AAC priming: an elst with media_time 1024 — PTO must then be 0.
        Some(t) if t > 0 => assert!(matches!(
            check_init_segment(&audio, &plan),
            Err(InitCheckError::EditListMismatch { .. })
        )),
        // Without an edit list the offset is the only shift: accepted.
        _ => check_init_segment(&audio, &plan).unwrap(),
    }
}
