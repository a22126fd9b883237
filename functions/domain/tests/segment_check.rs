//! The worker's per-segment check against the plan.
#![allow(clippy::unwrap_used)]

mod fmp4_common;

use chunkstream_domain::fmp4::Fmp4Error;
use chunkstream_domain::segment_check::{check_media_segment, ExpectedFragment, SegmentCheckError};
use fmp4_common::*;

fn expected_for(bytes: &[u8]) -> ExpectedFragment {
    ExpectedFragment {
        track_id: 1,
        is_video: true,
        start: 25_600,
        duration: 50 * 512,
        size: bytes.len() as u64,
    }
}

fn check(bytes: &[u8], expected: &ExpectedFragment) -> Result<(), SegmentCheckError> {
    check_media_segment(bytes, bytes.len() as u64, expected).map(|_| ())
}

#[test]
fn valid_synthetic_video_segment_passes() {
    let bytes = video_segment();
    let summary = check_media_segment(&bytes, bytes.len() as u64, &expected_for(&bytes)).unwrap();
    assert_eq!(summary.tracks[0].sample_count, 50);
}

#[test]
fn valid_ffmpeg_video_fixture_passes() {
    // tests/fixtures/ffmpeg_out.mpd, video: timescale 12800, <S t="0" d="25600" r="1"/>;
    // segment 1 is the first S: start 0, duration 25600.
    let bytes = fixture("ffmpeg_video_seg1.m4s");
    let expected = ExpectedFragment {
        track_id: 1,
        is_video: true,
        start: 0,
        duration: 25_600,
        size: 31_669,
    };
    check(&bytes, &expected).unwrap();
    // the worker only reads a head of the object
    check_media_segment(&bytes[..2048], 31_669, &expected).unwrap();
}

#[test]
fn valid_ffmpeg_audio_fixture_passes() {
    // tests/fixtures/ffmpeg_out.mpd, audio: timescale 48000, second <S d="96256"/>.
    // tfdt is 93184 = 92160 (MPD t) + 1024 (AAC priming in the init's elst);
    // see tests/fixtures/README.md.
    let bytes = fixture("ffmpeg_audio_seg2.m4s");
    let expected = ExpectedFragment {
        track_id: 1,
        is_video: false,
        start: 93_184,
        duration: 96_256,
        size: 17_903,
    };
    check(&bytes, &expected).unwrap();
}

#[test]
fn wrong_tfdt_is_rejected() {
    let bytes = video_segment();
    let expected = ExpectedFragment {
        start: 153_600,
        ..expected_for(&bytes)
    };
    let err = check(&bytes, &expected).unwrap_err();
    assert_eq!(
        err,
        SegmentCheckError::StartMismatch {
            actual: 25_600,
            planned: 153_600
        }
    );
    assert_eq!(err.to_string(), "tfdt 25600 != planned 153600");
    assert_eq!(err.code(), "start_mismatch");
}

#[test]
fn missing_tfdt_is_rejected() {
    let mut traf = TrafSpec::new(1, 0, samples(3, 512, 10));
    traf.tfdt = None;
    let bytes = Segment::single(traf).build();
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert_eq!(err, SegmentCheckError::MissingTfdt);
}

#[test]
fn wrong_duration_is_rejected() {
    let bytes = video_segment();
    let expected = ExpectedFragment {
        duration: 25_601,
        ..expected_for(&bytes)
    };
    let err = check(&bytes, &expected).unwrap_err();
    assert_eq!(
        err,
        SegmentCheckError::DurationMismatch {
            actual: 25_600,
            planned: 25_601
        }
    );
    assert_eq!(err.to_string(), "duration 25600 != planned 25601");
}

#[test]
fn non_sync_first_video_sample_is_rejected_but_fine_for_audio() {
    let mut list = samples(50, 512, 40);
    list[0].flags = NON_SYNC;
    let bytes = Segment::single(TrafSpec::new(1, 25_600, list)).build();
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert_eq!(
        err,
        SegmentCheckError::FirstSampleNotSync {
            flags: Some(NON_SYNC)
        }
    );
    assert_eq!(
        err.to_string(),
        "first video sample is not a sync sample (sample flags 0x01010000)"
    );
    let audio = ExpectedFragment {
        is_video: false,
        ..expected_for(&bytes)
    };
    check(&bytes, &audio).unwrap();
}

#[test]
fn non_sync_first_sample_via_ffmpeg_style_first_sample_flags_is_rejected() {
    let mut list = samples(50, 512, 40);
    list[0].flags = NON_SYNC;
    let mut traf = TrafSpec::new(1, 25_600, list);
    traf.style = Style::Defaults;
    let bytes = Segment::single(traf).build();
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert!(
        matches!(err, SegmentCheckError::FirstSampleNotSync { .. }),
        "{err:?}"
    );
}

#[test]
fn video_without_any_sample_flags_is_not_provably_sync() {
    let mut traf = TrafSpec::new(1, 25_600, samples(50, 512, 40));
    traf.style = Style::NoFlags;
    let bytes = Segment::single(traf).build();
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert_eq!(err, SegmentCheckError::FirstSampleNotSync { flags: None });
    assert!(err.to_string().ends_with("(sample flags absent)"));
}

#[test]
fn wrong_track_id_is_rejected() {
    let bytes = video_segment();
    let expected = ExpectedFragment {
        track_id: 2,
        ..expected_for(&bytes)
    };
    let err = check(&bytes, &expected).unwrap_err();
    assert_eq!(
        err,
        SegmentCheckError::TrackIdMismatch {
            actual: 1,
            planned: 2
        }
    );
    assert_eq!(err.to_string(), "track_ID 1 != planned 2");
}

#[test]
fn size_mismatch_is_rejected_before_parsing() {
    let bytes = video_segment();
    let expected = ExpectedFragment {
        size: 1200,
        ..expected_for(&bytes)
    };
    let err = check_media_segment(&bytes[..0], 1000, &expected).unwrap_err();
    assert_eq!(
        err,
        SegmentCheckError::SizeMismatch {
            actual: 1000,
            planned: 1200
        }
    );
    assert_eq!(err.to_string(), "size 1000 != planned 1200");
}

#[test]
fn truncated_object_is_rejected_as_size_mismatch() {
    let bytes = video_segment();
    let expected = expected_for(&bytes);
    let short = &bytes[..bytes.len() - 10];
    let err = check(short, &expected).unwrap_err();
    assert!(
        matches!(err, SegmentCheckError::SizeMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn truncated_mdat_is_rejected_even_when_the_plan_agrees() {
    let bytes = video_segment();
    let short = &bytes[..bytes.len() - 10];
    let err = check(short, &expected_for(short)).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentCheckError::Malformed(Fmp4Error::SizeExceedsContainer { .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("malformed segment: box 'mdat'"),
        "{err}"
    );
}

#[test]
fn mdat_not_reaching_the_end_is_rejected() {
    // mdat declares 10 bytes fewer than follow it: those 10 bytes trail the mdat.
    let seg = Segment::single(TrafSpec::new(1, 25_600, samples(50, 512, 40)));
    let mut bytes = video_segment();
    let mdat_at = seg.prefix().len() + seg.moof().len();
    let declared = u32::from_be_bytes(bytes[mdat_at..mdat_at + 4].try_into().unwrap());
    bytes[mdat_at..mdat_at + 4].copy_from_slice(&(declared - 10).to_be_bytes());
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentCheckError::Malformed(
                Fmp4Error::SampleDataOutsideMdat { .. } | Fmp4Error::TrailingData { .. }
            )
        ),
        "{err:?}"
    );
}

#[test]
fn moof_cut_short_is_rejected() {
    let seg = Segment::single(TrafSpec::new(1, 25_600, samples(50, 512, 40)));
    let bytes = video_segment();
    let cut = &bytes[..seg.prefix().len() + 40];
    let err = check(cut, &expected_for(cut)).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentCheckError::Malformed(Fmp4Error::SizeExceedsContainer { .. })
        ),
        "{err:?}"
    );
    // the same cut as a head of the full object: the moof is not fully read
    let err = check_media_segment(cut, bytes.len() as u64, &expected_for(&bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentCheckError::Malformed(Fmp4Error::MoofTooLarge { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn two_trafs_are_rejected() {
    let mut seg = Segment::single(TrafSpec::new(1, 25_600, samples(50, 512, 40)));
    seg.trafs
        .push(TrafSpec::new(2, 25_600, samples(3, 512, 40)));
    let bytes = seg.build();
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert_eq!(err, SegmentCheckError::TrackFragmentCount { count: 2 });
    assert_eq!(err.code(), "traf_count");
}

#[test]
fn trailing_garbage_after_mdat_is_rejected() {
    let bytes = cat(&[&video_segment(), b"garbage!"]);
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentCheckError::Malformed(Fmp4Error::TrailingData { trailing: 8, .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("mdat must be the last box"),
        "{err}"
    );
}

#[test]
fn fragment_without_samples_is_rejected() {
    let bytes = Segment::single(TrafSpec::new(1, 25_600, Vec::new())).build();
    let err = check(&bytes, &expected_for(&bytes)).unwrap_err();
    assert_eq!(err, SegmentCheckError::NoSamples);
}

#[test]
fn error_display_is_a_single_line() {
    let bytes = fixture("ffmpeg_video_seg1.m4s");
    let mut errors = Vec::new();
    for cut in [10usize, 100, 500, 780, 2000] {
        let head = &bytes[..cut];
        errors.push(check(head, &expected_for(head)).unwrap_err());
    }
    for e in errors {
        let msg = e.to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
    }
}

#[test]
fn expected_fragment_round_trips_through_json() {
    let e = ExpectedFragment {
        track_id: 2,
        is_video: false,
        start: 480_256,
        duration: 480_256,
        size: 160_000,
    };
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<ExpectedFragment>(&json).unwrap(), e);
}

#[test]
fn mdat_bytes_no_sample_refers_to_are_rejected() {
    let valid = video_segment();
    // Grow the mdat by 16 bytes nobody references (size field and payload).
    let summary = check_media_segment(&valid, valid.len() as u64, &expected_for(&valid)).unwrap();
    let mdat_at = summary.mdat_offset as usize;
    let mut padded = valid.clone();
    let size = u32::from_be_bytes(padded[mdat_at..mdat_at + 4].try_into().unwrap()) + 16;
    padded[mdat_at..mdat_at + 4].copy_from_slice(&size.to_be_bytes());
    padded.extend([0u8; 16]);
    let err = check(&padded, &expected_for(&padded)).unwrap_err();
    assert!(
        matches!(err, SegmentCheckError::UnreferencedMediaData { mdat, samples } if mdat == samples + 16),
        "{err}"
    );
}
