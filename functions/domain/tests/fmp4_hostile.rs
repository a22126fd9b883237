//! Hostile-input regressions: each must return `Err` quickly, never hang,
//! panic or allocate from a declared size. Several of these hang or crash
//! the `mp4` crate 0.14 (see the module docs of `fmp4`).
#![allow(clippy::unwrap_used)]

mod fmp4_common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use chunkstream_domain::fmp4::{
    summarize_init_segment, summarize_media_segment, validate_box_tree, Fmp4Error, MAX_DEPTH,
};
use chunkstream_domain::segment_check::{check_media_segment, ExpectedFragment};
use fmp4_common::*;

fn media_err(bytes: &[u8]) -> Fmp4Error {
    summarize_media_segment(bytes, bytes.len() as u64).unwrap_err()
}

/// A moof + mdat whose moof holds `moof_body` after a valid mfhd.
fn with_moof_body(moof_body: &[u8]) -> Vec<u8> {
    let moof = bx(b"moof", &cat(&[&full(b"mfhd", 0, 0, &u32be(1)), moof_body]));
    cat(&[&moof, &bx(b"mdat", &[0; 16])])
}

#[test]
fn moof_of_16_bytes_whose_child_has_size_0_is_an_error_not_a_hang() {
    // Hangs mp4 0.14 forever.
    let bytes = cat(&[
        &raw_header(16, b"moof"),
        &raw_header(0, b"mfhd"),
        &bx(b"mdat", &[]),
    ]);
    let err = media_err(&bytes);
    assert!(
        matches!(err, Fmp4Error::SizeZeroNotAllowed { .. }),
        "{err:?}"
    );
    // also as the whole file, and in an init segment
    let moof_only = cat(&[&raw_header(16, b"moof"), &raw_header(0, b"mfhd")]);
    assert!(summarize_media_segment(&moof_only, 16).is_err());
    let init = cat(&[
        &bx(b"ftyp", b"iso6\0\0\0\0"),
        &raw_header(16, b"moov"),
        &raw_header(0, b"trak"),
    ]);
    assert!(matches!(
        summarize_init_segment(&init),
        Err(Fmp4Error::SizeZeroNotAllowed { .. })
    ));
}

#[test]
fn top_level_size_0_is_only_accepted_for_mdat() {
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    let mut moof = seg.moof();
    moof[..4].copy_from_slice(&[0; 4]);
    let bytes = cat(&[&moof, &seg.mdat()]);
    let err = media_err(&bytes);
    assert!(
        matches!(err, Fmp4Error::SizeZeroNotAllowed { .. }),
        "{err:?}"
    );
}

#[test]
fn nested_box_declaring_2_pow_40_bytes_is_rejected_without_allocating() {
    // Aborts mp4 0.14 (2^40-byte allocation via meta/udta).
    let huge = |kind: &[u8; 4]| cat(&[&u32be(1), kind, &u64be(1 << 40), &[0u8; 16]]);

    // in an init segment: moov/udta/meta
    let udta = bx(b"udta", &huge(b"meta"));
    let good = init_segment(&[(1, b"vide", 15_360)], true);
    let moov_body = &good[24 + 8..];
    let init = cat(&[&good[..24], &bx(b"moov", &cat(&[moov_body, &udta]))]);
    let err = summarize_init_segment(&init).unwrap_err();
    assert!(
        matches!(err, Fmp4Error::SizeExceedsContainer { size, .. } if size == 1 << 40),
        "{err:?}"
    );

    // inside a traf and inside the moof
    for body in [bx(b"traf", &huge(b"trun")), huge(b"udta"), huge(b"traf")] {
        let err = media_err(&with_moof_body(&body));
        assert!(
            matches!(err, Fmp4Error::SizeExceedsContainer { .. }),
            "{err:?}"
        );
    }

    // top level: an mdat (or emsg) declaring 2^40 bytes in a small object
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    for kind in [b"mdat", b"emsg"] {
        let bytes = cat(&[&seg.moof(), &huge(kind)]);
        assert!(summarize_media_segment(&bytes, bytes.len() as u64).is_err());
    }
    // 32-bit size just beyond the container
    let bytes = cat(&[&seg.moof(), &raw_header(u32::MAX, b"mdat")]);
    let err = media_err(&bytes);
    assert!(
        matches!(err, Fmp4Error::SizeExceedsContainer { .. }),
        "{err:?}"
    );
}

#[test]
fn size_smaller_than_header_is_an_error_not_an_underflow() {
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    // 32-bit sizes 2..=7 (1 means largesize, 0 means to-end)
    for size in 2..8u32 {
        let top = cat(&[&raw_header(size, b"moof"), &[0u8; 32]]);
        assert!(
            matches!(media_err(&top), Fmp4Error::SizeBelowHeader { .. }),
            "top-level size {size}"
        );
        let nested = with_moof_body(&cat(&[&raw_header(size, b"traf"), &[0u8; 16]]));
        assert!(
            matches!(media_err(&nested), Fmp4Error::SizeBelowHeader { .. }),
            "nested size {size}"
        );
        let mdat = cat(&[&seg.moof(), &raw_header(size, b"mdat")]);
        assert!(summarize_media_segment(&mdat, mdat.len() as u64).is_err());
    }
    // 64-bit largesize below the 16-byte header
    for largesize in 0..16u64 {
        let top = cat(&[&u32be(1), b"moof", &u64be(largesize), &[0u8; 32]]);
        assert!(
            matches!(media_err(&top), Fmp4Error::SizeBelowHeader { .. }),
            "largesize {largesize}"
        );
        let nested = with_moof_body(&cat(&[&u32be(1), b"traf", &u64be(largesize), &[0u8; 16]]));
        assert!(
            matches!(media_err(&nested), Fmp4Error::SizeBelowHeader { .. }),
            "nested largesize {largesize}"
        );
    }
    // uuid box smaller than its 24-byte header
    for size in 8..24u32 {
        let nested = with_moof_body(&cat(&[&raw_header(size, b"uuid"), &[0u8; 24]]));
        assert!(
            matches!(media_err(&nested), Fmp4Error::SizeBelowHeader { .. }),
            "uuid size {size}"
        );
    }
}

#[test]
fn emsg_with_size_underflow_is_rejected() {
    // mp4 0.14 panics on these.
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    for size in [4u32, 8, 9, 11] {
        let emsg = cat(&[&raw_header(size, b"emsg"), &[0u8; 8]]);
        let emsg = &emsg[..(size as usize).max(8)];
        let bytes = cat(&[emsg, &seg.moof(), &seg.mdat()]);
        let r = summarize_media_segment(&bytes, bytes.len() as u64);
        assert!(r.is_err(), "emsg size {size}: {r:?}");
        // and inside the moof
        let bytes = with_moof_body(emsg);
        assert!(summarize_media_segment(&bytes, bytes.len() as u64).is_err());
    }
}

#[test]
fn meta_with_size_underflow_is_rejected() {
    let good = init_segment(&[(1, b"vide", 15_360)], true);
    let moov_body = &good[24 + 8..];
    for size in [3u32, 7, 8, 10] {
        let meta = cat(&[&raw_header(size, b"meta"), &[0u8; 8]]);
        let meta = &meta[..(size as usize).max(8)];
        let udta = bx(b"udta", meta);
        let init = cat(&[&good[..24], &bx(b"moov", &cat(&[moov_body, &udta]))]);
        let r = summarize_init_segment(&init);
        assert!(r.is_err(), "meta size {size}: {r:?}");
        let bytes = with_moof_body(&bx(b"traf", meta));
        assert!(summarize_media_segment(&bytes, bytes.len() as u64).is_err());
    }
}

#[test]
fn trun_declaring_u32_max_samples_in_a_tiny_box_is_rejected() {
    let tfhd = full(b"tfhd", 0, 0x02_0000, &u32be(1));
    let trun = full(
        b"trun",
        0,
        0x0301,
        &cat(&[&u32be(u32::MAX), &0i32.to_be_bytes(), &[0u8; 16]]),
    );
    let bytes = with_moof_body(&bx(b"traf", &cat(&[&tfhd, &trun])));
    let started = Instant::now();
    let err = media_err(&bytes);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(
            err,
            Fmp4Error::SampleCountTooLarge {
                sample_count: u32::MAX,
                record_len: 8,
                available: 16,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("declares 4294967295 samples"));
}

#[test]
fn trun_of_u32_max_default_sized_samples_is_rejected_without_iterating() {
    // No per-sample records: all samples take the tfhd defaults, so the count
    // is not bounded by the box size. The total is computed, not iterated.
    let tfhd = full(
        b"tfhd",
        0,
        0x02_0018,
        &cat(&[&u32be(1), &u32be(u32::MAX), &u32be(u32::MAX)]),
    );
    let trun = full(
        b"trun",
        0,
        0x0001,
        &cat(&[&u32be(u32::MAX), &0i32.to_be_bytes()]),
    );
    let bytes = with_moof_body(&bx(b"traf", &cat(&[&tfhd, &trun])));
    let started = Instant::now();
    let err = media_err(&bytes);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(err, Fmp4Error::SampleDataOutsideMdat { .. }),
        "{err:?}"
    );
}

#[test]
fn trun_whose_sample_sizes_sum_beyond_the_mdat_is_rejected() {
    let mut seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    let moof = seg.moof();
    seg.trafs[0].samples[2].size = 11; // moof size unchanged, mdat one byte short
    let bytes = cat(&[&seg.prefix(), &seg.moof(), &bx(b"mdat", &[0u8; 30])]);
    assert_eq!(seg.moof().len(), moof.len());
    let err = media_err(&bytes);
    assert!(
        matches!(err, Fmp4Error::SampleDataOutsideMdat { end, mdat_end, .. } if end == mdat_end + 1),
        "{err:?}"
    );
    // sizes summing past u64 are impossible with u32 fields, but huge ones must still fail
    seg.trafs[0].samples[1].size = u32::MAX;
    let bytes = cat(&[&seg.prefix(), &seg.moof(), &bx(b"mdat", &[0u8; 64])]);
    assert!(summarize_media_segment(&bytes, bytes.len() as u64).is_err());
}

#[test]
fn truncated_full_boxes_are_rejected() {
    // tfhd flags promise base-data-offset + defaults but the box ends early
    let tfhd = full(b"tfhd", 0, 0x00_0039, &u32be(1));
    let bytes = with_moof_body(&bx(b"traf", &tfhd));
    assert!(matches!(media_err(&bytes), Fmp4Error::BoxTooShort { .. }));
    // tfdt v1 with 4 bytes
    let traf = bx(
        b"traf",
        &cat(&[
            &full(b"tfhd", 0, 0, &u32be(1)),
            &full(b"tfdt", 1, 0, &u32be(0)),
        ]),
    );
    assert!(matches!(
        media_err(&with_moof_body(&traf)),
        Fmp4Error::BoxTooShort { .. }
    ));
    // mfhd without sequence number, trun without sample_count
    let bytes = cat(&[&bx(b"moof", &full(b"mfhd", 0, 0, &[])), &bx(b"mdat", &[])]);
    assert!(matches!(media_err(&bytes), Fmp4Error::BoxTooShort { .. }));
    let traf = bx(
        b"traf",
        &cat(&[
            &full(b"tfhd", 0, 0, &u32be(1)),
            &full(b"trun", 0, 0x1, &[0, 0]),
        ]),
    );
    assert!(matches!(
        media_err(&with_moof_body(&traf)),
        Fmp4Error::BoxTooShort { .. }
    ));
}

/// `depth` nested `kind` boxes around an empty `free` box, built in linear time.
fn nested(kind: &[u8; 4], depth: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * (depth as usize + 1));
    for level in 0..depth {
        out.extend(raw_header(8 * (depth - level + 1), kind));
    }
    out.extend(bx(b"free", &[]));
    out
}

#[test]
fn deep_nesting_is_rejected_without_exhausting_the_stack() {
    // 100k nested containers: recursion is limited to MAX_DEPTH levels.
    let inner = nested(b"traf", 100_000);
    assert!(
        validate_box_tree(&inner[8 * 99_990..], 0).is_ok(),
        "builder sanity"
    );
    let err = media_err(&with_moof_body(&inner));
    assert!(
        matches!(
            err,
            Fmp4Error::TooDeep {
                max_depth: MAX_DEPTH,
                ..
            }
        ),
        "{err:?}"
    );

    let init = cat(&[
        &bx(b"ftyp", b"iso6\0\0\0\0"),
        &bx(b"moov", &nested(b"trak", 100_000)),
    ]);
    let err = summarize_init_segment(&init).unwrap_err();
    assert!(matches!(err, Fmp4Error::TooDeep { .. }), "{err:?}");
    assert!(matches!(
        validate_box_tree(&init, 0),
        Err(Fmp4Error::TooDeep { .. })
    ));
}

#[test]
fn many_tiny_boxes_are_walked_in_linear_time() {
    // 500k 8-byte unknown boxes inside a traf: bounded by the bytes, no quadratic work.
    let mut body = full(b"tfhd", 0, 0, &u32be(1));
    for _ in 0..500_000 {
        body.extend(bx(b"zzzz", &[]));
    }
    let bytes = with_moof_body(&bx(b"traf", &body));
    let started = Instant::now();
    let r = summarize_media_segment(&bytes, bytes.len() as u64);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.is_ok(), "{r:?}"); // unknown boxes are skipped; the traf has no trun
}

#[test]
fn too_many_trafs_are_rejected() {
    let traf = bx(b"traf", &full(b"tfhd", 0, 0, &u32be(1)));
    let body: Vec<u8> = std::iter::repeat_n(traf, 1000).flatten().collect();
    let err = media_err(&with_moof_body(&body));
    assert!(matches!(err, Fmp4Error::TooMany { .. }), "{err:?}");
}

#[test]
fn absurd_lengths_do_not_overflow() {
    let bytes = video_segment();
    for total in [u64::MAX, u64::MAX - 1, 1 << 63, bytes.len() as u64 + 1] {
        assert!(
            summarize_media_segment(&bytes, total).is_err(),
            "total {total}"
        );
    }
    assert!(summarize_media_segment(&[], 0).is_err());
    assert!(summarize_media_segment(&[], u64::MAX).is_err());
    assert!(summarize_init_segment(&[]).is_err());
}

#[test]
fn random_bytes_are_rejected() {
    let mut rng = XorShift::new(0x5eed);
    for _ in 0..2000 {
        let len = rng.below(300) as usize;
        let bytes = rng.bytes(len);
        assert!(summarize_media_segment(&bytes, bytes.len() as u64).is_err());
        assert!(summarize_init_segment(&bytes).is_err());
        let _ = validate_box_tree(&bytes, 0);
    }
    let zeros = vec![0u8; 4096];
    assert!(summarize_media_segment(&zeros, zeros.len() as u64).is_err());
    let ones = vec![0xffu8; 4096];
    assert!(summarize_media_segment(&ones, ones.len() as u64).is_err());
}

/// Size-field values worth planting at box boundaries.
const INTERESTING_SIZES: [u32; 9] = [0, 1, 7, 8, 9, 16, 0x7fff_ffff, 0xffff_fffe, u32::MAX];

fn mutate(rng: &mut XorShift, original: &[u8]) -> (Vec<u8>, u64) {
    let mut bytes = original.to_vec();
    let mut total = bytes.len() as u64;
    for _ in 0..=rng.below(3) {
        match rng.below(6) {
            0 | 1 => {
                // flip random bytes
                for _ in 0..=rng.below(4) {
                    let at = rng.below(bytes.len().max(1) as u64) as usize;
                    if let Some(b) = bytes.get_mut(at) {
                        *b = rng.next_u64() as u8;
                    }
                }
            }
            2 => {
                // plant an interesting 32-bit value at a 4-byte-aligned offset
                let at = (rng.below(bytes.len().max(4) as u64 / 4) * 4) as usize;
                let v = INTERESTING_SIZES[rng.below(INTERESTING_SIZES.len() as u64) as usize];
                if let Some(slot) = bytes.get_mut(at..at + 4) {
                    slot.copy_from_slice(&v.to_be_bytes());
                }
            }
            3 => {
                // truncate the object
                let keep = rng.below(bytes.len() as u64 + 1) as usize;
                bytes.truncate(keep);
                total = keep as u64;
            }
            4 => {
                // read only a head of the object
                let keep = rng.below(bytes.len() as u64 + 1) as usize;
                bytes.truncate(keep);
            }
            _ => {
                // lie about the total length
                total = total.wrapping_add(rng.below(64)).wrapping_sub(32);
            }
        }
    }
    (bytes, total)
}

#[test]
fn mutated_segments_never_panic_or_hang() {
    let mut defaults = TrafSpec::new(1, 90_000, samples(12, 1024, 33));
    defaults.style = Style::Defaults;
    let originals = [
        video_segment(),
        Segment::single(defaults).build(),
        fixture("ffmpeg_audio_seg2.m4s")[..1200].to_vec(),
    ];
    let fixture_len = fixture("ffmpeg_audio_seg2.m4s").len() as u64;
    let inits = [
        fixture("ffmpeg_video_init.mp4"),
        init_segment(&[(1, b"vide", 15_360), (2, b"soun", 48_000)], true),
    ];
    let expected = ExpectedFragment {
        track_id: 1,
        is_video: true,
        start: 25_600,
        duration: 25_600,
        size: 0,
    };
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut rng = XorShift::new(0xc0ff_ee00_d15e_a5e5);
        let mut oks = 0usize;
        for i in 0..6000 {
            let original = &originals[i % originals.len()];
            let (bytes, mut total) = mutate(&mut rng, original);
            if i % originals.len() == 2 && total == original.len() as u64 {
                total = fixture_len; // the fixture prefix is a head of the real object
            }
            if summarize_media_segment(&bytes, total).is_ok() {
                oks += 1;
            }
            let _ = check_media_segment(
                &bytes,
                total,
                &ExpectedFragment {
                    size: total,
                    ..expected
                },
            );
            let (init, _) = mutate(&mut rng, &inits[i % inits.len()]);
            let _ = summarize_init_segment(&init);
            let _ = validate_box_tree(&init, 0);
        }
        oks
    }));
    let oks = result.expect("the parser panicked on a mutated input");
    assert!(
        oks > 0,
        "some mutations (e.g. mdat payload flips) stay valid"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
